// The coordinator: what one instance does for the fleet besides working items. One thread renews
// this instance's partition leases every lease_ms / 4 and, every 5 s, refreshes the queue gauges,
// logs the mass-suspension guard while it holds suspensions and re-asserts the pause flag while
// the workers are paused (the flag expires in Redis, so a crashed instance's pause goes away).
// Stop() gives every partition back, so other instances take over at once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "scimsync/clock.h"
#include "scimsync/workers/coordination.h"

namespace scimsync::queue {
class Queue;
}
namespace scimsync::redis {
class Pool;
}

namespace scimsync::daemon {

class Metrics;

class Coordinator {
 public:
  struct Options {
    std::string key_prefix;
    int partitions = 0;
    // workers.threads > 0: this instance takes partitions. Off (an ingest-only instance): no
    // lease is taken, the gauges are still kept.
    bool take_partitions = true;
    int64_t period_ms = 2500;  // lease_ms / 4: renewal well before a lease runs out
  };
  // Every pointer must outlive the coordinator. `paused` says whether the workers are paused;
  // `beat` is called every iteration (the systemd watchdog's "coordinator" loop).
  struct Deps {
    workers::Leases* leases = nullptr;
    workers::SuspensionGuard* guard = nullptr;
    queue::Queue* queue = nullptr;
    redis::Pool* pool = nullptr;
    const Clock* clock = nullptr;
    Metrics* metrics = nullptr;
    std::function<bool()> paused;
    std::function<void()> beat;
  };

  Coordinator(Options options, Deps deps);
  ~Coordinator();  // Stop()
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  void Start();
  // Ends the loop, then releases every lease. Does nothing when not running (a start that failed
  // before the coordinator's turn does not talk to Redis).
  void Stop();

  // The workers' pause hook: the gauge and the fleet-wide flag (`scimsyncd status` shows it);
  // an empty reason is a resume.
  void RecordPause(const std::string& reason);
  // Items waiting over all partitions at the last gauge refresh (the STATUS= line).
  int64_t queued() const { return queued_.load(); }

 private:
  void Loop();
  void RefreshGauges(int64_t now);

  const Options options_;
  const Deps deps_;
  std::atomic<int64_t> queued_{0};
  int64_t next_gauges_ms_ = 0;
  int64_t next_guard_log_ms_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace scimsync::daemon
