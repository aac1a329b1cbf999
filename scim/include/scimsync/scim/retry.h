// When to try a failed SCIM job again, as small value types with the clock and the random source
// injected: exponential backoff with full jitter, Retry-After honoured, every attempt bounded by
// the job's maximum age. Tests pin exact delay sequences with a fixed random source.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/config.h"
#include "scimsync/result.h"

namespace scimsync::scim {

// Uniform numbers in [0, 1).
class Random {
 public:
  virtual ~Random() = default;
  virtual double Uniform() = 0;
};

// Seeded from std::random_device; thread-safe.
class SystemRandom final : public Random {
 public:
  SystemRandom();
  double Uniform() override;

 private:
  std::mutex mu_;
  std::mt19937_64 engine_;
};

// Returns the given values in turn, starting over after the last (tests).
class SequenceRandom final : public Random {
 public:
  explicit SequenceRandom(std::vector<double> values) : values_(std::move(values)) {}
  double Uniform() override;

 private:
  std::mutex mu_;
  std::vector<double> values_;
  size_t next_ = 0;
};

struct RetryOptions {
  int64_t base_delay_ms = 1000;    // backoff cap for the first retry; doubles each attempt
  int64_t max_delay_ms = 300000;   // no wait is longer, Retry-After included
  int max_attempts = 10;           // attempts in total, the first one included
  int64_t max_age_ms = 259200000;  // from the first attempt; then the job is given up

  static RetryOptions From(const config::RetryOptions& c);
};

struct RetryDecision {
  bool retry = false;
  int64_t delay_ms = 0;  // when retry: wait this long before the next attempt
  std::string reason;    // when not: why the job is given up, for the dead letter
};

class RetryPolicy {
 public:
  // `clock` and `random` must outlive the policy.
  RetryPolicy(RetryOptions options, const Clock& clock, Random& random)
      : options_(options), clock_(&clock), random_(&random) {}

  // `attempt`: attempts made so far, the failed one included (1 after the first failure).
  // Only kTransient errors are retried. The delay is the error's Retry-After when it has one,
  // else full jitter: uniform in [0, min(max_delay, base * 2^(attempt-1))]; either way at most
  // max_delay_ms. Gives up when attempts are used up, or when the next attempt would start
  // after first_attempt_ms + max_age.
  RetryDecision Decide(int attempt, int64_t first_attempt_ms, const Error& error) const;

  // The full-jitter delay alone (draws one random number).
  int64_t Backoff(int attempt) const;
  // The exponential cap for `attempt` without jitter: min(max_delay, base * 2^(attempt-1)).
  int64_t BackoffCap(int attempt) const;

  // Time left until the job's maximum age; <= 0 when it is spent.
  int64_t RemainingMs(int64_t first_attempt_ms) const;
  // A request's timeout: `timeout_ms` clipped to the remaining age (0 when none is left).
  int64_t AttemptTimeoutMs(int64_t first_attempt_ms, int64_t timeout_ms) const;

  const RetryOptions& options() const { return options_; }

 private:
  RetryOptions options_;
  const Clock* clock_;
  Random* random_;
};

// Parses a Retry-After header: delta-seconds ("120") or an HTTP-date (IMF-fixdate
// "Sun, 06 Nov 1994 08:49:37 GMT", and the obsolete RFC 850 and asctime forms RFC 9110 says to
// accept). Returns the wait in milliseconds from now_ms (0 for a date in the past), or empty
// when the value is neither.
std::optional<int64_t> ParseRetryAfterMs(std::string_view value, int64_t now_ms);

}  // namespace scimsync::scim
