#include "scimsync/scim/rate_limiter.h"

#include <gtest/gtest.h>

#include "rate_limiter_cases.h"

namespace scimsync::scim {
namespace {

std::unique_ptr<RateLimiter> Memory(const RateLimitOptions& o, const Clock& c) {
  return NewMemoryRateLimiter(o, c);
}

TEST(MemoryRateLimiter, PacesRequests) { cases::PacesRequests(Memory); }
TEST(MemoryRateLimiter, NeverExceedsTheRate) { cases::NeverExceedsTheRate(Memory); }
TEST(MemoryRateLimiter, DeniedReservationsReserveNothing) {
  cases::DeniedReservationsReserveNothing(Memory);
}
TEST(MemoryRateLimiter, BlocksAfter429ThenRecoversGradually) {
  cases::BlocksAfter429ThenRecoversGradually(Memory);
}
TEST(MemoryRateLimiter, Repeated429sCompoundOnlyAfterTheBlock) {
  cases::Repeated429sCompoundOnlyAfterTheBlock(Memory);
}
TEST(MemoryRateLimiter, ZeroRateOnlyHonours429) { cases::ZeroRateOnlyHonours429(Memory); }

TEST(RateLimitOptions, FromTargetConfig) {
  config::TargetOptions t;
  t.max_requests_per_second = 2.5;
  EXPECT_DOUBLE_EQ(RateLimitOptions::From(t).requests_per_second, 2.5);
  EXPECT_EQ(RateLimitKey("scimsync"), "scimsync:ratelimit");
}

}  // namespace
}  // namespace scimsync::scim
