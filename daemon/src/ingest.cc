#include "scimsync/daemon/ingest.h"

#include <algorithm>
#include <optional>
#include <random>

#include "scimsync/daemon/metrics.h"
#include "scimsync/log.h"
#include "scimsync/strings.h"

namespace scimsync::daemon {

std::string ErrorBody(const std::string& code, const std::string& detail) {
  std::string out = "{\"error\":\"";
  AppendJsonEscaped(out, code);
  out += "\",\"detail\":\"";
  AppendJsonEscaped(out, detail);
  out += "\"}";
  return out;
}

std::string NewTraceId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kHex[] = "0123456789abcdef";
  uint64_t v = rng();
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kHex[v & 0xf];
    v >>= 4;
  }
  return out;
}

namespace {

bool IsSafeTenant(const std::string& tenant) {
  if (tenant.size() > 128) return false;
  for (char c : tenant) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

WebhookResponse Fail(int status, const std::string& code, const std::string& detail) {
  return WebhookResponse{status, ErrorBody(code, detail), {}};
}

}  // namespace

Ingest::Ingest(const ProfileSet* profiles, WithQueue enqueue, const Clock* clock,
               IngestOptions options)
    : profiles_(profiles), enqueue_(std::move(enqueue)), clock_(clock), options_(options) {}

// One webhook on its way through Ingest::Run.
struct Ingest::Call {
  const std::string* profile_name = nullptr;
  const connectors::Request* request = nullptr;
  int64_t started_ms = 0;
  std::string trace_id;
  int accepted = 0;
  int duplicates = 0;
  int ignored = 0;
  std::string failure;                    // the detail of an error answer, for the log line
  std::optional<WebhookResponse> answer;  // set once the webhook is answered without the queue
  std::vector<queue::Item> items;
  int64_t window = 0;
};

WebhookResponse Ingest::Handle(const std::string& profile_name,
                               const connectors::Request& request) {
  std::vector<WebhookResponse> out = Run({{&profile_name, &request}});
  return std::move(out[0]);
}

std::vector<WebhookResponse> Ingest::HandleBatch(const std::vector<WebhookCall>& calls) {
  std::vector<std::pair<const std::string*, const connectors::Request*>> refs;
  refs.reserve(calls.size());
  for (const WebhookCall& c : calls) refs.emplace_back(&c.profile, &c.request);
  return Run(refs);
}

std::vector<WebhookResponse> Ingest::Run(
    const std::vector<std::pair<const std::string*, const connectors::Request*>>& refs) {
  std::vector<Call> calls(refs.size());
  // One snapshot for the whole batch: every webhook in it sees the same profiles.
  auto snapshot = profiles_->Snapshot();
  for (size_t i = 0; i < refs.size(); ++i) {
    Call& c = calls[i];
    c.profile_name = refs[i].first;
    c.request = refs[i].second;
    c.started_ms = clock_->NowMs();
    c.trace_id = NewTraceId();
    Admit(*snapshot, c);
  }

  std::vector<queue::Queue::Batch> batches;
  std::vector<Call*> writing;
  for (Call& c : calls) {
    if (c.answer || c.items.empty()) continue;
    batches.push_back(queue::Queue::Batch{&c.items, c.window});
    writing.push_back(&c);
  }
  if (!batches.empty()) {
    std::vector<Result<queue::EnqueueOutcome>> outcomes = enqueue_(batches);
    for (size_t i = 0; i < writing.size(); ++i) {
      Call& c = *writing[i];
      const Result<queue::EnqueueOutcome>& outcome = outcomes[i];
      if (!outcome.ok()) {
        c.failure = outcome.error().message;
        c.answer = Fail(503, "queue_unavailable",
                        "the event could not be stored durably (Redis unreachable); nothing was "
                        "accepted: retry after the Retry-After delay");
        c.answer->headers.emplace_back("Retry-After", std::to_string(options_.retry_after_s));
        continue;
      }
      c.accepted = outcome->accepted;
      c.duplicates = outcome->duplicates;
    }
  }

  std::vector<WebhookResponse> responses;
  responses.reserve(calls.size());
  for (Call& c : calls) {
    WebhookResponse r;
    if (c.answer) {
      r = std::move(*c.answer);
    } else {
      // 202: the items are stored. 200 when nothing needed storing because every item was
      // acknowledged (not about an employee): the sender must see success either way.
      r.status = c.items.empty() && c.ignored > 0 ? 200 : 202;
      r.body = "{\"accepted\":" + std::to_string(c.accepted) +
               ",\"duplicates\":" + std::to_string(c.duplicates) +
               ",\"ignored\":" + std::to_string(c.ignored) + ",\"trace_id\":\"" + c.trace_id +
               "\"}";
    }
    const std::string& profile_name = *c.profile_name;
    log::Level level = r.status >= 500   ? log::Level::kError
                       : r.status >= 400 ? log::Level::kWarn
                                         : log::Level::kInfo;
    log::Write(level, "webhook",
               {{"profile", profile_name},
                {"tenant", c.request->tenant},
                {"status", r.status},
                {"accepted", c.accepted},
                {"ignored", c.ignored},
                {"duplicates", c.duplicates},
                {"bytes", c.request->body.size()},
                {"trace_id", c.trace_id},
                {"latency_ms", clock_->NowMs() - c.started_ms},
                {"detail", c.failure}});
    // An unknown profile's name is caller-controlled text: it never becomes a label.
    Metrics::Global().WebhookAnswered(r.status == 404 ? std::string() : profile_name, r.status);
    if (r.status == 202) Metrics::Global().ItemsEnqueued(profile_name, c.accepted, c.duplicates);
    responses.push_back(std::move(r));
  }
  return responses;
}

// Everything before the queue: answers the call (c.answer) or leaves its items to be written.
void Ingest::Admit(const std::map<std::string, ActiveProfile>& profiles, Call& c) const {
  const connectors::Request& request = *c.request;
  const std::string& profile_name = *c.profile_name;
  auto answer = [&c](int status, const std::string& code, const std::string& detail,
                     std::string failure) {
    c.failure = std::move(failure);
    c.answer = Fail(status, code, detail);
  };

  if (draining_) {
    answer(503, "shutting_down", "scimsyncd is stopping; retry shortly", "shutting down");
    c.answer->headers.emplace_back("Retry-After", std::to_string(options_.retry_after_s));
    return;
  }

  // Checked before anything looks at a header: the sender is not authenticated yet.
  const connectors::RequestLimits& limits = request.limits;
  int64_t header_bytes = 0;
  for (const auto& [name, value] : request.headers) {
    header_bytes += static_cast<int64_t>(name.size() + value.size());
  }
  if (request.headers.size() > static_cast<size_t>(std::max(limits.max_headers, 0))) {
    answer(431, "headers_too_large",
           "the request has " + std::to_string(request.headers.size()) + " header lines; at most " +
               std::to_string(limits.max_headers) + " are accepted (listen.max_headers)",
           "too many headers");
    return;
  }
  if (header_bytes > limits.max_header_bytes) {
    answer(431, "headers_too_large",
           "the request's headers take " + std::to_string(header_bytes) + " bytes; at most " +
               std::to_string(limits.max_header_bytes) + " are accepted (listen.max_header_bytes)",
           "headers too large");
    return;
  }

  auto it = profiles.find(profile_name);
  if (it == profiles.end()) {
    answer(404, "unknown_profile",
           "no profile named '" + profile_name +
               "' is configured: check the webhook URL against profiles[].name",
           "unknown profile");
    return;
  }
  if (!IsSafeTenant(request.tenant)) {
    answer(400, "bad_tenant",
           "the tenant segment may contain only letters, digits, '.', '_' and '-'",
           "bad tenant segment");
    return;
  }
  const ActiveProfile& active = it->second;

  Status verified = active.profile->Verify(request, active.secrets, clock_->NowSeconds());
  if (!verified.ok()) {
    answer(401, "unauthorized", verified.error().message, verified.error().message);
    return;
  }
  // After the signature: an unauthenticated caller learns nothing about the configured tenants.
  // Without a segment the tenant may come from the body: each item is checked below.
  if (!request.tenant.empty()) {
    Status tenant = connectors::CheckTenant(*active.profile, request.tenant);
    if (!tenant.ok()) {
      answer(404, "unknown_tenant", tenant.error().message, "unknown tenant");
      return;
    }
  }

  Result<connectors::Decoded> decoded = active.profile->Decode(request);
  if (!decoded.ok()) {
    const std::string& message = decoded.error().message;
    if (decoded.error().http_status == 415) {
      answer(415, "unsupported_media_type", message, message);
    } else if (decoded.error().http_status == 413) {
      answer(413, "payload_too_large", message, message);
    } else if (decoded.error().http_status == 404) {
      answer(404, "unknown_tenant", message, message);
    } else {
      answer(400, "malformed_body", message, message);
    }
    return;
  }

  if (decoded->handshake) {
    if (!decoded->handshake_note.empty()) {
      log::Warn("webhook handshake", {{"profile", profile_name},
                                      {"trace_id", c.trace_id},
                                      {"detail", decoded->handshake_note}});
    }
    c.answer = WebhookResponse{decoded->handshake_status, "{\"handshake\":true}", {}};
    return;
  }

  for (const connectors::AcknowledgedItem& a : decoded->acknowledged) {
    Metrics::Global().ItemsIgnored(profile_name, a.event_type, 1);
    NoteAcknowledged(profile_name, a, c.trace_id);
  }
  c.ignored = static_cast<int>(decoded->acknowledged.size());

  c.items.reserve(decoded->items.size());
  const int64_t now_ms = clock_->NowMs();
  for (size_t i = 0; i < decoded->items.size(); ++i) {
    auto& d = decoded->items[i];
    queue::Item item;
    item.profile = profile_name;
    // The URL's segment, else the tenant the body names (Finch's connection_id).
    if (request.tenant.empty()) {
      item.tenant = std::move(d.tenant);
    } else {
      item.tenant = request.tenant;
    }
    if (Status tenant = connectors::CheckTenant(*active.profile, item.tenant); !tenant.ok()) {
      c.items.clear();
      answer(404, "unknown_tenant", tenant.error().message, "unknown tenant");
      return;
    }
    item.employee_key = std::move(d.employee_key);
    item.dedup_id = std::move(d.dedup_id);
    item.event_type = std::move(d.event_type);
    item.occurred_at = std::move(d.occurred_at);
    item.payload = std::move(d.payload);
    item.trace_id = decoded->items.size() == 1 ? c.trace_id : c.trace_id + "-" + std::to_string(i);
    item.received_at_ms = now_ms;
    c.items.push_back(std::move(item));
  }
  c.window = active.profile->dedup_window_s();
}

void Ingest::NoteAcknowledged(const std::string& profile, const connectors::AcknowledgedItem& item,
                              const std::string& trace_id) const {
  constexpr int64_t kEveryS = 3600;
  constexpr size_t kMaxRemembered = 4096;  // event types are the sender's text: bounded
  const int64_t now_s = clock_->NowSeconds();
  {
    std::lock_guard lock(acknowledged_mu_);
    auto key = std::make_pair(profile, item.event_type.substr(0, 64));
    auto it = acknowledged_logged_s_.find(key);
    if (it != acknowledged_logged_s_.end() && now_s - it->second < kEveryS) return;
    if (it == acknowledged_logged_s_.end() && acknowledged_logged_s_.size() >= kMaxRemembered) {
      acknowledged_logged_s_.clear();
    }
    acknowledged_logged_s_[key] = now_s;
  }
  log::Info(
      "webhook item acknowledged, not enqueued (not about an employee; logged once an hour "
      "per event type)",
      {{"profile", profile},
       {"event_type", item.event_type},
       {"reason", item.reason},
       {"trace_id", trace_id}});
}

}  // namespace scimsync::daemon
