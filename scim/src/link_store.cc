#include "scimsync/scim/link_store.h"

#include <cstdlib>

#include "scimsync/redis/client.h"
#include "scimsync/redis/keys.h"

namespace scimsync::scim {

Result<std::optional<std::string>> LinkStore::Get(const std::string& scope,
                                                  const std::string& employee) {
  auto link = Read(scope, employee);
  if (!link.ok()) return link.error();
  if (!*link) return std::optional<std::string>();
  return std::optional<std::string>(std::move((*link)->jumpcloud_id));
}

Result<std::optional<LinkStore::Link>> MemoryLinkStore::Read(const std::string& scope,
                                                             const std::string& employee) {
  std::lock_guard lock(mu_);
  auto it = links_.find({scope, employee});
  if (it == links_.end()) return std::optional<Link>();
  return std::optional<Link>(it->second);
}

Status MemoryLinkStore::Put(const std::string& scope, const std::string& employee,
                            const std::string& jumpcloud_id) {
  return PutApplied(scope, employee, Link{jumpcloud_id, "", 0});
}

Status MemoryLinkStore::PutApplied(const std::string& scope, const std::string& employee,
                                   const Link& link) {
  std::lock_guard lock(mu_);
  links_[{scope, employee}] = link;
  owners_[link.jumpcloud_id] = {scope, employee};
  return {};
}

Status MemoryLinkStore::DropSnapshot(const std::string& scope, const std::string& employee) {
  std::lock_guard lock(mu_);
  auto it = links_.find({scope, employee});
  if (it != links_.end()) {
    it->second.snapshot.clear();
    it->second.applied_ms = 0;
  }
  return {};
}

Status MemoryLinkStore::Remove(const std::string& scope, const std::string& employee) {
  std::lock_guard lock(mu_);
  auto it = links_.find({scope, employee});
  if (it == links_.end()) return {};
  auto owner = owners_.find(it->second.jumpcloud_id);
  if (owner != owners_.end() && owner->second == std::pair(scope, employee)) owners_.erase(owner);
  links_.erase(it);
  return {};
}

Result<std::optional<LinkStore::Owner>> MemoryLinkStore::OwnerOf(const std::string& jumpcloud_id) {
  std::lock_guard lock(mu_);
  auto it = owners_.find(jumpcloud_id);
  if (it == owners_.end()) return std::optional<Owner>();
  return std::optional<Owner>(Owner{it->second.first, it->second.second});
}

Result<int64_t> MemoryLinkStore::Count(const std::string& scope) {
  std::lock_guard lock(mu_);
  int64_t n = 0;
  for (const auto& [key, link] : links_) n += key.first == scope ? 1 : 0;
  return n;
}

Result<int64_t> MemoryLinkStore::CountAll() {
  std::lock_guard lock(mu_);
  return static_cast<int64_t>(links_.size());
}

size_t MemoryLinkStore::size() const {
  std::lock_guard lock(mu_);
  return links_.size();
}

namespace {

class RedisLinkStore final : public LinkStore {
 public:
  RedisLinkStore(redis::Pool& pool, std::string key_prefix)
      : pool_(pool), prefix_(std::move(key_prefix)) {}

  Result<std::optional<Link>> Read(const std::string& scope, const std::string& employee) override {
    auto reply = Command({"MGET", Key(scope, employee), AppliedKey(scope, employee)});
    if (!reply.ok()) return reply.error();
    const auto& values = reply->elements();
    std::optional<std::string> id = values.empty() ? std::nullopt : values[0].AsString();
    if (!id) return std::optional<Link>();
    Link link;
    link.jumpcloud_id = std::move(*id);
    // "<applied ms>\n<jumpcloud id>\n<snapshot>"; anything else is ignored (the user is read).
    std::optional<std::string> applied = values.size() > 1 ? values[1].AsString() : std::nullopt;
    if (applied) {
      size_t a = applied->find('\n');
      size_t b = a == std::string::npos ? a : applied->find('\n', a + 1);
      if (b != std::string::npos && applied->compare(a + 1, b - a - 1, link.jumpcloud_id) == 0) {
        char* end = nullptr;
        long long ms = std::strtoll(applied->c_str(), &end, 10);
        if (end == applied->c_str() + a && ms > 0) {
          link.applied_ms = ms;
          link.snapshot = applied->substr(b + 1);
        }
      }
    }
    return std::optional<Link>(std::move(link));
  }

  Status Put(const std::string& scope, const std::string& employee,
             const std::string& jumpcloud_id) override {
    auto reply = Command({"MSET", Key(scope, employee), jumpcloud_id, OwnerKey(jumpcloud_id),
                          scope + "\n" + employee});
    if (!reply.ok()) return reply.error();
    return DropSnapshot(scope, employee);
  }

  Status PutApplied(const std::string& scope, const std::string& employee,
                    const Link& link) override {
    auto reply = Command(
        {"MSET", Key(scope, employee), link.jumpcloud_id, OwnerKey(link.jumpcloud_id),
         scope + "\n" + employee, AppliedKey(scope, employee),
         std::to_string(link.applied_ms) + "\n" + link.jumpcloud_id + "\n" + link.snapshot});
    if (!reply.ok()) return reply.error();
    return {};
  }

  Status DropSnapshot(const std::string& scope, const std::string& employee) override {
    auto reply = Command({"DEL", AppliedKey(scope, employee)});
    if (!reply.ok()) return reply.error();
    return {};
  }

  Status Remove(const std::string& scope, const std::string& employee) override {
    // Forget the owner only when it is this link's: another scope's claim must survive.
    auto reply = Command({"EVAL", kRemoveScript, "3", Key(scope, employee),
                          redis::keys::scim::LinkOwnerPrefix(prefix_), AppliedKey(scope, employee),
                          scope + "\n" + employee});
    if (!reply.ok()) return reply.error();
    return {};
  }

  Result<std::optional<Owner>> OwnerOf(const std::string& jumpcloud_id) override {
    auto reply = Command({"GET", OwnerKey(jumpcloud_id)});
    if (!reply.ok()) return reply.error();
    std::optional<std::string> v = reply->AsString();
    if (!v) return std::optional<Owner>();
    size_t nl = v->find('\n');
    if (nl == std::string::npos) return std::optional<Owner>();
    return std::optional<Owner>(Owner{v->substr(0, nl), v->substr(nl + 1)});
  }

  Result<int64_t> Count(const std::string& scope) override {
    return Scan(redis::keys::scim::LinksPattern(prefix_, scope));
  }

  Result<int64_t> CountAll() override { return Scan(redis::keys::scim::AllLinksPattern(prefix_)); }

 private:
  std::string Key(const std::string& scope, const std::string& employee) const {
    return redis::keys::scim::Link(prefix_, scope, employee);
  }
  std::string AppliedKey(const std::string& scope, const std::string& employee) const {
    return redis::keys::scim::Snapshot(prefix_, scope, employee);
  }
  std::string OwnerKey(const std::string& jumpcloud_id) const {
    return redis::keys::scim::LinkOwner(prefix_, jumpcloud_id);
  }

  // Keys matching `pattern`, counted with SCAN: no counter that could drift from the table.
  Result<int64_t> Scan(const std::string& pattern) {
    int64_t count = 0;
    std::string cursor = "0";
    do {
      auto r = Command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
      if (!r.ok()) return r.error();
      if (r->elements().size() != 2) {
        return Error::Transient("link table: SCAN answered " +
                                std::to_string(r->elements().size()) + " elements, not 2");
      }
      cursor = r->elements()[0].text();
      count += static_cast<int64_t>(r->elements()[1].elements().size());
    } while (cursor != "0");
    return count;
  }

  // KEYS[1] the link, KEYS[2] the owner keys' prefix (a prefix, not a key: cluster mode is not
  // supported by the link table anyway), KEYS[3] the snapshot; ARGV[1] "<scope>\n<employee>".
  static constexpr char kRemoveScript[] = R"(
local id = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[3])
if id then
  local owner = KEYS[2] .. id
  if redis.call('GET', owner) == ARGV[1] then redis.call('DEL', owner) end
end
return 1)";

  Result<redis::Reply> Command(const std::vector<std::string>& argv) {
    auto conn = pool_.Acquire();
    auto reply = conn->Command(argv);
    if (!reply.ok()) {
      Error e = reply.error();
      e.kind = ErrorKind::kTransient;
      e.message = "link table (Redis " + conn->endpoint() + "): " + e.message;
      return e;
    }
    return reply;
  }

  redis::Pool& pool_;
  const std::string prefix_;
};

}  // namespace

std::unique_ptr<LinkStore> NewRedisLinkStore(redis::Pool& pool, std::string key_prefix) {
  return std::make_unique<RedisLinkStore>(pool, std::move(key_prefix));
}

}  // namespace scimsync::scim
