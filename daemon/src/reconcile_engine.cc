// The reconciliation engine: the run lease, then one Pass per run -- list the HRIS, refuse a
// shrunken list, list JumpCloud, join each employee to its user by the workers' rules
// (scim::ResolveUser), find orphans, count the suspensions against the threshold, enqueue or
// hold the plan.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include "reconcile_internal.h"
#include "scimsync/daemon/reconcile.h"
#include "scimsync/log.h"
#include "scimsync/scim/protocol.h"
#include "scimsync/scim/resolve.h"
#include "scimsync/strings.h"
#include "scimsync/workers/worker.h"

namespace scimsync::daemon {

using workers::ScopeOf;

namespace {

constexpr char kEnterprisePrefix[] = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:";

// Compare-and-renew and compare-and-delete: only the run that took the lease touches it.
const redis::Script& RenewScript() {
  static const redis::Script s(
      "if redis.call('GET', KEYS[1]) == ARGV[1] then "
      "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0");
  return s;
}
const redis::Script& ReleaseScript() {
  static const redis::Script s(
      "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
      "return 0");
  return s;
}

// Joins a tenant and an employee key into one set member.
constexpr char kSep = '\x1f';

std::string NewRunId(const Clock& clock, scim::Random& random) {
  const int64_t ms = clock.NowMs();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%04x",
                static_cast<unsigned>(random.Uniform() * 65536.0) & 0xffffu);
  return std::string(stamp) + "-" + suffix;
}

// A managed attribute's value in a user, by its SCIM path (what scim::Diff reports).
std::optional<std::string> AttributeValue(const scim::User& u, const std::string& path) {
  if (path == "userName") return u.user_name.empty() ? std::nullopt : std::optional(u.user_name);
  if (path == "externalId") {
    return u.external_id.empty() ? std::nullopt : std::optional(u.external_id);
  }
  if (path == "emails") return u.email;
  if (path == "active") {
    if (!u.active) return std::nullopt;
    return std::string(*u.active ? "true" : "false");
  }
  const std::pair<const char*, const std::optional<std::string> scim::User::*> core[] = {
      {"name.givenName", &scim::User::given_name},
      {"name.familyName", &scim::User::family_name},
      {"displayName", &scim::User::display_name},
      {"title", &scim::User::title},
      {"locale", &scim::User::locale},
      {"userType", &scim::User::user_type}};
  for (const auto& [p, field] : core) {
    if (path == p) return u.*field;
  }
  const std::string prefix = kEnterprisePrefix;
  if (path.rfind(prefix, 0) == 0) {
    const std::string name = path.substr(prefix.size());
    const std::pair<const char*, const std::optional<std::string> scim::User::*> ent[] = {
        {"employeeNumber", &scim::User::employee_number},
        {"department", &scim::User::department},
        {"costCenter", &scim::User::cost_center},
        {"organization", &scim::User::organization}};
    for (const auto& [n, field] : ent) {
      if (name == n) return u.*field;
    }
  }
  return std::nullopt;
}

// "department" for the enterprise URN's department, "email" for emails: how admins name them.
std::string AttributeName(const std::string& path) {
  const std::string prefix = kEnterprisePrefix;
  if (path.rfind(prefix, 0) == 0) return path.substr(prefix.size());
  if (path == "emails") return "email";
  return path;
}

// The HRIS list requests with the SCIM listing's retry policy: a 5xx, 429 or lost connection on
// page 30 of 40 should cost a backoff, not the run. Other requests (fetch-backs, tokens) pass
// through: the workers retry those as items.
class RetryingListFetcher final : public connectors::Fetcher {
 public:
  RetryingListFetcher(connectors::Fetcher& inner, const scim::RetryOptions& options,
                      const Clock& clock, scim::Random& random, std::function<void(int64_t)> sleep,
                      const std::atomic<bool>* cancel)
      : inner_(inner),
        clock_(clock),
        policy_(options, clock, random),
        sleep_(std::move(sleep)),
        cancel_(cancel) {}

  Result<connectors::HttpResponse> Fetch(const std::string& name,
                                         const connectors::HttpRequest& request) override {
    if (name != "list") return inner_.Fetch(name, request);
    const int64_t first_ms = clock_.NowMs();
    for (int attempt = 1;; ++attempt) {
      auto res = inner_.Fetch(name, request);
      Error e;
      if (!res.ok()) {
        if (res.error().kind != ErrorKind::kTransient) return res;
        e = res.error();
      } else if (res->status == 408 || res->status == 429 || res->status >= 500) {
        e = Error::Transient("answered " + std::to_string(res->status));
        for (const auto& [k, v] : res->headers) {
          if (AsciiLower(k) != "retry-after") continue;
          if (auto ms = scim::ParseRetryAfterMs(v, clock_.NowMs())) {
            e.retry_after = std::chrono::milliseconds(*ms);
          }
        }
      } else {
        return res;
      }
      const scim::RetryDecision d = policy_.Decide(attempt, first_ms, e);
      // The last answer goes back as it was: the profile classifies it and names the page.
      if (!d.retry || (cancel_ != nullptr && cancel_->load())) return res;
      log::Warn("listing the HRIS: retrying a page",
                {{"url", request.url.substr(0, request.url.find('?'))},
                 {"attempt", attempt},
                 {"delay_ms", d.delay_ms},
                 {"error", e.message}});
      sleep_(d.delay_ms);
    }
  }
  bool live() const override { return inner_.live(); }

 private:
  connectors::Fetcher& inner_;
  const Clock& clock_;
  scim::RetryPolicy policy_;
  std::function<void(int64_t)> sleep_;
  const std::atomic<bool>* cancel_;
};

}  // namespace

std::optional<std::string> EmployeeKeyInScope(const std::string& external_id,
                                              const std::string& scope_prefix) {
  if (external_id.size() <= scope_prefix.size()) return std::nullopt;
  if (external_id.compare(0, scope_prefix.size(), scope_prefix) != 0) return std::nullopt;
  return external_id.substr(scope_prefix.size());
}

// ---- the run -----------------------------------------------------------------------------

Reconciler::Reconciler(ReconcilerOptions options, ReconcilerDeps deps)
    : options_(std::move(options)), deps_(std::move(deps)) {
  const std::string name = deps_.profile ? deps_.profile->name() : std::string();
  lease_key_ = redis::keys::daemon::Reconcile(options_.key_prefix, name);
  last_key_ = redis::keys::daemon::ReconcileLast(options_.key_prefix, name);
  listed_key_ = redis::keys::daemon::ReconcileListed(options_.key_prefix, name);
  held_key_ = redis::keys::daemon::ReconcileHeld(options_.key_prefix, name);
  if (!deps_.sleep) {
    deps_.sleep = [](int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
  }
}

Result<bool> Reconciler::AcquireLease(const std::string& token) {
  auto conn = deps_.pool->Acquire();
  auto r = conn->Command({"SET", lease_key_, token, "NX", "PX", std::to_string(options_.lease_ms)});
  if (!r.ok()) return r.error();
  return !r->is_nil();
}

Status Reconciler::RenewLease(const std::string& token) {
  if (deps_.pool == nullptr || token.empty()) return {};
  auto conn = deps_.pool->Acquire();
  auto r = conn->Eval(RenewScript(), {lease_key_}, {token, std::to_string(options_.lease_ms)});
  if (!r.ok()) return r.error();
  if (r->AsInteger().value_or(0) != 1) {
    return Error::Conflict("lost the reconciliation lease " + lease_key_ +
                           " (it expired or Redis lost it); another run may have started: "
                           "stopping this one");
  }
  return {};
}

void Reconciler::ReleaseLease(const std::string& token) {
  auto conn = deps_.pool->Acquire();
  auto r = conn->Eval(ReleaseScript(), {lease_key_}, {token});
  if (!r.ok()) {
    // It expires by itself within lease_ms.
    log::Warn("cannot release the reconciliation lease",
              {{"key", lease_key_}, {"detail", r.error().message}});
  }
}

Result<ReconcileReport> Reconciler::Run(bool dry_run) {
  if (!deps_.profile) return Error::Invalid("no profile to reconcile");
  const std::string run_id = NewRunId(*deps_.clock, *deps_.random);
  const bool leased = !dry_run && deps_.pool != nullptr;
  if (leased) {
    auto got = AcquireLease(run_id);
    if (!got.ok()) return Error::Transient("redis: " + got.error().message);
    if (!*got) {
      auto conn = deps_.pool->Acquire();
      auto holder = conn->Command({"GET", lease_key_});
      const std::string who =
          holder.ok() ? holder->AsString().value_or("(gone just now)") : std::string("unknown");
      return Error::Conflict("another reconciliation of profile " + deps_.profile->name() +
                             " is running (Redis key " + lease_key_ + ", run " + who +
                             "); try again when it has finished");
    }
  }
  auto report = Execute(dry_run, run_id, leased);
  if (leased) {
    ReleaseLease(run_id);
    if (report.ok()) {
      auto conn = deps_.pool->Acquire();
      (void)conn->Command({"SET", last_key_, std::to_string(report->finished_ms)});
    }
  }
  return report;
}

Result<std::optional<ReconcileReport>> Reconciler::RunIfDue(int64_t every_ms) {
  if (!deps_.profile) return Error::Invalid("no profile to reconcile");
  if (deps_.pool == nullptr) {
    auto r = Run(false);
    if (!r.ok()) return r.error();
    return std::optional<ReconcileReport>(std::move(r.value()));
  }
  auto due = [&]() -> Result<bool> {
    auto conn = deps_.pool->Acquire();
    auto last = conn->Command({"GET", last_key_});
    if (!last.ok()) return last.error();
    auto at = last->AsInteger();
    return !at || deps_.clock->NowMs() - *at >= every_ms;
  };
  auto is_due = due();
  if (!is_due.ok()) return Error::Transient("redis: " + is_due.error().message);
  if (!*is_due) return std::optional<ReconcileReport>();
  const std::string run_id = NewRunId(*deps_.clock, *deps_.random);
  auto got = AcquireLease(run_id);
  if (!got.ok()) return Error::Transient("redis: " + got.error().message);
  if (!*got) return std::optional<ReconcileReport>();  // another instance is running it
  // Another instance may have finished a run between our look and our lease.
  is_due = due();
  if (!is_due.ok() || !*is_due) {
    ReleaseLease(run_id);
    if (!is_due.ok()) return Error::Transient("redis: " + is_due.error().message);
    return std::optional<ReconcileReport>();
  }
  auto report = Execute(false, run_id, true);
  ReleaseLease(run_id);
  const int64_t now = deps_.clock->NowMs();
  // A failed run is tried again after a quarter of an hour (or the period, if shorter), not at
  // every poll: a broken HRIS API should not be hammered by every instance.
  const int64_t last =
      report.ok() ? report->finished_ms : now - every_ms + std::min<int64_t>(every_ms, 900000);
  auto conn = deps_.pool->Acquire();
  (void)conn->Command({"SET", last_key_, std::to_string(last)});
  if (!report.ok()) return report.error();
  return std::optional<ReconcileReport>(std::move(report.value()));
}

// ---- one run, step by step ------------------------------------------------------------------

namespace {

// The JumpCloud users as listed, indexed the ways the join looks them up.
struct UserIndex {
  std::vector<scim::RemoteUser> users;
  std::map<std::string, size_t> by_id;
  std::multimap<std::string, size_t> by_external_id;
  std::multimap<std::string, size_t> by_user_name;  // lower-cased
  size_t anchored = 0;                              // users carrying an externalId

  void Build(std::vector<scim::RemoteUser> listed) {
    users = std::move(listed);
    for (size_t i = 0; i < users.size(); ++i) {
      by_id[users[i].id] = i;
      if (!users[i].external_id.empty()) {
        by_external_id.emplace(users[i].external_id, i);
        ++anchored;
      }
      by_user_name.emplace(AsciiLower(users[i].attributes.user_name), i);
    }
  }
  std::vector<scim::RemoteUser> Matching(const std::multimap<std::string, size_t>& index,
                                         const std::string& key) const {
    std::vector<scim::RemoteUser> out;
    auto range = index.equal_range(key);
    for (auto it = range.first; it != range.second; ++it) out.push_back(users[it->second]);
    return out;
  }
};

Error Cancelled() { return Error::Transient("the reconciliation was stopped (shutdown)"); }

}  // namespace

// One run's state, from the two lists to the enqueued items; Execute calls one method per step.
class Reconciler::Pass {
 public:
  Pass(Reconciler& r, bool dry_run, const std::string& run_id, bool leased)
      : options_(r.options_),
        deps_(r.deps_),
        keys_(r),
        profile_(*r.deps_.profile),
        clock_(*r.deps_.clock),
        dry_run_(dry_run),
        token_(leased ? run_id : std::string()) {
    rep_.run_id = run_id;
    rep_.profile = profile_.name();
    rep_.dry_run = dry_run;
    rep_.started_ms = clock_.NowMs();
    now_s_ = rep_.started_ms / 1000;
  }

  Result<ReconcileReport> Execute() {
    if (!profile_.can_list()) {
      return Error::Invalid("profile " + profile_.name() +
                            " has no list section, so the HRIS side cannot be listed; add one "
                            "(docs/profiles.md, list)");
    }
    using Step = Status (Pass::*)();
    for (Step step :
         {&Pass::ListHris, &Pass::RefuseShrunkenList, &Pass::ListJumpCloud, &Pass::JoinEmployees,
          &Pass::FindOrphans, &Pass::CountSuspensions, &Pass::ApplyThreshold, &Pass::Enqueue}) {
      if (Status s = (this->*step)(); !s.ok()) return s.error();
      if (!rep_.refused.empty()) return Refused();
    }
    NoteOrphans();
    rep_.finished_ms = clock_.NowMs();
    LogFinished();
    return std::move(rep_);
  }

 private:
  bool cancelled() const { return deps_.cancel != nullptr && deps_.cancel->load(); }
  Status Renew() { return keys_.RenewLease(token_); }

  Result<ReconcileReport> Refused() {
    rep_.finished_ms = clock_.NowMs();
    log::Error("reconciliation refused", {{"profile", rep_.profile},
                                          {"run", rep_.run_id},
                                          {"dry_run", dry_run_},
                                          {"hris_employees", rep_.hris_employees},
                                          {"last_listed", rep_.last_listed},
                                          {"reason", rep_.refused}});
    return std::move(rep_);
  }

  void Problem(ReconcileProblem::Kind kind, const connectors::ListedEmployee& e,
               std::string message) {
    rep_.problems.push_back({kind, e.tenant, e.employee_key, std::move(message)});
    switch (kind) {
      case ReconcileProblem::Kind::kConflict:
        ++rep_.conflicts;
        break;
      case ReconcileProblem::Kind::kInvalid:
        ++rep_.invalid;
        break;
      case ReconcileProblem::Kind::kError:
        ++rep_.errors;
        break;
    }
  }

  // 1. Everyone the HRIS lists, each page retried like a SCIM page.
  Status ListHris() {
    RetryingListFetcher list_fetcher(*deps_.fetcher, options_.scim_list.retry, clock_,
                                     *deps_.random, deps_.sleep, deps_.cancel);
    for (const std::string& tenant : profile_.list_tenants()) {
      if (cancelled()) return Cancelled();
      auto part = profile_.ListEmployees(tenant, list_fetcher, now_s_);
      if (!part.ok()) {
        Error e = part.error();
        e.message = "listing the HRIS employees" +
                    (tenant.empty() ? std::string() : " of tenant " + tenant) + ": " + e.message;
        return e;
      }
      listed_.insert(listed_.end(), part->begin(), part->end());
    }
    if (Status s = Renew(); !s.ok()) return s;
    rep_.hris_employees = static_cast<int64_t>(listed_.size());
    return {};
  }

  // A list much shorter than the last successful run's is far more often a broken export, a
  // narrowed API user or a lost page than a wave of departures: refuse it before planning.
  Status RefuseShrunkenList() {
    if (deps_.pool != nullptr) {
      auto conn = deps_.pool->Acquire();
      auto last = conn->Command({"GET", keys_.listed_key_});
      if (!last.ok()) return Error::Transient("redis: " + last.error().message);
      rep_.last_listed = last->AsInteger().value_or(-1);
    }
    if (rep_.last_listed <= 0 || options_.allow_shrink ||
        static_cast<double>(rep_.hris_employees) >=
            static_cast<double>(rep_.last_listed) * (1.0 - options_.max_shrink_percent / 100.0)) {
      return {};
    }
    const int64_t shrink_pct = (rep_.last_listed - rep_.hris_employees) * 100 / rep_.last_listed;
    rep_.refused = "the HRIS list of profile " + profile_.name() + " has " +
                   std::to_string(rep_.hris_employees) + " employees, " +
                   std::to_string(shrink_pct) + "% fewer than the " +
                   std::to_string(rep_.last_listed) +
                   " of the last successful run (more than reconcile.max_shrink_percent, " +
                   std::to_string(static_cast<int64_t>(options_.max_shrink_percent)) +
                   "%); nothing was planned or enqueued. Check the HRIS export and the API "
                   "user's permissions; if the people really left, run again with "
                   "--allow-shrink";
    return {};
  }

  // 2. Every JumpCloud user. An empty HRIS list while JumpCloud has anchored users is refused:
  // a broken list must not read as "everyone left".
  Status ListJumpCloud() {
    if (cancelled()) return Cancelled();
    scim::ListDeps list_deps;
    list_deps.transport = deps_.transport;
    list_deps.limiter = deps_.limiter;
    list_deps.clock = deps_.clock;
    list_deps.random = deps_.random;
    list_deps.sleep = deps_.sleep;
    scim::ListStats stats;
    auto users = scim::ListAllUsers(options_.scim_list, list_deps, &stats);
    rep_.scim_requests = stats.requests;
    if (!users.ok()) {
      Error e = users.error();
      e.message = "listing the JumpCloud users: " + e.message;
      return e;
    }
    if (Status s = Renew(); !s.ok()) return s;
    rep_.jumpcloud_users = static_cast<int64_t>(users->size());
    jc_.Build(std::move(*users));
    claimed_.assign(jc_.users.size(), false);
    if (listed_.empty() && jc_.anchored > 0) {
      rep_.refused = "the HRIS list of profile " + profile_.name() + " is empty while " +
                     std::to_string(jc_.anchored) +
                     " JumpCloud users carry an externalId; refusing to report them all as "
                     "orphans. Check list.records in the profile and what the API user may see";
    }
    return {};
  }

  // 3. Each employee: the desired user, its JumpCloud user, the difference.
  Status JoinEmployees() {
    std::sort(listed_.begin(), listed_.end(), [](const auto& a, const auto& b) {
      return std::tie(a.tenant, a.employee_key) < std::tie(b.tenant, b.employee_key);
    });
    for (size_t n = 0; n < listed_.size(); ++n) {
      if (cancelled()) return Cancelled();
      if (n % 50 == 49) {
        if (Status s = Renew(); !s.ok()) return s;
      }
      if (Status s = JoinEmployee(listed_[n]); !s.ok()) return s;
    }
    return {};
  }

  Status JoinEmployee(const connectors::ListedEmployee& e) {
    anchors_.insert(e.employee_key);
    auto plan = profile_.PlanListed(e, *deps_.fetcher, now_s_);
    if (!plan.ok()) {
      // Wrong HRIS credentials fail every employee alike: stop instead of listing them all.
      if (plan.error().kind == ErrorKind::kAuth) return plan.error();
      Problem(ReconcileProblem::Kind::kError, e,
              "cannot read the employee's record: " + plan.error().message);
      return {};
    }
    if (plan->action == connectors::Action::kIgnore || !plan->user) {
      ++rep_.in_sync;  // the profile wants nothing done for this employee
      return {};
    }
    // What the worker would write: the externalId in this scope's namespace (bare with one).
    scim::User desired = *plan->user;
    desired.external_id =
        config::ExternalIdPrefix(options_.multi_scope, options_.scope_prefix, e.tenant) +
        (desired.external_id.empty() ? e.employee_key : desired.external_id);
    anchors_.insert(desired.external_id);

    std::string conflict;
    auto match = Resolve(ScopeOf(profile_.name(), e.tenant), desired, &conflict);
    if (!match.ok()) return match.error();
    if (!conflict.empty()) {
      Problem(ReconcileProblem::Kind::kConflict, e, conflict);
      return {};
    }
    if (*match) ReportDuplicates(e, desired.external_id, **match);

    EmployeeDrift d;
    d.tenant = e.tenant;
    d.employee_key = e.employee_key;
    d.external_id = desired.external_id;
    d.user_name = desired.user_name;
    d.email = desired.email.value_or("");
    if (*match) d.jumpcloud_id = jc_.users[**match].id;
    if (plan->action == connectors::Action::kSuspend ||
        plan->action == connectors::Action::kDelete) {
      if (*match) LeaverDrift(plan->action, jc_.users[**match].attributes, &d);
    } else {
      if (!plan->problems.empty()) {
        std::string text = "the mapped user breaks JumpCloud's rules: ";
        for (size_t i = 0; i < plan->problems.size(); ++i) {
          text += (i ? "; " : "") + plan->problems[i].ToString();
        }
        Problem(ReconcileProblem::Kind::kInvalid, e, text);
        return {};
      }
      if (!*match) {
        // A leaver JumpCloud never knew needs no user.
        if (desired.active != false) d.kinds.push_back(DriftKind::kMissing);
      } else {
        AttributeDrift(desired, jc_.users[**match], &d);
      }
    }
    if (d.kinds.empty()) {
      ++rep_.in_sync;
      return {};
    }
    for (DriftKind k : d.kinds) {
      if (k == DriftKind::kMissing) ++rep_.missing;
      if (k == DriftKind::kAttributes) ++rep_.attributes;
      if (k == DriftKind::kActive) ++rep_.active;
    }
    rep_.drift.push_back(std::move(d));
    source_.push_back(&e);
    return {};
  }

  // The employee's JumpCloud user (its index in the listing) by the rules the workers apply
  // (scim::ResolveUser), looked up in the listing instead of over HTTP. A conflict is returned
  // in `conflict`. Every user the employee's anchor reaches (its link, its externalId) is marked
  // claimed, conflict or not: none of them is an orphan.
  Result<std::optional<size_t>> Resolve(const std::string& scope, const scim::User& desired,
                                        std::string* conflict) {
    const std::string& ext = desired.external_id;
    scim::ResolveQuery query;
    query.scope = scope;
    query.external_id = ext;
    query.user_name = desired.user_name;
    // A worker finding no user POSTs it; a taken userName answers 409 and the worker resolves
    // by userName. The join goes there at once.
    query.by_user_name = true;
    query.other_scopes = options_.multi_scope;
    scim::ResolveLookups lookups;
    lookups.linked = [&]() -> Result<std::optional<scim::RemoteUser>> {
      auto link = deps_.links->Get(scope, ext);
      if (!link.ok()) return Error::Transient("redis (link table): " + link.error().message);
      // No link, or a linked user JumpCloud no longer has (the worker drops that link).
      if (!*link) return std::optional<scim::RemoteUser>();
      auto it = jc_.by_id.find(**link);
      if (it == jc_.by_id.end()) return std::optional<scim::RemoteUser>();
      claimed_[it->second] = true;
      return std::optional<scim::RemoteUser>(jc_.users[it->second]);
    };
    lookups.by_external_id = [&](const std::string& v) -> Result<std::vector<scim::RemoteUser>> {
      return jc_.Matching(jc_.by_external_id, v);
    };
    lookups.by_user_name = [&](const std::string& v) -> Result<std::vector<scim::RemoteUser>> {
      return jc_.Matching(jc_.by_user_name, AsciiLower(v));
    };
    lookups.owner_of = [&](const std::string& id) -> Result<std::optional<scim::LinkStore::Owner>> {
      auto owner = deps_.links->OwnerOf(id);
      if (!owner.ok()) return Error::Transient("redis (link table): " + owner.error().message);
      return owner;
    };
    auto range = jc_.by_external_id.equal_range(ext);
    for (auto it = range.first; it != range.second; ++it) claimed_[it->second] = true;

    auto found = scim::ResolveUser(query, lookups);
    if (!found.ok()) {
      if (found.error().kind != ErrorKind::kConflict) return found.error();
      *conflict = found.error().message;
      return std::optional<size_t>();
    }
    if (!found->user) return std::optional<size_t>();
    const size_t i = jc_.by_id.at(found->user->id);
    claimed_[i] = true;
    return std::optional<size_t>(i);
  }

  // A second account for a linked employee: the workers keep syncing the linked one, but the
  // other still lets the person in (or confuses the admins). A human decides which goes.
  void ReportDuplicates(const connectors::ListedEmployee& e, const std::string& ext, size_t match) {
    std::string others;
    auto range = jc_.by_external_id.equal_range(ext);
    for (auto it = range.first; it != range.second; ++it) {
      if (it->second == match) continue;
      const scim::RemoteUser& dup = jc_.users[it->second];
      others += (others.empty() ? "" : ", ") + dup.id + " (userName " + dup.attributes.user_name +
                (dup.attributes.active == false ? ", suspended)" : ", active)");
    }
    if (others.empty()) return;
    Problem(ReconcileProblem::Kind::kConflict, e,
            "duplicate account: employee " + ext + " is linked to JumpCloud user " +
                jc_.users[match].id + ", and " + others + " also carries externalId " + ext +
                "; delete or suspend the duplicate in JumpCloud (the linked user is still "
                "synced)");
  }

  // A leaver with a user: a deletion, or a suspension unless the user already reads suspended.
  static void LeaverDrift(connectors::Action action, const scim::User& remote, EmployeeDrift* d) {
    if (action == connectors::Action::kDelete) {
      d->kinds.push_back(DriftKind::kActive);
      d->changes.push_back({"user", std::string("present"), std::nullopt});
    } else if (remote.active != false) {
      d->kinds.push_back(DriftKind::kActive);
      d->changes.push_back(
          {"active", AttributeValue(remote, "active").value_or("true"), std::string("false")});
    }
  }

  // Each managed attribute that differs, as scim::Diff finds it for the worker.
  void AttributeDrift(const scim::User& desired, const scim::RemoteUser& remote,
                      EmployeeDrift* d) const {
    bool attrs = false;
    bool active = false;
    scim::User wanted = desired;
    if (!options_.follow_user_name && !remote.attributes.user_name.empty()) {
      wanted.user_name.clear();  // username_updates: keep
    }
    for (const scim::PatchOp& op : scim::Diff(wanted, remote)) {
      (op.path == "active" ? active : attrs) = true;
      d->changes.push_back({AttributeName(op.path), AttributeValue(remote.attributes, op.path),
                            op.kind == scim::PatchOp::Kind::kRemove
                                ? std::nullopt
                                : AttributeValue(desired, op.path)});
    }
    if (attrs) d->kinds.push_back(DriftKind::kAttributes);
    if (active) d->kinds.push_back(DriftKind::kActive);
  }

  // 4. Orphans: active JumpCloud users in this profile's scope anchored to an employee the HRIS
  // does not list.
  Status FindOrphans() {
    for (bool c : claimed_) matched_users_ += c ? 1 : 0;
    for (size_t i = 0; i < jc_.users.size(); ++i) {
      const scim::RemoteUser& u = jc_.users[i];
      if (claimed_[i] || u.external_id.empty() || u.attributes.active == false ||
          anchors_.count(u.external_id) != 0) {
        continue;
      }
      bool foreign = false;
      for (const std::string& scope : options_.foreign_scopes) {
        auto link = deps_.links->Get(scope, u.external_id);
        if (!link.ok()) return Error::Transient("redis (link table): " + link.error().message);
        foreign = foreign || (*link && **link == u.id);
      }
      if (foreign) continue;
      std::optional<std::string> tenant;
      std::string employee_key = u.external_id;
      if (options_.multi_scope) {
        // Only users in this profile's namespace can be its orphans; the rest are other scopes'
        // (or predate the second scope: `scimsyncd migrate-scope`).
        for (const std::string& t : profile_.list_tenants()) {
          if (auto key = EmployeeKeyInScope(
                  u.external_id,
                  config::ExternalIdPrefix(options_.multi_scope, options_.scope_prefix, t))) {
            tenant = t;
            employee_key = *key;
          }
        }
        if (!tenant) continue;
      } else if (profile_.list_tenants().size() == 1) {
        tenant = profile_.list_tenants()[0];
      } else {
        for (const std::string& t : profile_.list_tenants()) {
          auto link = deps_.links->Get(ScopeOf(profile_.name(), t), u.external_id);
          if (!link.ok()) return Error::Transient("redis (link table): " + link.error().message);
          if (*link && **link == u.id) tenant = t;
        }
      }
      ++matched_users_;
      AddOrphan(u, tenant, employee_key);
    }
    return {};
  }

  void AddOrphan(const scim::RemoteUser& u, const std::optional<std::string>& tenant,
                 const std::string& employee_key) {
    EmployeeDrift d;
    d.tenant = tenant.value_or("");
    d.employee_key = employee_key;
    d.external_id = u.external_id;
    d.user_name = u.attributes.user_name;
    d.email = u.attributes.email.value_or("");
    d.jumpcloud_id = u.id;
    d.kinds = {DriftKind::kOrphan};
    d.fixable = options_.orphans == OrphanPolicy::kSuspend && !profile_.payload_carries_record() &&
                tenant.has_value();
    if (profile_.payload_carries_record()) {
      d.note =
          "no HRIS record to sync it from: suspend it in JumpCloud, or have the HRIS send "
          "the employee's termination";
    } else if (options_.orphans == OrphanPolicy::kReport) {
      d.note =
          "reported only (reconcile.orphans: report): it may belong to another tool or an "
          "earlier HRIS. Suspend it in JumpCloud, or set reconcile.orphans: suspend to have "
          "a sync ask the HRIS about it";
    } else if (!tenant) {
      d.note =
          "the profile serves several tenants and no link says whose user this is: not "
          "enqueued";
    }
    ++rep_.orphans;
    rep_.drift.push_back(std::move(d));
    source_.push_back(nullptr);
  }

  // 5. The plan's suspensions. An orphan item suspends only when the HRIS answers 404 for the
  // employee: ask now, so the count is what the workers will do.
  Status CountSuspensions() {
    int64_t orphans_asked = 0;
    for (EmployeeDrift& d : rep_.drift) {
      if (cancelled()) return Cancelled();
      if (d.kinds == std::vector{DriftKind::kOrphan}) {
        if (!d.fixable) continue;
        if (++orphans_asked % 50 == 0) {
          if (Status s = Renew(); !s.ok()) return s;
        }
        connectors::ListedEmployee gone;
        gone.tenant = d.tenant;
        gone.employee_key = d.employee_key;
        auto plan = profile_.PlanListed(gone, *deps_.fetcher, now_s_);
        const bool suspends = !plan.ok() || plan->action == connectors::Action::kSuspend ||
                              plan->action == connectors::Action::kDelete ||
                              (plan->action != connectors::Action::kIgnore && plan->user &&
                               plan->user->active == false);
        if (!suspends) {
          continue;  // the HRIS still knows the employee: a sync, not a suspension
        }
        ++rep_.suspensions;  // 404, or unknown: counted as one, to be safe
        d.changes.push_back({"active", std::string("true"), std::string("false")});
        continue;
      }
      for (const AttributeChange& c : d.changes) {
        if ((c.attribute == "active" && c.hris == std::optional<std::string>("false")) ||
            c.attribute == "user") {
          ++rep_.suspensions;
          break;
        }
      }
    }
    return {};
  }

  // The links of this profile's scopes, counted now, not cached: the threshold must follow the
  // table it protects.
  Result<int64_t> CountLinks() {
    int64_t linked = 0;
    if (deps_.pool == nullptr || deps_.links == nullptr) return linked;
    for (const std::string& t : profile_.list_tenants()) {
      auto n = deps_.links->Count(ScopeOf(profile_.name(), t));
      if (!n.ok()) return Error::Transient("redis (link table): " + n.error().message);
      linked += *n;
    }
    return linked;
  }

  // The suspensions against workers.guard's threshold: over it, the plan is held whole unless
  // --confirm.
  Status ApplyThreshold() {
    auto linked = CountLinks();
    if (!linked.ok()) return linked.error();
    rep_.scope_users = std::max(*linked, matched_users_);
    rep_.suspend_limit = options_.max_suspends;
    if (options_.max_suspend_percent > 0) {
      // At every size: in a 20-person company 18 suspensions are a broken feed, not a reorg.
      const auto by_percent = static_cast<int64_t>(
          std::ceil(static_cast<double>(rep_.scope_users) * options_.max_suspend_percent / 100.0));
      rep_.suspend_limit = std::min(rep_.suspend_limit, std::max<int64_t>(1, by_percent));
    }
    const bool over = rep_.suspensions > rep_.suspend_limit;
    rep_.held = over && !options_.confirm;
    rep_.confirmed = over && options_.confirm && !dry_run_;
    return {};
  }

  // Employees of this profile with an item in a retry set ("tenant\x1fkey"): held by the guard
  // or backing off. One waiting item per employee is enough.
  Result<std::set<std::string>> WaitingEmployees() {
    std::set<std::string> waiting;
    for (int p = 0; p < deps_.queue->partitions(); ++p) {
      auto retries = deps_.queue->ListRetries(p);
      if (!retries.ok()) return Error::Transient("redis (retry sets): " + retries.error().message);
      for (const auto& sch : *retries) {
        if (sch.item.profile == profile_.name()) {
          waiting.insert(sch.item.tenant + kSep + sch.item.employee_key);
        }
      }
    }
    return waiting;
  }

  // The sync item for drift entry `k`: what a webhook for the employee would have enqueued.
  queue::Item ItemFor(size_t k) const {
    const EmployeeDrift& d = rep_.drift[k];
    connectors::WorkItem work;
    if (source_[k] != nullptr) {
      work = profile_.ReconcileItem(*source_[k]);
    } else {
      connectors::ListedEmployee gone;
      gone.tenant = d.tenant;
      gone.employee_key = d.employee_key;
      work = profile_.ReconcileItem(gone);
    }
    queue::Item item;
    item.profile = profile_.name();
    item.tenant = work.tenant;
    item.employee_key = work.employee_key;
    item.dedup_id = "reconcile-" + rep_.run_id + "-" +
                    (d.tenant.empty() ? std::string() : d.tenant + "/") + d.employee_key;
    item.event_type = work.event_type;
    item.occurred_at = work.occurred_at;
    item.trace_id = "reconcile-" + rep_.run_id;
    item.payload = work.payload;
    item.received_at_ms = clock_.NowMs();
    return item;
  }

  // 6. One ordinary sync item per drifted employee that a sync can fix -- all of them, or, when
  // the plan is held, none (stored whole for `scimsyncd guard release`). Nothing in a dry run.
  Status Enqueue() {
    if (dry_run_ || deps_.queue == nullptr) return {};
    auto waiting = WaitingEmployees();
    if (!waiting.ok()) return waiting.error();
    if (Status s = OpenGuardIfConfirmed(); !s.ok()) return s;
    std::vector<queue::Item> batch;
    std::vector<size_t> batch_drift;
    auto flush = [&]() -> Status {
      if (batch.empty()) return {};
      auto out = deps_.queue->EnqueueBatch(batch, profile_.dedup_window_s());
      if (!out.ok()) return Error::Transient("enqueueing the fixes: " + out.error().message);
      rep_.enqueued += out->accepted;
      rep_.duplicates += out->duplicates;
      for (size_t k : batch_drift) rep_.drift[k].enqueued = true;
      batch.clear();
      batch_drift.clear();
      return {};
    };
    HeldPlan held{rep_.run_id,
                  rep_.suspensions,
                  rep_.suspend_limit,
                  rep_.hris_employees,
                  profile_.dedup_window_s(),
                  profile_.name(),
                  {}};
    for (size_t k = 0; k < rep_.drift.size(); ++k) {
      EmployeeDrift& d = rep_.drift[k];
      if (!d.fixable) continue;
      if (waiting->count(d.tenant + kSep + d.employee_key) != 0) {
        // One waiting item per employee: it syncs the then-current record when it runs.
        ++rep_.waiting;
        d.note =
            "an item for this employee already waits in the queue (held or backing off): "
            "not enqueued again";
        continue;
      }
      queue::Item item = ItemFor(k);
      // JumpCloud differs from what scimsync last applied (a manual edit, a deleted user): the
      // worker must read the user, not trust the link's snapshot (converger.h).
      if (deps_.links != nullptr && !d.external_id.empty()) {
        Status dropped =
            deps_.links->DropSnapshot(ScopeOf(profile_.name(), d.tenant), d.external_id);
        if (!dropped.ok()) {
          return Error::Transient("redis (link table): " + dropped.error().message);
        }
      }
      if (rep_.held) {
        held.items.push_back(std::move(item));
        continue;
      }
      batch.push_back(std::move(item));
      batch_drift.push_back(k);
      if (batch.size() >= options_.enqueue_batch) {
        if (Status s = flush(); !s.ok()) return s;
      }
    }
    if (Status s = flush(); !s.ok()) return s;
    return RecordPlan(held);
  }

  // The admin confirmed this many suspensions (--confirm): the workers' guard must not hold them
  // a second time.
  Status OpenGuardIfConfirmed() {
    if (!rep_.confirmed || !deps_.open_guard) return {};
    if (Status s = deps_.open_guard(); !s.ok()) {
      return Error::Transient("opening the mass-suspension guard: " + s.error().message);
    }
    log::Warn("reconciliation: a plan over the suspension threshold was confirmed",
              {{"profile", rep_.profile},
               {"run", rep_.run_id},
               {"suspensions", rep_.suspensions},
               {"limit", rep_.suspend_limit}});
    return {};
  }

  // A held plan is stored whole for `scimsyncd guard release`. An applied one supersedes an
  // older held plan, and its list is the one the next run's is compared with.
  Status RecordPlan(const HeldPlan& held) {
    if (deps_.pool == nullptr) return {};
    if (rep_.held) {
      if (Status s = StoreHeldPlan(*deps_.pool, keys_.held_key_, held); !s.ok()) {
        return Error::Transient("redis (held plan): " + s.error().message);
      }
      return {};
    }
    auto conn = deps_.pool->Acquire();
    auto r = conn->Commands({{"DEL", keys_.held_key_},
                             {"SET", keys_.listed_key_, std::to_string(rep_.hris_employees)}});
    if (!r.ok()) return Error::Transient("redis: " + r.error().message);
    return {};
  }

  // What an orphan's item does (or would do, in a dry run), unless a note already says why it
  // was not enqueued.
  void NoteOrphans() {
    const bool enqueues = !dry_run_ && deps_.queue != nullptr;
    for (EmployeeDrift& d : rep_.drift) {
      if (!d.fixable || d.kinds != std::vector{DriftKind::kOrphan}) continue;
      if (enqueues && !d.note.empty()) continue;
      d.note = std::string(enqueues ? "a sync asks" : "a sync would ask") +
               " the HRIS for employee " + d.employee_key +
               "; if it answers 404 the user is suspended (fetch.not_found)";
    }
  }

  void LogFinished() const {
    log::Info("reconciliation finished", {{"profile", rep_.profile},
                                          {"run", rep_.run_id},
                                          {"dry_run", dry_run_},
                                          {"hris_employees", rep_.hris_employees},
                                          {"jumpcloud_users", rep_.jumpcloud_users},
                                          {"in_sync", rep_.in_sync},
                                          {"missing", rep_.missing},
                                          {"attributes", rep_.attributes},
                                          {"active", rep_.active},
                                          {"orphans", rep_.orphans},
                                          {"conflicts", rep_.conflicts},
                                          {"invalid", rep_.invalid},
                                          {"errors", rep_.errors},
                                          {"enqueued", rep_.enqueued},
                                          {"waiting", rep_.waiting},
                                          {"suspensions", rep_.suspensions},
                                          {"suspend_limit", rep_.suspend_limit},
                                          {"held", rep_.held},
                                          {"ms", rep_.finished_ms - rep_.started_ms}});
    if (rep_.held) {
      log::Error(
          "reconciliation held: its plan would suspend more users than workers.guard allows; "
          "nothing was enqueued. Check the HRIS, then run `scimsyncd guard release` to apply it",
          {{"profile", rep_.profile},
           {"run", rep_.run_id},
           {"suspensions", rep_.suspensions},
           {"limit", rep_.suspend_limit},
           {"scope_users", rep_.scope_users}});
    }
  }

  const ReconcilerOptions& options_;
  const ReconcilerDeps& deps_;
  Reconciler& keys_;  // the lease and the Redis keys
  const connectors::Profile& profile_;
  const Clock& clock_;
  const bool dry_run_;
  const std::string token_;  // the lease to renew as the run goes; empty without one (dry runs)
  int64_t now_s_ = 0;
  ReconcileReport rep_;
  std::vector<connectors::ListedEmployee> listed_;
  UserIndex jc_;
  std::vector<bool> claimed_;      // per JumpCloud user: an employee's anchor reaches it
  std::set<std::string> anchors_;  // every employee key and externalId the HRIS listed
  std::vector<const connectors::ListedEmployee*> source_;  // per drift entry; null: orphan
  int64_t matched_users_ = 0;  // this scope's users: claimed ones and orphans
};

Result<ReconcileReport> Reconciler::Execute(bool dry_run, const std::string& run_id, bool leased) {
  return Pass(*this, dry_run, run_id, leased).Execute();
}

}  // namespace scimsync::daemon
