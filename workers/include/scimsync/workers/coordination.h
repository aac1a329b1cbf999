// State that several scimsyncd instances share through Redis, beside the queue: who owns which
// partition (leases), the mass-suspension guard, the auth pause flag, and the newest applied
// version of each employee's record. Its keys (P = redis.key_prefix): P:instances, P:lease:{pN}
// with :token and :owner, P:{pN}:versions, P:guard:events, :tripped, :suspended and :released,
// and P:paused; redis/keys.h (keys::workers) names them, with what each holds and its expiry.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/config.h"
#include "scimsync/redis/client.h"
#include "scimsync/redis/keys.h"
#include "scimsync/result.h"
#include "scimsync/scim/link_store.h"

namespace scimsync::workers {

// "<hostname>:<pid>:<random>": unique per process start.
std::string NewInstanceId();

struct LeaseOptions {
  std::string key_prefix = "scimsync";
  int partitions = 16;
  std::string instance_id;
  // A dead instance's partitions move to the others this long after its last heartbeat.
  int64_t lease_ms = 10000;
  // A partition taken after its lease expired (not handed over) is worked only this long after
  // it was taken: a write its frozen owner sent just before has landed by then.
  int64_t grace_ms = 3000;
};

// Partition ownership. Heartbeat() is called periodically (every lease_ms / 4) by one thread;
// Owns() is called by workers before each batch. Each instance aims at a fair share
// (ceil(partitions / live instances)), so a joining instance gets partitions handed over and a
// dead one's are taken.
class Leases {
 public:
  Leases(redis::Pool& pool, LeaseOptions options, const Clock& clock);

  // Registers this instance, renews held leases, takes free ones up to the fair share and marks
  // any beyond it for release. Returns the owned partitions.
  Result<std::vector<int>> Heartbeat();
  // Whether this instance may work on the partition now: the lease was renewed recently enough,
  // the takeover grace has passed and it is not marked for release.
  bool Owns(int partition) const;
  // The fencing token of the lease when Owns(partition), else 0. Every acquisition raises it,
  // so work started under one lease is told apart from work under a later one.
  int64_t Token(int partition) const;
  // Whether the lease with this token is still held (renewed recently enough, not lost or taken
  // again since): checked before each employee's sync and each SCIM write. Local, no Redis
  // round trip: the lease is given up locally a quarter lease before Redis lets it expire.
  bool Holds(int partition, int64_t token) const;
  // The Redis key that holds a partition's current token (P:lease:{pN}:token): the workers fence
  // their queue writes by it (queue::Fence), so Redis refuses a write made under an old token.
  std::string TokenKey(int partition) const;
  // A worker that is between batches gives a partition marked for release back.
  void ReleaseIfMarked(int partition);
  // Graceful stop: give every partition back so others take over at once.
  void ReleaseAll();
  const std::string& instance_id() const { return options_.instance_id; }
  // Test hook and status: partitions owned now.
  std::vector<int> Owned() const;

 private:
  redis::Pool& pool_;
  LeaseOptions options_;
  const Clock& clock_;
  mutable std::mutex mu_;
  std::vector<int64_t> valid_until_ms_;  // per partition; 0 = not owned
  std::vector<int64_t> valid_from_ms_;   // per partition: the end of a takeover's grace
  std::vector<int64_t> token_;           // per partition: the fencing token of our lease
  std::set<int> to_release_;
};

struct GuardState {
  bool tripped = false;
  int64_t tripped_at_ms = 0;
  int64_t recent = 0;  // employees whose suspension was admitted within the window
  int64_t limit = 0;
};

// Holds suspensions when too many fall due in a window: a broken HRIS export that marks everyone
// terminated must not lock the whole company out. Admit() is atomic across instances.
class SuspensionGuard {
 public:
  SuspensionGuard(redis::Pool& pool, std::string key_prefix, config::GuardOptions options,
                  const Clock& clock);
  // A suspension of `who` ("<scope>\x1f<employee>") is about to be applied. True: go ahead
  // (counted, or the user is already suspended by us). False: the guard holds it. The limit is
  // on distinct employees within the window: another attempt for an employee admitted in the
  // window (a retry after a 503) is admitted again without counting, even once tripped.
  Result<bool> Admit(const std::string& who);
  // After a successful sync: remember whether the employee's newest applied state is
  // suspended (also when JumpCloud had no user to suspend).
  Status Record(const std::string& who, bool suspended);
  // Record for several employees in one round trip (a worker pass ends with it); for an
  // employee named twice the last wins.
  Status RecordMany(const std::vector<std::pair<std::string, bool>>& records);
  // Whether the newest state scimsync applied for `who` is suspended: a later event without an
  // explicit active=true must not create or reactivate the account.
  Result<bool> Suspended(const std::string& who);
  // The set Record writes and Suspended reads, for a read sent with others (Versions).
  std::string SuspendedKey() const { return redis::keys::workers::GuardSuspended(prefix_); }
  // `scimsyncd guard release`: let held suspensions through; the guard stays open for
  // kReleaseMs so the rest of the same burst follows, then counts afresh.
  static constexpr int64_t kReleaseMs = int64_t{10} * 60 * 1000;
  Status Release();
  Result<GuardState> State();
  // The number of users scimsync has linked, for max_suspend_percent (cached for 10 minutes).
  void SetLinkedCountForTest(int64_t n) {
    linked_cache_ = n;
    linked_at_ms_ = INT64_MAX;
  }

 private:
  int64_t Limit();
  redis::Pool& pool_;
  std::string prefix_;
  config::GuardOptions options_;
  const Clock& clock_;
  // The link table, only to count it (scim/ owns its keys).
  std::unique_ptr<scim::LinkStore> links_;
  std::atomic<int64_t> linked_cache_{-1};
  std::atomic<int64_t> linked_at_ms_{0};
};

// Newest applied version per employee, for profiles whose payload carries the record.
class Versions {
 public:
  Versions(redis::Pool& pool, std::string key_prefix)
      : pool_(pool), prefix_(std::move(key_prefix)) {}
  Result<std::string> Get(int partition, const std::string& who);

  // An employee's two applied versions. Attributes are ordered by the newest record applied;
  // access (active) by the newest status event (terminate, rehire, a record that sets active),
  // so a late termination still lands after a newer attribute update. Empty: none stored.
  struct Applied {
    std::string version;
    std::string status_version;
    // With a guard: whether it knows `who` as suspended (SuspensionGuard::Suspended).
    std::optional<bool> suspended;
  };
  // Both in one round trip; with `guard`, its Suspended(who) too, in the same round trip (a
  // sync that may create the user needs it).
  Result<Applied> GetApplied(int partition, const std::string& who,
                             const SuspensionGuard* guard = nullptr);
  // The hash field of `who`'s status version, for Raise/RaiseMany.
  static std::string StatusField(const std::string& who) {
    return who +
           "\x1e"
           "active";
  }
  // Stores `version` unless a larger one is stored already.
  Status Raise(int partition, const std::string& who, const std::string& version);
  // Raise for several employees of one partition, in one script.
  Status RaiseMany(int partition, const std::vector<std::pair<std::string, std::string>>& raises);

 private:
  redis::Pool& pool_;
  std::string prefix_;
};

// The auth pause as other instances and `scimsyncd status` see it.
Status SetPausedFlag(redis::Pool& pool, const std::string& key_prefix, const std::string& reason,
                     int64_t ttl_ms);
Status ClearPausedFlag(redis::Pool& pool, const std::string& key_prefix);

// The shared state `scimsyncd status` shows, read by a process that is not an instance (the
// admin command line), in one round trip.
struct WorkersState {
  struct Lease {
    std::string owner;    // the instance holding the partition; "" when free
    int64_t ttl_ms = -2;  // left on the lease (Redis PTTL); -2 when free
  };
  std::vector<Lease> leases;           // one per partition, in partition order
  std::vector<std::string> instances;  // instances whose last heartbeat is at or after since_ms
  std::string pause_reason;            // why SCIM work is paused; "" when it runs
};
Result<WorkersState> ReadWorkersState(redis::Pool& pool, const std::string& key_prefix,
                                      int partitions, int64_t since_ms);

// Compares two version strings: numerically when both are integers, else as strings (ISO-8601
// timestamps of one format sort as strings).
int CompareVersions(const std::string& a, const std::string& b);

}  // namespace scimsync::workers
