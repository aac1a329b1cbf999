// The one Profile implementation: a ProfileSpec (the YAML) plus the settings of one config entry.
#pragma once

#include <rapidjson/document.h>

#include <map>
#include <memory>
#include <string>

#include "hris_client.h"
#include "ingest.h"
#include "scimsync/connectors/profile.h"
#include "spec.h"

namespace scimsync::connectors::internal {

class SpecProfile final : public Profile {
 public:
  SpecProfile(std::string name, int64_t dedup_window_s, std::shared_ptr<const ProfileSpec> spec,
              IngestOptions ingest, EntrySettings settings)
      : name_(std::move(name)),
        dedup_window_s_(dedup_window_s),
        spec_(std::move(spec)),
        ingest_(std::move(ingest)),
        settings_(std::move(settings)) {}

  const std::string& name() const override { return name_; }
  int64_t dedup_window_s() const override { return dedup_window_s_; }
  Status Verify(const Request& request, const std::vector<std::string>& secrets,
                int64_t now_s) const override;
  Result<Decoded> Decode(const Request& request) const override;
  Result<Plan> PlanItem(const WorkItem& item, Fetcher& fetcher, int64_t now_s) const override;
  bool payload_carries_record() const override { return !spec_->fetch.enabled; }
  bool can_list() const override { return spec_->list.enabled; }
  std::vector<std::string> list_tenants() const override;
  Result<std::vector<ListedEmployee>> ListEmployees(const std::string& tenant, Fetcher& fetcher,
                                                    int64_t now_s) const override;
  WorkItem ReconcileItem(const ListedEmployee& employee) const override;
  Result<Plan> PlanListed(const ListedEmployee& employee, Fetcher& fetcher,
                          int64_t now_s) const override;

  const ProfileSpec& spec() const { return *spec_; }

 private:
  struct Resolved;  // the entry's and the tenant's settings merged
  Resolved ResolveSettings(const std::string& tenant) const;
  // Fetches and assembles the record into *record. *gone_request names a request the HRIS
  // answered 404 (the employee no longer exists there).
  Status FetchRecord(const WorkItem& item, const rapidjson::Value& payload, const Resolved& r,
                     Fetcher& fetcher, int64_t now_s, rapidjson::Document* record,
                     std::string* gone_request) const;

  std::string name_;
  int64_t dedup_window_s_;
  std::shared_ptr<const ProfileSpec> spec_;
  IngestOptions ingest_;
  EntrySettings settings_;

  mutable TokenCache tokens_;  // OAuth2 tokens of fetch-back and listing
};

// Reads a profile file (built-in name or path) into a spec; problems are reported against the
// profile's own file.
std::shared_ptr<const ProfileSpec> LoadSpec(const std::string& connector,
                                            const std::string& config_file,
                                            config::Problems* problems);

// Glob match where '*' matches any run of characters (event type patterns).
bool GlobMatch(std::string_view pattern, std::string_view text);

// A string that sorts like the time or number it encodes (occurred_at / version).
std::string OrderingKey(const std::string& occurred_at);

}  // namespace scimsync::connectors::internal
