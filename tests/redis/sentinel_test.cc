// High availability of the client against real servers on loopback: a primary, a replica and a
// Redis Sentinel. The client finds the primary through the sentinels and follows a failover; a
// demoted primary's READONLY sends it back to them; a stale sentinel answer is caught by ROLE.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "redis_options.h"
#include "scimsync/redis/client.h"
#include "test_support.h"

namespace scimsync::redis {
namespace {

using scimsync::testing::RedisOptionsFor;
using scimsync::testing::RedisServer;
using scimsync::testing::SentinelServer;

constexpr char kMaster[] = "scimsync-test";

config::RedisOptions SentinelOptions(const std::vector<std::string>& sentinels,
                                     const std::string& master_name = kMaster) {
  // The URL's host and port are ignored with sentinels: point them nowhere to prove it.
  config::RedisOptions o = RedisOptionsFor("redis://127.0.0.1:1/0");
  o.sentinels = sentinels;
  o.master_name = master_name;
  return o;
}

bool WaitUntilReplica(const RedisServer& server) {
  return scimsync::testing::WaitFor([&] { return server.Cli({"ROLE"}).rfind("slave", 0) == 0; },
                                    20000);
}

class RedisSentinelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = SentinelServer::Unavailable(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(primary_.Start());
    ASSERT_TRUE(replica_.StartReplicaOf(primary_));
    sentinel_ = std::make_unique<SentinelServer>(kMaster, primary_.port());
    ASSERT_TRUE(sentinel_->Start(1)) << sentinel_->Log();
  }

  RedisServer primary_;
  RedisServer replica_;
  std::unique_ptr<SentinelServer> sentinel_;
};

TEST_F(RedisSentinelTest, AsksTheSentinelsInOrderAndFollowsAFailover) {
  // The first sentinel is down: the next one answers.
  const std::string dead = "127.0.0.1:" + std::to_string(scimsync::testing::FreePort());
  Connection c(SentinelOptions({dead, sentinel_->address()}), "");
  auto set = c.Command({"SET", "before", "1"});
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(c.endpoint(), "127.0.0.1:" + std::to_string(primary_.port()));

  ASSERT_EQ(sentinel_->Failover(), replica_.port()) << sentinel_->Log();
  ASSERT_TRUE(WaitUntilReplica(primary_)) << sentinel_->Log();

  // The old connection is closed by the sentinel or answered READONLY: at most one failed call,
  // then the new primary, with no new Connection.
  auto after = c.Command({"SET", "after", "2"});
  if (!after.ok()) {
    EXPECT_EQ(after.error().kind, ErrorKind::kTransient) << after.error().message;
    after = c.Command({"SET", "after", "2"});
  }
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(c.endpoint(), "127.0.0.1:" + std::to_string(replica_.port()));
  EXPECT_EQ(replica_.Cli({"GET", "after"}), "2");
  EXPECT_EQ(replica_.Cli({"GET", "before"}), "1");
}

TEST_F(RedisSentinelTest, AStaleSentinelAnswerIsRefusedByRole) {
  // A sentinel that names the replica as the primary (as one does that has not yet seen a
  // failover): the client must not take the replica for the primary.
  SentinelServer stale("stale", replica_.port());
  ASSERT_TRUE(stale.Start()) << stale.Log();
  Connection c(SentinelOptions({stale.address()}, "stale"), "");
  auto r = c.Command({"SET", "k", "v"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("is not the primary of 'stale'"), std::string::npos)
      << r.error().message;
  EXPECT_FALSE(c.connected());
}

TEST_F(RedisSentinelTest, MessagesSayWhatToCheck) {
  Connection unknown(SentinelOptions({sentinel_->address()}, "other"), "");
  auto r = unknown.Command({"PING"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find(sentinel_->address() + " does not monitor 'other'"),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("check redis.sentinels and redis.master_name"),
            std::string::npos);

  // A redis-server that is not a sentinel.
  Connection wrong(SentinelOptions({"127.0.0.1:" + std::to_string(replica_.port())}), "");
  r = wrong.Command({"PING"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("is it a sentinel"), std::string::npos) << r.error().message;
}

TEST(RedisReadOnlyTest, ADemotedPrimaryIsDroppedSoTheNextCallReconnects) {
  RedisServer a;
  RedisServer b;
  ASSERT_TRUE(a.Start());
  ASSERT_TRUE(b.Start());
  Connection c(RedisOptionsFor(a.url()), "");
  ASSERT_TRUE(c.Command({"SET", "k", "v"}).ok());
  // Demoted behind the client's back, without closing its connection.
  ASSERT_EQ(a.Cli({"REPLICAOF", "127.0.0.1", std::to_string(b.port())}), "OK");
  auto r = c.Command({"SET", "k", "w"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("READONLY"), std::string::npos) << r.error().message;
  EXPECT_FALSE(c.connected());

  // In a pipeline too, once every reply has been read.
  ASSERT_TRUE(c.Connect().ok());
  auto p = c.Commands({{"GET", "k"}, {"SET", "k", "w"}, {"PING"}});
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->size(), 3u);
  EXPECT_TRUE((*p)[0].ok());
  EXPECT_FALSE((*p)[1].ok());
  EXPECT_TRUE((*p)[2].ok());
  EXPECT_FALSE(c.connected());

  // A script that writes is refused the same way.
  ASSERT_TRUE(c.Connect().ok());
  Script script("return redis.call('SET', KEYS[1], ARGV[1])");
  auto e = c.Eval(script, {"k"}, {"x"});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("READONLY"), std::string::npos) << e.error().message;
  EXPECT_FALSE(c.connected());
}

}  // namespace
}  // namespace scimsync::redis
