// Shared pieces of the fuzz targets: splitting one input into the parts a target needs, checked
// properties, and a silent log sink (a fuzzer runs millions of inputs;
// log lines would only slow it down and bury the sanitizer's report).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "scimsync/log.h"

namespace scimsync::fuzz {

// Set by the replay driver: saves the failing input before the process dies.
inline void (*g_on_failure)() = nullptr;

// A property the target checks was broken. libFuzzer saves the input on the trap.
[[noreturn]] inline void Fail(const char* what, const char* file, int line) {
  std::fprintf(stderr, "fuzz: %s:%d: property broken: %s\n", file, line, what);
  if (g_on_failure != nullptr) g_on_failure();
  __builtin_trap();
}

#define FUZZ_EXPECT(cond)                                           \
  do {                                                              \
    if (!(cond)) ::scimsync::fuzz::Fail(#cond, __FILE__, __LINE__); \
  } while (0)

// Reads one line (without its '\n') from *rest and advances past it. The last line need not end
// in '\n'.
inline std::string_view TakeLine(std::string_view* rest) {
  size_t nl = rest->find('\n');
  std::string_view line = rest->substr(0, nl);
  *rest = nl == std::string_view::npos ? std::string_view() : rest->substr(nl + 1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

inline void SilenceLogs() {
  log::SetSink([](std::string_view) {});
}

}  // namespace scimsync::fuzz
