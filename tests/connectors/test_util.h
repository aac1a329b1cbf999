// Shared helpers for connector tests: config entries from YAML, signed requests, fixture files.
#pragma once

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "scimsync/config.h"
#include "scimsync/connectors/profile.h"

namespace scimsync::connectors::testing {

// A profile entry as the config loader would hand it over.
inline config::ProfileConfig Entry(const std::string& yaml) {
  config::ProfileConfig pc;
  pc.node = YAML::Load(yaml);
  pc.name = pc.node["name"].as<std::string>();
  pc.connector = pc.node["connector"].as<std::string>();
  if (pc.node["secret_env"]) pc.secrets.push_back({pc.node["secret_env"].as<std::string>(), ""});
  if (pc.node["secret_file"]) pc.secrets.push_back({"", pc.node["secret_file"].as<std::string>()});
  pc.path = "profiles[0]";
  return pc;
}

inline std::string HexHmacSha256(const std::string& key, const std::string& msg) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned i = 0; i < len; ++i) {
    hex += kHex[out[i] >> 4];
    hex += kHex[out[i] & 15];
  }
  return hex;
}

inline std::string ProblemsText(const config::Problems& p) {
  std::string out;
  for (const auto& x : p.list()) out += x.ToString() + "\n";
  return out;
}

// A fixture file's bytes ("" when it cannot be read: the comparison that follows fails).
inline std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// JSON without whitespace, to compare documents as text.
inline std::string Compact(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return buf.GetString();
}

// `unix_s` as an HTTP-date (IMF-fixdate, "Tue, 14 Nov 2023 22:13:20 GMT"), as a server writes it
// in Retry-After.
inline std::string HttpDate(int64_t unix_s) {
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

}  // namespace scimsync::connectors::testing
