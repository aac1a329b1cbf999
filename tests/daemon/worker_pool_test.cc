// The worker pool's scheduling rules with the in-memory queue and a scripted syncer, driven one
// pass at a time on a fake clock: coalescing, nothing overtaking a waiting item, other employees
// going on, dead letters, deferral, the auth pause, and partition ownership.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <set>

#include "scimsync/daemon/worker.h"

namespace scimsync::daemon {
namespace {

constexpr int kPartitions = 4;

// Records each sync and answers from a script per employee (default: done).
class ScriptedSyncer : public Syncer {
 public:
  SyncResult Sync(int, const EmployeeWork& work) override {
    if (before) before(work);
    std::vector<std::string> ids;
    for (const auto& item : work.items) ids.push_back(item.dedup_id);
    calls.emplace_back(work.employee_key, ids);
    auto& script = answers[work.employee_key];
    if (script.empty()) return SyncResult{};
    SyncResult r = script.front();
    script.pop_front();
    return r;
  }
  Status Probe(int) override {
    ++probes;
    return probe_ok ? Status() : Status(Error::Auth("401"));
  }

  std::function<void(const EmployeeWork&)> before;  // runs at the start of each sync
  std::vector<std::pair<std::string, std::vector<std::string>>> calls;
  std::map<std::string, std::deque<SyncResult>> answers;
  bool probe_ok = false;
  int probes = 0;
};

SyncResult Retry(int64_t delay_ms) {
  SyncResult r;
  r.kind = SyncResult::Kind::kRetry;
  r.delay_ms = delay_ms;
  r.reason = "503";
  return r;
}

class WorkerPoolTest : public ::testing::Test {
 protected:
  WorkerPoolTest()
      : clock_(1'800'000'000'000),
        queue_(queue::NewMemoryQueue(kPartitions, clock_)),
        pool_(
            Options(), *queue_, syncer_, clock_, [this](int p) { return owned_.count(p) > 0; },
            [](int) {}) {
    for (int p = 0; p < kPartitions; ++p) owned_.insert(p);
  }

  static WorkerOptions Options() {
    WorkerOptions o;
    o.threads = 1;
    o.consumer = "test";
    o.probe_interval_ms = 1000;
    return o;
  }

  void Enqueue(const std::string& employee, const std::string& id) {
    queue::Item item;
    item.profile = "hr";
    item.employee_key = employee;
    item.dedup_id = id;
    item.event_type = "employee.updated";
    item.payload = "{}";
    item.received_at_ms = clock_.NowMs();
    ASSERT_TRUE(queue_->EnqueueBatch({item}, 0).ok());
  }

  int64_t Waiting() {
    int64_t n = 0;
    for (int p = 0; p < kPartitions; ++p) n += *queue_->Depth(p) + *queue_->RetryDepth(p);
    return n;
  }

  FakeClock clock_;
  std::unique_ptr<queue::MemoryQueue> queue_;
  ScriptedSyncer syncer_;
  std::set<int> owned_;
  WorkerPool pool_;
};

TEST_F(WorkerPoolTest, ABurstForOneEmployeeIsOneSync) {
  Enqueue("E1", "a");
  Enqueue("E1", "b");
  Enqueue("E1", "c");
  EXPECT_EQ(pool_.RunOnce(), 3);
  ASSERT_EQ(syncer_.calls.size(), 1u);
  EXPECT_EQ(syncer_.calls[0].second, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Waiting(), 0);
}

// The employees converged in one pass are acknowledged together when it ends (one script), and
// when that write fails their items come back: processed again, never lost.
TEST_F(WorkerPoolTest, APassAcknowledgesItsConvergedEmployeesTogetherAndALostAckRedelivers) {
  // Two employees of one partition.
  const int p = queue::PartitionOf("hr", "E1", kPartitions);
  std::string other;
  for (int i = 2; other.empty(); ++i) {
    std::string key = "E" + std::to_string(i);
    if (queue::PartitionOf("hr", key, kPartitions) == p) other = key;
  }
  Enqueue("E1", "a");
  Enqueue(other, "b");
  std::vector<int64_t> depth_seen;
  syncer_.before = [&](const EmployeeWork& work) {
    depth_seen.push_back(*queue_->Depth(p));
    if (work.employee_key == other) queue_->set_unavailable(true);  // the ack write will fail
  };
  EXPECT_EQ(pool_.RunOnce(), 2);
  queue_->set_unavailable(false);
  // While the second employee synced, the first one's item was not yet acknowledged.
  EXPECT_EQ(depth_seen, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(*queue_->Depth(p), 2);  // the pass's ack was lost

  // Delivered but never ended: claimed again once idle long enough, and converged again.
  syncer_.before = nullptr;
  clock_.AdvanceMs(60'000);
  pool_.RunOnce();
  EXPECT_EQ(syncer_.calls.size(), 4u);
  EXPECT_EQ(Waiting(), 0);
}

TEST_F(WorkerPoolTest, NewerItemsWaitBehindARetryWhileOthersGoOn) {
  syncer_.answers["E1"].push_back(Retry(5000));
  Enqueue("E1", "a");
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 1u);

  Enqueue("E1", "b");  // must not overtake "a"
  Enqueue("E2", "x");  // another employee is not held up
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 2u);
  EXPECT_EQ(syncer_.calls[1].first, "E2");

  clock_.AdvanceMs(4999);
  pool_.RunOnce();
  EXPECT_EQ(syncer_.calls.size(), 2u) << "synced before the retry was due";

  clock_.AdvanceMs(1);
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 3u);
  EXPECT_EQ(syncer_.calls[2].first, "E1");
  EXPECT_EQ(syncer_.calls[2].second, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Waiting(), 0);
}

TEST_F(WorkerPoolTest, RetriesCountAttemptsAndDeadLettersKeepTheReason) {
  syncer_.answers["E1"].push_back(Retry(100));
  SyncResult dead;
  dead.kind = SyncResult::Kind::kDeadLetter;
  dead.error_kind = "permanent";
  dead.reason = "400: userName invalid";
  syncer_.answers["E1"].push_back(dead);
  Enqueue("E1", "a");
  pool_.RunOnce();
  clock_.AdvanceMs(100);
  pool_.RunOnce();
  EXPECT_EQ(Waiting(), 0);
  auto letters = queue_->ListDeadLetters("", 10);
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ((*letters)[0].reason, "400: userName invalid");
  EXPECT_EQ((*letters)[0].error_kind, "permanent");
  EXPECT_EQ((*letters)[0].item.attempts, 1);
}

TEST_F(WorkerPoolTest, DeferredItemsWaitForTheirDateWithoutBlockingLaterOnes) {
  SyncResult deferred;
  deferred.deferred.emplace_back(0, clock_.NowMs() + 60'000);
  syncer_.answers["E1"].push_back(deferred);
  Enqueue("E1", "termination-next-week");
  pool_.RunOnce();
  Enqueue("E1", "title-change");
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 2u);
  EXPECT_EQ(syncer_.calls[1].second, (std::vector<std::string>{"title-change"}));
  EXPECT_EQ(Waiting(), 1);
  clock_.AdvanceMs(60'000);
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 3u);
  EXPECT_EQ(syncer_.calls[2].second, (std::vector<std::string>{"termination-next-week"}));
  EXPECT_EQ(syncer_.calls[2].first, "E1");
  auto due = queue_->ListRetries(queue::PartitionOf("hr", "E1", kPartitions));
  EXPECT_TRUE(due->empty());
}

TEST_F(WorkerPoolTest, AuthPauseConsumesNothingAndResumesWhenTheProbeSucceeds) {
  SyncResult pause;
  pause.kind = SyncResult::Kind::kPause;
  pause.reason = "401 from JumpCloud";
  syncer_.answers["E1"].push_back(pause);
  std::vector<std::string> pause_events;
  pool_.SetPauseHook([&](const std::string& reason) { pause_events.push_back(reason); });
  Enqueue("E1", "a");
  pool_.RunOnce();
  EXPECT_TRUE(pool_.paused());
  Enqueue("E2", "x");
  EXPECT_EQ(pool_.RunOnce(), 0);
  clock_.AdvanceMs(1000);
  EXPECT_EQ(pool_.RunOnce(), 0);  // the probe still fails
  EXPECT_EQ(syncer_.probes, 1);
  EXPECT_EQ(syncer_.calls.size(), 1u);
  EXPECT_EQ(Waiting(), 2);
  EXPECT_TRUE(queue_->ListDeadLetters("", 10)->empty());

  syncer_.probe_ok = true;
  clock_.AdvanceMs(1000);
  pool_.RunOnce();
  EXPECT_FALSE(pool_.paused());
  pool_.RunOnce();
  EXPECT_EQ(Waiting(), 0);
  ASSERT_EQ(pause_events.size(), 2u);
  EXPECT_EQ(pause_events[0], "401 from JumpCloud");
  EXPECT_EQ(pause_events[1], "");
  // E1's item came back and was synced after the pause.
  int e1 = 0;
  for (const auto& c : syncer_.calls) e1 += c.first == "E1";
  EXPECT_EQ(e1, 2);
}

TEST_F(WorkerPoolTest, PartitionsThisInstanceDoesNotOwnAreLeftAlone) {
  owned_.clear();
  Enqueue("E1", "a");
  EXPECT_EQ(pool_.RunOnce(), 0);
  EXPECT_TRUE(syncer_.calls.empty());
  owned_.insert(queue::PartitionOf("hr", "E1", kPartitions));
  EXPECT_EQ(pool_.RunOnce(), 1);
}

TEST_F(WorkerPoolTest, GuardHoldIsKeptAndLookedAtAgain) {
  SyncResult hold;
  hold.kind = SyncResult::Kind::kHold;
  syncer_.answers["E1"].push_back(hold);
  Enqueue("E1", "terminate");
  pool_.RunOnce();
  EXPECT_EQ(Waiting(), 1);
  clock_.AdvanceMs(15'000);
  pool_.RunOnce();
  EXPECT_EQ(Waiting(), 0);
  EXPECT_EQ(syncer_.calls.size(), 2u);
}

// workers.nice: the worker threads run below the listener, the rest of the process does not.
TEST(WorkerPoolPriorityTest, WorkerThreadsAddTheirNicenessAndTheProcessKeepsItsOwn) {
  FakeClock clock(1'800'000'000'000);
  auto queue = queue::NewMemoryQueue(kPartitions, clock);
  ScriptedSyncer syncer;
  WorkerOptions o;
  o.threads = 2;
  o.nice = 5;
  o.consumer = "test";
  WorkerPool pool(
      o, *queue, syncer, clock, [](int) { return true; }, [](int) {});
  std::mutex mu;
  std::set<int> seen;
  pool.SetIterationHook([&](int) {
    std::lock_guard lock(mu);
    seen.insert(getpriority(PRIO_PROCESS, 0));
  });
  const int before = getpriority(PRIO_PROCESS, 0);
  pool.Start();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    std::lock_guard lock(mu);
    if (!seen.empty()) break;
  }
  pool.Stop(0);
  EXPECT_EQ(seen, (std::set<int>{std::min(19, before + 5)}));
  EXPECT_EQ(getpriority(PRIO_PROCESS, 0), before);
}

TEST(EntryIdTest, OrdersNumerically) {
  EXPECT_TRUE(EntryIdLess("1700000000000-9", "1700000000000-10"));
  EXPECT_TRUE(EntryIdLess("999-5", "1000-0"));
  EXPECT_FALSE(EntryIdLess("1000-0", "1000-0"));
  EXPECT_EQ(ScopeOf("hr", ""), "hr");
  EXPECT_EQ(ScopeOf("hr", "acme"), "hr/acme");
}

}  // namespace
}  // namespace scimsync::daemon
