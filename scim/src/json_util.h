// RapidJSON helpers for the SCIM library. RapidJSON asserts on a wrong-type access, so every
// accessor here checks the type first and answers "absent" instead.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <optional>
#include <string>
#include <string_view>

#include "scimsync/json_depth.h"

namespace scimsync::scim::json {

// Deeper answers are refused unparsed: the writer and the walks over a parsed answer recurse once
// per level, so a server (or anything in its place) sending a megabyte of '[' would otherwise
// exhaust the worker's stack.
inline constexpr int kMaxDepth = 128;

inline bool Parse(std::string_view text, rapidjson::Document* doc) {
  if (!JsonDepthWithin(text, kMaxDepth)) {
    doc->SetNull();
    return false;
  }
  doc->Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  return !doc->HasParseError();
}

inline std::string Compact(const rapidjson::Value& value) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buf);
  value.Accept(writer);
  return std::string(buf.GetString(), buf.GetSize());
}

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto ca = static_cast<unsigned char>(a[i]);
    auto cb = static_cast<unsigned char>(b[i]);
    if (ca >= 'A' && ca <= 'Z') ca = static_cast<unsigned char>(ca - 'A' + 'a');
    if (cb >= 'A' && cb <= 'Z') cb = static_cast<unsigned char>(cb - 'A' + 'a');
    if (ca != cb) return false;
  }
  return true;
}

// SCIM attribute names are case-insensitive (RFC 7643 2.1): "userName" matches "username".
inline const rapidjson::Value* Member(const rapidjson::Value& object, std::string_view name) {
  if (!object.IsObject()) return nullptr;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (it->name.IsString() &&
        EqualsIgnoreCase(std::string_view(it->name.GetString(), it->name.GetStringLength()),
                         name)) {
      return &it->value;
    }
  }
  return nullptr;
}

inline rapidjson::Value* MutableMember(rapidjson::Value& object, std::string_view name) {
  if (!object.IsObject()) return nullptr;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (it->name.IsString() &&
        EqualsIgnoreCase(std::string_view(it->name.GetString(), it->name.GetStringLength()),
                         name)) {
      return &it->value;
    }
  }
  return nullptr;
}

inline std::optional<std::string> String(const rapidjson::Value* v) {
  if (v == nullptr || !v->IsString()) return std::nullopt;
  return std::string(v->GetString(), v->GetStringLength());
}

inline std::optional<std::string> StringMember(const rapidjson::Value& object,
                                               std::string_view name) {
  return String(Member(object, name));
}

inline rapidjson::Value StringValue(std::string_view s, rapidjson::Document::AllocatorType& a) {
  rapidjson::Value v;
  v.SetString(s.data(), static_cast<rapidjson::SizeType>(s.size()), a);
  return v;
}

// A JSON string literal for `s`, quotes included.
inline std::string Quote(std::string_view s) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buf);
  writer.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return std::string(buf.GetString(), buf.GetSize());
}

}  // namespace scimsync::scim::json
