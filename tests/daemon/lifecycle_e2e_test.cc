// The Daemon's lifecycle through the real scimsyncd: what SIGTERM stops first, what a SIGHUP
// applies or refuses, and a start-up that fails at its first component. The unit test of the
// order itself is lifecycle_test.cc.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "daemon_fixture.h"
#include "e2e_fixture.h"
#include "notify_socket.h"

namespace scimsync::testing {
namespace {

constexpr int64_t kT0 = 1'790'000'000;

class DaemonE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(e2e_.StartRedis());
    ASSERT_TRUE(e2e_.StartScim());
  }
  // Waits until the daemon's log holds `text` `times` times.
  bool WaitForLog(const std::string& text, int times = 1, int timeout_ms = 10000) {
    return WaitFor(
        [&] {
          const std::string log = e2e_.Log(0);
          int n = 0;
          for (size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) {
            ++n;
          }
          return n >= times;
        },
        timeout_ms);
  }
  E2E e2e_;
};

// SIGTERM while a sync waits on JumpCloud: STOPPING=1 first, then new webhooks are answered 503
// (the listener stays up to say so, and the HRIS retries) while the in-flight sync finishes and
// is acknowledged; then the process exits 0 with nothing left pending.
TEST_F(DaemonE2E, SigtermAnswersNewWebhooks503WhileTheInFlightSyncFinishes) {
  NotifySocket socket;
  E2EDaemonOptions options;
  options.env = {socket.env()};
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  ASSERT_TRUE(socket.WaitFor("READY=1", 10000));
  // JumpCloud creates the user, then holds its answer for 1.5 s (target.timeout_ms is 2 s,
  // drain_timeout_s 5).
  e2e_.scim().InjectFault(Fault::Delay(1500).On("POST", "/Users"));
  ASSERT_EQ(e2e_.PostOnce(0, GenericBody("t1", "employee.created", "T1", "Engineer", kT0)), 202);
  ASSERT_TRUE(WaitFor([&] { return e2e_.scim().CountRequests("POST", "/Users") == 1; }, 10000))
      << e2e_.Log(0);

  socket.Clear();
  e2e_.SendSignalToDaemon(0, SIGTERM);
  ASSERT_TRUE(socket.WaitFor("STOPPING=1", 5000)) << e2e_.Log(0);
  ASSERT_TRUE(WaitForLog("\"msg\":\"stopping\""));
  EXPECT_EQ(e2e_.PostOnce(0, GenericBody("t2", "employee.created", "T2", "Engineer", kT0)), 503);
  EXPECT_EQ(e2e_.Log(0).find("\"msg\":\"sync\""), std::string::npos)
      << "the in-flight sync ended before new webhooks were refused";

  EXPECT_EQ(e2e_.StopDaemon(0), 0) << e2e_.Log(0);
  const std::string log = e2e_.Log(0);
  const size_t stopping = log.find("\"msg\":\"stopping\"");
  const size_t synced = log.find("\"msg\":\"sync\"");
  ASSERT_NE(synced, std::string::npos) << log;
  EXPECT_GT(synced, stopping) << log;
  EXPECT_NE(log.find("\"employee\":\"T1\"", synced), std::string::npos) << log;
  EXPECT_GT(log.find("scimsyncd stopped"), synced) << log;
  EXPECT_EQ(log.find("drain timeout"), std::string::npos) << log;
  // T1 was acknowledged, T2 never stored.
  EXPECT_EQ(e2e_.Pending(), 0);
  EXPECT_TRUE(e2e_.scim().FindUsers("externalId", "T2").empty());
  EXPECT_EQ(e2e_.scim().FindUsers("externalId", "T1").size(), 1u);
}

// A SIGHUP applies the file's profiles and secrets as a whole or refuses them as a whole (a
// secret it cannot read, a file with problems) and keeps serving with the running ones; systemd
// hears READY=1 after RELOADING=1 either way.
TEST_F(DaemonE2E, AReloadIsAppliedOrRefusedAsAWholeAndReadyFollowsEither) {
  NotifySocket socket;
  E2EDaemonOptions options;
  options.env = {socket.env()};
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  ASSERT_TRUE(socket.WaitFor("READY=1", 10000));
  const std::string config = ReadFile(e2e_.config_path(0));
  auto body = [](const std::string& id) {
    return GenericBody(id, "employee.created", id, "Engineer", kT0);
  };
  EXPECT_EQ(e2e_.PostOnce(0, body("R1"), "/webhooks/hr2"), 404);

  // A second profile whose secret is not set: refused, nothing of it applied.
  WriteFile(e2e_.config_path(0),
            config + "  - {name: hr2, connector: generic, secret_env: RELOAD_TEST_UNSET}\n");
  socket.Clear();
  e2e_.ReloadDaemon(0);
  ASSERT_TRUE(WaitForLog("reload failed; keeping the running config")) << e2e_.Log(0);
  EXPECT_TRUE(socket.WaitFor("RELOADING=1", 5000));
  EXPECT_TRUE(socket.WaitFor("READY=1", 5000));
  EXPECT_NE(e2e_.Log(0).find("profile 'hr2'"), std::string::npos) << e2e_.Log(0);
  EXPECT_EQ(e2e_.PostOnce(0, body("R2"), "/webhooks/hr2"), 404);
  EXPECT_EQ(e2e_.PostOnce(0, body("R3")), 202);

  // A file with problems: refused.
  WriteFile(e2e_.config_path(0), config + "no_such_setting: 1\n");
  socket.Clear();
  e2e_.ReloadDaemon(0);
  ASSERT_TRUE(WaitForLog("reload failed: the config has problems")) << e2e_.Log(0);
  EXPECT_TRUE(socket.WaitFor("READY=1", 5000));
  EXPECT_EQ(e2e_.PostOnce(0, body("R4")), 202);

  // Fixed: applied; the new profile takes webhooks, the old one still does.
  WriteFile(e2e_.config_path(0),
            config + "  - {name: hr2, connector: generic, secret_env: TEST_HR_SECRET}\n");
  socket.Clear();
  e2e_.ReloadDaemon(0);
  ASSERT_TRUE(WaitForLog("\"msg\":\"reloaded profiles and secrets\",\"profiles\":2"))
      << e2e_.Log(0);
  EXPECT_TRUE(socket.WaitFor("READY=1", 5000));
  EXPECT_EQ(e2e_.PostOnce(0, body("R5"), "/webhooks/hr2"), 202);
  EXPECT_EQ(e2e_.PostOnce(0, body("R6")), 202);
  EXPECT_EQ(e2e_.StopDaemon(0), 0) << e2e_.Log(0);
}

// Redis down at start is no start failure (the "redis" component only checks): the daemon
// starts, says so, answers webhooks 503 so the HRIS retries, and takes and syncs them once Redis
// answers.
TEST_F(DaemonE2E, RedisDownAtStartIsLoggedAndWebhooksAre503UntilItAnswers) {
  e2e_.redis().Stop();
  ASSERT_TRUE(e2e_.StartDaemon(0)) << e2e_.Log(0);
  EXPECT_NE(e2e_.Log(0).find("redis is not reachable; webhooks are answered 503 until it is"),
            std::string::npos)
      << e2e_.Log(0);
  const std::string body = GenericBody("u1", "employee.created", "U1", "Engineer", kT0);
  EXPECT_EQ(e2e_.PostOnce(0, body), 503);
  ASSERT_TRUE(e2e_.redis().Start());
  EXPECT_EQ(e2e_.PostUntilAccepted(0, body, 30000), 202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  EXPECT_EQ(e2e_.scim().FindUsers("externalId", "U1").size(), 1u);
  EXPECT_EQ(e2e_.StopDaemon(0), 0) << e2e_.Log(0);
}

// The listener is the first component: when its port is taken the daemon exits 78 (a config
// mistake) before any other component ran -- no lease taken, no instance registered, no item
// read: Redis holds nothing afterwards.
TEST_F(DaemonE2E, APortInUseExits78BeforeAnythingTouchesRedis) {
  ASSERT_TRUE(e2e_.StartDaemon(0)) << e2e_.Log(0);
  const int port = e2e_.port(0);
  ASSERT_EQ(e2e_.StopDaemon(0), 0);
  e2e_.redis().Cli({"FLUSHALL"});
  // The fixture's config asks the kernel for a port; this start asks for the one just used.
  std::string config = ReadFile(e2e_.config_path(0));
  const std::string any_port = "port: 0}";
  ASSERT_NE(config.find(any_port), std::string::npos) << config;
  config.replace(config.find(any_port), any_port.size(), "port: " + std::to_string(port) + "}");
  WriteFile(e2e_.config_path(0), config);
  ASSERT_EQ(e2e_.redis().Cli({"DBSIZE"}), "0");

  int holder = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(holder, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(holder, 1), 0);
  int rc = -1;
  std::string err;
  e2e_.Command(0, {}, &rc, &err, /*timeout_ms=*/20000);
  close(holder);
  EXPECT_EQ(rc, 78) << err;
  EXPECT_NE(err.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << err;
  EXPECT_EQ(err.find("scimsyncd started"), std::string::npos) << err;
  EXPECT_EQ(e2e_.redis().Cli({"DBSIZE"}), "0") << e2e_.redis().Cli({"KEYS", "*"});
}

}  // namespace
}  // namespace scimsync::testing
