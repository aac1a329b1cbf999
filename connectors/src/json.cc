#include "json.h"

#include <rapidjson/error/en.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace scimsync::connectors::internal {

namespace {

// RFC 6901 escaping of one reference token.
std::string PointerToken(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

bool FindLong(const rapidjson::Value& v, int64_t max_bytes, const std::string& at,
              std::string* where) {
  if (v.IsString()) {
    if (static_cast<int64_t>(v.GetStringLength()) <= max_bytes) return false;
    *where = at;
    return true;
  }
  if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      const std::string name(it->name.GetString(), it->name.GetStringLength());
      const std::string child = at + "/" + PointerToken(name.substr(0, 64));
      if (static_cast<int64_t>(name.size()) > max_bytes) {
        *where = child + " (the member's name)";
        return true;
      }
      if (FindLong(it->value, max_bytes, child, where)) return true;
    }
  } else if (v.IsArray()) {
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
      if (FindLong(v[i], max_bytes, at + "/" + std::to_string(i), where)) return true;
    }
  }
  return false;
}

}  // namespace

std::optional<std::string> FindLongString(const rapidjson::Value& root, int64_t max_bytes) {
  std::string where;
  if (!FindLong(root, max_bytes, "", &where)) return std::nullopt;
  return where.empty() ? std::string("\"\" (the whole body)") : where;
}

bool ParseJson(std::string_view text, rapidjson::Document* doc, std::string* error) {
  if (!JsonDepthWithin(text, kMaxJsonDepth)) {
    doc->SetNull();
    if (error != nullptr) {
      *error = "objects and arrays nest deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    }
    return false;
  }
  // Iterative: the parser's own stack is on the heap, bounded by the text's size.
  doc->Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(text.data(),
                                                                                     text.size());
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
