// Evaluates value sources (pointers, headers, constants, hashes, templates, first-of) and their
// transforms against an item, the request and, on the worker side, the fetched record.
#pragma once

#include <rapidjson/document.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "scimsync/connectors/profile.h"
#include "spec.h"

namespace scimsync::connectors::internal {

// Header names compare case-insensitively with '_' and '-' alike (Gusto's docs write
// x_gusto_signature; proxies differ in what they pass through).
std::string NormalizeHeaderName(std::string_view name);
const std::string* FindHeader(const Request& request, std::string_view name);

struct EvalContext {
  const rapidjson::Value* item = nullptr;
  const rapidjson::Value* body = nullptr;
  const rapidjson::Value* record = nullptr;
  const rapidjson::Value* payload = nullptr;
  Scope default_scope = Scope::kItem;
  const Request* request = nullptr;                               // header sources (ingest side)
  const std::map<std::string, std::string>* variables = nullptr;  // employee_key, tenant...
  int64_t now_s = 0;  // date_reached compares with today (UTC)
};

// nullopt when the value is absent or null; transforms run on present values (and `default`
// or a lookup default may turn an absent value into a present one).
std::optional<std::string> Evaluate(const Source& source, const EvalContext& ctx);

std::optional<std::string> ApplyTransforms(const std::vector<Transform>& transforms,
                                           std::optional<std::string> value, int64_t now_s);

// Parses "2026-11-28", "2026-11-28T10:00:00Z", "+0000"/"+00:00" offsets, fractional seconds;
// digits only = Unix seconds (or milliseconds when > 10^11). nullopt when unparseable.
std::optional<int64_t> ParseTimeSeconds(std::string_view text);
std::optional<int64_t> ParseTimeMillis(std::string_view text);

// A template placeholder at tmpl[pos] ('{'): `{name}` (letters, digits, '_') or `{/json/pointer}`.
// Anything else -- such as the braces of a JSON body -- is literal text. On success *name is
// the text inside and *end the index after '}'.
bool PlaceholderAt(std::string_view tmpl, size_t pos, std::string* name, size_t* end);

std::string Trim(std::string_view s);

}  // namespace scimsync::connectors::internal
