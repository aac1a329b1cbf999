// The durable queue between webhook ingest and the workers: Redis Streams, one stream per
// partition, partition = hash(profile, employee key) mod partitions, so one employee's items
// always land in one stream, in arrival order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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
  std::string entry_id;  // stream entry id
  int partition = -1;
  int attempts = 0;  // how many times a worker has tried it
};

struct EnqueueOutcome {
  int accepted = 0;
  int duplicates = 0;
};

// Which partition an employee's items live in. Stable across versions and instances: FNV-1a 64
// over profile, a 0 byte, employee key.
int PartitionOf(const std::string& profile, const std::string& employee_key, int partitions);

class Queue {
 public:
  virtual ~Queue() = default;

  // Writes every item in one round trip, atomically: all or none. An item whose
  // (profile, dedup_id) was accepted within dedup_window_s is counted as a duplicate and not
  // written again. A Redis error is kTransient (the caller answers 503).
  virtual Result<EnqueueOutcome> EnqueueBatch(const std::vector<Item>& items,
                                              int64_t dedup_window_s) = 0;

  // Round trip to Redis: ok when reachable and answering.
  virtual Status Ping() = 0;

  // --- Worker side (see the workers issue for how they are combined). ---

  // Up to `max` new items of one partition for `consumer`, blocking up to block_ms when empty.
  virtual Result<std::vector<Item>> Read(int partition, const std::string& consumer, int max,
                                         int block_ms) = 0;
  // The item is done (its outcome is recorded): remove it from the pending list.
  virtual Status Ack(const Item& item) = 0;
  // Atomically: store the item in the partition's retry set due at due_ms (attempts + 1) and ack
  // it from the stream.
  virtual Status RetryLater(const Item& item, int64_t due_ms, const std::string& reason) = 0;
  // Retry-set items of a partition whose due time is <= now_ms, oldest first, removed from the
  // set atomically as they are returned... see implementation notes in queue/README or .cc.
  virtual Result<std::vector<Item>> TakeDue(int partition, int64_t now_ms, int max) = 0;
  // Atomically: append to the dead-letter stream with the reason and ack from the stream.
  virtual Status DeadLetter(const Item& item, const std::string& error_kind,
                            const std::string& reason, const std::string& last_request,
                            const std::string& last_response) = 0;
  // Pending items of a partition idle for at least min_idle_ms, re-owned by `consumer`
  // (a crashed worker's in-flight items).
  virtual Result<std::vector<Item>> ClaimStale(int partition, const std::string& consumer,
                                               int64_t min_idle_ms, int max) = 0;
  // Stream length (not yet acknowledged entries included) of a partition.
  virtual Result<int64_t> Depth(int partition) = 0;
};

// Redis implementation. Connects lazily and reconnects after Redis restarts; `password` is the
// resolved secret (empty: no AUTH).
std::unique_ptr<Queue> NewRedisQueue(const config::RedisOptions& options,
                                     const std::string& password);

// In-memory implementation with the same semantics, for unit tests of callers. `fail` switches
// every call to a kTransient error, like an unreachable Redis.
class MemoryQueue;
std::unique_ptr<MemoryQueue> NewMemoryQueue(int partitions);

}  // namespace scimsync::queue
