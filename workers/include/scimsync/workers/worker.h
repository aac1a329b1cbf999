// Workers: take items from the partitions this instance owns and converge each employee, one
// employee at a time and in arrival order.
//
//   * A partition is worked by one thread of one instance (Leases), so one employee's items are
//     never applied concurrently, also across instances.
//   * Each batch is grouped by employee; a group is one sync (a burst coalesces).
//   * While an employee has an item waiting for a retry, their newer items are parked behind it
//     (same due time), so nothing overtakes; other employees go on.
//   * Every outcome is recorded in Redis (ack, retry, park, dead letter) before the next item
//     of that employee is looked at; after a crash, pending items are claimed again and converge.
//   * An auth error pauses every worker (nothing is consumed) until a probe succeeds.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/queue/queue.h"
#include "scimsync/result.h"
#include "scimsync/workers/coordination.h"

namespace scimsync::workers {

// One employee's items of one batch, oldest first.
struct EmployeeWork {
  int partition = -1;
  std::string profile;
  std::string tenant;
  std::string employee_key;
  std::vector<queue::Item> items;
  // Ok while this instance still holds the lease it took the items under; an error once it
  // lost it (its lease ran out while it was frozen, or another instance took the partition).
  // The syncer checks it immediately before each SCIM write and sends nothing after an error.
  std::function<Status()> fence;
  // The newest item applied for this employee (Queue::LastApplied), nullopt when none is
  // remembered. Asked only when a late rehire's record is older than the attributes applied
  // since: the user it reactivates (or creates) gets the newest record, not the rehire's.
  // Unset: the rehire's record is used.
  std::function<Result<std::optional<queue::Item>>()> last_applied;
  // The earliest date (ms) of this employee's items held in the retry set until their effective
  // date and not in `items` (an earlier pass deferred them); 0 when none. The plan for `items`
  // holds only until then: a sync that outlasts it stops before its next write and is planned
  // again, so an update never lands after a termination's date ahead of the termination.
  int64_t held_due_ms = 0;
};

struct SyncResult {
  enum class Kind {
    kDone,        // ack every item
    kRetry,       // RetryLater every item after delay_ms
    kDeadLetter,  // dead-letter every item
    kPause,       // the API key was refused: park the items, pause all workers
    kHold,        // the mass-suspension guard holds it: park the items, look again later
  };
  Kind kind = Kind::kDone;
  int64_t delay_ms = 0;
  // kRetry that was no failure (waiting for a rate-limit slot): the attempt is not counted.
  bool count_attempt = true;
  // How long the sync waited for rate-limit slots (scim::Outcome::rate_wait_ms).
  int64_t rate_wait_ms = 0;
  // Items (indexes into EmployeeWork::items) whose action takes effect later: parked until
  // the given time (ms), whatever happens to the rest.
  std::vector<std::pair<size_t, int64_t>> deferred;
  // Of `deferred`, the items this sync also applied (fetch.recheck_at: the record read back dates
  // a change ahead): their outcome is this sync's, and they are planned again at their time.
  std::vector<size_t> rechecks;

  // For logs, dead letters and metrics.
  // sync, suspend, reactivate, delete; ignore (nothing to do); plan (fetching or mapping the
  // HRIS record failed).
  std::string action;
  // Converged: suspended (active=false landed), else scim::ChangeName (none, created, updated,
  // deleted, absent). Not converged: ignored, dropped (older than what was applied), held
  // (guard), retry, rate_limited, paused, dead_letter. The history records deferred for an item
  // parked until its effective date.
  std::string result;
  std::string reason;
  std::string error_kind;
  std::string last_request;
  std::string last_response;
  int http_status = 0;
  std::string jumpcloud_id;
};

// Turns one employee's items into JumpCloud state. `thread` is the calling worker's index: an
// implementation keeps per-thread resources (connections) without locks.
class Syncer {
 public:
  virtual ~Syncer() = default;
  virtual SyncResult Sync(int thread, const EmployeeWork& work) = 0;
  // While paused: does the target accept the credentials now? ok = resume.
  virtual Status Probe(int thread) = 0;
  // A worker's pass over a partition has ended; its converged items are acknowledged right
  // after. Writes what the pass's syncs left to write together (the applied versions).
  virtual Status EndPass(int /*thread*/) { return {}; }
  // What the pass's syncs left to write with its acknowledgements (the employee history): the
  // pool takes it before EndPass and writes it in the pass's ack script, one round trip. What
  // is not taken, EndPass writes on its own.
  virtual queue::CappedLists TakeRecords(int /*thread*/) { return {}; }
};

struct WorkerOptions {
  int threads = 4;
  // Added to each worker thread's niceness when it starts (workers.nice).
  int nice = 0;
  std::string consumer;  // stream consumer name: the instance id
  // Stream items read per pass: large, so that under a backlog an employee's burst falls into
  // one batch and coalesces into one sync instead of one sync per event (bench/: 64 read one
  // event per employee per batch with 2,000 employees on 8 partitions).
  int batch = 1000;
  // A pass writes its converged items' acknowledgements (with their applied versions, history
  // entries and newest applied state) every this many items, and at its end. Smaller: a shorter
  // Lua script, so webhooks' writes wait less behind it, and less of the pass held in memory at
  // once; larger: fewer round trips. 128 items is about 0.3 ms of Redis time.
  int ack_batch = 128;
  // A pass whose syncs have waited this long for rate-limit slots since its last read (the rate
  // limit is the bottleneck) reads the partition's newer items before its next employee: they
  // join the syncs of employees it has not reached yet, so a burst costs one request instead of
  // one per pass. Employees already synced in the pass are synced again at its end. A pass that
  // does not wait for the limiter (a backlog drained as fast as the CPU goes) reads nothing
  // more, and holds no more memory than its read.
  int64_t read_ahead_after_ms = 1000;
  // Reading ahead stops once a pass holds this many items (memory: about 1 KB each).
  int max_pass_items = 4000;
  // Retry-set items taken per pass: large, so one employee's waiting items come back together.
  int due_batch = 1000;
  // Stream items delivered but not ended for this long are claimed again (their worker died).
  int64_t claim_idle_ms = 60000;
  // An item handed out of the retry set comes back after this long if its worker died.
  int64_t retry_lease_ms = 60000;
  // How often a paused pool probes the target, and how often it logs that it is paused.
  int64_t probe_interval_ms = 5000;
  int64_t pause_log_interval_ms = 60000;
  // Held suspensions are looked at again this often.
  int64_t hold_recheck_ms = 15000;
  // Idle polling: a worker that found nothing sleeps this long at most before looking again.
  int64_t idle_sleep_ms = 50;
  // A stream item handed out more than this many times without an outcome (every worker that
  // took it crashed or stalled: a poison item) is dead-lettered instead of synced again, so it
  // cannot crash the fleet forever. 0: no limit (workers.max_deliveries).
  int max_deliveries = 10;
};

// Called for each item outcome: logs and metrics hang off it.
using OutcomeHook = std::function<void(const EmployeeWork&, const queue::Item&, const SyncResult&,
                                       int64_t latency_ms)>;

class WorkerPool {
 public:
  // Every reference must outlive the pool. `owns` says whether this instance may work on a
  // partition now; `release_if_marked` is called between batches (Leases' methods in the daemon,
  // "own everything" in unit tests).
  WorkerPool(WorkerOptions options, queue::Queue& queue, Syncer& syncer, const Clock& clock,
             std::function<bool(int)> owns, std::function<void(int)> release_if_marked);
  ~WorkerPool();

  void Start();
  // Stops taking items and waits up to drain_ms for in-flight syncs. Returns false when some
  // were still running (they stay pending in Redis and are claimed after a restart).
  bool Stop(int64_t drain_ms);

  // One pass over every owned partition on the calling thread (unit tests drive the pool with
  // this instead of Start()). Returns the number of items ended.
  int RunOnce(int thread = 0);

  void SetOutcomeHook(OutcomeHook hook) { hook_ = std::move(hook); }
  // Called when the pool pauses or resumes (reason empty on resume).
  void SetPauseHook(std::function<void(const std::string&)> hook) { pause_hook_ = std::move(hook); }
  // Called by each worker thread once per loop iteration (the systemd watchdog's heartbeat).
  void SetIterationHook(std::function<void(int)> hook) { iteration_hook_ = std::move(hook); }
  // Fencing (Leases::Token, Leases::Holds and Leases::TokenKey in the daemon): `token` gives
  // the lease's fencing token of an owned partition (0: not owned); `holds` says whether the
  // lease with that token is still held. Ownership is checked before each employee's sync and
  // before each SCIM write (EmployeeWork::fence). `token_key` names the Redis key that holds a
  // partition's current token: every outcome write (ack, retry, park, dead letter) is fenced by
  // it in Redis (queue::Fence), so a write after the lease was lost changes nothing; a fenced
  // write ends the pass like a lost lease. Unset: `owns` alone, with token 1, and no fence in
  // Redis (unset token_key alone: no fence in Redis).
  void SetFencing(std::function<int64_t(int)> token, std::function<bool(int, int64_t)> holds,
                  std::function<std::string(int)> token_key = {}) {
    token_ = std::move(token);
    holds_ = std::move(holds);
    token_key_ = std::move(token_key);
  }
  // A sync that ended after its lease was lost may have written after the new owner did: the
  // pool then enqueues a repair item for the employee (event type kRepairEvent) behind their
  // newest one, and the new owner converges them again from the newest state applied.
  static constexpr const char* kRepairEvent = "scimsync.repair";

  bool paused() const { return paused_.load(); }
  // After SIGHUP re-read the key: probe at once instead of waiting for the interval.
  void ProbeSoon() { next_probe_ms_ = 0; }
  // Counters for status and watchdog: batches done by each thread (progress).
  uint64_t progress(int thread) const;

 private:
  struct PartitionState {
    bool loaded = false;
    // Taking the partition over: its pending items are being claimed page by page, from
    // claim_cursor on; nothing new is read until then.
    bool claiming = false;
    std::string claim_cursor = "0-0";
    // The periodic scan for items stalled past claim_idle_ms goes on from here.
    std::string idle_cursor = "0-0";
    int64_t token = 0;  // the fencing token of the lease the state was loaded under
    // employee -> (entry id -> due) of their items in the retry set. An employee with entries
    // here that are not in the batch at hand must wait for them: nothing overtakes.
    std::map<std::string, std::map<std::string, int64_t>> waiting;
    // employee -> (entry id -> effective date) of their items held in the retry set until their
    // date. They hold nothing back before it (the employee is still employed); once it has
    // passed, newer items wait for them, and a sync is told the date (held_due_ms).
    std::map<std::string, std::map<std::string, int64_t>> held;
    int64_t next_claim_ms = 0;
  };

  void Loop(int thread);
  int Step(int thread, int partition);
  int Process(int thread, int partition, std::vector<queue::Item> items);
  void Pause(const std::string& reason);
  bool MaybeResume(int thread);

  WorkerOptions options_;
  queue::Queue& queue_;
  Syncer& syncer_;
  const Clock& clock_;
  std::function<bool(int)> owns_;
  std::function<void(int)> release_if_marked_;
  OutcomeHook hook_;
  std::function<void(const std::string&)> pause_hook_;
  std::function<void(int)> iteration_hook_;
  std::function<int64_t(int)> token_;
  std::function<bool(int, int64_t)> holds_;
  std::function<std::string(int)> token_key_;
  int64_t TokenOf(int partition) const;
  bool Holds(int partition, int64_t token) const;
  // The Redis-side fence of the outcome writes made under `token`; none without token_key_.
  queue::Fence FenceOf(int partition, int64_t token) const;
  void Repair(const EmployeeWork& work);
  // Replaces a repair item by the newest state applied for its employee. False: the item is
  // dealt with (acknowledged: nothing to repair; or left pending after an error).
  bool ResolveRepair(int partition, queue::Item* item);

  std::vector<PartitionState> partitions_;  // index = partition; touched by its thread only
  std::vector<std::thread> threads_;
  std::unique_ptr<std::atomic<uint64_t>[]> progress_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> paused_{false};
  std::atomic<int> busy_{0};
  std::atomic<int64_t> next_probe_ms_{0};
  std::atomic<int64_t> next_pause_log_ms_{0};
  std::mutex pause_mu_;
  std::string pause_reason_;
  std::mutex wake_mu_;
  std::condition_variable wake_;
};

// "<profile>/<tenant>" or "<profile>": the identity scope (link table namespace).
std::string ScopeOf(const std::string& profile, const std::string& tenant);

// Orders stream entry ids ("1700000000000-12") numerically.
bool EntryIdLess(const std::string& a, const std::string& b);

}  // namespace scimsync::workers
