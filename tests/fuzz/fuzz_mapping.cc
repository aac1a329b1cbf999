// The worker side of every built-in profile on arbitrary JSON: action rules, fetch-back against
// a recorded answer, mapping transforms and JumpCloud validation (PlanItem).
// Input lines: profile name, event type, employee key, HRIS answer status; then the item's
// payload up to a line "%%", then the recorded HRIS answer (for profiles with several requests,
// a JSON object with one member per request name).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_profiles.h"
#include "json.h"
#include "scimsync/scim/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace scimsync;
  static const bool kInit = (fuzz::SilenceLogs(), true);
  (void)kInit;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const connectors::Profile& profile = fuzz::PickProfile(fuzz::TakeLine(&rest));
  connectors::WorkItem item;
  item.event_type = std::string(fuzz::TakeLine(&rest));
  item.employee_key = std::string(fuzz::TakeLine(&rest));
  std::string status_text(fuzz::TakeLine(&rest));
  int status = 200;
  if (!status_text.empty() && status_text.size() <= 3 &&
      status_text.find_first_not_of("0123456789") == std::string::npos) {
    status = std::stoi(status_text);
  }
  size_t split = rest.find("\n%%\n");
  item.payload = std::string(rest.substr(0, split));
  std::string recorded(split == std::string_view::npos ? std::string_view()
                                                       : rest.substr(split + 4));

  auto fetcher = connectors::NewRecordedFetcher(recorded, status);
  Result<connectors::Plan> plan = profile.PlanItem(item, *fetcher, fuzz::kNowS);
  if (!plan.ok() || !plan->user) return 0;
  // What the converger would POST (and `map` prints) must be JSON.
  const std::string json = scim::CreateBody(*plan->user);
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(json.data(), json.size());
  FUZZ_EXPECT(!doc.HasParseError());
  return 0;
}
