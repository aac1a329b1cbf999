#include "coordinator.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "scimsync/daemon/metrics.h"
#include "scimsync/log.h"
#include "scimsync/queue/queue.h"

namespace scimsync::daemon {
namespace {

constexpr int64_t kGaugePeriodMs = 5000;
constexpr int64_t kGuardLogPeriodMs = 60000;
// The pause flag outlives a few refreshes and expires when no instance re-asserts it.
constexpr int64_t kPausedFlagTtlMs = 120000;

}  // namespace

Coordinator::Coordinator(Options options, Deps deps)
    : options_(std::move(options)), deps_(std::move(deps)) {}

Coordinator::~Coordinator() { Stop(); }

void Coordinator::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void Coordinator::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  deps_.leases->ReleaseAll();
}

void Coordinator::RecordPause(const std::string& reason) {
  deps_.metrics->SetPaused(!reason.empty());
  Status s = reason.empty() ? workers::ClearPausedFlag(*deps_.pool, options_.key_prefix)
                            : workers::SetPausedFlag(*deps_.pool, options_.key_prefix, reason,
                                                     kPausedFlagTtlMs);
  if (!s.ok()) log::Warn("cannot record the pause state in Redis", {{"detail", s.error().message}});
}

void Coordinator::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    if (deps_.beat) deps_.beat();
    auto owned = options_.take_partitions ? deps_.leases->Heartbeat()
                                          : Result<std::vector<int>>(std::vector<int>{});
    if (!owned) {
      log::Warn("cannot renew partition leases", {{"detail", owned.error().message}});
    }
    const int64_t now = deps_.clock->NowMs();
    if (now >= next_gauges_ms_) {
      next_gauges_ms_ = now + kGaugePeriodMs;
      RefreshGauges(now);
    }
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(options_.period_ms), [this] { return stopping_; });
  }
}

void Coordinator::RefreshGauges(int64_t now) {
  Metrics& m = *deps_.metrics;
  queue::Queue& queue = *deps_.queue;
  int64_t total = 0;
  const std::vector<int> held = deps_.leases->Owned();
  for (int p = 0; p < options_.partitions; ++p) {
    m.SetPartitionHeld(p, std::find(held.begin(), held.end(), p) != held.end());
    auto d = queue.Depth(p);
    auto r = queue.RetryDepth(p);
    if (d) {
      m.SetQueueDepth(p, *d);
      total += *d;
    }
    if (r) m.SetRetriesWaiting(p, *r);
    auto since = queue.OldestMs(p);
    double age = 0;
    if (since && *since > 0) {
      age = static_cast<double>(std::max<int64_t>(0, now - *since)) / 1000.0;
    }
    m.SetQueueOldestAge(p, age);
  }
  queued_ = total;
  if (auto dead = queue.DeadLetterCount()) m.SetDeadLettersStored(*dead);
  if (auto gs = deps_.guard->State()) {
    m.SetGuardTripped(gs->tripped);
    if (gs->tripped && now >= next_guard_log_ms_) {
      next_guard_log_ms_ = now + kGuardLogPeriodMs;
      log::Error(
          "mass-suspension guard is HOLDING suspensions: more than the allowed "
          "number fell due within workers.guard.window_s. Check the HRIS, then run "
          "`scimsyncd guard release`",
          {{"recent", gs->recent}, {"limit", gs->limit}});
    }
  }
  if (deps_.paused && deps_.paused()) {
    (void)workers::SetPausedFlag(*deps_.pool, options_.key_prefix, "the target refuses the API key",
                                 kPausedFlagTtlMs);
  }
}

}  // namespace scimsync::daemon
