// What scimsync sends to JumpCloud: filter literals and queries, the diff between the desired
// and the remote user, and the PATCH, POST and PUT bodies built from it.
// Input: newline-separated fields. 0: a filter attribute; 1..13: desired userName, givenName,
// familyName, displayName, email, title, locale, userType, department, costCenter,
// organization, employeeNumber, password ("-" leaves one unset); 14: "active" flags; the rest:
// the remote user's JSON resource.
#include <rapidjson/document.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "scimsync/scim/protocol.h"
#include "scimsync/strings.h"

namespace {

bool IsJson(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  return !doc.HasParseError();
}

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

// Only unreserved characters and %XX may reach the URL.
bool IsUrlSafe(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) continue;
    if (c != '%' || i + 2 >= s.size() || !IsHex(s[i + 1]) || !IsHex(s[i + 2])) return false;
    i += 2;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace scimsync;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::string attribute(fuzz::TakeLine(&rest));
  std::string fields[13];
  for (auto& f : fields) f = std::string(fuzz::TakeLine(&rest));
  std::string_view flags = fuzz::TakeLine(&rest);

  // A filter literal is a JSON string: wrapped in quotes it must parse back to the value (a
  // value that is not UTF-8 cannot be one: its invalid bytes become U+FFFD).
  const std::string escaped = scim::EscapeFilterValue(fields[0]);
  rapidjson::Document literal;
  const std::string quoted = "\"" + escaped + "\"";
  literal.Parse(quoted.data(), quoted.size());
  FUZZ_EXPECT(!literal.HasParseError() && literal.IsString());
  FUZZ_EXPECT(!IsUtf8(fields[0]) ||
              std::string_view(literal.GetString(), literal.GetStringLength()) == fields[0]);
  FUZZ_EXPECT(IsUrlSafe(scim::EqFilterQuery(attribute, fields[0])));
  FUZZ_EXPECT(IsUrlSafe(scim::UrlEncode(attribute)));

  scim::User desired;
  desired.external_id = attribute;
  desired.user_name = fields[0];
  std::optional<std::string>* optional[] = {
      &desired.given_name,  &desired.family_name,  &desired.display_name,    &desired.email,
      &desired.title,       &desired.locale,       &desired.user_type,       &desired.department,
      &desired.cost_center, &desired.organization, &desired.employee_number, &desired.password};
  for (size_t i = 0; i < std::size(optional); ++i) {
    if (fields[i + 1] != "-") *optional[i] = fields[i + 1];
  }
  if (!flags.empty()) desired.active = flags[0] == '1';
  (void)scim::Validate(desired);

  FUZZ_EXPECT(IsJson(scim::CreateBody(desired)));
  Result<scim::RemoteUser> remote = scim::ParseUser(rest);
  if (!remote.ok()) return 0;
  std::vector<scim::PatchOp> ops = scim::Diff(desired, *remote);
  FUZZ_EXPECT(IsJson(scim::PatchBody(ops)));
  for (const auto& op : ops) {
    FUZZ_EXPECT(op.kind != scim::PatchOp::Kind::kReplace || IsJson(op.value_json));
  }
  Result<std::string> put = scim::MergeForPut(*remote, ops);
  FUZZ_EXPECT(!put.ok() || IsJson(*put));
  return 0;
}
