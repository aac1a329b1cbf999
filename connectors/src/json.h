// RapidJSON helpers. RapidJSON asserts on accessors of the wrong type, so every read goes through
// these, which check the type first. RapidJSON's errors become text here and nowhere else.
#pragma once

#include <rapidjson/document.h>

#include <optional>
#include <string>
#include <string_view>

#include "scimsync/json_depth.h"

namespace scimsync::connectors::internal {

// Deeper nesting than this is refused before parsing, whoever the caller is: RapidJSON's writer,
// and every tree walk here, recurse once per level, so a body of a megabyte of '[' would
// otherwise exhaust a thread's stack.
inline constexpr int kMaxJsonDepth = 128;

// Parses strictly (valid UTF-8 required; at most kMaxJsonDepth levels). On failure *error says
// where and why.
bool ParseJson(std::string_view text, rapidjson::Document* doc, std::string* error);

// The first string (member name or value) longer than max_bytes, as a JSON pointer to where it
// is; nullopt when there is none.
std::optional<std::string> FindLongString(const rapidjson::Value& root, int64_t max_bytes);

// RFC 6901: "" is the whole document, "/a/0/b" walks objects and arrays.
bool IsValidPointer(const std::string& pointer);
const rapidjson::Value* Resolve(const rapidjson::Value& root, const std::string& pointer);

std::string Compact(const rapidjson::Value& value);

// A scalar's text: strings as they are, numbers in their shortest decimal form, booleans as
// true/false. nullopt for null, a missing value, or an object/array.
std::optional<std::string> ScalarText(const rapidjson::Value* value);

// Builds a JSON string value owned by `alloc`.
rapidjson::Value StringValue(std::string_view text, rapidjson::Document::AllocatorType& alloc);

}  // namespace scimsync::connectors::internal
