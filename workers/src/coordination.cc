#include "scimsync/workers/coordination.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <random>

#include "scimsync/log.h"

namespace scimsync::workers {
namespace {

namespace keys = redis::keys::workers;

std::string LeaseKey(const std::string& prefix, int partition) {
  return keys::Lease(prefix, partition);
}

std::vector<std::string> AcquireKeys(const std::string& prefix, int partition) {
  return {keys::Lease(prefix, partition), keys::LeaseToken(prefix, partition),
          keys::LeaseOwner(prefix, partition)};
}

std::vector<std::string> ReleaseKeys(const std::string& prefix, int partition) {
  return {keys::Lease(prefix, partition), keys::LeaseOwner(prefix, partition)};
}

// Renews the leases this instance holds; returns, per partition, 1 (renewed) or 0 (lost).
const redis::Script& RenewScript() {
  static const redis::Script kScript(R"lua(
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
)lua");
  return kScript;
}

// KEYS: lease, fencing token counter, owner of record. ARGV: instance, lease ms.
// Takes a free lease: {token, 1 when its last owner did not hand it over (it died or froze with
// work perhaps in flight), else 0}; nil when another instance holds it.
const redis::Script& AcquireScript() {
  static const redis::Script kScript(R"lua(
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local token = redis.call('INCR', KEYS[2])
local last = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[3], ARGV[1])
if last and last ~= ARGV[1] then return {token, 1} end
return {token, 0}
)lua");
  return kScript;
}

// KEYS: lease, owner of record. ARGV: instance. A clean hand-over: the next owner starts at once.
const redis::Script& ReleaseScript() {
  static const redis::Script kScript(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  return redis.call('DEL', KEYS[1])
end
return 0
)lua");
  return kScript;
}

// KEYS: events, tripped, suspended, released. ARGV: now, window_ms, limit, who.
const redis::Script& AdmitScript() {
  static const redis::Script kScript(R"lua(
-- KEYS[1]: employees admitted in the window (member: the employee, score: first admission).
-- The count is of employees, not attempts: a termination retried after 503s is one.
if redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[4]) == 1 then return 1 end
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('ZCARD', KEYS[1]) + 1 > tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
)lua");
  return kScript;
}

// KEYS: versions hash. ARGV: field, version.
const redis::Script& RaiseScript() {
  static const redis::Script kScript(R"lua(
-- KEYS[1]: a partition's versions hash. ARGV: pairs of employee and version; each is stored
-- unless a larger version is stored already (numbers compared as numbers, else as strings).
for i = 1, #ARGV - 1, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local raise = true
  if cur then
    local a, b = tonumber(cur), tonumber(ARGV[i + 1])
    if a and b then
      raise = b > a
    else
      raise = ARGV[i + 1] > cur
    end
  end
  if raise then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
)lua");
  return kScript;
}

bool IsInteger(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  size_t i = (s[0] == '-') ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

}  // namespace

std::string NewInstanceId() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  std::mt19937 rng(rd());
  return std::string(host) + ":" + std::to_string(getpid()) + ":" +
         std::to_string(std::uniform_int_distribution<uint32_t>(0, 0xffffff)(rng));
}

int CompareVersions(const std::string& a, const std::string& b) {
  if (IsInteger(a) && IsInteger(b)) {
    long long x = std::strtoll(a.c_str(), nullptr, 10);
    long long y = std::strtoll(b.c_str(), nullptr, 10);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

Result<WorkersState> ReadWorkersState(redis::Pool& pool, const std::string& key_prefix,
                                      int partitions, int64_t since_ms) {
  std::vector<std::vector<std::string>> commands;
  for (int p = 0; p < partitions; ++p) {
    commands.push_back({"GET", keys::Lease(key_prefix, p)});
    commands.push_back({"PTTL", keys::Lease(key_prefix, p)});
  }
  commands.push_back({"GET", keys::Paused(key_prefix)});
  commands.push_back(
      {"ZRANGEBYSCORE", keys::Instances(key_prefix), std::to_string(since_ms), "+inf"});
  auto r = pool.Acquire()->Commands(commands);
  if (!r) return r.error();
  const auto& v = *r;
  WorkersState state;
  state.leases.resize(static_cast<size_t>(partitions));
  for (size_t p = 0; p < state.leases.size(); ++p) {
    if (v[2 * p].ok()) state.leases[p].owner = v[2 * p]->AsString().value_or("");
    if (v[2 * p + 1].ok()) state.leases[p].ttl_ms = v[2 * p + 1]->AsInteger().value_or(-2);
  }
  const auto& paused = v[2 * state.leases.size()];
  if (paused.ok() && !paused->is_nil()) state.pause_reason = paused->text();
  const auto& instances = v[2 * state.leases.size() + 1];
  if (instances.ok()) {
    for (const auto& instance : instances->elements()) state.instances.push_back(instance.text());
  }
  return state;
}

Leases::Leases(redis::Pool& pool, LeaseOptions options, const Clock& clock)
    : pool_(pool),
      options_(std::move(options)),
      clock_(clock),
      valid_until_ms_(static_cast<size_t>(options_.partitions), 0),
      valid_from_ms_(static_cast<size_t>(options_.partitions), 0),
      token_(static_cast<size_t>(options_.partitions), 0) {}

Result<std::vector<int>> Leases::Heartbeat() {
  const int64_t now = clock_.NowMs();
  const std::string instances = keys::Instances(options_.key_prefix);
  auto conn = pool_.Acquire();

  auto reg = conn->Commands(
      {{"ZADD", instances, std::to_string(now), options_.instance_id},
       {"ZREMRANGEBYSCORE", instances, "-inf", std::to_string(now - options_.lease_ms)},
       {"ZCARD", instances}});
  if (!reg) return reg.error();
  int64_t live = 1;
  if ((*reg)[2].ok() && (*reg)[2]->AsInteger())
    live = std::max<int64_t>(1, *(*reg)[2]->AsInteger());
  const int share = static_cast<int>((options_.partitions + live - 1) / live);

  // Renew what we hold.
  std::vector<int> held;
  {
    std::lock_guard lock(mu_);
    for (int p = 0; p < options_.partitions; ++p) {
      if (valid_until_ms_[static_cast<size_t>(p)] > 0) held.push_back(p);
    }
  }
  std::vector<int> owned;
  if (!held.empty()) {
    std::vector<std::string> keys;
    keys.reserve(held.size());
    for (int p : held) keys.push_back(LeaseKey(options_.key_prefix, p));
    auto renewed =
        conn->Eval(RenewScript(), keys, {options_.instance_id, std::to_string(options_.lease_ms)});
    if (!renewed) return renewed.error();
    const auto& flags = renewed->elements();
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < held.size(); ++i) {
      bool ok = i < flags.size() && flags[i].AsInteger().value_or(0) == 1;
      auto& until = valid_until_ms_[static_cast<size_t>(held[i])];
      if (ok) {
        // Work stops a quarter lease before the lease could run out, so a stalled renewal never
        // lets two instances work one partition.
        until = now + options_.lease_ms * 3 / 4;
        owned.push_back(held[i]);
      } else {
        until = 0;
        to_release_.erase(held[i]);
        log::Warn("lost a partition lease to another instance", {{"partition", held[i]}});
      }
    }
  }

  // Take free partitions up to the fair share, starting at an offset of our own so instances
  // starting together do not all race for partition 0.
  if (static_cast<int>(owned.size()) < share) {
    const int start = static_cast<int>(std::hash<std::string>{}(options_.instance_id) %
                                       static_cast<size_t>(options_.partitions));
    for (int k = 0; k < options_.partitions && static_cast<int>(owned.size()) < share; ++k) {
      int p = (start + k) % options_.partitions;
      if (std::find(owned.begin(), owned.end(), p) != owned.end()) continue;
      auto got = conn->Eval(AcquireScript(), AcquireKeys(options_.key_prefix, p),
                            {options_.instance_id, std::to_string(options_.lease_ms)});
      if (!got) return got.error();
      if (got->elements().size() == 2) {
        const int64_t token = got->elements()[0].AsInteger().value_or(0);
        const bool unclean = got->elements()[1].AsInteger().value_or(0) == 1;
        {
          std::lock_guard lock(mu_);
          valid_until_ms_[static_cast<size_t>(p)] = now + options_.lease_ms * 3 / 4;
          // Its last owner died or froze: a write it sent just before its lease ran out may
          // still be on its way. Work starts after the grace period.
          valid_from_ms_[static_cast<size_t>(p)] = unclean ? now + options_.grace_ms : 0;
          token_[static_cast<size_t>(p)] = token;
        }
        owned.push_back(p);
        log::Info("took partition", {{"partition", p},
                                     {"instance", options_.instance_id},
                                     {"token", token},
                                     {"grace_ms", unclean ? options_.grace_ms : 0}});
      }
    }
  }
  // Over the share (an instance joined): mark the surplus; workers give it back between batches.
  if (static_cast<int>(owned.size()) > share) {
    std::sort(owned.begin(), owned.end());
    std::lock_guard lock(mu_);
    for (size_t i = static_cast<size_t>(share); i < owned.size(); ++i) to_release_.insert(owned[i]);
  }
  std::sort(owned.begin(), owned.end());
  return owned;
}

bool Leases::Owns(int partition) const { return Token(partition) != 0; }

int64_t Leases::Token(int partition) const {
  std::lock_guard lock(mu_);
  const auto p = static_cast<size_t>(partition);
  const int64_t now = clock_.NowMs();
  if (valid_until_ms_[p] <= now || valid_from_ms_[p] > now || to_release_.count(partition) != 0) {
    return 0;
  }
  return token_[p];
}

bool Leases::Holds(int partition, int64_t token) const {
  if (token == 0) return false;
  std::lock_guard lock(mu_);
  const auto p = static_cast<size_t>(partition);
  // Marked for release is still ours until the worker gives it back: the sync at hand may end.
  return valid_until_ms_[p] > clock_.NowMs() && token_[p] == token;
}

std::string Leases::TokenKey(int partition) const {
  return keys::LeaseToken(options_.key_prefix, partition);
}

void Leases::ReleaseIfMarked(int partition) {
  {
    std::lock_guard lock(mu_);
    if (to_release_.erase(partition) == 0) return;
    valid_until_ms_[static_cast<size_t>(partition)] = 0;
  }
  auto r = pool_.Acquire()->Eval(ReleaseScript(), ReleaseKeys(options_.key_prefix, partition),
                                 {options_.instance_id});
  log::Info("handed a partition over", {{"partition", partition}});
  if (!r)
    log::Warn("could not release a lease; it expires by itself", {{"detail", r.error().message}});
}

void Leases::ReleaseAll() {
  std::vector<int> held;
  {
    std::lock_guard lock(mu_);
    for (int p = 0; p < options_.partitions; ++p) {
      if (valid_until_ms_[static_cast<size_t>(p)] > 0) held.push_back(p);
      valid_until_ms_[static_cast<size_t>(p)] = 0;
    }
    to_release_.clear();
  }
  auto conn = pool_.Acquire();
  for (int p : held) {
    (void)conn->Eval(ReleaseScript(), ReleaseKeys(options_.key_prefix, p), {options_.instance_id});
  }
  (void)conn->Command({"ZREM", keys::Instances(options_.key_prefix), options_.instance_id});
}

std::vector<int> Leases::Owned() const {
  std::vector<int> out;
  std::lock_guard lock(mu_);
  const int64_t now = clock_.NowMs();
  for (int p = 0; p < options_.partitions; ++p) {
    if (valid_until_ms_[static_cast<size_t>(p)] > now) out.push_back(p);
  }
  return out;
}

SuspensionGuard::SuspensionGuard(redis::Pool& pool, std::string key_prefix,
                                 config::GuardOptions options, const Clock& clock)
    : pool_(pool),
      prefix_(std::move(key_prefix)),
      options_(options),
      clock_(clock),
      links_(scim::NewRedisLinkStore(pool_, prefix_)) {}

int64_t SuspensionGuard::Limit() {
  int64_t limit = options_.max_suspends;
  if (options_.max_suspend_percent <= 0) return limit;
  const int64_t now = clock_.NowMs();
  if (linked_at_ms_.load() + 600'000 < now) {
    // Count linked users: a SCAN is cheap enough every ten minutes and needs no counter that
    // could drift from the link table.
    if (auto count = links_->CountAll(); count.ok()) {
      linked_cache_ = *count;
      linked_at_ms_ = now;
    }
  }
  // A percentage of a handful of users would hold every second suspension; it applies from 20
  // linked users on.
  const int64_t linked = linked_cache_.load();
  if (linked >= 20) {
    auto by_percent = static_cast<int64_t>(
        static_cast<double>(linked) * options_.max_suspend_percent / 100.0 + 0.999);
    limit = std::min(limit, std::max<int64_t>(1, by_percent));
  }
  return limit;
}

Result<bool> SuspensionGuard::Admit(const std::string& who) {
  const int64_t limit = Limit();
  auto r =
      pool_.Acquire()->Eval(AdmitScript(),
                            {keys::GuardEvents(prefix_), keys::GuardTripped(prefix_),
                             keys::GuardSuspended(prefix_), keys::GuardReleased(prefix_)},
                            {std::to_string(clock_.NowMs()),
                             std::to_string(options_.window_s * 1000), std::to_string(limit), who});
  if (!r) return r.error();
  return r->AsInteger().value_or(0) == 1;
}

Status SuspensionGuard::Record(const std::string& who, bool suspended) {
  auto r = pool_.Acquire()->Command({suspended ? "SADD" : "SREM", SuspendedKey(), who});
  if (!r) return r.error();
  return {};
}

Status SuspensionGuard::RecordMany(const std::vector<std::pair<std::string, bool>>& records) {
  if (records.empty()) return {};
  std::vector<std::vector<std::string>> cmds;
  cmds.reserve(records.size());
  for (const auto& [who, suspended] : records) {
    cmds.push_back({suspended ? "SADD" : "SREM", SuspendedKey(), who});
  }
  auto r = pool_.Acquire()->Commands(cmds);
  if (!r) return r.error();
  for (const auto& one : *r) {
    if (!one) return one.error();
  }
  return {};
}

Result<bool> SuspensionGuard::Suspended(const std::string& who) {
  auto r = pool_.Acquire()->Command({"SISMEMBER", SuspendedKey(), who});
  if (!r) return r.error();
  return r->AsInteger().value_or(0) == 1;
}

Status SuspensionGuard::Release() {
  // The admin has checked the mass termination: let what is held (and what follows in the
  // same burst) through for a while, then count afresh.
  auto r = pool_.Acquire()->Commands(
      {{"DEL", keys::GuardTripped(prefix_), keys::GuardEvents(prefix_)},
       {"SET", keys::GuardReleased(prefix_), "1", "PX", std::to_string(kReleaseMs)}});
  if (!r) return r.error();
  return {};
}

Result<GuardState> SuspensionGuard::State() {
  GuardState s;
  auto conn = pool_.Acquire();
  const int64_t now = clock_.NowMs();
  auto r = conn->Commands({{"GET", keys::GuardTripped(prefix_)},
                           {"ZCOUNT", keys::GuardEvents(prefix_),
                            std::to_string(now - options_.window_s * 1000), "+inf"}});
  if (!r) return r.error();
  if ((*r)[0].ok() && !(*r)[0]->is_nil()) {
    s.tripped = true;
    s.tripped_at_ms = (*r)[0]->AsInteger().value_or(0);
  }
  if ((*r)[1].ok()) s.recent = (*r)[1]->AsInteger().value_or(0);
  s.limit = Limit();
  return s;
}

Result<std::string> Versions::Get(int partition, const std::string& who) {
  auto r = pool_.Acquire()->Command({"HGET", keys::Versions(prefix_, partition), who});
  if (!r) return r.error();
  return r->AsString().value_or("");
}

Result<Versions::Applied> Versions::GetApplied(int partition, const std::string& who,
                                               const SuspensionGuard* guard) {
  std::vector<std::vector<std::string>> cmds = {
      {"HMGET", keys::Versions(prefix_, partition), who, StatusField(who)}};
  if (guard != nullptr) cmds.push_back({"SISMEMBER", guard->SuspendedKey(), who});
  auto r = pool_.Acquire()->Commands(cmds);
  if (!r) return r.error();
  for (const auto& one : *r) {
    if (!one) return one.error();
  }
  Applied out;
  const auto& e = (*r)[0]->elements();
  if (!e.empty()) out.version = e[0].AsString().value_or("");
  if (e.size() > 1) out.status_version = e[1].AsString().value_or("");
  if (guard != nullptr) out.suspended = (*r)[1]->AsInteger().value_or(0) == 1;
  return out;
}

Status Versions::Raise(int partition, const std::string& who, const std::string& version) {
  return RaiseMany(partition, {{who, version}});
}

Status Versions::RaiseMany(int partition,
                           const std::vector<std::pair<std::string, std::string>>& raises) {
  std::vector<std::string> args;
  args.reserve(raises.size() * 2);
  for (const auto& [who, version] : raises) {
    if (version.empty()) continue;
    args.push_back(who);
    args.push_back(version);
  }
  if (args.empty()) return {};
  auto r = pool_.Acquire()->Eval(RaiseScript(), {keys::Versions(prefix_, partition)}, args);
  if (!r) return r.error();
  return {};
}

Status SetPausedFlag(redis::Pool& pool, const std::string& key_prefix, const std::string& reason,
                     int64_t ttl_ms) {
  auto r = pool.Acquire()->Command(
      {"SET", keys::Paused(key_prefix), reason, "PX", std::to_string(ttl_ms)});
  if (!r) return r.error();
  return {};
}

Status ClearPausedFlag(redis::Pool& pool, const std::string& key_prefix) {
  auto r = pool.Acquire()->Command({"DEL", keys::Paused(key_prefix)});
  if (!r) return r.error();
  return {};
}

}  // namespace scimsync::workers
