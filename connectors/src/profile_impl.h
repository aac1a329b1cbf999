// The one Profile implementation: a ProfileSpec (the YAML) plus the settings of one config entry.
#pragma once

#include <memory>
#include <string>

#include "ingest.h"
#include "scimsync/connectors/profile.h"
#include "spec.h"

namespace scimsync::connectors::internal {

class SpecProfile final : public Profile {
 public:
  SpecProfile(std::string name, int64_t dedup_window_s, std::shared_ptr<const ProfileSpec> spec,
              IngestOptions ingest)
      : name_(std::move(name)),
        dedup_window_s_(dedup_window_s),
        spec_(std::move(spec)),
        ingest_(std::move(ingest)) {}

  const std::string& name() const override { return name_; }
  int64_t dedup_window_s() const override { return dedup_window_s_; }
  Status Verify(const Request& request, const std::vector<std::string>& secrets,
                int64_t now_s) const override;
  Result<Decoded> Decode(const Request& request) const override;

  const ProfileSpec& spec() const { return *spec_; }

 private:
  std::string name_;
  int64_t dedup_window_s_;
  std::shared_ptr<const ProfileSpec> spec_;
  IngestOptions ingest_;
};

// Reads a profile file (built-in name or path) into a spec; problems are reported against the
// profile's own file.
std::shared_ptr<const ProfileSpec> LoadSpec(const std::string& connector,
                                            const std::string& config_file,
                                            config::Problems* problems);

}  // namespace scimsync::connectors::internal
