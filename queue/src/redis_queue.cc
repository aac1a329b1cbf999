// The Redis queue: one Lua script per state change, so each change is atomic and one round trip.
#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

#include "codec.h"
#include "scimsync/log.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/client.h"

namespace scimsync::queue {
namespace {

using internal::CheckPartition;
using redis::Reply;
using redis::Script;

// The "#!lua" line makes Redis refuse the whole script up front when it is out of memory, instead
// of failing half-way through a batch: all or none.
const Script& EnqueueScript() {
  static const Script kScript(R"lua(#!lua
-- KEYS: per item, its partition's stream and its dedup key.
-- ARGV: field count F, group, F field names, then per item its dedup window (s) and F values.
-- Returns per item 1 (added) or 0 (a duplicate within its window).
local nf = tonumber(ARGV[1])
local group = ARGV[2]
local first = 2 + nf
-- Check before writing: a script that fails half-way keeps what it already wrote. A group of
-- webhooks repeats each partition's stream many times: each is checked (and created) once.
local ready = {}
for i = 1, #KEYS, 2 do
  if ready[KEYS[i]] == nil then
    local t = redis.call('TYPE', KEYS[i]).ok
    if t ~= 'stream' and t ~= 'none' then
      return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t ..
                               ', not a stream; nothing was enqueued')
    end
    ready[KEYS[i]] = (t == 'stream')
  end
end
local added = {}
for i = 1, #KEYS / 2 do
  local stream, dedup = KEYS[2 * i - 1], KEYS[2 * i]
  local off = first + (i - 1) * (nf + 1)
  local window = ARGV[off + 1]
  local fresh = true
  if tonumber(window) > 0 then
    fresh = redis.call('SET', dedup, '1', 'NX', 'EX', window)
  end
  if fresh then
    if not ready[stream] then
      -- From id 0: entries added before any worker started are still delivered.
      redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
      ready[stream] = true
    end
    local args = {stream, '*'}
    for j = 1, nf do
      args[#args + 1] = ARGV[2 + j]
      args[#args + 1] = ARGV[off + 1 + j]
    end
    redis.call('XADD', unpack(args))
    added[i] = 1
  else
    added[i] = 0
  end
end
return added
)lua");
  return kScript;
}

// Removing an item from where it came from frees memory, so these scripts have no "#!lua" line:
// Redis then lets them run under maxmemory pressure. Writes that need memory come first, so an
// out-of-memory error stops the script before it has changed anything.
const Script& AckAppliedScript() {
  static const Script kScript(R"lua(
-- Ends items (Ack and AckMany are the cases without triples or lists).
-- KEYS: stream, retry set, retry items, retry takes, applied hash, the fence key when ARGV[2]
-- is not empty, then one key per list.
-- ARGV: group; the fence's value ("": none); N and N pairs of entry id and "1" when from the
-- retry set; A and A triples of employee field, version and item JSON: each is remembered
-- unless a newer version is remembered already (numbers compared as numbers, else as strings;
-- no version: the later); then max entries, ttl s, and per list its entry count and entries
-- (oldest first).
-- Returns the number of lists Redis refused (best effort: the acknowledgements stand), or the
-- error FENCED and nothing written.
local lists = 6
if ARGV[2] ~= '' then
  local held = redis.call('GET', KEYS[6])
  if held ~= ARGV[2] then return redis.error_reply('FENCED ' .. (held or '')) end
  lists = 7
end
local n = tonumber(ARGV[3])
local i = 4 + 2 * n
local a = tonumber(ARGV[i] or '0')
i = i + 1
for _ = 1, a do
  local cur = redis.call('HGET', KEYS[5], ARGV[i])
  local store = true
  if cur and ARGV[i + 1] ~= '' then
    local v = string.sub(cur, 1, (string.find(cur, '\n', 1, true) or 1) - 1)
    if v ~= '' then
      local x, y = tonumber(v), tonumber(ARGV[i + 1])
      if x and y then store = y >= x else store = ARGV[i + 1] >= v end
    end
  end
  if store then redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1] .. '\n' .. ARGV[i + 2]) end
  i = i + 3
end
for j = 4, 3 + 2 * n, 2 do
  if ARGV[j + 1] == '1' then
    redis.call('ZREM', KEYS[2], ARGV[j])
    redis.call('HDEL', KEYS[3], ARGV[j])
    redis.call('HDEL', KEYS[4], ARGV[j])
  else
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[j])
    redis.call('XDEL', KEYS[1], ARGV[j])
  end
end
local refused = 0
if #KEYS >= lists then
  local max, ttl = tonumber(ARGV[i]), ARGV[i + 1]
  i = i + 2
  for k = lists, #KEYS do
    local c = tonumber(ARGV[i])
    local len = redis.pcall('LPUSH', KEYS[k], unpack(ARGV, i + 1, i + c))
    if type(len) == 'number' then
      -- Trimmed only once it is full: most lists are short.
      if len > max then redis.pcall('LTRIM', KEYS[k], 0, max - 1) end
      redis.pcall('EXPIRE', KEYS[k], ttl)
    else
      refused = refused + 1
    end
    i = i + 1 + c
  end
end
return refused
)lua");
  return kScript;
}

const Script& RetryScript() {
  static const Script kScript(R"lua(
-- KEYS: stream, retry set, retry items, retry takes, the fence key when ARGV[6] is not empty.
-- ARGV: group, entry id, "1" when from the retry set, due ms, item JSON, the fence's value.
if ARGV[6] ~= '' then
  local held = redis.call('GET', KEYS[5])
  if held ~= ARGV[6] then return redis.error_reply('FENCED ' .. (held or '')) end
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
if ARGV[3] ~= '1' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return 1
)lua");
  return kScript;
}

const Script& TakeDueScript() {
  static const Script kScript(R"lua(
-- KEYS: retry set, retry items, retry takes. ARGV: now ms, max, lease end ms.
-- Returns triples: id, item JSON, how often it was taken since its last outcome.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', KEYS[2], id)
  if json then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    out[#out + 1] = id
    out[#out + 1] = json
    out[#out + 1] = redis.call('HINCRBY', KEYS[3], id, 1)
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
return out
)lua");
  return kScript;
}

const Script& DeadLetterScript() {
  static const Script kScript(R"lua(
-- KEYS: stream, retry set, retry items, retry takes, dead letters, the fence key when ARGV[4]
-- is not empty.
-- ARGV: group, entry id, "1" when from the retry set, the fence's value, then the dead
-- letter's field/value pairs.
if ARGV[4] ~= '' then
  local held = redis.call('GET', KEYS[6])
  if held ~= ARGV[4] then return redis.error_reply('FENCED ' .. (held or '')) end
end
local args = {KEYS[5], '*'}
for i = 5, #ARGV do args[#args + 1] = ARGV[i] end
local id = redis.call('XADD', unpack(args))
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
  redis.call('HDEL', KEYS[4], ARGV[2])
else
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return id
)lua");
  return kScript;
}

const Script& ReplayScript() {
  static const Script kScript(R"lua(
-- KEYS: dead letters, target stream. ARGV: dead letter id, group, then field/value pairs.
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[2], '0', 'MKSTREAM')
end
local args = {KEYS[2], '*'}
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
local id = redis.call('XADD', unpack(args))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
)lua");
  return kScript;
}

// XAUTOCLAIM does not say how often an entry was delivered; XPENDING does. One script, so the
// counts are those of this claim.
const Script& ClaimScript() {
  static const Script kScript(R"lua(
-- KEYS: stream. ARGV: group, consumer, min idle ms, start id, count.
-- Returns {next cursor, entries, delivery count per entry}.
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local counts = {}
for i, e in ipairs(r[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
  if p[1] then counts[i] = p[1][4] else counts[i] = 0 end
end
return {r[1], r[2], counts}
)lua");
  return kScript;
}

bool IsNoGroup(const Error& e) { return e.message.find("NOGROUP") != std::string::npos; }

Error Malformed(const char* what) {
  return Error::Permanent(std::string("unexpected Redis reply to ") + what +
                          "; is redis.url pointing at Redis 7 and not at another service?");
}

// A stream entry reply: [id, [field, value, ...]]. False for a deleted entry (nil fields).
bool DecodeEntry(const Reply& entry, std::string* id, std::map<std::string, std::string>* fields) {
  const auto& parts = entry.elements();
  if (parts.size() != 2) return false;
  auto s = parts[0].AsString();
  if (!s) return false;
  *id = *s;
  fields->clear();
  const auto& kv = parts[1].elements();
  for (size_t i = 0; i + 1 < kv.size(); i += 2) {
    (*fields)[kv[i].text()] = kv[i + 1].text();
  }
  return parts[1].is_array();
}

std::vector<Item> DecodeEntries(const Reply& entries, int partition) {
  std::vector<Item> items;
  std::string id;
  std::map<std::string, std::string> fields;
  for (const Reply& e : entries.elements()) {
    if (!DecodeEntry(e, &id, &fields)) continue;
    Item item = internal::ItemFromFields(fields);
    item.entry_id = id;
    item.partition = partition;
    item.from_retry = false;
    item.deliveries = 1;
    items.push_back(std::move(item));
  }
  return items;
}

class RedisQueue final : public Queue {
 public:
  RedisQueue(const config::RedisOptions& options, const std::string& password, const Clock& clock)
      : pool_(options, password),
        prefix_(options.key_prefix),
        partitions_(std::max(1, options.partitions)),
        command_timeout_ms_(options.command_timeout_ms),
        wait_replicas_(options.wait_replicas),
        wait_timeout_ms_(options.wait_timeout_ms),
        clock_(clock) {}

  // Group commit, as leveldb's writer queue: concurrent calls line up, the first in line writes
  // the items of everyone waiting behind it in one script and hands each caller its own outcome.
  // Under load a webhook then costs Redis a share of one round trip instead of a round trip of
  // its own (measured in bench/README.md); alone, a call is written at once, as before. Callers
  // sleep on their own Writer, never on writers_mu_, so waking a group costs one wake-up each.
  Result<EnqueueOutcome> EnqueueBatch(const std::vector<Item>& items,
                                      int64_t dedup_window_s) override {
    return std::move(EnqueueBatches({Batch{&items, dedup_window_s}})[0]);
  }

  // Several callers' batches from one thread: they join the line together, and this thread leads
  // whenever one of them reaches the front, so they usually share one script with each other and
  // with whoever else is waiting.
  std::vector<Result<EnqueueOutcome>> EnqueueBatches(const std::vector<Batch>& batches) override {
    std::vector<Result<EnqueueOutcome>> out(batches.size(),
                                            Result<EnqueueOutcome>(EnqueueOutcome{}));
    std::vector<std::pair<size_t, std::shared_ptr<Writer>>> mine;
    for (size_t i = 0; i < batches.size(); ++i) {
      if (batches[i].items == nullptr || batches[i].items->empty()) continue;
      auto w = std::make_shared<Writer>();
      w->items = batches[i].items;
      w->window = std::max<int64_t>(0, batches[i].dedup_window_s);
      mine.emplace_back(i, std::move(w));
    }
    if (mine.empty()) return out;
    std::unique_lock lock(writers_mu_);
    for (const auto& [i, w] : mine) writers_.push_back(w);
    for (const auto& [i, w] : mine) {
      if (w->Written()) continue;  // in a group this thread led for an earlier batch
      if (writers_.front() != w) {
        // Woken either with an outcome (a leader wrote our items) or as the new front: lead.
        lock.unlock();
        w->Wait();
        lock.lock();
        if (w->Written()) continue;
      }
      LeadGroup(lock);
    }
    lock.unlock();
    for (auto& [i, w] : mine) out[i] = w->TakeResult();
    return out;
  }

  // The front of the line writes everyone in line, up to kMaxGroupItems (its own batch always
  // goes), then hands the front to whoever is next. Called and returns with `lock` held.
  void LeadGroup(std::unique_lock<std::mutex>& lock) {
    std::vector<std::shared_ptr<Writer>> group;
    size_t total = 0;
    for (const auto& w : writers_) {
      if (!group.empty() && total + w->items->size() > kMaxGroupItems) break;
      group.push_back(w);
      total += w->items->size();
    }
    lock.unlock();
    std::vector<Result<EnqueueOutcome>> outcomes = WriteGroup(group);
    lock.lock();
    writers_.erase(writers_.begin(), writers_.begin() + static_cast<ptrdiff_t>(group.size()));
    std::shared_ptr<Writer> next = writers_.empty() ? nullptr : writers_.front();
    lock.unlock();
    for (size_t i = 0; i < group.size(); ++i) group[i]->Wake(std::move(outcomes[i]));
    if (next) next->Wake(std::nullopt);
    lock.lock();
  }

  // The enqueue script, a fence write and WAIT, pipelined on one connection: WAIT counts the
  // replicas that hold everything this connection wrote, so it must follow the script on the same
  // socket (after a reconnect it would vouch for nothing). The fence is a write of its own
  // because an all-duplicates batch writes nothing, yet its originals -- written a moment ago on
  // another connection, whose WAIT may have timed out -- must be on the replicas before a 202.
  Result<Reply> EvalAndWait(const std::vector<std::string>& keys,
                            const std::vector<std::string>& args) {
    const Script& script = EnqueueScript();
    std::vector<std::vector<std::string>> cmds(3);
    std::vector<std::string>& eval = cmds[0];
    eval.reserve(3 + keys.size() + args.size());
    eval = {"EVALSHA", script.sha1(), std::to_string(keys.size())};
    eval.insert(eval.end(), keys.begin(), keys.end());
    eval.insert(eval.end(), args.begin(), args.end());
    cmds[1] = {"SET", Keys::WaitFence(prefix_), "1"};
    cmds[2] = {"WAIT", std::to_string(wait_replicas_), std::to_string(wait_timeout_ms_)};
    auto conn = pool_.Acquire();
    auto replies = conn->Commands(cmds);
    if (replies.ok() && !(*replies)[0].ok() &&
        (*replies)[0].error().message.rfind("Redis: NOSCRIPT ", 0) == 0) {
      // The script cache is empty (restart, failover to a replica that never ran it).
      cmds[0][0] = "EVAL";
      cmds[0][1] = script.source();
      replies = conn->Commands(cmds);
    }
    if (!replies.ok()) return replies.error();
    for (const Result<Reply>& reply : *replies) {
      if (!reply.ok()) return reply.error();
    }
    const int64_t acked = (*replies)[2]->AsInteger().value_or(-1);
    if (acked < wait_replicas_) {
      return Error::Transient(
          "only " + std::to_string(std::max<int64_t>(acked, 0)) + " of the " +
          std::to_string(wait_replicas_) +
          " replicas in redis.wait_replicas confirmed the write within " +
          "redis.wait_timeout_ms (" + std::to_string(wait_timeout_ms_) +
          " ms); the sender is asked to retry. Check the replicas (INFO replication on " +
          conn->endpoint() + ")");
    }
    return (*replies)[0];
  }

  Status Ping() override {
    Result<Reply> r = pool_.Acquire()->Command({"PING"});
    if (!r) return r.error();
    if (r->AsString() != "PONG") return Malformed("PING");
    return {};
  }

  Result<std::vector<Item>> Read(int partition, const std::string& consumer, int max,
                                 int block_ms) override {
    if (Status s = CheckPartition(partition, partitions_); !s) return s.error();
    if (max <= 0) return std::vector<Item>{};
    // The socket timeout must outlast the block, or every idle read would look like an outage.
    int block = std::min(block_ms, kMaxBlockMs);
    if (block >= command_timeout_ms_) block = command_timeout_ms_ / 2;
    const std::string key = Keys::Stream(prefix_, partition);
    std::vector<std::string> argv = {"XREADGROUP", "GROUP", kConsumerGroup,
                                     consumer,     "COUNT", std::to_string(max)};
    if (block > 0) argv.insert(argv.end(), {"BLOCK", std::to_string(block)});
    argv.insert(argv.end(), {"STREAMS", key, ">"});
    auto conn = pool_.Acquire();
    Result<Reply> r = conn->Command(argv);
    if (!r && IsNoGroup(r.error())) {
      if (Status s = CreateGroup(*conn, key); !s) return s.error();
      r = conn->Command(argv);
    }
    if (!r) return r.error();
    if (r->is_nil()) return std::vector<Item>{};
    // [[key, [entry, ...]]]
    const auto& streams = r->elements();
    if (streams.size() != 1 || streams[0].elements().size() != 2) return Malformed("XREADGROUP");
    return DecodeEntries(streams[0].elements()[1], partition);
  }

  Status Ack(const Item& item, const Fence& fence) override {
    if (Status s = CheckItem(item); !s) return s;
    return AckPass(item.partition, {item}, {}, CappedLists{}, fence);
  }

  // One script per partition (its keys share a hash tag); a group is one employee's, so
  // usually one.
  Status AckMany(const std::vector<Item>& items) override { return AckApplied(items, {}); }

  Status AckApplied(const std::vector<Item>& items, const std::vector<Item>& applied) override {
    std::map<int, std::pair<std::vector<Item>, std::vector<Item>>> by_partition;
    for (const Item& item : items) {
      if (Status s = CheckItem(item); !s) return s;
      by_partition[item.partition].first.push_back(item);
    }
    for (const Item& item : applied) {
      if (Status s = CheckItem(item); !s) return s;
      by_partition[item.partition].second.push_back(item);
    }
    for (const auto& [partition, both] : by_partition) {
      if (Status s = AckPass(partition, both.first, both.second, CappedLists{}, Fence{}); !s) {
        return s;
      }
    }
    return {};
  }

  Status AckPass(int partition, const std::vector<Item>& items, const std::vector<Item>& applied,
                 CappedLists lists, const Fence& fence) override {
    if (Status s = CheckPartition(partition, partitions_); !s) return s;
    std::vector<std::string> keys = PartitionKeys(partition);
    keys.push_back(Keys::Applied(prefix_, partition));
    if (fence.active()) keys.push_back(fence.key);
    std::vector<std::string> argv = {kConsumerGroup, FenceValue(fence),
                                     std::to_string(items.size())};
    for (const Item& item : items) {
      if (Status s = CheckItem(item); !s) return s;
      if (item.partition != partition) return Error::Invalid("an item of another partition");
      argv.push_back(item.entry_id);
      argv.push_back(Flag(item));
    }
    argv.push_back(std::to_string(applied.size()));
    for (const Item& item : applied) {
      if (Status s = CheckItem(item); !s) return s;
      if (item.partition != partition) return Error::Invalid("an item of another partition");
      argv.push_back(AppliedField(item.profile, item.tenant, item.employee_key));
      argv.push_back(item.occurred_at);
      Item stored = item;
      stored.attempts = 0;
      stored.last_error.clear();
      argv.push_back(internal::ItemToJson(stored));
    }
    size_t lists_written = 0;
    if (lists.max_entries > 0) {
      argv.push_back(std::to_string(lists.max_entries));
      argv.push_back(std::to_string(std::max<int64_t>(1, lists.ttl_s)));
      // Moved into the command: a pass's history is the largest part of it.
      for (CappedLists::Push& push : lists.pushes) {
        if (push.entries.empty()) continue;
        // Only the newest max_entries survive the trim: the older ones need not travel.
        const size_t skip = push.entries.size() > static_cast<size_t>(lists.max_entries)
                                ? push.entries.size() - static_cast<size_t>(lists.max_entries)
                                : 0;
        keys.push_back(push.key);
        argv.push_back(std::to_string(push.entries.size() - skip));
        argv.insert(argv.end(),
                    std::make_move_iterator(push.entries.begin() + static_cast<ptrdiff_t>(skip)),
                    std::make_move_iterator(push.entries.end()));
        ++lists_written;
      }
    }
    if (items.empty() && applied.empty() && lists_written == 0) return {};
    Result<Reply> r = pool_.Acquire()->Eval(AckAppliedScript(), keys, argv);
    if (!r) return Refused(r.error(), fence);
    if (const int64_t refused = r->AsInteger().value_or(0); refused > 0) {
      log::Warn("Redis refused some lists written with the acknowledgements (out of memory?)",
                {{"partition", partition},
                 {"lists", refused},
                 {"detail", "the items' outcomes are recorded; only these list entries are lost"}});
    }
    return {};
  }

  Result<Item> LastApplied(int partition, const std::string& profile, const std::string& tenant,
                           const std::string& employee_key) override {
    if (Status s = CheckPartition(partition, partitions_); !s) return s.error();
    Result<Reply> r = pool_.Acquire()->Command(
        {"HGET", Keys::Applied(prefix_, partition), AppliedField(profile, tenant, employee_key)});
    if (!r) return r.error();
    if (r->is_nil()) return Error::NotFound("no applied item remembered for " + employee_key);
    const std::string& text = r->text();
    const auto nl = text.find('\n');
    Result<Item> item =
        internal::ItemFromJson(nl == std::string::npos ? text : text.substr(nl + 1));
    if (!item) return item.error();
    item->partition = partition;
    return item;
  }

  Status RetryLater(const Item& item, int64_t due_ms, const std::string& reason,
                    const Fence& fence) override {
    return Reschedule(item, due_ms, reason, item.attempts + 1, fence);
  }

  Status Park(const Item& item, int64_t due_ms, const std::string& reason,
              const Fence& fence) override {
    return Reschedule(item, due_ms, reason, item.attempts, fence);
  }

  Result<std::vector<Scheduled>> ListRetries(int partition) override {
    if (Status s = CheckPartition(partition, partitions_); !s) return s.error();
    auto conn = pool_.Acquire();
    Result<Reply> ids =
        conn->Command({"ZRANGE", Keys::Retry(prefix_, partition), "0", "-1", "WITHSCORES"});
    if (!ids) return ids.error();
    std::vector<Scheduled> out;
    const auto& flat = ids->elements();
    for (size_t i = 0; i + 1 < flat.size(); i += 2) {
      Result<Reply> json =
          conn->Command({"HGET", Keys::RetryItems(prefix_, partition), flat[i].text()});
      if (!json) return json.error();
      if (json->is_nil()) continue;
      Result<Item> item = internal::ItemFromJson(json->text());
      if (!item) continue;  // TakeDue logs unreadable entries
      Result<Reply> takes =
          conn->Command({"HGET", Keys::RetryTakes(prefix_, partition), flat[i].text()});
      if (!takes) return takes.error();
      item->entry_id = flat[i].text();
      item->partition = partition;
      item->from_retry = true;
      item->deliveries =
          takes->is_nil() ? 0 : static_cast<int>(std::strtoll(takes->text().c_str(), nullptr, 10));
      out.push_back(
          {std::move(item.value()), std::strtoll(flat[i + 1].text().c_str(), nullptr, 10)});
    }
    return out;
  }

 private:
  Status Reschedule(const Item& item, int64_t due_ms, const std::string& reason, int attempts,
                    const Fence& fence) {
    if (Status s = CheckItem(item); !s) return s;
    Item next = item;
    next.attempts = attempts;
    next.last_error = reason;
    next.from_retry = true;
    std::vector<std::string> keys = PartitionKeys(item.partition);
    if (fence.active()) keys.push_back(fence.key);
    Result<Reply> r =
        pool_.Acquire()->Eval(RetryScript(), keys,
                              {kConsumerGroup, item.entry_id, Flag(item), std::to_string(due_ms),
                               internal::ItemToJson(next), FenceValue(fence)});
    if (!r) return Refused(r.error(), fence);
    return {};
  }

 public:
  Result<std::vector<Item>> TakeDue(int partition, int64_t now_ms, int max,
                                    int64_t lease_ms) override {
    if (Status s = CheckPartition(partition, partitions_); !s) return s.error();
    if (max <= 0) return std::vector<Item>{};
    Result<Reply> r = pool_.Acquire()->Eval(
        TakeDueScript(),
        {Keys::Retry(prefix_, partition), Keys::RetryItems(prefix_, partition),
         Keys::RetryTakes(prefix_, partition)},
        {std::to_string(now_ms), std::to_string(max),
         std::to_string(now_ms + std::max<int64_t>(0, lease_ms))});
    if (!r) return r.error();
    std::vector<Item> items;
    const auto& flat = r->elements();
    for (size_t i = 0; i + 2 < flat.size(); i += 3) {
      Result<Item> item = internal::ItemFromJson(flat[i + 1].text());
      if (!item) {
        // Not ours (edited by hand?): skipping it keeps the partition's other retries moving;
        // it stays in the set, so an operator can inspect and remove it.
        log::Warn("skipping an unreadable retry-set entry", {{"partition", partition},
                                                             {"entry_id", flat[i].text()},
                                                             {"detail", item.error().message}});
        continue;
      }
      item->entry_id = flat[i].text();
      item->partition = partition;
      item->from_retry = true;
      item->deliveries = static_cast<int>(flat[i + 2].AsInteger().value_or(1));
      items.push_back(std::move(*item));
    }
    return items;
  }

  Status DeadLetter(const Item& item, const std::string& error_kind, const std::string& reason,
                    const std::string& last_request, const std::string& last_response,
                    const Fence& fence) override {
    if (Status s = CheckItem(item); !s) return s;
    std::vector<std::string> args = {kConsumerGroup, item.entry_id, Flag(item), FenceValue(fence)};
    internal::AppendDeadLetterPairs(item, error_kind, reason, last_request, last_response,
                                    clock_.NowMs(), &args);
    std::vector<std::string> keys = PartitionKeys(item.partition);
    keys.push_back(Keys::DeadLetters(prefix_));
    if (fence.active()) keys.push_back(fence.key);
    Result<Reply> r = pool_.Acquire()->Eval(DeadLetterScript(), keys, args);
    if (!r) return Refused(r.error(), fence);
    return {};
  }

  Result<ClaimPage> ClaimStalePage(int partition, const std::string& consumer, int64_t min_idle_ms,
                                   const std::string& start, int max) override {
    if (Status s = CheckPartition(partition, partitions_); !s) return s.error();
    ClaimPage page;
    if (max <= 0) return page;
    const std::string key = Keys::Stream(prefix_, partition);
    auto conn = pool_.Acquire();
    Result<Reply> r =
        conn->Eval(ClaimScript(), {key},
                   {kConsumerGroup, consumer, std::to_string(std::max<int64_t>(0, min_idle_ms)),
                    start.empty() ? "0-0" : start, std::to_string(max)});
    if (!r && IsNoGroup(r.error())) {
      // No group: nothing was ever delivered, so nothing is stale.
      if (Status s = CreateGroup(*conn, key); !s) return s.error();
      return page;
    }
    if (!r) return r.error();
    // [next cursor, [entry, ...], [delivery count, ...]]
    const auto& parts = r->elements();
    if (parts.size() != 3) return Malformed("XAUTOCLAIM");
    page.next = parts[0].text();
    if (page.next.empty()) page.next = "0-0";
    std::map<std::string, int> counts;
    const auto& entries = parts[1].elements();
    const auto& n = parts[2].elements();
    for (size_t i = 0; i < entries.size() && i < n.size(); ++i) {
      if (!entries[i].elements().empty()) {
        counts[entries[i].elements()[0].text()] = static_cast<int>(n[i].AsInteger().value_or(0));
      }
    }
    page.items = DecodeEntries(parts[1], partition);
    for (Item& item : page.items) item.deliveries = counts[item.entry_id];
    return page;
  }

  Result<int64_t> Depth(int partition) override {
    if (Status s = CheckPartition(partition, partitions_); !s) return s.error();
    return Count({"XLEN", Keys::Stream(prefix_, partition)}, "XLEN");
  }

  Result<int64_t> RetryDepth(int partition) override {
    if (Status s = CheckPartition(partition, partitions_); !s) return s.error();
    return Count({"ZCARD", Keys::Retry(prefix_, partition)}, "ZCARD");
  }

  Result<int64_t> OldestMs(int partition) override {
    if (Status s = CheckPartition(partition, partitions_); !s) return s.error();
    Result<Reply> r = pool_.Acquire()->Command(
        {"XRANGE", Keys::Stream(prefix_, partition), "-", "+", "COUNT", "1"});
    if (!r) return r.error();
    if (r->elements().empty() || r->elements()[0].elements().empty()) return int64_t{0};
    // "<ms>-<seq>": the time Redis added the entry.
    return static_cast<int64_t>(
        std::strtoll(r->elements()[0].elements()[0].text().c_str(), nullptr, 10));
  }

  Result<std::vector<Item>> ListStream(int partition, const std::string& after_id,
                                       int max) override {
    if (Status s = CheckPartition(partition, partitions_); !s) return s.error();
    if (max <= 0) return std::vector<Item>();
    std::string start = after_id.empty() ? "-" : "(" + after_id;
    Result<Reply> r = pool_.Acquire()->Command(
        {"XRANGE", Keys::Stream(prefix_, partition), start, "+", "COUNT", std::to_string(max)});
    if (!r) return r.error();
    return DecodeEntries(*r, partition);
  }

  Result<std::vector<DeadLetterEntry>> ListDeadLetters(const std::string& after_id,
                                                       int max) override {
    std::vector<DeadLetterEntry> out;
    if (max <= 0) return out;
    std::string start = after_id.empty() ? "-" : "(" + after_id;
    Result<Reply> r = pool_.Acquire()->Command(
        {"XRANGE", Keys::DeadLetters(prefix_), start, "+", "COUNT", std::to_string(max)});
    if (!r) return IdError(r.error(), after_id);
    std::string id;
    std::map<std::string, std::string> fields;
    for (const Reply& e : r->elements()) {
      if (DecodeEntry(e, &id, &fields)) out.push_back(internal::DeadLetterFromFields(id, fields));
    }
    return out;
  }

  Result<DeadLetterEntry> GetDeadLetter(const std::string& id) override {
    Result<Reply> r =
        pool_.Acquire()->Command({"XRANGE", Keys::DeadLetters(prefix_), id, id, "COUNT", "1"});
    if (!r) return IdError(r.error(), id);
    std::string got;
    std::map<std::string, std::string> fields;
    if (r->elements().empty() || !DecodeEntry(r->elements()[0], &got, &fields)) {
      return NoDeadLetter(id);
    }
    return internal::DeadLetterFromFields(got, fields);
  }

  Result<Item> ReplayDeadLetter(const std::string& id) override {
    Result<DeadLetterEntry> dead = GetDeadLetter(id);
    if (!dead) return dead.error();
    Item item = dead->item;
    item.attempts = 0;
    item.last_error.clear();
    item.from_retry = false;
    item.partition = PartitionOf(item.profile, item.employee_key, partitions_);
    std::vector<std::string> args = {id, kConsumerGroup};
    const auto& names = internal::StreamFieldNames();
    std::vector<std::string> values = internal::StreamValues(item);
    for (size_t i = 0; i < names.size(); ++i) {
      args.push_back(names[i]);
      args.push_back(std::move(values[i]));
    }
    Result<Reply> r = pool_.Acquire()->Eval(
        ReplayScript(), {Keys::DeadLetters(prefix_), Keys::Stream(prefix_, item.partition)}, args);
    if (!r) return r.error();
    if (r->is_nil()) return NoDeadLetter(id);  // replayed or dropped meanwhile
    item.entry_id = r->text();
    return item;
  }

  Status DropDeadLetter(const std::string& id) override {
    Result<Reply> r = pool_.Acquire()->Command({"XDEL", Keys::DeadLetters(prefix_), id});
    if (!r) return IdError(r.error(), id);
    if (r->AsInteger().value_or(0) == 0) return NoDeadLetter(id);
    return {};
  }

  Result<int64_t> DeadLetterCount() override {
    return Count({"XLEN", Keys::DeadLetters(prefix_)}, "XLEN");
  }

  int partitions() const override { return partitions_; }

 private:
  static const char* Flag(const Item& item) { return item.from_retry ? "1" : "0"; }

  // A script's fence argument: its value, or "" for no fence.
  static std::string FenceValue(const Fence& fence) {
    return fence.active() ? std::to_string(fence.value) : std::string();
  }

  // A script's "FENCED <what the key holds>" error as the queue's fenced error; others as they
  // are.
  static Error Refused(const Error& e, const Fence& fence) {
    static constexpr std::string_view kFenced = "Redis: FENCED";
    if (!fence.active() || e.message.rfind(kFenced, 0) != 0) return e;
    std::string found = e.message.substr(kFenced.size());
    if (!found.empty() && found[0] == ' ') found.erase(0, 1);
    return FencedError(fence, found);
  }

  static Error NoDeadLetter(const std::string& id) {
    return Error::NotFound("no dead letter with id " + id +
                           " (already replayed or dropped?); `scimsyncd dlq list` shows the ids");
  }

  // Redis answers a malformed id with "ERR Invalid stream ID": that is the user's input.
  static Error IdError(const Error& e, const std::string& id) {
    if (e.kind == ErrorKind::kPermanent &&
        e.message.find("Invalid stream ID") != std::string::npos) {
      return Error::Invalid("'" + id +
                            "' is not a dead-letter id (they look like 1700000000000-0)");
    }
    return e;
  }

  Status CheckItem(const Item& item) const {
    if (Status s = CheckPartition(item.partition, partitions_); !s) return s;
    if (item.entry_id.empty()) {
      return Error::Invalid("the item has no entry id: pass the Item as Read/TakeDue returned it");
    }
    return {};
  }

  std::vector<std::string> PartitionKeys(int partition) const {
    return {Keys::Stream(prefix_, partition), Keys::Retry(prefix_, partition),
            Keys::RetryItems(prefix_, partition), Keys::RetryTakes(prefix_, partition)};
  }

  static Status CreateGroup(redis::Connection& conn, const std::string& key) {
    Result<Reply> r = conn.Command({"XGROUP", "CREATE", key, kConsumerGroup, "0", "MKSTREAM"});
    if (!r && r.error().message.find("BUSYGROUP") == std::string::npos) return r.error();
    return {};
  }

  Result<int64_t> Count(const std::vector<std::string>& argv, const char* what) {
    Result<Reply> r = pool_.Acquire()->Command(argv);
    if (!r) return r.error();
    auto n = r->AsInteger();
    if (!n) return Malformed(what);
    return *n;
  }

  // One EnqueueBatch call waiting in line. Shared between the caller and the leader that wakes
  // it, so the leader never touches a Writer whose caller has already returned.
  struct Writer {
    const std::vector<Item>* items = nullptr;
    int64_t window = 0;
    std::optional<Result<EnqueueOutcome>> result;

    void Wait() {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return woken; });
    }
    void Wake(std::optional<Result<EnqueueOutcome>> outcome) {
      {
        std::lock_guard lock(mu);
        if (outcome) result = std::move(outcome);
        woken = true;
      }
      cv.notify_one();
    }
    bool Written() {
      std::lock_guard lock(mu);
      return result.has_value();
    }
    Result<EnqueueOutcome> TakeResult() {
      std::lock_guard lock(mu);
      return std::move(*result);
    }

   private:
    std::mutex mu;
    std::condition_variable cv;
    bool woken = false;
  };
  // One script runs while Redis serves nobody else: a bound keeps that short. A single call
  // larger than this (a webhook with more events) still goes in one script, alone.
  static constexpr size_t kMaxGroupItems = 1000;

  // One script for the group; every caller gets the same error when it fails (all or nothing).
  std::vector<Result<EnqueueOutcome>> WriteGroup(
      const std::vector<std::shared_ptr<Writer>>& group) {
    const auto& names = internal::StreamFieldNames();
    std::vector<std::string> keys;
    std::vector<std::string> args;
    size_t n = 0;
    for (const auto& w : group) n += w->items->size();
    keys.reserve(n * 2);
    args.reserve(2 + names.size() + n * (names.size() + 1));
    args.push_back(std::to_string(names.size()));
    args.emplace_back(kConsumerGroup);
    args.insert(args.end(), names.begin(), names.end());
    for (const auto& w : group) {
      const std::string window = std::to_string(w->window);
      for (const Item& item : *w->items) {
        int p = PartitionOf(item.profile, item.employee_key, partitions_);
        keys.push_back(Keys::Stream(prefix_, p));
        keys.push_back(Keys::Dedup(prefix_, p, item.profile, item.dedup_id));
        args.push_back(window);
        std::vector<std::string> values = internal::StreamValues(item);
        for (auto& v : values) args.push_back(std::move(v));
      }
    }
    Result<Reply> r = wait_replicas_ > 0 ? EvalAndWait(keys, args)
                                         : pool_.Acquire()->Eval(EnqueueScript(), keys, args);
    auto fail_all = [&](Error e) {
      // Whatever stopped the write, the webhook sender must try again later (503).
      e.kind = ErrorKind::kTransient;
      return std::vector<Result<EnqueueOutcome>>(group.size(), Result<EnqueueOutcome>(e));
    };
    if (!r) return fail_all(r.error());
    const auto& added = r->elements();
    if (added.size() != n) {
      return fail_all(Error::Transient("unexpected Redis reply to the enqueue script"));
    }
    std::vector<Result<EnqueueOutcome>> outcomes;
    outcomes.reserve(group.size());
    size_t next = 0;
    for (const auto& w : group) {
      EnqueueOutcome outcome;
      for (size_t i = 0; i < w->items->size(); ++i, ++next) {
        if (added[next].AsInteger().value_or(0) == 1) {
          ++outcome.accepted;
        } else {
          ++outcome.duplicates;
        }
      }
      outcomes.emplace_back(outcome);
    }
    return outcomes;
  }

  redis::Pool pool_;
  const std::string prefix_;
  const int partitions_;
  const int command_timeout_ms_;
  const int wait_replicas_;
  const int wait_timeout_ms_;
  const Clock& clock_;
  std::mutex writers_mu_;
  std::deque<std::shared_ptr<Writer>> writers_;  // EnqueueBatch callers in line; the front writes
};

}  // namespace

std::unique_ptr<Queue> NewRedisQueue(const config::RedisOptions& options,
                                     const std::string& password) {
  return NewRedisQueue(options, password, SystemClock::Instance());
}

std::unique_ptr<Queue> NewRedisQueue(const config::RedisOptions& options,
                                     const std::string& password, const Clock& clock) {
  return std::make_unique<RedisQueue>(options, password, clock);
}

}  // namespace scimsync::queue
