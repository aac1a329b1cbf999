#include "scimsync/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "test_support.h"

namespace scimsync::config {
namespace {

constexpr char kMinimal[] = R"(target:
  dry_run: true
profiles:
  - {name: hr, connector: generic, secret_env: HR_WEBHOOK_SECRET}
)";

std::vector<Problem> Load(const std::string& text, Config* out = nullptr) {
  Config scratch;
  return LoadString(text, "test.yaml", out ? out : &scratch);
}

// One problem expected; returns its "path (line N): message" form.
std::string OnlyProblem(const std::string& text) {
  auto problems = Load(text);
  if (problems.size() != 1) {
    std::string all;
    for (const auto& p : problems) all += p.ToString() + "\n";
    ADD_FAILURE() << "expected exactly one problem, got " << problems.size() << ":\n" << all;
    return all;
  }
  return problems[0].ToString();
}

TEST(ConfigTest, MinimalConfigGetsDocumentedDefaults) {
  Config c;
  ASSERT_TRUE(Load(kMinimal, &c).empty());
  EXPECT_EQ(c.listen.address, "127.0.0.1");
  EXPECT_EQ(c.listen.port, 8080);
  EXPECT_EQ(c.listen.max_body_bytes, 1048576);
  EXPECT_EQ(c.listen.threads, 2);
  EXPECT_EQ(c.workers.nice, 10);
  EXPECT_EQ(c.workers.lease_ms, 10000);
  EXPECT_EQ(c.workers.max_deliveries, 10);
  EXPECT_EQ(c.workers.takeover_grace_ms, 3000);
  EXPECT_EQ(c.redis.host, "127.0.0.1");
  EXPECT_EQ(c.redis.port, 6379);
  EXPECT_EQ(c.redis.db, 0);
  EXPECT_EQ(c.redis.key_prefix, "scimsync");
  EXPECT_EQ(c.redis.partitions, 16);
  EXPECT_EQ(c.redis.password.env, "REDIS_PASSWORD");
  EXPECT_EQ(c.target.base_url, "https://api.jumpcloud.com/scim/v2");
  EXPECT_EQ(c.target.api_key.env, "JUMPCLOUD_API_KEY");
  EXPECT_EQ(c.target.auth_header, "x-api-key");
  EXPECT_EQ(c.target.timeout_ms, 10000);
  EXPECT_DOUBLE_EQ(c.target.max_requests_per_second, 10);
  EXPECT_EQ(c.workers.threads, 4);
  EXPECT_EQ(c.workers.retry.base_delay_ms, 1000);
  EXPECT_EQ(c.workers.retry.max_delay_ms, 300000);
  EXPECT_EQ(c.workers.retry.max_attempts, 10);
  EXPECT_EQ(c.workers.retry.max_age_s, 259200);
  ASSERT_EQ(c.profiles.size(), 1u);
  EXPECT_EQ(c.profiles[0].name, "hr");
  EXPECT_EQ(c.profiles[0].connector, "generic");
  ASSERT_EQ(c.profiles[0].secrets.size(), 1u);
  EXPECT_EQ(c.profiles[0].secrets[0].env, "HR_WEBHOOK_SECRET");
  EXPECT_EQ(c.profiles[0].dedup_window_s, 7 * 86400);
}

TEST(ConfigTest, TheBasicKeysOfEverySectionAreAccepted) {
  Config c;
  auto problems = Load(R"(
listen:   {address: 127.0.0.1, port: 8080, max_body_bytes: 1048576, threads: 16}
redis:    {url: "redis://127.0.0.1:6379/0", password_env: REDIS_PASSWORD, key_prefix: scimsync, partitions: 16}
target:   {base_url: "https://api.jumpcloud.com/scim/v2", api_key_env: JUMPCLOUD_API_KEY, auth_header: x-api-key, org_id: "", timeout_ms: 10000, max_requests_per_second: 10, dry_run: false}
workers:  {threads: 4, retry: {base_delay_ms: 1000, max_delay_ms: 300000, max_attempts: 10, max_age_s: 259200}}
profiles:
  - {name: hr, connector: generic, secret_env: HR_WEBHOOK_SECRET}
)",
                       &c);
  EXPECT_TRUE(problems.empty()) << problems[0].ToString();
}

TEST(ConfigTest, ShippedExampleConfigsAreValid) {
  for (const char* f : {"/config/examples/scimsync.yaml", "/config/quickstart.yaml"}) {
    Config c;
    auto problems = LoadFile(std::string(SCIMSYNC_SOURCE_DIR) + f, &c);
    EXPECT_TRUE(problems.empty()) << f << ": " << problems[0].ToString();
  }
}

TEST(ConfigTest, UnknownKeyIsAnErrorWithPathAndLine) {
  EXPECT_EQ(OnlyProblem(std::string(kMinimal) + "listen:\n  prot: 8080\n"),
            "listen.prot (line 6): unknown key (known here: address, keep_alive_max_requests, "
            "keep_alive_timeout_s, max_body_bytes, max_connections, max_field_bytes, "
            "max_header_bytes, max_headers, max_id_bytes, max_items, max_json_depth, port, "
            "threads, tls_cert_file, tls_ciphers, tls_key_file)");
  EXPECT_EQ(OnlyProblem(std::string(kMinimal) + "colour: blue\n").substr(0, 25),
            "colour (line 5): unknown ");
}

TEST(ConfigTest, HttpBaseUrlOnlyForLoopback) {
  const std::string base = "profiles: [{name: hr, connector: generic}]\ntarget:\n  dry_run: true\n";
  EXPECT_EQ(OnlyProblem(base + "  base_url: http://scim.example.com/v2\n"),
            "target.base_url (line 4): must start with https:// (http:// only for loopback)");
  EXPECT_TRUE(Load(base + "  base_url: http://127.0.0.1:9000/scim/v2\n").empty());
  EXPECT_TRUE(Load(base + "  base_url: http://localhost:9000/scim/v2\n").empty());
  EXPECT_EQ(OnlyProblem(base + "  base_url: ftp://x\n"),
            "target.base_url (line 4): must be an https:// URL such as "
            "https://api.jumpcloud.com/scim/v2");
}

TEST(ConfigTest, ApiKeyRequiredUnlessDryRun) {
  EXPECT_EQ(OnlyProblem("profiles: [{name: hr, connector: generic}]\n"
                        "target: {api_key_env: \"\"}\n"),
            "target.api_key_env (line 2): the JumpCloud API key is required: set api_key_env or "
            "api_key_file (or dry_run: true)");
}

TEST(ConfigTest, SecretValuesAreRefusedInTheFile) {
  std::string text = "profiles: [{name: hr, connector: generic}]\ntarget:\n  api_key: abc123\n";
  std::string p = OnlyProblem(text);
  EXPECT_NE(p.find("target.api_key (line 3): secrets are never written in the config file"),
            std::string::npos)
      << p;
  EXPECT_EQ(p.find("abc123"), std::string::npos) << "a secret value was echoed";
  EXPECT_EQ(OnlyProblem("target: {dry_run: true, api_key_env: A, api_key_file: b}\n"
                        "profiles: [{name: hr, connector: generic}]\n"),
            "target.api_key_file (line 1): give either api_key_env or api_key_file, not both");
}

TEST(ConfigTest, NumbersAreRangeChecked) {
  const std::string base = "profiles: [{name: hr, connector: generic}]\ntarget: {dry_run: true}\n";
  EXPECT_EQ(OnlyProblem(base + "listen: {port: 70000}\n"),
            "listen.port (line 3): must be between 0 and 65535 (got 70000)");
  EXPECT_EQ(OnlyProblem(base + "listen: {port: -1}\n"),
            "listen.port (line 3): must be between 0 and 65535 (got -1)");
  EXPECT_EQ(OnlyProblem(base + "listen: {port: eighty}\n"),
            "listen.port (line 3): must be a whole number");
  EXPECT_EQ(OnlyProblem(base + "workers: {threads: 300}\n"),
            "workers.threads (line 3): must be between 0 and 256 (got 300)");
  EXPECT_EQ(OnlyProblem(base + "workers: {nice: 20}\n"),
            "workers.nice (line 3): must be between 0 and 19 (got 20)");
  EXPECT_EQ(OnlyProblem(base + "workers: {lease_ms: 500}\n"),
            "workers.lease_ms (line 3): must be between 1000 and 600000 (got 500)");
  EXPECT_EQ(OnlyProblem(base + "workers: {max_deliveries: -1}\n"),
            "workers.max_deliveries (line 3): must be between 0 and 100000 (got -1)");
  EXPECT_EQ(OnlyProblem(base + "workers: {takeover_grace_ms: many}\n"),
            "workers.takeover_grace_ms (line 3): must be a whole number");
  EXPECT_EQ(OnlyProblem(base + "workers: {retry: {base_delay_ms: 5000, max_delay_ms: 1000}}\n"),
            "workers.retry.max_delay_ms (line 3): must be at least base_delay_ms");
  EXPECT_EQ(OnlyProblem("profiles: [{name: hr, connector: generic}]\ntarget: {dry_run: maybe}\n"),
            "target.dry_run (line 2): must be true or false");
}

// The offboarding options: no accounts for leavers by default, and how far ahead an event may be
// dated before it counts as "now".
TEST(ConfigTest, LeaverAccountsAndFutureSkew) {
  Config c;
  ASSERT_TRUE(Load(kMinimal, &c).empty());
  EXPECT_FALSE(c.target.create_leavers);
  EXPECT_EQ(c.workers.max_future_skew_s, 86400);
  const std::string base = "profiles: [{name: hr, connector: generic}]\n";
  ASSERT_TRUE(Load(base + "target: {dry_run: true, create_leavers: true}\n"
                          "workers: {max_future_skew_s: 600}\n",
                   &c)
                  .empty());
  EXPECT_TRUE(c.target.create_leavers);
  EXPECT_EQ(c.workers.max_future_skew_s, 600);
  EXPECT_EQ(OnlyProblem(base + "target: {dry_run: true, create_leavers: sometimes}\n"),
            "target.create_leavers (line 2): must be true or false");
  EXPECT_EQ(OnlyProblem(base + "target: {dry_run: true}\nworkers: {max_future_skew_s: -1}\n"),
            "workers.max_future_skew_s (line 3): must be between 0 and 31536000 (got -1)");
}

// The snapshot of the last applied state: trusted for a day by default, 0 turns it off.
TEST(ConfigTest, SnapshotMaxAge) {
  Config c;
  ASSERT_TRUE(Load(kMinimal, &c).empty());
  EXPECT_EQ(c.target.snapshot_max_age_s, 86400);
  const std::string base = "profiles: [{name: hr, connector: generic}]\n";
  ASSERT_TRUE(Load(base + "target: {dry_run: true, snapshot_max_age_s: 0}\n", &c).empty());
  EXPECT_EQ(c.target.snapshot_max_age_s, 0);
  ASSERT_TRUE(Load(base + "target: {dry_run: true, snapshot_max_age_s: 3600}\n", &c).empty());
  EXPECT_EQ(c.target.snapshot_max_age_s, 3600);
  EXPECT_EQ(OnlyProblem(base + "target: {dry_run: true, snapshot_max_age_s: -5}\n"),
            "target.snapshot_max_age_s (line 2): must be between 0 and 31536000 (got -5)");
  EXPECT_EQ(OnlyProblem(base + "target: {dry_run: true, snapshot_max_age_s: daily}\n"),
            "target.snapshot_max_age_s (line 2): must be a whole number");
}

TEST(ConfigTest, RedisUrls) {
  const std::string base = kMinimal;
  Config c;
  ASSERT_TRUE(Load(base + "redis: {url: \"redis://:pw@10.0.0.5:6380/3\"}\n", &c).empty());
  EXPECT_EQ(c.redis.host, "10.0.0.5");
  EXPECT_EQ(c.redis.port, 6380);
  EXPECT_EQ(c.redis.db, 3);
  EXPECT_EQ(c.redis.url_password, "pw");
  ASSERT_TRUE(Load(base + "redis: {url: \"unix:///run/redis.sock?db=2\"}\n", &c).empty());
  EXPECT_EQ(c.redis.unix_path, "/run/redis.sock");
  EXPECT_EQ(c.redis.db, 2);
  ASSERT_TRUE(Load(base + "redis: {url: \"redis://[::1]:7000\"}\n", &c).empty());
  EXPECT_EQ(c.redis.host, "::1");
  EXPECT_EQ(c.redis.port, 7000);
  EXPECT_EQ(OnlyProblem(base + "redis: {url: \"http://x\"}\n").substr(0, 48),
            "redis.url (line 5): must start with redis:// or ");
  EXPECT_EQ(OnlyProblem(base + "redis: {url: \"redis://h:1/99\"}\n"),
            "redis.url (line 5): the path must be a database number from 0 to 15 "
            "(redis://host:6379/0)");
  EXPECT_EQ(OnlyProblem(base + "redis: {key_prefix: \"a{b}\"}\n"),
            "redis.key_prefix (line 5): must be non-empty without spaces or braces (braces are "
            "hash tags)");
}

TEST(ConfigTest, RedisSentinelsAndWaitReplicas) {
  const std::string base = kMinimal;
  Config c;
  ASSERT_TRUE(Load(base, &c).empty());
  EXPECT_TRUE(c.redis.sentinels.empty());
  EXPECT_EQ(c.redis.wait_replicas, 0);
  ASSERT_TRUE(Load(base + "redis:\n  url: \"redis://:pw@ignored:1/2\"\n"
                          "  sentinels: [\"10.0.0.5:26379\", \"[::1]:26380\"]\n"
                          "  master_name: mymaster\n  sentinel_password_env: SENTINEL_PW\n"
                          "  wait_replicas: 1\n  wait_timeout_ms: 500\n",
                   &c)
                  .empty());
  ASSERT_EQ(c.redis.sentinels.size(), 2u);
  EXPECT_EQ(c.redis.sentinels[1], "[::1]:26380");
  EXPECT_EQ(c.redis.master_name, "mymaster");
  EXPECT_EQ(c.redis.sentinel_password.env, "SENTINEL_PW");
  EXPECT_EQ(c.redis.url_password, "pw");
  EXPECT_EQ(c.redis.db, 2);
  EXPECT_EQ(c.redis.wait_replicas, 1);
  EXPECT_EQ(c.redis.wait_timeout_ms, 500);

  EXPECT_EQ(OnlyProblem(base + "redis: {sentinels: [\"127.0.0.1:26379\"]}\n"),
            "redis.master_name (line 5): redis.sentinels needs redis.master_name: the name the "
            "sentinels monitor (\"sentinel monitor NAME ...\" in sentinel.conf)");
  EXPECT_EQ(OnlyProblem(base + "redis: {sentinels: [\"sentinel-1\"], master_name: m}\n"),
            "redis.sentinels (line 5): \"sentinel-1\" is not host:port; list each sentinel as "
            "\"10.0.0.5:26379\" (IPv6: \"[::1]:26379\")");
  EXPECT_EQ(OnlyProblem(base + "redis: {sentinels: [\"h:0\"], master_name: m}\n").substr(0, 44),
            "redis.sentinels (line 5): \"h:0\" is not host:");
  EXPECT_EQ(OnlyProblem(base + "redis: {master_name: m}\n"),
            "redis.master_name (line 5): is used only with redis.sentinels: list the sentinels, "
            "or remove it");
  EXPECT_EQ(OnlyProblem(base + "redis: {url: \"unix:///run/r.sock\", sentinels: [\"h:1\"], "
                               "master_name: m}\n")
                .substr(0, 68),
            "redis.url (line 5): with redis.sentinels the primary is reached over");
  EXPECT_EQ(
      OnlyProblem(base + "redis: {sentinels: [\"h:1\"], master_name: m, sentinel_password: x}\n")
          .substr(0, 58),
      "redis.sentinel_password (line 5): secrets are never writte");
  EXPECT_EQ(OnlyProblem(base + "redis: {wait_replicas: 17}\n"),
            "redis.wait_replicas (line 5): must be between 0 and 16 (got 17)");
  EXPECT_EQ(OnlyProblem(base + "redis: {wait_replicas: 1, wait_timeout_ms: 6000}\n"),
            "redis.wait_timeout_ms (line 5): must be below redis.command_timeout_ms (5000 ms), or "
            "a slow replica looks like a dead Redis");
}

TEST(ConfigTest, ParseHostPort) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHostPort("sentinel-a.internal:26379", &host, &port));
  EXPECT_EQ(host, "sentinel-a.internal");
  EXPECT_EQ(port, 26379);
  ASSERT_TRUE(ParseHostPort("[fe80::1]:5000", &host, &port));
  EXPECT_EQ(host, "fe80::1");
  EXPECT_EQ(port, 5000);
  EXPECT_FALSE(ParseHostPort("::1:26379", &host, &port));
  EXPECT_FALSE(ParseHostPort(":26379", &host, &port));
  EXPECT_FALSE(ParseHostPort("h:", &host, &port));
  EXPECT_FALSE(ParseHostPort("h:65536", &host, &port));
  EXPECT_FALSE(ParseHostPort("h:12ab", &host, &port));
}

TEST(SecretTest, CheckSecretsWantsANamedSentinelPassword) {
  Config c;
  ASSERT_TRUE(Load(std::string(kMinimal) +
                       "redis: {sentinels: [\"h:1\"], master_name: m, "
                       "sentinel_password_env: SCIMSYNC_TEST_UNSET_SENTINEL_PW}\n",
                   &c)
                  .empty());
  const std::vector<Problem> problems = CheckSecrets(c);
  const Problem* sentinel = nullptr;
  for (const Problem& p : problems) {
    if (p.path == "redis.sentinel_password") sentinel = &p;
  }
  ASSERT_NE(sentinel, nullptr);
  EXPECT_NE(sentinel->message.find("SCIMSYNC_TEST_UNSET_SENTINEL_PW"), std::string::npos);
}

TEST(ConfigTest, Profiles) {
  EXPECT_EQ(OnlyProblem("target: {dry_run: true}\n"),
            "profiles: at least one profile is required (e.g. {name: hr, connector: generic})");
  EXPECT_EQ(OnlyProblem("target: {dry_run: true}\nprofiles:\n  - {name: HR, connector: generic}\n"),
            "profiles[0].name (line 3): must be lowercase letters, digits, '-' or '_' (it is a URL "
            "segment)");
  EXPECT_EQ(OnlyProblem("target: {dry_run: true}\nprofiles:\n  - {name: hr}\n"),
            "profiles[0].connector (line 3): is required");
  EXPECT_EQ(OnlyProblem("target: {dry_run: true}\nprofiles:\n  - {name: a, connector: generic}\n"
                        "  - {name: a, connector: generic}\n"),
            "profiles[1].name (line 4): profile name 'a' is used twice");
  Config c;
  ASSERT_TRUE(Load("target: {dry_run: true}\nprofiles:\n  - name: a\n    connector: generic\n"
                   "    secrets: [{env: OLD}, {file: new.key}]\n",
                   &c)
                  .empty());
  ASSERT_EQ(c.profiles[0].secrets.size(), 2u);
  EXPECT_EQ(c.profiles[0].secrets[0].env, "OLD");
  EXPECT_EQ(c.profiles[0].secrets[1].file, "new.key");
}

TEST(ConfigTest, ReconcileEveryIsACommonProfileKeyAndOffByDefault) {
  Config c;
  ASSERT_TRUE(Load(kMinimal, &c).empty());
  EXPECT_EQ(c.profiles[0].reconcile_every_s, 0);
  ASSERT_TRUE(Load("target: {dry_run: true}\nprofiles:\n"
                   "  - {name: hr, connector: generic, reconcile_every_s: 3600}\n",
                   &c)
                  .empty());
  EXPECT_EQ(c.profiles[0].reconcile_every_s, 3600);
  // Connectors skip the common keys when they read an entry strictly.
  const auto& common = CommonProfileKeys();
  EXPECT_NE(std::find(common.begin(), common.end(), "reconcile_every_s"), common.end());
  EXPECT_NE(std::find(common.begin(), common.end(), "reconcile"), common.end());
  // profiles[].reconcile: report orphans unless told otherwise; refuse a list 10% shorter.
  EXPECT_EQ(c.profiles[0].reconcile.orphans, "report");
  EXPECT_EQ(c.profiles[0].reconcile.max_shrink_percent, 10);
  ASSERT_TRUE(Load("target: {dry_run: true}\nprofiles:\n"
                   "  - {name: hr, connector: generic,\n"
                   "     reconcile: {orphans: suspend, max_shrink_percent: 25}}\n",
                   &c)
                  .empty());
  EXPECT_EQ(c.profiles[0].reconcile.orphans, "suspend");
  EXPECT_EQ(c.profiles[0].reconcile.max_shrink_percent, 25);
  EXPECT_EQ(OnlyProblem("target: {dry_run: true}\nprofiles:\n"
                        "  - {name: hr, connector: generic, reconcile: {orphans: delete}}\n"),
            "profiles[0].reconcile.orphans (line 3): must be report (the default: list them, "
            "change nothing) or suspend (got 'delete')");
  EXPECT_EQ(OnlyProblem("target: {dry_run: true}\nprofiles:\n"
                        "  - {name: hr, connector: generic, reconcile: {orphan: suspend}}\n"),
            "profiles[0].reconcile.orphan (line 3): unknown key (known here: "
            "max_shrink_percent, orphans)");
  EXPECT_EQ(OnlyProblem("target: {dry_run: true}\nprofiles:\n"
                        "  - {name: hr, connector: generic, reconcile_every_s: 60}\n"),
            "profiles[0].reconcile_every_s (line 3): must be 0 (off) or at least 300 (got 60)");
  EXPECT_EQ(OnlyProblem("target: {dry_run: true}\nprofiles:\n"
                        "  - {name: hr, connector: generic, reconcile_every_s: hourly}\n"),
            "profiles[0].reconcile_every_s (line 3): must be a whole number");
  ASSERT_TRUE(Load("target: {dry_run: true}\nprofiles:\n"
                   "  - {name: hr, connector: generic, reconcile_every_s: 0}\n",
                   &c)
                  .empty());
  EXPECT_EQ(c.profiles[0].reconcile_every_s, 0);
}

TEST(ConfigTest, HistoryIsBoundedByDefaultAndConfigurable) {
  Config c;
  ASSERT_TRUE(Load(kMinimal, &c).empty());
  EXPECT_EQ(c.workers.history.max_entries, 50);
  EXPECT_EQ(c.workers.history.max_age_days, 90);
  ASSERT_TRUE(
      Load("target: {dry_run: true}\nworkers: {history: {max_entries: 0, max_age_days: 7}}\n"
           "profiles:\n  - {name: hr, connector: generic}\n",
           &c)
          .empty());
  EXPECT_EQ(c.workers.history.max_entries, 0);
  EXPECT_EQ(c.workers.history.max_age_days, 7);
  EXPECT_EQ(OnlyProblem("target: {dry_run: true}\nworkers: {history: {max_entries: 5000}}\n"
                        "profiles:\n  - {name: hr, connector: generic}\n"),
            "workers.history.max_entries (line 2): must be between 0 and 1000 (got 5000)");
  EXPECT_EQ(OnlyProblem("target: {dry_run: true}\nworkers: {history: {max_age: 7}}\n"
                        "profiles:\n  - {name: hr, connector: generic}\n")
                .rfind("workers.history.max_age", 0),
            0u);
}

TEST(ConfigTest, EveryProblemIsReportedNotJustTheFirst) {
  auto problems = Load("listen: {port: -1, threads: 0}\ntarget: {dry_run: true}\n");
  EXPECT_EQ(problems.size(), 3u);  // port, threads, missing profiles
}

TEST(ConfigTest, ListenPortZeroLetsTheKernelPick) {
  Config c;
  auto problems = Load(std::string(kMinimal) + "listen: {port: 0}\n", &c);
  EXPECT_TRUE(problems.empty()) << problems[0].message;
  EXPECT_EQ(c.listen.port, 0);
}

TEST(ConfigTest, DuplicateKeysAreErrors) {
  // yaml-cpp keeps one of two equal keys silently; a user editing a long file would not notice.
  EXPECT_EQ(OnlyProblem(std::string(kMinimal) + "target: {dry_run: false}\n"),
            "target (line 5): duplicate key (first on line 1)");
}

TEST(ConfigTest, YamlSyntaxErrorsCarryTheLine) {
  auto problems = Load("listen:\n  port: [8080\n");
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].message.find("YAML syntax error"), std::string::npos);
  EXPECT_GT(problems[0].line, 0);
}

TEST(ConfigTest, MissingFileSaysWhatToDo) {
  Config c;
  auto problems = LoadFile("/nonexistent/scimsync.yaml", &c);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].message,
            "cannot read config file /nonexistent/scimsync.yaml: check the path (--config FILE)");
}

TEST(SecretTest, FromEnvAndFileWithCredentialsDirectory) {
  testing::TempDir dir;
  setenv("SCIMSYNC_TEST_SECRET", "s3cret", 1);
  auto v = ResolveSecret(SecretRef{"SCIMSYNC_TEST_SECRET", ""});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "s3cret");
  unsetenv("SCIMSYNC_TEST_SECRET");
  auto missing = ResolveSecret(SecretRef{"SCIMSYNC_TEST_SECRET", ""});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message,
            "environment variable SCIMSYNC_TEST_SECRET is not set or empty: export it, or use a "
            "*_file setting");

  testing::WriteFile(dir.File("key"), "filesecret\n");
  setenv("CREDENTIALS_DIRECTORY", dir.path().c_str(), 1);
  auto f = ResolveSecret(SecretRef{"", "key"});
  unsetenv("CREDENTIALS_DIRECTORY");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(*f, "filesecret");  // trailing newline trimmed
  auto absent = ResolveSecret(SecretRef{"", dir.File("nope")});
  ASSERT_FALSE(absent.ok());
  EXPECT_NE(absent.error().message.find("check that it exists and is readable"), std::string::npos);
}

TEST(SecretTest, CheckSecretsNamesTheSourceNeverTheValue) {
  Config c;
  ASSERT_TRUE(Load("profiles: [{name: hr, connector: generic, secret_env: SCIMSYNC_NOPE}]\n"
                   "target: {api_key_env: SCIMSYNC_NOKEY}\n",
                   &c)
                  .empty());
  auto problems = CheckSecrets(c);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].ToString().find("SCIMSYNC_NOKEY"), std::string::npos);
  EXPECT_NE(problems[1].ToString().find("profiles[0].secret"), std::string::npos);
}

TEST(ConfigTest, RequestLimitsHaveSafeDefaultsAndAreConfigurable) {
  Config c;
  ASSERT_TRUE(Load(kMinimal, &c).empty());
  EXPECT_EQ(c.listen.max_headers, 100);
  EXPECT_EQ(c.listen.max_header_bytes, 32768);
  EXPECT_EQ(c.listen.max_json_depth, 32);
  EXPECT_EQ(c.listen.max_items, 1000);
  EXPECT_EQ(c.listen.max_field_bytes, 16384);
  EXPECT_EQ(c.listen.max_id_bytes, 512);
  ASSERT_TRUE(Load(std::string("listen: {max_headers: 40, max_header_bytes: 4096, "
                               "max_json_depth: 8, max_items: 50, max_field_bytes: 2048, "
                               "max_id_bytes: 128}\n") +
                       kMinimal,
                   &c)
                  .empty());
  EXPECT_EQ(c.listen.max_headers, 40);
  EXPECT_EQ(c.listen.max_header_bytes, 4096);
  EXPECT_EQ(c.listen.max_json_depth, 8);
  EXPECT_EQ(c.listen.max_items, 50);
  EXPECT_EQ(c.listen.max_field_bytes, 2048);
  EXPECT_EQ(c.listen.max_id_bytes, 128);
}

TEST(ConfigTest, ConnectionCapAndTlsCiphersHaveSafeDefaultsAndAreConfigurable) {
  Config c;
  ASSERT_TRUE(Load(kMinimal, &c).empty());
  EXPECT_EQ(c.listen.max_connections, 0) << "0: derived from the open-file limit";
  EXPECT_EQ(c.listen.tls_ciphers, kIntermediateTlsCiphers);
  EXPECT_EQ(c.listen.tls_ciphers.find("AES128-SHA:"), std::string::npos);
  ASSERT_TRUE(Load(std::string("listen: {max_connections: 500, tls_ciphers: "
                               "\"ECDHE-RSA-AES128-GCM-SHA256\"}\n") +
                       kMinimal,
                   &c)
                  .empty());
  EXPECT_EQ(c.listen.max_connections, 500);
  EXPECT_EQ(c.listen.tls_ciphers, "ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_NE(OnlyProblem(std::string("listen: {max_connections: -1}\n") + kMinimal)
                .find("listen.max_connections"),
            std::string::npos);
  EXPECT_NE(OnlyProblem(std::string("listen: {tls_ciphers: \"\"}\n") + kMinimal)
                .find("listen.tls_ciphers"),
            std::string::npos);
}

TEST(ConfigTest, RequestLimitsRefuseValuesThatWouldDisableThem) {
  // Above 128 the JSON parser refuses the body anyway, so a larger depth would only mislead.
  EXPECT_NE(OnlyProblem(std::string("listen: {max_json_depth: 1000}\n") + kMinimal)
                .find("listen.max_json_depth"),
            std::string::npos);
  EXPECT_NE(OnlyProblem(std::string("listen: {max_items: 0}\n") + kMinimal).find("max_items"),
            std::string::npos);
  EXPECT_NE(OnlyProblem(std::string("listen: {max_headers: 1}\n") + kMinimal).find("max_headers"),
            std::string::npos);
  EXPECT_NE(OnlyProblem(std::string("listen: {max_field_bytes: -1}\n") + kMinimal)
                .find("max_field_bytes"),
            std::string::npos);
}

// What the admin commands share: finding a profile, naming the configured ones, and masking every
// configured secret in what they print.
TEST(ConfigTest, FindsProfilesNamesThemAndMasksEveryResolvedSecret) {
  setenv("SCIMSYNC_TEST_HR2_SECRET", "hr2-webhook-secret", 1);
  setenv("SCIMSYNC_TEST_SHORT", "abc", 1);
  Config c;
  ASSERT_TRUE(Load(std::string(kMinimal) +
                       "  - {name: hr2, connector: generic, secret_env: SCIMSYNC_TEST_HR2_SECRET}\n"
                       "  - {name: hr3, connector: generic, secret_env: SCIMSYNC_TEST_SHORT}\n",
                   &c)
                  .empty());
  ASSERT_NE(FindProfile(c, "hr2"), nullptr);
  EXPECT_EQ(FindProfile(c, "hr2")->name, "hr2");
  EXPECT_EQ(FindProfile(c, "nope"), nullptr);
  EXPECT_EQ(ProfileNames(c), "hr, hr2, hr3");
  const std::vector<std::string> secrets = ResolvedSecrets(c);
  // Too short to mask without masking ordinary words: left out.
  EXPECT_EQ(std::count(secrets.begin(), secrets.end(), "abc"), 0);
  EXPECT_EQ(MaskSecrets("sig hr2-webhook-secret, again hr2-webhook-secret.", secrets),
            "sig [redacted], again [redacted].");
  unsetenv("SCIMSYNC_TEST_HR2_SECRET");
  unsetenv("SCIMSYNC_TEST_SHORT");
}

TEST(ConfigTest, OneScopeKeepsBareExternalIdsAndUserNamesByDefault) {
  Config c;
  ASSERT_TRUE(Load(kMinimal, &c).empty());
  EXPECT_FALSE(c.multi_scope);
  EXPECT_FALSE(c.profiles[0].follow_user_name);
  EXPECT_EQ(c.profiles[0].scope_prefix, "hr");
  EXPECT_EQ(ScopedExternalId(c, c.profiles[0], "", "1001"), "1001");
  // One profile with one tenant is still one scope.
  ASSERT_TRUE(Load(std::string(kMinimal) + "  - {name: finch, connector: finch, secret_env: F, "
                                           "tenants: {acme: {}}}\n",
                   &c)
                  .empty());
  EXPECT_TRUE(c.multi_scope);
  Config one;
  ASSERT_TRUE(Load("target: {dry_run: true}\nprofiles:\n  - {name: finch, connector: finch, "
                   "secret_env: F, tenants: {acme: {}}}\n",
                   &one)
                  .empty());
  EXPECT_FALSE(one.multi_scope);
  EXPECT_EQ(ScopedExternalId(one, one.profiles[0], "acme", "7"), "7");
}

TEST(ConfigTest, SeveralScopesNamespaceExternalIdsWithUniquePrefixes) {
  Config c;
  auto problems = Load(R"(target: {dry_run: true}
profiles:
  - {name: de, connector: generic, secret_env: A, username_updates: follow}
  - {name: us, connector: generic, secret_env: B, scope_prefix: acme-us}
  - {name: finch, connector: finch, secret_env: F, tenants: {t2: {}, t1: {}}}
)",
                       &c);
  ASSERT_TRUE(problems.empty()) << problems[0].ToString();
  EXPECT_TRUE(c.multi_scope);
  EXPECT_TRUE(c.profiles[0].follow_user_name);
  EXPECT_FALSE(c.profiles[1].follow_user_name);
  EXPECT_EQ(ScopedExternalId(c, c.profiles[0], "", "1001"), "de:1001");
  EXPECT_EQ(ScopedExternalId(c, c.profiles[1], "", "1001"), "acme-us:1001");
  EXPECT_EQ(ScopedExternalId(c, c.profiles[2], "t1", "1001"), "finch/t1:1001");
  EXPECT_EQ(c.profiles[2].tenants, (std::vector<std::string>{"t1", "t2"}));

  EXPECT_EQ(OnlyProblem(R"(target: {dry_run: true}
profiles:
  - {name: de, connector: generic, secret_env: A}
  - {name: us, connector: generic, secret_env: B, scope_prefix: de}
)"),
            "profiles[1].scope_prefix (line 4): scope prefix 'de' is also profiles[0]'s: two HR "
            "sources would share externalIds; give each profile its own scope_prefix");
  EXPECT_NE(OnlyProblem(std::string(kMinimal) + "  - {name: x, connector: generic, "
                                                "secret_env: B, scope_prefix: 'a:b'}\n")
                .find("profiles[1].scope_prefix"),
            std::string::npos);
  EXPECT_NE(OnlyProblem(std::string(kMinimal) + "  - {name: x, connector: generic, "
                                                "secret_env: B, username_updates: always}\n")
                .find("profiles[1].username_updates"),
            std::string::npos);
  for (const char* bad : {"'.'", "'..'", "'a/b'", "'a b'"}) {
    EXPECT_NE(OnlyProblem(std::string(kMinimal) +
                          "  - {name: f, connector: finch, secret_env: F, "
                          "tenants: {" +
                          bad + ": {}}}\n")
                  .find("profiles[1].tenants."),
              std::string::npos)
        << bad;
  }
}

}  // namespace
}  // namespace scimsync::config
