// What the worker stage counts for /metrics. The daemon's Prometheus registry implements it
// (daemon/include/scimsync/daemon/metrics.h, where each family is documented) and the
// composition root hands it in: the workers never reach into daemon/.
#pragma once

#include <string_view>

namespace scimsync::workers {

class SyncMetrics {
 public:
  virtual ~SyncMetrics() = default;
  // One HTTP exchange with the SCIM server. http_status 0: no answer (connect error, timeout,
  // TLS). seconds: from sending to the whole answer read.
  virtual void ScimRequest(std::string_view method, int http_status, double seconds) = 0;
  // A worker waited `seconds` for a send slot of the shared rate limit.
  virtual void RateLimitWaited(double seconds) = 0;
  // An item acknowledged without being applied, and why: "older_than_applied".
  virtual void ItemDropped(std::string_view profile, std::string_view reason) = 0;
  // A version dated beyond workers.max_future_skew_s: "item_clamped" or "stored_ignored".
  virtual void FutureVersion(std::string_view profile, std::string_view what) = 0;
};

// Counts nothing: for syncers built without metrics (tests, one-off commands).
class NoSyncMetrics final : public SyncMetrics {
 public:
  void ScimRequest(std::string_view, int, double) override {}
  void RateLimitWaited(double) override {}
  void ItemDropped(std::string_view, std::string_view) override {}
  void FutureVersion(std::string_view, std::string_view) override {}
};

}  // namespace scimsync::workers
