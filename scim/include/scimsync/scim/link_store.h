// The link table: HRIS employee id -> JumpCloud user id, written when scimsync creates or finds
// a user. It lets a job find its user in one GET even after an admin edited the user's
// externalId or userName by hand; the externalId stays the anchor when the link is missing.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "scimsync/result.h"

namespace scimsync::redis {
class Pool;
}

namespace scimsync::scim {

class LinkStore {
 public:
  virtual ~LinkStore() = default;
  // `scope` is the id namespace: the profile name (with its tenant, "profile/tenant", when the
  // profile serves several), since two HRIS may use the same employee ids.
  virtual Result<std::optional<std::string>> Get(const std::string& scope,
                                                 const std::string& employee) = 0;
  virtual Status Put(const std::string& scope, const std::string& employee,
                     const std::string& jumpcloud_id) = 0;
  virtual Status Remove(const std::string& scope, const std::string& employee) = 0;
  // Who linked `jumpcloud_id` last: {scope, employee}, or nothing (never linked, or linked
  // before owners were recorded). Put records it, Remove forgets it when it is the remover's.
  // Lets resolution refuse a user another scope (HR source) owns even when its externalId was
  // cleared or rewritten by hand.
  struct Owner {
    std::string scope;
    std::string employee;
  };
  virtual Result<std::optional<Owner>> OwnerOf(const std::string& jumpcloud_id) = 0;
};

// In memory, thread-safe: tests and dry runs.
class MemoryLinkStore final : public LinkStore {
 public:
  Result<std::optional<std::string>> Get(const std::string& scope,
                                         const std::string& employee) override;
  Status Put(const std::string& scope, const std::string& employee,
             const std::string& jumpcloud_id) override;
  Status Remove(const std::string& scope, const std::string& employee) override;
  Result<std::optional<Owner>> OwnerOf(const std::string& jumpcloud_id) override;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::string> links_;
  std::map<std::string, std::pair<std::string, std::string>> owners_;
};

// Redis strings at "<key_prefix>:link:<scope>:<employee>" and the owner at
// "<key_prefix>:link-owner:<jumpcloud id>" ("<scope>\n<employee>"), no expiry. Redis failures are
// kTransient. `pool` must outlive the store; thread-safe.
std::unique_ptr<LinkStore> NewRedisLinkStore(redis::Pool& pool, std::string key_prefix);

}  // namespace scimsync::scim
