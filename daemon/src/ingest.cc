#include "scimsync/daemon/ingest.h"

#include <algorithm>
#include <random>

#include "scimsync/daemon/metrics.h"
#include "scimsync/log.h"

namespace scimsync::daemon {

void ProfileSet::Replace(std::map<std::string, ActiveProfile> profiles) {
  auto next = std::make_shared<const std::map<std::string, ActiveProfile>>(std::move(profiles));
  std::lock_guard lock(mu_);
  profiles_ = std::move(next);
}

std::shared_ptr<const std::map<std::string, ActiveProfile>> ProfileSet::Snapshot() const {
  std::lock_guard lock(mu_);
  return profiles_;
}

std::string ErrorBody(const std::string& code, const std::string& detail) {
  std::string out = "{\"error\":\"";
  log::AppendJsonEscaped(out, code);
  out += "\",\"detail\":\"";
  log::AppendJsonEscaped(out, detail);
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

WebhookResponse Ingest::Handle(const std::string& profile_name,
                               const connectors::Request& request) {
  const int64_t started_ms = clock_->NowMs();
  const std::string trace_id = NewTraceId();
  WebhookResponse response;
  int accepted = 0;
  int duplicates = 0;
  std::string failure;  // the detail of an error answer, for the log line

  auto finish = [&](WebhookResponse r) {
    log::Level level = r.status >= 500   ? log::Level::kError
                       : r.status >= 400 ? log::Level::kWarn
                                         : log::Level::kInfo;
    log::Write(level, "webhook",
               {{"profile", profile_name},
                {"tenant", request.tenant},
                {"status", r.status},
                {"accepted", accepted},
                {"duplicates", duplicates},
                {"bytes", request.body.size()},
                {"trace_id", trace_id},
                {"latency_ms", clock_->NowMs() - started_ms},
                {"detail", failure}});
    // An unknown profile's name is caller-controlled text: it never becomes a label.
    Metrics::Global().WebhookAnswered(r.status == 404 ? std::string() : profile_name, r.status);
    if (r.status == 202) Metrics::Global().ItemsEnqueued(profile_name, accepted, duplicates);
    return r;
  };

  if (draining_) {
    failure = "shutting down";
    auto r = Fail(503, "shutting_down", "scimsyncd is stopping; retry shortly");
    r.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_s));
    return finish(std::move(r));
  }

  // Checked before anything looks at a header: the sender is not authenticated yet.
  const connectors::RequestLimits& limits = request.limits;
  int64_t header_bytes = 0;
  for (const auto& [name, value] : request.headers) {
    header_bytes += static_cast<int64_t>(name.size() + value.size());
  }
  if (request.headers.size() > static_cast<size_t>(std::max(limits.max_headers, 0))) {
    failure = "too many headers";
    return finish(Fail(431, "headers_too_large",
                       "the request has " + std::to_string(request.headers.size()) +
                           " header lines; at most " + std::to_string(limits.max_headers) +
                           " are accepted (listen.max_headers)"));
  }
  if (header_bytes > limits.max_header_bytes) {
    failure = "headers too large";
    return finish(Fail(431, "headers_too_large",
                       "the request's headers take " + std::to_string(header_bytes) +
                           " bytes; at most " + std::to_string(limits.max_header_bytes) +
                           " are accepted (listen.max_header_bytes)"));
  }

  auto snapshot = profiles_->Snapshot();
  auto it = snapshot->find(profile_name);
  if (it == snapshot->end()) {
    failure = "unknown profile";
    return finish(Fail(404, "unknown_profile",
                       "no profile named '" + profile_name +
                           "' is configured: check the webhook URL against profiles[].name"));
  }
  if (!IsSafeTenant(request.tenant)) {
    failure = "bad tenant segment";
    return finish(Fail(400, "bad_tenant",
                       "the tenant segment may contain only letters, digits, '.', '_' and '-'"));
  }
  const ActiveProfile& active = it->second;

  Status verified = active.profile->Verify(request, active.secrets, clock_->NowSeconds());
  if (!verified.ok()) {
    failure = verified.error().message;
    return finish(Fail(401, "unauthorized", verified.error().message));
  }

  Result<connectors::Decoded> decoded = active.profile->Decode(request);
  if (!decoded.ok()) {
    failure = decoded.error().message;
    if (decoded.error().http_status == 415) {
      return finish(Fail(415, "unsupported_media_type", decoded.error().message));
    }
    if (decoded.error().http_status == 413) {
      return finish(Fail(413, "payload_too_large", decoded.error().message));
    }
    return finish(Fail(400, "malformed_body", decoded.error().message));
  }

  if (decoded->handshake) {
    if (!decoded->handshake_note.empty()) {
      log::Warn(
          "webhook handshake",
          {{"profile", profile_name}, {"trace_id", trace_id}, {"detail", decoded->handshake_note}});
    }
    return finish(WebhookResponse{decoded->handshake_status, "{\"handshake\":true}", {}});
  }

  std::vector<queue::Item> items;
  items.reserve(decoded->items.size());
  const int64_t now_ms = clock_->NowMs();
  for (size_t i = 0; i < decoded->items.size(); ++i) {
    auto& d = decoded->items[i];
    queue::Item item;
    item.profile = profile_name;
    item.tenant = request.tenant;
    item.employee_key = std::move(d.employee_key);
    item.dedup_id = std::move(d.dedup_id);
    item.event_type = std::move(d.event_type);
    item.occurred_at = std::move(d.occurred_at);
    item.payload = std::move(d.payload);
    item.trace_id = decoded->items.size() == 1 ? trace_id : trace_id + "-" + std::to_string(i);
    item.received_at_ms = now_ms;
    items.push_back(std::move(item));
  }

  if (!items.empty()) {
    Result<queue::EnqueueOutcome> outcome = enqueue_(items, active.profile->dedup_window_s());
    if (!outcome.ok()) {
      failure = outcome.error().message;
      auto r = Fail(503, "queue_unavailable",
                    "the event could not be stored durably (Redis unreachable); nothing was "
                    "accepted: retry after the Retry-After delay");
      r.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_s));
      return finish(std::move(r));
    }
    accepted = outcome->accepted;
    duplicates = outcome->duplicates;
  }
  response.status = 202;
  response.body = "{\"accepted\":" + std::to_string(accepted) +
                  ",\"duplicates\":" + std::to_string(duplicates) + ",\"trace_id\":\"" + trace_id +
                  "\"}";
  return finish(std::move(response));
}

}  // namespace scimsync::daemon
