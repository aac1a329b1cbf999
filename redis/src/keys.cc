#include "scimsync/redis/keys.h"

namespace scimsync::redis {

std::string GlobEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

namespace keys {
namespace {

// "P:{pN}:" -- the hash tag that keeps one partition's keys in one cluster slot.
std::string Tag(const std::string& prefix, int partition) {
  return prefix + ":{p" + std::to_string(partition) + "}:";
}

}  // namespace

namespace queue {
std::string Stream(const std::string& prefix, int partition) {
  return Tag(prefix, partition) + "stream";
}
std::string Retry(const std::string& prefix, int partition) {
  return Tag(prefix, partition) + "retry";
}
std::string RetryItems(const std::string& prefix, int partition) {
  return Tag(prefix, partition) + "retry:items";
}
std::string RetryTakes(const std::string& prefix, int partition) {
  return Tag(prefix, partition) + "retry:takes";
}
std::string Dedup(const std::string& prefix, int partition, const std::string& profile,
                  const std::string& dedup_id) {
  return Tag(prefix, partition) + "dedup:" + profile + ":" + dedup_id;
}
std::string Applied(const std::string& prefix, int partition) {
  return Tag(prefix, partition) + "applied";
}
std::string DeadLetters(const std::string& prefix) { return prefix + ":dlq"; }
std::string WaitFence(const std::string& prefix) { return prefix + ":wait-fence"; }
}  // namespace queue

namespace scim {
std::string Link(const std::string& prefix, const std::string& scope, const std::string& employee) {
  return prefix + ":link:" + scope + ":" + employee;
}
std::string AllLinksPattern(const std::string& prefix) { return GlobEscape(prefix) + ":link:*"; }
std::string LinksPattern(const std::string& prefix, const std::string& scope) {
  return GlobEscape(prefix) + ":link:" + GlobEscape(scope) + ":*";
}
std::string LinkOwner(const std::string& prefix, const std::string& jumpcloud_id) {
  return LinkOwnerPrefix(prefix) + jumpcloud_id;
}
std::string LinkOwnerPrefix(const std::string& prefix) { return prefix + ":link-owner:"; }
std::string Snapshot(const std::string& prefix, const std::string& scope,
                     const std::string& employee) {
  return prefix + ":applied:" + scope + ":" + employee;
}
std::string RateLimit(const std::string& prefix) { return prefix + ":ratelimit"; }
}  // namespace scim

namespace workers {
std::string Instances(const std::string& prefix) { return prefix + ":instances"; }
std::string Lease(const std::string& prefix, int partition) {
  return prefix + ":lease:{p" + std::to_string(partition) + "}";
}
std::string LeaseToken(const std::string& prefix, int partition) {
  return Lease(prefix, partition) + ":token";
}
std::string LeaseOwner(const std::string& prefix, int partition) {
  return Lease(prefix, partition) + ":owner";
}
std::string Versions(const std::string& prefix, int partition) {
  return Tag(prefix, partition) + "versions";
}
std::string GuardEvents(const std::string& prefix) { return prefix + ":guard:events"; }
std::string GuardTripped(const std::string& prefix) { return prefix + ":guard:tripped"; }
std::string GuardSuspended(const std::string& prefix) { return prefix + ":guard:suspended"; }
std::string GuardReleased(const std::string& prefix) { return prefix + ":guard:released"; }
std::string Paused(const std::string& prefix) { return prefix + ":paused"; }
std::string History(const std::string& prefix, const std::string& scope,
                    const std::string& employee) {
  return prefix + ":history:" + scope + ":" + employee;
}
}  // namespace workers

namespace daemon {
std::string Reconcile(const std::string& prefix, const std::string& profile) {
  return prefix + ":reconcile:" + profile;
}
std::string ReconcileLast(const std::string& prefix, const std::string& profile) {
  return Reconcile(prefix, profile) + ":last";
}
std::string ReconcileListed(const std::string& prefix, const std::string& profile) {
  return Reconcile(prefix, profile) + ":listed";
}
std::string ReconcileHeld(const std::string& prefix, const std::string& profile) {
  return Reconcile(prefix, profile) + ":held";
}
std::string ReconcileHeldPattern(const std::string& prefix) {
  return GlobEscape(prefix) + ":reconcile:*:held";
}
}  // namespace daemon

}  // namespace keys
}  // namespace scimsync::redis
