// The built-in connector profiles, loaded once, for the targets that exercise them.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "scimsync/config.h"
#include "scimsync/connectors/profile.h"

namespace scimsync::fuzz {

// One secret for every profile: valid UTF-8 and valid base64, so the recipes that decode their
// key (Finch) and those that use its bytes both accept it.
inline constexpr char kSecret[] = "c2NpbXN5bmMtZnV6ei1zZWNyZXQ=";
// BambooHR's sample timestamp: inputs carrying recorded timestamps stay inside Finch's window.
inline constexpr int64_t kNowS = 1769884920;

// Every built-in profile, configured as the golden fixtures configure it. Credentials name
// variables that need not exist: the fuzz targets never fetch over the network.
inline const std::map<std::string, std::shared_ptr<const connectors::Profile>>& BuiltinProfiles() {
  static const auto* profiles = [] {
    static const char* const kEntries[] = {
        "{name: bamboohr, connector: bamboohr, secret_env: S, api: {tenant: acme, key_env: K}}",
        "{name: deel, connector: deel, secret_env: S}",
        "{name: factorial, connector: factorial, secret_env: S, api: {key_env: K}}",
        "{name: finch, connector: finch, secret_env: S, api: {key_env: K}}",
        "{name: generic, connector: generic, secret_env: S}",
        "{name: gusto, connector: gusto, secret_env: S, api: {key_env: K}}",
        "{name: hibob, connector: hibob, secret_env: S, api: {service_user_id_env: U, "
        "service_user_token_env: T}}",
        "{name: merge, connector: merge, secret_env: S}",
        "{name: personio, connector: personio, secret_env: S, api: {client_id_env: I, "
        "client_secret_env: C}}",
        "{name: rippling, connector: rippling, secret_env: S, api: {key_env: K}}",
    };
    auto* out = new std::map<std::string, std::shared_ptr<const connectors::Profile>>();
    for (const char* yaml : kEntries) {
      config::ProfileConfig pc;
      pc.node = YAML::Load(yaml);
      pc.name = pc.node["name"].as<std::string>();
      pc.connector = pc.node["connector"].as<std::string>();
      pc.secrets.push_back({"S", ""});
      pc.path = "profiles[0]";
      config::Problems problems("fuzz.yaml");
      auto profile = connectors::LoadProfile(pc, &problems);
      if (!profile) {
        std::string text;
        for (const auto& p : problems.list()) text += p.ToString() + "\n";
        fprintf(stderr, "fuzz: built-in profile %s does not load:\n%s", pc.name.c_str(),
                text.c_str());
        abort();
      }
      (*out)[pc.name] = std::move(profile);
    }
    return out;
  }();
  return *profiles;
}

// The profile a mutated name stands for: the named one, else one chosen by the name's bytes, so
// every input exercises some profile.
inline const connectors::Profile& PickProfile(std::string_view name) {
  const auto& all = BuiltinProfiles();
  auto it = all.find(std::string(name));
  if (it != all.end()) return *it->second;
  size_t h = 0;
  for (char c : name) h = h * 31 + static_cast<unsigned char>(c);
  auto pick = all.begin();
  std::advance(pick, static_cast<std::ptrdiff_t>(h % all.size()));
  return *pick->second;
}

}  // namespace scimsync::fuzz
