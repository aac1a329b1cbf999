// Redis-only behaviour of the queue: the key layout, all-or-none batches, restarts with AOF,
// lost script caches and consumer groups, concurrency, and the connection options.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "queue_test_util.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/keys.h"
#include "test_support.h"

namespace scimsync::queue {
namespace {

using scimsync::testing::RedisOptionsFor;
using scimsync::testing::RedisServer;

constexpr int kPartitions = 4;
using scimsync::testing::kWeek;

Item MakeItem(const std::string& employee, const std::string& dedup_id) {
  return scimsync::testing::MinimalItem(employee, dedup_id);
}

class RedisQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    q_ = NewRedisQueue(RedisOptionsFor(server_.url(), kPartitions), "", clock_);
  }
  std::vector<Item> ReadAll(int partition) {
    auto r = q_->Read(partition, "w", 1000, 0);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : std::vector<Item>{};
  }

  RedisServer server_;
  FakeClock clock_;
  std::unique_ptr<Queue> q_;
};

TEST_F(RedisQueueTest, KeysFollowTheDocumentedLayout) {
  // E1 is in partition 3 of 4.
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E1", "evt-1")}, kWeek).ok());
  EXPECT_EQ(server_.Cli({"XLEN", "scimsync:{p3}:stream"}), "1");
  EXPECT_EQ(server_.Cli({"EXISTS", "scimsync:{p3}:dedup:hr:evt-1"}), "1");
  int64_t ttl = std::stoll(server_.Cli({"TTL", "scimsync:{p3}:dedup:hr:evt-1"}));
  EXPECT_GT(ttl, kWeek - 5);
  EXPECT_NE(server_.Cli({"XINFO", "GROUPS", "scimsync:{p3}:stream"}).find("workers"),
            std::string::npos);
  std::string entry = server_.Cli({"XRANGE", "scimsync:{p3}:stream", "-", "+"});
  EXPECT_NE(entry.find("employee.created"), std::string::npos) << entry;

  Item item = ReadAll(3).at(0);
  ASSERT_TRUE(q_->RetryLater(item, 5, "x").ok());
  EXPECT_EQ(server_.Cli({"ZSCORE", "scimsync:{p3}:retry", item.entry_id}), "5");
  EXPECT_EQ(server_.Cli({"HEXISTS", "scimsync:{p3}:retry:items", item.entry_id}), "1");
  Item retry = q_->TakeDue(3, 5, 1, 10)->at(0);
  ASSERT_TRUE(q_->DeadLetter(retry, "permanent", "r", "", "").ok());
  EXPECT_EQ(server_.Cli({"XLEN", "scimsync:dlq"}), "1");
  EXPECT_EQ(server_.Cli({"EXISTS", "scimsync:{p3}:retry:items"}), "0");
}

TEST_F(RedisQueueTest, KeyPrefixIsolatesDeployments) {
  auto other = NewRedisQueue(RedisOptionsFor(server_.url(), kPartitions, "other"), "", clock_);
  ASSERT_TRUE(other->EnqueueBatch({MakeItem("E1", "evt-1")}, kWeek).ok());
  EXPECT_EQ(server_.Cli({"XLEN", "other:{p3}:stream"}), "1");
  // Same event id under another prefix is not a duplicate.
  auto out = q_->EnqueueBatch({MakeItem("E1", "evt-1")}, kWeek);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->accepted, 1);
}

TEST_F(RedisQueueTest, BatchIsAllOrNothing) {
  // Partition 2 (E2's) is broken: its stream key holds a string.
  ASSERT_EQ(server_.Cli({"SET", "scimsync:{p2}:stream", "oops"}), "OK");
  auto r = q_->EnqueueBatch({MakeItem("E1", "a"), MakeItem("E2", "b"), MakeItem("E3", "c")}, kWeek);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("nothing was enqueued"), std::string::npos) << r.error().message;
  EXPECT_EQ(server_.Cli({"EXISTS", "scimsync:{p3}:stream"}), "0");
  EXPECT_EQ(server_.Cli({"EXISTS", "scimsync:{p3}:dedup:hr:a"}), "0");

  server_.Cli({"DEL", "scimsync:{p2}:stream"});
  auto retry =
      q_->EnqueueBatch({MakeItem("E1", "a"), MakeItem("E2", "b"), MakeItem("E3", "c")}, kWeek);
  ASSERT_TRUE(retry.ok()) << retry.error().message;
  EXPECT_EQ(retry->accepted, 3);
}

TEST_F(RedisQueueTest, OutOfMemoryRefusesTheWholeBatchButAcksStillWork) {
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E1", "a")}, kWeek).ok());
  Item pending = ReadAll(3).at(0);
  ASSERT_EQ(server_.Cli({"CONFIG", "SET", "maxmemory-policy", "noeviction"}), "OK");
  ASSERT_EQ(server_.Cli({"CONFIG", "SET", "maxmemory", "1"}), "OK");

  auto r = q_->EnqueueBatch({MakeItem("E1", "b"), MakeItem("E2", "c")}, kWeek);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("OOM"), std::string::npos) << r.error().message;
  // Ending work frees memory, so it must still be possible.
  Status ack = q_->Ack(pending);
  EXPECT_TRUE(ack.ok()) << ack.error().message;

  ASSERT_EQ(server_.Cli({"CONFIG", "SET", "maxmemory", "0"}), "OK");
  EXPECT_EQ(server_.Cli({"EXISTS", "scimsync:{p2}:stream"}), "0");
  auto after = q_->EnqueueBatch({MakeItem("E1", "b"), MakeItem("E2", "c")}, kWeek);
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(after->accepted, 2);
}

// A pass's lists (the employee history) go in its ack script: pushed newest first, trimmed, with
// an expiry; only the newest max_entries are sent. Out of memory they are best effort: the
// acknowledgements still stand.
TEST_F(RedisQueueTest, AckPassPushesCappedListsWithTheAcksAndNeverFailsThemForAList) {
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E1", "a"), MakeItem("E1", "b")}, kWeek).ok());
  std::vector<Item> items = ReadAll(3);
  ASSERT_EQ(items.size(), 2u);
  CappedLists lists;
  lists.max_entries = 2;
  lists.ttl_s = 100;
  lists.pushes.push_back({"h:E1", {"1", "2", "3"}});
  lists.pushes.push_back({"h:E2", {"x"}});
  ASSERT_TRUE(q_->AckPass(3, {items[0]}, {items[0]}, lists).ok());
  EXPECT_EQ(server_.Cli({"LRANGE", "h:E1", "0", "-1"}), "3\n2");
  EXPECT_EQ(server_.Cli({"LRANGE", "h:E2", "0", "-1"}), "x");
  const int64_t ttl = std::stoll(server_.Cli({"TTL", "h:E1"}));
  EXPECT_GT(ttl, 90);
  EXPECT_LE(ttl, 100);
  EXPECT_EQ(server_.Cli({"XLEN", "scimsync:{p3}:stream"}), "1");
  auto applied = q_->LastApplied(3, "hr", "", "E1");
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(applied->dedup_id, "a");
  // Trimmed once full.
  lists.pushes = {{"h:E2", {"y", "z"}}};
  ASSERT_TRUE(q_->AckPass(3, {}, {}, lists).ok());
  EXPECT_EQ(server_.Cli({"LRANGE", "h:E2", "0", "-1"}), "z\ny");

  ASSERT_EQ(server_.Cli({"CONFIG", "SET", "maxmemory-policy", "noeviction"}), "OK");
  ASSERT_EQ(server_.Cli({"CONFIG", "SET", "maxmemory", "1"}), "OK");
  lists.pushes = {{"h:E3", {"1"}}};
  Status s = q_->AckPass(3, {items[1]}, {}, lists);
  EXPECT_TRUE(s.ok()) << s.error().message;
  s = q_->AckPass(3, {}, {}, lists);
  EXPECT_TRUE(s.ok()) << s.error().message;
  ASSERT_EQ(server_.Cli({"CONFIG", "SET", "maxmemory", "0"}), "OK");
  EXPECT_EQ(server_.Cli({"XLEN", "scimsync:{p3}:stream"}), "0");
}

// Fencing in Redis: the workers fence their outcome writes by their partition lease's token key
// (P:lease:{pN}:token, keys::workers, in the partition's hash tag). Once another instance has
// taken the lease (INCR), a write under the old token is refused inside the script, before it
// writes anything: the raw keys are byte for byte what they were.
TEST_F(RedisQueueTest, AWriteUnderAnOldLeaseTokenIsRefusedInTheScriptAndWritesNothing) {
  const std::string token = redis::keys::workers::LeaseToken("scimsync", 3);
  ASSERT_EQ(token, "scimsync:lease:{p3}:token");
  ASSERT_EQ(server_.Cli({"INCR", token}), "1");
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E1", "a"), MakeItem("E1", "b")}, kWeek).ok());
  std::vector<Item> items = ReadAll(3);
  ASSERT_EQ(items.size(), 2u);
  ASSERT_TRUE(q_->Park(items[0], 5, "waiting", Fence{token, 1}).ok());
  Item retry = q_->TakeDue(3, 5, 1, 60'000)->at(0);

  ASSERT_EQ(server_.Cli({"INCR", token}), "2");  // another instance took the partition
  auto snapshot = [&] {
    return server_.Cli({"XPENDING", "scimsync:{p3}:stream", "workers"}) + "|" +
           server_.Cli({"XLEN", "scimsync:{p3}:stream"}) + "|" +
           server_.Cli({"ZRANGE", "scimsync:{p3}:retry", "0", "-1", "WITHSCORES"}) + "|" +
           server_.Cli({"HGETALL", "scimsync:{p3}:retry:items"}) + "|" +
           server_.Cli({"HGETALL", "scimsync:{p3}:retry:takes"}) + "|" +
           server_.Cli({"XLEN", "scimsync:dlq"}) + "|" +
           server_.Cli({"EXISTS", "scimsync:{p3}:applied", "scimsync:{p3}:history"});
  };
  const std::string before = snapshot();
  const Fence old{token, 1};
  CappedLists lists;
  lists.max_entries = 10;
  lists.ttl_s = 60;
  lists.pushes.push_back({"scimsync:{p3}:history", {"entry"}});
  for (const Item& item : {items[1], retry}) {
    for (Status s : {q_->Park(item, 1, "waiting", old), q_->RetryLater(item, 1, "503", old),
                     q_->DeadLetter(item, "permanent", "400", "", "", old), q_->Ack(item, old),
                     q_->AckPass(3, {item}, {item}, lists, old)}) {
      ASSERT_FALSE(s.ok()) << "a write under an old token went through";
      EXPECT_TRUE(IsFenced(s.error())) << s.error().message;
      EXPECT_EQ(s.error().message,
                "fenced: scimsync:lease:{p3}:token holds 2, not 1 (whoever took over the fence "
                "records the outcome now); nothing was written");
    }
  }
  EXPECT_EQ(snapshot(), before);
  // Without a fence (admin commands, other callers) writes are as before.
  ASSERT_TRUE(q_->Ack(items[1]).ok());
  EXPECT_EQ(server_.Cli({"XLEN", "scimsync:{p3}:stream"}), "0");
}

TEST_F(RedisQueueTest, RestartLosesNothingAndScriptsAreReloaded) {
  ASSERT_TRUE(
      q_->EnqueueBatch({MakeItem("E1", "a"), MakeItem("E1", "b"), MakeItem("E1", "c")}, kWeek)
          .ok());
  std::vector<Item> items = ReadAll(3);
  ASSERT_EQ(items.size(), 3u);
  ASSERT_TRUE(q_->RetryLater(items[0], 100, "503").ok());
  ASSERT_TRUE(q_->DeadLetter(items[1], "permanent", "bad", "", "").ok());
  // items[2] stays pending, as if its worker died with Redis.

  server_.Stop();
  auto start = std::chrono::steady_clock::now();
  auto down = q_->EnqueueBatch({MakeItem("E1", "d")}, kWeek);
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().kind, ErrorKind::kTransient);
  EXPECT_EQ(q_->Ping().error().kind, ErrorKind::kTransient);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));

  ASSERT_TRUE(server_.Start());
  // A fresh server has an empty script cache: EVALSHA answers NOSCRIPT and EVAL takes over.
  auto up = q_->EnqueueBatch({MakeItem("E1", "d"), MakeItem("E1", "a")}, kWeek);
  ASSERT_TRUE(up.ok()) << up.error().message;
  EXPECT_EQ(up->accepted, 1);
  EXPECT_EQ(up->duplicates, 1);  // dedup keys survived too

  auto claimed = q_->ClaimStale(3, "w2", 0, 10);
  ASSERT_TRUE(claimed.ok()) << claimed.error().message;
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0].dedup_id, "c");
  std::vector<Item> fresh = ReadAll(3);
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].dedup_id, "d");
  auto due = q_->TakeDue(3, 100, 10, 1000);
  ASSERT_TRUE(due.ok()) << due.error().message;
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].dedup_id, "a");
  EXPECT_EQ(*q_->DeadLetterCount(), 1);
}

TEST_F(RedisQueueTest, AnUnreadableRetryEntryDoesNotBlockTheOthers) {
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E1", "a")}, kWeek).ok());
  ASSERT_TRUE(q_->RetryLater(ReadAll(3).at(0), 20, "x").ok());
  server_.Cli({"ZADD", "scimsync:{p3}:retry", "10", "9-9"});
  server_.Cli({"HSET", "scimsync:{p3}:retry:items", "9-9", "not json"});
  auto due = q_->TakeDue(3, 100, 10, 1000);
  ASSERT_TRUE(due.ok()) << due.error().message;
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].dedup_id, "a");
}

TEST_F(RedisQueueTest, ScriptCacheFlushIsHandled) {
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E1", "a")}, kWeek).ok());
  ASSERT_EQ(server_.Cli({"SCRIPT", "FLUSH"}), "OK");
  auto r = q_->EnqueueBatch({MakeItem("E1", "b")}, kWeek);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->accepted, 1);
  Item item = ReadAll(3).at(0);
  ASSERT_EQ(server_.Cli({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(q_->Ack(item).ok());
}

TEST_F(RedisQueueTest, EntriesWrittenBeforeTheGroupExistAreDelivered) {
  // A stream that got entries without our script (older version, manual XADD): no group yet.
  ASSERT_FALSE(server_
                   .Cli({"XADD", "scimsync:{p0}:stream", "*", "profile", "hr", "employee", "E4",
                         "dedup_id", "manual"})
                   .empty());
  std::vector<Item> items = ReadAll(0);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].dedup_id, "manual");
  EXPECT_EQ(items[0].employee_key, "E4");
}

TEST_F(RedisQueueTest, LostConsumerGroupIsRecreatedFromTheStart) {
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E1", "a")}, kWeek).ok());
  ASSERT_EQ(server_.Cli({"XGROUP", "DESTROY", "scimsync:{p3}:stream", "workers"}), "1");
  auto claimed = q_->ClaimStale(3, "w", 0, 10);
  ASSERT_TRUE(claimed.ok()) << claimed.error().message;
  EXPECT_TRUE(claimed->empty());
  ASSERT_EQ(server_.Cli({"XGROUP", "DESTROY", "scimsync:{p3}:stream", "workers"}), "1");
  std::vector<Item> items = ReadAll(3);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].dedup_id, "a");
}

// A dead instance left 5,000 items pending. Following the scan's cursor claims each of them
// exactly once; restarting at 0-0 with no idle time would hand out the first page forever. Each
// claim counts a delivery, so an item that keeps killing its worker shows.
TEST_F(RedisQueueTest, ClaimingFollowsTheCursorOverFiveThousandPendingItems) {
  constexpr int kItems = 5000;
  for (int b = 0; b < kItems / 1000; ++b) {
    std::vector<Item> batch;
    for (int i = 0; i < 1000; ++i) {
      // E1 lives in partition 3 of 4; one employee is enough for one partition.
      batch.push_back(MakeItem("E1", "evt-" + std::to_string(b * 1000 + i)));
    }
    ASSERT_TRUE(q_->EnqueueBatch(batch, kWeek).ok());
  }
  auto read = q_->Read(3, "dead", kItems, 0);
  ASSERT_TRUE(read.ok()) << read.error().message;
  ASSERT_EQ(read->size(), static_cast<size_t>(kItems));
  EXPECT_EQ(read->front().deliveries, 1);

  std::set<std::string> seen;
  std::string cursor = "0-0";
  int pages = 0;
  do {
    auto page = q_->ClaimStalePage(3, "new", 0, cursor, 500);
    ASSERT_TRUE(page.ok()) << page.error().message;
    for (const Item& item : page->items) {
      EXPECT_TRUE(seen.insert(item.entry_id).second) << "claimed twice: " << item.entry_id;
      EXPECT_EQ(item.deliveries, 2) << item.entry_id;
    }
    cursor = page->next;
    ASSERT_LT(++pages, 100) << "the scan does not end";
  } while (cursor != "0-0");
  EXPECT_EQ(seen.size(), static_cast<size_t>(kItems));
  // A second scan counts a third delivery.
  auto again = q_->ClaimStalePage(3, "newer", 0, "0-0", 10);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->items.size(), 10u);
  EXPECT_EQ(again->items[0].deliveries, 3);
}

// A retry-set item counts the times TakeDue handed it out since its last outcome: a worker
// that dies on it every time shows, one that records an outcome starts the count afresh.
TEST_F(RedisQueueTest, TakeDueCountsHandOutsUntilAnOutcome) {
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E1", "a")}, kWeek).ok());
  Item item = ReadAll(3).at(0);
  ASSERT_TRUE(q_->RetryLater(item, 5, "503").ok());
  EXPECT_EQ(q_->TakeDue(3, 5, 10, 10)->at(0).deliveries, 1);
  Item again = q_->TakeDue(3, 15, 10, 10)->at(0);  // its lease ran out: taken again
  EXPECT_EQ(again.deliveries, 2);
  ASSERT_TRUE(q_->Park(again, 20, "waiting").ok());
  Item fresh = q_->TakeDue(3, 20, 10, 10)->at(0);
  EXPECT_EQ(fresh.deliveries, 1);
  ASSERT_TRUE(q_->Ack(fresh).ok());
  EXPECT_EQ(server_.Cli({"HLEN", "scimsync:{p3}:retry:takes"}), "0");
}

TEST_F(RedisQueueTest, ConcurrentBatchesAreStoredExactlyOnce) {
  constexpr int kThreads = 8;
  constexpr int kBatches = 40;
  std::atomic<int> accepted{0}, duplicates{0}, failures{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<Item> batch;
        for (int i = 0; i < 3; ++i) {
          std::string id = std::to_string(t) + "-" + std::to_string(b) + "-" + std::to_string(i);
          batch.push_back(MakeItem("E" + std::to_string((t * 7 + b + i) % 23), id));
        }
        // Every batch is sent twice, as an HRIS does after a lost answer; the copy comes from
        // another thread so the two race.
        for (int send = 0; send < 2; ++send) {
          auto r = q_->EnqueueBatch(batch, kWeek);
          if (!r.ok()) {
            ++failures;
            continue;
          }
          accepted += r->accepted;
          duplicates += r->duplicates;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(accepted.load(), kThreads * kBatches * 3);
  EXPECT_EQ(duplicates.load(), kThreads * kBatches * 3);
  std::set<std::string> seen;
  for (int p = 0; p < kPartitions; ++p) {
    for (const Item& item : ReadAll(p)) {
      EXPECT_EQ(PartitionOf("hr", item.employee_key, kPartitions), p);
      EXPECT_TRUE(seen.insert(item.dedup_id).second) << "twice: " << item.dedup_id;
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kBatches * 3));
}

// Calls that arrive while a write is in flight are written together in one script (group
// commit), and each caller still gets its own outcome and its own dedup window.
TEST_F(RedisQueueTest, CallsWaitingTogetherShareOneScriptWithTheirOwnOutcomes) {
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E0", "old-0"), MakeItem("E1", "old-1")}, kWeek).ok());
  ASSERT_EQ(server_.Cli({"CONFIG", "RESETSTAT"}), "OK");
  // Redis holds every command for 500 ms: the first caller's script waits in Redis, the others
  // line up behind it in the queue.
  ASSERT_EQ(server_.Cli({"CLIENT", "PAUSE", "500", "ALL"}), "OK");
  constexpr int kCallers = 10;
  std::vector<Result<EnqueueOutcome>> outcomes(kCallers, Error::Transient("not run"));
  std::vector<std::thread> threads;
  for (int t = 0; t < kCallers; ++t) {
    threads.emplace_back([&, t] {
      // Even callers: dedup on, one item already queued and one new. Odd callers: dedup off
      // (window 0), so the same already-queued id is accepted again.
      std::string old = "old-" + std::to_string(t % 2);
      std::vector<Item> batch = {MakeItem("E" + std::to_string(t % 2), old),
                                 MakeItem("E" + std::to_string(t), "new-" + std::to_string(t))};
      outcomes[static_cast<size_t>(t)] = q_->EnqueueBatch(batch, t % 2 == 0 ? kWeek : 0);
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 0; t < kCallers; ++t) {
    const auto& r = outcomes[static_cast<size_t>(t)];
    ASSERT_TRUE(r.ok()) << t << ": " << r.error().message;
    EXPECT_EQ(r->accepted, t % 2 == 0 ? 1 : 2) << "caller " << t;
    EXPECT_EQ(r->duplicates, t % 2 == 0 ? 1 : 0) << "caller " << t;
  }
  // The first caller's script, then one for the nine that waited behind it.
  std::string stats = server_.Cli({"INFO", "commandstats"});
  EXPECT_NE(stats.find("cmdstat_evalsha:calls=2,"), std::string::npos) << stats;
  size_t stored = 0;
  for (int p = 0; p < kPartitions; ++p) stored += ReadAll(p).size();
  EXPECT_EQ(stored, 2u + 5u * 1u + 5u * 2u);
}

// The listener's event loop hands over every webhook it read in one call: one script for all,
// an outcome per batch in order, and an empty batch is answered without a write.
TEST_F(RedisQueueTest, BatchesFromOneCallShareOneScriptWithTheirOwnOutcomes) {
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E0", "old-0")}, kWeek).ok());
  ASSERT_EQ(server_.Cli({"CONFIG", "RESETSTAT"}), "OK");
  std::vector<Item> first = {MakeItem("E1", "a"), MakeItem("E2", "b")};
  std::vector<Item> empty;
  std::vector<Item> dup = {MakeItem("E0", "old-0"), MakeItem("E3", "c")};
  std::vector<Item> undeduped = {MakeItem("E0", "old-0")};
  auto out = q_->EnqueueBatches({{&first, kWeek}, {&empty, kWeek}, {&dup, kWeek}, {&undeduped, 0}});
  ASSERT_EQ(out.size(), 4u);
  for (const auto& r : out) ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(out[0]->accepted, 2);
  EXPECT_EQ(out[1]->accepted, 0);
  EXPECT_EQ(out[2]->accepted, 1);
  EXPECT_EQ(out[2]->duplicates, 1);
  EXPECT_EQ(out[3]->accepted, 1);
  std::string stats = server_.Cli({"INFO", "commandstats"});
  EXPECT_NE(stats.find("cmdstat_evalsha:calls=1,"), std::string::npos) << stats;
}

// Batches over the group bound (1,000 items) are written in several scripts, the caller leading
// each in turn, and none is lost or written twice.
TEST_F(RedisQueueTest, BatchesOverTheGroupBoundAreWrittenInTurn) {
  ASSERT_EQ(server_.Cli({"CONFIG", "RESETSTAT"}), "OK");
  std::vector<std::vector<Item>> batches(3);
  std::vector<Queue::Batch> refs;
  for (int b = 0; b < 3; ++b) {
    for (int i = 0; i < 600; ++i) {
      batches[static_cast<size_t>(b)].push_back(
          MakeItem("E" + std::to_string(i), std::to_string(b) + "-" + std::to_string(i)));
    }
  }
  for (const auto& b : batches) refs.push_back({&b, kWeek});
  auto out = q_->EnqueueBatches(refs);
  ASSERT_EQ(out.size(), 3u);
  for (const auto& r : out) {
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->accepted, 600);
  }
  std::string stats = server_.Cli({"INFO", "commandstats"});
  EXPECT_NE(stats.find("cmdstat_evalsha:calls=3,"), std::string::npos) << stats;
  size_t stored = 0;
  for (int p = 0; p < kPartitions; ++p) stored += ReadAll(p).size();
  EXPECT_EQ(stored, 1800u);
}

// A failed group write answers every caller in it, and the line does not stall afterwards.
TEST_F(RedisQueueTest, AFailedGroupWriteFailsEveryWaitingCallerAndTheNextCallsWork) {
  ASSERT_TRUE(q_->EnqueueBatch({MakeItem("E0", "warm")}, kWeek).ok());
  server_.Stop();
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto r =
          q_->EnqueueBatch({MakeItem("E" + std::to_string(t), "x" + std::to_string(t))}, kWeek);
      if (!r.ok() && r.error().kind == ErrorKind::kTransient) ++failed;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 8);
  ASSERT_TRUE(server_.Start());
  auto r = q_->EnqueueBatch({MakeItem("E1", "x1"), MakeItem("E2", "x2")}, kWeek);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->accepted, 2);
}

TEST_F(RedisQueueTest, ReadBlockStaysBelowTheCommandTimeout) {
  config::RedisOptions options = RedisOptionsFor(server_.url(), kPartitions);
  options.command_timeout_ms = 400;
  auto q = NewRedisQueue(options, "");
  auto start = std::chrono::steady_clock::now();
  auto r = q->Read(1, "w", 10, 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;  // not a socket timeout
  EXPECT_TRUE(r->empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(400));
}

TEST(RedisQueueConnection, UnixSocketWithPassword) {
  RedisServer server("queue-pw");
  ASSERT_TRUE(server.Start());
  auto q = NewRedisQueue(RedisOptionsFor(server.unix_url() + "?db=2", kPartitions), "queue-pw");
  ASSERT_TRUE(q->Ping().ok());
  auto r = q->EnqueueBatch({MakeItem("E1", "a")}, kWeek);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(server.Cli({"-n", "2", "XLEN", "scimsync:{p3}:stream"}), "1");

  auto wrong = NewRedisQueue(RedisOptionsFor(server.url(), kPartitions), "not-it");
  EXPECT_EQ(wrong->Ping().error().kind, ErrorKind::kAuth);
  auto refused = wrong->EnqueueBatch({MakeItem("E1", "b")}, kWeek);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::kTransient);  // the webhook answer is 503
  EXPECT_EQ(refused.error().message.find("not-it"), std::string::npos);
}

}  // namespace
}  // namespace scimsync::queue
