// The durable queue between webhook ingest and the workers: Redis Streams, one stream per
// partition, partition = hash(profile, employee key) mod partitions, so one employee's items
// always land in one stream, in arrival order.
//
// Redis keys (P = redis.key_prefix, N = partition number): P:{pN}:stream (new items, consumer
// group "workers"), P:{pN}:retry, :retry:items and :retry:takes (the retry set), P:{pN}:dedup:*,
// P:{pN}:applied, P:dlq and P:wait-fence. redis/keys.h names them, with what each holds; only
// this library reads or writes them, everyone else goes through Queue.
//
// Each partition's keys share the hash tag {pN}, so Redis Cluster would keep them in one slot.
// Redis Cluster note: EnqueueBatch writes every partition of a request in ONE script, and
// DeadLetter/ReplayDeadLetter move an item between a partition and P:dlq in one script. Redis
// only runs a script over keys of one slot in a cluster, so these guarantees need a single Redis
// node (standalone, or a primary with replicas/Sentinel) -- which is what scimsync supports.
//
// Life of an item: EnqueueBatch adds it to its partition's stream. A worker gets it from Read
// (or, after a worker crash, from ClaimStale), then ends it with exactly one of Ack, RetryLater or
// DeadLetter. RetryLater moves it to the partition's retry set; TakeDue hands it out again when
// due, under a lease: an item taken but not ended within lease_ms becomes due again, so a
// crashed worker loses nothing there either. Ack/RetryLater/DeadLetter accept items from both
// sources (Item::from_retry tells which).
//
// Delivery is at-least-once: a worker that stalls past min_idle_ms/lease_ms can see its item
// handed to another worker. Every job converges state, so a second run is harmless. A worker
// that stalled must not record a stale outcome after the new one, though: the outcome writes
// take a Fence (the workers' lease token), which Redis checks in the same script.
//
// Thread-safety: a Queue may be shared by threads; the Redis implementation keeps a small pool
// of connections and uses one per call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/config.h"
#include "scimsync/result.h"

namespace scimsync::queue {

// One employee event accepted from a webhook.
struct Item {
  std::string profile;       // profile name (URL segment)
  std::string tenant;        // optional tenant URL segment; empty when absent
  std::string employee_key;  // the HRIS employee id
  std::string dedup_id;      // unique per event within the profile's dedup window
  std::string event_type;    // as the HRIS named it ("employee.updated")
  std::string occurred_at;   // as sent (ISO-8601 or a version); may be empty
  std::string trace_id;      // follows the item from webhook to every SCIM call
  std::string payload;       // the item's JSON, compact
  int64_t received_at_ms = 0;

  // Set by the queue when an item is read back.
  std::string entry_id;  // stream entry id; also the item's id in the retry set
  int partition = -1;
  int attempts = 0;         // how many times a worker has tried it (RetryLater adds one)
  bool from_retry = false;  // handed out by TakeDue rather than Read/ClaimStale
  // How many times the stream has handed this entry to a worker: 1 from Read, one more for each
  // ClaimStalePage; for a retry-set item, how often TakeDue handed it out since its last
  // outcome (RetryLater, Park). An item that keeps coming back without an outcome (its worker
  // crashed or stalled each time) shows here.
  int deliveries = 0;
  std::string last_error;  // the reason given to the last RetryLater; empty before
};

struct EnqueueOutcome {
  int accepted = 0;
  int duplicates = 0;
};

// A dead-lettered item with why it died. `id` is its entry id in the P:dlq stream.
struct DeadLetterEntry {
  std::string id;
  Item item;               // as it was when it died (attempts, entry_id and partition of that time)
  std::string error_kind;  // ErrorKindName() of the final error ("permanent", "conflict"...)
  std::string reason;
  std::string last_request;   // the last SCIM request sent for it (never with credentials)
  std::string last_response;  // and its answer
  int64_t dead_at_ms = 0;
};

// Which partition an employee's items live in. Stable across versions and instances: FNV-1a 64
// over profile, a 0 byte, employee key.
int PartitionOf(const std::string& profile, const std::string& employee_key, int partitions);

// Entries pushed onto capped Redis lists together with a pass's acknowledgements (AckPass): the
// employee history (workers/history.h). Each list gets its entries (oldest first, so the list reads
// newest first), is trimmed to max_entries and expires ttl_s after this write.
struct CappedLists {
  struct Push {
    std::string key;
    std::vector<std::string> entries;  // oldest first; at most max_entries are worth sending
  };
  std::vector<Push> pushes;
  int max_entries = 0;
  int64_t ttl_s = 0;
};

// A condition on a write that records an item's outcome (Ack, AckPass, RetryLater, Park,
// DeadLetter): it happens only while the Redis string at `key` holds `value`, checked in the
// same script, first. Otherwise nothing is written and the call fails with an error IsFenced()
// recognises. The queue does not know what the key means: the workers pass their partition
// lease's fencing token key and the token they took the items under, so an instance that lost
// the lease (frozen past it) cannot record a stale outcome after the new owner has recorded its
// own. The key must share the partition's hash tag {pN}. An empty key: no condition.
struct Fence {
  std::string key;
  int64_t value = 0;
  bool active() const { return !key.empty(); }
};

// A write refused by its Fence: "fenced: ..." with kind kTransient (nothing was written; the
// items are where they were, and whoever holds the fence now ends them).
Error FencedError(const Fence& fence, const std::string& found);
bool IsFenced(const Error& error);

// The field of an employee in P:{pN}:applied: profile, tenant and employee key, 0x1f apart.
std::string AppliedField(const std::string& profile, const std::string& tenant,
                         const std::string& employee_key);
// The consumer group every partition's stream has.
inline constexpr const char* kConsumerGroup = "workers";
// Read never blocks longer than this, so that a worker notices shutdown, partition hand-over and
// due retries in time; redis.command_timeout_ms must be longer.
inline constexpr int kMaxBlockMs = 1000;

class Queue {
 public:
  virtual ~Queue() = default;

  // Writes every item in one round trip, atomically: all or none. An item whose
  // (profile, dedup_id) was accepted within dedup_window_s is counted as a duplicate and not
  // written again (also when both are in the same batch); dedup_window_s <= 0 turns dedup off.
  // Redis unreachable or refusing writes: kTransient (the caller answers 503).
  //
  // Thread-safe. The Redis queue commits concurrent calls as a group: calls that arrive while a
  // write is in flight are written together by the next one script (up to 1,000 items), each
  // still all-or-none, with its own window and its own outcome. A failed group write fails every
  // call in it.
  //
  // With redis.wait_replicas N > 0 the write is followed by WAIT N redis.wait_timeout_ms, and
  // fewer than N replicas confirming in time is kTransient too. The trade-off: a success then
  // means the items survive the primary's death (a failover promotes a replica that has them),
  // at the price of a replication round trip per call, and of refusing webhooks while fewer than
  // N replicas are in sync. A refused batch may still be on the primary and be worked on; the
  // sender's retry is then counted as a duplicate, and is confirmed only once its originals are
  // on N replicas too. WAIT does not make Redis strongly consistent: Sentinel promotes the
  // replica with the most data among equal replica-priority ones, so a confirmed write is lost
  // only if every replica that confirmed it is lost or passed over as well.
  virtual Result<EnqueueOutcome> EnqueueBatch(const std::vector<Item>& items,
                                              int64_t dedup_window_s) = 0;

  // One EnqueueBatch call's arguments, for EnqueueBatches.
  struct Batch {
    const std::vector<Item>* items = nullptr;
    int64_t dedup_window_s = 0;
  };
  // As many EnqueueBatch calls at once, each all-or-none with its own outcome, in order. The HTTP
  // listener's event loop answers every webhook it has read with one call, so the webhooks share
  // a write (the Redis queue puts them in one group commit) without a thread each.
  virtual std::vector<Result<EnqueueOutcome>> EnqueueBatches(const std::vector<Batch>& batches) {
    std::vector<Result<EnqueueOutcome>> out;
    out.reserve(batches.size());
    for (const Batch& b : batches) out.push_back(EnqueueBatch(*b.items, b.dedup_window_s));
    return out;
  }

  // Round trip to Redis: ok when reachable and answering.
  virtual Status Ping() = 0;

  // --- Worker side. ---

  // Up to `max` new items of one partition for `consumer`, in stream order, blocking up to
  // block_ms (capped at kMaxBlockMs; <= 0: no blocking) when there are none. Creates the consumer
  // group when it is missing (from the stream's start, so nothing enqueued before is skipped).
  // Use a stable consumer name per worker slot ("host:3"): Redis keeps an entry per name.
  virtual Result<std::vector<Item>> Read(int partition, const std::string& consumer, int max,
                                         int block_ms) = 0;
  // The item is done (its outcome is recorded): remove it from the stream or the retry set.
  // `fence`, here and on the other outcome writes: see Fence.
  virtual Status Ack(const Item& item, const Fence& fence = {}) = 0;
  // Ack for several items, in one round trip per partition where the implementation can: a
  // coalesced burst of one employee ends together. Stops at the first failure; items not
  // removed stay pending and are handed out again.
  virtual Status AckMany(const std::vector<Item>& items) {
    for (const Item& item : items) {
      if (Status s = Ack(item); !s) return s;
    }
    return {};
  }
  // AckMany of `items`, and in the same script remember each of `applied` (items whose sync
  // applied their employee's state) unless a newer one of that employee is remembered already
  // (greater occurred_at, compared as numbers when both are integers, else as strings; without
  // one, the later wins) in P:{pN}:applied: the state a repair item re-applies after a write
  // from an instance that had lost its lease (LastApplied). One entry per employee, like the
  // applied versions. Pass one item per employee per call to keep the script small.
  virtual Status AckApplied(const std::vector<Item>& items, const std::vector<Item>& applied) {
    (void)applied;
    return AckMany(items);
  }
  // AckApplied of one partition's items (a batch of a worker's pass; of `items` only entry_id,
  // partition and from_retry are read), and in the same script -- one round trip -- the pushes
  // of `lists`. The lists are written after the
  // acknowledgements and best effort: a list Redis refuses (out of memory) is logged and
  // skipped, the acknowledgements stand. A queue without Redis lists (the memory queue) only
  // acknowledges. A refused `fence` writes nothing, lists included. `lists` is taken by value:
  // the Redis queue moves the history's entries into its command.
  virtual Status AckPass(int partition, const std::vector<Item>& items,
                         const std::vector<Item>& applied,
                         CappedLists lists,  // NOLINT(performance-unnecessary-value-param)
                         const Fence& fence = {}) {
    (void)partition, (void)lists;
    if (fence.active()) return Error::Invalid("this queue cannot fence its writes");
    return AckApplied(items, applied);
  }
  // The item AckApplied remembered for an employee; kNotFound when none. `scimsyncd sync` sends
  // it again for a profile whose payload carries the record.
  virtual Result<Item> LastApplied(int partition, const std::string& profile,
                                   const std::string& tenant, const std::string& employee_key) {
    (void)partition, (void)profile, (void)tenant, (void)employee_key;
    return Error::NotFound("this queue remembers no applied items");
  }
  // Atomically: store the item in the partition's retry set, due at due_ms, with attempts + 1 and
  // last_error = reason, and remove it from where it came from.
  virtual Status RetryLater(const Item& item, int64_t due_ms, const std::string& reason,
                            const Fence& fence = {}) = 0;
  // Like RetryLater without counting an attempt: for items that wait for a reason other than a
  // failure (behind an earlier item of the same employee, a deferred effective date, the
  // mass-suspension guard).
  virtual Status Park(const Item& item, int64_t due_ms, const std::string& reason,
                      const Fence& fence = {}) = 0;
  // Every retry-set item of a partition with its due time, earliest first: a worker taking over
  // a partition learns which employees have items waiting. An item handed out by TakeDue and not
  // ended since (leased) has item.deliveries > 0, and its due_ms is its lease's end.
  struct Scheduled {
    Item item;
    int64_t due_ms = 0;
  };
  virtual Result<std::vector<Scheduled>> ListRetries(int partition) = 0;
  // Up to `max` retry-set items of a partition due at or before now_ms, earliest due first. They
  // stay in the set with their due time moved to now_ms + lease_ms: end each with Ack,
  // RetryLater or DeadLetter before then, or it is handed out again.
  virtual Result<std::vector<Item>> TakeDue(int partition, int64_t now_ms, int max,
                                            int64_t lease_ms) = 0;
  // Atomically: append the item to the dead-letter stream with the reason and the last
  // request/response, and remove it from where it came from.
  virtual Status DeadLetter(const Item& item, const std::string& error_kind,
                            const std::string& reason, const std::string& last_request,
                            const std::string& last_response, const Fence& fence = {}) = 0;
  // One step of a scan over a partition's pending stream items (delivered to a worker that has
  // not ended them: it crashed or stalls): up to `max` of those idle for at least min_idle_ms,
  // from entry id `start` on ("0-0": the oldest), now owned by `consumer`, with their
  // deliveries counted. `next` is where the scan goes on; "0-0" once it has gone over the whole
  // list. Follow it: a scan restarted at "0-0" with min_idle_ms 0 hands out the same first
  // `max` entries forever (XAUTOCLAIM). A page may hold fewer than `max` items before the end.
  struct ClaimPage {
    std::vector<Item> items;
    std::string next = "0-0";
  };
  virtual Result<ClaimPage> ClaimStalePage(int partition, const std::string& consumer,
                                           int64_t min_idle_ms, const std::string& start,
                                           int max) = 0;
  // The first page of such a scan, from the oldest pending item.
  Result<std::vector<Item>> ClaimStale(int partition, const std::string& consumer,
                                       int64_t min_idle_ms, int max) {
    auto page = ClaimStalePage(partition, consumer, min_idle_ms, "0-0", max);
    if (!page) return page.error();
    return std::move(page->items);
  }
  // Items in a partition's stream: new ones plus delivered-but-not-ended ones.
  virtual Result<int64_t> Depth(int partition) = 0;
  // Items in a partition's retry set (waiting or leased).
  virtual Result<int64_t> RetryDepth(int partition) = 0;
  // When the oldest item still in a partition's stream (new or delivered-but-not-ended) was
  // enqueued, in ms since the epoch (its entry id's time), or 0 when the stream is empty: the
  // queue's oldest age for `scimsyncd status` and the metrics.
  virtual Result<int64_t> OldestMs(int partition) = 0;
  // Up to `max` items of a partition's stream (new and delivered-but-not-ended), oldest first,
  // after the entry `after_id` ("" = from the start). Read-only: for `scimsyncd employee`, which
  // pages through a partition looking for one employee's items.
  virtual Result<std::vector<Item>> ListStream(int partition, const std::string& after_id,
                                               int max) = 0;

  // --- Dead letters (`scimsyncd dlq list|show|replay|drop`). ---

  // Up to `max` dead letters, oldest first, after the one with id `after_id` ("" = from the start).
  virtual Result<std::vector<DeadLetterEntry>> ListDeadLetters(const std::string& after_id,
                                                               int max) = 0;
  // kNotFound when there is no dead letter with that id.
  virtual Result<DeadLetterEntry> GetDeadLetter(const std::string& id) = 0;
  // Atomically: remove the dead letter and enqueue its item again (attempts 0, no dedup check) in
  // its partition under the current partition count. Returns the new item. kNotFound when absent.
  virtual Result<Item> ReplayDeadLetter(const std::string& id) = 0;
  // Removes a dead letter for good. kNotFound when absent.
  virtual Status DropDeadLetter(const std::string& id) = 0;
  virtual Result<int64_t> DeadLetterCount() = 0;

  virtual int partitions() const = 0;
};

// Redis implementation. Connects lazily and reconnects after Redis restarts: a call while Redis
// is down fails kTransient within about connect_timeout_ms, and the first call after it is back
// succeeds. `password` is the resolved secret (empty: the URL's password, else no AUTH). Dead
// letters are stamped with `clock` (dead_at_ms; it must outlive the queue); the dedup window runs
// on Redis's clock.
std::unique_ptr<Queue> NewRedisQueue(const config::RedisOptions& options,
                                     const std::string& password);
std::unique_ptr<Queue> NewRedisQueue(const config::RedisOptions& options,
                                     const std::string& password, const Clock& clock);

// In-memory implementation with the same semantics, for unit tests of callers. Entry ids look
// like Redis's ("<ms>-<seq>"); idle times, dedup windows and dead_at_ms follow the given clock.
class MemoryQueue final : public Queue {
 public:
  MemoryQueue(int partitions, const Clock& clock);
  ~MemoryQueue() override;

  // true: every call fails kTransient, like an unreachable Redis, until switched back.
  void set_unavailable(bool unavailable);
  // The value a Fence's key holds, as Redis's string would (a key never set holds nothing, so
  // every fence on it is refused). Tests move it on as another lease owner would (INCR).
  void SetFenceValue(const std::string& key, int64_t value);

  Result<EnqueueOutcome> EnqueueBatch(const std::vector<Item>& items,
                                      int64_t dedup_window_s) override;
  Status Ping() override;
  Result<std::vector<Item>> Read(int partition, const std::string& consumer, int max,
                                 int block_ms) override;
  Status Ack(const Item& item, const Fence& fence = {}) override;
  Status AckApplied(const std::vector<Item>& items, const std::vector<Item>& applied) override;
  Status AckPass(int partition, const std::vector<Item>& items, const std::vector<Item>& applied,
                 CappedLists lists, const Fence& fence = {}) override;
  Result<Item> LastApplied(int partition, const std::string& profile, const std::string& tenant,
                           const std::string& employee_key) override;
  Status RetryLater(const Item& item, int64_t due_ms, const std::string& reason,
                    const Fence& fence = {}) override;
  Status Park(const Item& item, int64_t due_ms, const std::string& reason,
              const Fence& fence = {}) override;
  Result<std::vector<Scheduled>> ListRetries(int partition) override;
  Result<std::vector<Item>> TakeDue(int partition, int64_t now_ms, int max,
                                    int64_t lease_ms) override;
  Status DeadLetter(const Item& item, const std::string& error_kind, const std::string& reason,
                    const std::string& last_request, const std::string& last_response,
                    const Fence& fence = {}) override;
  Result<ClaimPage> ClaimStalePage(int partition, const std::string& consumer, int64_t min_idle_ms,
                                   const std::string& start, int max) override;
  Result<int64_t> Depth(int partition) override;
  Result<int64_t> RetryDepth(int partition) override;
  Result<int64_t> OldestMs(int partition) override;
  Result<std::vector<Item>> ListStream(int partition, const std::string& after_id,
                                       int max) override;
  Result<std::vector<DeadLetterEntry>> ListDeadLetters(const std::string& after_id,
                                                       int max) override;
  Result<DeadLetterEntry> GetDeadLetter(const std::string& id) override;
  Result<Item> ReplayDeadLetter(const std::string& id) override;
  Status DropDeadLetter(const std::string& id) override;
  Result<int64_t> DeadLetterCount() override;
  int partitions() const override;

 private:
  Status Reschedule(const Item& item, int64_t due_ms, const std::string& reason, int attempts,
                    const Fence& fence);
  struct State;
  std::unique_ptr<State> state_;
};

// A MemoryQueue on the system clock. The clock overload keeps a reference: it must outlive the
// queue.
std::unique_ptr<MemoryQueue> NewMemoryQueue(int partitions);
std::unique_ptr<MemoryQueue> NewMemoryQueue(int partitions, const Clock& clock);

}  // namespace scimsync::queue
