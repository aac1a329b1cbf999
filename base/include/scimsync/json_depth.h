// A cheap pre-check before parsing untrusted JSON: RapidJSON's DOM writer and every walk over a
// parsed document recurse once per nesting level, so a megabyte of '[' would exhaust a thread's
// stack. Counting brackets outside strings (escapes skipped) refuses such input unparsed.
#pragma once

#include <string_view>

namespace scimsync {

// True when no object or array in `text` nests deeper than max_depth. Malformed text may pass:
// the parser rejects it afterwards.
inline bool JsonDepthWithin(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return true;
}

}  // namespace scimsync
