#include "scimsync/daemon/notify.h"

#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "notify_socket.h"
#include "scimsync/log.h"

namespace scimsync::daemon::notify {
namespace {

using scimsync::testing::NotifySocket;

std::vector<std::string>* g_log_lines = nullptr;
void CaptureLog(std::string_view line) {
  if (g_log_lines != nullptr) g_log_lines->emplace_back(line);
}

uint64_t MonotonicUsec() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1'000'000u +
         static_cast<uint64_t>(now.tv_nsec) / 1'000u;
}

// Each test starts with none of systemd's variables set and leaves none behind.
class NotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Clear();
    g_log_lines = &log_lines_;
    log::SetSink(&CaptureLog);
  }
  void TearDown() override {
    log::SetSink(nullptr);
    g_log_lines = nullptr;
    Clear();
  }
  static void Clear() {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
  }
  void Attach() { setenv("NOTIFY_SOCKET", socket_.path().c_str(), 1); }
  // Datagrams on a local unix socket are queued before sendmsg returns: no waiting needed.
  std::vector<std::string> Drain() {
    std::vector<std::string> out;
    NotifySocket::Message m;
    while (socket_.Receive(&m, 0)) out.push_back(m.text);
    return out;
  }

  NotifySocket socket_;
  std::vector<std::string> log_lines_;
};

TEST_F(NotifyTest, WithoutNotifySocketEveryCallIsASilentNoOp) {
  setenv("WATCHDOG_USEC", "10000000", 1);
  EXPECT_FALSE(Ready());
  EXPECT_FALSE(Status("serving"));
  EXPECT_FALSE(Watchdog());
  EXPECT_FALSE(Stopping());
  EXPECT_FALSE(Reloading());
  EXPECT_TRUE(Drain().empty());
  EXPECT_TRUE(log_lines_.empty());
}

TEST_F(NotifyTest, SendsReadyStatusStoppingFromThisProcess) {
  Attach();
  EXPECT_TRUE(Ready());
  EXPECT_TRUE(Status("serving; queue 3"));
  EXPECT_TRUE(Stopping());
  EXPECT_EQ(Drain(),
            (std::vector<std::string>{"READY=1", "STATUS=serving; queue 3", "STOPPING=1"}));
  ASSERT_EQ(socket_.messages().size(), 3u);
  EXPECT_EQ(socket_.messages()[0].sender, getpid());
}

TEST_F(NotifyTest, StatusCannotInjectAnotherAssignment) {
  Attach();
  EXPECT_TRUE(Status("line one\nREADY=1\tx"));
  std::vector<std::string> got = Drain();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], "STATUS=line one READY=1 x");
  EXPECT_FALSE(socket_.messages()[0].has("READY"));
}

TEST_F(NotifyTest, ReloadingCarriesTheMonotonicTimeForNotifyReload) {
  Attach();
  uint64_t before = MonotonicUsec();
  EXPECT_TRUE(Reloading());
  uint64_t after = MonotonicUsec();
  ASSERT_TRUE(socket_.WaitFor("RELOADING=1", 0));
  const NotifySocket::Message& m = socket_.messages().back();
  ASSERT_TRUE(m.has("MONOTONIC_USEC"));
  uint64_t stamp = std::stoull(m.value("MONOTONIC_USEC"));
  EXPECT_LE(before, stamp);
  EXPECT_LE(stamp, after);
  // A reload ends with READY=1, as on every systemd version.
  EXPECT_TRUE(Ready());
  EXPECT_TRUE(socket_.WaitFor("READY=1", 0));
}

TEST_F(NotifyTest, WatchdogPingsOnlyWhenSystemdAskedForThem) {
  Attach();
  EXPECT_EQ(WatchdogPingInterval().count(), 0);
  EXPECT_FALSE(Watchdog());
  EXPECT_TRUE(Drain().empty());

  setenv("WATCHDOG_USEC", "30000000", 1);
  EXPECT_EQ(WatchdogPingInterval(), std::chrono::seconds(15));  // half of WatchdogSec=30s
  EXPECT_TRUE(Watchdog());
  EXPECT_EQ(Drain(), std::vector<std::string>{"WATCHDOG=1"});

  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  EXPECT_TRUE(Watchdog());
  EXPECT_EQ(Drain(), std::vector<std::string>{"WATCHDOG=1"});
}

TEST_F(NotifyTest, WatchdogMeantForAnotherProcessIsIgnored) {
  Attach();
  setenv("WATCHDOG_USEC", "30000000", 1);
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  EXPECT_EQ(WatchdogPingInterval().count(), 0);
  EXPECT_FALSE(Watchdog());
  EXPECT_TRUE(Drain().empty());
}

TEST_F(NotifyTest, UndeliverableMessageIsReportedOnceNotPerCall) {
  setenv("NOTIFY_SOCKET", (socket_.path() + ".missing").c_str(), 1);
  EXPECT_FALSE(Ready());
  EXPECT_FALSE(Ready());
  ASSERT_EQ(log_lines_.size(), 1u);
  EXPECT_NE(log_lines_[0].find("\"level\":\"warn\""), std::string::npos) << log_lines_[0];
  EXPECT_NE(log_lines_[0].find("READY=1"), std::string::npos) << log_lines_[0];
  // Once the socket works again the next failure is worth a new line.
  Attach();
  EXPECT_TRUE(Ready());
  setenv("NOTIFY_SOCKET", (socket_.path() + ".missing").c_str(), 1);
  EXPECT_FALSE(Ready());
  EXPECT_EQ(log_lines_.size(), 2u);
}

// --- WatchdogPinger ---

struct PingCounter {
  int pings = 0;
  WatchdogPinger::PingFn fn() {
    return [this] {
      ++pings;
      return true;
    };
  }
};

TEST_F(NotifyTest, PingerWithNoLoopsPings) {
  PingCounter counter;
  WatchdogPinger pinger(counter.fn());
  auto r = pinger.Tick();
  EXPECT_TRUE(r.pinged);
  EXPECT_TRUE(r.stalled.empty());
  EXPECT_EQ(counter.pings, 1);
}

TEST_F(NotifyTest, PingerHoldsBackUntilEveryLoopBeatSinceTheLastPing) {
  PingCounter counter;
  WatchdogPinger pinger(counter.fn());
  auto reader = pinger.Register("worker-0");
  auto writer = pinger.Register("worker-1");

  auto r = pinger.Tick();  // nobody beat yet
  EXPECT_FALSE(r.pinged);
  EXPECT_EQ(r.stalled, (std::vector<std::string>{"worker-0", "worker-1"}));

  reader.Beat();
  reader.Beat();
  r = pinger.Tick();
  EXPECT_FALSE(r.pinged);
  EXPECT_EQ(r.stalled, std::vector<std::string>{"worker-1"});

  writer.Beat();  // worker-0's beats from before still count: no ping happened in between
  r = pinger.Tick();
  EXPECT_TRUE(r.pinged);
  EXPECT_EQ(counter.pings, 1);

  // After a ping, everyone has to beat again.
  writer.Beat();
  r = pinger.Tick();
  EXPECT_FALSE(r.pinged);
  EXPECT_EQ(r.stalled, std::vector<std::string>{"worker-0"});
  EXPECT_EQ(counter.pings, 1);

  ASSERT_FALSE(log_lines_.empty());
  EXPECT_NE(log_lines_.back().find("worker-0"), std::string::npos) << log_lines_.back();
}

TEST_F(NotifyTest, ExitedLoopNoLongerHoldsThePingBack) {
  PingCounter counter;
  WatchdogPinger pinger(counter.fn());
  auto alive = pinger.Register("alive");
  {
    auto finished = pinger.Register("finished");
    finished.Beat();
  }
  alive.Beat();
  EXPECT_TRUE(pinger.Tick().pinged);

  // A moved registration keeps counting under its name.
  WatchdogPinger::Loop moved = std::move(alive);
  EXPECT_FALSE(pinger.Tick().pinged);
  moved.Beat();
  EXPECT_TRUE(pinger.Tick().pinged);
}

TEST_F(NotifyTest, WedgedLoopStopsRealWatchdogPings) {
  Attach();
  setenv("WATCHDOG_USEC", "30000000", 1);
  WatchdogPinger pinger;  // the real notify::Watchdog
  auto worker = pinger.Register("worker-0");
  worker.Beat();
  EXPECT_TRUE(pinger.Tick().pinged);
  EXPECT_EQ(Drain(), std::vector<std::string>{"WATCHDOG=1"});

  // worker-0 is stuck: no more WATCHDOG=1 reaches systemd.
  EXPECT_FALSE(pinger.Tick().pinged);
  EXPECT_FALSE(pinger.Tick().pinged);
  EXPECT_TRUE(Drain().empty());

  worker.Beat();
  EXPECT_TRUE(pinger.Tick().pinged);
  EXPECT_EQ(Drain(), std::vector<std::string>{"WATCHDOG=1"});
}

TEST_F(NotifyTest, BackgroundThreadPingsAndSendsStatusOnlyWhenItChanges) {
  Attach();
  setenv("WATCHDOG_USEC", "2000", 1);  // ping every millisecond
  WatchdogPinger pinger;
  auto worker = pinger.Register("worker-0");
  worker.Beat();

  std::mutex mu;
  std::condition_variable cv;
  int status_calls = 0;
  pinger.Start(
      WatchdogPingInterval(),
      [&] {
        std::lock_guard lock(mu);
        ++status_calls;
        cv.notify_all();
        return std::string("serving; queue 0");
      },
      std::chrono::milliseconds(1));

  EXPECT_TRUE(socket_.WaitFor("WATCHDOG=1", 10000));
  {
    std::unique_lock lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return status_calls >= 5; }));
  }
  pinger.Stop();
  Drain();
  int statuses = 0;
  for (const auto& m : socket_.messages()) statuses += m.has("STATUS") ? 1 : 0;
  EXPECT_EQ(statuses, 1);
  EXPECT_TRUE(socket_.WaitFor("STATUS=serving; queue 0", 0));
}

TEST_F(NotifyTest, StartWithoutWatchdogOrStatusRunsNothing) {
  PingCounter counter;
  WatchdogPinger pinger(counter.fn());
  pinger.Start(std::chrono::microseconds(0));
  pinger.Stop();
  EXPECT_EQ(counter.pings, 0);
}

}  // namespace
}  // namespace scimsync::daemon::notify
