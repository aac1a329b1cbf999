#include "scimsync/workers/sync.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "scimsync/log.h"

namespace scimsync::workers {

namespace {

connectors::WorkItem ToWorkItem(const queue::Item& item) {
  connectors::WorkItem w;
  w.tenant = item.tenant;
  w.employee_key = item.employee_key;
  w.event_type = item.event_type;
  w.occurred_at = item.occurred_at;
  w.payload = item.payload;
  return w;
}

std::string Problems(const std::vector<scim::ValidationProblem>& problems) {
  std::string out = "the mapped user breaks JumpCloud's rules: ";
  for (size_t i = 0; i < problems.size(); ++i) {
    if (i > 0) out += "; ";
    out += problems[i].ToString();
  }
  return out;
}

SyncResult DeadLetter(const std::string& action, ErrorKind kind, const std::string& reason) {
  SyncResult r;
  r.kind = SyncResult::Kind::kDeadLetter;
  r.action = action;
  r.result = "dead_letter";
  r.error_kind = ErrorKindName(kind);
  r.reason = reason;
  return r;
}

// `result` turned into a retry that is no failed attempt (Redis did not answer, or the plan
// went stale): the items come back after `delay_ms` and max_attempts is not spent on it.
SyncResult& WaitAndRetry(SyncResult& result, int64_t delay_ms, std::string reason) {
  result.kind = SyncResult::Kind::kRetry;
  result.count_attempt = false;
  result.delay_ms = delay_ms;
  result.result = "retry";
  result.reason = std::move(reason);
  return result;
}

// The fold of several planned items of one employee into one desired state.
struct Folded {
  bool any = false;  // some item meant something
  connectors::Action action = connectors::Action::kIgnore;
  std::optional<scim::User> user;
  std::optional<bool> active;
  std::vector<scim::ValidationProblem> problems;
  std::string version;         // the newest record folded: orders attributes
  std::string status_version;  // the newest item that set access (active): orders status
  // `user` is an older record than JumpCloud's (a late rehire): only `active` is meant, the
  // record serves only to create a user JumpCloud does not have.
  bool status_only = false;
};

void RaiseTo(std::string& to, const std::string& version) {
  if (!version.empty() && CompareVersions(version, to) > 0) to = version;
}

// A suspension, reactivation or deletion, or a record that says whether access is on.
bool SetsStatus(const connectors::Plan& plan) {
  switch (plan.action) {
    case connectors::Action::kSuspend:
    case connectors::Action::kReactivate:
    case connectors::Action::kDelete:
      return true;
    case connectors::Action::kSync:
      return plan.user && plan.user->active.has_value();
    default:
      return false;
  }
}

// `carries_record`: the plan's user is a whole record (fetched, or the payload carries it).
// Otherwise a suspension's user holds only the anchor and must not become a sync.
void Fold(Folded& f, const connectors::Plan& plan, bool carries_record) {
  switch (plan.action) {
    case connectors::Action::kIgnore:
      return;
    case connectors::Action::kDelete: {
      std::string status_version = f.status_version;
      f = Folded{};
      f.status_version = status_version;
      f.action = connectors::Action::kDelete;
      f.user = plan.user;
      break;
    }
    case connectors::Action::kSync:
      if (plan.user) {
        f.user = plan.user;
        f.status_only = false;
        f.problems = plan.problems;
        if (plan.user->active) f.active = plan.user->active;
      }
      f.action = connectors::Action::kSync;
      break;
    case connectors::Action::kReactivate:
      if (plan.user) {
        f.user = plan.user;
        f.status_only = false;
        f.problems = plan.problems;
      }
      f.active = true;
      f.action = connectors::Action::kSync;
      break;
    case connectors::Action::kSuspend:
      // A suspension that carries the record (payload profiles) is the newest state: apply it
      // whole with active=false. Without a record, only active changes.
      if (plan.user && (carries_record || plan.fetched) && !plan.user->user_name.empty()) {
        f.user = plan.user;
        f.status_only = false;
        f.problems = plan.problems;
      }
      f.active = false;
      f.action = f.user ? connectors::Action::kSync : connectors::Action::kSuspend;
      break;
  }
  f.any = true;
  RaiseTo(f.version, plan.version);
  if (SetsStatus(plan)) RaiseTo(f.status_version, plan.version);
}

// A suspension or reactivation older than the record JumpCloud has (or the fold holds) but newer
// than the access it has: access is ordered by status events, not by attribute updates, so
// its `active` lands and its older attributes do not.
void FoldStatusOnly(Folded& f, const connectors::Plan& plan) {
  if (plan.action == connectors::Action::kSuspend) {
    if (f.status_only) {
      // An older rehire's record folded before: nothing of it remains meant.
      f.user.reset();
      f.problems.clear();
      f.status_only = false;
    }
    f.active = false;
    f.action = f.user ? connectors::Action::kSync : connectors::Action::kSuspend;
  } else {
    if (!f.user && plan.user) {
      // Only for a create: JumpCloud has no user to reactivate.
      f.user = plan.user;
      f.status_only = true;
    }
    f.active = true;
    f.action = connectors::Action::kSync;
  }
  f.any = true;
  RaiseTo(f.status_version, plan.version);
}

// A deferred item whose effective time has come. It is never dropped for being older than the
// applied version: it was entered before later updates but takes effect after them. When its
// record is older than what is applied (or folded), only its action lands: a suspension sets
// active=false and keeps the newer attributes.
void FoldDue(Folded& f, const connectors::Plan& plan, const std::string& applied) {
  const bool older = !plan.version.empty() &&
                     (CompareVersions(plan.version, applied) < 0 ||
                      (!f.version.empty() && CompareVersions(plan.version, f.version) < 0));
  if (!older || plan.action != connectors::Action::kSuspend) {
    Fold(f, plan, /*carries_record=*/true);
    return;
  }
  f.active = false;
  f.action = f.user ? connectors::Action::kSync : connectors::Action::kSuspend;
  f.any = true;
  RaiseTo(f.status_version, plan.version);
}

// The Unix time (ms) a version stands for, when it is a number: connectors turn timestamps into
// zero-padded milliseconds; a bare number below 1e11 reads as seconds (1e11 s is the year 5138,
// 1e11 ms is 1973), anything larger as milliseconds.
std::optional<int64_t> VersionTimeMs(const std::string& version) {
  if (version.empty() || version.size() > 40) return std::nullopt;
  for (char c : version) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  size_t start = version.find_first_not_of('0');
  if (start == std::string::npos) return 0;
  if (version.size() - start > 18) return INT64_MAX;  // beyond any clock
  const int64_t n = std::stoll(version.substr(start));
  return n < 100'000'000'000 ? n * 1000 : n;
}

// `version` with its time replaced by `now_ms`, in its own unit and width.
std::string ClampVersion(const std::string& version, int64_t now_ms) {
  const size_t start = version.find_first_not_of('0');
  const bool seconds = start != std::string::npos && version.size() - start <= 18 &&
                       std::stoll(version.substr(start)) < 100'000'000'000;
  std::string out = std::to_string(seconds ? now_ms / 1000 : now_ms);
  if (out.size() < version.size()) out.insert(0, version.size() - out.size(), '0');
  return out;
}

// For planning items only to learn their action and date: fetches nothing.
class NoFetch final : public connectors::Fetcher {
 public:
  Result<connectors::HttpResponse> Fetch(const std::string&,
                                         const connectors::HttpRequest&) override {
    return Error::Transient("not fetched: an older item of a coalesced burst");
  }
};

// Counts every SCIM exchange for /metrics: method, status (0 = no answer) and latency.
class MeteredTransport final : public scim::Transport {
 public:
  MeteredTransport(std::unique_ptr<scim::Transport> inner, const Clock& clock, SyncMetrics& metrics)
      : inner_(std::move(inner)), clock_(clock), metrics_(metrics) {}
  Result<scim::HttpResponse> Send(const scim::HttpRequest& request, int64_t timeout_ms) override {
    const int64_t start = clock_.NowMs();
    auto r = inner_->Send(request, timeout_ms);
    metrics_.ScimRequest(request.method, r ? r->status : 0,
                         static_cast<double>(clock_.NowMs() - start) / 1000.0);
    return r;
  }
  std::string Describe(const scim::HttpRequest& request) const override {
    return inner_->Describe(request);
  }
  bool dry_run() const override { return inner_->dry_run(); }

 private:
  std::unique_ptr<scim::Transport> inner_;
  const Clock& clock_;
  SyncMetrics& metrics_;
};

class MeteredRateLimiter final : public scim::RateLimiter {
 public:
  MeteredRateLimiter(scim::RateLimiter* inner, SyncMetrics& metrics)
      : inner_(inner), metrics_(metrics) {}
  Result<scim::Reservation> Reserve(int64_t max_wait_ms) override {
    auto r = inner_->Reserve(max_wait_ms);
    if (r.ok() && r->granted && r->wait_ms > 0) {
      metrics_.RateLimitWaited(static_cast<double>(r->wait_ms) / 1000.0);
    }
    return r;
  }
  Status Throttled(int64_t block_ms) override { return inner_->Throttled(block_ms); }

 private:
  scim::RateLimiter* inner_;
  SyncMetrics& metrics_;
};

}  // namespace

std::unique_ptr<scim::RateLimiter> NewMeteredRateLimiter(scim::RateLimiter* inner,
                                                         SyncMetrics& metrics) {
  return std::make_unique<MeteredRateLimiter>(inner, metrics);
}

ProfileSyncer::ProfileSyncer(const config::TargetOptions& target, const config::RetryOptions& retry,
                             int threads, SyncerDeps deps)
    : target_(target),
      retry_(retry),
      deps_(deps),
      threads_(static_cast<size_t>(std::max(1, threads))) {}

SyncMetrics& ProfileSyncer::Meter() {
  static NoSyncMetrics none;
  return deps_.metrics ? *deps_.metrics : none;
}

void ProfileSyncer::SetApiKey(std::string api_key) {
  std::lock_guard lock(key_mu_);
  api_key_ = std::move(api_key);
  capabilities_.Reset();
  ++generation_;
}

ProfileSyncer::PerThread& ProfileSyncer::StateOf(int thread) {
  return threads_[static_cast<size_t>(thread) % threads_.size()];
}

Result<scim::Converger*> ProfileSyncer::ConvergerFor(int thread) {
  PerThread& t = StateOf(thread);
  const uint64_t gen = generation_.load();
  if (t.converger && t.generation == gen) return t.converger.get();
  std::string key;
  {
    std::lock_guard lock(key_mu_);
    key = api_key_;
  }
  scim::TransportOptions topts = scim::TransportOptions::From(target_, key);
  Result<std::unique_ptr<scim::Transport>> transport =
      target_.dry_run ? scim::NewDryRunTransport(topts, target_.dry_run_file)
                      : scim::NewHttpTransport(topts);
  if (!transport) return transport.error();
  auto metered =
      std::make_unique<MeteredTransport>(std::move(transport.value()), *deps_.clock, Meter());
  scim::ConvergerDeps cdeps;
  cdeps.transport = metered.get();
  cdeps.limiter = deps_.limiter;
  cdeps.links = deps_.links;
  cdeps.clock = deps_.clock;
  cdeps.random = deps_.random;
  cdeps.capabilities = &capabilities_;
  auto converger =
      std::make_unique<scim::Converger>(scim::ConvergerOptions::From(target_, retry_), cdeps);
  t.converger = std::move(converger);
  t.transport = std::move(metered);
  t.generation = gen;
  return t.converger.get();
}

Status ProfileSyncer::Probe(int thread) {
  auto conv = ConvergerFor(thread);
  if (!conv) return conv.error();
  // The key itself, on an endpoint that needs it; the capabilities are learnt by the first job.
  return (*conv)->CheckKey();
}

SyncResult ProfileSyncer::FromPlanError(scim::Converger& converger, const EmployeeWork& work,
                                        const Error& error) {
  int attempt = 1;
  int64_t first_ms = work.items.front().received_at_ms;
  for (const auto& i : work.items) {
    attempt = std::max(attempt, i.attempts + 1);
    first_ms = std::min(first_ms, i.received_at_ms);
  }
  Error e = error;
  std::string reason = "HRIS: " + error.message;
  if (error.kind == ErrorKind::kAuth) {
    // The HRIS API refused our credentials: nothing JumpCloud's pause would fix. Retry with
    // backoff so a fixed credential (SIGHUP) picks the items up again.
    e.kind = ErrorKind::kTransient;
    reason = "HRIS API refused the credentials (fix the profile's api settings and reload): " +
             error.message;
  }
  if (e.kind == ErrorKind::kTransient) {
    scim::RetryDecision d = converger.retry_policy().Decide(attempt, first_ms, e);
    if (d.retry) {
      SyncResult r;
      r.kind = SyncResult::Kind::kRetry;
      r.delay_ms = d.delay_ms;
      r.action = "plan";
      r.result = "retry";
      r.reason = reason;
      r.error_kind = ErrorKindName(error.kind);
      return r;
    }
    return DeadLetter("plan", error.kind, reason + " (" + d.reason + ")");
  }
  return DeadLetter("plan", error.kind, reason);
}

SyncResult ProfileSyncer::Sync(int thread, const EmployeeWork& work) {
  auto snapshot = deps_.profiles->Snapshot();
  auto it = snapshot->find(work.profile);
  if (it == snapshot->end()) {
    return DeadLetter("plan", ErrorKind::kPermanent,
                      "profile '" + work.profile +
                          "' is no longer configured: add it back and replay the dead letter");
  }
  const ActiveProfile& active = it->second;
  const connectors::Profile& profile = *active.profile;
  if (Status tenant = connectors::CheckTenant(profile, work.tenant); !tenant.ok()) {
    return DeadLetter("plan", ErrorKind::kPermanent,
                      tenant.error().message +
                          ". The item was queued for a tenant the config does not (or no "
                          "longer) configure: add the tenant back and replay it, or drop it");
  }
  auto conv = ConvergerFor(thread);
  if (!conv) {
    return DeadLetter("sync", conv.error().kind,
                      "cannot reach the target: " + conv.error().message);
  }
  scim::Converger& converger = **conv;
  const int64_t now_ms = deps_.clock->NowMs();
  const std::string scope = ScopeOf(work.profile, work.tenant);
  const std::string who = scope + '\x1f' + work.employee_key;

  SyncResult result;
  Folded folded;
  // The applied item whose fetched record dates a change ahead (fetch.recheck_at): held until
  // then once this sync is done, so a fresh read applies the change on its day.
  std::optional<std::pair<size_t, int64_t>> recheck;
  // The earliest date of a termination (or deletion) of this burst deferred to its effective
  // date, or dated ahead in the record read back: the burst is planned for someone who has not
  // left yet.
  std::optional<int64_t> leave_deferred_to_ms;
  auto defer = [&](size_t index, int64_t when_ms, connectors::Action action) {
    result.deferred.emplace_back(index, when_ms);
    if (action == connectors::Action::kSuspend || action == connectors::Action::kDelete) {
      leave_deferred_to_ms = std::min(leave_deferred_to_ms.value_or(when_ms), when_ms);
    }
  };
  SyncMetrics& metrics = Meter();
  // Whether the guard knows the employee as suspended, when read with the versions.
  std::optional<bool> known_suspended;
  if (profile.payload_carries_record()) {
    std::string applied;         // the newest record applied
    std::string status_applied;  // the newest status event applied (terminate, rehire, ...)
    if (deps_.versions) {
      auto v = deps_.versions->GetApplied(work.partition, who, deps_.guard);
      if (!v)
        return FromPlanError(converger, work, Error::Transient("redis: " + v.error().message));
      applied = v->version;
      status_applied = v->status_version;
      known_suspended = v->suspended;
    }
    for (std::string* stored : {&applied, &status_applied}) {
      if (auto t = VersionTimeMs(*stored); t && *t > now_ms + deps_.max_future_skew_ms) {
        // Stored from an event dated in the future before that was refused (or by a sender that
        // changed units): it would drop every later event of the employee, terminations
        // included.
        log::Warn(
            "ignoring a stored version dated in the future (workers.max_future_skew_s)",
            {{"employee", work.employee_key}, {"profile", work.profile}, {"version", *stored}});
        metrics.FutureVersion(work.profile, "stored_ignored");
        stored->clear();
      }
    }
    // (item index, plan, due deferred item)
    struct Planned {
      size_t index;
      connectors::Plan plan;
      bool due;
      bool status_only;  // older than the applied record, newer than the applied status
      std::string key;   // orders the fold: the version, or a due item's effective time
    };
    std::vector<Planned> plans;
    int dropped = 0;
    for (size_t i = 0; i < work.items.size(); ++i) {
      const queue::Item& item = work.items[i];
      auto plan = profile.PlanItem(ToWorkItem(item), *deps_.fetcher, now_ms / 1000);
      if (!plan) return FromPlanError(converger, work, plan.error());
      if (plan->action == connectors::Action::kIgnore && result.reason.empty()) {
        result.reason = plan->reason;
      }
      if (auto t = VersionTimeMs(plan->version); t && *t > now_ms + deps_.max_future_skew_ms) {
        // A bogus future date (or milliseconds read as seconds) would outrank every later event
        // for good: the item counts as happening now.
        std::string clamped = ClampVersion(plan->version, now_ms);
        log::Warn("event dated too far in the future: its version is clamped to now",
                  {{"trace_id", item.trace_id},
                   {"employee", work.employee_key},
                   {"occurred_at", item.occurred_at},
                   {"clamped_to", clamped},
                   {"max_future_skew_s", deps_.max_future_skew_ms / 1000}});
        metrics.FutureVersion(work.profile, "item_clamped");
        plan->version = clamped;
      }
      if (plan->effective_at_s) {
        const int64_t effective_ms = *plan->effective_at_s * 1000;
        if (effective_ms > now_ms) {
          defer(i, effective_ms, plan->action);
          continue;
        }
        std::string key = std::to_string(effective_ms);
        key.insert(0, key.size() < 20 ? 20 - key.size() : 0, '0');
        plans.push_back({i, std::move(plan.value()), true, false, key});
        continue;
      }
      if (!applied.empty() && !plan->version.empty() &&
          CompareVersions(plan->version, applied) < 0) {
        const bool status = plan->action == connectors::Action::kSuspend ||
                            plan->action == connectors::Action::kReactivate;
        if (status && CompareVersions(plan->version, status_applied) > 0) {
          // A termination or rehire delivered after a newer update: access is ordered against
          // other status events only, so its `active` lands; its older record does not.
          log::Info("late status event: only its access change is applied",
                    {{"trace_id", item.trace_id},
                     {"employee", work.employee_key},
                     {"event_type", item.event_type},
                     {"version", plan->version},
                     {"applied", applied},
                     {"status_applied", status_applied}});
          std::string key = plan->version;
          plans.push_back({i, std::move(plan.value()), false, true, std::move(key)});
          continue;
        }
        // Older than what JumpCloud already has: an old event never overwrites newer state.
        ++dropped;
        log::Info("item dropped: older than the version already applied",
                  {{"trace_id", item.trace_id},
                   {"employee", work.employee_key},
                   {"event_type", item.event_type},
                   {"version", plan->version},
                   {"applied", applied}});
        metrics.ItemDropped(work.profile, "older_than_applied");
        continue;
      }
      std::string key = plan->version;
      plans.push_back({i, std::move(plan.value()), false, false, std::move(key)});
    }
    std::stable_sort(plans.begin(), plans.end(), [](const Planned& a, const Planned& b) {
      return CompareVersions(a.key, b.key) < 0;
    });
    for (const Planned& p : plans) {
      if (p.due) {
        FoldDue(folded, p.plan, applied);
      } else if (p.status_only) {
        FoldStatusOnly(folded, p.plan);
      } else {
        Fold(folded, p.plan, /*carries_record=*/true);
      }
    }
    if (dropped > 0 && !folded.any) {
      result.kind = SyncResult::Kind::kDone;
      result.action = "ignore";
      result.result = "dropped";
      result.reason = std::to_string(dropped) +
                      " item(s) older than the version already applied (" + applied +
                      "): dropped, an older event never overwrites newer state";
      return result;
    }
  } else {
    // Level-triggered: the newest item that means something; the fetched record is the state.
    // Older items are planned without fetching, only to find deferred ones: one whose date is
    // ahead is held (not acknowledged with the burst), one that fell due takes effect now.
    NoFetch no_fetch;
    bool chosen = false;
    connectors::Action chosen_action = connectors::Action::kIgnore;
    for (size_t k = work.items.size(); k-- > 0;) {
      auto plan = profile.PlanItem(
          ToWorkItem(work.items[k]),
          chosen ? static_cast<connectors::Fetcher&>(no_fetch) : *deps_.fetcher, now_ms / 1000);
      if (!plan) {
        if (chosen) continue;  // it needed its record: not a deferred suspension
        return FromPlanError(converger, work, plan.error());
      }
      if (plan->effective_at_s && *plan->effective_at_s * 1000 > now_ms) {
        defer(k, *plan->effective_at_s * 1000, plan->action);
        continue;
      }
      if (!chosen) {
        if (plan->action == connectors::Action::kIgnore) {
          if (result.reason.empty()) result.reason = plan->reason;
          continue;
        }
        Fold(folded, *plan, /*carries_record=*/false);
        chosen = true;
        chosen_action = plan->action;
        if (plan->recheck_at_s && *plan->recheck_at_s * 1000 > now_ms) {
          recheck.emplace(k, *plan->recheck_at_s * 1000);
          // The record read back is active until then: the plan goes stale on that day too.
          leave_deferred_to_ms =
              std::min(leave_deferred_to_ms.value_or(recheck->second), recheck->second);
        }
        continue;
      }
      if (plan->effective_at_s && plan->action == connectors::Action::kSuspend &&
          chosen_action != connectors::Action::kReactivate) {
        // A termination that fell due under newer events: it lands, the newer record stays.
        folded.active = false;
        folded.action = folded.user ? connectors::Action::kSync : connectors::Action::kSuspend;
      }
    }
  }

  if (folded.status_only && work.last_applied) {
    // A late rehire: its record is older than the attributes applied since. Whether JumpCloud
    // has the user or not (a leaver gets no account, so a returning one may have none), the
    // user gets the newest applied record with the rehire's access: that record's version is
    // applied already, so nothing else would ever send it.
    auto last = work.last_applied();
    if (!last) {
      return WaitAndRetry(result, 1000,
                          "redis: cannot read the newest record applied: " + last.error().message);
    }
    if (*last) {
      auto plan = profile.PlanItem(ToWorkItem(**last), *deps_.fetcher, now_ms / 1000);
      if (!plan) return FromPlanError(converger, work, plan.error());
      if (plan->action == connectors::Action::kSync && plan->user) {
        folded.user = plan->user;
        folded.problems = plan->problems;
        folded.status_only = false;
      }
    }
  }

  if (!folded.any) {
    result.kind = SyncResult::Kind::kDone;
    result.action = "ignore";
    result.result = "ignored";
    if (result.reason.empty()) result.reason = "no item of the employee maps to an action";
    return result;
  }

  scim::Job job;
  job.scope = scope;
  job.trace_id = work.items.back().trace_id;
  job.fence = work.fence;
  job.first_attempt_ms = work.items.front().received_at_ms;
  job.attempt = 1;
  for (const auto& i : work.items) {
    job.attempt = std::max(job.attempt, i.attempts + 1);
    job.first_attempt_ms = std::min(job.first_attempt_ms, i.received_at_ms);
  }
  job.action = folded.action;  // sync, suspend or delete: Fold never leaves the others
  if (folded.user) job.desired = *folded.user;
  if (job.desired.external_id.empty()) job.desired.external_id = work.employee_key;
  // Namespaced when several HR sources share the organisation (bare with one scope); the link
  // table is keyed by the same id within the scope.
  job.desired.external_id = active.ExternalId(work.tenant, job.desired.external_id);
  job.follow_user_name = active.follow_user_name;
  job.other_scopes = active.multi_scope;
  if (folded.active) job.desired.active = folded.active;
  job.status_only = folded.status_only;
  result.action = scim::ActionName(job.action);

  if (job.action == scim::Action::kSync && !folded.problems.empty() && folded.active == false) {
    // The record breaks JumpCloud's rules, but a departure must not wait for HR to fix it:
    // suspend without touching the attributes.
    job.action = scim::Action::kSuspend;
    result.action = scim::ActionName(job.action);
  }
  if (job.action == scim::Action::kSync) {
    if (!folded.problems.empty()) {
      auto r = DeadLetter(result.action, ErrorKind::kInvalid, Problems(folded.problems));
      r.deferred = result.deferred;
      return r;
    }
  }

  if (job.action == scim::Action::kSync && deps_.guard) {
    // The newest state scimsync applied is terminated and this event does not say otherwise
    // (a rehire sets active=true): if JumpCloud has no user (never had, or an admin deleted
    // the suspended one), none is created. Asked by the converger only before a create.
    job.known_terminated = [this, &who, known_suspended]() -> Result<bool> {
      // Read with the versions at the start of the sync; only this sync changes it.
      if (known_suspended) return *known_suspended;
      auto terminated = deps_.guard->Suspended(who);
      if (!terminated) return Error::Transient("redis: " + terminated.error().message);
      return *terminated;
    };
  }
  const bool suspending = job.action == scim::Action::kSuspend ||
                          (job.action == scim::Action::kSync && job.desired.active == false);
  if (suspending && deps_.guard) {
    auto admitted = deps_.guard->Admit(who);
    if (!admitted) return WaitAndRetry(result, 1000, "redis: " + admitted.error().message);
    if (!*admitted) {
      result.kind = SyncResult::Kind::kHold;
      result.result = "held";
      result.reason = "the mass-suspension guard holds suspensions until `scimsyncd guard release`";
      return result;
    }
  }

  // The plan holds while a termination deferred from it is still ahead. A job can outlast that
  // date (a slow JumpCloud, a 429 pause every worker shares): its writes would then create an
  // active account, or update one, for someone who has left by the time they land. It stops
  // before its next write instead, and the burst is planned again, the termination with it. (A
  // job that ends access anyway goes on: the termination lands on top of it in the next pass.)
  if (work.held_due_ms > 0) {
    // An earlier pass held one of the employee's items until that date (WorkerPool): the same.
    leave_deferred_to_ms =
        std::min(leave_deferred_to_ms.value_or(work.held_due_ms), work.held_due_ms);
  }
  auto replan = std::make_shared<bool>(false);
  const bool ends_access = job.action == scim::Action::kSuspend ||
                           job.action == scim::Action::kDelete || job.desired.active == false;
  if (leave_deferred_to_ms && !ends_access) {
    job.fence = [lease = work.fence, due_ms = *leave_deferred_to_ms, clock = deps_.clock,
                 replan]() -> Status {
      if (lease) {
        if (Status s = lease(); !s.ok()) return s;
      }
      if (clock->NowMs() < due_ms) return {};
      *replan = true;
      return Error::Transient(
          "a termination of this employee deferred to its effective date fell due while the "
          "sync ran; the items are synced again with it");
    };
  }
  scim::Outcome out = converger.Converge(job);
  result.rate_wait_ms += out.rate_wait_ms;
  result.last_request = out.last_request;
  result.last_response = out.last_response;
  result.reason = out.reason;
  result.jumpcloud_id = out.jumpcloud_id;
  if (out.error) {
    result.error_kind = ErrorKindName(out.error->kind);
    result.http_status = out.error->http_status;
  }
  auto raise_version = [&] {
    if (!deps_.versions) return;
    // Written with the pass's other versions, before its items are acknowledged (EndPass).
    PerThread& t = StateOf(thread);
    if (!folded.version.empty()) t.raises[work.partition].emplace_back(who, folded.version);
    if (!folded.status_version.empty()) {
      t.raises[work.partition].emplace_back(Versions::StatusField(who), folded.status_version);
    }
  };
  if (out.decision != scim::Decision::kDone && out.suspended) {
    // The suspension landed on its own; only the record's other changes failed. Nothing older
    // may undo it while the rest is retried or waits in the dead letters.
    raise_version();
    if (deps_.guard) StateOf(thread).guard_records.emplace_back(who, true);
  }
  if (*replan && out.decision != scim::Decision::kDone) {
    // No failed attempt: the burst comes back at once (the termination is due now) and is
    // planned afresh. Whatever the job wrote before its plan went stale is overwritten then.
    log::Info("planning a sync again: a deferred termination fell due while it ran",
              {{"trace_id", job.trace_id}, {"employee", work.employee_key}});
    return WaitAndRetry(result, 0, out.reason);
  }
  switch (out.decision) {
    case scim::Decision::kDone:
      result.kind = SyncResult::Kind::kDone;
      // "suspended" is what an admin looks for in the history: access ended, whatever else the
      // job wrote after active=false.
      result.result = out.suspended ? "suspended" : scim::ChangeName(out.change);
      raise_version();
      // Only once applied: a failed sync is retried now, not held until the recheck.
      if (recheck) {
        result.deferred.push_back(*recheck);
        result.rechecks.push_back(recheck->first);
      }
      if (deps_.guard) {
        // Written with the pass's versions (EndPass).
        if (suspending) {
          // Also when JumpCloud has no user: a later event must not create an active one.
          StateOf(thread).guard_records.emplace_back(who, true);
        } else if (job.desired.active == true && out.change != scim::Change::kAbsent) {
          StateOf(thread).guard_records.emplace_back(who, false);
        }
      }
      break;
    case scim::Decision::kRetry:
      result.kind = SyncResult::Kind::kRetry;
      result.delay_ms = out.retry_after_ms;
      result.count_attempt = !out.rate_limited;
      result.result = out.rate_limited ? "rate_limited" : "retry";
      break;
    case scim::Decision::kGiveUp:
      result.kind = SyncResult::Kind::kDeadLetter;
      result.result = "dead_letter";
      if (result.error_kind.empty()) result.error_kind = "permanent";
      break;
    case scim::Decision::kPause:
      result.kind = SyncResult::Kind::kPause;
      result.result = "paused";
      break;
  }
  return result;
}

Status ProfileSyncer::EndPass(int thread) {
  PerThread& t = StateOf(thread);
  // The guard's view first: it is what remembers a leaver JumpCloud has no account for. Stored
  // versions without it would drop the leaver's termination as older when the items come back,
  // and their update would create an active account. Failing, neither is stored and the pass's
  // items are synced again, whole.
  if (deps_.guard && !t.guard_records.empty()) {
    Status s = deps_.guard->RecordMany(t.guard_records);
    if (!s.ok()) {
      log::Warn(
          "cannot record the guard's view of the pass's employees; the applied versions "
          "are not stored either, so the items are synced again",
          {{"employees", static_cast<int64_t>(t.guard_records.size())},
           {"detail", s.error().message}});
      t.guard_records.clear();
      t.raises.clear();
      return s;
    }
  }
  t.guard_records.clear();
  Status out;
  for (const auto& [partition, raises] : t.raises) {
    Status s = deps_.versions ? deps_.versions->RaiseMany(partition, raises) : Status();
    if (!s.ok()) {
      log::Warn("cannot store the applied versions",
                {{"partition", partition},
                 {"employees", static_cast<int64_t>(raises.size())},
                 {"detail", s.error().message}});
      out = s;
    }
  }
  t.raises.clear();
  return out;
}

}  // namespace scimsync::workers
