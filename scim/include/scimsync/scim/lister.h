// Reads every user of the SCIM server, page by page (GET /Users?startIndex=N&count=M), for
// reconciliation. Each page is one request through the shared rate limiter, like every other
// request to JumpCloud, so a listing never pushes the fleet over target.max_requests_per_second.
//
// Servers differ in how they page: some cap `count` below what was asked, some ignore
// startIndex/count and answer everything at once. Paging therefore advances by the number of
// users actually received and stops once totalResults is covered, which handles all of these;
// a server that answers the same users again for a later startIndex is an error rather than an
// endless loop.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/result.h"
#include "scimsync/scim/protocol.h"
#include "scimsync/scim/rate_limiter.h"
#include "scimsync/scim/retry.h"
#include "scimsync/scim/transport.h"

namespace scimsync::scim {

struct ListOptions {
  // Users asked for per request. Larger pages mean fewer requests against the rate limit; the
  // server may still answer fewer.
  int page_size = 100;
  int64_t timeout_ms = 10000;  // per request
  // Waiting for a rate-limit slot: a listing is background work and may wait behind the
  // workers' traffic, but not forever.
  int64_t max_rate_wait_ms = 60000;
  // Transient failures (no answer, 408/429/5xx) of one page are retried with backoff
  // (retry.base_delay_ms, Retry-After honoured) up to retry.max_attempts per page.
  RetryOptions retry{
      .base_delay_ms = 1000, .max_delay_ms = 60000, .max_attempts = 5, .max_age_ms = 600000};
  // Stops a server that never ends its listing.
  int64_t max_users = 2'000'000;
};

struct ListDeps {
  Transport* transport = nullptr;
  RateLimiter* limiter = nullptr;  // null: no pacing (tests)
  const Clock* clock = nullptr;
  Random* random = nullptr;
  // Waits for a rate-limit slot or a backoff. Default: std::this_thread::sleep_for.
  std::function<void(int64_t ms)> sleep;
};

struct ListStats {
  int requests = 0;  // sent, retries included
  int pages = 0;     // answered with users
};

// Every user, in the server's order, each once. Errors: kAuth when the key is refused (401/403),
// kTransient when a page could not be read within its attempts (unreachable, 5xx, 429, no rate
// slot), kPermanent for an answer that is not a ListResponse or a server that pages
// inconsistently; each message names the request.
Result<std::vector<RemoteUser>> ListAllUsers(const ListOptions& options, const ListDeps& deps,
                                             ListStats* stats = nullptr);

}  // namespace scimsync::scim
