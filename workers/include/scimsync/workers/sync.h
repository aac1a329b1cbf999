// The Syncer the daemon runs: connector profiles decide what each item means (fetching the
// current record from the HRIS when the webhook carries only an id), and the SCIM client
// converges JumpCloud to it.
//
// Coalescing: a burst of one employee's items is one sync. For level-triggered profiles (the
// record is fetched) only the newest item that means something is planned: the fetched record is
// the current state. For profiles whose payload carries the record, every item is planned and
// folded in version order -- later records replace earlier ones, a suspension or rehire sets
// `active` until a later item says otherwise -- and an item older than the newest version
// already applied is dropped (logged with its reason, counted in scimsync_items_dropped_total),
// so an old event never overwrites a newer one. Items deferred to an effective date are never
// dropped by version: when due they are folded after the newest state (a suspension lands,
// newer attributes stay). An employee whose newest applied state is terminated stays so: a
// later event without active=true keeps active=false and never creates an account.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "scimsync/config.h"
#include "scimsync/connectors/active_profile.h"
#include "scimsync/connectors/profile.h"
#include "scimsync/scim/converger.h"
#include "scimsync/workers/coordination.h"
#include "scimsync/workers/sync_metrics.h"
#include "scimsync/workers/worker.h"

namespace scimsync::workers {

using connectors::ActiveProfile;
using connectors::ProfileSet;

// The shared SCIM rate limiter, recording in `metrics` each reservation that makes its caller
// wait (RateLimitWaited). A reservation that is refused (the job goes back to its retry set) is
// not a wait: it shows as a retry. `inner` and `metrics` must outlive it; thread-safe if `inner`
// is.
std::unique_ptr<scim::RateLimiter> NewMeteredRateLimiter(scim::RateLimiter* inner,
                                                         SyncMetrics& metrics);

struct SyncerDeps {
  const ProfileSet* profiles = nullptr;
  connectors::Fetcher* fetcher = nullptr;
  scim::RateLimiter* limiter = nullptr;
  scim::LinkStore* links = nullptr;
  Versions* versions = nullptr;      // null: no cross-batch version check (tests)
  SuspensionGuard* guard = nullptr;  // null: no guard
  const Clock* clock = nullptr;
  scim::Random* random = nullptr;
  // The daemon passes its /metrics registry; null: nothing is counted (tests).
  SyncMetrics* metrics = nullptr;
  // workers.max_future_skew_s: an item whose version is a time further ahead than this is
  // applied as if it happened now (logged and counted), so it cannot outrank later events.
  int64_t max_future_skew_ms = int64_t{24} * 3600 * 1000;
};

class ProfileSyncer final : public Syncer {
 public:
  ProfileSyncer(const config::TargetOptions& target, const config::RetryOptions& retry, int threads,
                SyncerDeps deps);

  // The resolved API key; called at start and on SIGHUP. Threads rebuild their transports on
  // their next sync, and the next one probes the server's capabilities again (once for all).
  void SetApiKey(std::string api_key);

  SyncResult Sync(int thread, const EmployeeWork& work) override;
  Status Probe(int thread) override;
  // Raises the versions the pass's syncs applied, one script per partition.
  Status EndPass(int thread) override;

 private:
  struct PerThread {
    uint64_t generation = 0;
    std::unique_ptr<scim::Transport> transport;
    std::unique_ptr<scim::Converger> converger;
    // Versions applied in this pass, raised at its end: partition -> (employee, version).
    std::map<int, std::vector<std::pair<std::string, std::string>>> raises;
    // The guard's record of each synced employee (suspended or not), written at the pass's end
    // with the versions: one round trip per pass instead of one per sync.
    std::vector<std::pair<std::string, bool>> guard_records;
  };
  // The worker thread's own state: only that thread touches it.
  PerThread& StateOf(int thread);
  SyncMetrics& Meter();
  Result<scim::Converger*> ConvergerFor(int thread);
  SyncResult FromPlanError(scim::Converger& converger, const EmployeeWork& work,
                           const Error& error);

  config::TargetOptions target_;
  config::RetryOptions retry_;
  SyncerDeps deps_;
  std::mutex key_mu_;
  std::string api_key_;
  std::atomic<uint64_t> generation_{1};
  std::vector<PerThread> threads_;
  // /ServiceProviderConfig, probed once per process and again after a reload, never per job.
  scim::SharedCapabilities capabilities_;
};

}  // namespace scimsync::workers
