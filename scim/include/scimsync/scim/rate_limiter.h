// The SCIM request rate, shared by every worker of every instance that uses one Redis: a pacing
// token bucket (GCRA) whose state lives in one Redis hash, updated by one Lua script per request.
//
// Each request reserves a send slot; slots are 1/rate apart, so no one-second window holds more
// than `requests_per_second` requests (plus the single one at its edge). A 429 from the server
// blocks every slot until its Retry-After has passed, then the rate restarts at half of what it
// was and climbs linearly back to the configured rate over `recovery_ms`; another 429 halves it
// again. This is how scimsync lowers its rate automatically while JumpCloud pushes back, since
// JumpCloud's own limit is not published.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "scimsync/clock.h"
#include "scimsync/config.h"
#include "scimsync/redis/keys.h"
#include "scimsync/result.h"

namespace scimsync::redis {
class Pool;
}

namespace scimsync::scim {

struct RateLimitOptions {
  // Summed over everyone sharing the bucket. 0 disables pacing (a 429's block still applies; the
  // Redis limiter then reads another instance's block at most kUnpacedRefreshMs late).
  double requests_per_second = 10;
  // After a 429's block, how long the rate takes to climb back from the reduced rate to
  // requests_per_second. Longer is gentler on a server that just pushed back.
  int64_t recovery_ms = 60000;
  // The rate never drops below this fraction of requests_per_second, however many 429s come.
  double min_factor = 1.0 / 16;
  // Block applied for a 429 without a usable Retry-After.
  int64_t default_block_ms = 1000;

  // requests_per_second from target.max_requests_per_second; the rest keep their defaults.
  static RateLimitOptions From(const config::TargetOptions& target);
};

// Without pacing, how often the Redis limiter re-reads the shared 429 block.
inline constexpr int64_t kUnpacedRefreshMs = 250;

// The Redis key of the shared bucket: "<redis.key_prefix>:ratelimit".
inline std::string RateLimitKey(const std::string& key_prefix) {
  return redis::keys::scim::RateLimit(key_prefix);
}

struct Reservation {
  bool granted = false;  // true: a slot is reserved; send after wait_ms
  int64_t wait_ms = 0;   // granted: wait before sending. Not granted: when a slot would be free
};

class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  // Reserves the next free slot if it is at most max_wait_ms away; otherwise reserves nothing
  // and says how far away it is, so the caller can give its job back ("retry after") instead of
  // holding a worker. A Redis failure is kTransient.
  virtual Result<Reservation> Reserve(int64_t max_wait_ms) = 0;
  // The server answered 429: block everyone for block_ms (<= 0: default_block_ms) from now, then
  // recover gradually.
  virtual Status Throttled(int64_t block_ms) = 0;
};

// One process only (tests, and single-instance setups without a shared bucket); thread-safe.
std::unique_ptr<RateLimiter> NewMemoryRateLimiter(const RateLimitOptions& options,
                                                  const Clock& clock);

// Shared through Redis under `key` (e.g. "scimsync:ratelimit"). Times come from `clock`, so all
// instances must have synchronized clocks (NTP); a clock running behind only makes its owner
// wait longer. The key expires once its state no longer matters. `pool` and `clock` must outlive
// the limiter; thread-safe.
std::unique_ptr<RateLimiter> NewRedisRateLimiter(redis::Pool& pool, std::string key,
                                                 const RateLimitOptions& options,
                                                 const Clock& clock);

}  // namespace scimsync::scim
