// YAML loading: the daemon config (strict loader, every profile entry's connector keys against
// its built-in profile) and a connector profile file, from the same bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_profiles.h"
#include "loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace scimsync;
  static const bool kInit = (fuzz::SilenceLogs(), true);
  (void)kInit;
  const std::string text(reinterpret_cast<const char*>(data), size);

  config::Config cfg;
  std::vector<config::Problem> problems = config::LoadString(text, "fuzz.yaml", &cfg);
  for (const auto& p : problems) (void)p.ToString();
  if (problems.empty()) {
    config::Problems profile_problems("fuzz.yaml");
    for (const auto& entry : cfg.profiles) {
      // A connector path is read from disk; the fuzzer must not open /dev/zero or its own files.
      if (entry.connector.find('/') != std::string::npos ||
          entry.connector.find(".y") != std::string::npos) {
        continue;
      }
      (void)connectors::LoadProfile(entry, &profile_problems);
    }
  }

  config::Problems spec_problems("fuzz-profile.yaml");
  connectors::internal::ProfileSpec spec;
  (void)connectors::internal::ParseProfile(text, "fuzz-profile.yaml", &spec_problems, &spec);
  for (const auto& p : spec_problems.list()) (void)p.ToString();
  return 0;
}
