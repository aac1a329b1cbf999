// Reconciliation: the safety net under real-time sync (docs/reconcile.md). Webhooks get lost,
// some HRIS fire on nothing for some changes, and admins edit JumpCloud by hand; a
// reconciliation lists the whole HRIS (the profile's `list` endpoint) and every JumpCloud user
// (SCIM, paginated), joins them by the identity anchor -- link table, then externalId, then
// userName -- and reports drift per employee:
//
//   missing     the employee should have an active user and JumpCloud has none
//   attributes  linked, but managed attributes differ (each one listed, JumpCloud -> HRIS)
//   active      linked, but active is wrong (a leaver still active, a rehire still suspended)
//   orphan      an active JumpCloud user in this profile's scope claims an externalId no HRIS
//               employee has; reported, and enqueued only with reconcile.orphans: suspend
//
// The whole run is planned before anything is enqueued. A list much shorter than the last
// applied run's is refused (exit 3); a plan that would suspend more users than workers.guard
// allows is held whole (exit 2) until `scimsyncd guard release` or `--confirm`.
//
// Unless it is a dry run, each drifted employee becomes ONE ordinary queue item (event type
// connectors::kReconcileEventType, which every built-in profile maps to sync; dedup id
// "reconcile-<run id>-<employee>"), so the fix takes the same path as a webhook: per-employee
// ordering, the shared rate limit, the mass-suspension guard, retries and dead letters. Nothing
// here writes to JumpCloud. What cannot be fixed by a sync -- two users claiming one employee, a
// mapped user JumpCloud would reject, an employee whose record could not be read -- is reported
// as a problem for a human.
//
// One run at a time per profile, fleet-wide: a run holds the Redis lease
// `<redis.key_prefix>:reconcile:<profile>` (SET NX PX, renewed while it runs, released at the
// end). Scheduled runs also respect `<prefix>:reconcile:<profile>:last` (when the last run of any
// instance finished), so N instances with reconcile_every_s = 86400 run once a day, not N times.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/config.h"
#include "scimsync/connectors/profile.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/client.h"
#include "scimsync/result.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/lister.h"
#include "scimsync/scim/rate_limiter.h"
#include "scimsync/scim/retry.h"
#include "scimsync/scim/transport.h"

namespace scimsync::daemon {

// `scimsyncd reconcile` exit codes. sysexits.h has no "differences found"; 1 is what diff(1)
// and `terraform plan -detailed-exitcode` scripts already expect for that.
//   0   no drift, or (without --dry-run) every drifted employee was enqueued for fixing
//   1   drift or problems remain: --dry-run found drift, or something needs a human
//       (a conflict, a mapping JumpCloud would reject, an employee whose record could not be
//       read, an orphan no sync can fix)
//   64  usage   65 an answer could not be read (HRIS or JumpCloud; the message names it)
//   69  the HRIS API, JumpCloud or Redis is unreachable or answers 5xx/429 beyond the retries
//   70  internal error   75 another reconciliation of this profile is running (its lease)
//   2   held: the plan would suspend more users than workers.guard allows (max_suspends, or
//       max_suspend_percent of this scope's users); nothing was enqueued. `scimsyncd guard
//       release` applies the held plan, `reconcile --confirm` runs and applies a fresh one.
//   3   refused: the HRIS list shrank by more than reconcile.max_shrink_percent since the last
//       successful run (or is empty while JumpCloud has anchored users); nothing was enqueued.
//       `--allow-shrink` accepts it.
//   77  the HRIS API or JumpCloud refused the credentials (401/403)
//   78  config problem: the file, the profile (no `list` section), a secret, api.base_url
inline constexpr int kExitDrift = 1;
inline constexpr int kExitHeld = 2;
inline constexpr int kExitRefused = 3;
inline constexpr int kExitTempFail = 75;  // EX_TEMPFAIL
inline constexpr int kExitNoPerm = 77;    // EX_NOPERM

// `scimsyncd reconcile --config FILE --profile NAME [--dry-run] [--json]`. `args` are the
// arguments after "reconcile", --config included (app.cc routes them here unparsed, like `map`).
// The report goes to `out` (a table, or JSON with --json); errors go to `err`.
int RunReconcileCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// reconcile.orphans: what becomes of an active JumpCloud user in this profile's scope whose
// externalId no listed employee has.
enum class OrphanPolicy {
  kReport,   // listed in the report, left alone (default): it may be another tool's account
  kSuspend,  // a sync item, which suspends the user when the HRIS answers 404 for the employee
};

// The employee key an externalId stands for when it is inside this profile's scope, nullopt
// when it is not (so it can never be this profile's orphan). `scope_prefix` is what this
// profile's externalIds start with when several scopes share one JumpCloud ("acme:" say); empty
// (the default): bare employee ids, every non-empty externalId is in scope.
std::optional<std::string> EmployeeKeyInScope(const std::string& external_id,
                                              const std::string& scope_prefix);

enum class DriftKind { kMissing, kAttributes, kActive, kOrphan };
const char* DriftKindName(DriftKind kind);  // "missing", "attributes", "active", "orphan"

// One managed attribute that differs. Values are as JumpCloud holds them and as the HRIS
// mapping wants them; nullopt is "absent" (and for `hris`, "remove it").
struct AttributeChange {
  std::string attribute;  // "userName", "title", "department", "email", "active"...
  std::optional<std::string> jumpcloud;
  std::optional<std::string> hris;
};

struct EmployeeDrift {
  std::string tenant;
  std::string employee_key;
  std::string external_id;
  std::string user_name;     // the mapped userName; JumpCloud's for an orphan
  std::string email;         // the mapped email (for "create" lines)
  std::string jumpcloud_id;  // empty when missing
  std::vector<DriftKind> kinds;
  std::vector<AttributeChange> changes;  // attributes and active
  // A sync item can fix it: false only for orphans no sync can reach (a profile whose payload
  // carries the record has none to apply; a multi-tenant orphan nobody's link claims).
  bool fixable = true;
  bool enqueued = false;  // fixable and written to the queue (never in a dry run)
  std::string note;       // orphans: what a sync does, or why none can help
};

struct ReconcileProblem {
  enum class Kind { kConflict, kInvalid, kError };
  Kind kind = Kind::kError;
  std::string tenant;
  std::string employee_key;
  std::string message;
};
const char* ProblemKindName(ReconcileProblem::Kind kind);  // "conflict", "invalid", "error"

struct ReconcileReport {
  std::string run_id;  // in dedup ids and logs: "20261128T101500Z-3f2a"
  std::string profile;
  bool dry_run = false;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
  int64_t hris_employees = 0;   // listed, all tenants
  int64_t jumpcloud_users = 0;  // every user, whoever manages it
  int64_t in_sync = 0;          // listed employees with nothing to change
  // Employees per drift kind (one employee can have attributes and active drift).
  int64_t missing = 0;
  int64_t attributes = 0;
  int64_t active = 0;
  int64_t orphans = 0;
  int64_t conflicts = 0;
  int64_t invalid = 0;
  int64_t errors = 0;
  int64_t enqueued = 0;    // items written to the queue
  int64_t duplicates = 0;  // items the queue already had (same run id: never, in practice)
  int64_t scim_requests = 0;
  // Employees not enqueued again because an item of theirs still waits in a retry set (held
  // by the mass-suspension guard, or backing off): one waiting item per employee is enough.
  int64_t waiting = 0;
  // The plan: suspensions it would cause (leavers still active, deletions, orphans with
  // reconcile.orphans: suspend), the threshold, and what it was computed from.
  int64_t suspensions = 0;
  int64_t suspend_limit = 0;
  int64_t scope_users = 0;  // this scope's users: max(links counted now, users this run matched)
  bool held = false;        // over the threshold and not --confirm: nothing enqueued
  bool confirmed = false;   // over the threshold and applied with --confirm
  // Not empty: the run was refused before planning (a shrunken or empty list); nothing was
  // enqueued. The reason, for the report and the log.
  std::string refused;
  int64_t last_listed = -1;          // the last successful run's HRIS count; -1: none recorded
  std::vector<EmployeeDrift> drift;  // ordered by tenant, then employee key; orphans last
  std::vector<ReconcileProblem> problems;

  int64_t drifted() const { return static_cast<int64_t>(drift.size()); }
};

// The readable report: a summary, one line per drifted employee (what would change, or what
// was enqueued), then the problems that need a human.
std::string FormatReportTable(const ReconcileReport& report);
// The same as one JSON object, for scripts (docs/reconcile.md lists the fields).
std::string FormatReportJson(const ReconcileReport& report);
// kExitOk, kExitDrift, kExitHeld or kExitRefused for a finished run; ExitCodeFor(Error) for a
// failed one.
int ExitCodeFor(const ReconcileReport& report);
int ExitCodeFor(const Error& error);

struct ReconcilerOptions {
  std::string key_prefix = "scimsync";  // redis.key_prefix: the lease and last-run keys
  // The run lease expires this long after its last renewal; runs renew it as they go, so only a
  // crashed run's lease ever expires.
  int64_t lease_ms = 60000;
  size_t enqueue_batch = 500;  // items per EnqueueBatch (each batch is one Redis script)
  scim::ListOptions scim_list;
  // Link-table scopes of the other configured profiles: a JumpCloud user linked under one of
  // them belongs to that profile and is never this profile's orphan.
  std::vector<std::string> foreign_scopes;
  OrphanPolicy orphans = OrphanPolicy::kReport;  // profiles[].reconcile.orphans
  // The plan's threshold (workers.guard): a run that would suspend more than max_suspends, or
  // more than max_suspend_percent of this scope's users (at every size; at least 1), is held.
  int max_suspends = 50;
  double max_suspend_percent = 10;
  double max_shrink_percent = 10;  // profiles[].reconcile.max_shrink_percent
  bool allow_shrink = false;       // --allow-shrink: accept a list that shrank
  bool confirm = false;            // --confirm: apply a plan over the threshold
  // From the config (config.h): several identity scopes namespace this profile's externalIds
  // ("<scope_prefix>[/<tenant>]:<id>"), and only users in its namespace can be its orphans.
  bool multi_scope = false;
  std::string scope_prefix = {};
  // username_updates: with keep (false; the CLI and the schedule set it from the config) a
  // differing userName is not drift, since no sync would change it.
  bool follow_user_name = true;
};

// Everything a Reconciler talks to. All must outlive it.
struct ReconcilerDeps {
  std::shared_ptr<const connectors::Profile> profile;
  connectors::Fetcher* fetcher = nullptr;  // the HRIS API (list and fetch-back)
  scim::Transport* transport = nullptr;    // JumpCloud reads; owned by this reconciler
  scim::RateLimiter* limiter = nullptr;    // the workers' shared limiter; null: no pacing
  scim::LinkStore* links = nullptr;
  queue::Queue* queue = nullptr;  // null: report only, as in a dry run
  redis::Pool* pool = nullptr;    // lease and last-run keys; null: no lease (tests)
  const Clock* clock = nullptr;
  scim::Random* random = nullptr;
  std::function<void(int64_t ms)> sleep;  // backoffs and rate waits; default sleep_for
  // Checked between employees and pages: true ends the run early with kTransient (shutdown).
  const std::atomic<bool>* cancel = nullptr;
  // Called before a confirmed over-threshold plan is enqueued: opens the workers'
  // mass-suspension guard (SuspensionGuard::Release) so the confirmed suspensions are not held
  // a second time. Null: nothing to open.
  std::function<Status()> open_guard;
};

class Reconciler {
 public:
  Reconciler(ReconcilerOptions options, ReconcilerDeps deps);

  // One full run now. A dry run enqueues nothing and takes no lease. Errors mean the run did not
  // complete and nothing was enqueued: listing failed (the HRIS or JumpCloud), Redis is down,
  // the HRIS listed nobody while JumpCloud has anchored users (a broken list must not read as
  // "everyone left"), or the lease is held elsewhere (kConflict).
  Result<ReconcileReport> Run(bool dry_run);

  // For the schedule: runs when `every_ms` has passed since the last finished run of this
  // profile by any instance and the lease is free; nullopt when it is not due or another
  // instance is running it.
  Result<std::optional<ReconcileReport>> RunIfDue(int64_t every_ms);

  const std::string& lease_key() const { return lease_key_; }
  const std::string& last_run_key() const { return last_key_; }
  // The last successful run's HRIS count (for the shrink check) and a held plan.
  const std::string& listed_key() const { return listed_key_; }
  const std::string& held_key() const { return held_key_; }

 private:
  class Pass;  // one run, step by step (reconcile_engine.cc)
  Result<ReconcileReport> Execute(bool dry_run, const std::string& run_id, bool leased);
  Result<bool> AcquireLease(const std::string& token);
  Status RenewLease(const std::string& token);
  void ReleaseLease(const std::string& token);

  ReconcilerOptions options_;
  ReconcilerDeps deps_;
  std::string lease_key_;
  std::string last_key_;
  std::string listed_key_;
  std::string held_key_;
};

// `scimsyncd guard release` (and nothing else): enqueues every held reconciliation plan
// (`<prefix>:reconcile:<profile>:held`) as it was planned and deletes it, and records its list
// count as the last successful one. Writes one line per plan to `out`. Returns the items
// enqueued.
Result<int64_t> ApplyHeldReconciliations(redis::Pool& pool, queue::Queue& queue,
                                         const std::string& key_prefix, std::ostream& out);

// The daemon's schedule: one background thread that runs each profile's reconciliation every
// profiles[].reconcile_every_s, one instance of the fleet at a time, and logs a summary line
// per run ("reconciliation finished", with the counts; "reconciliation failed" with the error).
// Daemon (daemon.cc) starts it after the workers, gives it the new API key and profiles after
// each reload, stops it before the workers drain (a run ends at its next page), and records
// the scimsync_reconcile_* metrics (metrics.cc) from Deps::on_run. An alert on time() -
// scimsync_reconcile_last_success_timestamp_seconds > 2 * reconcile_every_s catches a schedule
// that stopped.
struct ScheduledProfile {
  std::string name;
  int64_t every_s = 0;  // 0: not scheduled
  std::shared_ptr<const connectors::Profile> profile;
  config::ProfileReconcileOptions reconcile;  // orphans, max_shrink_percent
  config::GuardOptions guard;                 // the plan's threshold (workers.guard)
  bool multi_scope = false;                   // ReconcilerOptions
  std::string scope_prefix = {};
  bool follow_user_name = false;
};

// Every profile of `cfg` with reconcile_every_s > 0 that can list (a profile without a list
// section is logged and skipped; check-config does not reject it, since the CLI may still be
// pointed at another profile). None with target.dry_run: there is no JumpCloud to read.
std::vector<ScheduledProfile> ScheduledProfiles(
    const config::Config& cfg,
    const std::map<std::string, std::shared_ptr<const connectors::Profile>>& profiles);

class ReconcileScheduler {
 public:
  struct Deps {
    redis::Pool* pool = nullptr;
    queue::Queue* queue = nullptr;
    scim::RateLimiter* limiter = nullptr;
    scim::LinkStore* links = nullptr;
    connectors::Fetcher* fetcher = nullptr;
    const Clock* clock = nullptr;
    scim::Random* random = nullptr;
    // After every run that was due (ok or not): metrics.
    std::function<void(const std::string& profile, const Result<ReconcileReport>&)> on_run;
    // JumpCloud reads. Default: NewHttpTransport(TransportOptions::From(target, api_key)).
    std::function<Result<std::unique_ptr<scim::Transport>>(const std::string& api_key)>
        make_transport;
  };

  // `poll_ms`: how often due runs are looked for; a run starts at most this late.
  ReconcileScheduler(config::TargetOptions target, std::string key_prefix, Deps deps,
                     int64_t poll_ms = 30000);
  ~ReconcileScheduler();  // Stop()
  ReconcileScheduler(const ReconcileScheduler&) = delete;
  ReconcileScheduler& operator=(const ReconcileScheduler&) = delete;

  void SetProfiles(std::vector<ScheduledProfile> profiles);
  void SetApiKey(std::string api_key);
  void Start();
  // Ends a run in progress at its next page or employee (nothing half-enqueued: items are
  // written only at the end of a run) and joins the thread.
  void Stop();
  // One pass on the calling thread: runs every profile that is due. Returns how many ran.
  int RunDue();

 private:
  void Loop();
  config::TargetOptions target_;
  std::string key_prefix_;
  Deps deps_;
  int64_t poll_ms_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ScheduledProfile> profiles_;
  std::string api_key_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace scimsync::daemon
