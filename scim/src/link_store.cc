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
  return {};
}

Status MemoryLinkStore::Remove(const std::string& scope, const std::string& employee) {
  std::lock_guard lock(mu_);
  links_.erase({scope, employee});
  return {};
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
    return {};
  }

  Status Remove(const std::string& scope, const std::string& employee) override {
    auto reply = Command({"DEL", Key(scope, employee)});
    if (!reply.ok()) return reply.error();
    return {};
  }

 private:
  std::string Key(const std::string& scope, const std::string& employee) const {
    return prefix_ + ":link:" + scope + ":" + employee;
  }

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
