// The one Redis key schema: every key scimsync reads or writes is named by a function below, and
// nowhere else. The strings are a storage format: existing deployments' data lives under them, so
// a name never changes (tests/redis/keys_test.cc pins each one).
//
// Each key has one owner folder. Only the owner reads or writes it; other folders go through the
// owner's API (queue::Queue, scim::LinkStore, scim::RateLimiter, the workers' Leases,
// SuspensionGuard, Versions, History, the paused flag and ReadWorkersState). The functions are
// grouped by owner (keys::queue, keys::scim, keys::workers, keys::daemon) so that a reach-in
// shows in a grep: `grep -rn 'keys::workers' daemon/` finds nothing.
//
// P = redis.key_prefix (default "scimsync"), N = partition number, S = scope (the profile, or
// "profile/tenant" when a profile serves several tenants), E = HRIS employee key.
//
//   key                               type    owner   expiry   what it holds
//   P:{pN}:stream                     stream  queue/  -        new items; consumer group "workers"
//   P:{pN}:retry                      zset    queue/  -        entry id -> due time (ms)
//   P:{pN}:retry:items                hash    queue/  -        entry id -> the item (JSON)
//   P:{pN}:retry:takes                hash    queue/  -        entry id -> TakeDue hand-outs
//   P:{pN}:dedup:<profile>:<dedup id> string  queue/  dedup    "1": the event was accepted
//   P:{pN}:applied                    hash    queue/  -        "<profile>\x1f<tenant>\x1fE" ->
//                                                              "<version>\n<item JSON>"
//   P:dlq                             stream  queue/  -        dead letters: item, reason, exchange
//   P:wait-fence                      string  queue/  -        "1", rewritten before each WAIT
//   P:link:S:E                        string  scim/   -        the JumpCloud user id
//   P:link-owner:<jumpcloud id>       string  scim/   -        "S\nE": who linked that user last
//   P:applied:S:E                     string  scim/   -        "<ms>\n<jumpcloud id>\n<snapshot>"
//   P:ratelimit                       hash    scim/   horizon  the shared token bucket
//   P:instances                       zset    workers pruned   instance id -> last heartbeat (ms)
//   P:lease:{pN}                      string  workers lease_ms the instance owning partition N
//   P:lease:{pN}:token                integer workers -        fencing token, +1 per acquisition
//   P:lease:{pN}:owner                string  workers -        last owner not yet handed over
//   P:{pN}:versions                   hash    workers -        "S\x1fE" -> newest applied version
//   P:guard:events                    zset    workers window_s suspensions admitted (score ms)
//   P:guard:tripped                   string  workers -        when the guard tripped (ms)
//   P:guard:suspended                 set     workers -        "S\x1fE" of users scimsync suspended
//   P:guard:released                  string  workers release  an admin released the guard
//   P:paused                          string  workers ttl      why SCIM work is paused (auth)
//   P:history:S:E                     list    workers max_age  outcomes, newest first (JSON)
//   P:reconcile:<profile>             string  daemon/ lease_ms the running reconciliation's token
//   P:reconcile:<profile>:last        string  daemon/ -        when the last run finished (ms)
//   P:reconcile:<profile>:listed      string  daemon/ -        HRIS employees last listed
//   P:reconcile:<profile>:held        list    daemon/ -        a plan held by the guard
//
// P:lease:{pN}:token is also read, never written, by queue/'s outcome scripts: the workers pass
// it to the queue as an opaque queue::Fence, so Redis refuses an outcome written under an old
// token (the queue does not name the key).
//
// Expiry: "-" none (the owner deletes); dedup = redis.dedup_window_s; horizon = once the bucket's
// state no longer matters (a minute after it is full again); pruned = entries older than a lease
// are removed at each heartbeat; lease_ms = the lease's PX, renewed while held; window_s =
// workers.guard.window_s; release = ten minutes; ttl = the pause flag's PX (120 s, rewritten while
// paused); max_age = workers.history.max_age_days after the last outcome.
//
// Each partition's keys share the hash tag {pN}, so Redis Cluster would keep them in one slot
// (scimsync supports a single primary, with replicas or Sentinel: see queue.h).
#pragma once

#include <string>

namespace scimsync::redis {

// `s` with the glob characters of a SCAN MATCH pattern (* ? [ ] \) escaped.
std::string GlobEscape(const std::string& s);

namespace keys {

namespace queue {
std::string Stream(const std::string& prefix, int partition);
std::string Retry(const std::string& prefix, int partition);
std::string RetryItems(const std::string& prefix, int partition);
std::string RetryTakes(const std::string& prefix, int partition);
std::string Dedup(const std::string& prefix, int partition, const std::string& profile,
                  const std::string& dedup_id);
std::string Applied(const std::string& prefix, int partition);
std::string DeadLetters(const std::string& prefix);
std::string WaitFence(const std::string& prefix);
}  // namespace queue

namespace scim {
std::string Link(const std::string& prefix, const std::string& scope, const std::string& employee);
// SCAN patterns: every link, and one scope's links.
std::string AllLinksPattern(const std::string& prefix);
std::string LinksPattern(const std::string& prefix, const std::string& scope);
std::string LinkOwner(const std::string& prefix, const std::string& jumpcloud_id);
// LinkOwner(prefix, id) == LinkOwnerPrefix(prefix) + id: a script that learns the id from Redis
// builds the key itself.
std::string LinkOwnerPrefix(const std::string& prefix);
std::string Snapshot(const std::string& prefix, const std::string& scope,
                     const std::string& employee);
std::string RateLimit(const std::string& prefix);
}  // namespace scim

namespace workers {
std::string Instances(const std::string& prefix);
std::string Lease(const std::string& prefix, int partition);
std::string LeaseToken(const std::string& prefix, int partition);
std::string LeaseOwner(const std::string& prefix, int partition);
std::string Versions(const std::string& prefix, int partition);
std::string GuardEvents(const std::string& prefix);
std::string GuardTripped(const std::string& prefix);
std::string GuardSuspended(const std::string& prefix);
std::string GuardReleased(const std::string& prefix);
std::string Paused(const std::string& prefix);
std::string History(const std::string& prefix, const std::string& scope,
                    const std::string& employee);
}  // namespace workers

namespace daemon {
std::string Reconcile(const std::string& prefix, const std::string& profile);
std::string ReconcileLast(const std::string& prefix, const std::string& profile);
std::string ReconcileListed(const std::string& prefix, const std::string& profile);
std::string ReconcileHeld(const std::string& prefix, const std::string& profile);
// SCAN pattern of every profile's held plan.
std::string ReconcileHeldPattern(const std::string& prefix);
}  // namespace daemon

}  // namespace keys
}  // namespace scimsync::redis
