// Secret hygiene across a whole scenario: the daemon takes webhooks (good, forged, unmappable),
// its workers converge them in a dry run and dead-letter what fails, an HRIS answers errors
// that echo the request's credentials, and an admin runs check-config, map, status and dlq.
// Then every output -- the log, the dry-run file, each command's output, every key in Redis --
// is searched for every secret's value.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon_fixture.h"

namespace scimsync::testing {
namespace {

const std::map<std::string, std::string> kSecrets = {
    {"JC_API_KEY", "jc-apikey-4f0d9c2b7e51a6"},     {"HR_SECRET", "hr-webhook-secret-93be1f"},
    {"GUSTO_SECRET", "gusto-signing-token-7d2a8c"}, {"GUSTO_TOKEN", "gusto-api-token-51c6e0f4"},
    {"REDIS_PASSWORD", "redis-password-a8e3b27d"},
};

std::vector<std::string> Env() {
  std::vector<std::string> env;
  for (const auto& [k, v] : kSecrets) env.push_back(k + "=" + v);
  return env;
}

// An HRIS that answers every fetch 503 with the request's headers in the body, as some API
// gateways do: a daemon that copies answers into messages would leak the token this way.
class EchoingHris {
 public:
  EchoingHris() {
    server_.Get(".*", [this](const httplib::Request& req, httplib::Response& res) {
      std::string echo = "upstream unavailable; you sent:";
      for (const auto& [k, v] : req.headers) echo += " " + k + ": " + v + ";";
      ++requests_;
      res.status = 503;
      res.set_content(echo, "text/plain");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    WaitForPort(port_, 5000);
  }
  ~EchoingHris() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> requests_{0};
};

class SecretsTest : public ::testing::Test {
 protected:
  SecretsTest() : redis_(kSecrets.at("REDIS_PASSWORD")) {}

  void SetUp() override {
    ASSERT_TRUE(redis_.Start());
    const std::string yaml =
        "listen: {address: 127.0.0.1, port: 0}\n"
        "redis: {url: \"" +
        redis_.url() +
        "\", password_env: REDIS_PASSWORD, connect_timeout_ms: 500}\n"
        "target: {api_key_env: JC_API_KEY, dry_run: true, dry_run_file: " +
        dir_.File("dry-run.jsonl") +
        "}\n"
        "workers:\n"
        "  threads: 2\n"
        "  retry: {base_delay_ms: 1, max_delay_ms: 10, max_attempts: 2}\n"
        "profiles:\n"
        "  - {name: hr, connector: generic, secret_env: HR_SECRET}\n"
        "  - name: gusto\n"
        "    connector: gusto\n"
        "    secret_env: GUSTO_SECRET\n"
        "    api: {key_env: GUSTO_TOKEN, base_url: \"" +
        hris_.url() + "\"}\n";
    WriteFile(config(), yaml);
  }

  void TearDown() override {
    if (daemon_.running()) {
      daemon_.Signal(SIGTERM);
      if (daemon_.Wait(10000) < 0) daemon_.Kill();
    }
  }

  std::string config() const { return dir_.File("scimsync.yaml"); }
  std::string Binary() const { return std::string(SCIMSYNC_BINARY_DIR) + "/daemon/scimsyncd"; }

  // Runs `scimsyncd args...` to completion; returns stdout and stderr together.
  std::string Run(std::vector<std::string> args, int* status = nullptr) {
    const std::string out = dir_.File("cmd-" + std::to_string(++commands_) + ".txt");
    args.insert(args.begin(), Binary());
    Process p;
    if (!p.Start(args, out, Env())) return "(could not start)";
    int s = p.Wait(30000);
    if (status != nullptr) *status = s;
    std::string text = ReadFile(out);
    transcript_ += "$ scimsyncd";
    for (size_t i = 1; i < args.size(); ++i) transcript_ += " " + args[i];
    transcript_ += "\n" + text + "\n";
    return text;
  }

  httplib::Result Post(const std::string& path, const std::string& header, const std::string& sig,
                       const std::string& body) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(10, 0);
    return c.Post(path.c_str(), {{header, sig}}, body, "application/json");
  }

  // Every key in Redis with its contents, as text.
  std::string DumpRedis() const {
    std::string out;
    std::istringstream keys(redis_.Cli({"--scan"}));
    for (std::string key; std::getline(keys, key);) {
      if (key.empty()) continue;
      const std::string type = redis_.Cli({"TYPE", key});
      out += key + " (" + type + "):\n";
      if (type == "string") out += redis_.Cli({"GET", key});
      if (type == "hash") out += redis_.Cli({"HGETALL", key});
      if (type == "list") out += redis_.Cli({"LRANGE", key, "0", "-1"});
      if (type == "set") out += redis_.Cli({"SMEMBERS", key});
      if (type == "zset") out += redis_.Cli({"ZRANGE", key, "0", "-1", "WITHSCORES"});
      if (type == "stream") out += redis_.Cli({"XRANGE", key, "-", "+"});
      out += "\n";
    }
    return out;
  }

  TempDir dir_;
  RedisServer redis_;
  EchoingHris hris_;
  int port_ = 0;  // the daemon's, once started
  Process daemon_;
  int commands_ = 0;
  std::string transcript_;
};

std::string UnmappableEvent() {
  // No email: JumpCloud requires one, so the worker dead-letters it with the validation problem.
  return R"({"id":"evt-noemail","type":"employee.created","employee":{"id":"E2",)"
         R"("firstName":"Grace","lastName":"Hopper"}})";
}

TEST_F(SecretsTest, NoOutputContainsASecretValue) {
  port_ = StartScimsyncd(daemon_, {Binary(), "--config", config()}, dir_.File("daemon.log"), Env());
  ASSERT_NE(port_, 0) << ReadFile(dir_.File("daemon.log"));

  const std::string hr = kSecrets.at("HR_SECRET");
  const std::string good = GenericEvent("evt-good", "E1", "employee.created");
  auto ok = Post("/webhooks/hr", "X-Scimsync-Signature", "sha256=" + HmacSha256Hex(hr, good), good);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 202) << ok->body;
  const std::string bad = UnmappableEvent();
  auto unmappable =
      Post("/webhooks/hr", "X-Scimsync-Signature", "sha256=" + HmacSha256Hex(hr, bad), bad);
  ASSERT_TRUE(unmappable);
  EXPECT_EQ(unmappable->status, 202);
  // Forged with a near miss of the real secret: the 401 must not say what was expected.
  auto forged =
      Post("/webhooks/hr", "X-Scimsync-Signature", "sha256=" + HmacSha256Hex(hr + "x", good), good);
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 401);
  const std::string gusto_body =
      R"({"uuid":"g-1","event_type":"employee.updated","entity_type":"Employee",)"
      R"("entity_uuid":"G1","timestamp":1671058841})";
  auto gusto = Post("/webhooks/gusto", "X-Gusto-Signature",
                    HmacSha256Hex(kSecrets.at("GUSTO_SECRET"), gusto_body), gusto_body);
  ASSERT_TRUE(gusto);
  EXPECT_EQ(gusto->status, 202) << gusto->body;
  std::string answers = ok->body + unmappable->body + forged->body + gusto->body;

  // Wait until the workers made the dry-run create and dead-lettered the two failures.
  std::string status;
  WaitFor(
      [&] {
        status = Run({"status", "--json", "--config", config()});
        return status.find("\"dead_letters\":2") != std::string::npos &&
               ReadFile(dir_.File("dry-run.jsonl")).find("POST") != std::string::npos;
      },
      60000, /*interval_ms=*/200);
  ASSERT_NE(status.find("\"dead_letters\":2"), std::string::npos)
      << status << "\n"
      << ReadFile(dir_.File("daemon.log"));
  EXPECT_GE(hris_.requests(), 1) << "the Gusto fetch never reached the HRIS";

  Run({"status", "--config", config()});
  const std::string list = Run({"dlq", "list", "--config", config()});
  std::istringstream lines(list);
  for (std::string line; std::getline(lines, line);) {
    const std::string id = line.substr(0, line.find_first_of(" \t"));
    if (!id.empty() && id.find_first_not_of("0123456789-") == std::string::npos) {
      Run({"dlq", "show", id, "--config", config()});
    }
  }
  int check = -1;
  Run({"check-config", "--config", config()}, &check);
  EXPECT_EQ(check, 0) << transcript_;
  WriteFile(dir_.File("event.json"), good);
  Run({"map", "--config", config(), "--profile", "hr", "--verify", "-H",
       "X-Scimsync-Signature: sha256=" + HmacSha256Hex(hr, good), dir_.File("event.json")});
  Run({"map", "--config", config(), "--profile", "hr", "--verify", "-H",
       "X-Scimsync-Signature: sha256=" + HmacSha256Hex("wrong", good), dir_.File("event.json")});
  WriteFile(dir_.File("gusto.json"), gusto_body);
  WriteFile(dir_.File("record.json"),
            R"({"uuid":"G1","first_name":"Ada","last_name":"Lovelace","email":"ada@example.com"})");
  Run({"map", "--config", config(), "--profile", "gusto", "--record", dir_.File("record.json"),
       dir_.File("gusto.json")});

  daemon_.Signal(SIGTERM);
  EXPECT_EQ(daemon_.Wait(15000), 0);

  const std::string log = ReadFile(dir_.File("daemon.log"));
  const std::string dry_run = ReadFile(dir_.File("dry-run.jsonl"));
  const std::string redis = DumpRedis();
  // The scenario did what it claims: without these the search below proves nothing.
  EXPECT_NE(dry_run.find("[redacted]"), std::string::npos) << dry_run;
  EXPECT_NE(redis.find("evt-noemail"), std::string::npos) << "no dead letter in Redis";
  EXPECT_NE(transcript_.find("\"ok\": true"), std::string::npos) << "map --verify did not pass";
  EXPECT_NE(transcript_.find("\"last_response\""), std::string::npos) << "no dlq show output";
  EXPECT_NE(transcript_.find("answered 503"), std::string::npos) << "no HRIS error to search";

  const std::map<std::string, const std::string*> outputs = {{"daemon log", &log},
                                                             {"dry-run file", &dry_run},
                                                             {"Redis", &redis},
                                                             {"command output", &transcript_},
                                                             {"HTTP answers", &answers}};
  for (const auto& [secret_name, value] : kSecrets) {
    for (const auto& [where, text] : outputs) {
      EXPECT_EQ(text->find(value), std::string::npos)
          << "the value of " << secret_name << " appears in the " << where << ":\n"
          << text->substr(text->find(value) > 300 ? text->find(value) - 300 : 0, 600);
    }
  }
}

}  // namespace
}  // namespace scimsync::testing
