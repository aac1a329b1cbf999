// How SCIM requests leave the process: over HTTPS to JumpCloud (cpp-httplib), or, in a dry run,
// into a JSON-lines file. Auth headers are added here and nowhere else, so the API key never
// reaches the converger, its logs or its dead letters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "scimsync/config.h"
#include "scimsync/result.h"

namespace scimsync::scim {

struct HttpRequest {
  std::string method;  // GET POST PUT PATCH DELETE
  std::string target;  // path below the base URL, with its query: "/Users?filter=..."
  std::string body;    // sent as application/scim+json when not empty
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::string retry_after;  // the Retry-After header, empty when absent
  std::string location;     // the Location header (for messages about unexpected redirects)
};

struct TransportOptions {
  std::string base_url = "https://api.jumpcloud.com/scim/v2";
  std::string api_key;  // the resolved secret
  // "x-api-key" (x-api-key: KEY), "bearer" (Authorization: Bearer KEY), or any header name.
  std::string auth_header = "x-api-key";
  std::string org_id;   // sent as x-org-id when set (multi-tenant admins)
  std::string ca_file;  // PEM bundle trusted in addition to the system store
  bool insecure_skip_verify = false;

  static TransportOptions From(const config::TargetOptions& target, std::string api_key);
};

// Not thread-safe: each worker owns one (it holds one keep-alive connection).
class Transport {
 public:
  virtual ~Transport() = default;
  // Sends one request and waits at most timeout_ms for each of connect, send and every read.
  // Any HTTP answer is a success here, 4xx and 5xx included: statuses are the caller's to
  // classify. An error means there was no answer: kTransient (refused, reset, timed out, TLS
  // handshake or certificate failure), kPermanent for problems a retry cannot fix.
  virtual Result<HttpResponse> Send(const HttpRequest& request, int64_t timeout_ms) = 0;
  // "GET https://api.jumpcloud.com/scim/v2/Users/abc": for logs and dead letters.
  virtual std::string Describe(const HttpRequest& request) const = 0;
  // True when nothing reaches the network.
  virtual bool dry_run() const { return false; }
};

// HTTPS with certificate and host name verification against the system CA store, extended by
// ca_file when set (a corporate TLS proxy's CA, say); TCP no-delay; keep-alive; no redirects
// followed (a redirect would carry the key elsewhere). Plain http is refused unless the host is
// loopback. Errors (kInvalid) name the setting to fix.
Result<std::unique_ptr<Transport>> NewHttpTransport(const TransportOptions& options);

// Sends nothing. Each request is logged at info and appended to `file` (parent directories are
// created) as one JSON line: {"ts_ms","method","url","headers","body"}, secrets redacted.
// Answers are synthesized so that a dry run records what a first sync would do: every GET is
// answered as "no such user" (an empty list, 404 for /Users/{id} and /ServiceProviderConfig),
// so a create is what gets recorded; POST echoes the body with a made-up id ("dry-run-N"),
// PATCH and PUT answer 200, DELETE 204. Thread-safe (appends are serialized).
Result<std::unique_ptr<Transport>> NewDryRunTransport(const TransportOptions& options,
                                                      const std::string& file);

}  // namespace scimsync::scim
