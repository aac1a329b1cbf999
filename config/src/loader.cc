#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "scimsync/config.h"
#include "scimsync/log.h"

namespace scimsync::config {
namespace {

bool IsSafeName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) ||
           std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

// Tenants and scope prefixes: URL segments and parts of externalIds and Redis keys.
bool IsSafeTenant(const std::string& s) {
  if (s.empty() || s.size() > 128 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

bool IsHeaderToken(const std::string& s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

// Reads `<prefix>_env` / `<prefix>_file` into *ref. An explicit empty `_env: ""` clears it.
void ReadSecretRef(MapReader& r, const std::string& prefix, SecretRef* ref) {
  std::string env, file;
  bool has_env = r.String(prefix + "_env", &env);
  bool has_file = r.String(prefix + "_file", &file);
  if (has_env && has_file && !env.empty() && !file.empty()) {
    r.Error(prefix + "_file", "give either " + prefix + "_env or " + prefix + "_file, not both");
    return;
  }
  if (has_env) *ref = SecretRef{env, ""};
  if (has_file) *ref = SecretRef{"", file};
  if (r.Has(prefix)) {
    r.Error(prefix, "secrets are never written in the config file: use " + prefix +
                        "_env (an environment variable's name) or " + prefix +
                        "_file (a file's path)");
  }
  r.Ignore(prefix);
}

void ParseRedisUrl(MapReader& r, RedisOptions* o) {
  const std::string& url = o->url;
  const std::string key = "url";
  if (url.rfind("unix://", 0) == 0) {
    std::string rest = url.substr(7);
    auto q = rest.find('?');
    std::string query;
    if (q != std::string::npos) {
      query = rest.substr(q + 1);
      rest = rest.substr(0, q);
    }
    if (rest.empty()) {
      r.Error(key,
              "a unix URL needs a socket path: unix:///run/redis/redis.sock (absolute) or "
              "unix://var/redis.sock (relative to the working directory)");
      return;
    }
    o->unix_path = rest;
    o->host.clear();
    if (!query.empty()) {
      if (query.rfind("db=", 0) != 0) {
        r.Error(key, "the only query parameter a unix URL takes is db=N");
        return;
      }
      char* end = nullptr;
      long db = std::strtol(query.c_str() + 3, &end, 10);
      if (*end != '\0' || db < 0 || db > 15) {
        r.Error(key, "db must be a number from 0 to 15");
        return;
      }
      o->db = static_cast<int>(db);
    }
    return;
  }
  if (url.rfind("redis://", 0) != 0) {
    r.Error(key,
            "must start with redis:// or unix:// (rediss:// is not supported: use stunnel "
            "or a unix socket)");
    return;
  }
  std::string rest = url.substr(8);
  auto at = rest.rfind('@');
  if (at != std::string::npos) {
    std::string userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = userinfo.find(':');
    if (colon == std::string::npos) {
      o->url_password = userinfo;
    } else {
      o->url_user = userinfo.substr(0, colon);
      o->url_password = userinfo.substr(colon + 1);
    }
  }
  std::string hostport = rest;
  auto slash = rest.find('/');
  if (slash != std::string::npos) {
    hostport = rest.substr(0, slash);
    std::string db = rest.substr(slash + 1);
    if (!db.empty()) {
      char* end = nullptr;
      long v = std::strtol(db.c_str(), &end, 10);
      if (*end != '\0' || v < 0 || v > 15) {
        r.Error(key, "the path must be a database number from 0 to 15 (redis://host:6379/0)");
        return;
      }
      o->db = static_cast<int>(v);
    }
  }
  std::string host = hostport;
  int port = 6379;
  if (!hostport.empty() && hostport[0] == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos) {
      r.Error(key, "unterminated IPv6 address");
      return;
    }
    host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size() && hostport[close + 1] == ':') {
      port = static_cast<int>(std::strtol(hostport.c_str() + close + 2, nullptr, 10));
    }
  } else {
    auto colon = hostport.rfind(':');
    if (colon != std::string::npos) {
      host = hostport.substr(0, colon);
      char* end = nullptr;
      long v = std::strtol(hostport.c_str() + colon + 1, &end, 10);
      port = (*end == '\0') ? static_cast<int>(v) : -1;
    }
  }
  if (host.empty()) {
    r.Error(key, "needs a host: redis://127.0.0.1:6379/0");
    return;
  }
  if (port <= 0 || port > 65535) {
    r.Error(key, "port must be between 1 and 65535");
    return;
  }
  o->host = host;
  o->port = port;
}

void ReadListen(const YAML::Node& node, Problems* p, ListenOptions* o) {
  MapReader r(node, "listen", p);
  r.String("address", &o->address);
  if (o->address.empty()) r.Error("address", "must not be empty (e.g. 127.0.0.1 or 0.0.0.0)");
  r.Int("port", &o->port, 0, 65535);
  r.Int("max_body_bytes", &o->max_body_bytes, 1024, int64_t{64} << 20);
  r.Int("threads", &o->threads, 1, 1024);
  r.Int("keep_alive_timeout_s", &o->keep_alive_timeout_s, 1, 300);
  r.Int("keep_alive_max_requests", &o->keep_alive_max_requests, 1, 1'000'000);
  r.Int("max_headers", &o->max_headers, 8, 10000);
  r.Int("max_header_bytes", &o->max_header_bytes, 1024, int64_t{1} << 20);
  // The upper bound is the parser's own: connectors refuse deeper JSON whatever is configured.
  r.Int("max_json_depth", &o->max_json_depth, 2, 128);
  r.Int("max_items", &o->max_items, 1, 100000);
  r.Int("max_field_bytes", &o->max_field_bytes, 256, int64_t{64} << 20);
  r.Int("max_id_bytes", &o->max_id_bytes, 64, 65536);
  // 0: derived from the open-file limit at start (config.h).
  r.Int("max_connections", &o->max_connections, 0, 1 << 20);
  r.String("tls_ciphers", &o->tls_ciphers);
  if (o->tls_ciphers.empty()) {
    r.Error("tls_ciphers",
            "must not be empty: leave it out for Mozilla's intermediate list, or give an "
            "OpenSSL cipher list");
  }
  r.String("tls_cert_file", &o->tls_cert_file);
  r.String("tls_key_file", &o->tls_key_file);
  if (o->tls_cert_file.empty() != o->tls_key_file.empty()) {
    r.Error(o->tls_cert_file.empty() ? "tls_cert_file" : "tls_key_file",
            "tls_cert_file and tls_key_file go together: set both to serve HTTPS, or neither");
  }
}

void ReadRedis(const YAML::Node& node, Problems* p, RedisOptions* o) {
  MapReader r(node, "redis", p);
  r.String("url", &o->url);
  ParseRedisUrl(r, o);
  ReadSecretRef(r, "password", &o->password);
  r.String("key_prefix", &o->key_prefix);
  if (o->key_prefix.empty() || o->key_prefix.find_first_of("{} \t\r\n") != std::string::npos) {
    r.Error("key_prefix", "must be non-empty without spaces or braces (braces are hash tags)");
  }
  r.Int("partitions", &o->partitions, 1, 4096);
  r.Int("connect_timeout_ms", &o->connect_timeout_ms, 50, 600000);
  r.Int("command_timeout_ms", &o->command_timeout_ms, 1500, 600000);

  r.StringList("sentinels", &o->sentinels);
  for (const std::string& s : o->sentinels) {
    std::string host;
    int port = 0;
    if (!ParseHostPort(s, &host, &port)) {
      r.Error("sentinels", "\"" + s +
                               "\" is not host:port; list each sentinel as \"10.0.0.5:26379\" "
                               "(IPv6: \"[::1]:26379\")");
    }
  }
  r.String("master_name", &o->master_name);
  ReadSecretRef(r, "sentinel_password", &o->sentinel_password);
  if (!o->sentinels.empty()) {
    if (o->master_name.empty()) {
      r.Error("master_name",
              "redis.sentinels needs redis.master_name: the name the sentinels monitor "
              "(\"sentinel monitor NAME ...\" in sentinel.conf)");
    }
    if (!o->unix_path.empty()) {
      r.Error("url",
              "with redis.sentinels the primary is reached over TCP: use a redis:// URL "
              "(its host and port are ignored; its user, password and database apply)");
    }
  } else {
    if (!o->master_name.empty()) {
      r.Error("master_name", "is used only with redis.sentinels: list the sentinels, or remove it");
    }
    if (!o->sentinel_password.empty()) {
      r.Error("sentinel_password_env",
              "is used only with redis.sentinels: list the sentinels, or remove it");
    }
  }
  r.Int("wait_replicas", &o->wait_replicas, 0, 16);
  r.Int("wait_timeout_ms", &o->wait_timeout_ms, 10, 60000);
  if (o->wait_replicas > 0 && o->wait_timeout_ms >= o->command_timeout_ms) {
    r.Error("wait_timeout_ms", "must be below redis.command_timeout_ms (" +
                                   std::to_string(o->command_timeout_ms) +
                                   " ms), or a slow replica looks like a dead Redis");
  }
}

void ReadTarget(const YAML::Node& node, Problems* p, TargetOptions* o) {
  MapReader r(node, "target", p);
  r.String("base_url", &o->base_url);
  UrlParts url;
  if (!ParseUrl(o->base_url, &url) || (url.scheme != "https" && url.scheme != "http")) {
    r.Error("base_url", "must be an https:// URL such as https://api.jumpcloud.com/scim/v2");
  } else if (url.scheme == "http" && !IsLoopbackHost(url.host)) {
    r.Error("base_url", "must start with https:// (http:// only for loopback)");
  }
  ReadSecretRef(r, "api_key", &o->api_key);
  r.String("auth_header", &o->auth_header);
  if (!IsHeaderToken(o->auth_header)) {
    r.Error("auth_header", "must be x-api-key, bearer, or an HTTP header name");
  }
  r.String("org_id", &o->org_id);
  r.Int("timeout_ms", &o->timeout_ms, 100, 600000);
  r.Double("max_requests_per_second", &o->max_requests_per_second, 0, 100000);
  r.Bool("dry_run", &o->dry_run);
  r.String("dry_run_file", &o->dry_run_file);
  if (o->dry_run && o->dry_run_file.empty()) {
    r.Error("dry_run_file", "must name a file when dry_run is true");
  }
  r.String("ca_file", &o->ca_file);
  r.Bool("insecure_skip_verify", &o->insecure_skip_verify);
  r.Bool("create_leavers", &o->create_leavers);
  r.Int("snapshot_max_age_s", &o->snapshot_max_age_s, 0, int64_t{365} * 86400);
  if (!o->dry_run && o->api_key.empty()) {
    r.Error("api_key_env",
            "the JumpCloud API key is required: set api_key_env or api_key_file "
            "(or dry_run: true)");
  }
}

void ReadWorkers(const YAML::Node& node, Problems* p, WorkersOptions* o) {
  MapReader r(node, "workers", p);
  r.Int("threads", &o->threads, 0, 256);
  r.Int("nice", &o->nice, 0, 19);
  r.Int("drain_timeout_s", &o->drain_timeout_s, 0, 3600);
  r.Int("max_future_skew_s", &o->max_future_skew_s, 0, int64_t{365} * 86400);
  r.Int("lease_ms", &o->lease_ms, 1000, 600000);
  r.Int("max_deliveries", &o->max_deliveries, 0, 100000);
  r.Int("takeover_grace_ms", &o->takeover_grace_ms, 0, 600000);
  {
    MapReader rr(r.Child("retry"), r.PathOf("retry"), p);
    rr.Int("base_delay_ms", &o->retry.base_delay_ms, 1, 3'600'000);
    rr.Int("max_delay_ms", &o->retry.max_delay_ms, 1, 86'400'000);
    rr.Int("max_attempts", &o->retry.max_attempts, 1, 1000);
    rr.Int("max_age_s", &o->retry.max_age_s, 1, int64_t{90} * 86400);
    if (o->retry.max_delay_ms < o->retry.base_delay_ms) {
      rr.Error("max_delay_ms", "must be at least base_delay_ms");
    }
  }
  {
    MapReader rg(r.Child("guard"), r.PathOf("guard"), p);
    rg.Int("max_suspends", &o->guard.max_suspends, 0, 1'000'000);
    rg.Double("max_suspend_percent", &o->guard.max_suspend_percent, 0, 100);
    rg.Int("window_s", &o->guard.window_s, 1, int64_t{30} * 86400);
  }
  {
    MapReader rh(r.Child("history"), r.PathOf("history"), p);
    rh.Int("max_entries", &o->history.max_entries, 0, 1000);
    rh.Int("max_age_days", &o->history.max_age_days, 1, 3650);
  }
}

void ReadProfiles(const YAML::Node& node, Problems* p, std::vector<ProfileConfig>* out) {
  if (!node.IsDefined() || node.IsNull()) {
    p->Add("profiles", 0, "at least one profile is required (e.g. {name: hr, connector: generic})");
    return;
  }
  if (!node.IsSequence()) {
    p->Add("profiles", node, "must be a list of profiles");
    return;
  }
  size_t i = 0;
  for (const auto& it : node) {
    const YAML::Node entry = it;
    ProfileConfig pc;
    pc.path = "profiles[" + std::to_string(i++) + "]";
    pc.node = entry;
    MapReader r(entry, pc.path, p);
    r.String("name", &pc.name, true);
    if (!pc.name.empty() && !IsSafeName(pc.name)) {
      r.Error("name", "must be lowercase letters, digits, '-' or '_' (it is a URL segment)");
    }
    r.String("connector", &pc.connector, true);
    SecretRef one;
    ReadSecretRef(r, "secret", &one);
    if (!one.empty()) pc.secrets.push_back(one);
    YAML::Node list = r.Child("secrets");
    if (list.IsDefined() && !list.IsNull()) {
      if (!list.IsSequence()) {
        r.Error("secrets", "must be a list of {env: NAME} or {file: PATH}");
      } else {
        size_t k = 0;
        for (const auto& sit : list) {
          const YAML::Node s = sit;
          MapReader sr(s, r.PathOf("secrets") + "[" + std::to_string(k++) + "]", p);
          SecretRef ref;
          sr.String("env", &ref.env);
          sr.String("file", &ref.file);
          if (ref.env.empty() == ref.file.empty())
            sr.Error("env", "give exactly one of env or file");
          else
            pc.secrets.push_back(ref);
        }
      }
    }
    r.Int("dedup_window_s", &pc.dedup_window_s, 60, int64_t{90} * 86400);
    // A reconciliation lists the whole HRIS and all of JumpCloud: more often than every five
    // minutes would spend the HRIS's API quota on re-reading unchanged data.
    if (r.Int("reconcile_every_s", &pc.reconcile_every_s, 0, int64_t{30} * 86400) &&
        pc.reconcile_every_s > 0 && pc.reconcile_every_s < 300) {
      r.Error("reconcile_every_s",
              "must be 0 (off) or at least 300 (got " + std::to_string(pc.reconcile_every_s) + ")");
      pc.reconcile_every_s = 0;
    }
    if (r.Has("reconcile")) {
      MapReader rr(r.Child("reconcile"), r.PathOf("reconcile"), p);
      if (rr.String("orphans", &pc.reconcile.orphans) && pc.reconcile.orphans != "report" &&
          pc.reconcile.orphans != "suspend") {
        rr.Error("orphans",
                 "must be report (the default: list them, change nothing) or suspend "
                 "(got '" +
                     pc.reconcile.orphans + "')");
        pc.reconcile.orphans = "report";
      }
      rr.Double("max_shrink_percent", &pc.reconcile.max_shrink_percent, 0, 100);
      rr.Finish();
    }
    std::string updates = "keep";
    if (r.String("username_updates", &updates) && updates != "keep" && updates != "follow") {
      r.Error("username_updates",
              "must be keep (the default: userName stable after creation) or "
              "follow (renamed when HR's derived userName changes)");
    }
    pc.follow_user_name = updates == "follow";
    pc.scope_prefix = pc.name;
    if (r.String("scope_prefix", &pc.scope_prefix) && !IsSafeTenant(pc.scope_prefix)) {
      r.Error("scope_prefix",
              "must be 1-128 letters, digits, '.', '_' or '-' (not . or ..): it starts every "
              "externalId this profile writes when several scopes are configured");
    }
    // The tenants themselves are read by the connectors library; here only their names, which
    // are URL segments and parts of ids and Redis keys.
    if (YAML::Node tenants = r.Child("tenants"); tenants.IsDefined() && tenants.IsMap()) {
      for (const auto& kv : tenants) {
        const std::string t = kv.first.Scalar();
        if (!IsSafeTenant(t)) {
          p->Add(r.PathOf("tenants") + "." + t, kv.first,
                 "a tenant must be 1-128 letters, digits, '.', '_' or '-', and not . or .. "
                 "(it is the /webhooks/{profile}/{tenant} segment)");
        }
        pc.tenants.push_back(t);
      }
      std::sort(pc.tenants.begin(), pc.tenants.end());
    }
    // Connector-specific keys are checked by the connectors library.
    if (entry.IsMap()) {
      for (const auto& kv : entry) r.Ignore(kv.first.Scalar());
    }
    for (const auto& other : *out) {
      if (!pc.name.empty() && other.name == pc.name) {
        r.Error("name", "profile name '" + pc.name + "' is used twice");
      }
      if (!pc.scope_prefix.empty() && other.scope_prefix == pc.scope_prefix &&
          other.name != pc.name) {
        r.Error("scope_prefix", "scope prefix '" + pc.scope_prefix + "' is also " + other.path +
                                    "'s: two HR sources would share externalIds; give each "
                                    "profile its own scope_prefix");
      }
    }
    out->push_back(std::move(pc));
  }
}

}  // namespace

const std::vector<std::string>& CommonProfileKeys() {
  static const std::vector<std::string> keys = {
      "name",           "connector",         "secret_env", "secret_file",      "secrets",
      "dedup_window_s", "reconcile_every_s", "reconcile",  "username_updates", "scope_prefix"};
  return keys;
}

std::string ExternalIdPrefix(bool multi_scope, const std::string& scope_prefix,
                             const std::string& tenant) {
  if (!multi_scope) return "";
  return scope_prefix + (tenant.empty() ? "" : "/" + tenant) + ":";
}

std::string ExternalIdPrefix(const Config& config, const ProfileConfig& profile,
                             const std::string& tenant) {
  return ExternalIdPrefix(config.multi_scope, profile.scope_prefix, tenant);
}

const ProfileConfig* FindProfile(const Config& config, const std::string& name) {
  for (const ProfileConfig& p : config.profiles) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::string ProfileNames(const Config& config) {
  std::string names;
  for (const ProfileConfig& p : config.profiles) names += (names.empty() ? "" : ", ") + p.name;
  return names;
}

std::vector<std::string> ResolvedSecrets(const Config& config) {
  std::vector<SecretRef> refs = {config.target.api_key, config.redis.password,
                                 config.redis.sentinel_password};
  for (const ProfileConfig& p : config.profiles) {
    refs.insert(refs.end(), p.secrets.begin(), p.secrets.end());
  }
  std::vector<std::string> out;
  for (const SecretRef& ref : refs) {
    if (ref.empty()) continue;
    auto v = ResolveSecret(ref);
    if (v.ok() && v->size() >= 4) out.push_back(*v);
  }
  return out;
}

std::string MaskSecrets(std::string text, const std::vector<std::string>& secrets) {
  for (const std::string& s : secrets) {
    if (s.empty()) continue;
    for (size_t at = text.find(s); at != std::string::npos; at = text.find(s, at)) {
      text.replace(at, s.size(), "[redacted]");
    }
  }
  return text;
}

std::string ScopedExternalId(const Config& config, const ProfileConfig& profile,
                             const std::string& tenant, const std::string& id) {
  return ExternalIdPrefix(config, profile, tenant) + id;
}

std::string SecretRef::Describe() const {
  if (!env.empty()) return "environment variable " + env;
  if (!file.empty()) return "file " + file;
  return "(no secret configured)";
}

Result<std::string> ResolveSecret(const SecretRef& ref) {
  std::string value;
  if (!ref.env.empty()) {
    const char* v = std::getenv(ref.env.c_str());  // NOLINT(concurrency-mt-unsafe): read-only env
    if (v == nullptr || *v == '\0') {
      return Error::Invalid("environment variable " + ref.env +
                            " is not set or empty: export it, or use a *_file setting");
    }
    value = v;
  } else if (!ref.file.empty()) {
    std::string path = ref.file;
    const char* creds = std::getenv("CREDENTIALS_DIRECTORY");  // NOLINT(concurrency-mt-unsafe)
    if (path[0] != '/' && creds != nullptr && *creds != '\0') {
      path = std::string(creds) + "/" + path;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return Error::Invalid("cannot read secret file " + path +
                            ": check that it exists and is readable by the daemon's user");
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    value = ss.str();
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
    if (value.empty()) return Error::Invalid("secret file " + path + " is empty");
  } else {
    return Error::Invalid("no secret configured");
  }
  return value;
}

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

bool ParseHostPort(const std::string& text, std::string* host, int* port) {
  std::string h;
  std::string p;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return false;
    }
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
    if (h.find(':') != std::string::npos) return false;  // bare IPv6 needs brackets
  }
  if (h.empty() || p.empty() || p.size() > 5) return false;
  if (!std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  int v = 0;
  std::from_chars(p.data(), p.data() + p.size(), v);  // at most 5 digits: cannot overflow
  if (v < 1 || v > 65535) return false;
  *host = h;
  *port = v;
  return true;
}

bool ParseUrl(const std::string& url, UrlParts* out) {
  auto sep = url.find("://");
  if (sep == std::string::npos || sep == 0) return false;
  UrlParts u;
  u.scheme = url.substr(0, sep);
  std::transform(u.scheme.begin(), u.scheme.end(), u.scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string rest = url.substr(sep + 3);
  auto slash = rest.find('/');
  std::string hostport = slash == std::string::npos ? rest : rest.substr(0, slash);
  u.path = slash == std::string::npos ? "" : rest.substr(slash);
  if (hostport.find('@') != std::string::npos) return false;
  if (!hostport.empty() && hostport[0] == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos) return false;
    u.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return false;
      u.port = static_cast<int>(std::strtol(hostport.c_str() + close + 2, nullptr, 10));
      if (u.port <= 0 || u.port > 65535) return false;
    }
  } else {
    auto colon = hostport.rfind(':');
    u.host = hostport.substr(0, colon);
    if (colon != std::string::npos) {
      char* end = nullptr;
      long p = std::strtol(hostport.c_str() + colon + 1, &end, 10);
      if (*end != '\0' || p <= 0 || p > 65535) return false;
      u.port = static_cast<int>(p);
    }
  }
  if (u.host.empty()) return false;
  *out = std::move(u);
  return true;
}

std::vector<Problem> LoadString(const std::string& text, const std::string& file, Config* out) {
  Problems p(file);
  *out = Config{};
  out->file = file;
  YAML::Node root;
  if (!ParseYaml(text, &root, &p)) return p.list();
  if (!root.IsDefined() || root.IsNull()) {
    p.Add("", 0, "the file is empty: see config/examples/scimsync.yaml");
    return p.list();
  }
  MapReader r(root, "", &p);
  ReadListen(r.Child("listen"), &p, &out->listen);
  ReadRedis(r.Child("redis"), &p, &out->redis);
  ReadTarget(r.Child("target"), &p, &out->target);
  ReadWorkers(r.Child("workers"), &p, &out->workers);
  {
    MapReader lr(r.Child("log"), "log", &p);
    lr.String("level", &out->log.level);
    log::Level level;
    if (!log::ParseLevel(out->log.level, &level)) {
      lr.Error("level", "must be one of debug, info, warn, error");
    }
  }
  ReadProfiles(r.Child("profiles"), &p, &out->profiles);
  size_t scopes = 0;
  for (const ProfileConfig& pc : out->profiles) scopes += std::max<size_t>(1, pc.tenants.size());
  out->multi_scope = scopes > 1;
  r.Finish();
  return p.list();
}

std::vector<Problem> LoadFile(const std::string& path, Config* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    Problems p(path);
    p.Add("", 0, "cannot read config file " + path + ": check the path (--config FILE)");
    return p.list();
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return LoadString(ss.str(), path, out);
}

std::vector<Problem> CheckSecrets(const Config& config) {
  Problems p(config.file);
  if (!config.target.dry_run) {
    auto key = ResolveSecret(config.target.api_key);
    if (!key.ok()) p.Add("target.api_key", 0, key.error().message);
  }
  if (!config.redis.password.empty()) {
    // Optional: an unset REDIS_PASSWORD means "no AUTH"; a named file must exist.
    if (!config.redis.password.file.empty()) {
      auto pw = ResolveSecret(config.redis.password);
      if (!pw.ok()) p.Add("redis.password_file", 0, pw.error().message);
    }
  }
  if (!config.redis.sentinel_password.empty()) {
    // Named explicitly (no default), so it must be readable.
    auto pw = ResolveSecret(config.redis.sentinel_password);
    if (!pw.ok()) p.Add("redis.sentinel_password", 0, pw.error().message);
  }
  for (const auto& prof : config.profiles) {
    for (size_t i = 0; i < prof.secrets.size(); ++i) {
      auto s = ResolveSecret(prof.secrets[i]);
      if (!s.ok()) p.Add(prof.path + ".secret", LineOf(prof.node), s.error().message);
    }
  }
  return p.list();
}

}  // namespace scimsync::config
