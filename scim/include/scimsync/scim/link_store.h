// The link table: HRIS employee id -> JumpCloud user id, written when scimsync creates or finds
// a user. It lets a job find its user in one GET even after an admin edited the user's
// externalId or userName by hand; the externalId stays the anchor when the link is missing.
//
// With each link it keeps a snapshot: the managed attributes scimsync last applied to that user
// and when. An update whose desired state equals the snapshot costs no SCIM request; one that
// differs is a single PATCH without a GET (converger.h). The snapshot is only a cache of what
// was sent: losing it costs one GET, never correctness.
#pragma once

#include <cstdint>
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
  struct Link {
    std::string jumpcloud_id;
    // The managed attributes last applied (scim::SnapshotJson), "" when none is kept: the link
    // was stored without one (Put, or by a scimsync before snapshots), or it was dropped.
    std::string snapshot;
    int64_t applied_ms = 0;  // when the snapshot was applied (Clock ms); 0 without one
  };
  // The link with its snapshot, or nothing. A snapshot recorded for another JumpCloud id than
  // the link's is not returned.
  virtual Result<std::optional<Link>> Read(const std::string& scope,
                                           const std::string& employee) = 0;
  // Only the JumpCloud id.
  Result<std::optional<std::string>> Get(const std::string& scope, const std::string& employee);
  // Links without a snapshot (any kept one is dropped: it may describe another user).
  virtual Status Put(const std::string& scope, const std::string& employee,
                     const std::string& jumpcloud_id) = 0;
  // Links `link.jumpcloud_id` and keeps its snapshot, in one write.
  virtual Status PutApplied(const std::string& scope, const std::string& employee,
                            const Link& link) = 0;
  // Keeps the link, forgets its snapshot: the next job reads the user first.
  virtual Status DropSnapshot(const std::string& scope, const std::string& employee) = 0;
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
  // How many employees of `scope` are linked; CountAll: in every scope. For thresholds (the
  // mass-suspension guards' percentage), not for every job: in Redis it is a SCAN of the table.
  virtual Result<int64_t> Count(const std::string& scope) = 0;
  virtual Result<int64_t> CountAll() = 0;
};

// In memory, thread-safe: tests and dry runs.
class MemoryLinkStore final : public LinkStore {
 public:
  Result<std::optional<Link>> Read(const std::string& scope, const std::string& employee) override;
  Status Put(const std::string& scope, const std::string& employee,
             const std::string& jumpcloud_id) override;
  Status PutApplied(const std::string& scope, const std::string& employee,
                    const Link& link) override;
  Status DropSnapshot(const std::string& scope, const std::string& employee) override;
  Status Remove(const std::string& scope, const std::string& employee) override;
  Result<std::optional<Owner>> OwnerOf(const std::string& jumpcloud_id) override;
  Result<int64_t> Count(const std::string& scope) override;
  Result<int64_t> CountAll() override;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Link> links_;
  std::map<std::string, std::pair<std::string, std::string>> owners_;
};

// Redis strings (redis/keys.h, keys::scim) at "<key_prefix>:link:<scope>:<employee>", the owner
// at "<key_prefix>:link-owner:<jumpcloud id>" ("<scope>\n<employee>") and the snapshot at
// "<key_prefix>:applied:<scope>:<employee>" ("<applied ms>\n<jumpcloud id>\n<snapshot JSON>",
// about 300 bytes and 400 bytes of Redis memory per employee), no expiry. Read is one MGET,
// PutApplied one MSET. Redis failures are kTransient. `pool` must outlive the store;
// thread-safe.
std::unique_ptr<LinkStore> NewRedisLinkStore(redis::Pool& pool, std::string key_prefix);

}  // namespace scimsync::scim
