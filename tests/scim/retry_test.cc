#include "scimsync/scim/retry.h"

#include <gtest/gtest.h>

#include <vector>

#include "scimsync/clock.h"

namespace scimsync::scim {
namespace {

constexpr int64_t kStart = 1'700'000'000'000;  // Tue, 14 Nov 2023 22:13:20 GMT

RetryOptions Options() {
  RetryOptions o;
  o.base_delay_ms = 1000;
  o.max_delay_ms = 300000;
  o.max_attempts = 12;
  o.max_age_ms = 3 * 24 * 3600 * 1000LL;
  return o;
}

Error Transient() { return Error::Transient("connection refused"); }

TEST(Backoff, ExactSequenceWithFixedRandom) {
  FakeClock clock(kStart);
  SequenceRandom random({0.5});
  RetryPolicy policy(Options(), clock, random);
  std::vector<int64_t> delays;
  for (int attempt = 1; attempt <= 11; ++attempt) {
    auto d = policy.Decide(attempt, kStart, Transient());
    ASSERT_TRUE(d.retry) << attempt;
    delays.push_back(d.delay_ms);
  }
  // Half of min(300 s, 1 s * 2^(attempt-1)).
  EXPECT_EQ(delays, (std::vector<int64_t>{500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000,
                                          150000, 150000}));
}

TEST(Backoff, FullJitterSpansZeroToTheCap) {
  FakeClock clock(kStart);
  SequenceRandom random({0.0, 0.25, 0.999, 0.75});
  RetryPolicy policy(Options(), clock, random);
  EXPECT_EQ(policy.Decide(3, kStart, Transient()).delay_ms, 0);     // cap 4000
  EXPECT_EQ(policy.Decide(3, kStart, Transient()).delay_ms, 1000);  // 0.25 * 4000
  EXPECT_EQ(policy.Decide(3, kStart, Transient()).delay_ms, 3996);  // 0.999 * 4000
  EXPECT_EQ(policy.Decide(20, kStart, Transient()).retry, false);   // past max_attempts
  EXPECT_EQ(policy.BackoffCap(1), 1000);
  EXPECT_EQ(policy.BackoffCap(9), 256000);
  EXPECT_EQ(policy.BackoffCap(10), 300000);
  EXPECT_EQ(policy.BackoffCap(500), 300000);
}

TEST(Decide, OnlyTransientErrorsAreRetried) {
  FakeClock clock(kStart);
  SequenceRandom random({0.5});
  RetryPolicy policy(Options(), clock, random);
  for (auto e : {Error::Permanent("HTTP 400: bad"), Error::Conflict("two users"),
                 Error::Invalid("userName: empty"), Error::Auth("401"), Error::NotFound("gone")}) {
    auto d = policy.Decide(1, kStart, e);
    EXPECT_FALSE(d.retry) << e.message;
    EXPECT_NE(d.reason.find(e.message), std::string::npos);
    EXPECT_NE(d.reason.find(ErrorKindName(e.kind)), std::string::npos);
  }
}

TEST(Decide, GivesUpWhenAttemptsAreUsedUp) {
  FakeClock clock(kStart);
  SequenceRandom random({0.5});
  RetryOptions o = Options();
  o.max_attempts = 3;
  RetryPolicy policy(o, clock, random);
  EXPECT_TRUE(policy.Decide(2, kStart, Transient()).retry);
  auto d = policy.Decide(3, kStart, Transient());
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason,
            "gave up after 3 attempts (workers.retry.max_attempts); last error: connection "
            "refused");
}

TEST(Decide, GivesUpWhenTheNextAttemptWouldBeTooOld) {
  FakeClock clock(kStart);
  SequenceRandom random({0.5});
  RetryOptions o = Options();
  o.max_age_ms = 60000;
  RetryPolicy policy(o, clock, random);
  clock.AdvanceMs(58000);
  EXPECT_TRUE(policy.Decide(1, kStart, Transient()).retry);  // 500 ms fits in the last 2 s
  auto d = policy.Decide(3, kStart, Transient());            // 2000 ms does not
  EXPECT_FALSE(d.retry);
  EXPECT_NE(d.reason.find("max_age_s"), std::string::npos);
}

TEST(Decide, RetryAfterIsHonouredAndCapped) {
  FakeClock clock(kStart);
  SequenceRandom random({0.5});
  RetryOptions o = Options();
  o.max_delay_ms = 60000;
  RetryPolicy policy(o, clock, random);
  Error e = Error::Transient("429");
  e.retry_after = std::chrono::milliseconds(7000);
  EXPECT_EQ(policy.Decide(5, kStart, e).delay_ms, 7000);
  e.retry_after = std::chrono::milliseconds(3600 * 1000);
  EXPECT_EQ(policy.Decide(1, kStart, e).delay_ms, 60000);
  e.retry_after = std::chrono::milliseconds(0);
  EXPECT_EQ(policy.Decide(1, kStart, e).delay_ms, 0);
}

TEST(AttemptTimeout, ClippedToTheRemainingAge) {
  FakeClock clock(kStart);
  SequenceRandom random({0.5});
  RetryOptions o = Options();
  o.max_age_ms = 60000;
  RetryPolicy policy(o, clock, random);
  EXPECT_EQ(policy.AttemptTimeoutMs(kStart, 10000), 10000);
  clock.AdvanceMs(55000);
  EXPECT_EQ(policy.AttemptTimeoutMs(kStart, 10000), 5000);
  clock.AdvanceMs(6000);
  EXPECT_EQ(policy.AttemptTimeoutMs(kStart, 10000), 0);
  EXPECT_EQ(policy.RemainingMs(kStart), -1000);
}

TEST(RetryOptions, FromConfig) {
  config::RetryOptions c;
  c.base_delay_ms = 250;
  c.max_delay_ms = 9000;
  c.max_attempts = 4;
  c.max_age_s = 120;
  RetryOptions o = RetryOptions::From(c);
  EXPECT_EQ(o.base_delay_ms, 250);
  EXPECT_EQ(o.max_delay_ms, 9000);
  EXPECT_EQ(o.max_attempts, 4);
  EXPECT_EQ(o.max_age_ms, 120000);
}

TEST(RetryAfter, DeltaSeconds) {
  EXPECT_EQ(ParseRetryAfterMs("120", kStart), 120000);
  EXPECT_EQ(ParseRetryAfterMs(" 5 ", kStart), 5000);
  EXPECT_EQ(ParseRetryAfterMs("0", kStart), 0);
  EXPECT_EQ(ParseRetryAfterMs("99999999999999", kStart), int64_t{99'999'999} * 1000);
}

TEST(RetryAfter, HttpDateInAllThreeForms) {
  // 30 s after kStart.
  EXPECT_EQ(ParseRetryAfterMs("Tue, 14 Nov 2023 22:13:50 GMT", kStart), 30000);
  EXPECT_EQ(ParseRetryAfterMs("Tuesday, 14-Nov-23 22:13:50 GMT", kStart), 30000);
  EXPECT_EQ(ParseRetryAfterMs("Tue Nov 14 22:13:50 2023", kStart), 30000);
  EXPECT_EQ(ParseRetryAfterMs("Wed Nov  1 00:00:00 2023", kStart), 0);  // past: now
  EXPECT_EQ(ParseRetryAfterMs("Fri, 01 Mar 2024 00:00:00 GMT", kStart),
            1709251200000 - kStart);  // across a leap day
}

TEST(RetryAfter, GarbageIsIgnored) {
  for (const char* v :
       {"", "soon", "1.5", "-3", "Tue, 14 Nov 2023 22:13:50 CET", "Tue, 14 Foo 2023 22:13:50 GMT",
        "Tue, 14 Nov 2023 25:13:50 GMT", "Tue, 14 Nov 2023 22:13:50 GMT trailing"}) {
    EXPECT_FALSE(ParseRetryAfterMs(v, kStart).has_value()) << v;
  }
}

}  // namespace
}  // namespace scimsync::scim
