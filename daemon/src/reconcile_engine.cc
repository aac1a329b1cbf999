#include "scimsync/daemon/reconcile.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "scimsync/daemon/admin.h"
#include "scimsync/daemon/app.h"
#include "scimsync/daemon/coordination.h"
#include "scimsync/daemon/worker.h"
#include "scimsync/log.h"
#include "scimsync/scim/protocol.h"
#include "scimsync/strings.h"

namespace scimsync::daemon {
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

std::string Quoted(const std::optional<std::string>& v) {
  if (!v) return "(none)";
  std::string out = "\"";
  for (char c : *v) {
    if (c == '"' || c == '\\') out += '\\';
    out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
  }
  return out + "\"";
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  AppendJsonEscaped(out, s);
  return out + "\"";
}

std::string JsonOpt(const std::optional<std::string>& v) { return v ? JsonString(*v) : "null"; }

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

const redis::Script& StoreHeldScript() {
  static const redis::Script s(
      "redis.call('DEL', KEYS[1]) for i = 1, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end "
      "return #ARGV");
  return s;
}

// A held plan's items, one Redis list element each: the fields joined by \x1f (compact JSON
// payloads never hold a raw control character).
constexpr char kSep = '\x1f';
std::string EncodeItem(const queue::Item& item) {
  std::string out;
  for (const std::string* f :
       {&item.profile, &item.tenant, &item.employee_key, &item.dedup_id, &item.event_type,
        &item.occurred_at, &item.trace_id, &item.payload}) {
    out += *f;
    out += kSep;
  }
  return out + std::to_string(item.received_at_ms);
}
std::vector<std::string> SplitFields(const std::string& s) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == kSep) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}
std::optional<queue::Item> DecodeItem(const std::string& s) {
  const std::vector<std::string> f = SplitFields(s);
  if (f.size() != 9) return std::nullopt;
  queue::Item item;
  item.profile = f[0];
  item.tenant = f[1];
  item.employee_key = f[2];
  item.dedup_id = f[3];
  item.event_type = f[4];
  item.occurred_at = f[5];
  item.trace_id = f[6];
  item.payload = f[7];
  item.received_at_ms = std::strtoll(f[8].c_str(), nullptr, 10);
  return item;
}

// Glob characters in a Redis SCAN pattern, escaped.
std::string GlobEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::optional<std::string> EmployeeKeyInScope(const std::string& external_id,
                                              const std::string& scope_prefix) {
  if (external_id.size() <= scope_prefix.size()) return std::nullopt;
  if (external_id.compare(0, scope_prefix.size(), scope_prefix) != 0) return std::nullopt;
  return external_id.substr(scope_prefix.size());
}

const char* DriftKindName(DriftKind kind) {
  switch (kind) {
    case DriftKind::kMissing:
      return "missing";
    case DriftKind::kAttributes:
      return "attributes";
    case DriftKind::kActive:
      return "active";
    case DriftKind::kOrphan:
      return "orphan";
  }
  return "?";
}

const char* ProblemKindName(ReconcileProblem::Kind kind) {
  switch (kind) {
    case ReconcileProblem::Kind::kConflict:
      return "conflict";
    case ReconcileProblem::Kind::kInvalid:
      return "invalid";
    case ReconcileProblem::Kind::kError:
      return "error";
  }
  return "?";
}

int ExitCodeFor(const Error& error) {
  switch (error.kind) {
    case ErrorKind::kAuth:
      return kExitNoPerm;
    case ErrorKind::kTransient:
      return kExitUnavailable;
    case ErrorKind::kConflict:
      return kExitTempFail;
    case ErrorKind::kInvalid:
      return kExitConfig;
    case ErrorKind::kPermanent:
    case ErrorKind::kNotFound:
      return kExitDataErr;
  }
  return kExitSoftware;
}

int ExitCodeFor(const ReconcileReport& report) {
  if (!report.refused.empty()) return kExitRefused;
  if (report.held) return kExitHeld;
  if (!report.problems.empty()) return kExitDrift;
  for (const EmployeeDrift& d : report.drift) {
    if (report.dry_run || !d.enqueued) return kExitDrift;
  }
  return kExitOk;
}

// ---- the run -----------------------------------------------------------------------------

Reconciler::Reconciler(ReconcilerOptions options, ReconcilerDeps deps)
    : options_(std::move(options)), deps_(std::move(deps)) {
  const std::string name = deps_.profile ? deps_.profile->name() : std::string();
  lease_key_ = options_.key_prefix + ":reconcile:" + name;
  last_key_ = lease_key_ + ":last";
  listed_key_ = lease_key_ + ":listed";
  held_key_ = lease_key_ + ":held";
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

Result<ReconcileReport> Reconciler::Execute(bool dry_run, const std::string& run_id, bool leased) {
  // Renewed as the run goes on; without a lease (dry runs) there is nothing to renew.
  const std::string token = leased ? run_id : std::string();
  const connectors::Profile& profile = *deps_.profile;
  const Clock& clock = *deps_.clock;
  ReconcileReport rep;
  rep.run_id = run_id;
  rep.profile = profile.name();
  rep.dry_run = dry_run;
  rep.started_ms = clock.NowMs();
  const int64_t now_s = rep.started_ms / 1000;
  auto cancelled = [&] { return deps_.cancel != nullptr && deps_.cancel->load(); };
  const Error kCancelled = Error::Transient("the reconciliation was stopped (shutdown)");
  auto Refuse = [&](ReconcileReport r) -> Result<ReconcileReport> {
    r.finished_ms = clock.NowMs();
    log::Error("reconciliation refused", {{"profile", r.profile},
                                          {"run", r.run_id},
                                          {"dry_run", dry_run},
                                          {"hris_employees", r.hris_employees},
                                          {"last_listed", r.last_listed},
                                          {"reason", r.refused}});
    return r;
  };
  if (!profile.can_list()) {
    return Error::Invalid("profile " + profile.name() +
                          " has no list section, so the HRIS side cannot be listed; add one "
                          "(docs/profiles.md, list)");
  }

  // 1. Everyone the HRIS lists, each page retried like a SCIM page.
  RetryingListFetcher list_fetcher(*deps_.fetcher, options_.scim_list.retry, clock, *deps_.random,
                                   deps_.sleep, deps_.cancel);
  std::vector<connectors::ListedEmployee> listed;
  for (const std::string& tenant : profile.list_tenants()) {
    if (cancelled()) return kCancelled;
    auto part = profile.ListEmployees(tenant, list_fetcher, now_s);
    if (!part.ok()) {
      Error e = part.error();
      e.message = "listing the HRIS employees" +
                  (tenant.empty() ? std::string() : " of tenant " + tenant) + ": " + e.message;
      return e;
    }
    listed.insert(listed.end(), part->begin(), part->end());
  }
  if (Status s = RenewLease(token); !s.ok()) return s.error();
  rep.hris_employees = static_cast<int64_t>(listed.size());

  // A list much shorter than the last successful run's is far more often a broken export, a
  // narrowed API user or a lost page than a wave of departures: refuse it before planning.
  if (deps_.pool != nullptr) {
    auto conn = deps_.pool->Acquire();
    auto last = conn->Command({"GET", listed_key_});
    if (!last.ok()) return Error::Transient("redis: " + last.error().message);
    rep.last_listed = last->AsInteger().value_or(-1);
  }
  if (rep.last_listed > 0 && !options_.allow_shrink &&
      static_cast<double>(rep.hris_employees) <
          static_cast<double>(rep.last_listed) * (1.0 - options_.max_shrink_percent / 100.0)) {
    const int64_t shrink_pct = (rep.last_listed - rep.hris_employees) * 100 / rep.last_listed;
    rep.refused = "the HRIS list of profile " + profile.name() + " has " +
                  std::to_string(rep.hris_employees) + " employees, " + std::to_string(shrink_pct) +
                  "% fewer than the " + std::to_string(rep.last_listed) +
                  " of the last successful run (more than reconcile.max_shrink_percent, " +
                  std::to_string(static_cast<int64_t>(options_.max_shrink_percent)) +
                  "%); nothing was planned or enqueued. Check the HRIS export and the API "
                  "user's permissions; if the people really left, run again with "
                  "--allow-shrink";
    return Refuse(std::move(rep));
  }

  // 2. Every JumpCloud user.
  if (cancelled()) return kCancelled;
  scim::ListDeps list_deps;
  list_deps.transport = deps_.transport;
  list_deps.limiter = deps_.limiter;
  list_deps.clock = deps_.clock;
  list_deps.random = deps_.random;
  list_deps.sleep = deps_.sleep;
  scim::ListStats stats;
  auto users_result = scim::ListAllUsers(options_.scim_list, list_deps, &stats);
  rep.scim_requests = stats.requests;
  if (!users_result.ok()) {
    Error e = users_result.error();
    e.message = "listing the JumpCloud users: " + e.message;
    return e;
  }
  const std::vector<scim::RemoteUser>& users = *users_result;
  if (Status s = RenewLease(token); !s.ok()) return s.error();
  rep.hris_employees = static_cast<int64_t>(listed.size());
  rep.jumpcloud_users = static_cast<int64_t>(users.size());

  size_t anchored = 0;
  std::map<std::string, size_t> by_id;
  std::multimap<std::string, size_t> by_external_id;
  std::multimap<std::string, size_t> by_user_name;
  for (size_t i = 0; i < users.size(); ++i) {
    by_id[users[i].id] = i;
    if (!users[i].external_id.empty()) {
      by_external_id.emplace(users[i].external_id, i);
      ++anchored;
    }
    by_user_name.emplace(AsciiLower(users[i].attributes.user_name), i);
  }
  if (listed.empty() && anchored > 0) {
    rep.refused = "the HRIS list of profile " + profile.name() + " is empty while " +
                  std::to_string(anchored) +
                  " JumpCloud users carry an externalId; refusing to report them all as "
                  "orphans. Check list.records in the profile and what the API user may see";
    return Refuse(std::move(rep));
  }

  // 3. Each employee: the desired user, its JumpCloud user, the difference.
  std::sort(listed.begin(), listed.end(), [](const auto& a, const auto& b) {
    return std::tie(a.tenant, a.employee_key) < std::tie(b.tenant, b.employee_key);
  });
  std::vector<bool> claimed(users.size(), false);
  std::set<std::string> anchors;
  std::vector<const connectors::ListedEmployee*> source;  // per drift entry; null for orphans
  auto problem = [&](ReconcileProblem::Kind kind, const connectors::ListedEmployee& e,
                     std::string message) {
    rep.problems.push_back({kind, e.tenant, e.employee_key, std::move(message)});
    switch (kind) {
      case ReconcileProblem::Kind::kConflict:
        ++rep.conflicts;
        break;
      case ReconcileProblem::Kind::kInvalid:
        ++rep.invalid;
        break;
      case ReconcileProblem::Kind::kError:
        ++rep.errors;
        break;
    }
  };
  auto ids_of = [&](auto range) {
    std::string out;
    for (auto it = range.first; it != range.second; ++it) {
      out += (out.empty() ? "" : ", ") + users[it->second].id;
    }
    return out;
  };
  for (size_t n = 0; n < listed.size(); ++n) {
    const connectors::ListedEmployee& e = listed[n];
    if (cancelled()) return kCancelled;
    if (n % 50 == 49) {
      if (Status s = RenewLease(token); !s.ok()) return s.error();
    }
    anchors.insert(e.employee_key);
    auto plan = profile.PlanListed(e, *deps_.fetcher, now_s);
    if (!plan.ok()) {
      // Wrong HRIS credentials fail every employee alike: stop instead of listing them all.
      if (plan.error().kind == ErrorKind::kAuth) return plan.error();
      problem(ReconcileProblem::Kind::kError, e,
              "cannot read the employee's record: " + plan.error().message);
      continue;
    }
    if (plan->action == connectors::Action::kIgnore || !plan->user) {
      ++rep.in_sync;  // the profile wants nothing done for this employee
      continue;
    }
    // What the worker would write: the externalId in this scope's namespace (bare with one).
    scim::User desired = *plan->user;
    desired.external_id =
        config::ExternalIdPrefix(options_.multi_scope, options_.scope_prefix, e.tenant) +
        (desired.external_id.empty() ? e.employee_key : desired.external_id);
    const std::string ext = desired.external_id;
    anchors.insert(ext);
    const std::string scope = ScopeOf(profile.name(), e.tenant);

    // The join, in the converger's order: link, externalId, userName.
    std::optional<size_t> match;
    std::string conflict;
    auto link = deps_.links->Get(scope, ext);
    if (!link.ok()) return Error::Transient("redis (link table): " + link.error().message);
    if (*link) {
      if (auto it = by_id.find(**link); it != by_id.end()) {
        match = it->second;
        const scim::RemoteUser& u = users[it->second];
        if (!u.external_id.empty() && u.external_id != ext) {
          conflict = "the link table maps employee " + ext + " to JumpCloud user " + u.id +
                     ", which carries externalId " + u.external_id +
                     " (another employee); fix the user in JumpCloud or delete the link";
        }
      }
    }
    if (!match) {
      auto range = by_external_id.equal_range(ext);
      const auto count = std::distance(range.first, range.second);
      if (count > 1) {
        conflict = std::to_string(count) + " JumpCloud users carry externalId " + ext + ": " +
                   ids_of(range) + "; delete or fix the duplicates in JumpCloud";
        for (auto it = range.first; it != range.second; ++it) claimed[it->second] = true;
      } else if (count == 1) {
        match = range.first->second;
      }
    }
    if (!match && conflict.empty() && !desired.user_name.empty()) {
      auto range = by_user_name.equal_range(AsciiLower(desired.user_name));
      const auto count = std::distance(range.first, range.second);
      if (count > 1) {
        conflict = std::to_string(count) + " JumpCloud users match userName " + desired.user_name +
                   ": " + ids_of(range) + "; employee " + ext + " is linked to none of them";
      } else if (count == 1) {
        const scim::RemoteUser& u = users[range.first->second];
        if (!u.external_id.empty() && u.external_id != ext) {
          conflict = "userName " + desired.user_name + " belongs to JumpCloud user " + u.id +
                     ", which carries externalId " + u.external_id + " (another employee)";
        } else {
          match = range.first->second;
        }
      }
    }
    if (match) claimed[*match] = true;
    if (!conflict.empty()) {
      problem(ReconcileProblem::Kind::kConflict, e, conflict);
      continue;
    }
    // A second account for a linked employee: the workers keep syncing the linked one, but the
    // other still lets the person in (or confuses the admins). A human decides which goes.
    if (match) {
      std::string others;
      auto range = by_external_id.equal_range(ext);
      for (auto it = range.first; it != range.second; ++it) {
        if (it->second == *match) continue;
        claimed[it->second] = true;
        const scim::RemoteUser& dup = users[it->second];
        others += (others.empty() ? "" : ", ") + dup.id + " (userName " + dup.attributes.user_name +
                  (dup.attributes.active == false ? ", suspended)" : ", active)");
      }
      if (!others.empty()) {
        problem(ReconcileProblem::Kind::kConflict, e,
                "duplicate account: employee " + ext + " is linked to JumpCloud user " +
                    users[*match].id + ", and " + others + " also carries externalId " + ext +
                    "; delete or suspend the duplicate in JumpCloud (the linked user is "
                    "still synced)");
      }
    }

    EmployeeDrift d;
    d.tenant = e.tenant;
    d.employee_key = e.employee_key;
    d.external_id = ext;
    d.user_name = desired.user_name;
    d.email = desired.email.value_or("");
    if (match) d.jumpcloud_id = users[*match].id;
    const auto action = plan->action;
    if (action == connectors::Action::kSuspend || action == connectors::Action::kDelete) {
      if (match) {
        const scim::User& remote = users[*match].attributes;
        if (action == connectors::Action::kDelete) {
          d.kinds.push_back(DriftKind::kActive);
          d.changes.push_back({"user", std::string("present"), std::nullopt});
        } else if (remote.active != false) {
          d.kinds.push_back(DriftKind::kActive);
          d.changes.push_back(
              {"active", AttributeValue(remote, "active").value_or("true"), std::string("false")});
        }
      }
    } else {
      if (!plan->problems.empty()) {
        std::string text = "the mapped user breaks JumpCloud's rules: ";
        for (size_t i = 0; i < plan->problems.size(); ++i) {
          text += (i ? "; " : "") + plan->problems[i].ToString();
        }
        problem(ReconcileProblem::Kind::kInvalid, e, text);
        continue;
      }
      if (!match) {
        // A leaver JumpCloud never knew needs no user.
        if (desired.active != false) d.kinds.push_back(DriftKind::kMissing);
      } else {
        bool attrs = false;
        bool active = false;
        scim::User wanted = desired;
        if (!options_.follow_user_name && !users[*match].attributes.user_name.empty()) {
          wanted.user_name.clear();  // username_updates: keep
        }
        for (const scim::PatchOp& op : scim::Diff(wanted, users[*match])) {
          (op.path == "active" ? active : attrs) = true;
          d.changes.push_back(
              {AttributeName(op.path), AttributeValue(users[*match].attributes, op.path),
               op.kind == scim::PatchOp::Kind::kRemove ? std::nullopt
                                                       : AttributeValue(desired, op.path)});
        }
        if (attrs) d.kinds.push_back(DriftKind::kAttributes);
        if (active) d.kinds.push_back(DriftKind::kActive);
      }
    }
    if (d.kinds.empty()) {
      ++rep.in_sync;
      continue;
    }
    for (DriftKind k : d.kinds) {
      if (k == DriftKind::kMissing) ++rep.missing;
      if (k == DriftKind::kAttributes) ++rep.attributes;
      if (k == DriftKind::kActive) ++rep.active;
    }
    rep.drift.push_back(std::move(d));
    source.push_back(&e);
  }

  // 4. Orphans: active JumpCloud users in this profile's scope anchored to an employee the HRIS
  // does not list.
  int64_t matched_users = 0;  // this scope's users the join found, active or not
  for (bool c : claimed) matched_users += c ? 1 : 0;
  const std::vector<std::string> tenants = profile.list_tenants();
  for (size_t i = 0; i < users.size(); ++i) {
    const scim::RemoteUser& u = users[i];
    if (claimed[i] || u.external_id.empty() || u.attributes.active == false ||
        anchors.count(u.external_id) != 0) {
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
      for (const std::string& t : tenants) {
        if (auto key = EmployeeKeyInScope(
                u.external_id,
                config::ExternalIdPrefix(options_.multi_scope, options_.scope_prefix, t))) {
          tenant = t;
          employee_key = *key;
        }
      }
      if (!tenant) continue;
    } else if (tenants.size() == 1) {
      tenant = tenants[0];
    } else {
      for (const std::string& t : tenants) {
        auto link = deps_.links->Get(ScopeOf(profile.name(), t), u.external_id);
        if (!link.ok()) return Error::Transient("redis (link table): " + link.error().message);
        if (*link && **link == u.id) tenant = t;
      }
    }
    ++matched_users;
    EmployeeDrift d;
    d.tenant = tenant.value_or("");
    d.employee_key = employee_key;
    d.external_id = u.external_id;
    d.user_name = u.attributes.user_name;
    d.email = u.attributes.email.value_or("");
    d.jumpcloud_id = u.id;
    d.kinds = {DriftKind::kOrphan};
    d.fixable = options_.orphans == OrphanPolicy::kSuspend && !profile.payload_carries_record() &&
                tenant.has_value();
    if (profile.payload_carries_record()) {
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
    ++rep.orphans;
    rep.drift.push_back(std::move(d));
    source.push_back(nullptr);
  }

  // 5. The plan's suspensions against the threshold. An orphan item suspends only when the HRIS
  // answers 404 for the employee: ask now, so the count is what the workers will do.
  int64_t orphans_asked = 0;
  for (size_t k = 0; k < rep.drift.size(); ++k) {
    EmployeeDrift& d = rep.drift[k];
    if (cancelled()) return kCancelled;
    if (d.kinds == std::vector{DriftKind::kOrphan}) {
      if (!d.fixable) continue;
      if (++orphans_asked % 50 == 0) {
        if (Status s = RenewLease(token); !s.ok()) return s.error();
      }
      connectors::ListedEmployee gone;
      gone.tenant = d.tenant;
      gone.employee_key = d.employee_key;
      auto plan = profile.PlanListed(gone, *deps_.fetcher, now_s);
      const bool suspends = !plan.ok() || plan->action == connectors::Action::kSuspend ||
                            plan->action == connectors::Action::kDelete ||
                            (plan->action != connectors::Action::kIgnore && plan->user &&
                             plan->user->active == false);
      if (!suspends) {
        continue;  // the HRIS still knows the employee: a sync, not a suspension
      }
      ++rep.suspensions;  // 404, or unknown: counted as one, to be safe
      d.changes.push_back({"active", std::string("true"), std::string("false")});
      continue;
    }
    for (const AttributeChange& c : d.changes) {
      if ((c.attribute == "active" && c.hris == std::optional<std::string>("false")) ||
          c.attribute == "user") {
        ++rep.suspensions;
        break;
      }
    }
  }
  int64_t linked = 0;
  if (deps_.pool != nullptr) {
    // Counted now, not cached: the threshold must follow the table it protects.
    auto conn = deps_.pool->Acquire();
    for (const std::string& t : tenants) {
      const std::string pattern =
          options_.key_prefix + ":link:" + GlobEscape(ScopeOf(profile.name(), t)) + ":*";
      std::string cursor = "0";
      do {
        auto r = conn->Command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
        if (!r.ok()) return Error::Transient("redis (link table): " + r.error().message);
        if (r->elements().size() != 2) break;
        cursor = r->elements()[0].text();
        linked += static_cast<int64_t>(r->elements()[1].elements().size());
      } while (cursor != "0");
    }
  }
  rep.scope_users = std::max(linked, matched_users);
  rep.suspend_limit = options_.max_suspends;
  if (options_.max_suspend_percent > 0) {
    // At every size: in a 20-person company 18 suspensions are a broken feed, not a reorg.
    const auto by_percent = static_cast<int64_t>(
        std::ceil(static_cast<double>(rep.scope_users) * options_.max_suspend_percent / 100.0));
    rep.suspend_limit = std::min(rep.suspend_limit, std::max<int64_t>(1, by_percent));
  }
  const bool over = rep.suspensions > rep.suspend_limit;
  rep.held = over && !options_.confirm;
  rep.confirmed = over && options_.confirm && !dry_run;

  // 6. One ordinary sync item per drifted employee that a sync can fix -- all of them, or, when
  // the plan is held, none (stored for `scimsyncd guard release`).
  std::set<std::string> waiting;  // "tenant\x1fkey" with an item in a retry set
  if (!dry_run && deps_.queue != nullptr) {
    for (int p = 0; p < deps_.queue->partitions(); ++p) {
      auto retries = deps_.queue->ListRetries(p);
      if (!retries.ok()) return Error::Transient("redis (retry sets): " + retries.error().message);
      for (const auto& sch : *retries) {
        if (sch.item.profile == profile.name()) {
          waiting.insert(sch.item.tenant + kSep + sch.item.employee_key);
        }
      }
    }
  }
  if (!dry_run && deps_.queue != nullptr) {
    std::vector<queue::Item> batch;
    std::vector<size_t> batch_drift;
    auto flush = [&]() -> Status {
      if (batch.empty()) return {};
      auto out = deps_.queue->EnqueueBatch(batch, profile.dedup_window_s());
      if (!out.ok()) return out.error();
      rep.enqueued += out->accepted;
      rep.duplicates += out->duplicates;
      for (size_t k : batch_drift) rep.drift[k].enqueued = true;
      batch.clear();
      batch_drift.clear();
      return {};
    };
    std::vector<std::string> held_items;
    if (rep.confirmed && deps_.open_guard) {
      // The admin confirmed this many suspensions: the workers' guard must not hold them again.
      if (Status s = deps_.open_guard(); !s.ok()) {
        return Error::Transient("opening the mass-suspension guard: " + s.error().message);
      }
      log::Warn("reconciliation: a plan over the suspension threshold was confirmed",
                {{"profile", rep.profile},
                 {"run", rep.run_id},
                 {"suspensions", rep.suspensions},
                 {"limit", rep.suspend_limit}});
    }
    for (size_t k = 0; k < rep.drift.size(); ++k) {
      EmployeeDrift& d = rep.drift[k];
      if (!d.fixable) continue;
      if (waiting.count(d.tenant + kSep + d.employee_key) != 0) {
        // One waiting item per employee: it syncs the then-current record when it runs.
        ++rep.waiting;
        d.note =
            "an item for this employee already waits in the queue (held or backing off): "
            "not enqueued again";
        continue;
      }
      connectors::WorkItem work;
      if (source[k] != nullptr) {
        work = profile.ReconcileItem(*source[k]);
      } else {
        connectors::ListedEmployee gone;
        gone.tenant = d.tenant;
        gone.employee_key = d.employee_key;
        work = profile.ReconcileItem(gone);
      }
      queue::Item item;
      item.profile = profile.name();
      item.tenant = work.tenant;
      item.employee_key = work.employee_key;
      item.dedup_id = "reconcile-" + rep.run_id + "-" +
                      (d.tenant.empty() ? std::string() : d.tenant + "/") + d.employee_key;
      item.event_type = work.event_type;
      item.occurred_at = work.occurred_at;
      item.trace_id = "reconcile-" + rep.run_id;
      item.payload = work.payload;
      item.received_at_ms = clock.NowMs();
      // JumpCloud differs from what scimsync last applied (a manual edit, a deleted user): the
      // worker must read the user, not trust the link's snapshot (converger.h).
      if (deps_.links != nullptr && !d.external_id.empty()) {
        Status dropped =
            deps_.links->DropSnapshot(ScopeOf(profile.name(), d.tenant), d.external_id);
        if (!dropped.ok())
          return Error::Transient("redis (link table): " + dropped.error().message);
      }
      if (rep.held) {
        held_items.push_back(EncodeItem(item));
        continue;
      }
      batch.push_back(std::move(item));
      batch_drift.push_back(k);
      if (batch.size() >= options_.enqueue_batch) {
        if (Status s = flush(); !s.ok()) {
          return Error::Transient("enqueueing the fixes: " + s.error().message);
        }
      }
    }
    if (Status s = flush(); !s.ok()) {
      return Error::Transient("enqueueing the fixes: " + s.error().message);
    }
    if (deps_.pool != nullptr) {
      auto conn = deps_.pool->Acquire();
      if (rep.held) {
        // The plan as planned, for `scimsyncd guard release`: first its summary, then items.
        std::vector<std::string> args;
        args.push_back(rep.run_id + kSep + std::to_string(rep.suspensions) + kSep +
                       std::to_string(rep.suspend_limit) + kSep +
                       std::to_string(rep.hris_employees) + kSep +
                       std::to_string(profile.dedup_window_s()) + kSep + profile.name());
        args.insert(args.end(), held_items.begin(), held_items.end());
        auto r = conn->Eval(StoreHeldScript(), {held_key_}, args);
        if (!r.ok()) return Error::Transient("redis (held plan): " + r.error().message);
      } else {
        // Applied: an older held plan is superseded, and this list is the one to compare with.
        auto r = conn->Commands(
            {{"DEL", held_key_}, {"SET", listed_key_, std::to_string(rep.hris_employees)}});
        if (!r.ok()) return Error::Transient("redis: " + r.error().message);
      }
    }
    for (EmployeeDrift& d : rep.drift) {
      if (d.fixable && d.note.empty() && d.kinds == std::vector{DriftKind::kOrphan}) {
        d.note = "a sync asks the HRIS for employee " + d.employee_key +
                 "; if it answers 404 the user is suspended (fetch.not_found)";
      }
    }
  } else {
    for (EmployeeDrift& d : rep.drift) {
      if (d.fixable && d.kinds == std::vector{DriftKind::kOrphan}) {
        d.note = "a sync would ask the HRIS for employee " + d.employee_key +
                 "; if it answers 404 the user is suspended (fetch.not_found)";
      }
    }
  }
  rep.finished_ms = clock.NowMs();
  log::Info("reconciliation finished", {{"profile", rep.profile},
                                        {"run", rep.run_id},
                                        {"dry_run", dry_run},
                                        {"hris_employees", rep.hris_employees},
                                        {"jumpcloud_users", rep.jumpcloud_users},
                                        {"in_sync", rep.in_sync},
                                        {"missing", rep.missing},
                                        {"attributes", rep.attributes},
                                        {"active", rep.active},
                                        {"orphans", rep.orphans},
                                        {"conflicts", rep.conflicts},
                                        {"invalid", rep.invalid},
                                        {"errors", rep.errors},
                                        {"enqueued", rep.enqueued},
                                        {"waiting", rep.waiting},
                                        {"suspensions", rep.suspensions},
                                        {"suspend_limit", rep.suspend_limit},
                                        {"held", rep.held},
                                        {"ms", rep.finished_ms - rep.started_ms}});
  if (rep.held) {
    log::Error(
        "reconciliation held: its plan would suspend more users than workers.guard allows; "
        "nothing was enqueued. Check the HRIS, then run `scimsyncd guard release` to apply it",
        {{"profile", rep.profile},
         {"run", rep.run_id},
         {"suspensions", rep.suspensions},
         {"limit", rep.suspend_limit},
         {"scope_users", rep.scope_users}});
  }
  return rep;
}

// ---- output ------------------------------------------------------------------------------

namespace {

std::string Who(const std::string& tenant, const std::string& key) {
  return tenant.empty() ? key : tenant + "/" + key;
}

std::string DriftText(const EmployeeDrift& d) {
  std::string out;
  for (DriftKind k : d.kinds) out += (out.empty() ? "" : ",") + std::string(DriftKindName(k));
  return out;
}

std::string ChangeText(const EmployeeDrift& d) {
  if (d.kinds == std::vector{DriftKind::kMissing}) {
    return "create " + (d.user_name.empty() ? d.external_id : d.user_name) +
           (d.email.empty() ? "" : " <" + d.email + ">");
  }
  if (d.kinds == std::vector{DriftKind::kOrphan}) {
    return "no HRIS employee has externalId " + d.external_id + ": " + d.note;
  }
  std::string out;
  for (const AttributeChange& c : d.changes) {
    if (!out.empty()) out += "; ";
    out += c.attribute + ": " + Quoted(c.jumpcloud) + " -> " + Quoted(c.hris);
    if (c.attribute == "active" && c.hris == std::optional<std::string>("false")) {
      out += " (suspend)";
    } else if (c.attribute == "active" && c.hris == std::optional<std::string>("true")) {
      out += " (reactivate)";
    } else if (c.attribute == "user") {
      out = "delete the user (the profile's action)";
    }
  }

  return out;
}

}  // namespace

std::string FormatReportTable(const ReconcileReport& r) {
  std::ostringstream o;
  o << "Reconciliation of profile " << r.profile << (r.dry_run ? " (dry run)" : "")
    << (r.run_id.empty() ? "" : ", run " + r.run_id) << ": " << r.hris_employees
    << " HRIS employees, " << r.jumpcloud_users << " JumpCloud users.\n";
  if (!r.refused.empty()) {
    o << "\nREFUSED: " << r.refused << "\n";
    return o.str();
  }
  o << "  " << r.in_sync << " in sync; " << r.drifted() << " drifted (" << r.missing << " missing, "
    << r.attributes << " attributes, " << r.active << " active, " << r.orphans << " orphans); "
    << r.conflicts << " conflicts, " << r.invalid << " invalid, " << r.errors << " unreadable.\n";
  if (!r.drift.empty()) {
    std::vector<std::array<std::string, 4>> rows;
    rows.push_back({"EMPLOYEE", "USERNAME", "DRIFT", r.dry_run ? "WOULD CHANGE" : "CHANGE"});
    for (const EmployeeDrift& d : r.drift) {
      std::string change = ChangeText(d);
      if (!r.dry_run && !d.enqueued) change += " (not enqueued)";
      rows.push_back({Who(d.tenant, d.employee_key), d.user_name.empty() ? "-" : d.user_name,
                      DriftText(d), change});
    }
    size_t w[3] = {0, 0, 0};
    for (const auto& row : rows) {
      for (size_t c = 0; c < 3; ++c) w[c] = std::max(w[c], row[c].size());
    }
    o << "\n";
    for (const auto& row : rows) {
      o << std::left << std::setw(static_cast<int>(w[0] + 2)) << row[0]
        << std::setw(static_cast<int>(w[1] + 2)) << row[1] << std::setw(static_cast<int>(w[2] + 2))
        << row[2] << row[3] << "\n";
    }
  }
  o << "\nPlan: " << r.suspensions << (r.suspensions == 1 ? " suspension" : " suspensions")
    << " (threshold " << r.suspend_limit << ": workers.guard max_suspends, or max_suspend_percent "
    << "of this scope's " << r.scope_users << " users).\n";
  if (r.held) {
    o << "HELD: the plan exceeds the threshold, so nothing was "
      << (r.dry_run ? "changed and a real run would enqueue nothing" : "enqueued")
      << ". Check the HRIS; if these people really left, run `scimsyncd guard release` to "
         "apply the held plan, or run again with --confirm.\n";
  } else if (r.confirmed) {
    o << "CONFIRMED: the plan exceeds the threshold and was applied (--confirm).\n";
  }
  if (!r.problems.empty()) {
    o << "\nNeeds a human (not enqueued):\n";
    for (const ReconcileProblem& p : r.problems) {
      o << "  " << Who(p.tenant, p.employee_key) << "  " << ProblemKindName(p.kind) << ": "
        << p.message << "\n";
    }
  }
  o << "\n";
  int64_t fixable = 0;
  for (const EmployeeDrift& d : r.drift) {
    if (d.fixable) ++fixable;
  }
  if (r.dry_run) {
    o << (r.drift.empty()
              ? std::string("Nothing to change.")
              : "Nothing was changed (--dry-run). Without --dry-run, " + std::to_string(fixable) +
                    " sync items would be enqueued for the workers.")
      << "\n";
  } else if (r.drift.empty()) {
    o << "Nothing to change.\n";
  } else if (r.held) {
    o << "Held " << r.drift.size() << " drifted employees; nothing enqueued.\n";
  } else {
    o << "Enqueued " << r.enqueued << " sync items (dedup ids reconcile-" << r.run_id
      << "-...); the workers apply them as they apply webhooks.\n";
  }
  return o.str();
}

std::string FormatReportJson(const ReconcileReport& r) {
  std::ostringstream o;
  o << "{\"run_id\":" << JsonString(r.run_id) << ",\"profile\":" << JsonString(r.profile)
    << ",\"dry_run\":" << (r.dry_run ? "true" : "false") << ",\"started_ms\":" << r.started_ms
    << ",\"finished_ms\":" << r.finished_ms << ",\"hris_employees\":" << r.hris_employees
    << ",\"jumpcloud_users\":" << r.jumpcloud_users << ",\"in_sync\":" << r.in_sync
    << ",\"drifted\":" << r.drifted() << ",\"counts\":{\"missing\":" << r.missing
    << ",\"attributes\":" << r.attributes << ",\"active\":" << r.active
    << ",\"orphan\":" << r.orphans << ",\"conflict\":" << r.conflicts
    << ",\"invalid\":" << r.invalid << ",\"error\":" << r.errors << "},\"enqueued\":" << r.enqueued
    << ",\"duplicates\":" << r.duplicates << ",\"scim_requests\":" << r.scim_requests
    << ",\"exit_code\":" << ExitCodeFor(r) << ",\"waiting\":" << r.waiting
    << ",\"last_listed\":" << r.last_listed
    << ",\"refused\":" << (r.refused.empty() ? "null" : JsonString(r.refused))
    << ",\"held\":" << (r.held ? "true" : "false")
    << ",\"confirmed\":" << (r.confirmed ? "true" : "false")
    << ",\"plan\":{\"suspensions\":" << r.suspensions << ",\"limit\":" << r.suspend_limit
    << ",\"scope_users\":" << r.scope_users << "},\"drift\":[";
  for (size_t i = 0; i < r.drift.size(); ++i) {
    const EmployeeDrift& d = r.drift[i];
    o << (i ? "," : "") << "{\"tenant\":" << JsonString(d.tenant)
      << ",\"employee_key\":" << JsonString(d.employee_key)
      << ",\"external_id\":" << JsonString(d.external_id)
      << ",\"user_name\":" << JsonString(d.user_name) << ",\"email\":" << JsonString(d.email)
      << ",\"jumpcloud_id\":" << (d.jumpcloud_id.empty() ? "null" : JsonString(d.jumpcloud_id))
      << ",\"kinds\":[";
    for (size_t k = 0; k < d.kinds.size(); ++k) {
      o << (k ? "," : "") << JsonString(DriftKindName(d.kinds[k]));
    }
    o << "],\"changes\":[";
    for (size_t k = 0; k < d.changes.size(); ++k) {
      const AttributeChange& c = d.changes[k];
      o << (k ? "," : "") << "{\"attribute\":" << JsonString(c.attribute)
        << ",\"jumpcloud\":" << JsonOpt(c.jumpcloud) << ",\"hris\":" << JsonOpt(c.hris) << "}";
    }
    o << "],\"fixable\":" << (d.fixable ? "true" : "false")
      << ",\"enqueued\":" << (d.enqueued ? "true" : "false") << ",\"note\":" << JsonString(d.note)
      << "}";
  }
  o << "],\"problems\":[";
  for (size_t i = 0; i < r.problems.size(); ++i) {
    const ReconcileProblem& p = r.problems[i];
    o << (i ? "," : "") << "{\"kind\":" << JsonString(ProblemKindName(p.kind))
      << ",\"tenant\":" << JsonString(p.tenant)
      << ",\"employee_key\":" << JsonString(p.employee_key)
      << ",\"message\":" << JsonString(p.message) << "}";
  }
  o << "]}\n";
  return o.str();
}

// ---- the command -------------------------------------------------------------------------

namespace {

constexpr char kUsage[] =
    "usage: scimsyncd reconcile --config FILE --profile NAME [--dry-run] [--json]\n"
    "                           [--confirm] [--allow-shrink]\n"
    "  lists the HRIS (the profile's list endpoint) and JumpCloud, reports drift and, without\n"
    "  --dry-run, enqueues one sync per drifted employee. --confirm applies a plan that would\n"
    "  suspend more users than workers.guard allows; --allow-shrink accepts an HRIS list that\n"
    "  shrank by more than reconcile.max_shrink_percent. Exit 0: nothing left to do; 1: drift\n"
    "  or problems remain; 2 held (too many suspensions); 3 refused (the list shrank);\n"
    "  65 unreadable answer; 69 unreachable; 75 another run holds the lease; 77 credentials\n"
    "  refused; 78 config (docs/reconcile.md).\n";

int ReconcileCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                     bool& json);

}  // namespace

int RunReconcileCommand(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err) {
  // With --json a script reads stdout: a failure is an object there too, not just stderr text.
  bool json = std::find(args.begin(), args.end(), "--json") != args.end();
  std::ostringstream report, errors;
  const int code = ReconcileCommand(args, report, errors, json);
  out << report.str();
  err << errors.str();
  if (json && report.str().empty()) {
    std::string message = errors.str();
    while (!message.empty() && message.back() == '\n') message.pop_back();
    if (const size_t usage = message.find("\nusage:"); usage != std::string::npos) {
      message.resize(usage);
    }
    out << "{\"error\":" << JsonString(message) << ",\"exit_code\":" << code << "}\n";
  }
  return code;
}

namespace {

int ReconcileCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                     bool& json) {
  std::string file = "/etc/scimsync/scimsync.yaml";
  std::string name;
  bool dry_run = false;
  bool confirm = false;
  bool allow_shrink = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* target) {
      if (i + 1 >= args.size()) return false;
      *target = args[++i];
      return true;
    };
    if (a == "--config" || a == "-c") {
      if (!value(&file)) {
        err << "scimsyncd reconcile: " << a << " needs a file path\n" << kUsage;
        return kExitUsage;
      }
    } else if (a.rfind("--config=", 0) == 0) {
      file = a.substr(9);
    } else if (a == "--profile") {
      if (!value(&name)) {
        err << "scimsyncd reconcile: --profile needs a profile name\n" << kUsage;
        return kExitUsage;
      }
    } else if (a.rfind("--profile=", 0) == 0) {
      name = a.substr(10);
    } else if (a == "--dry-run") {
      dry_run = true;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--confirm") {
      confirm = true;
    } else if (a == "--allow-shrink") {
      allow_shrink = true;
    } else if (a == "--help" || a == "-h") {
      out << kUsage;
      return kExitOk;
    } else {
      err << "scimsyncd reconcile: unexpected argument '" << a << "'\n" << kUsage;
      return kExitUsage;
    }
  }
  if (name.empty()) {
    err << "scimsyncd reconcile: --profile NAME is required\n" << kUsage;
    return kExitUsage;
  }

  config::Config cfg;
  ProfileMap profiles;
  if (!LoadConfigAndProfiles(file, &cfg, &profiles, /*check_secrets=*/false, err)) {
    return kExitConfig;
  }
  log::Level level = log::Level::kInfo;
  log::ParseLevel(cfg.log.level, &level);
  if (const char* env = std::getenv("SCIMSYNC_LOG_LEVEL"); env != nullptr) {  // NOLINT
    log::ParseLevel(env, &level);
  }
  log::SetLevel(level);

  auto it = profiles.find(name);
  if (it == profiles.end()) {
    std::string known;
    for (const auto& [n, unused] : profiles) known += (known.empty() ? "" : ", ") + n;
    err << "scimsyncd reconcile: no profile named '" << name << "' in " << file
        << " (configured: " << known << ")\n";
    return kExitConfig;
  }
  if (!it->second->can_list()) {
    err << "scimsyncd reconcile: profile '" << name
        << "' has no list section, so its employees cannot be listed; add one to its profile "
           "(docs/profiles.md, list)\n";
    return kExitConfig;
  }
  auto api_key = config::ResolveSecret(cfg.target.api_key);
  if (!api_key.ok()) {
    err << "scimsyncd reconcile: reading JumpCloud's users needs the API key"
        << (cfg.target.dry_run ? " (also with target.dry_run)" : "") << ": "
        << api_key.error().message << "\n";
    return kExitConfig;
  }
  auto redis_password = RedisPassword(cfg);
  if (!redis_password.ok()) {
    err << "scimsyncd reconcile: redis password: " << redis_password.error().message << "\n";
    return kExitConfig;
  }

  const Clock& clock = SystemClock::Instance();
  redis::Pool pool(cfg.redis, *redis_password, 4);
  std::unique_ptr<queue::Queue> queue;
  if (!dry_run) queue = queue::NewRedisQueue(cfg.redis, *redis_password, clock);
  auto links = scim::NewRedisLinkStore(pool, cfg.redis.key_prefix);
  auto limiter = scim::NewRedisRateLimiter(pool, scim::RateLimitKey(cfg.redis.key_prefix),
                                           scim::RateLimitOptions::From(cfg.target), clock);
  auto transport = scim::NewHttpTransport(scim::TransportOptions::From(cfg.target, *api_key));
  if (!transport.ok()) {
    err << "scimsyncd reconcile: " << transport.error().message << "\n";
    return kExitConfig;
  }
  connectors::HttpFetcherOptions fetcher_options;
  fetcher_options.ca_file = cfg.target.ca_file;
  auto fetcher = connectors::NewHttpFetcher(fetcher_options);
  scim::SystemRandom random;

  ReconcilerOptions options;
  options.key_prefix = cfg.redis.key_prefix;
  options.scim_list.timeout_ms = cfg.target.timeout_ms;
  options.multi_scope = cfg.multi_scope;
  for (const auto& entry : cfg.profiles) {
    if (entry.name != name) continue;
    options.scope_prefix = entry.scope_prefix;
    options.follow_user_name = entry.follow_user_name;
  }
  for (const auto& [other, p] : profiles) {
    if (other == name) continue;
    for (const std::string& t : p->list_tenants())
      options.foreign_scopes.push_back(ScopeOf(other, t));
  }
  for (const config::ProfileConfig& entry : cfg.profiles) {
    if (entry.name != name) continue;
    options.orphans =
        entry.reconcile.orphans == "suspend" ? OrphanPolicy::kSuspend : OrphanPolicy::kReport;
    options.max_shrink_percent = entry.reconcile.max_shrink_percent;
  }
  options.max_suspends = cfg.workers.guard.max_suspends;
  options.max_suspend_percent = cfg.workers.guard.max_suspend_percent;
  options.confirm = confirm;
  options.allow_shrink = allow_shrink;
  SuspensionGuard guard(pool, cfg.redis.key_prefix, cfg.workers.guard, clock);
  ReconcilerDeps deps;
  deps.profile = it->second;
  deps.fetcher = fetcher.get();
  deps.transport = transport->get();
  deps.limiter = limiter.get();
  deps.links = links.get();
  deps.queue = queue.get();
  deps.pool = &pool;
  deps.clock = &clock;
  deps.random = &random;
  deps.open_guard = [&guard] { return guard.Release(); };
  Reconciler reconciler(options, deps);
  auto report = reconciler.Run(dry_run);
  if (!report.ok()) {
    err << "scimsyncd reconcile: " << report.error().message << "\n";
    if (report.error().kind == ErrorKind::kTransient &&
        report.error().message.rfind("redis", 0) == 0) {
      err << "  (check redis.url and that redis-server runs)\n";
    }
    return ExitCodeFor(report.error());
  }
  out << (json ? FormatReportJson(*report) : FormatReportTable(*report));
  return ExitCodeFor(*report);
}

}  // namespace

// ---- held plans ---------------------------------------------------------------------------

Result<int64_t> ApplyHeldReconciliations(redis::Pool& pool, queue::Queue& queue,
                                         const std::string& key_prefix, std::ostream& out) {
  auto conn = pool.Acquire();
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    auto r = conn->Command(
        {"SCAN", cursor, "MATCH", GlobEscape(key_prefix) + ":reconcile:*:held", "COUNT", "1000"});
    if (!r.ok()) return r.error();
    if (r->elements().size() != 2) break;
    cursor = r->elements()[0].text();
    for (const auto& k : r->elements()[1].elements()) keys.push_back(k.text());
  } while (cursor != "0");
  std::sort(keys.begin(), keys.end());
  int64_t total = 0;
  for (const std::string& key : keys) {
    auto r = conn->Command({"LRANGE", key, "0", "-1"});
    if (!r.ok()) return r.error();
    const auto& elements = r->elements();
    if (elements.empty()) continue;
    const std::vector<std::string> head = SplitFields(elements[0].text());
    if (head.size() != 6) {
      out << "skipped " << key << ": not a held plan this version can read; delete it\n";
      continue;
    }
    std::vector<queue::Item> items;
    for (size_t i = 1; i < elements.size(); ++i) {
      auto item = DecodeItem(elements[i].text());
      if (item) items.push_back(std::move(*item));
    }
    const int64_t window = std::max<int64_t>(60, std::strtoll(head[4].c_str(), nullptr, 10));
    int64_t accepted = 0;
    for (size_t i = 0; i < items.size(); i += 500) {
      std::vector<queue::Item> batch(
          items.begin() + static_cast<std::ptrdiff_t>(i),
          items.begin() + static_cast<std::ptrdiff_t>(std::min(items.size(), i + 500)));
      auto enq = queue.EnqueueBatch(batch, window);
      if (!enq.ok()) return enq.error();
      accepted += enq->accepted;
    }
    // The plan is applied: its list is now the one a later run is compared with.
    const std::string base = key.substr(0, key.size() - std::string(":held").size());
    auto done = conn->Commands({{"DEL", key}, {"SET", base + ":listed", head[3]}});
    if (!done.ok()) return done.error();
    log::Warn(
        "held reconciliation plan released",
        {{"profile", head[5]}, {"run", head[0]}, {"suspensions", head[1]}, {"enqueued", accepted}});
    out << "applied the held reconciliation of profile " << head[5] << " (run " << head[0] << ", "
        << head[1] << " suspensions): " << accepted << " sync items enqueued\n";
    total += accepted;
  }
  return total;
}

// ---- the schedule ------------------------------------------------------------------------

std::vector<ScheduledProfile> ScheduledProfiles(
    const config::Config& cfg,
    const std::map<std::string, std::shared_ptr<const connectors::Profile>>& profiles) {
  std::vector<ScheduledProfile> out;
  if (cfg.target.dry_run) {
    // A dry-run target has no JumpCloud to read from (and may have no API key).
    for (const auto& entry : cfg.profiles) {
      if (entry.reconcile_every_s > 0) {
        log::Warn("target.dry_run is on: scheduled reconciliation is off",
                  {{"profile", entry.name}});
      }
    }
    return out;
  }
  for (const auto& entry : cfg.profiles) {
    if (entry.reconcile_every_s <= 0) continue;
    auto it = profiles.find(entry.name);
    if (it == profiles.end()) continue;
    if (!it->second->can_list()) {
      log::Warn(
          "profiles[].reconcile_every_s is set, but the profile has no list section: no "
          "scheduled reconciliation for it (docs/profiles.md, list)",
          {{"profile", entry.name}});
      continue;
    }
    out.push_back({entry.name, entry.reconcile_every_s, it->second, entry.reconcile,
                   cfg.workers.guard, cfg.multi_scope, entry.scope_prefix, entry.follow_user_name});
  }
  return out;
}

ReconcileScheduler::ReconcileScheduler(config::TargetOptions target, std::string key_prefix,
                                       Deps deps, int64_t poll_ms)
    : target_(std::move(target)),
      key_prefix_(std::move(key_prefix)),
      deps_(std::move(deps)),
      poll_ms_(poll_ms) {
  if (!deps_.make_transport) {
    deps_.make_transport = [this](const std::string& key) {
      return scim::NewHttpTransport(scim::TransportOptions::From(target_, key));
    };
  }
}

ReconcileScheduler::~ReconcileScheduler() { Stop(); }

void ReconcileScheduler::SetProfiles(std::vector<ScheduledProfile> profiles) {
  std::lock_guard lock(mu_);
  profiles_ = std::move(profiles);
}

void ReconcileScheduler::SetApiKey(std::string api_key) {
  std::lock_guard lock(mu_);
  api_key_ = std::move(api_key);
}

void ReconcileScheduler::Start() {
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void ReconcileScheduler::Stop() {
  stopping_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ReconcileScheduler::Loop() {
  while (!stopping_) {
    RunDue();
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(poll_ms_), [this] { return stopping_.load(); });
  }
}

int ReconcileScheduler::RunDue() {
  std::vector<ScheduledProfile> profiles;
  std::string key;
  {
    std::lock_guard lock(mu_);
    profiles = profiles_;
    key = api_key_;
  }
  int ran = 0;
  for (const ScheduledProfile& sp : profiles) {
    if (stopping_ || sp.every_s <= 0 || !sp.profile) continue;
    auto transport = deps_.make_transport(key);
    if (!transport.ok()) {
      log::Error("reconciliation cannot reach JumpCloud",
                 {{"profile", sp.name}, {"detail", transport.error().message}});
      if (deps_.on_run) deps_.on_run(sp.name, transport.error());
      continue;
    }
    ReconcilerOptions options;
    options.key_prefix = key_prefix_;
    options.scim_list.timeout_ms = target_.timeout_ms;
    options.orphans =
        sp.reconcile.orphans == "suspend" ? OrphanPolicy::kSuspend : OrphanPolicy::kReport;
    options.max_shrink_percent = sp.reconcile.max_shrink_percent;
    options.max_suspends = sp.guard.max_suspends;
    options.max_suspend_percent = sp.guard.max_suspend_percent;
    options.multi_scope = sp.multi_scope;
    options.scope_prefix = sp.scope_prefix;
    options.follow_user_name = sp.follow_user_name;
    for (const ScheduledProfile& other : profiles) {
      if (other.name == sp.name || !other.profile) continue;
      for (const std::string& t : other.profile->list_tenants()) {
        options.foreign_scopes.push_back(ScopeOf(other.name, t));
      }
    }
    ReconcilerDeps deps;
    deps.profile = sp.profile;
    deps.fetcher = deps_.fetcher;
    deps.transport = transport->get();
    deps.limiter = deps_.limiter;
    deps.links = deps_.links;
    deps.queue = deps_.queue;
    deps.pool = deps_.pool;
    deps.clock = deps_.clock;
    deps.random = deps_.random;
    deps.cancel = &stopping_;
    Reconciler reconciler(options, deps);
    auto result = reconciler.RunIfDue(sp.every_s * 1000);
    if (!result.ok()) {
      log::Error("reconciliation failed",
                 {{"profile", sp.name}, {"detail", result.error().message}});
      if (deps_.on_run) deps_.on_run(sp.name, result.error());
      ++ran;
      continue;
    }
    if (!*result) continue;
    ++ran;
    if (deps_.on_run) deps_.on_run(sp.name, std::move(**result));
  }
  return ran;
}

}  // namespace scimsync::daemon
