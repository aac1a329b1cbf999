// What comes back from a SCIM server: users, list responses, the service provider config, error
// answers with their Retry-After, and the redaction applied before an answer is logged.
// Input: the HTTP status on the first line, the Retry-After value on the second, then the body.
#include <rapidjson/document.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "scimsync/scim/protocol.h"

namespace {

// True when a member named "password" (any case) anywhere holds something other than the
// redaction marker.
bool LeaksPassword(const rapidjson::Value& v, int depth = 0) {
  if (depth > 256) return false;
  if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      std::string name(it->name.GetString(), it->name.GetStringLength());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name == "password") {
        if (!it->value.IsString() || std::string_view(it->value.GetString()) != "[redacted]") {
          return true;
        }
      } else if (LeaksPassword(it->value, depth + 1)) {
        return true;
      }
    }
  } else if (v.IsArray()) {
    for (const auto& e : v.GetArray()) {
      if (LeaksPassword(e, depth + 1)) return true;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace scimsync;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::string_view status_text = fuzz::TakeLine(&rest);
  int status = 0;
  for (char c : status_text.substr(0, 3)) {
    if (c >= '0' && c <= '9') status = status * 10 + (c - '0');
  }
  std::string_view retry_after = fuzz::TakeLine(&rest);

  (void)scim::ParseUser(rest);
  (void)scim::ParseListResponse(rest);
  (void)scim::ParseServiceProviderConfig(rest);
  Error e = scim::ErrorFromResponse(status, rest, retry_after, 1'700'000'000'000);
  FUZZ_EXPECT(!(status == 401 || status == 403) || e.kind == ErrorKind::kAuth);
  FUZZ_EXPECT(!(status == 429 || status == 503) || e.kind == ErrorKind::kTransient);
  FUZZ_EXPECT(!e.retry_after || e.retry_after->count() >= 0);

  const std::string redacted = scim::RedactBody(rest);
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(redacted.data(), redacted.size());
  if (!doc.HasParseError() && LeaksPassword(doc)) {
    // Only a body that parsed before redaction is redacted; text that is not JSON is kept.
    rapidjson::Document original;
    original.Parse<rapidjson::kParseIterativeFlag>(rest.data(), rest.size());
    FUZZ_EXPECT(original.HasParseError());
  }
  return 0;
}
