// The daemon's Prometheus metrics, served on GET /metrics in the text exposition format 0.0.4.
//
// Every family (name, type, help, labels, buckets) is declared in one table in metrics.cc; this
// header offers one typed recorder per event, so a call site cannot misspell a name or a label.
// Recording is cheap and thread-safe: a shared (reader) lock to find the label set, then relaxed
// atomics; only the first use of a new label set takes the writer lock. Render() may run
// concurrently with recording.
//
// Labels are bounded by the config (profile, partition) or by small fixed vocabularies (method,
// status, action, result, error kind). Never pass request-controlled text: an unknown profile's
// URL segment would let any caller create label sets without bound. The one exception is
// ItemsIgnored's event_type, taken only from requests whose signature verified (the vendor's own
// event names) and cut to 64 bytes. As a safety net, a family
// that reaches 1000 label sets records every further new one under the value "overflow".
//
// Where each family is recorded:
//   - daemon/src/http_server.cc: GET /metrics answers Render() as kMetricsContentType.
//   - daemon/src/ingest.cc: WebhookAnswered per answer (an empty profile for a 404 on an unknown
//     profile), ItemsEnqueued after a 202, ItemsIgnored per item acknowledged without enqueueing.
//   - workers/src/sync.cc, through the SyncMetrics this class implements (daemon.cc hands it in):
//     ScimRequest per HTTP exchange with JumpCloud, RateLimitWaited when a rate-limit
//     reservation made a worker wait, ItemDropped and FutureVersion while folding a burst.
//   - daemon/src/daemon.cc: SyncFinished and DeadLettered in the workers' outcome hook and the
//     Reconcile* families after each scheduled reconciliation.
//   - daemon/src/coordinator.cc: SetPaused in the workers' pause hook, and every 5 s the
//     per-partition gauges (held, depth, retries, oldest age), SetDeadLettersStored and
//     SetGuardTripped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "scimsync/workers/sync_metrics.h"

namespace scimsync::daemon {

inline constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Also the workers' SyncMetrics: the composition root hands Global() to the syncer.
class Metrics final : public workers::SyncMetrics {
 public:
  // `version` becomes scimsync_build_info{version="..."} 1.
  explicit Metrics(std::string_view version);
  ~Metrics() override;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The process-wide instance the daemon serves, carrying the build's version.
  static Metrics& Global();

  // --- Ingest. ---
  // A webhook request was answered with `http_status` (202, 400, 401, 404, 413, 503...).
  void WebhookAnswered(std::string_view profile, int http_status);
  // Items of one accepted request: newly enqueued, and dropped as duplicates of earlier events.
  void ItemsEnqueued(std::string_view profile, int64_t accepted, int64_t duplicates);
  // Items of a validly signed request acknowledged without enqueueing: not about an employee.
  // event_type is the sender's (authenticated) text, cut to 64 bytes; "" when absent.
  void ItemsIgnored(std::string_view profile, std::string_view event_type, int64_t n);

  // --- Workers. ---
  // One item's outcome. action: scim::ActionName() (sync, suspend, reactivate, delete), or
  // "ignore" for events the profile maps to nothing. result: scim::ChangeName() when the job is
  // done (created, updated, none, deleted, absent), else scim::DecisionName() (retry, give_up,
  // pause) -- so `result="none"` counts syncs that found JumpCloud already right.
  void SyncFinished(std::string_view action, std::string_view result);
  // An item acknowledged without being applied, and why: "older_than_applied".
  void ItemDropped(std::string_view profile, std::string_view reason) override;
  // A version dated beyond workers.max_future_skew_s: "item_clamped" or "stored_ignored".
  void FutureVersion(std::string_view profile, std::string_view what) override;
  // One HTTP exchange with the SCIM server. http_status 0: no answer (connect error, timeout,
  // TLS), recorded as status="error". seconds: from sending to the whole answer read.
  void ScimRequest(std::string_view method, int http_status, double seconds) override;
  // A worker waited `seconds` for a send slot of the shared rate limit.
  void RateLimitWaited(double seconds) override;
  // An item was dead-lettered; error_kind is ErrorKindName() ("permanent", "conflict"...).
  void DeadLettered(std::string_view profile, std::string_view error_kind);
  // SCIM work is paused (JumpCloud answered 401/403: the API key is wrong).
  void SetPaused(bool paused);
  // The mass-suspension guard stopped suspensions (workers.guard limits reached).
  void SetGuardTripped(bool tripped);

  // --- Reconciliation (profiles[].reconcile_every_s). ---
  // result: "clean", "drift" or "error".
  void ReconcileRan(std::string_view profile, std::string_view result);
  // kind: missing, attributes, active, orphan, conflict, invalid, error.
  void SetReconcileDrift(std::string_view profile, std::string_view kind, int64_t n);
  void ReconcileEnqueued(std::string_view profile, int64_t n);
  void SetReconcileLastSuccess(std::string_view profile, double unix_seconds);

  // --- Queue state, sampled. ---
  void SetQueueDepth(int partition, int64_t items);
  // Age of the oldest item still in the partition's stream; 0 when it is empty.
  void SetQueueOldestAge(int partition, double seconds);
  void SetRetriesWaiting(int partition, int64_t items);
  // Whether this instance holds the partition's lease now. Every instance reports every
  // partition, 0 or 1, so "max over instances is 0" means nobody works it (an alert).
  void SetPartitionHeld(int partition, bool held);
  // Dead letters stored in Redis (shared by every instance), waiting for a human.
  void SetDeadLettersStored(int64_t items);

  // Every family in declaration order, each with # HELP and # TYPE, label sets sorted.
  std::string Render() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace scimsync::daemon
