// The real scimsyncd under a stand-in for systemd's notify socket: what `Type=notify`,
// `WatchdogSec=` and `ExecReload=` rely on.
#include <gtest/gtest.h>
#include <signal.h>

#include "e2e_fixture.h"
#include "notify_socket.h"

namespace scimsync::testing {
namespace {

TEST(NotifyDaemonTest, ReadyStatusWatchdogReloadAndStop) {
  E2E e2e;
  ASSERT_TRUE(e2e.StartRedis());
  ASSERT_TRUE(e2e.StartScim());
  NotifySocket socket;
  E2EDaemonOptions options;
  options.env = {socket.env(), "WATCHDOG_USEC=2000000"};
  ASSERT_TRUE(e2e.StartDaemon(0, options)) << e2e.Log(0);

  EXPECT_TRUE(socket.WaitFor("READY=1", 10000)) << e2e.Log(0);
  EXPECT_TRUE(socket.WaitFor("STATUS=", 10000));
  bool serving = false;
  for (const auto& m : socket.messages()) {
    if (m.has("STATUS") && m.value("STATUS").rfind("serving", 0) == 0) serving = true;
  }
  EXPECT_TRUE(serving) << "STATUS= should say the daemon is serving";
  // WATCHDOG_USEC=2 s: pings every second while every worker loop makes progress.
  EXPECT_TRUE(socket.WaitFor("WATCHDOG=1", 5000)) << e2e.Log(0);

  socket.Clear();
  e2e.ReloadDaemon(0);
  EXPECT_TRUE(socket.WaitFor("RELOADING=1", 10000)) << e2e.Log(0);
  EXPECT_TRUE(socket.WaitFor("READY=1", 10000));

  socket.Clear();
  EXPECT_EQ(e2e.StopDaemon(0), 0);
  EXPECT_TRUE(socket.WaitFor("STOPPING=1", 1000));
}

}  // namespace
}  // namespace scimsync::testing
