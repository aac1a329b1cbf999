#include "scimsync/yaml_reader.h"

#include <cmath>
#include <limits>
#include <map>

namespace scimsync::config {

std::string Problem::ToString() const {
  std::string s = path.empty() ? std::string("(top level)") : path;
  if (line > 0) s += " (line " + std::to_string(line) + ")";
  s += ": " + message;
  return s;
}

void Problems::Add(const std::string& path, int line, const std::string& message) {
  list_.push_back(Problem{file_, path, line, message});
}

void Problems::Add(const std::string& path, const YAML::Node& at, const std::string& message) {
  Add(path, LineOf(at), message);
}

int LineOf(const YAML::Node& node) {
  if (!node.IsDefined()) return 0;
  const YAML::Mark mark = node.Mark();
  return mark.line >= 0 ? mark.line + 1 : 0;
}

MapReader::MapReader(const YAML::Node& node, std::string path, Problems* problems)
    : node_(node), path_(std::move(path)), problems_(problems) {
  // An undefined (absent) node throws on most accessors, so decide once here.
  if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
    problems_->Add(path_, node_, "must be a mapping of key: value pairs");
    valid_ = false;
  }
  valid_ = valid_ && node_.IsDefined() && node_.IsMap();
}

MapReader::~MapReader() { Finish(); }

bool MapReader::Has(const std::string& key) const {
  const YAML::Node& map = node_;
  return valid_ && map[key].IsDefined() && !map[key].IsNull();
}

YAML::Node MapReader::Child(const std::string& key) {
  known_.insert(key);
  if (!valid_) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node& map = node_;  // const lookup never inserts the key
  return map[key];
}

std::string MapReader::PathOf(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

int MapReader::LineOf(const std::string& key) const {
  if (!valid_) return config::LineOf(node_);
  const YAML::Node& map = node_;
  const YAML::Node child = map[key];
  return child.IsDefined() ? config::LineOf(child) : config::LineOf(node_);
}

void MapReader::Error(const std::string& key, const std::string& message) {
  problems_->Add(PathOf(key), LineOf(key), message);
}

bool MapReader::String(const std::string& key, std::string* out, bool required) {
  YAML::Node n = Child(key);
  if (!n.IsDefined() || n.IsNull()) {
    if (required) Error(key, "is required");
    return false;
  }
  if (!n.IsScalar()) {
    Error(key, "must be a string");
    return false;
  }
  *out = n.Scalar();
  return true;
}

bool MapReader::Int(const std::string& key, int64_t* out, int64_t min, int64_t max, bool required) {
  YAML::Node n = Child(key);
  if (!n.IsDefined() || n.IsNull()) {
    if (required) Error(key, "is required");
    return false;
  }
  int64_t v = 0;
  if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v)) {
    Error(key, "must be a whole number");
    return false;
  }
  if (v < min || v > max) {
    Error(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " +
                   std::to_string(v) + ")");
    return false;
  }
  *out = v;
  return true;
}

bool MapReader::Int(const std::string& key, int* out, int min, int max, bool required) {
  int64_t v = *out;
  if (!Int(key, &v, min, max, required)) return false;
  *out = static_cast<int>(v);
  return true;
}

bool MapReader::Double(const std::string& key, double* out, double min, double max) {
  YAML::Node n = Child(key);
  if (!n.IsDefined() || n.IsNull()) return false;
  double v = 0;
  if (!n.IsScalar() || !YAML::convert<double>::decode(n, v) || !std::isfinite(v)) {
    Error(key, "must be a number");
    return false;
  }
  if (v < min || v > max) {
    Error(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return false;
  }
  *out = v;
  return true;
}

bool MapReader::Bool(const std::string& key, bool* out) {
  YAML::Node n = Child(key);
  if (!n.IsDefined() || n.IsNull()) return false;
  bool v = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) {
    Error(key, "must be true or false");
    return false;
  }
  *out = v;
  return true;
}

bool MapReader::StringList(const std::string& key, std::vector<std::string>* out) {
  YAML::Node n = Child(key);
  if (!n.IsDefined() || n.IsNull()) return false;
  if (!n.IsSequence()) {
    Error(key, "must be a list of strings");
    return false;
  }
  std::vector<std::string> v;
  for (const auto& item : n) {
    if (!item.IsScalar()) {
      problems_->Add(PathOf(key), item, "must be a list of strings");
      return false;
    }
    v.push_back(item.Scalar());
  }
  *out = std::move(v);
  return true;
}

void MapReader::Finish() {
  if (finished_) return;
  finished_ = true;
  if (!valid_) return;
  std::map<std::string, int> seen;  // key -> line
  for (const auto& kv : node_) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string("?");
    auto [at, inserted] = seen.emplace(key, config::LineOf(kv.first));
    if (!inserted) {
      problems_->Add(PathOf(key), config::LineOf(kv.first),
                     "duplicate key (first on line " + std::to_string(at->second) + ")");
      continue;
    }
    if (known_.count(key) == 0) {
      std::string known_list;
      for (const auto& k : known_) known_list += (known_list.empty() ? "" : ", ") + k;
      problems_->Add(PathOf(key), config::LineOf(kv.first),
                     "unknown key" + (known_list.empty() ? std::string()
                                                         : " (known here: " + known_list + ")"));
    }
  }
}

bool ParseYaml(const std::string& text, YAML::Node* out, Problems* problems) {
  try {
    *out = YAML::Load(text);
    return true;
  } catch (const YAML::Exception& e) {
    problems->Add("", e.mark.line >= 0 ? e.mark.line + 1 : 0, "YAML syntax error: " + e.msg);
    return false;
  }
}

}  // namespace scimsync::config
