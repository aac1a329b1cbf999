#include "scimsync/daemon/notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "scimsync/log.h"
#include "scimsync/strings.h"

namespace scimsync::daemon::notify {
namespace {

// Which message kinds already logged a delivery failure: one warning per kind is enough to
// explain a stuck `systemctl start`; repeating it every watchdog tick would flood the journal.
enum Kind { kReady, kStatus, kWatchdog, kStopping, kReloading, kKinds };
std::atomic<bool> g_warned[kKinds];

bool SocketSet() {
  const char* socket = std::getenv("NOTIFY_SOCKET");  // NOLINT(concurrency-mt-unsafe)
  return socket != nullptr && *socket != '\0';
}

// The one place libsystemd's negative-errno results are translated.
bool Send(Kind kind, const std::string& message) {
  if (!SocketSet()) return false;
  int r = sd_notify(/*unset_environment=*/0, message.c_str());
  if (r > 0) {
    g_warned[kind].store(false, std::memory_order_relaxed);
    return true;
  }
  if (r < 0 && !g_warned[kind].exchange(true, std::memory_order_relaxed)) {
    std::string first_line = message.substr(0, message.find('\n'));
    log::Warn("cannot notify the service manager; check NOTIFY_SOCKET",
              {{"detail", first_line + ": " + ErrnoText(-r)}});
  }
  return false;
}

}  // namespace

bool Ready() { return Send(kReady, "READY=1"); }

bool Status(std::string_view text) {
  std::string message = "STATUS=";
  message.reserve(message.size() + text.size());
  for (char c : text) {
    message.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c);
  }
  return Send(kStatus, message);
}

bool Watchdog() {
  if (WatchdogPingInterval().count() == 0) return false;
  return Send(kWatchdog, "WATCHDOG=1");
}

bool Stopping() { return Send(kStopping, "STOPPING=1"); }

bool Reloading() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  uint64_t usec =
      static_cast<uint64_t>(now.tv_sec) * 1'000'000u + static_cast<uint64_t>(now.tv_nsec) / 1'000u;
  return Send(kReloading, "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

std::chrono::microseconds WatchdogPingInterval() {
  uint64_t usec = 0;
  // Checks WATCHDOG_PID too: a child that inherited the variables must not ping for its parent.
  if (sd_watchdog_enabled(/*unset_environment=*/0, &usec) <= 0 || usec == 0) {
    return std::chrono::microseconds(0);
  }
  return std::chrono::microseconds(std::max<uint64_t>(usec / 2, 1));
}

// ---------------------------------------------------------------------------------------------

struct WatchdogPinger::Slot {
  explicit Slot(std::string n) : name(std::move(n)) {}
  const std::string name;
  std::atomic<uint64_t> beats{0};
  uint64_t beats_at_last_ping = 0;  // guarded by the pinger's mu_
};

WatchdogPinger::Loop::Loop(WatchdogPinger* owner, std::shared_ptr<Slot> slot)
    : owner_(owner), slot_(std::move(slot)) {}

WatchdogPinger::Loop::~Loop() { Reset(); }

WatchdogPinger::Loop::Loop(Loop&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), slot_(std::move(other.slot_)) {}

WatchdogPinger::Loop& WatchdogPinger::Loop::operator=(Loop&& other) noexcept {
  if (this != &other) {
    Reset();
    owner_ = std::exchange(other.owner_, nullptr);
    slot_ = std::move(other.slot_);
  }
  return *this;
}

void WatchdogPinger::Loop::Beat() {
  if (slot_) slot_->beats.fetch_add(1, std::memory_order_relaxed);
}

void WatchdogPinger::Loop::Reset() {
  if (owner_ != nullptr && slot_) owner_->Unregister(slot_);
  owner_ = nullptr;
  slot_.reset();
}

WatchdogPinger::WatchdogPinger(PingFn ping) : ping_(std::move(ping)) {}

WatchdogPinger::~WatchdogPinger() { Stop(); }

WatchdogPinger::Loop WatchdogPinger::Register(std::string name) {
  auto slot = std::make_shared<Slot>(std::move(name));
  std::lock_guard lock(mu_);
  slots_.push_back(slot);
  return Loop(this, std::move(slot));
}

void WatchdogPinger::Unregister(const std::shared_ptr<Slot>& slot) {
  std::lock_guard lock(mu_);
  slots_.erase(std::remove(slots_.begin(), slots_.end(), slot), slots_.end());
}

WatchdogPinger::TickResult WatchdogPinger::Tick() {
  TickResult result;
  std::vector<uint64_t> now;
  {
    std::lock_guard lock(mu_);
    now.reserve(slots_.size());
    for (const auto& slot : slots_) {
      uint64_t beats = slot->beats.load(std::memory_order_relaxed);
      now.push_back(beats);
      if (beats == slot->beats_at_last_ping) result.stalled.push_back(slot->name);
    }
    result.all_progressed = result.stalled.empty();
    if (result.all_progressed) {
      // Recorded before pinging: beats that land during the ping count for the next round.
      for (size_t i = 0; i < slots_.size(); ++i) slots_[i]->beats_at_last_ping = now[i];
    }
  }
  if (result.all_progressed) {
    result.pinged = ping_();
  } else {
    std::string names;
    for (const auto& name : result.stalled) {
      if (!names.empty()) names += ",";
      names += name;
    }
    log::Warn(
        "watchdog: a loop made no progress since the last ping; not pinging (systemd restarts "
        "the daemon when WatchdogSec= passes without one)",
        {{"detail", names}});
  }
  return result;
}

void WatchdogPinger::Start(std::chrono::microseconds interval, std::function<std::string()> status,
                           std::chrono::milliseconds status_period) {
  bool watchdog = interval.count() > 0;
  if (!watchdog && !status) return;
  if (thread_.joinable()) return;
  std::chrono::microseconds period = watchdog ? interval : status_period;
  if (watchdog && status) period = std::min<std::chrono::microseconds>(interval, status_period);
  if (period.count() <= 0) period = std::chrono::seconds(1);
  {
    std::lock_guard lock(run_mu_);
    stop_ = false;
  }
  thread_ = std::thread(
      [this, period, interval, status = std::move(status)] { Run(period, interval, status); });
}

void WatchdogPinger::Stop() {
  {
    std::lock_guard lock(run_mu_);
    stop_ = true;
  }
  run_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WatchdogPinger::Run(std::chrono::microseconds period, std::chrono::microseconds interval,
                         const std::function<std::string()>& status) {
  // The watchdog decision runs once per ping interval even when the thread wakes more often for
  // STATUS=; deciding more often would only make a briefly busy loop look stalled in the log.
  // The first decision waits one interval, so loops that just registered have time to beat.
  const bool watchdog = interval.count() > 0;
  auto next_tick = std::chrono::steady_clock::now() + interval;
  std::string last_status;
  std::unique_lock lock(run_mu_);
  while (!stop_) {
    lock.unlock();
    if (status) {
      std::string text = status();
      if (text != last_status && Status(text)) last_status = std::move(text);
    }
    auto now = std::chrono::steady_clock::now();
    if (watchdog && now >= next_tick) {
      Tick();
      next_tick = now + interval;
    }
    lock.lock();
    run_cv_.wait_for(lock, period, [this] { return stop_; });
  }
}

}  // namespace scimsync::daemon::notify
