// Strict reading of profile YAML into a ProfileSpec. Every problem names the key path and line
// (MapReader); unknown keys are errors so a typo never falls back to a default silently.
#pragma once

#include <string>

#include "scimsync/yaml_reader.h"
#include "spec.h"

namespace scimsync::connectors::internal {

struct SourceRules {
  bool allow_header = false;  // ingest side: the request's headers exist
  bool allow_hash = false;
  bool allow_variable = false;
  bool allow_transforms = true;
};

bool ReadSource(const YAML::Node& node, const std::string& path, const SourceRules& rules,
                config::Problems* problems, Source* out);
bool ReadTransforms(const YAML::Node& node, const std::string& path, config::Problems* problems,
                    std::vector<Transform>* out);

// Parses a whole profile file. Returns false when any problem was added.
bool ParseProfile(const std::string& text, const std::string& file, config::Problems* problems,
                  ProfileSpec* out);

}  // namespace scimsync::connectors::internal
