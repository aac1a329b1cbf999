#include "daemon.h"

#include <signal.h>

#include <algorithm>
#include <thread>
#include <utility>
#include <vector>

#include "coordinator.h"
#include "lifecycle.h"
#include "scimsync/daemon/http_server.h"
#include "scimsync/daemon/ingest.h"
#include "scimsync/daemon/metrics.h"
#include "scimsync/daemon/notify.h"
#include "scimsync/daemon/reconcile.h"
#include "scimsync/log.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/client.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/rate_limiter.h"
#include "scimsync/scim/retry.h"
#include "scimsync/workers/coordination.h"
#include "scimsync/workers/history.h"
#include "scimsync/workers/sync.h"
#include "scimsync/workers/worker.h"

#ifndef SCIMSYNC_VERSION
#define SCIMSYNC_VERSION "0.0.0"
#endif

namespace scimsync::daemon {

using workers::EmployeeWork;
using workers::History;
using workers::LeaseOptions;
using workers::Leases;
using workers::ProfileSyncer;
using workers::SuspensionGuard;
using workers::SyncerDeps;
using workers::SyncResult;
using workers::Versions;
using workers::WorkerOptions;
using workers::WorkerPool;

namespace {

// The signals the daemon handles, blocked in every thread (so they must be blocked before the
// first thread starts); Run takes them one at a time with sigwait.
class BlockedSignals {
 public:
  BlockedSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  int Wait() const {
    int sig = 0;
    while (sigwait(&set_, &sig) != 0) {
    }
    return sig;
  }

 private:
  sigset_t set_;
};

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

// A scheduled reconciliation's outcome, as metrics.
void RecordReconcile(const std::string& profile, const Result<ReconcileReport>& r) {
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
}

LeaseOptions LeaseOptionsFrom(const config::Config& cfg, const std::string& instance_id) {
  LeaseOptions o;
  o.key_prefix = cfg.redis.key_prefix;
  o.partitions = cfg.redis.partitions;
  o.instance_id = instance_id;
  o.lease_ms = cfg.workers.lease_ms;
  o.grace_ms = cfg.workers.takeover_grace_ms;
  return o;
}

// Named "worker-N", registered before the coordinator's loop: the watchdog's warning lists the
// stalled loops in registration order.
std::vector<notify::WatchdogPinger::Loop> RegisterWorkerLoops(notify::WatchdogPinger& watchdog,
                                                              int threads) {
  std::vector<notify::WatchdogPinger::Loop> loops;
  loops.reserve(static_cast<size_t>(std::max(threads, 0)));
  for (int t = 0; t < threads; ++t)
    loops.push_back(watchdog.Register("worker-" + std::to_string(t)));
  return loops;
}

WorkerOptions WorkerOptionsFrom(const config::Config& cfg, const std::string& instance_id) {
  WorkerOptions o;
  o.threads = cfg.workers.threads;
  o.nice = cfg.workers.nice;
  o.consumer = instance_id;
  // A dead worker's items come back after a few leases (60 s at the default 10 s lease).
  o.claim_idle_ms = 6 * cfg.workers.lease_ms;
  o.retry_lease_ms = 6 * cfg.workers.lease_ms;
  o.max_deliveries = cfg.workers.max_deliveries;
  return o;
}

}  // namespace

// Everything the daemon runs, in construction order (each member only uses those above it).
// Building does no I/O and starts no thread; AddComponents says what starts when.
struct Daemon::Parts {
  Parts(std::string file, Settings settings, const std::string& redis_password);
  void AddComponents();
  SyncerDeps MakeSyncerDeps();
  ReconcileScheduler::Deps MakeReconcileDeps();
  std::string StatusLine() const;

  BlockedSignals signals;  // first: before any thread exists
  const config::Config cfg;
  const ProfileMap profiles;  // as loaded at start (a reload swaps them where they are used)
  const Clock& clock = SystemClock::Instance();
  connectors::ProfileSet profile_set;

  // Webhooks in: the listener and ingest, into the queue.
  std::unique_ptr<queue::Queue> queue;  // thread-safe: a pool of connections
  redis::Pool redis_pool;
  Ingest ingest;
  HttpServer server;
  std::thread serve_thread;

  // The worker stage and what it shares through Redis with other instances.
  const std::string instance_id = workers::NewInstanceId();
  Leases leases;
  SuspensionGuard guard;
  Versions versions;
  std::unique_ptr<scim::LinkStore> links;
  std::unique_ptr<scim::RateLimiter> shared_limiter;
  std::unique_ptr<scim::RateLimiter> limiter;
  std::unique_ptr<connectors::Fetcher> fetcher;
  scim::SystemRandom random;
  ProfileSyncer syncer;
  // Every outcome also goes to the employee's history (`scimsyncd employee`), once per pass.
  History history;
  std::unique_ptr<workers::Syncer> recording;
  WorkerPool worker_pool;

  // Scheduled reconciliations (profiles[].reconcile_every_s), one instance of the fleet at a time.
  ReconcileScheduler reconciles;

  // systemd's watchdog pings only while every worker loop and the coordinator make progress.
  notify::WatchdogPinger watchdog;
  std::vector<notify::WatchdogPinger::Loop> beats;  // one per worker thread
  notify::WatchdogPinger::Loop coordinator_beat;
  Coordinator coordinator;

  Reloader reloader;
  Lifecycle lifecycle;  // last: destroyed first, so anything still running stops before the rest
};

Daemon::Parts::Parts(std::string file, Settings settings, const std::string& redis_password)
    : cfg(std::move(settings.config)),
      profiles(std::move(settings.profiles)),
      queue(queue::NewRedisQueue(cfg.redis, redis_password)),
      redis_pool(cfg.redis, redis_password),
      ingest(
          &profile_set,
          [this](const std::vector<queue::Queue::Batch>& batches) {
            return queue->EnqueueBatches(batches);
          },
          &clock),
      server(cfg.listen, HttpHandlers{&ingest,
                                      [this]() -> std::string {
                                        Status ping = queue->Ping();
                                        return ping.ok() ? std::string()
                                                         : "redis: " + ping.error().message;
                                      }}),
      leases(redis_pool, LeaseOptionsFrom(cfg, instance_id), clock),
      guard(redis_pool, cfg.redis.key_prefix, cfg.workers.guard, clock),
      versions(redis_pool, cfg.redis.key_prefix),
      links(scim::NewRedisLinkStore(redis_pool, cfg.redis.key_prefix)),
      shared_limiter(scim::NewRedisRateLimiter(redis_pool, scim::RateLimitKey(cfg.redis.key_prefix),
                                               scim::RateLimitOptions::From(cfg.target), clock)),
      limiter(workers::NewMeteredRateLimiter(shared_limiter.get(), Metrics::Global())),
      fetcher(connectors::NewHttpFetcher({.ca_file = cfg.target.ca_file})),
      syncer(cfg.target, cfg.workers.retry, cfg.workers.threads, MakeSyncerDeps()),
      history(redis_pool, cfg.redis.key_prefix, cfg.workers.history),
      recording(workers::NewRecordingSyncer(syncer, history, clock)),
      worker_pool(
          WorkerOptionsFrom(cfg, instance_id), *queue, *recording, clock,
          [this](int p) { return leases.Owns(p); }, [this](int p) { leases.ReleaseIfMarked(p); }),
      reconciles(cfg.target, cfg.redis.key_prefix, MakeReconcileDeps()),
      beats(RegisterWorkerLoops(watchdog, cfg.workers.threads)),
      coordinator_beat(watchdog.Register("coordinator")),
      coordinator({.key_prefix = cfg.redis.key_prefix,
                   .partitions = cfg.redis.partitions,
                   .take_partitions = cfg.workers.threads > 0,
                   .period_ms = cfg.workers.lease_ms / 4},
                  {.leases = &leases,
                   .guard = &guard,
                   .queue = queue.get(),
                   .pool = &redis_pool,
                   .clock = &clock,
                   .metrics = &Metrics::Global(),
                   .paused = [this] { return worker_pool.paused(); },
                   .beat = [this] { coordinator_beat.Beat(); }}),
      reloader(std::move(file), [this](Settings& fresh) {
        profile_set.Replace(std::move(fresh.active));
        syncer.SetApiKey(fresh.api_key);
        reconciles.SetApiKey(fresh.api_key);
        reconciles.SetProfiles(ScheduledProfiles(fresh.config, fresh.profiles));
        worker_pool.ProbeSoon();
      }) {
  profile_set.Replace(std::move(settings.active));
  syncer.SetApiKey(settings.api_key);
  reconciles.SetApiKey(settings.api_key);

  worker_pool.SetOutcomeHook(&LogOutcome);
  worker_pool.SetFencing([this](int p) { return leases.Token(p); },
                         [this](int p, int64_t token) { return leases.Holds(p, token); },
                         [this](int p) { return leases.TokenKey(p); });
  worker_pool.SetPauseHook([this](const std::string& reason) { coordinator.RecordPause(reason); });
  worker_pool.SetIterationHook([this](int thread) { beats[static_cast<size_t>(thread)].Beat(); });
  AddComponents();
}

SyncerDeps Daemon::Parts::MakeSyncerDeps() {
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
  return deps;
}

ReconcileScheduler::Deps Daemon::Parts::MakeReconcileDeps() {
  ReconcileScheduler::Deps deps;
  deps.pool = &redis_pool;
  deps.queue = queue.get();
  deps.limiter = limiter.get();
  deps.links = links.get();
  deps.fetcher = fetcher.get();
  deps.clock = &clock;
  deps.random = &random;
  deps.on_run = &RecordReconcile;
  return deps;
}

// The start order is the dependency order; Lifecycle stops in reverse. Reading the stop order
// (bottom up) is reading what SIGTERM does:
//   webhooks: answered 503 from here on (the HRIS retries; the listener stays up to say so),
//   reconcile: a scheduled run ends at its next page, nothing half-enqueued,
//   workers: in-flight syncs finish within workers.drain_timeout_s, the rest stay pending,
//   coordinator: leases renewed until the workers are done, then all given back at once,
//   listener: closed last.
void Daemon::Parts::AddComponents() {
  // Bound first: a port in use is a config mistake, found before any lease is taken or item
  // worked (exit 78, nothing else started). Serving from here on is safe: ingest only writes to
  // the queue, and answers 503 while Redis is down.
  lifecycle.Add(
      "listener",
      [this]() -> Status {
        Status bound = server.Bind();
        if (!bound.ok()) return bound;
        serve_thread = std::thread([this] { server.Serve(); });
        return {};
      },
      [this] {
        server.Stop();
        if (serve_thread.joinable()) serve_thread.join();
      });
  // Start anyway when Redis is down: webhooks are answered 503 (the HRIS retries) until it
  // answers, and the workers and the coordinator retry on their own.
  lifecycle.Add("redis", [this]() -> Status {
    Status up = queue->Ping();
    if (!up.ok()) {
      log::Error("redis is not reachable; webhooks are answered 503 until it is",
                 {{"detail", up.error().message}});
    }
    return {};
  });
  lifecycle.Add(
      "coordinator",
      [this]() -> Status {
        coordinator.Start();
        return {};
      },
      [this] { coordinator.Stop(); });
  lifecycle.Add(
      "workers",
      [this]() -> Status {
        if (cfg.workers.threads > 0) {
          worker_pool.Start();
        } else {
          log::Info("workers.threads is 0: ingest only; other instances work the queue");
        }
        return {};
      },
      [this] {
        bool drained = worker_pool.Stop(int64_t{cfg.workers.drain_timeout_s} * 1000);
        if (!drained) log::Warn("drain timeout: unfinished items stay pending in Redis");
      });
  lifecycle.Add(
      "reconcile",
      [this]() -> Status {
        reconciles.SetProfiles(ScheduledProfiles(cfg, profiles));
        reconciles.Start();
        return {};
      },
      [this] { reconciles.Stop(); });
  // Ingest admits webhooks from the start (they are only queued); stopping this first is what
  // makes SIGTERM answer 503 while the rest drains.
  lifecycle.Add(
      "webhooks",
      [this]() -> Status {
        ingest.SetDraining(false);
        return {};
      },
      [this] { ingest.SetDraining(true); });
}

std::string Daemon::Parts::StatusLine() const {
  return std::string(worker_pool.paused() ? "PAUSED (API key refused); " : "serving; ") + "queue " +
         std::to_string(coordinator.queued()) + ", partitions " +
         std::to_string(leases.Owned().size());
}

Daemon::Daemon(std::string config_file, Settings settings, const std::string& redis_password)
    : parts_(std::make_unique<Parts>(std::move(config_file), std::move(settings), redis_password)) {
}

Daemon::~Daemon() = default;

int Daemon::Run() {
  Parts& p = *parts_;
  Status started = p.lifecycle.StartAll();
  if (!started.ok()) {
    log::Error("cannot start", {{"detail", started.error().message}});
    return kExitConfig;
  }
  // systemd hears READY=1 once everything runs and STOPPING=1 before anything stops; the
  // watchdog pinger runs in between and stops last, so a hung drain still shows in its warning.
  notify::Ready();
  p.watchdog.Start(notify::WatchdogPingInterval(), [&p] { return p.StatusLine(); });
  log::Info("scimsyncd started", {{"version", SCIMSYNC_VERSION},
                                  {"address", p.cfg.listen.address},
                                  {"port", p.server.port()},
                                  {"profiles", p.cfg.profiles.size()},
                                  {"workers", p.cfg.workers.threads},
                                  {"instance", p.instance_id},
                                  {"dry_run", p.cfg.target.dry_run}});
  int sig = p.signals.Wait();
  for (; sig == SIGHUP; sig = p.signals.Wait()) p.reloader.Reload();
  log::Info("stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
  notify::Stopping();
  p.lifecycle.StopAll();
  p.watchdog.Stop();
  log::Info("scimsyncd stopped");
  return kExitOk;
}

}  // namespace scimsync::daemon
