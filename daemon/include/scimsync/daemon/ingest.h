// Webhook ingest: verify, decode, fan out, enqueue durably, answer. Independent of the HTTP
// library so it is tested directly; the HTTP listener only translates requests and responses.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/config.h"
#include "scimsync/connectors/active_profile.h"
#include "scimsync/connectors/profile.h"
#include "scimsync/queue/queue.h"

namespace scimsync::daemon {

// The profiles ingest verifies and decodes with; the workers share the set (connectors/).
using connectors::ActiveProfile;
using connectors::ProfileSet;

struct WebhookResponse {
  int status = 202;
  std::string body;  // JSON
  std::vector<std::pair<std::string, std::string>> headers;
};

struct IngestOptions {
  // Answered as Retry-After while Redis is unreachable: long enough for a Redis restart, short
  // enough that senders with a small retry budget try again.
  int retry_after_s = 5;
};

// One webhook as the listener read it: POST /webhooks/{profile}[/{tenant}].
struct WebhookCall {
  std::string profile;
  connectors::Request request;
};

class Ingest {
 public:
  // Writes several requests' items, each all-or-none with its own outcome (Queue::EnqueueBatches).
  using WithQueue = std::function<std::vector<Result<queue::EnqueueOutcome>>(
      const std::vector<queue::Queue::Batch>& batches)>;

  Ingest(const ProfileSet* profiles, WithQueue enqueue, const Clock* clock,
         IngestOptions options = {});

  WebhookResponse Handle(const std::string& profile_name, const connectors::Request& request);
  // The webhooks an event loop read in one go: checked one by one, written to the queue in one
  // call, answered in order (responses[i] answers calls[i]).
  std::vector<WebhookResponse> HandleBatch(const std::vector<WebhookCall>& calls);

  // While draining, every webhook is answered 503 so the sender retries elsewhere or later.
  void SetDraining(bool draining) { draining_ = draining; }

 private:
  std::vector<WebhookResponse> Run(
      const std::vector<std::pair<const std::string*, const connectors::Request*>>& calls);
  struct Call;
  void Admit(const std::map<std::string, ActiveProfile>& profiles, Call& call) const;

  // Logs an acknowledged event type at info once per profile, type and hour: a vendor that posts
  // payroll events all day must not flood the log, and a new kind must still be seen.
  void NoteAcknowledged(const std::string& profile, const connectors::AcknowledgedItem& item,
                        const std::string& trace_id) const;

  const ProfileSet* profiles_;
  WithQueue enqueue_;
  const Clock* clock_;
  IngestOptions options_;
  std::atomic<bool> draining_{false};
  mutable std::mutex acknowledged_mu_;
  mutable std::map<std::pair<std::string, std::string>, int64_t> acknowledged_logged_s_;
};

// {"error":"<code>","detail":"<detail>"}
std::string ErrorBody(const std::string& code, const std::string& detail);

// 16 random hex digits: a request's trace id. Items get "<trace>-<index>".
std::string NewTraceId();

}  // namespace scimsync::daemon
