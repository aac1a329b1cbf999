// Internals shared by the reconciliation's files (reconcile.h is the public part):
//   reconcile_engine.cc     the Reconciler: lists both sides, joins them, plans, enqueues
//   reconcile_report.cc     names, exit codes, the table and the JSON report
//   reconcile_command.cc    `scimsyncd reconcile`
//   reconcile_scheduler.cc  the daemon's periodic runs
//   reconcile_held.cc       plans held by the suspension threshold, and `guard release`
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "scimsync/daemon/reconcile.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/client.h"
#include "scimsync/redis/keys.h"
#include "scimsync/result.h"

namespace scimsync::daemon {

// A plan over the suspension threshold, kept whole for `scimsyncd guard release`
// (ApplyHeldReconciliations): what it was planned from, and every item it would enqueue.
struct HeldPlan {
  std::string run_id;
  int64_t suspensions = 0;
  int64_t suspend_limit = 0;
  int64_t hris_employees = 0;  // becomes the last successful list when it is applied
  int64_t dedup_window_s = 0;
  std::string profile;
  std::vector<queue::Item> items;
};
// Replaces what `key` held.
Status StoreHeldPlan(redis::Pool& pool, const std::string& key, const HeldPlan& plan);

// A Reconciler's options for one profile as the config sets them, so that the command and the
// schedule run the same reconciliation. `foreign_scopes`: ReconcilerOptions::foreign_scopes.
ReconcilerOptions OptionsFor(const ScheduledProfile& profile, const std::string& key_prefix,
                             int64_t timeout_ms, std::vector<std::string> foreign_scopes);

// `{"error":"...","exit_code":N}` and a newline: a failed run's report with --json.
std::string FormatErrorJson(const std::string& message, int exit_code);

}  // namespace scimsync::daemon
