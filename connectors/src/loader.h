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
  bool item_variables = false;  // items: the variables are the ingest side's (item_key)
  bool allow_transforms = true;
};

bool ReadSource(const YAML::Node& node, const std::string& path, const SourceRules& rules,
                config::Problems* problems, Source* out);
bool ReadTransforms(const YAML::Node& node, const std::string& path, config::Problems* problems,
                    std::vector<Transform>* out);

// Parses a whole profile file. Returns false when any problem was added.
bool ParseProfile(const std::string& text, const std::string& file, config::Problems* problems,
                  ProfileSpec* out);

// Reads one mapping override table (`fields:` in a config entry or a tenant) against `spec`.
void ReadFieldOverrides(const YAML::Node& node, const std::string& path, config::Problems* problems,
                        std::map<std::string, Source>* out);

// Reads `api:` of a config entry or tenant: base_url, tenant, timeout_ms, and <credential>_env /
// <credential>_file for each credential the profile's fetch declares.
void ReadApiSettings(const YAML::Node& node, const std::string& path, const ProfileSpec& spec,
                     config::Problems* problems, ApiSettings* out);

}  // namespace scimsync::connectors::internal
