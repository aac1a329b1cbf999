// The applied-version store against a real Redis: what keeps an older event from being applied
// after a newer one across passes, instances and restarts.
#include "scimsync/daemon/coordination.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "scimsync/queue/redis.h"
#include "test_support.h"

namespace scimsync::daemon {
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
}  // namespace scimsync::daemon
