#include "scimsync/scim/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>

#include "scimsync/redis/client.h"

namespace scimsync::scim {
namespace {

// The bucket's state and rules, in C++ for the in-memory limiter. kScript below is the same
// algorithm in Lua for Redis; the tests run one suite against both.
//
//   tat            the earliest time the next slot can start (GCRA's "theoretical arrival time")
//   blocked_until  no slot starts before this (the last 429's Retry-After)
//   factor         the rate fraction right after the block; 1 when no 429 is being recovered from
struct BucketState {
  double tat = 0;
  int64_t blocked_until = 0;
  double factor = 1;
};

double FactorAt(const BucketState& s, const RateLimitOptions& o, double t) {
  if (s.factor >= 1) return 1;
  if (t < static_cast<double>(s.blocked_until)) return s.factor;
  if (o.recovery_ms <= 0) return 1;
  return std::min(1.0, s.factor + (1 - s.factor) * (t - static_cast<double>(s.blocked_until)) /
                                      static_cast<double>(o.recovery_ms));
}

Reservation ReserveSlot(BucketState& s, const RateLimitOptions& o, int64_t now,
                        int64_t max_wait_ms) {
  double send_at =
      std::max({static_cast<double>(now), s.tat, static_cast<double>(s.blocked_until)});
  auto wait = static_cast<int64_t>(std::ceil(send_at - static_cast<double>(now)));
  if (wait > max_wait_ms) return {false, wait};
  s.tat = o.requests_per_second > 0
              ? send_at + 1000.0 / (o.requests_per_second * FactorAt(s, o, send_at))
              : send_at;
  return {true, wait};
}

void Throttle(BucketState& s, const RateLimitOptions& o, int64_t now, int64_t block_ms) {
  if (block_ms <= 0) block_ms = o.default_block_ms;
  // 429s answering requests sent before the block began are one signal, not several: only a
  // 429 after the block has passed lowers the rate again.
  if (now >= s.blocked_until) {
    s.factor = std::max(o.min_factor, FactorAt(s, o, static_cast<double>(now)) / 2);
  }
  s.blocked_until = std::max(s.blocked_until, now + block_ms);
}

class MemoryRateLimiter final : public RateLimiter {
 public:
  MemoryRateLimiter(const RateLimitOptions& options, const Clock& clock)
      : options_(options), clock_(clock) {}

  Result<Reservation> Reserve(int64_t max_wait_ms) override {
    std::lock_guard lock(mu_);
    return ReserveSlot(state_, options_, clock_.NowMs(), max_wait_ms);
  }

  Status Throttled(int64_t block_ms) override {
    std::lock_guard lock(mu_);
    Throttle(state_, options_, clock_.NowMs(), block_ms);
    return {};
  }

 private:
  const RateLimitOptions options_;
  const Clock& clock_;
  std::mutex mu_;
  BucketState state_;
};

// KEYS[1] bucket hash. ARGV: op ("reserve" | "throttle" | "peek"), now_ms,
// requests_per_second, recovery_ms, min_factor, max_wait_ms (reserve) or block_ms (throttle).
// Returns {granted, wait_ms} for reserve, {1, blocked_until} for throttle and peek (which
// writes nothing).
constexpr char kScript[] = R"lua(
local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local rps = tonumber(ARGV[3])
local recovery = tonumber(ARGV[4])
local min_factor = tonumber(ARGV[5])
local arg = tonumber(ARGV[6])
local s = redis.call('HMGET', key, 'tat', 'blocked_until', 'factor')
local tat = tonumber(s[1]) or 0
local blocked = tonumber(s[2]) or 0
local f0 = tonumber(s[3]) or 1
if op == 'peek' then return {1, blocked} end
local function factor(t)
  if f0 >= 1 then return 1 end
  if t < blocked then return f0 end
  if recovery <= 0 then return 1 end
  return math.min(1, f0 + (1 - f0) * (t - blocked) / recovery)
end
local result
if op == 'reserve' then
  local send_at = math.max(now, tat, blocked)
  local wait = math.ceil(send_at - now)
  if wait > arg then return {0, wait} end
  if rps > 0 then tat = send_at + 1000 / (rps * factor(send_at)) else tat = send_at end
  redis.call('HSET', key, 'tat', string.format('%.3f', tat))
  result = {1, wait}
else
  if now >= blocked then f0 = math.max(min_factor, factor(now) / 2) end
  blocked = math.max(blocked, now + arg)
  redis.call('HSET', key, 'blocked_until', string.format('%d', blocked),
             'factor', string.format('%.6f', f0))
  result = {1, blocked}
end
local horizon = math.max(tat, blocked) + recovery - now + 60000
redis.call('PEXPIRE', key, math.ceil(horizon))
return result
)lua";

std::string Number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

class RedisRateLimiter final : public RateLimiter {
 public:
  RedisRateLimiter(redis::Pool& pool, std::string key, const RateLimitOptions& options,
                   const Clock& clock)
      : pool_(pool), key_(std::move(key)), options_(options), clock_(clock), script_(kScript) {}

  Result<Reservation> Reserve(int64_t max_wait_ms) override {
    if (options_.requests_per_second <= 0) return ReserveUnpaced(max_wait_ms);
    auto reply = Run("reserve", max_wait_ms);
    if (!reply.ok()) return reply.error();
    const auto& e = reply->elements();
    if (e.size() != 2 || !e[0].AsInteger() || !e[1].AsInteger()) {
      return Error::Transient("rate limiter: unexpected answer from the Redis script");
    }
    return Reservation{*e[0].AsInteger() == 1, *e[1].AsInteger()};
  }

  Status Throttled(int64_t block_ms) override {
    auto reply = Run("throttle", block_ms > 0 ? block_ms : options_.default_block_ms);
    if (!reply.ok()) return reply.error();
    const auto& e = reply->elements();
    if (e.size() == 2 && e[1].AsInteger()) {
      // This instance's own requests see its 429 at once, whatever the refresh interval.
      std::lock_guard lock(mu_);
      blocked_until_ = std::max(blocked_until_, *e[1].AsInteger());
    }
    return {};
  }

 private:
  // Without pacing the bucket only holds the shared 429 block, which changes rarely: it is read
  // from Redis at most every kUnpacedRefreshMs instead of before every request (a script per
  // SCIM request was ~15% of the Redis commands of the end-to-end bench). Another instance's
  // 429 therefore holds this one's requests up to that much later.
  Result<Reservation> ReserveUnpaced(int64_t max_wait_ms) {
    const int64_t now = clock_.NowMs();
    std::unique_lock lock(mu_);
    if (now < checked_at_ms_ || now >= checked_at_ms_ + kUnpacedRefreshMs) {
      lock.unlock();
      auto reply = Run("peek", 0);
      if (!reply.ok()) return reply.error();
      const auto& e = reply->elements();
      if (e.size() != 2 || !e[1].AsInteger()) {
        return Error::Transient("rate limiter: unexpected answer from the Redis script");
      }
      lock.lock();
      // max: a 429 this instance recorded while the peek was on its way must not be forgotten.
      // Blocks only move forward, so the larger value is the newer one.
      blocked_until_ = std::max(blocked_until_, *e[1].AsInteger());
      checked_at_ms_ = now;
    }
    const int64_t wait = std::max<int64_t>(0, blocked_until_ - now);
    if (wait > max_wait_ms) return Reservation{false, wait};
    return Reservation{true, wait};
  }

  Result<redis::Reply> Run(const char* op, int64_t arg) {
    auto conn = pool_.Acquire();
    auto reply = conn->Eval(
        script_, {key_},
        {op, std::to_string(clock_.NowMs()), Number(options_.requests_per_second),
         std::to_string(options_.recovery_ms), Number(options_.min_factor), std::to_string(arg)});
    if (!reply.ok()) {
      Error e = reply.error();
      // The limiter is only as available as Redis; a failure here delays the request.
      e.kind = ErrorKind::kTransient;
      e.message = "rate limiter (Redis " + conn->endpoint() + "): " + e.message;
      return e;
    }
    return reply;
  }

  redis::Pool& pool_;
  const std::string key_;
  const RateLimitOptions options_;
  const Clock& clock_;
  const redis::Script script_;
  std::mutex mu_;
  int64_t checked_at_ms_ = std::numeric_limits<int64_t>::min() / 2;  // never: read first
  int64_t blocked_until_ = 0;
};

}  // namespace

RateLimitOptions RateLimitOptions::From(const config::TargetOptions& target) {
  RateLimitOptions o;
  o.requests_per_second = target.max_requests_per_second;
  return o;
}

std::unique_ptr<RateLimiter> NewMemoryRateLimiter(const RateLimitOptions& options,
                                                  const Clock& clock) {
  return std::make_unique<MemoryRateLimiter>(options, clock);
}

std::unique_ptr<RateLimiter> NewRedisRateLimiter(redis::Pool& pool, std::string key,
                                                 const RateLimitOptions& options,
                                                 const Clock& clock) {
  return std::make_unique<RedisRateLimiter>(pool, std::move(key), options, clock);
}

}  // namespace scimsync::scim
