// `scimsyncd reconcile`: reads the config, builds a Reconciler for one profile, runs it once and
// prints its report.
#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "reconcile_internal.h"
#include "scimsync/daemon/admin.h"
#include "scimsync/daemon/app.h"
#include "scimsync/daemon/reconcile.h"
#include "scimsync/log.h"
#include "scimsync/workers/coordination.h"
#include "scimsync/workers/worker.h"

namespace scimsync::daemon {

using workers::ScopeOf;
using workers::SuspensionGuard;

namespace {

constexpr char kUsage[] =
    "usage: scimsyncd reconcile --config FILE --profile NAME [--dry-run] [--json]\n"
    "                           [--confirm] [--allow-shrink]\n"
    "  lists the HRIS (the profile's list endpoint) and JumpCloud, reports drift and, without\n"
    "  --dry-run, enqueues one sync per drifted employee. --confirm applies a plan that would\n"
    "  suspend more users than workers.guard allows; --allow-shrink accepts an HRIS list that\n"
    "  shrank by more than reconcile.max_shrink_percent. Exit 0: nothing left to do; 1: drift\n"
    "  or problems remain; 2 held (too many suspensions); 3 refused (the list shrank);\n"
    "  65 unreadable answer; 69 unreachable; 75 another run holds the lease; 77 credentials\n"
    "  refused; 78 config (docs/reconcile.md).\n";

int ReconcileCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                     bool& json);

}  // namespace

int RunReconcileCommand(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err) {
  // With --json a script reads stdout: a failure is an object there too, not just stderr text.
  bool json = std::find(args.begin(), args.end(), "--json") != args.end();
  std::ostringstream report, errors;
  const int code = ReconcileCommand(args, report, errors, json);
  out << report.str();
  err << errors.str();
  if (json && report.str().empty()) {
    std::string message = errors.str();
    while (!message.empty() && message.back() == '\n') message.pop_back();
    if (const size_t usage = message.find("\nusage:"); usage != std::string::npos) {
      message.resize(usage);
    }
    out << FormatErrorJson(message, code);
  }
  return code;
}

namespace {

int ReconcileCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                     bool& json) {
  std::string file = "/etc/scimsync/scimsync.yaml";
  std::string name;
  bool dry_run = false;
  bool confirm = false;
  bool allow_shrink = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* target) {
      if (i + 1 >= args.size()) return false;
      *target = args[++i];
      return true;
    };
    if (a == "--config" || a == "-c") {
      if (!value(&file)) {
        err << "scimsyncd reconcile: " << a << " needs a file path\n" << kUsage;
        return kExitUsage;
      }
    } else if (a.rfind("--config=", 0) == 0) {
      file = a.substr(9);
    } else if (a == "--profile") {
      if (!value(&name)) {
        err << "scimsyncd reconcile: --profile needs a profile name\n" << kUsage;
        return kExitUsage;
      }
    } else if (a.rfind("--profile=", 0) == 0) {
      name = a.substr(10);
    } else if (a == "--dry-run") {
      dry_run = true;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--confirm") {
      confirm = true;
    } else if (a == "--allow-shrink") {
      allow_shrink = true;
    } else if (a == "--help" || a == "-h") {
      out << kUsage;
      return kExitOk;
    } else {
      err << "scimsyncd reconcile: unexpected argument '" << a << "'\n" << kUsage;
      return kExitUsage;
    }
  }
  if (name.empty()) {
    err << "scimsyncd reconcile: --profile NAME is required\n" << kUsage;
    return kExitUsage;
  }

  config::Config cfg;
  ProfileMap profiles;
  if (!LoadConfigAndProfiles(file, &cfg, &profiles, /*check_secrets=*/false, err)) {
    return kExitConfig;
  }
  log::Level level = log::Level::kInfo;
  log::ParseLevel(cfg.log.level, &level);
  if (const char* env = std::getenv("SCIMSYNC_LOG_LEVEL"); env != nullptr) {  // NOLINT
    log::ParseLevel(env, &level);
  }
  log::SetLevel(level);

  auto it = profiles.find(name);
  if (it == profiles.end()) {
    std::string known;
    for (const auto& [n, unused] : profiles) known += (known.empty() ? "" : ", ") + n;
    err << "scimsyncd reconcile: no profile named '" << name << "' in " << file
        << " (configured: " << known << ")\n";
    return kExitConfig;
  }
  if (!it->second->can_list()) {
    err << "scimsyncd reconcile: profile '" << name
        << "' has no list section, so its employees cannot be listed; add one to its profile "
           "(docs/profiles.md, list)\n";
    return kExitConfig;
  }
  auto api_key = config::ResolveSecret(cfg.target.api_key);
  if (!api_key.ok()) {
    err << "scimsyncd reconcile: reading JumpCloud's users needs the API key"
        << (cfg.target.dry_run ? " (also with target.dry_run)" : "") << ": "
        << api_key.error().message << "\n";
    return kExitConfig;
  }
  AdminRedis db;
  if (int rc =
          OpenAdminRedis(cfg, 4, /*ping=*/false, "scimsyncd reconcile: redis password", err, &db);
      rc != kExitOk) {
    return rc;
  }

  const Clock& clock = SystemClock::Instance();
  redis::Pool& pool = *db.pool;
  std::unique_ptr<queue::Queue> queue;
  if (!dry_run) queue = std::move(db.queue);
  auto links = scim::NewRedisLinkStore(pool, cfg.redis.key_prefix);
  auto limiter = scim::NewRedisRateLimiter(pool, scim::RateLimitKey(cfg.redis.key_prefix),
                                           scim::RateLimitOptions::From(cfg.target), clock);
  auto transport = scim::NewHttpTransport(scim::TransportOptions::From(cfg.target, *api_key));
  if (!transport.ok()) {
    err << "scimsyncd reconcile: " << transport.error().message << "\n";
    return kExitConfig;
  }
  connectors::HttpFetcherOptions fetcher_options;
  fetcher_options.ca_file = cfg.target.ca_file;
  auto fetcher = connectors::NewHttpFetcher(fetcher_options);
  scim::SystemRandom random;

  ScheduledProfile entry;  // this profile's settings, as a scheduled run has them
  for (const config::ProfileConfig& pc : cfg.profiles) {
    if (pc.name != name) continue;
    entry = {pc.name,           pc.reconcile_every_s, it->second,      pc.reconcile,
             cfg.workers.guard, cfg.multi_scope,      pc.scope_prefix, pc.follow_user_name};
  }
  std::vector<std::string> foreign_scopes;
  for (const auto& [other, p] : profiles) {
    if (other == name) continue;
    for (const std::string& t : p->list_tenants()) foreign_scopes.push_back(ScopeOf(other, t));
  }
  ReconcilerOptions options =
      OptionsFor(entry, cfg.redis.key_prefix, cfg.target.timeout_ms, std::move(foreign_scopes));
  options.confirm = confirm;
  options.allow_shrink = allow_shrink;
  SuspensionGuard guard(pool, cfg.redis.key_prefix, cfg.workers.guard, clock);
  ReconcilerDeps deps;
  deps.profile = it->second;
  deps.fetcher = fetcher.get();
  deps.transport = transport->get();
  deps.limiter = limiter.get();
  deps.links = links.get();
  deps.queue = queue.get();
  deps.pool = &pool;
  deps.clock = &clock;
  deps.random = &random;
  deps.open_guard = [&guard] { return guard.Release(); };
  Reconciler reconciler(options, deps);
  auto report = reconciler.Run(dry_run);
  if (!report.ok()) {
    err << "scimsyncd reconcile: " << report.error().message << "\n";
    if (report.error().kind == ErrorKind::kTransient &&
        report.error().message.rfind("redis", 0) == 0) {
      err << "  (check redis.url and that redis-server runs)\n";
    }
    return ExitCodeFor(report.error());
  }
  out << (json ? FormatReportJson(*report) : FormatReportTable(*report));
  return ExitCodeFor(*report);
}

}  // namespace

}  // namespace scimsync::daemon
