// Per-employee outcome history: what the workers did with each of an employee's items, kept in
// Redis so `scimsyncd employee` and `scimsyncd sync` can answer "what happened to Alice?" from
// any machine, after restarts and log rotation.
//
// Layout: one Redis list per employee, "<key_prefix>:history:<scope>:<employee>" (scope as in the
// link table: "profile" or "profile/tenant"), newest entry first, each entry one compact JSON
// object. Every write is LPUSH, LTRIM to max_entries once the list is full, and EXPIRE max_age,
// so an employee's list never holds more than max_entries entries and disappears max_age after
// their last outcome; entries older than max_age in a list that is still written to are not
// shown.
//
// Cost: an entry is 200-400 bytes of JSON (longer with a long reason, which is cut at 300
// bytes), so 50 entries are 10-20 KB per employee who had 50 outcomes in 90 days; most
// employees have a handful. docs/operations.md has the measured figure.
//
// Writes are best effort: the outcomes of a worker's pass are written when the pass ends, in the
// script that acknowledges its items (Queue::AckPass: one round trip per pass, and the history
// says "done" exactly for what was acknowledged); if Redis refuses them, a warning is logged and
// the entries are lost (the items' own outcome -- ack, retry, dead letter -- stands).
//
// The newest item applied for an employee (what `scimsyncd sync` sends again for a profile whose
// payload carries the record) is not kept here: it is the queue's applied item
// (Queue::LastApplied), the same one a repair after a fenced write re-applies.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/config.h"
#include "scimsync/result.h"
#include "scimsync/workers/worker.h"

namespace scimsync::redis {
class Pool;
}

namespace scimsync::workers {

// One recorded outcome of one item.
struct OutcomeRecord {
  int64_t at_ms = 0;
  std::string trace_id;
  std::string entry_id;  // the item's stream entry id
  std::string event_type;
  std::string occurred_at;
  int attempt = 0;      // 1 on the first try
  std::string outcome;  // what the queue did: done, retry, waiting, dead_letter, paused, held,
                        // deferred
  std::string action;   // sync, suspend, reactivate, delete, ignore
  std::string result;   // created, updated, unchanged, suspended..., ignored, retry, dead_letter
  int http_status = 0;
  std::string reason;  // why it was not applied (or what was applied); may be empty
  std::string jumpcloud_id;
  std::string request;  // the failed request's line ("PATCH /Users/..."); no body, no headers
};

std::string OutcomeToJson(const OutcomeRecord& r);
Result<OutcomeRecord> OutcomeFromJson(const std::string& json);

// The Redis key of one employee's history. The only place the layout is spelled.
std::string HistoryKey(const std::string& key_prefix, const std::string& profile,
                       const std::string& tenant, const std::string& employee);

// The records a SyncResult means for each of the work's items (deferred items get "deferred").
std::vector<OutcomeRecord> OutcomesOf(const EmployeeWork& work, const SyncResult& result,
                                      int64_t now_ms);

class History {
 public:
  // `pool` must outlive the history; thread-safe.
  History(redis::Pool& pool, std::string key_prefix, config::HistoryOptions options);

  struct Write {
    std::string key;                     // HistoryKey(...)
    std::vector<OutcomeRecord> records;  // oldest first
  };
  // All writes in one pipelined round trip. No-op when max_entries is 0.
  Status Append(const std::vector<Write>& writes);
  // The newest `max` records of an employee not older than max_age, oldest first.
  Result<std::vector<OutcomeRecord>> Read(const std::string& profile, const std::string& tenant,
                                          const std::string& employee, int max, int64_t now_ms);

  const config::HistoryOptions& options() const { return options_; }
  const std::string& key_prefix() const { return prefix_; }

 private:
  redis::Pool& pool_;
  std::string prefix_;
  config::HistoryOptions options_;
};

// A Syncer that records every outcome of `inner` in `history`: kept per worker thread during a
// pass and handed to the worker pool when the pass ends (TakeRecords), which writes them in the
// pass's ack script; what the pool does not take is written by EndPass. The daemon hands the
// pool this Syncer. References must outlive it.
std::unique_ptr<Syncer> NewRecordingSyncer(Syncer& inner, History& history, const Clock& clock);

}  // namespace scimsync::workers
