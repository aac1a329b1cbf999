// Webhook ingest for every built-in profile: auth verification and body decoding (JSON, forms,
// handshakes, fan-out), on exactly the bytes an unauthenticated sender controls.
// Input: the profile's name on the first line, then "Name: value" header lines, an empty line,
// and the body.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_profiles.h"
#include "json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace scimsync;
  static const bool kInit = (fuzz::SilenceLogs(), true);
  (void)kInit;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const connectors::Profile& profile = fuzz::PickProfile(fuzz::TakeLine(&rest));

  connectors::Request request;
  while (!rest.empty()) {
    std::string_view line = fuzz::TakeLine(&rest);
    if (line.empty()) break;
    size_t colon = line.find(':');
    std::string name(line.substr(0, colon));
    std::string value(colon == std::string_view::npos ? std::string_view()
                                                      : line.substr(colon + 1));
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (name == "X-Fuzz-Tenant") {
      request.tenant = value;
      continue;
    }
    if (name.size() == 12 && (name == "Content-Type" || name == "content-type")) {
      request.content_type = value;
    }
    request.headers.emplace_back(std::move(name), std::move(value));
  }
  request.body.assign(rest);

  Status verified = profile.Verify(request, {fuzz::kSecret}, fuzz::kNowS);
  // An auth error must never echo the secret.
  FUZZ_EXPECT(verified.ok() || verified.error().message.find(fuzz::kSecret) == std::string::npos);
  Result<connectors::Decoded> decoded = profile.Decode(request);
  if (!decoded.ok()) {
    const int status = decoded.error().http_status;
    FUZZ_EXPECT(status == 0 || (status >= 400 && status <= 499));
    return 0;
  }
  // Acknowledged items count against the fan-out limit too.
  FUZZ_EXPECT(decoded->items.size() + decoded->acknowledged.size() <=
              static_cast<size_t>(request.limits.max_items));
  for (const auto& item : decoded->items) {
    FUZZ_EXPECT(!item.employee_key.empty());
    // A tenant from the body becomes part of Redis keys, like the URL segment.
    FUZZ_EXPECT(item.tenant.size() <= 128);
    FUZZ_EXPECT(item.tenant.find_first_of("/:{} \n") == std::string::npos);
    FUZZ_EXPECT(item.employee_key.size() <= static_cast<size_t>(request.limits.max_id_bytes));
    // The payload is what the worker parses later: it must be JSON.
    rapidjson::Document doc;
    FUZZ_EXPECT(connectors::internal::ParseJson(item.payload, &doc, nullptr));
  }
  return 0;
}
