// systemd's readiness protocol (sd_notify), for `Type=notify` in systemd/scimsync.service, and a
// watchdog pinger that only pings while every worker/event loop is making progress.
//
// Every call is a cheap no-op returning false when NOTIFY_SOCKET is unset (not started by
// systemd: a terminal, a test, a container), so callers never branch on how they were started.
// A message that cannot be delivered is logged once per kind as a warning and reported as false;
// the daemon keeps running either way, because systemd's start timeout or watchdog is the right
// judge of a daemon that cannot talk to it.
//
// Daemon (daemon/src/daemon.cc) registers one loop per worker thread ("worker-N", beaten by the
// pool's iteration hook) and one for the coordinator, sends Ready() once the listener is bound
// and the workers started, then starts the pinger with a status line. On SIGHUP it sends
// Reloading() and Ready() again (also when the reload fails); on SIGTERM Stopping() before the
// drain, and it stops the pinger last.
//
// STATUS= shows up in `systemctl status scimsync`; keep it one short line such as
// "serving; queue 12 (oldest 3s), retries 2, dead letters 0".
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace scimsync::daemon::notify {

// READY=1: start-up is complete (config loaded, Redis tried, listener bound), or a reload that
// began with Reloading() is over. systemd holds `systemctl start` until this arrives.
bool Ready();

// STATUS=<text>. Newlines and other control characters become spaces (a newline would end the
// field and start a new assignment).
bool Status(std::string_view text);

// WATCHDOG=1, sent only when the service manager asked for pings (WATCHDOG_USEC set, and
// WATCHDOG_PID unset or ours); false otherwise. Prefer WatchdogPinger over calling this directly.
bool Watchdog();

// STOPPING=1: shutdown has begun (draining), so `systemctl status` says "deactivating".
bool Stopping();

// RELOADING=1 with MONOTONIC_USEC=<CLOCK_MONOTONIC now>. Finish the reload with Ready().
// systemd >= 253 (Type=notify-reload) needs MONOTONIC_USEC to tell this reload from an earlier
// one; systemd 252 (Debian 12, Type=notify with ExecReload=kill -HUP) ignores the unknown field
// and just shows "reloading" until READY=1, so the same message serves both.
bool Reloading();

// How often to send WATCHDOG=1: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, so one
// late ping is not yet fatal. Zero when the watchdog is off (no WatchdogSec=, or WATCHDOG_PID
// names another process).
std::chrono::microseconds WatchdogPingInterval();

// Pings the watchdog only while every registered loop keeps beating. Each loop registers once
// and calls Beat() every iteration (one relaxed atomic increment, no lock). Tick() sends
// WATCHDOG=1 when every loop has beaten at least once since the last ping; otherwise it sends
// nothing, so a wedged worker (stuck in a call that never times out, a deadlock) lets
// WatchdogSec= run out and systemd restarts the daemon (Restart=on-failure). With no loop
// registered, Tick() pings: the ticking thread itself is alive.
//
// Loops must beat more often than the tick interval: a worker blocked in queue Read beats at least
// once a second; a loop that may legitimately wait longer (a SCIM call with a 10 s timeout) must
// fit inside the interval too -- with WatchdogSec=60s the interval is 30 s.
class WatchdogPinger {
 public:
  // Sends the ping; returns whether it was sent. Default: notify::Watchdog.
  using PingFn = std::function<bool()>;

  struct Slot;

  // Registration of one loop; unregisters when destroyed (a worker that exits on shutdown must not
  // hold the watchdog back). Movable, not copyable. Must not outlive its pinger.
  class Loop {
   public:
    Loop() = default;
    ~Loop();
    Loop(Loop&& other) noexcept;
    Loop& operator=(Loop&& other) noexcept;
    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;

    // "I made progress." Cheap enough for every iteration of a hot loop.
    void Beat();

   private:
    friend class WatchdogPinger;
    Loop(WatchdogPinger* owner, std::shared_ptr<Slot> slot);
    void Reset();
    WatchdogPinger* owner_ = nullptr;
    std::shared_ptr<Slot> slot_;
  };

  struct TickResult {
    bool pinged = false;               // WATCHDOG=1 was handed to ping (and it reported sent)
    bool all_progressed = false;       // every loop beat since the last ping
    std::vector<std::string> stalled;  // names of loops that did not, in registration order
  };

  explicit WatchdogPinger(PingFn ping = &Watchdog);
  ~WatchdogPinger();  // Stop()s
  WatchdogPinger(const WatchdogPinger&) = delete;
  WatchdogPinger& operator=(const WatchdogPinger&) = delete;

  // `name` appears in the warning logged while the loop is stalled ("worker-3").
  Loop Register(std::string name);

  // One decision: ping or hold back. Called by the thread Start() runs, or by the caller's own
  // timer. A loop's beats count towards the next ping only: after a ping every loop must beat
  // again. Holding back is logged as a warning naming the stalled loops.
  TickResult Tick();

  // Runs Tick() every `interval` on an own thread, the first one interval after Start(). When
  // `status` is given, the thread also sends its text as STATUS= whenever it changes, checked every
  // `status_period` -- so pass it even when the watchdog is off (interval zero). Does nothing when
  // the interval is zero and no status function is given. Call once; Stop() ends it (the
  // destructor too).
  void Start(std::chrono::microseconds interval, std::function<std::string()> status = {},
             std::chrono::milliseconds status_period = std::chrono::seconds(5));
  void Stop();

 private:
  void Unregister(const std::shared_ptr<Slot>& slot);
  void Run(std::chrono::microseconds period, std::chrono::microseconds interval,
           const std::function<std::string()>& status);

  PingFn ping_;
  std::mutex mu_;
  std::vector<std::shared_ptr<Slot>> slots_;  // guarded by mu_

  std::mutex run_mu_;
  std::condition_variable run_cv_;
  bool stop_ = false;  // guarded by run_mu_
  std::thread thread_;
};

}  // namespace scimsync::daemon::notify
