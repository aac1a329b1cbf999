// The profiles the daemon runs, shared by the webhook ingest (verify, decode) and the workers
// (fetch, map, identity scope): one set, swapped whole on reload so that a request or a sync sees
// one version of it.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "scimsync/config.h"
#include "scimsync/connectors/profile.h"

namespace scimsync::connectors {

// A profile ready to take webhooks: the engine plus the resolved secrets.
struct ActiveProfile {
  std::shared_ptr<const Profile> profile;
  std::vector<std::string> secrets;
  // From the config (config.h): userName after creation (false: keep), and the identity
  // scope's externalId namespace (bare ids unless several scopes are configured).
  bool follow_user_name = false;
  bool multi_scope = false;
  std::string scope_prefix = {};
  // The externalId that anchors HRIS id `id` of `tenant` in JumpCloud.
  std::string ExternalId(const std::string& tenant, const std::string& id) const {
    return config::ExternalIdPrefix(multi_scope, scope_prefix, tenant) + id;
  }
};

// The set of active profiles; swapped whole on reload (SIGHUP) so a request sees one version.
class ProfileSet {
 public:
  void Replace(std::map<std::string, ActiveProfile> profiles) {
    auto next = std::make_shared<const std::map<std::string, ActiveProfile>>(std::move(profiles));
    std::lock_guard lock(mu_);
    profiles_ = std::move(next);
  }
  // Never null: an empty map before the first Replace.
  std::shared_ptr<const std::map<std::string, ActiveProfile>> Snapshot() const {
    std::lock_guard lock(mu_);
    return profiles_;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const std::map<std::string, ActiveProfile>> profiles_ =
      std::make_shared<std::map<std::string, ActiveProfile>>();
};

}  // namespace scimsync::connectors
