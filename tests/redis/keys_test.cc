// The key schema is a storage format: deployments hold data under these names, so each one is
// pinned byte for byte. A failure here means a rename that would orphan existing data.
#include "scimsync/redis/keys.h"

#include <gtest/gtest.h>

namespace scimsync::redis {
namespace {

TEST(RedisKeys, QueueKeysAreUnchanged) {
  EXPECT_EQ(keys::queue::Stream("scimsync", 3), "scimsync:{p3}:stream");
  EXPECT_EQ(keys::queue::Retry("scimsync", 3), "scimsync:{p3}:retry");
  EXPECT_EQ(keys::queue::RetryItems("scimsync", 3), "scimsync:{p3}:retry:items");
  EXPECT_EQ(keys::queue::RetryTakes("scimsync", 3), "scimsync:{p3}:retry:takes");
  EXPECT_EQ(keys::queue::Dedup("scimsync", 3, "hr", "evt-1"), "scimsync:{p3}:dedup:hr:evt-1");
  EXPECT_EQ(keys::queue::Applied("scimsync", 3), "scimsync:{p3}:applied");
  EXPECT_EQ(keys::queue::DeadLetters("scimsync"), "scimsync:dlq");
  EXPECT_EQ(keys::queue::WaitFence("scimsync"), "scimsync:wait-fence");
}

TEST(RedisKeys, ScimKeysAreUnchanged) {
  EXPECT_EQ(keys::scim::Link("scimsync", "hibob/acme", "E1"), "scimsync:link:hibob/acme:E1");
  EXPECT_EQ(keys::scim::LinkOwner("scimsync", "5f3a"), "scimsync:link-owner:5f3a");
  EXPECT_EQ(keys::scim::LinkOwnerPrefix("scimsync") + "5f3a",
            keys::scim::LinkOwner("scimsync", "5f3a"));
  EXPECT_EQ(keys::scim::Snapshot("scimsync", "hibob", "E1"), "scimsync:applied:hibob:E1");
  EXPECT_EQ(keys::scim::RateLimit("scimsync"), "scimsync:ratelimit");
  EXPECT_EQ(keys::scim::AllLinksPattern("scimsync"), "scimsync:link:*");
  EXPECT_EQ(keys::scim::LinksPattern("scimsync", "hibob/acme"), "scimsync:link:hibob/acme:*");
}

TEST(RedisKeys, WorkersKeysAreUnchanged) {
  EXPECT_EQ(keys::workers::Instances("scimsync"), "scimsync:instances");
  EXPECT_EQ(keys::workers::Lease("scimsync", 3), "scimsync:lease:{p3}");
  EXPECT_EQ(keys::workers::LeaseToken("scimsync", 3), "scimsync:lease:{p3}:token");
  EXPECT_EQ(keys::workers::LeaseOwner("scimsync", 3), "scimsync:lease:{p3}:owner");
  EXPECT_EQ(keys::workers::Versions("scimsync", 3), "scimsync:{p3}:versions");
  EXPECT_EQ(keys::workers::GuardEvents("scimsync"), "scimsync:guard:events");
  EXPECT_EQ(keys::workers::GuardTripped("scimsync"), "scimsync:guard:tripped");
  EXPECT_EQ(keys::workers::GuardSuspended("scimsync"), "scimsync:guard:suspended");
  EXPECT_EQ(keys::workers::GuardReleased("scimsync"), "scimsync:guard:released");
  EXPECT_EQ(keys::workers::Paused("scimsync"), "scimsync:paused");
  EXPECT_EQ(keys::workers::History("scimsync", "hibob/acme", "E1"),
            "scimsync:history:hibob/acme:E1");
}

TEST(RedisKeys, DaemonKeysAreUnchanged) {
  EXPECT_EQ(keys::daemon::Reconcile("scimsync", "hibob"), "scimsync:reconcile:hibob");
  EXPECT_EQ(keys::daemon::ReconcileLast("scimsync", "hibob"), "scimsync:reconcile:hibob:last");
  EXPECT_EQ(keys::daemon::ReconcileListed("scimsync", "hibob"), "scimsync:reconcile:hibob:listed");
  EXPECT_EQ(keys::daemon::ReconcileHeld("scimsync", "hibob"), "scimsync:reconcile:hibob:held");
  EXPECT_EQ(keys::daemon::ReconcileHeldPattern("scimsync"), "scimsync:reconcile:*:held");
}

// Another prefix changes only the prefix; a partition only its tag.
TEST(RedisKeys, PrefixAndPartitionAreTheOnlyVariables) {
  EXPECT_EQ(keys::queue::Stream("acme-prod", 0), "acme-prod:{p0}:stream");
  EXPECT_EQ(keys::queue::Dedup("acme-prod", 15, "bamboohr", "a:b"),
            "acme-prod:{p15}:dedup:bamboohr:a:b");
  EXPECT_EQ(keys::workers::Lease("acme-prod", 15), "acme-prod:lease:{p15}");
  EXPECT_EQ(keys::workers::Versions("acme-prod", 15), "acme-prod:{p15}:versions");
  EXPECT_EQ(keys::scim::Link("acme-prod", "gusto", "42"), "acme-prod:link:gusto:42");
}

// A prefix or scope with glob characters matches only itself in a SCAN: "team*" must not count
// "teamB"'s links on a shared Redis.
TEST(RedisKeys, PatternsEscapeGlobCharacters) {
  EXPECT_EQ(GlobEscape("scimsync"), "scimsync");
  EXPECT_EQ(GlobEscape("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f");
  EXPECT_EQ(keys::scim::AllLinksPattern("team*"), "team\\*:link:*");
  EXPECT_EQ(keys::scim::LinksPattern("team*", "p[1]"), "team\\*:link:p\\[1\\]:*");
  EXPECT_EQ(keys::daemon::ReconcileHeldPattern("t?"), "t\\?:reconcile:*:held");
}

}  // namespace
}  // namespace scimsync::redis
