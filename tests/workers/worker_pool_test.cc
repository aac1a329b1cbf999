// The worker pool's scheduling rules with the in-memory queue and a scripted syncer, driven one
// pass at a time on a fake clock: coalescing, nothing overtaking a waiting item, other employees
// going on, dead letters, deferral, the auth pause, and partition ownership.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "../queue/queue_test_util.h"
#include "scimsync/log.h"
#include "scimsync/redis/client.h"
#include "scimsync/redis/keys.h"
#include "scimsync/workers/worker.h"
#include "test_support.h"

namespace scimsync::workers {
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
  Status EndPass(int) override {
    ++end_passes;
    return end_pass;
  }

  std::function<void(const EmployeeWork&)> before;  // runs at the start of each sync
  std::vector<std::pair<std::string, std::vector<std::string>>> calls;
  std::map<std::string, std::deque<SyncResult>> answers;
  bool probe_ok = false;
  int probes = 0;
  Status end_pass;  // what EndPass answers
  int end_passes = 0;
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

  void Enqueue(const std::string& employee, const std::string& id,
               const std::string& occurred_at = "") {
    queue::Item item;
    item.occurred_at = occurred_at;
    item.profile = "hr";
    item.employee_key = employee;
    item.dedup_id = id;
    item.event_type = "employee.updated";
    item.payload = "{}";
    item.received_at_ms = clock_.NowMs();
    ASSERT_TRUE(queue_->EnqueueBatch({item}, 0).ok());
  }

  // `employee` and the next `more` employees ("E2", "E3"...) whose items share its partition.
  static std::vector<std::string> SamePartition(const std::string& employee, size_t more) {
    const int p = queue::PartitionOf("hr", employee, kPartitions);
    std::vector<std::string> out = {employee};
    for (int i = 2; out.size() < more + 1; ++i) {
      std::string key = "E" + std::to_string(i);
      if (key != employee && queue::PartitionOf("hr", key, kPartitions) == p) out.push_back(key);
    }
    return out;
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
  const std::string other = SamePartition("E1", 1).back();
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

// A pass of a large backlog writes its acknowledgements every ack_batch items, not all at its
// end: one script per pass blocked Redis (and every webhook's write behind it) for milliseconds
// and held the whole pass's history and payloads in memory at once.
TEST_F(WorkerPoolTest, ALongPassAcknowledgesEveryAckBatchItems) {
  WorkerOptions options = Options();
  options.ack_batch = 3;
  WorkerPool pool(
      options, *queue_, syncer_, clock_, [](int) { return true; }, [](int) {});
  const int p = queue::PartitionOf("hr", "E1", kPartitions);
  const std::vector<std::string> employees = SamePartition("E1", 7);
  for (const auto& e : employees) Enqueue(e, e + "-a");
  std::vector<int64_t> depth_seen;
  syncer_.before = [&](const EmployeeWork&) { depth_seen.push_back(*queue_->Depth(p)); };
  EXPECT_EQ(pool.RunOnce(), 8);
  EXPECT_EQ(depth_seen, (std::vector<int64_t>{8, 8, 8, 5, 5, 5, 2, 2}));
  EXPECT_EQ(Waiting(), 0);
  // The applied versions are stored before each batch's acknowledgements.
  EXPECT_EQ(syncer_.end_passes, 3);
}

// Under the rate limit a pass of a thousand items takes minutes, and an employee's later events
// arrive while it runs. They join the employee's sync if it has not started yet (one request
// for the whole burst, not one per pass), and an employee synced earlier in the pass is synced
// again at its end, after the first sync's acknowledgement.
TEST_F(WorkerPoolTest, ASlowPassTakesInNewerItemsOfItsEmployeesBeforeSyncingThem) {
  const int p = queue::PartitionOf("hr", "E1", kPartitions);
  const std::string other = SamePartition("E1", 1).back();
  Enqueue("E1", "a");
  Enqueue(other, "x");
  // E1's sync waits for its rate-limit slot, and meanwhile both employees' next events arrive.
  SyncResult waited;
  waited.rate_wait_ms = WorkerOptions().read_ahead_after_ms;
  syncer_.answers["E1"].push_back(waited);
  bool slow = true;
  std::vector<int64_t> depth_seen;
  syncer_.before = [&](const EmployeeWork& work) {
    depth_seen.push_back(*queue_->Depth(p));
    if (work.employee_key != "E1" || !slow) return;
    slow = false;
    clock_.AdvanceMs(waited.rate_wait_ms);
    Enqueue(other, "y");
    Enqueue("E1", "b");
  };
  EXPECT_EQ(pool_.RunOnce(), 4);
  using Calls = std::vector<std::pair<std::string, std::vector<std::string>>>;
  EXPECT_EQ(syncer_.calls, (Calls{{"E1", {"a"}}, {other, {"x", "y"}}, {"E1", {"b"}}}));
  // What was synced before E1's second sync (E1's first one included) was acknowledged first.
  EXPECT_EQ(depth_seen, (std::vector<int64_t>{2, 4, 1}));
  EXPECT_EQ(Waiting(), 0);
}

// A pass that does not wait for the rate limiter reads nothing more, however long it runs (a
// backlog drained as fast as the CPU goes: no extra round trips, no more memory than its read),
// and one that waits stops reading ahead at max_pass_items (memory).
TEST_F(WorkerPoolTest, APassNotWaitingForTheLimiterOrAFullOneDoesNotReadAhead) {
  for (const bool fast : {true, false}) {
    SCOPED_TRACE(fast ? "not waiting for the limiter" : "full");
    WorkerOptions options = Options();
    options.max_pass_items = 2;
    WorkerPool pool(
        options, *queue_, syncer_, clock_, [](int) { return true; }, [](int) {});
    syncer_.calls.clear();
    const std::string other = SamePartition("E1", 1).back();
    Enqueue("E1", "a");
    Enqueue(other, "x");
    SyncResult waited;
    waited.rate_wait_ms = fast ? 0 : options.read_ahead_after_ms;
    syncer_.answers["E1"].push_back(waited);
    bool first = true;
    syncer_.before = [&](const EmployeeWork&) {
      if (!first) return;
      first = false;
      clock_.AdvanceMs(10 * options.read_ahead_after_ms);  // slow, for whatever reason
      Enqueue(other, "y");
    };
    EXPECT_EQ(pool.RunOnce(), 2);
    ASSERT_EQ(syncer_.calls.size(), 2u);
    EXPECT_EQ(syncer_.calls[1].second, std::vector<std::string>{"x"});
    syncer_.before = nullptr;
    EXPECT_EQ(pool.RunOnce(), 1);
    EXPECT_EQ(Waiting(), 0);
  }
}

// Items read ahead for an employee already synced in the pass wait for that sync's outcome to be
// written. When the write fails (Redis went away), the earlier items come back, and the newer
// ones must not be synced before them: they come back together, in order.
TEST_F(WorkerPoolTest, ReadAheadItemsWaitWhenTheirEmployeesEarlierOutcomeWasNotStored) {
  const std::string other = SamePartition("E1", 1).back();
  Enqueue("E1", "termination");
  Enqueue(other, "x");
  SyncResult waited;
  waited.rate_wait_ms = WorkerOptions().read_ahead_after_ms;
  syncer_.answers["E1"].push_back(waited);
  syncer_.before = [&](const EmployeeWork&) {
    if (!syncer_.calls.empty()) return;
    clock_.AdvanceMs(waited.rate_wait_ms);
    Enqueue("E1", "update");
    syncer_.end_pass = Error::Transient("Redis: connection refused");
  };
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 2u)
      << "the update was synced although the termination's outcome was not stored";
  EXPECT_EQ(syncer_.calls[1].first, other);
  EXPECT_EQ(Waiting(), 3);

  syncer_.end_pass = Status();
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 4u);
  EXPECT_EQ(syncer_.calls[2].second, (std::vector<std::string>{"termination", "update"}));
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

// The syncer's answer when a burst's held termination fell due while the rest was synced (the
// sync ran past its date): a retry at once, no attempt counted. The next pass gets the whole
// burst back as one sync, in order, the termination with it.
TEST_F(WorkerPoolTest, ABurstWhoseHeldTerminationFellDueMidSyncComesBackWhole) {
  const int64_t date_ms = clock_.NowMs() + 1000;
  SyncResult replan;
  replan.kind = SyncResult::Kind::kRetry;
  replan.count_attempt = false;
  replan.delay_ms = 0;
  replan.deferred.emplace_back(1, date_ms);
  syncer_.answers["E1"].push_back(replan);
  syncer_.before = [this](const EmployeeWork&) {
    if (syncer_.calls.empty()) clock_.AdvanceMs(2000);  // a slow JumpCloud
  };
  Enqueue("E1", "hire");
  Enqueue("E1", "termination-in-a-second");
  Enqueue("E1", "update");
  pool_.RunOnce();
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 2u);
  EXPECT_EQ(syncer_.calls[1].second,
            (std::vector<std::string>{"hire", "termination-in-a-second", "update"}));
  EXPECT_EQ(Waiting(), 0);
}

// A termination held in the retry set until its date is not in the batch of a later update of
// the same employee: the syncer is told its date (so a sync that outlasts it stops before
// writing), and once the date has passed the update waits until the termination has come back
// and been synced, even when another worker has it.
TEST_F(WorkerPoolTest, AnUpdateWaitsBehindAHeldTerminationOnceItsDateHasPassed) {
  const int64_t date_ms = clock_.NowMs() + 1000;
  SyncResult held;
  held.deferred.emplace_back(0, date_ms);
  syncer_.answers["E1"].push_back(held);
  std::vector<int64_t> told;
  syncer_.before = [&](const EmployeeWork& work) { told.push_back(work.held_due_ms); };
  Enqueue("E1", "termination-in-a-second");
  pool_.RunOnce();
  Enqueue("E1", "update-before-the-date");
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 2u);
  EXPECT_EQ(told[1], date_ms) << "the update's sync was not told the held termination's date";

  // The date passes; another worker takes the termination from the retry set (it is leased).
  clock_.AdvanceMs(1500);
  const int partition = queue::PartitionOf("hr", "E1", kPartitions);
  auto taken = queue_->TakeDue(partition, clock_.NowMs(), 10, 60'000);
  ASSERT_TRUE(taken.ok());
  ASSERT_EQ(taken->size(), 1u);
  Enqueue("E1", "update-after-the-date");
  pool_.RunOnce();
  EXPECT_EQ(syncer_.calls.size(), 2u) << "an update of a leaver was synced before the termination";
  // The other worker gives it back (it died: its lease ran out); it comes first, then the update.
  ASSERT_TRUE(queue_->Park((*taken)[0], clock_.NowMs(), "deferred until its effective date").ok());
  for (int i = 0; i < 5 && syncer_.calls.size() < 3; ++i) {
    clock_.AdvanceMs(1000);
    pool_.RunOnce();
  }
  ASSERT_GE(syncer_.calls.size(), 3u);
  EXPECT_EQ(syncer_.calls[2].second.front(), "termination-in-a-second");
}

// Seed 1586 of the model test. A termination held until its date comes back from the retry set
// (leased) with the hire and update that arrived meanwhile; the three are synced as one burst,
// but the pass cannot store its outcome (Redis went away) so nothing is acknowledged. The hire
// and update are pending in the stream and claimed again at once; the termination stays leased
// in the retry set. Its lease end is not an effective date: the hire and update must wait for
// it, or they create an active account for a leaver.
TEST_F(WorkerPoolTest, ABurstWhoseOutcomeWasNotStoredComesBackWithItsHeldTermination) {
  const int64_t date_ms = clock_.NowMs() + 1000;
  SyncResult held;
  held.deferred.emplace_back(0, date_ms);
  syncer_.answers["E1"].push_back(held);
  Enqueue("E1", "termination-in-a-second");
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 1u);

  clock_.AdvanceMs(1500);
  Enqueue("E1", "hire");
  Enqueue("E1", "update");
  syncer_.end_pass = Error::Transient("Redis: connection refused");
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 2u);
  EXPECT_EQ(syncer_.calls[1].second,
            (std::vector<std::string>{"termination-in-a-second", "hire", "update"}));
  ASSERT_EQ(Waiting(), 3) << "acknowledged although the pass's outcome was not stored";

  syncer_.end_pass = Status();
  for (int i = 0; i < 70 && syncer_.calls.size() < 3; ++i) {
    pool_.RunOnce();
    clock_.AdvanceMs(1000);
  }
  ASSERT_EQ(syncer_.calls.size(), 3u);
  EXPECT_EQ(syncer_.calls[2].second,
            (std::vector<std::string>{"termination-in-a-second", "hire", "update"}))
      << "the burst came back without its termination";
  EXPECT_EQ(Waiting(), 0);
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

// Storing the applied versions failed: acknowledging the items anyway would let an older event
// overwrite what they applied. They stay pending and are converged again.
TEST_F(WorkerPoolTest, AFailedVersionWriteLeavesThePassUnacknowledged) {
  Enqueue("E1", "a");
  syncer_.end_pass = Error::Transient("Redis: connection refused");
  pool_.RunOnce();
  EXPECT_EQ(syncer_.calls.size(), 1u);
  EXPECT_EQ(Waiting(), 1) << "acknowledged although its version was not stored";

  syncer_.end_pass = Status();
  pool_.RunOnce();
  ASSERT_EQ(syncer_.calls.size(), 2u);
  EXPECT_EQ(syncer_.calls[1].second, (std::vector<std::string>{"a"}));
  EXPECT_EQ(Waiting(), 0);
}

// An item whose every delivery ended without an outcome (the process crashed on it each time)
// is dead-lettered with a reason after workers.max_deliveries, instead of being synced again.
TEST_F(WorkerPoolTest, AnItemDeliveredTooOftenIsDeadLetteredNotSyncedAgain) {
  Enqueue("E1", "poison");
  const int p = queue::PartitionOf("hr", "E1", kPartitions);
  ASSERT_EQ(queue_->Read(p, "crashed-0", 10, 0)->size(), 1u);
  // Nine more instances took it and died: ten deliveries so far.
  for (int i = 1; i < 10; ++i) {
    clock_.AdvanceMs(60'000);
    ASSERT_TRUE(queue_->ClaimStale(p, "crashed-" + std::to_string(i), 60'000, 10).ok());
  }
  Enqueue("E2", "fine");
  // The last one left: this pool takes the partition over (the eleventh delivery).
  clock_.AdvanceMs(60'000);
  pool_.RunOnce();
  for (const auto& c : syncer_.calls) EXPECT_NE(c.first, "E1") << "the poison item was synced";
  auto letters = queue_->ListDeadLetters("", 10);
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ((*letters)[0].item.dedup_id, "poison");
  EXPECT_NE((*letters)[0].reason.find("delivered 11 times without an outcome"), std::string::npos)
      << (*letters)[0].reason;
  EXPECT_NE((*letters)[0].reason.find("workers.max_deliveries"), std::string::npos);
  EXPECT_EQ(Waiting(), 0);
  ASSERT_FALSE(syncer_.calls.empty());
  EXPECT_EQ(syncer_.calls.back().first, "E2");
}

// The same for an item waiting in the retry set: each worker that took it (TakeDue) died
// before its outcome; its lease ran out and the next one took it again.
TEST_F(WorkerPoolTest, ARetryItemTakenTooOftenIsDeadLetteredNotSyncedAgain) {
  Enqueue("E1", "poison");
  const int p = queue::PartitionOf("hr", "E1", kPartitions);
  auto read = queue_->Read(p, "w", 10, 0);
  ASSERT_EQ(read->size(), 1u);
  ASSERT_TRUE(queue_->RetryLater(read->at(0), clock_.NowMs(), "503").ok());
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(queue_->TakeDue(p, clock_.NowMs(), 10, 60'000)->size(), 1u);
    clock_.AdvanceMs(60'000);  // the taker died; its lease runs out
  }
  pool_.RunOnce();
  EXPECT_TRUE(syncer_.calls.empty()) << "the poison item was synced";
  auto letters = queue_->ListDeadLetters("", 10);
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_NE((*letters)[0].reason.find("delivered 11 times"), std::string::npos)
      << (*letters)[0].reason;
  EXPECT_EQ(Waiting(), 0);
}

// A pass whose only employee had every item deferred acknowledges nothing; it must not leave
// the pool counted busy, or stopping an idle daemon waits out the whole drain timeout.
TEST_F(WorkerPoolTest, StoppingAfterAPassOfOnlyDeferredItemsIsPrompt) {
  SyncResult deferred;
  deferred.deferred.emplace_back(0, clock_.NowMs() + 86'400'000);
  syncer_.answers["E1"].push_back(deferred);
  Enqueue("E1", "termination-next-week");
  pool_.RunOnce();
  EXPECT_EQ(Waiting(), 1);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(pool_.Stop(3000)) << "the pool still counts work in flight";
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1000));
}

// Fencing: the lease is lost while a sync is in flight. The pool records nothing for the
// items (they are the new owner's), tells the syncer through EmployeeWork::fence, and enqueues
// a repair, which the new owner turns into one more sync from the newest state applied.
TEST_F(WorkerPoolTest, ASyncThatOutlivesItsLeaseIsFencedAndRepairedByTheNewOwner) {
  bool held = true;
  pool_.SetFencing([this](int p) -> int64_t { return owned_.count(p) ? 7 : 0; },
                   [&held](int, int64_t token) { return held && token == 7; });
  // The newest state, applied and acknowledged by this pool while it held the lease.
  Enqueue("E1", "hire", "1790000002");
  pool_.RunOnce();
  ASSERT_EQ(Waiting(), 0);
  std::vector<bool> fence_ok;
  syncer_.before = [&](const EmployeeWork& work) {
    if (work.items.back().dedup_id != "stale") return;
    held = false;  // frozen past the lease; another instance owns the partition now
    fence_ok.push_back(work.fence().ok());
  };
  Enqueue("E1", "stale", "1790000001");  // a late, older event
  pool_.RunOnce();
  EXPECT_EQ(fence_ok, (std::vector<bool>{false})) << "the fence let a write through";
  const int p = queue::PartitionOf("hr", "E1", kPartitions);
  EXPECT_EQ(*queue_->Depth(p), 2) << "the stale item left pending, and a repair behind it";
  EXPECT_TRUE(queue_->ListDeadLetters("", 10)->empty());

  // The new owner claims the stale item and reads the repair in one pass: one sync, which
  // gets the newest state applied first (the repair stands in for it) and the stale item
  // after; the syncer folds them to the newest version, so JumpCloud ends at "hire".
  ScriptedSyncer next;
  WorkerPool owner(
      Options(), *queue_, next, clock_, [](int) { return true; }, [](int) {});
  owner.RunOnce();
  EXPECT_EQ(*queue_->Depth(p), 0);
  ASSERT_EQ(next.calls.size(), 1u);
  EXPECT_EQ(next.calls[0].second, (std::vector<std::string>{"hire", "stale"}));

  // Again with a late event older than everything: the repair's copy of the newest state goes
  // first, the late item after it.
  held = true;
  syncer_.before = [&](const EmployeeWork&) { held = false; };
  Enqueue("E1", "late", "1790000000");
  pool_.RunOnce();           // fenced again: the late item is pending, a repair behind it
  clock_.AdvanceMs(60'000);  // the new owner claims what stalled past workers' claim_idle_ms
  owner.RunOnce();
  ASSERT_EQ(next.calls.size(), 2u);
  EXPECT_EQ(next.calls[1].second, (std::vector<std::string>{"hire", "late"}));
  EXPECT_EQ(Waiting(), 0);
}

// Fencing in the queue: the instance froze right after its in-process checks (Holds still says
// the lease is ours) and another instance took the partition meanwhile, so the lease token in
// Redis moved on. The pool's outcome writes carry its token (queue::Fence): the queue refuses
// them, the pass stops like a lost lease, and nothing is written -- neither the retry the sync
// asked for, nor any other employee's sync or acknowledgement.
TEST_F(WorkerPoolTest, AnOutcomeWriteAfterTheTokenMovedOnIsFencedAndEndsThePass) {
  const int p = queue::PartitionOf("hr", "E1", kPartitions);
  const std::string other = SamePartition("E1", 1).back();
  auto key = [](int q) { return "scimsync:lease:{p" + std::to_string(q) + "}:token"; };
  for (int q = 0; q < kPartitions; ++q) queue_->SetFenceValue(key(q), 7);
  pool_.SetFencing([this](int q) -> int64_t { return owned_.count(q) ? 7 : 0; },
                   [](int, int64_t token) { return token == 7; }, key);
  std::vector<std::string> lines;
  static std::vector<std::string>* sink = nullptr;
  sink = &lines;
  log::SetSink([](std::string_view line) { sink->emplace_back(line); });

  // The retry E1's sync asks for would put its item in the retry set after the new owner has
  // claimed, synced and acknowledged it; it would then be synced again after newer state.
  syncer_.answers["E1"].push_back(Retry(1000));
  syncer_.before = [&](const EmployeeWork& work) {
    if (work.employee_key == "E1") queue_->SetFenceValue(key(p), 8);
  };
  Enqueue("E1", "a");
  Enqueue(other, "b");
  EXPECT_EQ(pool_.RunOnce(), 0);
  log::SetSink(nullptr);
  EXPECT_EQ(*queue_->RetryDepth(p), 0) << "the stale retry was recorded";
  EXPECT_EQ(*queue_->Depth(p), 2) << "both items stay pending for the new owner";
  ASSERT_EQ(syncer_.calls.size(), 1u) << "the pass went on after a fenced write";
  bool warned = false;
  for (const auto& line : lines) {
    if (line.find("a queue write was fenced: this instance lost the partition's lease") !=
            std::string::npos &&
        line.find("\"warn\"") != std::string::npos) {
      warned = true;
    }
  }
  EXPECT_TRUE(warned) << "no warning that the write was fenced";

  // Converged employees' acknowledgements are fenced the same way: nothing is acknowledged and
  // no applied state is remembered under the old token.
  syncer_.before = nullptr;
  pool_.RunOnce();  // loads the partition again: claims both items, syncs both, acks fenced
  EXPECT_EQ(syncer_.calls.size(), 3u);
  EXPECT_EQ(*queue_->Depth(p), 2) << "items acknowledged under an old token";
  EXPECT_EQ(queue_->LastApplied(p, "hr", "", "E1").error().kind, ErrorKind::kNotFound);

  // Under the current token (the lease taken again), the same pass records its outcomes.
  queue_->SetFenceValue(key(p), 7);
  clock_.AdvanceMs(60'000);
  pool_.RunOnce();
  EXPECT_EQ(Waiting(), 0);
}

// Against a real Redis: a dead instance left 5,000 items pending in one partition (a crash
// during a backlog). Taking the partition over claims every one of them once, page by page,
// syncs each, and leaves nothing behind; it used to claim the same first 500 forever.
TEST(WorkerPoolRedisTest, APartitionWithFiveThousandPendingItemsIsTakenOver) {
  scimsync::testing::RedisServer server;
  ASSERT_TRUE(server.Start());
  FakeClock clock(1'800'000'000'000);
  auto q = queue::NewRedisQueue(scimsync::testing::RedisOptionsFor(server.url(), 1), "", clock);
  constexpr int kItems = 5000;
  for (int b = 0; b < kItems / 1000; ++b) {
    std::vector<queue::Item> batch;
    for (int i = 0; i < 1000; ++i) {
      const int n = b * 1000 + i;
      batch.push_back(scimsync::testing::MinimalItem("E" + std::to_string(n % 700),
                                                     "evt-" + std::to_string(n)));
    }
    ASSERT_TRUE(q->EnqueueBatch(batch, 0).ok());
  }
  ASSERT_EQ(q->Read(0, "dead-instance", kItems, 0)->size(), static_cast<size_t>(kItems));

  ScriptedSyncer syncer;
  WorkerOptions o;
  o.threads = 1;
  o.consumer = "new-instance";
  WorkerPool pool(
      o, *q, syncer, clock, [](int) { return true; }, [](int) {});
  auto done = std::async(std::launch::async, [&] {
    for (int i = 0; i < 50 && *q->Depth(0) > 0; ++i) pool.RunOnce();
  });
  if (done.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "taking over a partition with 5,000 pending items never finishes";
    std::_Exit(1);  // the pass loops forever; nothing else can end it
  }
  EXPECT_EQ(*q->Depth(0), 0);
  std::map<std::string, int> synced;
  for (const auto& [employee, ids] : syncer.calls) {
    for (const auto& id : ids) ++synced[id];
  }
  EXPECT_EQ(synced.size(), static_cast<size_t>(kItems));
  for (const auto& [id, n] : synced) {
    if (n != 1) {
      ADD_FAILURE() << id << " synced " << n << " times";
      break;
    }
  }
}

// The gap of issue 14 item 1, end to end through the real Leases and the Redis queue's scripts:
// instance A took the partition (token 1) and froze after its last in-process check, with a
// sync that will ask for a retry. Meanwhile its lease ran out in Redis and B took the
// partition (token 2), claimed the item, synced and acknowledged it. A thaws and records the
// retry: it used to put the item back into the retry set, to be synced again after whatever
// newer state came since. Redis refuses it now, and nothing comes back.
TEST(WorkerPoolRedisTest, AFrozenInstancesRetryAfterTheNewOwnerAcknowledgedIsRefusedByRedis) {
  scimsync::testing::RedisServer server;
  ASSERT_TRUE(server.Start());
  FakeClock clock(1'800'000'000'000);
  const config::RedisOptions redis = scimsync::testing::RedisOptionsFor(server.url(), 1);
  auto q = queue::NewRedisQueue(redis, "", clock);
  redis::Pool connections(redis, "");
  auto lease_options = [](const std::string& id) {
    LeaseOptions o;
    o.partitions = 1;
    o.instance_id = id;
    return o;
  };
  Leases a(connections, lease_options("a"), clock);
  Leases b(connections, lease_options("b"), clock);
  WorkerOptions o;
  o.threads = 1;
  auto pool_of = [&](Leases& leases, Syncer& syncer, const std::string& consumer) {
    WorkerOptions mine = o;
    mine.consumer = consumer;
    auto pool = std::make_unique<WorkerPool>(
        mine, *q, syncer, clock, [&leases](int p) { return leases.Owns(p); },
        [&leases](int p) { leases.ReleaseIfMarked(p); });
    pool->SetFencing([&leases](int p) { return leases.Token(p); },
                     [&leases](int p, int64_t t) { return leases.Holds(p, t); },
                     [&leases](int p) { return leases.TokenKey(p); });
    return pool;
  };
  ScriptedSyncer syncer_a;
  ScriptedSyncer syncer_b;
  auto pool_a = pool_of(a, syncer_a, "a");
  auto pool_b = pool_of(b, syncer_b, "b");

  ASSERT_TRUE(a.Heartbeat().ok());
  ASSERT_EQ(a.Token(0), 1);
  ASSERT_TRUE(q->EnqueueBatch({scimsync::testing::MinimalItem("E1", "hire")}, 0).ok());
  syncer_a.answers["E1"].push_back(Retry(1000));
  syncer_a.before = [&](const EmployeeWork&) {
    // A is frozen here. Its lease runs out in Redis; B takes the partition and, after the
    // takeover grace, syncs and acknowledges the pending item.
    server.Cli({"DEL", redis::keys::workers::Lease("scimsync", 0)});
    ASSERT_TRUE(b.Heartbeat().ok());
    clock.AdvanceMs(3000);
    ASSERT_EQ(b.Token(0), 2);
    pool_b->RunOnce();
    ASSERT_EQ(syncer_b.calls.size(), 1u);
    ASSERT_EQ(*q->Depth(0), 0) << "B did not acknowledge the item";
  };
  pool_a->RunOnce();  // A thaws: its in-process check still passes, Redis refuses the retry
  ASSERT_EQ(syncer_a.calls.size(), 1u);
  EXPECT_EQ(*q->RetryDepth(0), 0) << "A's stale retry put the item back";
  EXPECT_EQ(*q->Depth(0), 0);
  clock.AdvanceMs(60'000);
  ASSERT_TRUE(b.Heartbeat().ok());
  pool_b->RunOnce();
  EXPECT_EQ(syncer_b.calls.size(), 1u) << "the item was synced again after its newer state";
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
}  // namespace scimsync::workers
