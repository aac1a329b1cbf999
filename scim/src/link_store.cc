#include "scimsync/scim/link_store.h"

#include "scimsync/queue/redis.h"

namespace scimsync::scim {

Result<std::optional<std::string>> MemoryLinkStore::Get(const std::string& scope,
                                                        const std::string& employee) {
  std::lock_guard lock(mu_);
  auto it = links_.find({scope, employee});
  if (it == links_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Status MemoryLinkStore::Put(const std::string& scope, const std::string& employee,
                            const std::string& jumpcloud_id) {
  std::lock_guard lock(mu_);
  links_[{scope, employee}] = jumpcloud_id;
  owners_[jumpcloud_id] = {scope, employee};
  return {};
}

Status MemoryLinkStore::Remove(const std::string& scope, const std::string& employee) {
  std::lock_guard lock(mu_);
  auto it = links_.find({scope, employee});
  if (it == links_.end()) return {};
  auto owner = owners_.find(it->second);
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

size_t MemoryLinkStore::size() const {
  std::lock_guard lock(mu_);
  return links_.size();
}

namespace {

class RedisLinkStore final : public LinkStore {
 public:
  RedisLinkStore(redis::Pool& pool, std::string key_prefix)
      : pool_(pool), prefix_(std::move(key_prefix)) {}

  Result<std::optional<std::string>> Get(const std::string& scope,
                                         const std::string& employee) override {
    auto reply = Command({"GET", Key(scope, employee)});
    if (!reply.ok()) return reply.error();
    return reply->AsString();
  }

  Status Put(const std::string& scope, const std::string& employee,
             const std::string& jumpcloud_id) override {
    auto reply = Command({"SET", Key(scope, employee), jumpcloud_id});
    if (!reply.ok()) return reply.error();
    auto owner = Command({"SET", OwnerKey(jumpcloud_id), scope + "\n" + employee});
    if (!owner.ok()) return owner.error();
    return {};
  }

  Status Remove(const std::string& scope, const std::string& employee) override {
    // Forget the owner only when it is this link's: another scope's claim must survive.
    auto reply = Command({"EVAL", kRemoveScript, "2", Key(scope, employee),
                          prefix_ + ":link-owner:", scope + "\n" + employee});
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

 private:
  std::string Key(const std::string& scope, const std::string& employee) const {
    return prefix_ + ":link:" + scope + ":" + employee;
  }
  std::string OwnerKey(const std::string& jumpcloud_id) const {
    return prefix_ + ":link-owner:" + jumpcloud_id;
  }

  // KEYS[1] the link, KEYS[2] the owner keys' prefix (a prefix, not a key: cluster mode is not
  // supported by the link table anyway); ARGV[1] "<scope>\n<employee>".
  static constexpr char kRemoveScript[] = R"(
local id = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
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
