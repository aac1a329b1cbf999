// Time is injected everywhere a decision depends on it (retry schedules, dedup windows,
// timestamp tolerance, token buckets), so tests can set it instead of sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace scimsync {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, milliseconds since the Unix epoch.
  virtual int64_t NowMs() const = 0;
  int64_t NowSeconds() const { return NowMs() / 1000; }
};

class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  // A process-wide instance; SystemClock has no state.
  static const SystemClock& Instance() {
    static const SystemClock clock;
    return clock;
  }
};

// A clock that moves only when told to. Thread-safe so it can be shared with worker threads.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'700'000'000'000) : now_ms_(start_ms) {}
  int64_t NowMs() const override {
    std::lock_guard lock(mu_);
    return now_ms_;
  }
  void AdvanceMs(int64_t ms) {
    std::lock_guard lock(mu_);
    now_ms_ += ms;
  }
  void SetMs(int64_t ms) {
    std::lock_guard lock(mu_);
    now_ms_ = ms;
  }

 private:
  mutable std::mutex mu_;
  int64_t now_ms_;
};

}  // namespace scimsync
