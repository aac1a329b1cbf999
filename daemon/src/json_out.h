// The admin commands' JSON output through RapidJSON's Writer: small helpers shared by
// `reconcile --json` and `employee --json`.
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <optional>
#include <string>

#include "scimsync/strings.h"

namespace scimsync::daemon::json_out {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// Names and values come from outside (HRIS records, SCIM answers): scrubbed to UTF-8, since the
// writer copies bytes as they are and the output must parse.
inline void String(JsonWriter& w, const std::string& value) {
  const std::string text = ScrubUtf8(value);
  w.String(text.c_str(), static_cast<rapidjson::SizeType>(text.size()));
}
inline void Str(JsonWriter& w, const char* key, const std::string& value) {
  w.Key(key);
  String(w, value);
}
// Absent is null; NonEmpty: empty is null too.
inline void Opt(JsonWriter& w, const char* key, const std::optional<std::string>& value) {
  w.Key(key);
  if (value) {
    String(w, *value);
  } else {
    w.Null();
  }
}
inline void NonEmpty(JsonWriter& w, const char* key, const std::string& value) {
  Opt(w, key, value.empty() ? std::nullopt : std::optional<std::string>(value));
}
inline void Int(JsonWriter& w, const char* key, int64_t value) {
  w.Key(key);
  w.Int64(value);
}
inline void Bool(JsonWriter& w, const char* key, bool value) {
  w.Key(key);
  w.Bool(value);
}

}  // namespace scimsync::daemon::json_out
