// High availability of the queue against real servers on loopback: WAIT (redis.wait_replicas)
// refuses a batch that the replicas do not confirm. The client's own Sentinel and READONLY
// handling is tested in tests/redis/sentinel_test.cc.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include "queue_test_util.h"
#include "scimsync/clock.h"
#include "scimsync/queue/queue.h"
#include "test_support.h"

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
