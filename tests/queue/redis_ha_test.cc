// High availability against real servers on loopback: a primary, a replica and a Redis Sentinel.
// The client finds the primary through the sentinels and follows a failover; a demoted primary's
// READONLY sends it back to them; a stale sentinel answer is caught by ROLE; WAIT
// (redis.wait_replicas) refuses a batch that the replicas do not confirm.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include "queue_test_util.h"
#include "scimsync/clock.h"
#include "scimsync/queue/queue.h"
#include "scimsync/queue/redis.h"
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

namespace scimsync::queue {
namespace {

using scimsync::testing::RedisOptionsFor;
using scimsync::testing::RedisServer;

using scimsync::testing::kWeek;

Item MakeItem(const std::string& employee, const std::string& dedup_id) {
  return scimsync::testing::MinimalItem(employee, dedup_id);
}

class WaitReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(primary_.Start());
    ASSERT_TRUE(replica_.StartReplicaOf(primary_));
  }
  void TearDown() override { replica_.Resume(); }

  std::unique_ptr<Queue> NewQueue(int wait_replicas) {
    config::RedisOptions o = RedisOptionsFor(primary_.url(), 4);
    o.wait_replicas = wait_replicas;
    o.wait_timeout_ms = 300;
    return NewRedisQueue(o, "", clock_);
  }
  // Entries in every partition's stream, as the replica has them.
  int64_t ReplicaEntries() {
    int64_t n = 0;
    for (int p = 0; p < 4; ++p) {
      n += std::atoll(
          replica_.Cli({"XLEN", "scimsync:{p" + std::to_string(p) + "}:stream"}).c_str());
    }
    return n;
  }

  RedisServer primary_;
  RedisServer replica_;
  FakeClock clock_;
};

TEST_F(WaitReplicasTest, ASuccessMeansTheReplicaHasIt) {
  auto q = NewQueue(1);
  auto r = q->EnqueueBatch({MakeItem("E1", "a"), MakeItem("E2", "b")}, kWeek);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->accepted, 2);
  EXPECT_EQ(ReplicaEntries(), 2);  // no waiting: WAIT already saw the replica hold it
}

TEST_F(WaitReplicasTest, AStuckReplicaTurnsTheBatchIntoATransientError) {
  auto q = NewQueue(1);
  replica_.Pause();
  auto start = std::chrono::steady_clock::now();
  auto r = q->EnqueueBatch({MakeItem("E1", "a")}, kWeek);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("only 0 of the 1 replicas in redis.wait_replicas"),
            std::string::npos)
      << r.error().message;
  EXPECT_GE(took, std::chrono::milliseconds(300));

  // The sender's retry is a duplicate (the primary has the item), yet it is confirmed only once
  // the replica holds the original: still refused while the replica is stuck...
  auto again = q->EnqueueBatch({MakeItem("E1", "a")}, kWeek);
  ASSERT_FALSE(again.ok());
  // ...and accepted once it has caught up, with the original on the replica.
  replica_.Resume();
  again = q->EnqueueBatch({MakeItem("E1", "a")}, kWeek);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->duplicates, 1);
  EXPECT_EQ(ReplicaEntries(), 1);
}

TEST_F(WaitReplicasTest, MoreReplicasThanThereAreIsRefusedAndZeroDoesNotWait) {
  auto two = NewQueue(2);
  auto r = two->EnqueueBatch({MakeItem("E1", "a")}, kWeek);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("only 1 of the 2 replicas"), std::string::npos)
      << r.error().message;

  replica_.Pause();
  auto none = NewQueue(0);
  auto ok = none->EnqueueBatch({MakeItem("E2", "b")}, kWeek);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->accepted, 1);
}

TEST_F(WaitReplicasTest, ConcurrentBatchesWithBusyReadersAreAllConfirmed) {
  auto q = NewQueue(1);
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int p = 0; p < 4; ++p) {
    readers.emplace_back([&, p] {
      while (!stop) {
        auto items = q->Read(p, "w", 10, 200);
        if (items.ok()) {
          for (const Item& item : *items) (void)q->Ack(item);
        }
      }
    });
  }
  std::atomic<int> failed{0};
  std::string last_error;
  std::mutex mu;
  std::vector<std::thread> writers;
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        std::string id = std::to_string(t) + "-" + std::to_string(i);
        auto r = q->EnqueueBatch({MakeItem("E" + id, id)}, kWeek);
        if (!r.ok()) {
          ++failed;
          std::lock_guard lock(mu);
          last_error = r.error().message;
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(failed.load(), 0) << last_error;
}

TEST_F(WaitReplicasTest, WorksAfterTheScriptCacheIsEmpty) {
  auto q = NewQueue(1);
  ASSERT_TRUE(q->EnqueueBatch({MakeItem("E1", "a")}, kWeek).ok());
  ASSERT_EQ(primary_.Cli({"SCRIPT", "FLUSH"}), "OK");
  auto r = q->EnqueueBatch({MakeItem("E2", "b")}, kWeek);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->accepted, 1);
  EXPECT_EQ(ReplicaEntries(), 2);
}

}  // namespace
}  // namespace scimsync::queue
