// The daemon's periodic reconciliations: one thread, each profile when it is due, one instance
// of the fleet at a time (the run lease and the last-run key).
#include <chrono>

#include "reconcile_internal.h"
#include "scimsync/daemon/reconcile.h"
#include "scimsync/log.h"
#include "scimsync/workers/worker.h"

namespace scimsync::daemon {

using workers::ScopeOf;

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

ReconcilerOptions OptionsFor(const ScheduledProfile& sp, const std::string& key_prefix,
                             int64_t timeout_ms, std::vector<std::string> foreign_scopes) {
  ReconcilerOptions options;
  options.key_prefix = key_prefix;
  options.scim_list.timeout_ms = timeout_ms;
  options.orphans =
      sp.reconcile.orphans == "suspend" ? OrphanPolicy::kSuspend : OrphanPolicy::kReport;
  options.max_shrink_percent = sp.reconcile.max_shrink_percent;
  options.max_suspends = sp.guard.max_suspends;
  options.max_suspend_percent = sp.guard.max_suspend_percent;
  options.multi_scope = sp.multi_scope;
  options.scope_prefix = sp.scope_prefix;
  options.follow_user_name = sp.follow_user_name;
  options.foreign_scopes = std::move(foreign_scopes);
  return options;
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
    std::vector<std::string> foreign_scopes;
    for (const ScheduledProfile& other : profiles) {
      if (other.name == sp.name || !other.profile) continue;
      for (const std::string& t : other.profile->list_tenants()) {
        foreign_scopes.push_back(ScopeOf(other.name, t));
      }
    }
    ReconcilerOptions options =
        OptionsFor(sp, key_prefix_, target_.timeout_ms, std::move(foreign_scopes));
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
