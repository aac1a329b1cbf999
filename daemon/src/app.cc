#include "scimsync/daemon/app.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "scimsync/config.h"
#include "scimsync/connectors/map_command.h"
#include "scimsync/connectors/profile.h"
#include "scimsync/daemon/admin.h"
#include "scimsync/daemon/employee.h"
#include "scimsync/daemon/http_server.h"
#include "scimsync/daemon/ingest.h"
#include "scimsync/daemon/metrics.h"
#include "scimsync/daemon/notify.h"
#include "scimsync/daemon/reconcile.h"
#include "scimsync/daemon/security_checks.h"
#include "scimsync/log.h"
#include "scimsync/queue/queue.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/rate_limiter.h"
#include "scimsync/workers/coordination.h"
#include "scimsync/workers/history.h"
#include "scimsync/workers/sync.h"
#include "scimsync/workers/worker.h"

#ifndef SCIMSYNC_VERSION
#define SCIMSYNC_VERSION "0.0.0"
#endif

namespace scimsync::daemon {

using workers::ClearPausedFlag;
using workers::EmployeeWork;
using workers::History;
using workers::LeaseOptions;
using workers::Leases;
using workers::NewInstanceId;
using workers::NewMeteredRateLimiter;
using workers::NewRecordingSyncer;
using workers::ProfileSyncer;
using workers::SetPausedFlag;
using workers::SuspensionGuard;
using workers::SyncerDeps;
using workers::SyncResult;
using workers::Versions;
using workers::WorkerOptions;
using workers::WorkerPool;

namespace {

constexpr char kDefaultConfig[] = "/etc/scimsync/scimsync.yaml";

constexpr char kUsage[] = R"(Usage:
  scimsyncd [--config FILE]              run the daemon (default config: /etc/scimsync/scimsync.yaml)
  scimsyncd check-config [--config FILE] validate the config, its profiles and secrets; exit 0 or 78
  scimsyncd map --config FILE --profile NAME PAYLOAD [--header 'Name: value' ...]
                [--record RECORD.json] [--verify] [--now UNIX_SECONDS]
                                         show how a webhook maps, without Redis or network
  scimsyncd status [--json] [--config FILE] queue depth and age, retries, dead letters, leases,
                                         pause and guard state
  scimsyncd dlq list | show ID | replay ID | replay --all | drop ID [--config FILE]
                                         inspect and manage dead letters
  scimsyncd guard release [--config FILE] let suspensions held by the mass-suspension guard go on,
                                         and apply held reconciliation plans
  scimsyncd employee --config FILE --profile NAME [--tenant T] [--last N] [--json] EMPLOYEE_ID
                                         one person: link, what is waiting, dead letters and
                                         the last outcomes
  scimsyncd sync --config FILE --profile NAME [--tenant T] [--dry-run] [--timeout S] EMPLOYEE_ID
                                         provision one person now through the workers and show
                                         each step; --dry-run plans without writing
  scimsyncd reconcile --config FILE --profile NAME [--dry-run] [--json] [--confirm] [--allow-shrink]
                                         find drift between the HRIS and JumpCloud; without
                                         --dry-run, queue a sync for each drifted employee
  scimsyncd migrate-scope --profile NAME [--tenant T] [--include-unlinked] [--apply]
                [--config FILE]         namespace the bare externalIds a profile created while it
                                         was the only scope (before adding a second HR source)
  scimsyncd --version
  scimsyncd --help

Environment:
  SCIMSYNC_LOG_LEVEL   debug|info|warn|error; overrides log.level
  CREDENTIALS_DIRECTORY where relative *_file secrets are read (systemd LoadCredential=)
)";

// Parses "--config FILE" / "--config=FILE" out of args; the rest is left in *rest.
bool TakeConfigFlag(const std::vector<std::string>& args, std::string* config,
                    std::vector<std::string>* rest, std::string* error) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--config" || a == "-c") {
      if (i + 1 >= args.size()) {
        *error = a + " needs a file path";
        return false;
      }
      *config = args[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      *config = a.substr(9);
    } else {
      rest->push_back(a);
    }
  }
  return true;
}

void PrintProblems(const std::string& file, const std::vector<config::Problem>& problems,
                   std::ostream& err = std::cerr) {
  err << file << ": " << problems.size() << (problems.size() == 1 ? " problem" : " problems")
      << ":\n";
  for (const auto& p : problems) {
    err << "  " << (p.file.empty() || p.file == file ? "" : p.file + ": ") << p.ToString() << "\n";
  }
}

bool LoadAll(const std::string& file, config::Config* cfg, ProfileMap* profiles,
             bool check_secrets) {
  return LoadConfigAndProfiles(file, cfg, profiles, check_secrets, std::cerr);
}

void ApplyLogLevel(const config::Config& cfg) {
  log::Level level = log::Level::kInfo;
  log::ParseLevel(cfg.log.level, &level);
  const char* env = std::getenv("SCIMSYNC_LOG_LEVEL");  // NOLINT(concurrency-mt-unsafe)
  if (env != nullptr && *env != '\0' && !log::ParseLevel(env, &level)) {
    log::Warn("SCIMSYNC_LOG_LEVEL is not one of debug, info, warn, error; ignoring it",
              {{"value", env}});
  }
  log::SetLevel(level);
}

// Resolves every profile's secrets. Errors name the profile and the secret's source.
Result<std::map<std::string, ActiveProfile>> Activate(
    const config::Config& cfg,
    const std::map<std::string, std::shared_ptr<const connectors::Profile>>& profiles) {
  std::map<std::string, ActiveProfile> out;
  for (const auto& entry : cfg.profiles) {
    ActiveProfile active;
    active.profile = profiles.at(entry.name);
    active.follow_user_name = entry.follow_user_name;
    active.multi_scope = cfg.multi_scope;
    active.scope_prefix = entry.scope_prefix;
    for (const auto& ref : entry.secrets) {
      auto secret = config::ResolveSecret(ref);
      if (!secret.ok()) {
        return Error::Invalid("profile '" + entry.name + "': " + secret.error().message);
      }
      active.secrets.push_back(std::move(secret.value()));
    }
    out[entry.name] = std::move(active);
  }
  return out;
}

// One log line per item outcome, at info for a done job and warn otherwise; the trace id
// follows the item from its webhook.
void LogOutcome(const EmployeeWork& work, const queue::Item& item, const SyncResult& r,
                int64_t latency_ms) {
  log::Level level = r.kind == SyncResult::Kind::kDone         ? log::Level::kInfo
                     : r.kind == SyncResult::Kind::kDeadLetter ? log::Level::kError
                                                               : log::Level::kWarn;
  log::Write(level, "sync",
             {{"trace_id", item.trace_id},
              {"profile", work.profile},
              {"tenant", work.tenant},
              {"employee", work.employee_key},
              {"event_type", item.event_type},
              {"action", r.action},
              {"result", r.result},
              {"attempt", item.attempts + 1},
              {"http_status", r.http_status},
              {"latency_ms", latency_ms},
              {"jumpcloud_id", r.jumpcloud_id},
              {"reason", r.reason}});
  Metrics::Global().SyncFinished(r.action, r.result);
  if (r.kind == SyncResult::Kind::kDeadLetter) {
    Metrics::Global().DeadLettered(work.profile, r.error_kind);
  }
}

Result<std::string> ResolveApiKey(const config::Config& cfg) {
  if (cfg.target.dry_run) return std::string("dry-run");
  auto key = config::ResolveSecret(cfg.target.api_key);
  if (!key) return Error::Invalid("target API key: " + key.error().message);
  return key;
}

int RunDaemon(const std::string& file) {
  config::Config cfg;
  std::map<std::string, std::shared_ptr<const connectors::Profile>> profiles;
  if (!LoadAll(file, &cfg, &profiles, /*check_secrets=*/false)) return kExitConfig;
  ApplyLogLevel(cfg);

  auto active = Activate(cfg, profiles);
  if (!active.ok()) {
    log::Error("cannot start", {{"detail", active.error().message}});
    return kExitConfig;
  }
  auto api_key = ResolveApiKey(cfg);
  if (!api_key.ok()) {
    log::Error("cannot start", {{"detail", api_key.error().message}});
    return kExitConfig;
  }
  auto redis_password = RedisPassword(cfg);
  if (!redis_password.ok()) {
    log::Error("cannot start", {{"detail", "redis password: " + redis_password.error().message}});
    return kExitConfig;
  }
  LogSecurityWarnings(cfg);

  // Block the signals we handle in every thread; one thread takes them with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const Clock& clock = SystemClock::Instance();
  ProfileSet profile_set;
  profile_set.Replace(std::move(active.value()));
  // Thread-safe: it keeps a pool of connections, one per concurrent call.
  std::unique_ptr<queue::Queue> queue = queue::NewRedisQueue(cfg.redis, *redis_password);
  redis::Pool redis_pool(cfg.redis, *redis_password);
  auto enqueue = [&queue](const std::vector<queue::Queue::Batch>& batches) {
    return queue->EnqueueBatches(batches);
  };
  Ingest ingest(&profile_set, enqueue, &clock);

  HttpHandlers handlers;
  handlers.ingest = &ingest;
  handlers.not_ready_reason = [&queue]() -> std::string {
    Status ping = queue->Ping();
    return ping.ok() ? std::string() : "redis: " + ping.error().message;
  };
  HttpServer server(cfg.listen, handlers);
  Status bound = server.Bind();
  if (!bound.ok()) {
    log::Error("cannot start", {{"detail", bound.error().message}});
    return kExitConfig;
  }

  Status redis_up = queue->Ping();
  if (!redis_up.ok()) {
    // Start anyway: webhooks are answered 503 (the HRIS retries) until Redis answers.
    log::Error("redis is not reachable; webhooks are answered 503 until it is",
               {{"detail", redis_up.error().message}});
  }

  // Workers and what they share through Redis with other instances.
  const std::string instance_id = NewInstanceId();
  LeaseOptions lease_options;
  lease_options.key_prefix = cfg.redis.key_prefix;
  lease_options.partitions = cfg.redis.partitions;
  lease_options.instance_id = instance_id;
  lease_options.lease_ms = cfg.workers.lease_ms;
  lease_options.grace_ms = cfg.workers.takeover_grace_ms;
  Leases leases(redis_pool, lease_options, clock);
  SuspensionGuard guard(redis_pool, cfg.redis.key_prefix, cfg.workers.guard, clock);
  Versions versions(redis_pool, cfg.redis.key_prefix);
  auto links = scim::NewRedisLinkStore(redis_pool, cfg.redis.key_prefix);
  auto shared_limiter =
      scim::NewRedisRateLimiter(redis_pool, scim::RateLimitKey(cfg.redis.key_prefix),
                                scim::RateLimitOptions::From(cfg.target), clock);
  auto limiter = NewMeteredRateLimiter(shared_limiter.get(), Metrics::Global());
  connectors::HttpFetcherOptions fetcher_options;
  fetcher_options.ca_file = cfg.target.ca_file;
  auto fetcher = connectors::NewHttpFetcher(fetcher_options);
  scim::SystemRandom random;
  SyncerDeps deps;
  deps.profiles = &profile_set;
  deps.fetcher = fetcher.get();
  deps.limiter = limiter.get();
  deps.links = links.get();
  deps.versions = &versions;
  deps.guard = &guard;
  deps.clock = &clock;
  deps.random = &random;
  deps.metrics = &Metrics::Global();
  deps.max_future_skew_ms = cfg.workers.max_future_skew_s * 1000;
  ProfileSyncer syncer(cfg.target, cfg.workers.retry, cfg.workers.threads, deps);
  syncer.SetApiKey(*api_key);
  // Every outcome also goes to the employee's history (`scimsyncd employee`), once per pass.
  History history(redis_pool, cfg.redis.key_prefix, cfg.workers.history);
  auto recording = NewRecordingSyncer(syncer, history, clock);

  WorkerOptions worker_options;
  worker_options.threads = cfg.workers.threads;
  worker_options.nice = cfg.workers.nice;
  worker_options.consumer = instance_id;
  // A dead worker's items come back after a few leases (60 s at the default 10 s lease).
  worker_options.claim_idle_ms = 6 * cfg.workers.lease_ms;
  worker_options.retry_lease_ms = 6 * cfg.workers.lease_ms;
  worker_options.max_deliveries = cfg.workers.max_deliveries;
  WorkerPool workers(
      worker_options, *queue, *recording, clock, [&leases](int p) { return leases.Owns(p); },
      [&leases](int p) { leases.ReleaseIfMarked(p); });
  workers.SetOutcomeHook(&LogOutcome);
  workers.SetFencing([&leases](int p) { return leases.Token(p); },
                     [&leases](int p, int64_t token) { return leases.Holds(p, token); });
  workers.SetPauseHook([&](const std::string& reason) {
    Metrics::Global().SetPaused(!reason.empty());
    Status s = reason.empty() ? ClearPausedFlag(redis_pool, cfg.redis.key_prefix)
                              : SetPausedFlag(redis_pool, cfg.redis.key_prefix, reason, 120000);
    if (!s.ok())
      log::Warn("cannot record the pause state in Redis", {{"detail", s.error().message}});
  });

  // Scheduled reconciliations (profiles[].reconcile_every_s), one instance of the fleet at a time.
  ReconcileScheduler::Deps rdeps;
  rdeps.pool = &redis_pool;
  rdeps.queue = queue.get();
  rdeps.limiter = limiter.get();
  rdeps.links = links.get();
  rdeps.fetcher = fetcher.get();
  rdeps.clock = &clock;
  rdeps.random = &random;
  rdeps.on_run = [](const std::string& profile, const Result<ReconcileReport>& r) {
    Metrics& m = Metrics::Global();
    if (!r.ok()) {
      m.ReconcileRan(profile, "error");
      return;
    }
    if (!r->refused.empty() || r->held) {
      // Nothing was applied: the drift gauges keep the last applied run's values.
      m.ReconcileRan(profile, r->held ? "held" : "refused");
      return;
    }
    m.ReconcileRan(profile, ExitCodeFor(*r) == 0 && r->drifted() == 0 ? "clean" : "drift");
    m.SetReconcileDrift(profile, "missing", r->missing);
    m.SetReconcileDrift(profile, "attributes", r->attributes);
    m.SetReconcileDrift(profile, "active", r->active);
    m.SetReconcileDrift(profile, "orphan", r->orphans);
    m.SetReconcileDrift(profile, "conflict", r->conflicts);
    m.SetReconcileDrift(profile, "invalid", r->invalid);
    m.SetReconcileDrift(profile, "error", r->errors);
    m.ReconcileEnqueued(profile, r->enqueued);
    m.SetReconcileLastSuccess(profile, static_cast<double>(r->finished_ms) / 1000.0);
  };
  ReconcileScheduler reconciles(cfg.target, cfg.redis.key_prefix, rdeps);
  reconciles.SetApiKey(*api_key);
  reconciles.SetProfiles(ScheduledProfiles(cfg, profiles));

  notify::WatchdogPinger watchdog;
  std::vector<notify::WatchdogPinger::Loop> beats;
  for (int t = 0; t < cfg.workers.threads; ++t) {
    beats.push_back(watchdog.Register("worker-" + std::to_string(t)));
  }
  auto coordinator_beat = watchdog.Register("coordinator");
  workers.SetIterationHook([&beats](int thread) { beats[static_cast<size_t>(thread)].Beat(); });

  // Coordinator: partition leases, queue gauges, the guard's state and the pause flag.
  std::atomic<bool> stopping{false};
  std::mutex coord_mu;
  std::condition_variable coord_cv;
  std::atomic<int64_t> queued_total{0};
  std::thread coordinator([&] {
    int64_t next_gauges = 0;
    int64_t next_guard_log = 0;
    while (!stopping) {
      coordinator_beat.Beat();
      auto owned = cfg.workers.threads > 0 ? leases.Heartbeat()
                                           : Result<std::vector<int>>(std::vector<int>{});
      if (!owned) {
        log::Warn("cannot renew partition leases", {{"detail", owned.error().message}});
      }
      const int64_t now = clock.NowMs();
      if (now >= next_gauges) {
        next_gauges = now + 5000;
        int64_t total = 0;
        const std::vector<int> held = leases.Owned();
        for (int p = 0; p < cfg.redis.partitions; ++p) {
          Metrics::Global().SetPartitionHeld(p,
                                             std::find(held.begin(), held.end(), p) != held.end());
          auto d = queue->Depth(p);
          auto r = queue->RetryDepth(p);
          if (d) {
            Metrics::Global().SetQueueDepth(p, *d);
            total += *d;
          }
          if (r) Metrics::Global().SetRetriesWaiting(p, *r);
          auto since = queue->OldestMs(p);
          double age = 0;
          if (since && *since > 0) {
            age = static_cast<double>(std::max<int64_t>(0, now - *since)) / 1000.0;
          }
          Metrics::Global().SetQueueOldestAge(p, age);
        }
        queued_total = total;
        if (auto dead = queue->DeadLetterCount()) Metrics::Global().SetDeadLettersStored(*dead);
        if (auto gs = guard.State()) {
          Metrics::Global().SetGuardTripped(gs->tripped);
          if (gs->tripped && now >= next_guard_log) {
            next_guard_log = now + 60000;
            log::Error(
                "mass-suspension guard is HOLDING suspensions: more than the allowed "
                "number fell due within workers.guard.window_s. Check the HRIS, then run "
                "`scimsyncd guard release`",
                {{"recent", gs->recent}, {"limit", gs->limit}});
          }
        }
        if (workers.paused()) {
          (void)SetPausedFlag(redis_pool, cfg.redis.key_prefix, "the target refuses the API key",
                              120000);
        }
      }
      std::unique_lock lock(coord_mu);
      coord_cv.wait_for(lock, std::chrono::milliseconds(lease_options.lease_ms / 4));
    }
  });

  reconciles.Start();
  if (cfg.workers.threads > 0) {
    workers.Start();
  } else {
    log::Info("workers.threads is 0: ingest only; other instances work the queue");
  }
  notify::Ready();
  watchdog.Start(notify::WatchdogPingInterval(), [&] {
    return std::string(workers.paused() ? "PAUSED (API key refused); " : "serving; ") + "queue " +
           std::to_string(queued_total.load()) + ", partitions " +
           std::to_string(leases.Owned().size());
  });
  log::Info("scimsyncd started", {{"version", SCIMSYNC_VERSION},
                                  {"address", cfg.listen.address},
                                  {"port", server.port()},
                                  {"profiles", cfg.profiles.size()},
                                  {"workers", cfg.workers.threads},
                                  {"instance", instance_id},
                                  {"dry_run", cfg.target.dry_run}});

  std::thread signal_thread([&] {
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGHUP) {
        notify::Reloading();
        config::Config fresh;
        std::map<std::string, std::shared_ptr<const connectors::Profile>> fresh_profiles;
        if (!LoadAll(file, &fresh, &fresh_profiles, false)) {
          log::Error("reload failed: the config has problems; keeping the running config");
          notify::Ready();
          continue;
        }
        auto next = Activate(fresh, fresh_profiles);
        auto key = ResolveApiKey(fresh);
        if (!next.ok() || !key.ok()) {
          log::Error("reload failed; keeping the running config",
                     {{"detail", !next.ok() ? next.error().message : key.error().message}});
          notify::Ready();
          continue;
        }
        LogSecurityWarnings(fresh);
        profile_set.Replace(std::move(next.value()));
        syncer.SetApiKey(*key);
        reconciles.SetApiKey(*key);
        reconciles.SetProfiles(ScheduledProfiles(fresh, fresh_profiles));
        workers.ProbeSoon();
        log::Info("reloaded profiles and secrets", {{"profiles", fresh.profiles.size()}});
        notify::Ready();
        continue;
      }
      log::Info("stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
      notify::Stopping();
      // New webhooks get 503 (the HRIS retries); in-flight syncs finish; the rest stays pending
      // in Redis and is claimed after a restart or by another instance.
      ingest.SetDraining(true);
      reconciles.Stop();
      bool drained = workers.Stop(int64_t{cfg.workers.drain_timeout_s} * 1000);
      if (!drained) log::Warn("drain timeout: unfinished items stay pending in Redis");
      stopping = true;
      coord_cv.notify_all();
      server.Stop();
      return;
    }
  });
  server.Serve();
  signal_thread.join();
  coordinator.join();
  leases.ReleaseAll();
  watchdog.Stop();
  log::Info("scimsyncd stopped");
  return kExitOk;
}

int CheckConfig(const std::string& file) {
  config::Config cfg;
  std::map<std::string, std::shared_ptr<const connectors::Profile>> profiles;
  if (!LoadAll(file, &cfg, &profiles, /*check_secrets=*/true)) return kExitConfig;
  std::cout << file << ": ok (" << cfg.profiles.size()
            << (cfg.profiles.size() == 1 ? " profile" : " profiles") << ")\n";
  return kExitOk;
}

}  // namespace

bool LoadConfigAndProfiles(const std::string& file, config::Config* cfg, ProfileMap* profiles,
                           bool check_secrets, std::ostream& err) {
  std::vector<config::Problem> problems = config::LoadFile(file, cfg);
  if (problems.empty()) {
    config::Problems profile_problems(file);
    for (const auto& entry : cfg->profiles) {
      auto profile = connectors::LoadProfile(entry, &profile_problems);
      if (profile) (*profiles)[entry.name] = std::move(profile);
    }
    problems = profile_problems.list();
  }
  if (problems.empty() && check_secrets) problems = config::CheckSecrets(*cfg);
  if (!problems.empty()) {
    PrintProblems(file, problems, err);
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h" || args[0] == "help")) {
    std::cout << kUsage;
    return kExitOk;
  }
  if (!args.empty() && (args[0] == "--version" || args[0] == "-V")) {
    std::cout << "scimsyncd " << SCIMSYNC_VERSION << "\n";
    return kExitOk;
  }
  std::string command = "run";
  if (!args.empty() && args[0].rfind('-', 0) != 0) {
    command = args[0];
    args.erase(args.begin());
  }
  if (command == "map") return connectors::RunMapCommand(args, std::cout, std::cerr);
  if (command == "reconcile") return RunReconcileCommand(args, std::cout, std::cerr);
  if (command == "sync") return RunSyncCommand(args, std::cout, std::cerr);

  std::string file = kDefaultConfig;
  std::vector<std::string> rest;
  std::string error;
  if (!TakeConfigFlag(args, &file, &rest, &error)) {
    std::cerr << "scimsyncd: " << error << "\n" << kUsage;
    return kExitUsage;
  }
  const bool takes_args = command == "status" || command == "dlq" || command == "guard" ||
                          command == "employee" || command == "migrate-scope";
  if (!rest.empty() && !takes_args) {
    std::cerr << "scimsyncd: unexpected argument '" << rest[0] << "'\n" << kUsage;
    return kExitUsage;
  }
  if (command == "run") return RunDaemon(file);
  if (command == "check-config") return CheckConfig(file);
  if (takes_args) {
    config::Config cfg;
    std::vector<config::Problem> problems = config::LoadFile(file, &cfg);
    if (!problems.empty()) {
      PrintProblems(file, problems);
      return kExitConfig;
    }
    if (command == "status") return RunStatusCommand(cfg, rest, std::cout, std::cerr);
    if (command == "dlq") return RunDlqCommand(cfg, rest, std::cout, std::cerr);
    if (command == "employee") return RunEmployeeCommand(cfg, file, rest, std::cout, std::cerr);
    if (command == "migrate-scope") return RunMigrateScopeCommand(cfg, rest, std::cout, std::cerr);
    return RunGuardCommand(cfg, rest, std::cout, std::cerr);
  }
  std::cerr << "scimsyncd: unknown command '" << command << "'\n" << kUsage;
  return kExitUsage;
}

}  // namespace scimsync::daemon
