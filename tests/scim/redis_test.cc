// The Redis-backed pieces against a real redis-server: the link table and the shared rate
// limiter (the same behaviour suite as the in-memory limiter, on a FakeClock).
#include <gtest/gtest.h>

#include <memory>

#include "rate_limiter_cases.h"
#include "scimsync/config.h"
#include "scimsync/redis/client.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/protocol.h"
#include "scimsync/scim/rate_limiter.h"
#include "test_support.h"

namespace scimsync::scim {
namespace {

class RedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start()) << "redis-server needed (scripts/install-deps)";
    config::RedisOptions o;
    o.host = "127.0.0.1";
    o.port = server_.port();
    pool_ = std::make_unique<redis::Pool>(o, "");
  }

  cases::Factory Factory() {
    return [this](const RateLimitOptions& o, const Clock& c) {
      return NewRedisRateLimiter(*pool_, "scimsync:ratelimit:" + std::to_string(++bucket_), o, c);
    };
  }

  scimsync::testing::RedisServer server_;
  std::unique_ptr<redis::Pool> pool_;
  int bucket_ = 0;
};

TEST_F(RedisTest, LinkTableRoundTrip) {
  auto links = NewRedisLinkStore(*pool_, "scimsync");
  auto none = links->Get("hibob", "E1");
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(links->Put("hibob", "E1", "jc-1").ok());
  EXPECT_EQ(server_.Cli({"GET", "scimsync:link:hibob:E1"}), "jc-1");
  EXPECT_EQ(links->Get("hibob", "E1")->value_or(""), "jc-1");
  EXPECT_FALSE(links->Get("personio", "E1")->has_value());          // scopes are separate
  EXPECT_EQ(server_.Cli({"TTL", "scimsync:link:hibob:E1"}), "-1");  // links do not expire
  ASSERT_TRUE(links->Remove("hibob", "E1").ok());
  EXPECT_FALSE(links->Get("hibob", "E1")->has_value());
}

// Counting links (the guards' percentage thresholds): per scope or in all, in Redis and in
// memory alike; owners and snapshots are not links, and a prefix or scope with glob characters
// counts only itself.
void CountsLinks(LinkStore& links, LinkStore& other_prefix) {
  ASSERT_EQ(*links.CountAll(), 0);
  ASSERT_TRUE(links.Put("hr", "E1", "jc-1").ok());
  ASSERT_TRUE(links.PutApplied("hr", "E2", {"jc-2", "{}", 5}).ok());
  ASSERT_TRUE(links.Put("hr/acme", "E1", "jc-3").ok());
  ASSERT_TRUE(links.Put("h*", "E9", "jc-4").ok());
  ASSERT_TRUE(other_prefix.Put("hr", "E7", "jc-7").ok());
  EXPECT_EQ(*links.Count("hr"), 2);
  EXPECT_EQ(*links.Count("hr/acme"), 1);
  EXPECT_EQ(*links.Count("h*"), 1);
  EXPECT_EQ(*links.Count("nobody"), 0);
  EXPECT_EQ(*links.CountAll(), 4);
  ASSERT_TRUE(links.Remove("hr", "E1").ok());
  EXPECT_EQ(*links.Count("hr"), 1);
  EXPECT_EQ(*links.CountAll(), 3);
}

TEST_F(RedisTest, LinkCounts) {
  auto links = NewRedisLinkStore(*pool_, "s*");
  auto other = NewRedisLinkStore(*pool_, "sx");
  CountsLinks(*links, *other);
  MemoryLinkStore memory;
  MemoryLinkStore memory_other;
  CountsLinks(memory, memory_other);
}

// Each account remembers the scope and employee that linked it last, so a second HR source can
// tell it is someone else's; an unlink forgets only its own claim. In Redis and in memory alike.
void OwnersFollowTheLinks(LinkStore& links) {
  ASSERT_FALSE(links.OwnerOf("jc-1")->has_value());
  ASSERT_TRUE(links.Put("hr", "hr:1001", "jc-1").ok());
  auto owner = links.OwnerOf("jc-1");
  ASSERT_TRUE(owner.ok() && owner->has_value());
  EXPECT_EQ((*owner)->scope, "hr");
  EXPECT_EQ((*owner)->employee, "hr:1001");
  // A second scope links the same account (a conflict a human resolved that way).
  ASSERT_TRUE(links.Put("hr2", "hr2:7", "jc-1").ok());
  ASSERT_TRUE(links.Remove("hr", "hr:1001").ok());  // not hr's any more: hr2's claim stays
  EXPECT_EQ((*links.OwnerOf("jc-1"))->scope, "hr2");
  ASSERT_TRUE(links.Remove("hr2", "hr2:7").ok());
  EXPECT_FALSE(links.OwnerOf("jc-1")->has_value());
  EXPECT_FALSE(links.Get("hr2", "hr2:7")->has_value());
}

TEST_F(RedisTest, LinkOwners) {
  auto links = NewRedisLinkStore(*pool_, "scimsync");
  OwnersFollowTheLinks(*links);
  MemoryLinkStore memory;
  OwnersFollowTheLinks(memory);
}

// The snapshot of the last applied state travels with the link: one MGET reads both, one MSET
// writes both, a plain Put or DropSnapshot forgets it, Remove deletes it, and a snapshot
// recorded for another JumpCloud id is never returned with this link.
void SnapshotsFollowTheLinks(LinkStore& links) {
  User jane;
  jane.user_name = "jdoe";
  jane.department = "Engineering";
  jane.active = true;
  const std::string snapshot = SnapshotJson(jane);
  ASSERT_TRUE(links.PutApplied("hr", "E1", {"jc-1", snapshot, 1234}).ok());
  auto link = links.Read("hr", "E1");
  ASSERT_TRUE(link.ok() && link->has_value());
  EXPECT_EQ((*link)->jumpcloud_id, "jc-1");
  EXPECT_EQ((*link)->snapshot, snapshot);
  EXPECT_EQ((*link)->applied_ms, 1234);
  EXPECT_EQ(links.Get("hr", "E1")->value_or(""), "jc-1");
  EXPECT_EQ((*links.OwnerOf("jc-1"))->employee, "E1");
  auto parsed = ParseSnapshot((*link)->snapshot);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, jane);

  ASSERT_TRUE(links.DropSnapshot("hr", "E1").ok());
  link = links.Read("hr", "E1");
  EXPECT_EQ((*link)->jumpcloud_id, "jc-1");
  EXPECT_EQ((*link)->snapshot, "");
  EXPECT_EQ((*link)->applied_ms, 0);

  ASSERT_TRUE(links.PutApplied("hr", "E1", {"jc-1", snapshot, 1234}).ok());
  ASSERT_TRUE(links.Put("hr", "E1", "jc-2").ok());  // relinked: the snapshot was jc-1's
  link = links.Read("hr", "E1");
  EXPECT_EQ((*link)->jumpcloud_id, "jc-2");
  EXPECT_EQ((*link)->snapshot, "");

  ASSERT_TRUE(links.PutApplied("hr", "E1", {"jc-2", snapshot, 99}).ok());
  ASSERT_TRUE(links.Remove("hr", "E1").ok());
  EXPECT_FALSE(links.Read("hr", "E1")->has_value());
}

TEST_F(RedisTest, LinkSnapshots) {
  auto links = NewRedisLinkStore(*pool_, "scimsync");
  SnapshotsFollowTheLinks(*links);
  MemoryLinkStore memory;
  SnapshotsFollowTheLinks(memory);
  // Nothing left behind in Redis by Remove.
  EXPECT_EQ(server_.Cli({"EXISTS", "scimsync:applied:hr:E1"}), "0");
  // A snapshot key that names another JumpCloud id (written by an older link) is ignored.
  ASSERT_TRUE(links->Put("hr", "E2", "jc-new").ok());
  ASSERT_EQ(server_.Cli({"SET", "scimsync:applied:hr:E2", "5\njc-old\n{}"}), "OK");
  auto link = links->Read("hr", "E2");
  ASSERT_TRUE(link.ok() && link->has_value());
  EXPECT_EQ((*link)->jumpcloud_id, "jc-new");
  EXPECT_EQ((*link)->snapshot, "");
  // A link written before snapshots existed reads as a link without one.
  ASSERT_EQ(server_.Cli({"SET", "scimsync:link:hr:E3", "jc-3"}), "OK");
  EXPECT_EQ((*links->Read("hr", "E3"))->snapshot, "");
}

TEST_F(RedisTest, LinkTableFailsTransientlyWhileRedisIsDown) {
  auto links = NewRedisLinkStore(*pool_, "scimsync");
  server_.Kill();
  auto r = links->Get("hibob", "E1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("link table"), std::string::npos);
}

TEST_F(RedisTest, RateLimiterPacesRequests) { cases::PacesRequests(Factory()); }
TEST_F(RedisTest, RateLimiterNeverExceedsTheRate) { cases::NeverExceedsTheRate(Factory()); }
TEST_F(RedisTest, RateLimiterDeniedReservationsReserveNothing) {
  cases::DeniedReservationsReserveNothing(Factory());
}
TEST_F(RedisTest, RateLimiterBlocksAfter429ThenRecoversGradually) {
  cases::BlocksAfter429ThenRecoversGradually(Factory());
}
TEST_F(RedisTest, RateLimiterRepeated429sCompoundOnlyAfterTheBlock) {
  cases::Repeated429sCompoundOnlyAfterTheBlock(Factory());
}
TEST_F(RedisTest, RateLimiterZeroRateOnlyHonours429) { cases::ZeroRateOnlyHonours429(Factory()); }

TEST_F(RedisTest, InstancesSharingTheKeyShareTheRate) {
  FakeClock clock;
  RateLimitOptions o = cases::TenPerSecond();
  auto a = NewRedisRateLimiter(*pool_, RateLimitKey("scimsync"), o, clock);
  auto b = NewRedisRateLimiter(*pool_, RateLimitKey("scimsync"), o, clock);
  EXPECT_EQ(cases::MustReserve(*a, 5000).wait_ms, 0);
  EXPECT_EQ(cases::MustReserve(*b, 5000).wait_ms, 100);
  EXPECT_EQ(cases::MustReserve(*a, 5000).wait_ms, 200);
  // One instance's 429 holds the other's requests too.
  ASSERT_TRUE(b->Throttled(5000).ok());
  auto held = cases::MustReserve(*a, 1000);
  EXPECT_FALSE(held.granted);
  EXPECT_EQ(held.wait_ms, 5000);
  // The state expires once it no longer matters.
  int64_t ttl = std::stoll(server_.Cli({"PTTL", "scimsync:ratelimit"}));
  EXPECT_GT(ttl, 60000);
  EXPECT_LE(ttl, 5000 + 60000 + 60000);
}

// Without pacing, the shared bucket is only read every kUnpacedRefreshMs: requests do not pay
// a Redis round trip each, and another instance's 429 reaches this one within that interval.
TEST_F(RedisTest, UnpacedLimiterReadsTheShared429BlockPeriodically) {
  FakeClock clock;
  RateLimitOptions o = cases::TenPerSecond();
  o.requests_per_second = 0;
  auto a = NewRedisRateLimiter(*pool_, RateLimitKey("scimsync"), o, clock);
  auto b = NewRedisRateLimiter(*pool_, RateLimitKey("scimsync"), o, clock);
  ASSERT_EQ(server_.Cli({"CONFIG", "RESETSTAT"}), "OK");
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(cases::MustReserve(*b, 0).granted);
  std::string stats = server_.Cli({"INFO", "commandstats"});
  // One read of the bucket (HMGET inside the script), no write.
  EXPECT_NE(stats.find("cmdstat_hmget:calls=1,"), std::string::npos) << stats;
  EXPECT_EQ(stats.find("cmdstat_hset:"), std::string::npos) << stats;

  ASSERT_TRUE(a->Throttled(5000).ok());
  // a's own requests are held at once.
  auto held = cases::MustReserve(*a, 1000);
  EXPECT_FALSE(held.granted);
  EXPECT_EQ(held.wait_ms, 5000);
  // b read the bucket just before the 429: it learns of it at its next read.
  clock.AdvanceMs(kUnpacedRefreshMs - 1);
  EXPECT_TRUE(cases::MustReserve(*b, 0).granted);
  clock.AdvanceMs(1);
  auto b_held = cases::MustReserve(*b, 1000);
  EXPECT_FALSE(b_held.granted);
  EXPECT_EQ(b_held.wait_ms, 5000 - kUnpacedRefreshMs);
  auto b_waits = cases::MustReserve(*b, 5000);
  EXPECT_TRUE(b_waits.granted);
  EXPECT_EQ(b_waits.wait_ms, 5000 - kUnpacedRefreshMs);
}

TEST_F(RedisTest, RateLimiterFailsTransientlyWhileRedisIsDown) {
  FakeClock clock;
  auto l = NewRedisRateLimiter(*pool_, RateLimitKey("scimsync"), cases::TenPerSecond(), clock);
  server_.Kill();
  auto r = l->Reserve(1000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("rate limiter"), std::string::npos);
}

}  // namespace
}  // namespace scimsync::scim
