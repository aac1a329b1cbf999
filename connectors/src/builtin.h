// Built-in profiles, embedded at build time from connectors/profiles/*.yaml (see
// connectors/CMakeLists.txt), so the daemon runs from any directory.
#pragma once

#include <string_view>
#include <utility>
#include <vector>

namespace scimsync::connectors::internal {

struct BuiltinProfile {
  std::string_view name;  // file name without .yaml
  std::string_view text;
};

const std::vector<BuiltinProfile>& BuiltinProfiles();

}  // namespace scimsync::connectors::internal
