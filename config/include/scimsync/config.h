// The daemon's configuration: plain structs with documented defaults, filled by a strict loader.
// The YAML keys are a contract with users' files; see config/examples/scimsync.yaml.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "scimsync/result.h"
#include "scimsync/yaml_reader.h"

namespace scimsync::config {

// A secret is never written in the config file: it names an environment variable (`*_env`) or a
// file (`*_file`). A relative file is looked up in $CREDENTIALS_DIRECTORY (systemd's
// LoadCredential=) when that is set, else relative to the working directory.
struct SecretRef {
  std::string env;
  std::string file;
  bool empty() const { return env.empty() && file.empty(); }
  // "environment variable JUMPCLOUD_API_KEY" / "file /run/credentials/x/key" -- never the value.
  std::string Describe() const;
};

// Reads the secret. Trailing "\r\n" is trimmed (files written by editors end with a newline).
// Errors name the variable or file and what to do; they never contain the value.
Result<std::string> ResolveSecret(const SecretRef& ref);

// Mozilla's "intermediate" TLS 1.2 cipher list (ssl-config.mozilla.org, version 5.7).
inline constexpr const char* kIntermediateTlsCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

// Limits on one webhook request, each answered with a 4xx that names the key (listen.max_*).
// Real HRIS webhooks are far below every default; the point is that a hostile sender cannot
// make the daemon spend memory or stack on it. The listener also refuses any single header line
// over 8 KiB. The listener hands them to the connectors with each request.
struct RequestLimits {
  int max_headers = 100;             // header lines: 431 beyond
  int64_t max_header_bytes = 32768;  // header names and values summed: 431 beyond
  int max_json_depth = 32;           // nesting of JSON objects/arrays or form brackets: 400
  int max_items = 1000;              // events in one request after fan-out: 413
  int64_t max_field_bytes = 16384;   // any one JSON string or form value, names included: 413
  int max_id_bytes = 512;            // employee key, event id, event type, timestamp: 400
};

// The RequestLimits are part of the listen section (listen.max_headers, ...).
struct ListenOptions : RequestLimits {
  std::string address = "127.0.0.1";
  // 0: the kernel picks a free port, and the "scimsyncd started" log line says which (`port`).
  // For tests and private instances; a real HRIS needs a port that stays the same.
  int port = 8080;
  // A larger body is answered 413 before it is read into memory.
  int64_t max_body_bytes = 1 << 20;
  // Event-loop threads of the listener. Each serves any number of connections; the webhooks a
  // loop has read are written to Redis together while the other loops go on reading, so a few
  // per core are enough (bench/README.md). Connections are bounded by max_connections.
  int threads = 2;
  // An idle keep-alive connection is closed after this long (Personio gives up after 3 s).
  int keep_alive_timeout_s = 2;
  // Requests served on one connection before it is closed, so that a load balancer in front
  // gets to spread long-lived senders again.
  int keep_alive_max_requests = 100;
  // Connections held open at once, over all listener threads. When full, the oldest idle
  // keep-alive connection is closed to make room, else the oldest request that has been arriving
  // for over a second (a slow or hostile sender), else the new connection is answered 503 and
  // closed. 0 (default): the open-file limit (RLIMIT_NOFILE) less 128 descriptors kept for Redis,
  // the SCIM and HRIS clients, logs and the config (half the limit when it is 256 or less); so
  // the daemon never runs out of descriptors and /healthz stays answerable however many
  // connections a client opens.
  int max_connections = 0;
  // Optional: serve HTTPS directly. Both or neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are all forward-secret and left to OpenSSL).
  // The default is Mozilla's "intermediate" profile: ECDHE/DHE key exchange with AEAD ciphers
  // only, so no suite without forward secrecy (AES128-SHA, AES256-SHA256...) is negotiated.
  // TLS 1.0 and 1.1 are never offered.
  std::string tls_ciphers = kIntermediateTlsCiphers;
};

struct RedisOptions {
  // redis://[user:password@]host[:port][/db] or unix:///path/to/redis.sock[?db=N]
  // (unix://relative/path.sock is relative to the working directory).
  std::string url = "redis://127.0.0.1:6379/0";
  SecretRef password{"REDIS_PASSWORD", ""};  // optional: unset variable means no AUTH
  std::string key_prefix = "scimsync";
  // Fixed at first start: changing it re-homes employees to other streams, which breaks
  // per-employee ordering for items already queued. Drain the queue before changing it.
  int partitions = 16;
  int connect_timeout_ms = 2000;
  // Must exceed the longest blocking read the workers issue (they block for at most 1 s).
  int command_timeout_ms = 5000;

  // High availability through Redis Sentinel: when `sentinels` ("host:port", asked in order) is
  // set, every connection asks them for `master_name`'s primary before connecting and again
  // after a connection error or a READONLY reply, so a failover is followed without a restart.
  // `url` then supplies only the user, password and database: its host and port are ignored.
  std::vector<std::string> sentinels;
  std::string master_name;
  // AUTH sent to the sentinels (their own `requirepass`); empty: none.
  SecretRef sentinel_password;
  // Each webhook's 202 waits until this many replicas hold its items (WAIT), so that a primary
  // that dies right after answering loses nothing that was acknowledged. The price: every 202
  // takes a replication round trip, and while fewer replicas are reachable webhooks are answered
  // 503 (the HRIS retries) instead of being accepted. 0: answer once the primary has it.
  int wait_replicas = 0;
  // How long one webhook waits for its replicas before it is answered 503.
  int wait_timeout_ms = 1000;

  // Filled by the loader from `url`.
  std::string host;  // empty for unix sockets
  int port = 6379;
  std::string unix_path;
  int db = 0;
  std::string url_user;
  std::string url_password;  // from the URL itself; discouraged, but supported
};

struct TargetOptions {
  std::string base_url = "https://api.jumpcloud.com/scim/v2";
  SecretRef api_key{"JUMPCLOUD_API_KEY", ""};
  // "x-api-key" (JumpCloud's default), "bearer" (Authorization: Bearer KEY), or another header.
  std::string auth_header = "x-api-key";
  std::string org_id;  // sent as x-org-id for multi-tenant admins
  int timeout_ms = 10000;
  // Summed over every worker of every instance sharing one Redis. 0 disables the limit; a 429
  // still holds every instance (others learn of it within 250 ms).
  double max_requests_per_second = 10;
  // No network: each request that would be sent is logged and appended to dry_run_file.
  bool dry_run = false;
  std::string dry_run_file = "/var/lib/scimsync/dry-run.jsonl";
  std::string ca_file;  // extra CA bundle; default is the system store
  bool insecure_skip_verify = false;
  // A leaver JumpCloud does not know (a termination, or a later event for an employee whose
  // newest known state is terminated): false (default) creates no account; true creates it
  // suspended, e.g. to keep an audit account per employee. Never an active one either way.
  bool create_leavers = false;
  // How long the snapshot of what scimsync last applied to a user (kept with its link in Redis)
  // is trusted: an update whose desired state equals a younger snapshot sends nothing, one that
  // differs is one PATCH without a GET. An older snapshot is refreshed with a GET first. Default
  // 86400 (24 h): a manual edit in JumpCloud is overwritten at the employee's next change anyway,
  // and reconciliation finds it in between. Lower: more GETs, sooner re-reads. 0: no snapshots,
  // every update GETs the user first (two requests per change).
  int64_t snapshot_max_age_s = 86400;
};

struct RetryOptions {
  int64_t base_delay_ms = 1000;
  int64_t max_delay_ms = 300000;
  int max_attempts = 10;
  int64_t max_age_s = 259200;  // 3 days: longer than a long weekend's outage
};

struct GuardOptions {
  int max_suspends = 50;
  double max_suspend_percent = 10;
  int64_t window_s = 3600;
};

// Per-employee outcome history (`scimsyncd employee`, `scimsyncd sync`; docs/operations.md).
struct HistoryOptions {
  // Outcomes kept per employee, newest first; 0 keeps none (the commands then show no history).
  // An entry is 200-400 bytes of Redis memory, so the default bounds an employee at ~20 KB;
  // more entries answer "what happened" further back at that cost per busy employee.
  int max_entries = 50;
  // An employee's history disappears this long after their last outcome, and entries older than
  // this are not shown. Longer keeps leavers' records longer (they stop changing).
  int64_t max_age_days = 90;
};

struct WorkersOptions {
  // 0 runs an ingest-only instance: it answers webhooks and leaves the queue to other instances.
  int threads = 4;
  // Niceness the worker threads add to the process's (0-19). When the CPU is short, webhooks are
  // then answered first (an HRIS that waits too long retries, adding load) and the workers catch
  // up from the durable queue right after; when it is not short this changes nothing. At 10 a
  // busy listener still leaves the workers about a tenth of a contended core. 0: same priority.
  int nice = 10;
  RetryOptions retry;
  GuardOptions guard;
  HistoryOptions history;
  int drain_timeout_s = 30;
  // Items of profiles whose payload carries the record are ordered by their time (occurred_at).
  // One dated further ahead than this (a bogus date, or milliseconds sent where seconds were)
  // is applied as if it happened now, logged and counted, and a stored version that far ahead
  // is disregarded: otherwise it would drop every later event of the employee, terminations
  // included. Default 24 h; lower trusts senders' clocks less, 0 clamps anything in the future.
  int64_t max_future_skew_s = 86400;
  // Partition lease, renewed every lease_ms / 4: a dead or frozen instance's partitions (and the
  // items it had in hand) move to the others this long after its last renewal. Shorter fails
  // over faster but costs more Redis round trips and lets a short stall (a long GC-like pause,
  // a slow disk) hand partitions over. Items a dead worker had taken from the retry set come
  // back after 6 leases. Default 10000; tests use about 1000.
  int64_t lease_ms = 10000;
  // A stream item handed to workers more than this many times without an outcome (each worker
  // that took it crashed or froze) is dead-lettered with that reason instead of being tried
  // again, so one poison event cannot crash-loop every instance. Higher: more patience with
  // restarts and Redis outages mid-sync (each can add a delivery); 0: no limit.
  int max_deliveries = 10;
  // After taking a partition whose lease expired (its owner died or froze), wait this long
  // before working it, so a write the old owner sent just before its lease ran out has landed.
  // A partition handed over cleanly is worked at once.
  int64_t takeover_grace_ms = 3000;
};

// profiles[].reconcile: what a reconciliation (docs/reconcile.md) may do on its own.
struct ProfileReconcileOptions {
  // What happens to an orphan, an active JumpCloud user in this profile's scope whose externalId
  // no listed employee has: "report" (default) lists it and leaves it alone -- it may belong to
  // another provisioning tool or an old HRIS; "suspend" enqueues a sync, which asks the HRIS for
  // the employee and suspends the user when the HRIS answers 404 (fetch.not_found).
  std::string orphans = "report";
  // A run whose HRIS list is more than this many percent shorter than the last successful
  // run's is refused (exit 3, nothing enqueued) unless `--allow-shrink`: a truncated list must
  // not read as people leaving. 100 turns the check off; 0 refuses any shrink.
  double max_shrink_percent = 10;
};

struct ProfileConfig {
  std::string name;       // URL segment: /webhooks/{name}
  std::string connector;  // built-in profile name or a path to a profile file
  // Active webhook secrets; several during a rotation. Resolved at start and on SIGHUP.
  std::vector<SecretRef> secrets;
  int64_t dedup_window_s = int64_t{7} * 24 * 3600;
  // Run a reconciliation (docs/reconcile.md) this often; 0 (the default) never runs one on a
  // schedule. One instance of a fleet runs it per period. Each run lists every employee in the
  // HRIS and every user in JumpCloud, so a period shorter than an hour mostly adds API load.
  int64_t reconcile_every_s = 0;
  ProfileReconcileOptions reconcile;
  // userName after creation. false (`username_updates: keep`, the default): the userName is set
  // when the account is created and then left alone, because it is the login and the name of the
  // local account on the user's bound Mac or Windows machine; a rename there breaks the home
  // folder binding. The email and every other attribute still follow HR, and a line is logged
  // when HR's derived userName differs from the account's. true (`follow`): renamed with HR.
  bool follow_user_name = false;
  // `scope_prefix`: this profile's identity namespace in JumpCloud, default its name. With more
  // than one scope configured (Config::multi_scope) the externalId written is
  // "<scope_prefix>:<id>" ("<scope_prefix>/<tenant>:<id>" for a tenant), so two HR sources with
  // the same employee ids never share an account. Keep it stable: changing it orphans every
  // account the profile made (docs/profiles.md: "Identity scopes"). Letters, digits, '.', '_',
  // '-'; unique across profiles.
  std::string scope_prefix;
  // Filled by the loader: the keys of the entry's `tenants` (letters, digits, '.', '_', '-'; not
  // "." or ".."), sorted. Empty: the profile serves no tenant segment.
  std::vector<std::string> tenants;
  // The whole YAML entry, for connector-specific keys (api, fields, tenants...), which the
  // connectors library reads strictly with MapReader.
  YAML::Node node;
  std::string path;  // "profiles[0]"
};

struct LogOptions {
  std::string level = "info";  // SCIMSYNC_LOG_LEVEL overrides
};

struct Config {
  std::string file;  // where it was loaded from
  ListenOptions listen;
  RedisOptions redis;
  TargetOptions target;
  WorkersOptions workers;
  LogOptions log;
  std::vector<ProfileConfig> profiles;
  // Filled by the loader: true when the profiles define more than one identity scope (a profile
  // without tenants is one scope, each configured tenant is one). A single scope writes bare
  // externalIds, as before scopes existed.
  bool multi_scope = false;
};

// The externalId that anchors `id` (the HRIS employee id) of `profile`'s `tenant` in JumpCloud:
// `id` itself for a single-scope config, else "<scope_prefix>[/<tenant>]:<id>".
std::string ScopedExternalId(const Config& config, const ProfileConfig& profile,
                             const std::string& tenant, const std::string& id);
// "<scope_prefix>[/<tenant>]:" for a multi-scope config, "" for a single scope.
std::string ExternalIdPrefix(const Config& config, const ProfileConfig& profile,
                             const std::string& tenant);
std::string ExternalIdPrefix(bool multi_scope, const std::string& scope_prefix,
                             const std::string& tenant);

// The profile entry named `name`; nullptr when there is none.
const ProfileConfig* FindProfile(const Config& config, const std::string& name);
// The configured profiles' names, ", " between them: for "no profile named X (configured: ...)".
std::string ProfileNames(const Config& config);
// Every configured secret (the API key, the Redis passwords, each profile's) that resolves here
// and is long enough to mask (4 characters or more): the tools mask these in what they print,
// as a second line of defence behind the redaction done when it was recorded.
std::vector<std::string> ResolvedSecrets(const Config& config);
// `text` with each of `secrets` replaced by "[redacted]".
std::string MaskSecrets(std::string text, const std::vector<std::string>& secrets);

// Keys read by the config loader inside each profile entry; connectors read the rest.
const std::vector<std::string>& CommonProfileKeys();

// Loads and validates. Returns every problem found (empty = valid). `out` is filled as far as
// possible even when problems are returned.
std::vector<Problem> LoadFile(const std::string& path, Config* out);
std::vector<Problem> LoadString(const std::string& text, const std::string& file, Config* out);

// Checks that every secret the config names can be read now (env set, file readable).
std::vector<Problem> CheckSecrets(const Config& config);

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

// Splits "scheme://host[:port]/path" into parts. Returns false when it is not a URL.
struct UrlParts {
  std::string scheme;
  std::string host;
  int port = 0;  // 0 when absent
  std::string path;
};
bool ParseUrl(const std::string& url, UrlParts* out);

// Splits "host:port" or "[v6::addr]:port" (redis.sentinels). Returns false unless both parts are
// there and the port is 1..65535.
bool ParseHostPort(const std::string& text, std::string* host, int* port);

}  // namespace scimsync::config
