#include "json.h"

#include <rapidjson/error/en.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace scimsync::connectors::internal {

bool ParseJson(std::string_view text, rapidjson::Document* doc, std::string* error) {
  doc->Parse<rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
  if (doc->HasParseError()) {
    if (error != nullptr) {
      *error = std::string("invalid JSON at byte ") + std::to_string(doc->GetErrorOffset()) + ": " +
               rapidjson::GetParseError_En(doc->GetParseError());
    }
    return false;
  }
  return true;
}

bool IsValidPointer(const std::string& pointer) {
  if (pointer.empty()) return true;
  if (pointer[0] != '/') return false;
  rapidjson::Pointer p(pointer.c_str(), pointer.size());
  return p.IsValid();
}

const rapidjson::Value* Resolve(const rapidjson::Value& root, const std::string& pointer) {
  if (pointer.empty()) return &root;
  rapidjson::Pointer p(pointer.c_str(), pointer.size());
  if (!p.IsValid()) return nullptr;
  return p.Get(root);
}

std::string Compact(const rapidjson::Value& value) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buf);
  value.Accept(writer);
  return std::string(buf.GetString(), buf.GetSize());
}

std::optional<std::string> ScalarText(const rapidjson::Value* value) {
  if (value == nullptr || value->IsNull() || value->IsObject() || value->IsArray()) {
    return std::nullopt;
  }
  if (value->IsString()) return std::string(value->GetString(), value->GetStringLength());
  if (value->IsBool()) return value->GetBool() ? "true" : "false";
  if (value->IsInt64()) return std::to_string(value->GetInt64());
  if (value->IsUint64()) return std::to_string(value->GetUint64());
  return Compact(*value);  // doubles: RapidJSON prints the shortest round-tripping form
}

rapidjson::Value StringValue(std::string_view text, rapidjson::Document::AllocatorType& alloc) {
  rapidjson::Value v;
  v.SetString(text.data(), static_cast<rapidjson::SizeType>(text.size()), alloc);
  return v;
}

}  // namespace scimsync::connectors::internal
