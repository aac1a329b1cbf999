// One behaviour suite run against both queues: the Redis queue on a real redis-server and the
// in-memory fake. Whatever a caller's unit test learns from the fake must hold for Redis.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>

#include "queue_test_util.h"
#include "scimsync/queue/queue.h"
#include "test_support.h"

namespace scimsync::queue {
namespace {

constexpr int kPartitions = 4;
constexpr int64_t kWeek = int64_t{7} * 24 * 3600;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Queue& queue() = 0;
  // Like Redis going away and coming back (with its data).
  virtual void SetUnavailable(bool unavailable) = 0;
  // Lets the dedup window of `window_s` seconds end for everything enqueued so far.
  virtual void EndDedupWindow(int64_t window_s) = 0;
  // What a Fence's key holds, as another lease owner would set it.
  virtual void SetFenceValue(const std::string& key, int64_t value) = 0;
  FakeClock clock;
};

class MemoryBackend final : public Backend {
 public:
  MemoryBackend() : queue_(NewMemoryQueue(kPartitions, clock)) {}
  Queue& queue() override { return *queue_; }
  void SetUnavailable(bool unavailable) override { queue_->set_unavailable(unavailable); }
  void EndDedupWindow(int64_t window_s) override { clock.AdvanceMs(window_s * 1000); }
  void SetFenceValue(const std::string& key, int64_t value) override {
    queue_->SetFenceValue(key, value);
  }

 private:
  std::unique_ptr<MemoryQueue> queue_;
};

class RedisBackend final : public Backend {
 public:
  RedisBackend() {
    started_ = server_.Start();
    queue_ = NewRedisQueue(testing::RedisOptionsFor(server_.url(), kPartitions), "", clock);
  }
  bool started() const { return started_; }
  Queue& queue() override { return *queue_; }
  void SetUnavailable(bool unavailable) override {
    if (unavailable) {
      server_.Stop();
    } else {
      ASSERT_TRUE(server_.Start());
    }
  }
  void SetFenceValue(const std::string& key, int64_t value) override {
    ASSERT_EQ(server_.Cli({"SET", key, std::to_string(value)}), "OK");
  }
  void EndDedupWindow(int64_t window_s) override {
    // Redis's clock cannot be moved: check each dedup key expires after the window, then let it.
    std::string keys = server_.Cli({"KEYS", "scimsync:*:dedup:*"});
    ASSERT_FALSE(keys.empty());
    size_t start = 0;
    while (start < keys.size()) {
      size_t end = keys.find('\n', start);
      if (end == std::string::npos) end = keys.size();
      std::string key = keys.substr(start, end - start);
      int64_t ttl = std::stoll(server_.Cli({"TTL", key}));
      EXPECT_GT(ttl, window_s - 5) << key;
      EXPECT_LE(ttl, window_s) << key;
      server_.Cli({"DEL", key});
      start = end + 1;
    }
  }

 private:
  testing::RedisServer server_;
  bool started_ = false;
  std::unique_ptr<Queue> queue_;
};

Item MakeItem(const std::string& employee, const std::string& dedup_id,
              const std::string& profile = "hr") {
  Item item;
  item.profile = profile;
  item.employee_key = employee;
  item.dedup_id = dedup_id;
  item.event_type = "employee.updated";
  item.occurred_at = "2026-11-28T10:00:00Z";
  item.trace_id = "trace-" + dedup_id;
  item.payload = R"({"id":")" + dedup_id + R"(","employee":{"id":")" + employee + R"("}})";
  item.received_at_ms = 1'700'000'000'123;
  return item;
}

class QueueBehaviour : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "redis") {
      auto redis = std::make_unique<RedisBackend>();
      ASSERT_TRUE(redis->started()) << "redis-server did not start";
      backend_ = std::move(redis);
    } else {
      backend_ = std::make_unique<MemoryBackend>();
    }
  }
  Queue& q() { return backend_->queue(); }

  EnqueueOutcome Enqueue(const std::vector<Item>& items, int64_t window_s = kWeek) {
    auto r = q().EnqueueBatch(items, window_s);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : EnqueueOutcome{-1, -1};
  }
  std::vector<Item> ReadAll(int partition, const std::string& consumer = "w1") {
    auto r = q().Read(partition, consumer, 100, 0);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : std::vector<Item>{};
  }
  int64_t Depth(int partition) {
    auto r = q().Depth(partition);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : -1;
  }
  int64_t TotalDepth() {
    int64_t n = 0;
    for (int p = 0; p < kPartitions; ++p) n += Depth(p);
    return n;
  }

  std::unique_ptr<Backend> backend_;
};

TEST_P(QueueBehaviour, ReadReturnsEveryFieldOfAnEnqueuedItem) {
  Item in = MakeItem("E1", "evt-1");
  in.tenant = "acme";
  in.payload = std::string("{\"x\":\"a\\u0000b\"}\n", 17);
  // Read-back fields on input are ignored.
  in.entry_id = "1-1";
  in.attempts = 7;
  in.last_error = "stale";
  EnqueueOutcome out = Enqueue({in});
  EXPECT_EQ(out.accepted, 1);
  EXPECT_EQ(out.duplicates, 0);

  const int p = PartitionOf("hr", "E1", kPartitions);
  std::vector<Item> items = ReadAll(p);
  ASSERT_EQ(items.size(), 1u);
  const Item& got = items[0];
  EXPECT_EQ(got.profile, "hr");
  EXPECT_EQ(got.tenant, "acme");
  EXPECT_EQ(got.employee_key, "E1");
  EXPECT_EQ(got.dedup_id, "evt-1");
  EXPECT_EQ(got.event_type, "employee.updated");
  EXPECT_EQ(got.occurred_at, "2026-11-28T10:00:00Z");
  EXPECT_EQ(got.trace_id, "trace-evt-1");
  EXPECT_EQ(got.payload, in.payload);
  EXPECT_EQ(got.received_at_ms, 1'700'000'000'123);
  EXPECT_FALSE(got.entry_id.empty());
  EXPECT_NE(got.entry_id, "1-1");
  EXPECT_EQ(got.partition, p);
  EXPECT_EQ(got.attempts, 0);
  EXPECT_FALSE(got.from_retry);
  EXPECT_EQ(got.last_error, "");
}

TEST_P(QueueBehaviour, EmptyBatchIsAcceptedWithoutWriting) {
  EnqueueOutcome out = Enqueue({});
  EXPECT_EQ(out.accepted, 0);
  EXPECT_EQ(out.duplicates, 0);
  EXPECT_EQ(TotalDepth(), 0);
}

TEST_P(QueueBehaviour, OneEmployeesItemsStayInArrivalOrder) {
  Enqueue({MakeItem("E1", "a"), MakeItem("E1", "b"), MakeItem("E1", "c")});
  Enqueue({MakeItem("E1", "d"), MakeItem("E1", "e")});
  std::vector<Item> items = ReadAll(PartitionOf("hr", "E1", kPartitions));
  std::vector<std::string> ids;
  ids.reserve(items.size());
  for (const auto& i : items) ids.push_back(i.dedup_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "b", "c", "d", "e"}));
}

TEST_P(QueueBehaviour, ListStreamPagesThroughNewAndDeliveredItemsWithoutTakingThem) {
  Enqueue({MakeItem("E1", "a"), MakeItem("E5", "b"), MakeItem("E1", "c")});
  const int p = PartitionOf("hr", "E1", kPartitions);
  ASSERT_EQ(ReadAll(p).size(), 3u);  // delivered, not ended: still in the stream
  Enqueue({MakeItem("E1", "d")});
  auto first = q().ListStream(p, "", 2);
  ASSERT_TRUE(first.ok()) << first.error().message;
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0].dedup_id, "a");
  EXPECT_EQ((*first)[1].dedup_id, "b");
  EXPECT_EQ((*first)[0].partition, p);
  auto rest = q().ListStream(p, (*first)[1].entry_id, 10);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ((*rest)[0].dedup_id, "c");
  EXPECT_EQ((*rest)[1].dedup_id, "d");
  EXPECT_EQ((*rest)[1].trace_id, "trace-d");
  // Listing took nothing: the new item is still handed to a reader.
  EXPECT_EQ(ReadAll(p).size(), 1u);
  EXPECT_EQ(Depth(p), 4);
}

// What `scimsyncd status` and the oldest-age gauge show: when the oldest item still in a
// partition's stream arrived, 0 when the stream is empty; it follows the stream as items end.
TEST_P(QueueBehaviour, OldestMsIsTheFirstEntryStillInTheStream) {
  const int p = PartitionOf("hr", "E1", kPartitions);
  auto empty = q().OldestMs(p);
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_EQ(*empty, 0);

  Enqueue({MakeItem("E1", "a")});
  backend_->clock.AdvanceMs(5000);
  Enqueue({MakeItem("E1", "b")});
  std::vector<Item> items = ReadAll(p);
  ASSERT_EQ(items.size(), 2u);
  auto ms_of = [](const Item& i) { return std::stoll(i.entry_id.substr(0, i.entry_id.find('-'))); };
  auto oldest = q().OldestMs(p);
  ASSERT_TRUE(oldest.ok()) << oldest.error().message;
  EXPECT_EQ(*oldest, ms_of(items[0]));  // delivered but not ended: still the oldest
  EXPECT_GT(*oldest, 0);

  ASSERT_TRUE(q().Ack(items[0]).ok());
  oldest = q().OldestMs(p);
  ASSERT_TRUE(oldest.ok());
  EXPECT_EQ(*oldest, ms_of(items[1]));  // (Redis stamps ids with its own clock)

  EXPECT_EQ(q().OldestMs(kPartitions).error().kind, ErrorKind::kInvalid);  // no such partition
  backend_->SetUnavailable(true);
  EXPECT_EQ(q().OldestMs(p).error().kind, ErrorKind::kTransient);
  backend_->SetUnavailable(false);
}

TEST_P(QueueBehaviour, ItemsLandInTheirEmployeesPartition) {
  // With 4 partitions: E1 -> 3, E2 -> 2, E3 -> 1, E4 -> 0, E5 -> 3.
  Enqueue({MakeItem("E1", "1"), MakeItem("E2", "2"), MakeItem("E3", "3"), MakeItem("E4", "4"),
           MakeItem("E5", "5")});
  EXPECT_EQ(Depth(0), 1);
  EXPECT_EQ(Depth(1), 1);
  EXPECT_EQ(Depth(2), 1);
  EXPECT_EQ(Depth(3), 2);
  std::vector<Item> p3 = ReadAll(3);
  ASSERT_EQ(p3.size(), 2u);
  EXPECT_EQ(p3[0].employee_key, "E1");
  EXPECT_EQ(p3[1].employee_key, "E5");
}

TEST_P(QueueBehaviour, DuplicatesWithinTheWindowAreCountedNotEnqueued) {
  EnqueueOutcome first = Enqueue({MakeItem("E1", "a"), MakeItem("E2", "b"), MakeItem("E1", "a")});
  EXPECT_EQ(first.accepted, 2);
  EXPECT_EQ(first.duplicates, 1);
  EnqueueOutcome second = Enqueue({MakeItem("E1", "a"), MakeItem("E1", "c")});
  EXPECT_EQ(second.accepted, 1);
  EXPECT_EQ(second.duplicates, 1);
  // The same event id from another profile is another event.
  EnqueueOutcome other = Enqueue({MakeItem("E1", "a", "bamboo")});
  EXPECT_EQ(other.accepted, 1);
  EXPECT_EQ(TotalDepth(), 4);
}

TEST_P(QueueBehaviour, DuplicateIsAcceptedAgainAfterTheWindow) {
  EXPECT_EQ(Enqueue({MakeItem("E1", "a")}, 60).accepted, 1);
  EXPECT_EQ(Enqueue({MakeItem("E1", "a")}, 60).duplicates, 1);
  backend_->EndDedupWindow(60);
  EnqueueOutcome again = Enqueue({MakeItem("E1", "a")}, 60);
  EXPECT_EQ(again.accepted, 1);
  EXPECT_EQ(again.duplicates, 0);
  EXPECT_EQ(TotalDepth(), 2);
}

TEST_P(QueueBehaviour, ZeroWindowTurnsDedupOff) {
  EnqueueOutcome out = Enqueue({MakeItem("E1", "a"), MakeItem("E1", "a")}, 0);
  EXPECT_EQ(out.accepted, 2);
  EXPECT_EQ(out.duplicates, 0);
}

TEST_P(QueueBehaviour, ReadDeliversEachItemOnceAndAckRemovesIt) {
  Enqueue({MakeItem("E1", "a"), MakeItem("E1", "b")});
  const int p = PartitionOf("hr", "E1", kPartitions);
  auto first = q().Read(p, "w1", 1, 0);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  EXPECT_EQ((*first)[0].dedup_id, "a");
  std::vector<Item> rest = ReadAll(p, "w2");
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].dedup_id, "b");
  EXPECT_TRUE(ReadAll(p).empty());

  EXPECT_EQ(Depth(p), 2);  // delivered but not ended
  ASSERT_TRUE(q().Ack((*first)[0]).ok());
  ASSERT_TRUE(q().Ack(rest[0]).ok());
  EXPECT_EQ(Depth(p), 0);
  auto stale = q().ClaimStale(p, "w3", 0, 10);
  ASSERT_TRUE(stale.ok());
  EXPECT_TRUE(stale->empty());
  // Acking twice is harmless.
  EXPECT_TRUE(q().Ack(rest[0]).ok());
}

TEST_P(QueueBehaviour, AckManyEndsStreamAndRetryItemsTogether) {
  // A coalesced burst: some items fresh from the stream, one back from the retry set.
  Enqueue({MakeItem("E1", "a"), MakeItem("E1", "b"), MakeItem("E1", "c")});
  const int p = PartitionOf("hr", "E1", kPartitions);
  std::vector<Item> items = ReadAll(p);
  ASSERT_EQ(items.size(), 3u);
  const int64_t now = 1'800'000'000'000;
  ASSERT_TRUE(q().RetryLater(items[2], now, "503").ok());
  auto due = q().TakeDue(p, now, 10, 60'000);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);

  Status s = q().AckMany({items[0], items[1], (*due)[0]});
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(Depth(p), 0);
  EXPECT_EQ(*q().RetryDepth(p), 0);
  auto stale = q().ClaimStale(p, "w3", 0, 10);
  ASSERT_TRUE(stale.ok());
  EXPECT_TRUE(stale->empty());
  EXPECT_TRUE(q().TakeDue(p, now + 10'000'000, 10, 60'000)->empty());
  EXPECT_TRUE(q().AckMany({}).ok());
}

TEST_P(QueueBehaviour, AnUnendedItemCanBeClaimedByAnotherWorker) {
  Enqueue({MakeItem("E1", "a"), MakeItem("E1", "b")});
  const int p = PartitionOf("hr", "E1", kPartitions);
  std::vector<Item> taken = ReadAll(p, "crashed");
  ASSERT_EQ(taken.size(), 2u);
  ASSERT_TRUE(q().Ack(taken[0]).ok());

  auto not_yet = q().ClaimStale(p, "w2", 3'600'000, 10);
  ASSERT_TRUE(not_yet.ok()) << not_yet.error().message;
  EXPECT_TRUE(not_yet->empty());

  auto claimed = q().ClaimStale(p, "w2", 0, 10);
  ASSERT_TRUE(claimed.ok()) << claimed.error().message;
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0].dedup_id, "b");
  EXPECT_EQ((*claimed)[0].entry_id, taken[1].entry_id);
  EXPECT_EQ((*claimed)[0].partition, p);
  EXPECT_EQ((*claimed)[0].payload, taken[1].payload);
  ASSERT_TRUE(q().Ack((*claimed)[0]).ok());
  EXPECT_EQ(Depth(p), 0);
}

TEST_P(QueueBehaviour, ClaimStaleOnAnUntouchedPartitionIsEmpty) {
  auto claimed = q().ClaimStale(1, "w", 0, 10);
  ASSERT_TRUE(claimed.ok()) << claimed.error().message;
  EXPECT_TRUE(claimed->empty());
}

TEST_P(QueueBehaviour, RetryLaterLeavesTheStreamAndComesBackWhenDue) {
  Enqueue({MakeItem("E1", "a")});
  const int p = PartitionOf("hr", "E1", kPartitions);
  std::vector<Item> items = ReadAll(p);
  ASSERT_EQ(items.size(), 1u);
  const int64_t now = 1'800'000'000'000;
  ASSERT_TRUE(q().RetryLater(items[0], now + 5000, "503 from JumpCloud").ok());
  EXPECT_EQ(Depth(p), 0);
  EXPECT_EQ(*q().RetryDepth(p), 1);

  auto early = q().TakeDue(p, now + 4999, 10, 60'000);
  ASSERT_TRUE(early.ok()) << early.error().message;
  EXPECT_TRUE(early->empty());

  auto due = q().TakeDue(p, now + 5000, 10, 60'000);
  ASSERT_TRUE(due.ok()) << due.error().message;
  ASSERT_EQ(due->size(), 1u);
  Item retry = (*due)[0];
  EXPECT_EQ(retry.dedup_id, "a");
  EXPECT_EQ(retry.payload, items[0].payload);
  EXPECT_EQ(retry.attempts, 1);
  EXPECT_EQ(retry.last_error, "503 from JumpCloud");
  EXPECT_TRUE(retry.from_retry);
  EXPECT_EQ(retry.partition, p);
  EXPECT_EQ(retry.entry_id, items[0].entry_id);

  // Leased: not handed out again until the lease ends.
  EXPECT_TRUE(q().TakeDue(p, now + 5000 + 59'999, 10, 60'000)->empty());
  auto again = q().TakeDue(p, now + 5000 + 60'000, 10, 60'000);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->size(), 1u);

  ASSERT_TRUE(q().RetryLater(retry, now + 100'000, "timeout").ok());
  auto second = q().TakeDue(p, now + 100'000, 10, 60'000);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ((*second)[0].attempts, 2);
  EXPECT_EQ((*second)[0].last_error, "timeout");

  ASSERT_TRUE(q().Ack((*second)[0]).ok());
  EXPECT_EQ(*q().RetryDepth(p), 0);
  EXPECT_TRUE(q().TakeDue(p, now + 10'000'000, 10, 60'000)->empty());
}

TEST_P(QueueBehaviour, ParkDoesNotCountAnAttemptAndListRetriesShowsWhatWaits) {
  Enqueue({MakeItem("E1", "a"), MakeItem("E1", "b")});
  const int p = PartitionOf("hr", "E1", kPartitions);
  std::vector<Item> items = ReadAll(p);
  ASSERT_EQ(items.size(), 2u);
  ASSERT_TRUE(q().RetryLater(items[0], 2000, "503").ok());
  ASSERT_TRUE(q().Park(items[1], 2000, "behind an earlier item").ok());
  auto waiting = q().ListRetries(p);
  ASSERT_TRUE(waiting.ok()) << waiting.error().message;
  ASSERT_EQ(waiting->size(), 2u);
  for (const auto& w : *waiting) {
    EXPECT_EQ(w.due_ms, 2000);
    EXPECT_EQ(w.item.employee_key, "E1");
    EXPECT_TRUE(w.item.from_retry);
    EXPECT_EQ(w.item.deliveries, 0) << "not handed out yet";
  }
  auto due = q().TakeDue(p, 2000, 10, 1000);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 2u);
  for (const auto& item : *due) {
    EXPECT_EQ(item.attempts, item.dedup_id == "a" ? 1 : 0) << item.dedup_id;
  }
  // Leased, not ended: listed with their lease's end, and as handed out (a worker taking the
  // partition over must not read the lease's end as the date a deferred item waits for).
  auto leased = q().ListRetries(p);
  ASSERT_TRUE(leased.ok());
  ASSERT_EQ(leased->size(), 2u);
  for (const auto& w : *leased) {
    EXPECT_EQ(w.due_ms, 3000);
    EXPECT_EQ(w.item.deliveries, 1) << w.item.dedup_id;
  }
  for (const auto& item : *due) ASSERT_TRUE(q().Ack(item).ok());
  EXPECT_TRUE(q().ListRetries(p)->empty());
}

TEST_P(QueueBehaviour, TakeDueReturnsEarliestDueFirstUpToMax) {
  Enqueue({MakeItem("E1", "a"), MakeItem("E1", "b"), MakeItem("E1", "c")});
  const int p = PartitionOf("hr", "E1", kPartitions);
  std::vector<Item> items = ReadAll(p);
  ASSERT_EQ(items.size(), 3u);
  ASSERT_TRUE(q().RetryLater(items[0], 3000, "x").ok());
  ASSERT_TRUE(q().RetryLater(items[1], 1000, "x").ok());
  ASSERT_TRUE(q().RetryLater(items[2], 2000, "x").ok());
  auto due = q().TakeDue(p, 5000, 2, 1000);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].dedup_id, "b");
  EXPECT_EQ((*due)[1].dedup_id, "c");
}

TEST_P(QueueBehaviour, DeadLetterKeepsTheItemAndWhyItDied) {
  Enqueue({MakeItem("E1", "a"), MakeItem("E2", "b")});
  const int p1 = PartitionOf("hr", "E1", kPartitions);
  const int p2 = PartitionOf("hr", "E2", kPartitions);
  Item a = ReadAll(p1).at(0);
  Item b = ReadAll(p2).at(0);
  backend_->clock.SetMs(1'750'000'000'000);

  ASSERT_TRUE(q().DeadLetter(a, "permanent", "userName is an email", "POST /Users {...}",
                             "400 {\"detail\":\"bad\"}")
                  .ok());
  EXPECT_EQ(Depth(p1), 0);

  // From the retry set too.
  ASSERT_TRUE(q().RetryLater(b, 0, "429").ok());
  Item b_retry = q().TakeDue(p2, 10, 1, 1000)->at(0);
  ASSERT_TRUE(q().DeadLetter(b_retry, "transient", "max_attempts reached", "", "").ok());
  EXPECT_EQ(*q().RetryDepth(p2), 0);
  EXPECT_EQ(Depth(p2), 0);

  EXPECT_EQ(*q().DeadLetterCount(), 2);
  auto list = q().ListDeadLetters("", 10);
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 2u);
  const DeadLetterEntry& d = (*list)[0];
  EXPECT_FALSE(d.id.empty());
  EXPECT_EQ(d.item.dedup_id, "a");
  EXPECT_EQ(d.item.employee_key, "E1");
  EXPECT_EQ(d.item.payload, a.payload);
  EXPECT_EQ(d.item.entry_id, a.entry_id);
  EXPECT_EQ(d.item.partition, p1);
  EXPECT_EQ(d.error_kind, "permanent");
  EXPECT_EQ(d.reason, "userName is an email");
  EXPECT_EQ(d.last_request, "POST /Users {...}");
  EXPECT_EQ(d.last_response, "400 {\"detail\":\"bad\"}");
  EXPECT_EQ(d.dead_at_ms, 1'750'000'000'000);
  EXPECT_EQ((*list)[1].item.attempts, 1);
  EXPECT_EQ((*list)[1].item.last_error, "429");

  auto shown = q().GetDeadLetter(d.id);
  ASSERT_TRUE(shown.ok()) << shown.error().message;
  EXPECT_EQ(shown->reason, d.reason);
  EXPECT_EQ(shown->item.trace_id, "trace-a");
}

TEST_P(QueueBehaviour, DeadLettersArePagedOldestFirst) {
  Enqueue({MakeItem("E1", "a"), MakeItem("E1", "b"), MakeItem("E1", "c")});
  const int p = PartitionOf("hr", "E1", kPartitions);
  for (const Item& item : ReadAll(p)) {
    ASSERT_TRUE(q().DeadLetter(item, "permanent", "r-" + item.dedup_id, "", "").ok());
  }
  auto page1 = q().ListDeadLetters("", 2);
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->size(), 2u);
  EXPECT_EQ((*page1)[0].reason, "r-a");
  EXPECT_EQ((*page1)[1].reason, "r-b");
  auto page2 = q().ListDeadLetters(page1->back().id, 2);
  ASSERT_TRUE(page2.ok());
  ASSERT_EQ(page2->size(), 1u);
  EXPECT_EQ((*page2)[0].reason, "r-c");
  EXPECT_TRUE(q().ListDeadLetters((*page2)[0].id, 2)->empty());
}

TEST_P(QueueBehaviour, ReplayEnqueuesTheItemAgainAndDropRemoves) {
  Enqueue({MakeItem("E1", "a"), MakeItem("E1", "b")});
  const int p = PartitionOf("hr", "E1", kPartitions);
  std::vector<Item> items = ReadAll(p);
  ASSERT_TRUE(q().RetryLater(items[0], 0, "503").ok());
  Item retried = q().TakeDue(p, 1, 1, 1000)->at(0);
  ASSERT_TRUE(q().DeadLetter(retried, "permanent", "bad", "", "").ok());
  ASSERT_TRUE(q().DeadLetter(items[1], "conflict", "two accounts", "", "").ok());
  auto dead = *q().ListDeadLetters("", 10);
  ASSERT_EQ(dead.size(), 2u);

  auto replayed = q().ReplayDeadLetter(dead[0].id);
  ASSERT_TRUE(replayed.ok()) << replayed.error().message;
  EXPECT_EQ(replayed->partition, p);
  EXPECT_EQ(replayed->attempts, 0);
  EXPECT_FALSE(replayed->entry_id.empty());
  EXPECT_EQ(*q().DeadLetterCount(), 1);

  std::vector<Item> again = ReadAll(p);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].dedup_id, "a");
  EXPECT_EQ(again[0].entry_id, replayed->entry_id);
  EXPECT_EQ(again[0].attempts, 0);
  EXPECT_EQ(again[0].last_error, "");
  EXPECT_EQ(again[0].payload, items[0].payload);

  auto twice = q().ReplayDeadLetter(dead[0].id);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(q().GetDeadLetter(dead[0].id).error().kind, ErrorKind::kNotFound);

  ASSERT_TRUE(q().DropDeadLetter(dead[1].id).ok());
  EXPECT_EQ(*q().DeadLetterCount(), 0);
  Status dropped_twice = q().DropDeadLetter(dead[1].id);
  ASSERT_FALSE(dropped_twice.ok());
  EXPECT_EQ(dropped_twice.error().kind, ErrorKind::kNotFound);

  EXPECT_EQ(q().GetDeadLetter("not-an-id").error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(q().DropDeadLetter("x-y").error().kind, ErrorKind::kInvalid);
}

TEST_P(QueueBehaviour, PartitionOutOfRangeIsInvalid) {
  EXPECT_EQ(q().Read(kPartitions, "w", 1, 0).error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(q().Depth(-1).error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(q().TakeDue(kPartitions, 0, 1, 1).error().kind, ErrorKind::kInvalid);
  Item no_partition = MakeItem("E1", "a");
  no_partition.entry_id = "1-0";
  EXPECT_EQ(q().Ack(no_partition).error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(q().partitions(), kPartitions);
}

TEST_P(QueueBehaviour, UnavailableIsTransientAndNothingIsLost) {
  Enqueue({MakeItem("E1", "before")});
  backend_->SetUnavailable(true);
  auto during = q().EnqueueBatch({MakeItem("E1", "during")}, kWeek);
  ASSERT_FALSE(during.ok());
  EXPECT_EQ(during.error().kind, ErrorKind::kTransient);
  EXPECT_EQ(q().Ping().error().kind, ErrorKind::kTransient);
  EXPECT_EQ(q().Read(0, "w", 1, 0).error().kind, ErrorKind::kTransient);
  EXPECT_EQ(q().DeadLetterCount().error().kind, ErrorKind::kTransient);

  backend_->SetUnavailable(false);
  EXPECT_TRUE(q().Ping().ok());
  std::vector<Item> items = ReadAll(PartitionOf("hr", "E1", kPartitions));
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].dedup_id, "before");
  // The refused batch was not recorded as seen: the sender's retry is accepted.
  EXPECT_EQ(Enqueue({MakeItem("E1", "during")}).accepted, 1);
}

TEST_P(QueueBehaviour, BlockingReadWakesUpForANewItem) {
  const int p = PartitionOf("hr", "E1", kPartitions);
  auto start = std::chrono::steady_clock::now();
  auto empty = q().Read(p, "w", 10, 100);
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_TRUE(empty->empty());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(90));

  std::thread writer([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_TRUE(q().EnqueueBatch({MakeItem("E1", "late")}, kWeek).ok());
  });
  auto got = q().Read(p, "w", 10, 1000);
  writer.join();
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].dedup_id, "late");
}

// Fencing: an instance took items under a lease token, froze, and another instance took the
// partition (the token moved on). Every outcome write the old holder makes under its old token
// is refused -- a "fenced: " error -- and changes nothing: the stream item stays pending, the
// retry-set item stays leased, no dead letter, no applied state. The new owner's writes under the
// current token go through. Without this the old holder could, for example, park an item back
// into the retry set after the new owner had synced and acknowledged it.
TEST_P(QueueBehaviour, OutcomeWritesUnderATokenThatMovedOnAreRefusedAndChangeNothing) {
  const int p = PartitionOf("hr", "E1", kPartitions);
  const std::string key = "scimsync:lease:{p" + std::to_string(p) + "}:token";
  backend_->SetFenceValue(key, 7);
  const Fence mine{key, 7};
  Enqueue({MakeItem("E1", "a"), MakeItem("E1", "b")});
  std::vector<Item> read = ReadAll(p);
  ASSERT_EQ(read.size(), 2u);
  // Under the token it holds, the old holder's writes go through.
  ASSERT_TRUE(q().RetryLater(read[0], 5, "503", mine).ok());
  auto taken = q().TakeDue(p, 5, 10, 60'000);
  ASSERT_TRUE(taken.ok() && taken->size() == 1u);
  const Item retry = taken->at(0);  // leased until 60'005
  const Item pending = read[1];     // delivered, not ended

  backend_->SetFenceValue(key, 8);  // another instance took the partition
  auto expect_fenced = [](const Status& s, const std::string& what) {
    ASSERT_FALSE(s.ok()) << what << " went through under an old token";
    EXPECT_TRUE(IsFenced(s.error())) << what << ": " << s.error().message;
    EXPECT_EQ(s.error().message.rfind("fenced: ", 0), 0u) << s.error().message;
    EXPECT_NE(s.error().message.find("holds 8, not 7"), std::string::npos) << s.error().message;
  };
  for (const Item& item : {pending, retry}) {
    const std::string from = item.from_retry ? " (retry set)" : " (stream)";
    expect_fenced(q().Park(item, 1, "waiting", mine), "Park" + from);
    expect_fenced(q().RetryLater(item, 1, "503", mine), "RetryLater" + from);
    expect_fenced(q().DeadLetter(item, "permanent", "400", "req", "resp", mine),
                  "DeadLetter" + from);
    expect_fenced(q().Ack(item, mine), "Ack" + from);
    expect_fenced(q().AckPass(p, {item}, {item}, CappedLists{}, mine), "AckPass" + from);
  }
  // A key nobody set holds nothing: no token matches it.
  Status unset = q().Ack(pending, Fence{key + ":unset", 1});
  ASSERT_FALSE(unset.ok()) << "a fence on a key nobody set let a write through";
  EXPECT_TRUE(IsFenced(unset.error())) << unset.error().message;
  EXPECT_NE(unset.error().message.find("holds nothing, not 1"), std::string::npos)
      << unset.error().message;

  // Nothing changed: the stream item is still pending (another consumer can claim it), the
  // retry-set item is still leased, no dead letter, no applied state.
  EXPECT_EQ(Depth(p), 1);
  auto claimed = q().ClaimStalePage(p, "new-owner", 0, "0-0", 10);
  ASSERT_TRUE(claimed.ok()) << claimed.error().message;
  ASSERT_EQ(claimed->items.size(), 1u);
  EXPECT_EQ(claimed->items[0].entry_id, pending.entry_id);
  auto retries = q().ListRetries(p);
  ASSERT_TRUE(retries.ok()) << retries.error().message;
  ASSERT_EQ(retries->size(), 1u);
  EXPECT_EQ(retries->at(0).item.entry_id, retry.entry_id);
  EXPECT_EQ(retries->at(0).due_ms, 60'005);
  EXPECT_EQ(retries->at(0).item.attempts, 1);
  EXPECT_EQ(*q().DeadLetterCount(), 0);
  EXPECT_EQ(q().LastApplied(p, "hr", "", "E1").error().kind, ErrorKind::kNotFound);

  // The new owner's writes, under the current token, go through.
  const Fence theirs{key, 8};
  Status park = q().Park(claimed->items[0], 1, "waiting", theirs);
  EXPECT_TRUE(park.ok()) << park.error().message;
  Status ack = q().AckPass(p, {retry}, {retry}, CappedLists{}, theirs);
  EXPECT_TRUE(ack.ok()) << ack.error().message;
  EXPECT_EQ(Depth(p), 0);
  EXPECT_EQ(q().LastApplied(p, "hr", "", "E1")->dedup_id, "a");
}

INSTANTIATE_TEST_SUITE_P(Queues, QueueBehaviour, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace scimsync::queue
