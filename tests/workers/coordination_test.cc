// The applied-version store against a real Redis: what keeps an older event from being applied
// after a newer one across passes, instances and restarts.
#include "scimsync/workers/coordination.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/redis/client.h"
#include "test_support.h"

namespace scimsync::workers {
namespace {

using scimsync::testing::RedisServer;

class VersionsTest : public ::testing::Test {
 protected:
  VersionsTest() : pool_(Options(server_.url()), ""), versions_(pool_, "vt") {}

  static config::RedisOptions Options(const std::string& url) {
    config::Config cfg;
    config::LoadString("redis: {url: \"" + url + "\", connect_timeout_ms: 500}\n", "test.yaml",
                       &cfg);
    return cfg.redis;
  }

  void SetUp() override { ASSERT_TRUE(server_.Start()); }

  std::string Stored(int partition, const std::string& who) {
    auto v = versions_.Get(partition, who);
    EXPECT_TRUE(v.ok()) << v.error().message;
    return v.ok() ? *v : "";
  }

  RedisServer server_;
  redis::Pool pool_;
  Versions versions_;
};

// The percentage limit counts this deployment's links only. A key prefix with a glob character
// ("team*", which redis.key_prefix allows) must not count another deployment's links on the same
// Redis: 100 links of "teamB" would cut "team*"'s limit from 50 to 10.
TEST_F(VersionsTest, TheGuardsPercentageCountsOnlyItsOwnLinks) {
  config::GuardOptions o;
  o.max_suspends = 50;
  o.max_suspend_percent = 10;
  o.window_s = 3600;
  FakeClock clock;
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(server_.Cli({"SET", "teamB:link:hr:E" + std::to_string(i), "jc"}), "OK");
  }
  SuspensionGuard guard(pool_, "team*", o, clock);
  auto state = guard.State();
  ASSERT_TRUE(state.ok()) << state.error().message;
  EXPECT_EQ(state->limit, 50);

  // Its own 100 links do count, in every scope (and its link-owner keys do not).
  for (int i = 0; i < 100; ++i) {
    const std::string scope = i % 2 == 0 ? "hr" : "hr/acme";
    ASSERT_EQ(server_.Cli({"SET", "team*:link:" + scope + ":E" + std::to_string(i), "jc"}), "OK");
    ASSERT_EQ(server_.Cli({"SET", "team*:link-owner:jc" + std::to_string(i), "x"}), "OK");
  }
  SuspensionGuard fresh(pool_, "team*", o, clock);
  state = fresh.State();
  ASSERT_TRUE(state.ok()) << state.error().message;
  EXPECT_EQ(state->limit, 10);
}

TEST_F(VersionsTest, RaiseManyStoresEachNewerVersionAndNeverLowersOne) {
  Status first = versions_.Raise(1, "E1", "10");
  ASSERT_TRUE(first.ok()) << first.error().message;
  ASSERT_TRUE(versions_.Raise(1, "E2", "2026-01-05T00:00:00Z").ok());
  // One script for the pass: a larger number, a smaller number, an older and a newer timestamp,
  // a new employee, and an empty version (nothing to store).
  ASSERT_TRUE(
      versions_.RaiseMany(1, {{"E1", "9"}, {"E2", "2026-01-04T00:00:00Z"}, {"E3", "7"}, {"E4", ""}})
          .ok());
  EXPECT_EQ(Stored(1, "E1"), "10");  // 9 < 10: kept
  EXPECT_EQ(Stored(1, "E2"), "2026-01-05T00:00:00Z");
  EXPECT_EQ(Stored(1, "E3"), "7");
  EXPECT_EQ(Stored(1, "E4"), "");
  ASSERT_TRUE(versions_.RaiseMany(1, {{"E1", "100"}, {"E2", "2026-02-01T00:00:00Z"}}).ok());
  EXPECT_EQ(Stored(1, "E1"), "100");  // numerically larger, though "100" < "9" as text
  EXPECT_EQ(Stored(1, "E2"), "2026-02-01T00:00:00Z");
  // Partitions are separate hashes.
  EXPECT_EQ(Stored(2, "E1"), "");
}

TEST_F(VersionsTest, RedisDownIsAnErrorNotASilentSkip) {
  server_.Stop();
  Status s = versions_.RaiseMany(1, {{"E1", "1"}});
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace scimsync::workers

namespace scimsync::workers {
namespace {

using scimsync::testing::RedisServer;

// Leases against a real Redis, on a fake clock: the fencing token rises with every acquisition,
// a partition taken from an instance that vanished is worked only after the grace period, and
// one handed over cleanly at once.
class LeasesTest : public ::testing::Test {
 protected:
  LeasesTest() : pool_(RedisOptionsOf(server_.url()), ""), clock_(1'800'000'000'000) {}
  static config::RedisOptions RedisOptionsOf(const std::string& url) {
    config::Config cfg;
    config::LoadString("redis: {url: \"" + url + "\", connect_timeout_ms: 500}\n", "test.yaml",
                       &cfg);
    return cfg.redis;
  }
  void SetUp() override { ASSERT_TRUE(server_.Start()); }

  LeaseOptions Options(const std::string& id) {
    LeaseOptions o;
    o.key_prefix = "lt";
    o.partitions = 1;
    o.instance_id = id;
    o.lease_ms = 10000;
    o.grace_ms = 3000;
    return o;
  }

  RedisServer server_;
  redis::Pool pool_;
  FakeClock clock_;
};

// What `scimsyncd status` shows, read without being an instance: each partition's owner and
// the time left on its lease, the instances heard from since a time, and why SCIM work pauses.
TEST_F(LeasesTest, WorkersStateShowsOwnersInstancesAndThePause) {
  Leases a(pool_, Options("a"), clock_);
  ASSERT_TRUE(a.Heartbeat().ok());
  auto state = ReadWorkersState(pool_, "lt", 2, clock_.NowMs() - 10000);
  ASSERT_TRUE(state.ok()) << state.error().message;
  ASSERT_EQ(state->leases.size(), 2u);
  EXPECT_EQ(state->leases[0].owner, "a");
  EXPECT_GT(state->leases[0].ttl_ms, 0);
  EXPECT_LE(state->leases[0].ttl_ms, 10000);
  EXPECT_EQ(state->leases[1].owner, "") << "partition 1 is nobody's";
  EXPECT_EQ(state->leases[1].ttl_ms, -2);
  EXPECT_EQ(state->instances, std::vector<std::string>{"a"});
  EXPECT_EQ(state->pause_reason, "");

  ASSERT_TRUE(SetPausedFlag(pool_, "lt", "the SCIM server answered 401", 60000).ok());
  state = ReadWorkersState(pool_, "lt", 2, clock_.NowMs() + 1);
  ASSERT_TRUE(state.ok()) << state.error().message;
  EXPECT_TRUE(state->instances.empty()) << "a's heartbeat is older than asked";
  EXPECT_EQ(state->pause_reason, "the SCIM server answered 401");

  server_.Stop();
  EXPECT_FALSE(ReadWorkersState(pool_, "lt", 2, 0).ok()) << "Redis down reads as nothing held";
}

TEST_F(LeasesTest, TokensRiseAndATakeoverWaitsForTheGraceUnlessHandedOver) {
  Leases a(pool_, Options("a"), clock_);
  Leases b(pool_, Options("b"), clock_);
  ASSERT_TRUE(a.Heartbeat().ok());
  const int64_t first = a.Token(0);
  EXPECT_GT(first, 0);
  EXPECT_TRUE(a.Holds(0, first));
  ASSERT_TRUE(b.Heartbeat().ok());
  EXPECT_EQ(b.Token(0), 0) << "two owners";

  // A vanishes (its lease runs out in Redis): B takes the partition, with a higher token, but
  // works it only after the grace period.
  server_.Cli({"DEL", "lt:lease:{p0}"});
  ASSERT_TRUE(b.Heartbeat().ok());
  EXPECT_FALSE(b.Owns(0)) << "worked before the grace period";
  clock_.AdvanceMs(3000);
  const int64_t second = b.Token(0);
  EXPECT_GT(second, first);
  // A's view: its lease is past its local end; nothing it started may write any more.
  clock_.AdvanceMs(5000);
  EXPECT_FALSE(a.Holds(0, first));

  // B hands it over cleanly: A takes it and works it at once.
  ASSERT_TRUE(b.Heartbeat().ok());
  b.ReleaseAll();
  ASSERT_TRUE(a.Heartbeat().ok());
  EXPECT_TRUE(a.Owns(0));
  EXPECT_GT(a.Token(0), second);
  EXPECT_FALSE(a.Holds(0, first)) << "the old lease's work passes the fence";
}

}  // namespace
}  // namespace scimsync::workers
