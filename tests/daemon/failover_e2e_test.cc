// Redis high availability end to end: the real scimsyncd on a primary, one replica and a Redis
// Sentinel, all on loopback, with redis.wait_replicas: 1. The primary is failed over while
// webhooks arrive -- by SENTINEL FAILOVER, and by killing it -- and the daemon, never restarted,
// follows the sentinel to the new primary. What a user checks: every webhook answered 202 ends up
// in JumpCloud, because each 202 waited until the replica held the event.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "e2e_fixture.h"
#include "test_support.h"

namespace scimsync::testing {
namespace {

constexpr char kMaster[] = "scimsync-e2e";

std::string Join(const std::vector<std::string>& v, size_t max = 10) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < max; ++i) out += v[i] + "\n";
  if (v.size() > max) out += "... and " + std::to_string(v.size() - max) + " more\n";
  return out;
}

// What is left, per partition, for a failure message.
std::string Leftovers(const RedisServer& server) {
  std::string out;
  for (int p = 0; p < 8; ++p) {
    const std::string tag = "scimsync:{p" + std::to_string(p) + "}";
    out += "p" + std::to_string(p) + ": stream " + server.Cli({"XLEN", tag + ":stream"}) +
           ", retry " + server.Cli({"ZCARD", tag + ":retry"}) + ", pending " +
           server.Cli({"XPENDING", tag + ":stream", "workers"}) + "\n";
  }
  return out;
}

// Polls until every employee is in the expected state; the last problems found otherwise. The
// queue itself may keep an item for a while: a worker whose ack was cut off by the failover
// leaves its (already applied) item pending until workers claim it again after claim_idle_ms.
std::vector<std::string> WaitForUsers(const E2E& e2e, const Workload& w, int timeout_ms) {
  std::vector<std::string> problems;
  WaitFor(
      [&] {
        problems = e2e.CheckUsers(w.expected);
        return problems.empty();
      },
      timeout_ms, /*interval_ms=*/200);
  return problems;
}

class FailoverE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = SentinelServer::Unavailable(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(e2e_.StartRedis());
    ASSERT_TRUE(replica_.StartReplicaOf(e2e_.redis()));
    sentinel_ = std::make_unique<SentinelServer>(kMaster, e2e_.redis().port(), 1000);
    ASSERT_TRUE(sentinel_->Start(1)) << sentinel_->Log();
    ASSERT_TRUE(e2e_.StartScim());
    E2EDaemonOptions options;
    // The URL (the first primary) is ignored: the daemon asks the sentinel.
    options.extra_redis_keys = ", sentinels: [\"" + sentinel_->address() +
                               "\"], master_name: " + kMaster +
                               ", wait_replicas: 1, wait_timeout_ms: 500";
    ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  }

  // One hire per employee, so an acknowledged event that Redis lost is a missing user. Four
  // senders pace their webhooks so that sending spans the failover; `midway` runs once a quarter
  // of them has been acknowledged. Returns how many were answered 202.
  int SendAcrossFailover(const Workload& w, const std::function<void()>& midway) {
    std::atomic<int> accepted{0};
    std::atomic<bool> triggered{false};
    std::thread trigger([&] {
      WaitFor([&] { return accepted.load() >= w.total / 4; }, 600000, /*interval_ms=*/5);
      midway();
      triggered = true;
    });
    std::vector<std::thread> senders;
    for (size_t t = 0; t < 4; ++t) {
      senders.emplace_back([&, t] {
        for (size_t e = t; e < w.bodies.size(); e += 4) {
          for (const std::string& body : w.bodies[e]) {
            if (e2e_.PostUntilAccepted(0, body, 60000) == 202) ++accepted;
            std::this_thread::sleep_for(std::chrono::milliseconds(60));
          }
        }
      });
    }
    for (auto& s : senders) s.join();
    trigger.join();
    EXPECT_TRUE(triggered.load());
    return accepted.load();
  }

  E2E e2e_;
  RedisServer replica_;
  std::unique_ptr<SentinelServer> sentinel_;
};

TEST_F(FailoverE2E, SentinelFailoverMidRunLosesNoAcknowledgedEvent) {
  const Workload w = MakeWorkload(120, 1, 7);
  int new_primary = 0;
  size_t scim_requests_at_failover = 0;
  int accepted = SendAcrossFailover(w, [&] {
    new_primary = sentinel_->Failover();
    scim_requests_at_failover = e2e_.scim().requests().size();
  });
  ASSERT_EQ(new_primary, replica_.port()) << sentinel_->Log();
  EXPECT_EQ(accepted, w.total) << e2e_.Log(0);

  auto problems = WaitForUsers(e2e_, w, 30000);
  EXPECT_TRUE(problems.empty()) << Join(problems) << Leftovers(replica_);
  // The workers went on after the failover, on the same process.
  EXPECT_GT(e2e_.scim().requests().size(), scim_requests_at_failover);
  EXPECT_EQ(e2e_.redis().Cli({"ROLE"}).rfind("slave", 0), 0u);
  EXPECT_EQ(e2e_.StopDaemon(0), 0) << e2e_.Log(0);
}

TEST_F(FailoverE2E, KilledPrimaryIsReplacedAndEveryAcknowledgedEventIsApplied) {
  const Workload w = MakeWorkload(120, 1, 11);
  int new_primary = 0;
  int accepted = SendAcrossFailover(w, [&] {
    const int old = e2e_.redis().port();
    e2e_.redis().Kill();  // SIGKILL: whatever only it held is gone
    new_primary = sentinel_->WaitForNewMaster(old, 20000);
    // Until a replica is back, wait_replicas: 1 refuses every webhook (503, the HRIS retries):
    // that is the trade-off. The operator brings the old host back; the sentinel turns it into
    // a replica of the new primary.
    ASSERT_TRUE(e2e_.redis().Start());
  });
  ASSERT_EQ(new_primary, replica_.port()) << sentinel_->Log();
  EXPECT_EQ(accepted, w.total) << e2e_.Log(0);

  auto problems = WaitForUsers(e2e_, w, 30000);
  EXPECT_TRUE(problems.empty()) << Join(problems) << Leftovers(replica_);
  // The same process all along (the fixture never restarts it): it stops cleanly now.
  EXPECT_EQ(e2e_.StopDaemon(0), 0) << e2e_.Log(0);
}

}  // namespace
}  // namespace scimsync::testing
