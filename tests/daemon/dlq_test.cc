// `scimsyncd dlq` against a real Redis while workers keep dead-lettering what is replayed: each
// dead letter is replayed once and the count printed is the true one.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <sstream>
#include <thread>

#include "../queue/queue_test_util.h"
#include "scimsync/daemon/admin.h"
#include "scimsync/queue/queue.h"
#include "test_support.h"

namespace scimsync::daemon {
namespace {

using scimsync::testing::MinimalItem;
using scimsync::testing::RedisOptionsFor;
using scimsync::testing::RedisServer;

constexpr int kPartitions = 4;

// Reads every partition and dead-letters what it finds, as workers facing a target that
// rejects every item would. Returns how many it dead-lettered.
int KillAll(queue::Queue& q, const std::string& consumer) {
  int n = 0;
  for (int p = 0; p < kPartitions; ++p) {
    auto items = q.Read(p, consumer, 100, 0);
    if (!items) continue;
    for (const auto& item : *items) {
      if (q.DeadLetter(item, "permanent", "400: rejected again", "", "").ok()) ++n;
    }
  }
  return n;
}

TEST(DlqTest, ReplayAllReplaysEachDeadLetterOnceWhileTheyDieAgain) {
  RedisServer server;
  ASSERT_TRUE(server.Start());
  config::Config cfg;
  cfg.redis = RedisOptionsFor(server.url(), kPartitions);
  auto q = queue::NewRedisQueue(cfg.redis, "");
  constexpr int kDead = 1000;
  std::vector<queue::Item> items;
  for (int i = 0; i < kDead; ++i) {
    items.push_back(MinimalItem("E" + std::to_string(i % 97), "evt-" + std::to_string(i)));
  }
  ASSERT_TRUE(q->EnqueueBatch(items, 0).ok());
  int dead = 0;
  while (dead < kDead) dead += KillAll(*q, "w");
  ASSERT_EQ(*q->DeadLetterCount(), kDead);

  // The workers go on dead-lettering every replayed item as soon as it is back.
  std::atomic<bool> stop{false};
  std::atomic<int> redead{0};
  std::thread workers([&] {
    auto wq = queue::NewRedisQueue(cfg.redis, "");
    while (!stop) redead += KillAll(*wq, "w");
  });
  std::ostringstream out, err;
  auto run = std::async(std::launch::async, [&] {
    return RunDlqCommand(cfg, {"replay", "--all"}, out, err);
  });
  if (run.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "`dlq replay --all` does not end while replayed items die again";
    std::_Exit(1);
  }
  EXPECT_EQ(run.get(), 0) << err.str();
  EXPECT_EQ(out.str(), "replayed 1000 dead letters into their partitions\n") << err.str();
  // Every replayed item died exactly once more: 1,000 dead letters again, none lost or doubled.
  scimsync::testing::WaitFor([&] { return redead >= kDead; }, 30000, /*interval_ms=*/20);
  stop = true;
  workers.join();
  EXPECT_EQ(redead.load(), kDead);
  EXPECT_EQ(*q->DeadLetterCount(), kDead);
}

}  // namespace
}  // namespace scimsync::daemon
