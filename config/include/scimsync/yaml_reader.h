// Strict YAML reading shared by the daemon config and connector profiles: every problem is
// collected (not just the first) with its key path and line, and any key nobody asked for is an
// error, so a typo never silently falls back to a default.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace scimsync::config {

struct Problem {
  std::string file;  // may be empty for in-memory sources
  std::string path;  // key path, e.g. "target.base_url" or "profiles[0].connector"
  int line = 0;      // 1-based; 0 when unknown
  std::string message;
  // "target.base_url (line 12): must start with https://"
  std::string ToString() const;
};

class Problems {
 public:
  explicit Problems(std::string file = {}) : file_(std::move(file)) {}
  void Add(const std::string& path, int line, const std::string& message);
  void Add(const std::string& path, const YAML::Node& at, const std::string& message);
  const std::vector<Problem>& list() const { return list_; }
  bool empty() const { return list_.empty(); }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  std::vector<Problem> list_;
};

int LineOf(const YAML::Node& node);  // 1-based, 0 if the node has no mark

// Reads one YAML mapping. Every accessor marks its key as known; Finish() reports the rest.
// Accessors leave *out untouched when the key is absent, so callers preset defaults.
class MapReader {
 public:
  // `node` may be undefined/null (treated as an empty map) or must be a map.
  MapReader(const YAML::Node& node, std::string path, Problems* problems);
  ~MapReader();  // calls Finish() if not called
  MapReader(const MapReader&) = delete;
  MapReader& operator=(const MapReader&) = delete;

  bool Has(const std::string& key) const;
  // The child node; marks the key known. Undefined node when absent.
  YAML::Node Child(const std::string& key);
  std::string PathOf(const std::string& key) const;
  int Line() const { return config::LineOf(node_); }
  int LineOf(const std::string& key) const;
  const std::string& path() const { return path_; }
  Problems* problems() const { return problems_; }

  bool String(const std::string& key, std::string* out, bool required = false);
  bool Int(const std::string& key, int64_t* out, int64_t min, int64_t max, bool required = false);
  bool Int(const std::string& key, int* out, int min, int max, bool required = false);
  bool Double(const std::string& key, double* out, double min, double max);
  bool Bool(const std::string& key, bool* out);
  bool StringList(const std::string& key, std::vector<std::string>* out);
  void Ignore(const std::string& key) { known_.insert(key); }
  void Error(const std::string& key, const std::string& message);

  // Reports unknown keys. Idempotent.
  void Finish();

 private:
  YAML::Node node_;
  std::string path_;
  Problems* problems_;
  std::set<std::string> known_;
  bool finished_ = false;
  bool valid_ = true;
};

// Parses YAML text; a syntax error becomes one Problem with its line.
bool ParseYaml(const std::string& text, YAML::Node* out, Problems* problems);

}  // namespace scimsync::config
