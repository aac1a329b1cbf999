#include "scimsync/daemon/metrics.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#ifndef SCIMSYNC_VERSION
#define SCIMSYNC_VERSION "0.0.0"
#endif

namespace scimsync::daemon {
namespace {

enum class Type { kCounter, kGauge, kHistogram };

// Index of each family in kFamilies below; the recorders name families only through these.
enum Id : size_t {
  kWebhooks,
  kItemsEnqueued,
  kItemsDuplicate,
  kItemsIgnored,
  kSyncs,
  kItemsDropped,
  kFutureVersions,
  kScimRequests,
  kScimDuration,
  kRateLimitWaits,
  kRateLimitWaitSeconds,
  kDeadLetters,
  kDeadLettersStored,
  kRetriesWaiting,
  kQueueDepth,
  kQueueOldestAge,
  kPartitionHeld,
  kPaused,
  kGuardTripped,
  kReconcileRuns,
  kReconcileDrift,
  kReconcileEnqueued,
  kReconcileLastSuccess,
  kBuildInfo,
  kFamilyCount
};

struct Def {
  Id id;
  Type type;
  const char* name;
  const char* help;
  std::vector<std::string_view> labels;
  std::vector<double> buckets;  // histograms: upper bounds, ascending; +Inf is implied
};

// SCIM calls take tens of milliseconds when healthy and up to target.timeout_ms (10 s) when not.
const std::vector<double> kScimBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

// Every metric the daemon exports, in the order Render() writes them.
const std::vector<Def>& Families() {
  static const std::vector<Def> kFamilies = {
      {kWebhooks,
       Type::kCounter,
       "scimsync_webhooks_total",
       "Webhook requests answered, by profile and HTTP status.",
       {"profile", "status"},
       {}},
      {kItemsEnqueued,
       Type::kCounter,
       "scimsync_items_enqueued_total",
       "Employee events written to the queue.",
       {"profile"},
       {}},
      {kItemsDuplicate,
       Type::kCounter,
       "scimsync_items_duplicate_total",
       "Employee events dropped because the same event was accepted within the dedup window.",
       {"profile"},
       {}},
      {kItemsIgnored,
       Type::kCounter,
       "scimsync_items_ignored_total",
       "Validly signed items not about an employee (pings, tests, account, payroll or sync "
       "notifications), answered 2xx and not queued, by profile and event type.",
       {"profile", "event_type"},
       {}},
      {kSyncs,
       Type::kCounter,
       "scimsync_syncs_total",
       "Item outcomes of the workers, by action and result.",
       {"action", "result"},
       {}},
      {kItemsDropped,
       Type::kCounter,
       "scimsync_items_dropped_total",
       "Items the workers dropped without applying them, by profile and reason "
       "(older_than_applied: a newer version of the employee was already applied).",
       {"profile", "reason"},
       {}},
      {kFutureVersions,
       Type::kCounter,
       "scimsync_future_versions_total",
       "Versions dated beyond workers.max_future_skew_s: item_clamped (the item was applied as "
       "of now), stored_ignored (a stored applied version was disregarded).",
       {"profile", "what"},
       {}},
      {kScimRequests,
       Type::kCounter,
       "scimsync_scim_requests_total",
       "HTTP requests to the SCIM server, by method and status (error: no answer).",
       {"method", "status"},
       {}},
      {kScimDuration,
       Type::kHistogram,
       "scimsync_scim_request_duration_seconds",
       "Time from sending a SCIM request to reading its whole answer.",
       {"method"},
       kScimBuckets},
      {kRateLimitWaits,
       Type::kCounter,
       "scimsync_rate_limit_waits_total",
       "Times a worker waited for a slot of the shared SCIM rate limit.",
       {},
       {}},
      {kRateLimitWaitSeconds,
       Type::kCounter,
       "scimsync_rate_limit_wait_seconds_total",
       "Time workers spent waiting for the shared SCIM rate limit.",
       {},
       {}},
      {kDeadLetters,
       Type::kCounter,
       "scimsync_dead_letters_total",
       "Items this process moved to the dead-letter stream, by profile and error kind.",
       {"profile", "kind"},
       {}},
      {kDeadLettersStored,
       Type::kGauge,
       "scimsync_dead_letters",
       "Dead letters stored in Redis waiting for a human (all instances).",
       {},
       {}},
      {kRetriesWaiting,
       Type::kGauge,
       "scimsync_retries_waiting",
       "Items waiting in a partition's retry set.",
       {"partition"},
       {}},
      {kQueueDepth,
       Type::kGauge,
       "scimsync_queue_depth",
       "Items in a partition's stream, new or being worked on.",
       {"partition"},
       {}},
      {kQueueOldestAge,
       Type::kGauge,
       "scimsync_queue_oldest_age_seconds",
       "Age of the oldest item in a partition's stream; 0 when empty.",
       {"partition"},
       {}},
      {kPartitionHeld,
       Type::kGauge,
       "scimsync_partition_held",
       "1 while this instance holds the partition's lease (works its items), else 0.",
       {"partition"},
       {}},
      {kPaused,
       Type::kGauge,
       "scimsync_paused",
       "1 while SCIM work is paused because the SCIM server rejected the API key (401/403).",
       {},
       {}},
      {kGuardTripped,
       Type::kGauge,
       "scimsync_guard_tripped",
       "1 while the mass-suspension guard holds suspensions back.",
       {},
       {}},
      {kReconcileRuns,
       Type::kCounter,
       "scimsync_reconcile_runs_total",
       "Scheduled reconciliations, by profile and result (clean, drift, held, refused, error).",
       {"profile", "result"},
       {}},
      {kReconcileDrift,
       Type::kGauge,
       "scimsync_reconcile_drift",
       "Employees found drifted by the last reconciliation, by kind.",
       {"profile", "kind"},
       {}},
      {kReconcileEnqueued,
       Type::kCounter,
       "scimsync_reconcile_enqueued_total",
       "Sync items queued by reconciliations.",
       {"profile"},
       {}},
      {kReconcileLastSuccess,
       Type::kGauge,
       "scimsync_reconcile_last_success_timestamp_seconds",
       "When the last successful reconciliation of a profile finished (Unix time).",
       {"profile"},
       {}},
      {kBuildInfo,
       Type::kGauge,
       "scimsync_build_info",
       "The running scimsyncd's version.",
       {"version"},
       {}},
  };
  return kFamilies;
}

constexpr size_t kMaxLabelSets = 1000;

// One label set's values. Counters and gauges use `value`; histograms use the rest.
struct Child {
  explicit Child(size_t buckets) : bucket_counts(buckets + 1) {}
  std::atomic<double> value{0};
  std::vector<std::atomic<uint64_t>> bucket_counts;  // per bucket, not cumulative; last: +Inf
  std::atomic<double> sum{0};
};

// Orders label sets; transparent so a lookup needs no std::string copies.
struct LabelsLess {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](const auto& x, const auto& y) { return std::string_view(x) < std::string_view(y); });
  }
};

struct Family {
  explicit Family(const Def& d) : def(d) {}

  Child& Get(std::span<const std::string_view> values) {
    {
      std::shared_lock lock(mu);
      auto it = children.find(values);
      if (it != children.end()) return *it->second;
    }
    std::vector<std::string> key(values.begin(), values.end());
    std::unique_lock lock(mu);
    if (children.size() >= kMaxLabelSets && children.find(values) == children.end()) {
      key.assign(values.size(), "overflow");
    }
    auto& slot = children[std::move(key)];
    if (!slot) slot = std::make_unique<Child>(def.buckets.size());
    return *slot;
  }

  const Def& def;
  mutable std::shared_mutex mu;
  std::map<std::vector<std::string>, std::unique_ptr<Child>, LabelsLess> children;
};

void Add(std::atomic<double>& a, double delta) { a.fetch_add(delta, std::memory_order_relaxed); }

void AppendNumber(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, ec == std::errc() ? end : buf);
  }
}

// Label values escape backslash, double quote and newline; HELP text escapes backslash and
// newline. Anything else is written as is (the format is UTF-8).
void AppendEscaped(std::string& out, std::string_view text, bool quote) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out.push_back(c);
    }
  }
}

// {a="x",b="y"} plus an optional extra label (le for histogram buckets); nothing when empty.
void AppendLabels(std::string& out, const Def& def, const std::vector<std::string>& values,
                  std::string_view extra_name = {}, std::string_view extra_value = {}) {
  if (values.empty() && extra_name.empty()) return;
  out.push_back('{');
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += def.labels[i];
    out += "=\"";
    AppendEscaped(out, values[i], /*quote=*/true);
    out.push_back('"');
  }
  if (!extra_name.empty()) {
    if (!values.empty()) out.push_back(',');
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out.push_back('"');
  }
  out.push_back('}');
}

void AppendSample(std::string& out, std::string_view name, std::string_view suffix, const Def& def,
                  const std::vector<std::string>& values, double v,
                  std::string_view extra_name = {}, std::string_view extra_value = {}) {
  out += name;
  out += suffix;
  AppendLabels(out, def, values, extra_name, extra_value);
  out.push_back(' ');
  AppendNumber(out, v);
  out.push_back('\n');
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

std::string StatusLabel(int http_status) {
  return http_status > 0 ? std::to_string(http_status) : std::string("error");
}

}  // namespace

struct Metrics::Impl {
  Impl() {
    families.reserve(kFamilyCount);
    for (size_t i = 0; i < Families().size(); ++i) {
      const Def& def = Families()[i];
      // The enum and the table must agree row by row; a mismatch is a build mistake.
      if (def.id != i) std::abort();
      families.push_back(std::make_unique<Family>(def));
    }
    if (families.size() != kFamilyCount) std::abort();
    // Families without labels always show a sample, so an alert can tell 0 from absent.
    for (auto& f : families) {
      if (f->def.labels.empty()) f->Get({});
    }
  }

  Child& Get(Id id, std::initializer_list<std::string_view> values) {
    return families[id]->Get(std::span<const std::string_view>(values.begin(), values.size()));
  }

  std::vector<std::unique_ptr<Family>> families;
};

Metrics::Metrics(std::string_view version) : impl_(std::make_unique<Impl>()) {
  impl_->Get(kBuildInfo, {version}).value.store(1);
}

Metrics::~Metrics() = default;

Metrics& Metrics::Global() {
  static Metrics* metrics = new Metrics(SCIMSYNC_VERSION);  // never destroyed: threads may record
  return *metrics;                                          // during static destruction
}

void Metrics::WebhookAnswered(std::string_view profile, int http_status) {
  std::string status = StatusLabel(http_status);
  Add(impl_->Get(kWebhooks, {profile, status}).value, 1);
}

void Metrics::ItemsEnqueued(std::string_view profile, int64_t accepted, int64_t duplicates) {
  Add(impl_->Get(kItemsEnqueued, {profile}).value, static_cast<double>(accepted));
  Add(impl_->Get(kItemsDuplicate, {profile}).value, static_cast<double>(duplicates));
}

void Metrics::ItemsIgnored(std::string_view profile, std::string_view event_type, int64_t n) {
  // The sender is authenticated, but its event types are still its text: bounded here, and by
  // the family's label-set cap.
  Add(impl_->Get(kItemsIgnored, {profile, event_type.substr(0, 64)}).value, static_cast<double>(n));
}

void Metrics::SyncFinished(std::string_view action, std::string_view result) {
  Add(impl_->Get(kSyncs, {action, result}).value, 1);
}

void Metrics::ItemDropped(std::string_view profile, std::string_view reason) {
  Add(impl_->Get(kItemsDropped, {profile, reason}).value, 1);
}

void Metrics::FutureVersion(std::string_view profile, std::string_view what) {
  Add(impl_->Get(kFutureVersions, {profile, what}).value, 1);
}

void Metrics::ScimRequest(std::string_view method, int http_status, double seconds) {
  std::string status = StatusLabel(http_status);
  Add(impl_->Get(kScimRequests, {method, status}).value, 1);
  // A clock step can make a measured duration negative; it still counts as one request.
  if (!(seconds >= 0)) seconds = 0;
  Child& h = impl_->Get(kScimDuration, {method});
  const std::vector<double>& bounds = Families()[kScimDuration].buckets;
  size_t i = std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin();
  h.bucket_counts[i].fetch_add(1, std::memory_order_relaxed);
  Add(h.sum, seconds);
}

void Metrics::RateLimitWaited(double seconds) {
  Add(impl_->Get(kRateLimitWaits, {}).value, 1);
  Add(impl_->Get(kRateLimitWaitSeconds, {}).value, seconds);
}

void Metrics::DeadLettered(std::string_view profile, std::string_view error_kind) {
  Add(impl_->Get(kDeadLetters, {profile, error_kind}).value, 1);
}

void Metrics::SetPaused(bool paused) {
  impl_->Get(kPaused, {}).value.store(paused ? 1 : 0, std::memory_order_relaxed);
}

void Metrics::ReconcileRan(std::string_view profile, std::string_view result) {
  Add(impl_->Get(kReconcileRuns, {profile, result}).value, 1);
}

void Metrics::SetReconcileDrift(std::string_view profile, std::string_view kind, int64_t n) {
  impl_->Get(kReconcileDrift, {profile, kind})
      .value.store(static_cast<double>(n), std::memory_order_relaxed);
}

void Metrics::ReconcileEnqueued(std::string_view profile, int64_t n) {
  Add(impl_->Get(kReconcileEnqueued, {profile}).value, static_cast<double>(n));
}

void Metrics::SetReconcileLastSuccess(std::string_view profile, double unix_seconds) {
  impl_->Get(kReconcileLastSuccess, {profile}).value.store(unix_seconds, std::memory_order_relaxed);
}

void Metrics::SetGuardTripped(bool tripped) {
  impl_->Get(kGuardTripped, {}).value.store(tripped ? 1 : 0, std::memory_order_relaxed);
}

void Metrics::SetQueueDepth(int partition, int64_t items) {
  std::string p = std::to_string(partition);
  impl_->Get(kQueueDepth, {p}).value.store(static_cast<double>(items), std::memory_order_relaxed);
}

void Metrics::SetQueueOldestAge(int partition, double seconds) {
  std::string p = std::to_string(partition);
  impl_->Get(kQueueOldestAge, {p}).value.store(seconds, std::memory_order_relaxed);
}

void Metrics::SetPartitionHeld(int partition, bool held) {
  std::string p = std::to_string(partition);
  impl_->Get(kPartitionHeld, {p}).value.store(held ? 1 : 0, std::memory_order_relaxed);
}

void Metrics::SetRetriesWaiting(int partition, int64_t items) {
  std::string p = std::to_string(partition);
  impl_->Get(kRetriesWaiting, {p})
      .value.store(static_cast<double>(items), std::memory_order_relaxed);
}

void Metrics::SetDeadLettersStored(int64_t items) {
  impl_->Get(kDeadLettersStored, {})
      .value.store(static_cast<double>(items), std::memory_order_relaxed);
}

std::string Metrics::Render() const {
  std::string out;
  out.reserve(4096);
  for (const auto& family : impl_->families) {
    const Def& def = family->def;
    out += "# HELP ";
    out += def.name;
    out.push_back(' ');
    AppendEscaped(out, def.help, /*quote=*/false);
    out += "\n# TYPE ";
    out += def.name;
    out.push_back(' ');
    out += TypeName(def.type);
    out.push_back('\n');

    std::shared_lock lock(family->mu);
    for (const auto& [values, child] : family->children) {
      if (def.type != Type::kHistogram) {
        AppendSample(out, def.name, "", def, values, child->value.load(std::memory_order_relaxed));
        continue;
      }
      // Cumulative buckets, and _count taken from the same reads as +Inf, so they always agree
      // within one scrape even while other threads record.
      uint64_t cumulative = 0;
      char le[32];
      for (size_t i = 0; i < child->bucket_counts.size(); ++i) {
        cumulative += child->bucket_counts[i].load(std::memory_order_relaxed);
        std::string_view bound = "+Inf";
        if (i < def.buckets.size()) {
          auto [end, ec] = std::to_chars(le, le + sizeof le, def.buckets[i]);
          bound = std::string_view(le, ec == std::errc() ? end - le : 0);
        }
        AppendSample(out, def.name, "_bucket", def, values, static_cast<double>(cumulative), "le",
                     bound);
      }
      AppendSample(out, def.name, "_sum", def, values, child->sum.load(std::memory_order_relaxed));
      AppendSample(out, def.name, "_count", def, values, static_cast<double>(cumulative));
    }
  }
  return out;
}

}  // namespace scimsync::daemon
