#include "scimsync/scim/retry.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>

#include "scimsync/strings.h"

namespace scimsync::scim {
namespace {

// A tiny cursor over the header value.
class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}
  bool done() const { return i_ >= s_.size(); }
  void SkipSpaces() {
    while (i_ < s_.size() && s_[i_] == ' ') ++i_;
  }
  bool Literal(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool Word(std::string_view* out) {
    size_t start = i_;
    while (i_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[i_]))) ++i_;
    *out = s_.substr(start, i_ - start);
    return i_ > start;
  }
  // Exactly `min..max` digits.
  bool Number(int min, int max, int* out) {
    size_t start = i_;
    int v = 0;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_])) &&
           static_cast<int>(i_ - start) < max) {
      v = v * 10 + (s_[i_] - '0');
      ++i_;
    }
    int n = static_cast<int>(i_ - start);
    *out = v;
    return n >= min && n <= max;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

int MonthIndex(std::string_view name) {
  static const std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (name == kMonths[i]) return static_cast<int>(i) + 1;
  }
  return 0;
}

bool Time(Scanner& s, int* h, int* m, int* sec) {
  return s.Number(2, 2, h) && s.Literal(':') && s.Number(2, 2, m) && s.Literal(':') &&
         s.Number(2, 2, sec) && *h < 24 && *m < 60 && *sec < 61;
}

// Parses the three HTTP-date forms into milliseconds since the epoch.
std::optional<int64_t> ParseHttpDate(std::string_view text) {
  Scanner s(text);
  std::string_view weekday;
  std::string_view month;
  int day = 0;
  int mon = 0;
  int year = 0;
  int h = 0;
  int m = 0;
  int sec = 0;
  if (!s.Word(&weekday)) return std::nullopt;
  if (s.Literal(',')) {
    s.SkipSpaces();
    if (!s.Number(1, 2, &day)) return std::nullopt;
    if (s.Literal('-')) {
      // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
      if (!s.Word(&month) || !s.Literal('-') || !s.Number(2, 2, &year)) return std::nullopt;
      year += year < 70 ? 2000 : 1900;
    } else {
      // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
      s.SkipSpaces();
      if (!s.Word(&month)) return std::nullopt;
      s.SkipSpaces();
      if (!s.Number(4, 4, &year)) return std::nullopt;
    }
    s.SkipSpaces();
    if (!Time(s, &h, &m, &sec)) return std::nullopt;
    s.SkipSpaces();
    std::string_view zone;
    if (!s.Word(&zone) || zone != "GMT") return std::nullopt;
  } else {
    // asctime: Sun Nov  6 08:49:37 1994
    s.SkipSpaces();
    if (!s.Word(&month)) return std::nullopt;
    s.SkipSpaces();
    if (!s.Number(1, 2, &day)) return std::nullopt;
    s.SkipSpaces();
    if (!Time(s, &h, &m, &sec)) return std::nullopt;
    s.SkipSpaces();
    if (!s.Number(4, 4, &year)) return std::nullopt;
  }
  s.SkipSpaces();
  if (!s.done()) return std::nullopt;
  mon = MonthIndex(month);
  if (mon == 0 || day < 1 || day > 31) return std::nullopt;
  int64_t days = DaysFromCivil(year, mon, day);
  return ((days * 24 + h) * 60 + m) * 60000 + int64_t{sec} * 1000;
}

}  // namespace

SystemRandom::SystemRandom() : engine_(std::random_device{}()) {}

double SystemRandom::Uniform() {
  std::lock_guard lock(mu_);
  return std::uniform_real_distribution<double>(0.0, 1.0)(engine_);
}

double SequenceRandom::Uniform() {
  std::lock_guard lock(mu_);
  if (values_.empty()) return 0;
  double v = values_[next_ % values_.size()];
  ++next_;
  return v;
}

RetryOptions RetryOptions::From(const config::RetryOptions& c) {
  RetryOptions o;
  o.base_delay_ms = c.base_delay_ms;
  o.max_delay_ms = c.max_delay_ms;
  o.max_attempts = c.max_attempts;
  o.max_age_ms = c.max_age_s * 1000;
  return o;
}

int64_t RetryPolicy::BackoffCap(int attempt) const {
  int64_t cap = std::max<int64_t>(options_.base_delay_ms, 0);
  for (int i = 1; i < attempt && cap < options_.max_delay_ms; ++i) {
    cap = cap > std::numeric_limits<int64_t>::max() / 2 ? options_.max_delay_ms : cap * 2;
  }
  return std::min(cap, options_.max_delay_ms);
}

int64_t RetryPolicy::Backoff(int attempt) const {
  double u = std::clamp(random_->Uniform(), 0.0, 1.0);
  return static_cast<int64_t>(u * static_cast<double>(BackoffCap(attempt)));
}

int64_t RetryPolicy::RemainingMs(int64_t first_attempt_ms) const {
  return first_attempt_ms + options_.max_age_ms - clock_->NowMs();
}

int64_t RetryPolicy::AttemptTimeoutMs(int64_t first_attempt_ms, int64_t timeout_ms) const {
  return std::max<int64_t>(0, std::min(timeout_ms, RemainingMs(first_attempt_ms)));
}

RetryDecision RetryPolicy::Decide(int attempt, int64_t first_attempt_ms, const Error& error) const {
  RetryDecision d;
  if (error.kind != ErrorKind::kTransient) {
    d.reason = std::string(ErrorKindName(error.kind)) + " error: " + error.message;
    return d;
  }
  if (attempt >= options_.max_attempts) {
    d.reason = "gave up after " + std::to_string(attempt) +
               " attempts (workers.retry.max_attempts); last error: " + error.message;
    return d;
  }
  int64_t delay = error.retry_after
                      ? std::clamp<int64_t>(error.retry_after->count(), 0, options_.max_delay_ms)
                      : Backoff(attempt);
  if (RemainingMs(first_attempt_ms) - delay <= 0) {
    d.reason = "gave up: the job is older than workers.retry.max_age_s (" +
               std::to_string(options_.max_age_ms / 1000) + " s); last error: " + error.message;
    return d;
  }
  d.retry = true;
  d.delay_ms = delay;
  return d;
}

std::optional<int64_t> ParseRetryAfterMs(std::string_view value, int64_t now_ms) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(),
                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    // Anything beyond a year is as good as "very long"; the policy caps it at max_delay_ms.
    if (value.size() > 8) return int64_t{99'999'999} * 1000;
    int64_t seconds = 0;
    for (char c : value) seconds = seconds * 10 + (c - '0');
    return seconds * 1000;
  }
  auto at = ParseHttpDate(value);
  if (!at) return std::nullopt;
  return std::max<int64_t>(0, *at - now_ms);
}

}  // namespace scimsync::scim
