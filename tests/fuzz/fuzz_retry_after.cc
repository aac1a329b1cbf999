// Retry-After from a SCIM server or an HRIS: delta-seconds or one of three HTTP-date forms.
// Input: "now" in Unix milliseconds on the first line (kept to years 1970..9999), then the
// header's value.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_util.h"
#include "scimsync/scim/retry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::string_view now_text = scimsync::fuzz::TakeLine(&rest);
  uint64_t now = 0;
  for (char c : now_text.substr(0, 18)) {
    if (c >= '0' && c <= '9') now = now * 10 + static_cast<uint64_t>(c - '0');
  }
  const auto now_ms = static_cast<int64_t>(now % 253'402'300'800'000ULL);
  auto ms = scimsync::scim::ParseRetryAfterMs(rest, now_ms);
  FUZZ_EXPECT(!ms || *ms >= 0);  // a wait is never negative
  return 0;
}
