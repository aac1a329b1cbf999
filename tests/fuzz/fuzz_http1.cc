// The listener's HTTP/1.1 request parser (daemon/src/http1.h), the only network-facing parser
// that reads bytes straight off a socket. The input is the byte stream of one connection; its
// first byte picks how it is split into reads (1..16 bytes, or all at once), as a non-blocking
// socket might deliver it. Checked: the split never changes what is parsed (same requests, same
// error), Feed's consumption contract, and every limit on what a parsed request can hold.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "http1.h"

namespace {

using scimsync::daemon::http1::Limits;
using scimsync::daemon::http1::Parser;
using scimsync::daemon::http1::Request;

// Small limits, so that the fuzzer reaches each of them.
constexpr Limits kLimits{.max_line_bytes = 256,
                         .max_header_section_bytes = 1024,
                         .max_body_bytes = 4096,
                         .max_headers = 16};

struct Run {
  std::vector<Request> requests;
  int error_status = 0;
  size_t consumed = 0;
};

Run Parse(std::string_view stream, size_t piece) {
  Run run;
  Parser parser(kLimits);
  while (!stream.empty()) {
    // A copy of exactly the piece: AddressSanitizer sees any read past its end.
    const size_t n = piece == 0 ? stream.size() : std::min(piece, stream.size());
    const std::string copy(stream.substr(0, n));
    std::string_view data = copy;
    for (;;) {
      size_t consumed = 0;
      const Parser::State state = parser.Feed(data, &consumed);
      FUZZ_EXPECT(consumed <= data.size());
      data.remove_prefix(consumed);
      run.consumed += consumed;
      if (state == Parser::State::kError) {
        run.error_status = parser.error().status;
        FUZZ_EXPECT(!parser.error().detail.empty());
        FUZZ_EXPECT(!parser.InRequest());
        return run;
      }
      if (state == Parser::State::kNeedMore) {
        FUZZ_EXPECT(data.empty());  // partial lines are kept inside the parser
        break;
      }
      Request r = parser.TakeRequest();
      FUZZ_EXPECT(r.body.size() <= static_cast<size_t>(kLimits.max_body_bytes));
      FUZZ_EXPECT(r.headers.size() <= kLimits.max_headers);
      FUZZ_EXPECT(!r.method.empty() && !r.target.empty());
      FUZZ_EXPECT(r.minor_version == 0 || r.minor_version == 1);
      for (const auto& [name, value] : r.headers) {
        FUZZ_EXPECT(!name.empty() && name.size() <= kLimits.max_line_bytes);
        FUZZ_EXPECT(value.find_first_of("\r\n") == std::string::npos);
      }
      run.requests.push_back(std::move(r));
      if (data.empty()) break;
    }
    stream.remove_prefix(n);
  }
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = data[0] % 17;  // 0: all at once
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Run whole = Parse(stream, 0);
  const Run split = Parse(stream, piece);
  FUZZ_EXPECT(whole.error_status == split.error_status);
  // At an error, consumption stops within the line that showed it, wherever the split fell.
  FUZZ_EXPECT(whole.error_status != 0 || whole.consumed == split.consumed);
  FUZZ_EXPECT(whole.requests.size() == split.requests.size());
  for (size_t i = 0; i < whole.requests.size() && i < split.requests.size(); ++i) {
    const Request& a = whole.requests[i];
    const Request& b = split.requests[i];
    FUZZ_EXPECT(a.method == b.method && a.target == b.target && a.body == b.body);
    FUZZ_EXPECT(a.headers == b.headers && a.keep_alive == b.keep_alive);
  }
  return 0;
}
