// Behaviour every RateLimiter implementation must show, driven by a FakeClock. Run against the
// in-memory limiter (rate_limiter_test.cc) and the Redis one (redis_test.cc), so the C++ and the
// Lua versions of the algorithm cannot drift apart.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/scim/rate_limiter.h"

namespace scimsync::scim::cases {

using Factory = std::function<std::unique_ptr<RateLimiter>(const RateLimitOptions&, const Clock&)>;

inline RateLimitOptions TenPerSecond() {
  RateLimitOptions o;
  o.requests_per_second = 10;
  o.recovery_ms = 60000;
  o.min_factor = 1.0 / 16;
  o.default_block_ms = 1000;
  return o;
}

inline Reservation MustReserve(RateLimiter& l, int64_t max_wait_ms) {
  auto r = l.Reserve(max_wait_ms);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : Reservation{};
}

// Slots are 1/rate apart: callers reserving at the same moment get staggered waits.
inline void PacesRequests(const Factory& make) {
  FakeClock clock;
  auto l = make(TenPerSecond(), clock);
  for (int64_t expected : {0, 100, 200, 300}) {
    auto r = MustReserve(*l, 10000);
    EXPECT_TRUE(r.granted);
    EXPECT_EQ(r.wait_ms, expected);
  }
  clock.AdvanceMs(1000);
  EXPECT_EQ(MustReserve(*l, 10000).wait_ms, 0);
  EXPECT_EQ(MustReserve(*l, 10000).wait_ms, 100);
}

// Simulated workers that each send as soon as their slot comes: no one-second window ever
// holds more than rate + 1 sends.
inline void NeverExceedsTheRate(const Factory& make) {
  FakeClock clock;
  auto l = make(TenPerSecond(), clock);
  std::vector<int64_t> sends;
  for (int i = 0; i < 60; ++i) {
    auto r = MustReserve(*l, 60000);
    ASSERT_TRUE(r.granted);
    sends.push_back(clock.NowMs() + r.wait_ms);
    if (i % 4 == 3) clock.AdvanceMs(150);  // four workers, then time passes a little
  }
  for (size_t i = 0; i < sends.size(); ++i) {
    size_t in_window = 0;
    for (int64_t t : sends) in_window += (t >= sends[i] && t < sends[i] + 1000) ? 1 : 0;
    EXPECT_LE(in_window, 10u) << "window starting at send " << i;
  }
}

// A slot further away than the caller will wait is not reserved, and not consumed.
inline void DeniedReservationsReserveNothing(const Factory& make) {
  FakeClock clock;
  auto l = make(TenPerSecond(), clock);
  EXPECT_EQ(MustReserve(*l, 0).wait_ms, 0);
  auto denied = MustReserve(*l, 50);
  EXPECT_FALSE(denied.granted);
  EXPECT_EQ(denied.wait_ms, 100);
  auto denied_again = MustReserve(*l, 50);
  EXPECT_FALSE(denied_again.granted);
  EXPECT_EQ(denied_again.wait_ms, 100);
  auto granted = MustReserve(*l, 100);
  EXPECT_TRUE(granted.granted);
  EXPECT_EQ(granted.wait_ms, 100);
}

// After a 429 everyone waits out the Retry-After, then the rate restarts at half and climbs
// back linearly over recovery_ms.
inline void BlocksAfter429ThenRecoversGradually(const Factory& make) {
  FakeClock clock;
  auto l = make(TenPerSecond(), clock);
  ASSERT_TRUE(l->Throttled(2000).ok());
  auto blocked = MustReserve(*l, 1000);
  EXPECT_FALSE(blocked.granted);
  EXPECT_EQ(blocked.wait_ms, 2000);
  EXPECT_EQ(MustReserve(*l, 5000).wait_ms, 2000);  // first slot right at the block's end
  EXPECT_EQ(MustReserve(*l, 5000).wait_ms, 2200);  // at half rate: 200 ms apart
  clock.AdvanceMs(2000 + 30000);                   // half way through recovery: 75 %
  EXPECT_EQ(MustReserve(*l, 5000).wait_ms, 0);
  EXPECT_EQ(MustReserve(*l, 5000).wait_ms, 134);  // 1000 / (10 * 0.75) = 133.3
  clock.AdvanceMs(31000);                         // recovery over: full rate again
  EXPECT_EQ(MustReserve(*l, 5000).wait_ms, 0);
  EXPECT_EQ(MustReserve(*l, 5000).wait_ms, 100);
}

// 429s answering requests sent before the block are one signal; a 429 after the block halves
// the rate again, down to min_factor.
inline void Repeated429sCompoundOnlyAfterTheBlock(const Factory& make) {
  FakeClock clock;
  auto l = make(TenPerSecond(), clock);
  ASSERT_TRUE(l->Throttled(1000).ok());
  ASSERT_TRUE(l->Throttled(1000).ok());  // a second in-flight request's 429
  clock.AdvanceMs(1000);
  EXPECT_EQ(MustReserve(*l, 5000).wait_ms, 0);
  EXPECT_EQ(MustReserve(*l, 5000).wait_ms, 200);  // still half, not a quarter
  clock.AdvanceMs(200);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(l->Throttled(1000).ok());
    clock.AdvanceMs(1000);
  }
  // Halved six more times from ~0.5, floored at 1/16: 1000 / (10 / 16) = 1600 ms apart.
  EXPECT_EQ(MustReserve(*l, 5000).wait_ms, 0);
  EXPECT_EQ(MustReserve(*l, 5000).wait_ms, 1600);
}

// 0 requests per second disables pacing, but a 429 still blocks.
inline void ZeroRateOnlyHonours429(const Factory& make) {
  FakeClock clock;
  RateLimitOptions o = TenPerSecond();
  o.requests_per_second = 0;
  auto l = make(o, clock);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(MustReserve(*l, 0).wait_ms, 0);
  ASSERT_TRUE(l->Throttled(0).ok());  // no Retry-After: default_block_ms
  auto r = MustReserve(*l, 0);
  EXPECT_FALSE(r.granted);
  EXPECT_EQ(r.wait_ms, 1000);
}

}  // namespace scimsync::scim::cases
