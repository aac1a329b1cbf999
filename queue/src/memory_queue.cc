// The in-memory fake: one mutex around plain containers. It mirrors the Redis queue's observable
// behaviour (ordering, dedup, pending/claim, retry leases, dead letters, error kinds), not its
// performance.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <utility>

#include "codec.h"
#include "scimsync/queue/queue.h"

namespace scimsync::queue {
namespace {

using internal::CheckPartition;

struct StreamId {
  int64_t ms = 0;
  int64_t seq = 0;
  bool operator==(const StreamId& o) const { return ms == o.ms && seq == o.seq; }
  bool operator<(const StreamId& o) const { return ms < o.ms || (ms == o.ms && seq < o.seq); }
  std::string ToString() const { return std::to_string(ms) + "-" + std::to_string(seq); }
};

// Accepts what Redis accepts as a range bound: "<ms>" or "<ms>-<seq>".
bool ParseId(const std::string& s, StreamId* out) {
  const char* begin = s.data();
  const char* end = begin + s.size();
  auto [p, ec] = std::from_chars(begin, end, out->ms);
  if (ec != std::errc() || out->ms < 0) return false;
  out->seq = 0;
  if (p == end) return true;
  if (*p != '-') return false;
  auto [q, ec2] = std::from_chars(p + 1, end, out->seq);
  return ec2 == std::errc() && q == end && out->seq >= 0;
}

Error BadId(const std::string& id) {
  return Error::Invalid("'" + id + "' is not a dead-letter id (they look like 1700000000000-0)");
}

Error NoDeadLetter(const std::string& id) {
  return Error::NotFound("no dead letter with id " + id +
                         " (already replayed or dropped?); `scimsyncd dlq list` shows the ids");
}

struct Entry {
  StreamId id;
  Item item;  // as stored: stream fields only
  bool delivered = false;
  std::string consumer;
  int64_t delivered_at_ms = 0;
  int deliveries = 0;
};

struct Partition {
  std::vector<Entry> entries;                             // in id order
  std::map<std::string, std::pair<int64_t, Item>> retry;  // entry id -> (due ms, item)
};

// What a stream entry keeps of an item (the Redis queue stores only these fields).
Item Stored(const Item& in) {
  Item out;
  out.profile = in.profile;
  out.tenant = in.tenant;
  out.employee_key = in.employee_key;
  out.dedup_id = in.dedup_id;
  out.event_type = in.event_type;
  out.occurred_at = in.occurred_at;
  out.trace_id = in.trace_id;
  out.payload = in.payload;
  out.received_at_ms = in.received_at_ms;
  return out;
}

}  // namespace

struct MemoryQueue::State {
  State(int n, const Clock& c) : partitions(std::max(1, n)), clock(c), parts(partitions) {}

  const int partitions;
  const Clock& clock;
  std::mutex mu;
  std::condition_variable added;
  bool unavailable = false;
  StreamId last_id;
  std::vector<Partition> parts;
  std::map<std::string, int64_t> dedup_expiry_ms;
  std::vector<DeadLetterEntry> dlq;                             // in id order
  std::map<std::string, std::pair<std::string, Item>> applied;  // "<p>/<field>" -> (version, item)
  std::map<std::string, int64_t> fence_values;                  // SetFenceValue

  // As the Redis scripts: checked first, so a refused fence writes nothing.
  Status CheckFence(const Fence& fence) const {
    if (!fence.active()) return {};
    auto it = fence_values.find(fence.key);
    if (it != fence_values.end() && it->second == fence.value) return {};
    return FencedError(fence, it == fence_values.end() ? "" : std::to_string(it->second));
  }

  Status Check() const {
    if (unavailable) {
      return Error::Transient(
          "Redis at memory: cannot connect: unavailable (MemoryQueue::set_unavailable)");
    }
    return {};
  }

  // Like Redis: the millisecond clock, with a sequence for ids within one millisecond (and a
  // clock that stands still or goes back).
  StreamId NextId() {
    int64_t now = clock.NowMs();
    if (now > last_id.ms) {
      last_id = {now, 0};
    } else {
      ++last_id.seq;
    }
    return last_id;
  }

  std::string Append(int p, const Item& item) {
    Entry e;
    e.id = NextId();
    e.item = Stored(item);
    parts[p].entries.push_back(std::move(e));
    added.notify_all();
    return parts[p].entries.back().id.ToString();
  }

  Item Out(const Entry& e, int p) const {
    Item item = e.item;
    item.entry_id = e.id.ToString();
    item.partition = p;
    item.deliveries = e.deliveries;
    return item;
  }

  // Removes the item from its stream or retry set, as Ack does.
  void Remove(const Item& item) {
    Partition& part = parts[item.partition];
    if (item.from_retry) {
      part.retry.erase(item.entry_id);
      return;
    }
    StreamId id;
    if (!ParseId(item.entry_id, &id)) return;
    std::erase_if(part.entries, [&id](const Entry& e) { return e.id == id; });
  }

  Status CheckItem(const Item& item) const {
    if (Status s = CheckPartition(item.partition, partitions); !s) return s;
    if (item.entry_id.empty()) {
      return Error::Invalid("the item has no entry id: pass the Item as Read/TakeDue returned it");
    }
    return {};
  }

  std::vector<DeadLetterEntry>::iterator FindDead(const StreamId& id) {
    return std::find_if(dlq.begin(), dlq.end(), [&id](const DeadLetterEntry& d) {
      StreamId got;
      return ParseId(d.id, &got) && got == id;
    });
  }
};

MemoryQueue::MemoryQueue(int partitions, const Clock& clock)
    : state_(std::make_unique<State>(partitions, clock)) {}

MemoryQueue::~MemoryQueue() = default;

void MemoryQueue::set_unavailable(bool unavailable) {
  std::lock_guard lock(state_->mu);
  state_->unavailable = unavailable;
  state_->added.notify_all();
}

void MemoryQueue::SetFenceValue(const std::string& key, int64_t value) {
  std::lock_guard lock(state_->mu);
  state_->fence_values[key] = value;
}

int MemoryQueue::partitions() const { return state_->partitions; }

Result<EnqueueOutcome> MemoryQueue::EnqueueBatch(const std::vector<Item>& items,
                                                 int64_t dedup_window_s) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  EnqueueOutcome outcome;
  const int64_t now = s.clock.NowMs();
  for (const Item& item : items) {
    int p = PartitionOf(item.profile, item.employee_key, s.partitions);
    if (dedup_window_s > 0) {
      std::string key = Keys::Dedup("", p, item.profile, item.dedup_id);
      auto it = s.dedup_expiry_ms.find(key);
      if (it != s.dedup_expiry_ms.end() && it->second > now) {
        ++outcome.duplicates;
        continue;
      }
      s.dedup_expiry_ms[key] = now + dedup_window_s * 1000;
    }
    s.Append(p, item);
    ++outcome.accepted;
  }
  return outcome;
}

Status MemoryQueue::Ping() {
  std::lock_guard lock(state_->mu);
  return state_->Check();
}

Result<std::vector<Item>> MemoryQueue::Read(int partition, const std::string& consumer, int max,
                                            int block_ms) {
  State& s = *state_;
  std::unique_lock lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  if (Status st = CheckPartition(partition, s.partitions); !st) return st.error();
  std::vector<Item> out;
  if (max <= 0) return out;
  Partition& part = s.parts[partition];
  auto has_new = [&part] {
    return std::any_of(part.entries.begin(), part.entries.end(),
                       [](const Entry& e) { return !e.delivered; });
  };
  int block = std::min(block_ms, kMaxBlockMs);
  if (block > 0 && !has_new()) {
    s.added.wait_for(lock, std::chrono::milliseconds(block),
                     [&] { return s.unavailable || has_new(); });
    if (Status st = s.Check(); !st) return st.error();
  }
  const int64_t now = s.clock.NowMs();
  for (Entry& e : part.entries) {
    if (static_cast<int>(out.size()) >= max) break;
    if (e.delivered) continue;
    e.delivered = true;
    e.consumer = consumer;
    e.delivered_at_ms = now;
    e.deliveries = 1;
    out.push_back(s.Out(e, partition));
  }
  return out;
}

Status MemoryQueue::Ack(const Item& item, const Fence& fence) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st;
  if (Status st = s.CheckItem(item); !st) return st;
  if (Status st = s.CheckFence(fence); !st) return st;
  s.Remove(item);
  return {};
}

Status MemoryQueue::AckApplied(const std::vector<Item>& items, const std::vector<Item>& applied) {
  return AckPass(-1, items, applied, CappedLists{}, Fence{});
}

// partition -1: items of any partition (AckApplied).
Status MemoryQueue::AckPass(int partition, const std::vector<Item>& items,
                            const std::vector<Item>& applied, CappedLists lists,
                            const Fence& fence) {
  (void)lists;  // no Redis lists here
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st;
  if (partition != -1) {
    if (Status st = CheckPartition(partition, s.partitions); !st) return st;
  }
  if (Status st = s.CheckFence(fence); !st) return st;
  for (const Item& item : items) {
    if (Status st = s.CheckItem(item); !st) return st;
  }
  for (const Item& item : applied) {
    if (Status st = s.CheckItem(item); !st) return st;
    const std::string key = std::to_string(item.partition) + "/" +
                            AppliedField(item.profile, item.tenant, item.employee_key);
    auto it = s.applied.find(key);
    bool store = true;
    if (it != s.applied.end() && !item.occurred_at.empty() && !it->second.first.empty()) {
      const std::string& cur = it->second.first;
      char* end_a = nullptr;
      char* end_b = nullptr;
      const double a = std::strtod(cur.c_str(), &end_a);
      const double b = std::strtod(item.occurred_at.c_str(), &end_b);
      if (*end_a == 0 && *end_b == 0) {
        store = b >= a;
      } else {
        store = item.occurred_at >= cur;
      }
    }
    if (store) {
      Item stored = item;
      stored.attempts = 0;
      stored.last_error.clear();
      s.applied[key] = {item.occurred_at, stored};
    }
  }
  for (const Item& item : items) s.Remove(item);
  return {};
}

Result<Item> MemoryQueue::LastApplied(int partition, const std::string& profile,
                                      const std::string& tenant, const std::string& employee_key) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  auto it =
      s.applied.find(std::to_string(partition) + "/" + AppliedField(profile, tenant, employee_key));
  if (it == s.applied.end())
    return Error::NotFound("no applied item remembered for " + employee_key);
  return it->second.second;
}

Status MemoryQueue::RetryLater(const Item& item, int64_t due_ms, const std::string& reason,
                               const Fence& fence) {
  return Reschedule(item, due_ms, reason, item.attempts + 1, fence);
}

Status MemoryQueue::Park(const Item& item, int64_t due_ms, const std::string& reason,
                         const Fence& fence) {
  return Reschedule(item, due_ms, reason, item.attempts, fence);
}

Result<std::vector<Queue::Scheduled>> MemoryQueue::ListRetries(int partition) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  if (Status st = CheckPartition(partition, s.partitions); !st) return st.error();
  std::vector<std::pair<int64_t, std::string>> order;
  for (const auto& [id, entry] : s.parts[partition].retry) order.emplace_back(entry.first, id);
  std::sort(order.begin(), order.end());
  std::vector<Scheduled> out;
  for (const auto& [due, id] : order) {
    Item item = s.parts[partition].retry[id].second;
    item.entry_id = id;
    item.partition = partition;
    item.from_retry = true;
    out.push_back({std::move(item), due});
  }
  return out;
}

Status MemoryQueue::Reschedule(const Item& item, int64_t due_ms, const std::string& reason,
                               int attempts, const Fence& fence) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st;
  if (Status st = s.CheckItem(item); !st) return st;
  if (Status st = s.CheckFence(fence); !st) return st;
  s.Remove(item);
  Item next = item;
  next.attempts = attempts;
  next.last_error = reason;
  next.from_retry = true;
  next.deliveries = 0;
  s.parts[item.partition].retry[item.entry_id] = {due_ms, std::move(next)};
  return {};
}

Result<std::vector<Item>> MemoryQueue::TakeDue(int partition, int64_t now_ms, int max,
                                               int64_t lease_ms) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  if (Status st = CheckPartition(partition, s.partitions); !st) return st.error();
  std::vector<Item> out;
  if (max <= 0) return out;
  // Redis orders a sorted set by score, then by member bytes.
  std::vector<std::pair<int64_t, std::string>> due;
  for (const auto& [id, entry] : s.parts[partition].retry) {
    if (entry.first <= now_ms) due.emplace_back(entry.first, id);
  }
  std::sort(due.begin(), due.end());
  if (static_cast<int>(due.size()) > max) due.resize(max);
  for (const auto& [unused, id] : due) {
    auto& entry = s.parts[partition].retry[id];
    entry.first = now_ms + std::max<int64_t>(0, lease_ms);
    ++entry.second.deliveries;  // hand-outs since the last outcome
    Item item = entry.second;
    item.entry_id = id;
    item.partition = partition;
    item.from_retry = true;
    out.push_back(std::move(item));
  }
  return out;
}

Status MemoryQueue::DeadLetter(const Item& item, const std::string& error_kind,
                               const std::string& reason, const std::string& last_request,
                               const std::string& last_response, const Fence& fence) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st;
  if (Status st = s.CheckItem(item); !st) return st;
  if (Status st = s.CheckFence(fence); !st) return st;
  DeadLetterEntry d;
  d.id = s.NextId().ToString();
  d.item = item;
  d.item.from_retry = false;
  d.error_kind = error_kind;
  d.reason = reason;
  d.last_request = last_request;
  d.last_response = last_response;
  d.dead_at_ms = s.clock.NowMs();
  s.dlq.push_back(std::move(d));
  s.Remove(item);
  return {};
}

Result<Queue::ClaimPage> MemoryQueue::ClaimStalePage(int partition, const std::string& consumer,
                                                     int64_t min_idle_ms, const std::string& start,
                                                     int max) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  if (Status st = CheckPartition(partition, s.partitions); !st) return st.error();
  StreamId from;
  if (!ParseId(start, &from)) {
    return Error::Invalid("'" + start +
                          "' is not a stream entry id (they look like 1700000000000-0)");
  }
  ClaimPage page;
  if (max <= 0) return page;
  const int64_t now = s.clock.NowMs();
  for (Entry& e : s.parts[partition].entries) {
    if (!e.delivered || e.id < from) continue;
    if (static_cast<int>(page.items.size()) >= max) {
      page.next = e.id.ToString();  // the scan goes on here
      return page;
    }
    if (now - e.delivered_at_ms < min_idle_ms) continue;
    e.consumer = consumer;
    e.delivered_at_ms = now;
    ++e.deliveries;
    page.items.push_back(s.Out(e, partition));
  }
  return page;  // next "0-0": the whole list was scanned
}

Result<int64_t> MemoryQueue::Depth(int partition) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  if (Status st = CheckPartition(partition, s.partitions); !st) return st.error();
  return static_cast<int64_t>(s.parts[partition].entries.size());
}

Result<int64_t> MemoryQueue::RetryDepth(int partition) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  if (Status st = CheckPartition(partition, s.partitions); !st) return st.error();
  return static_cast<int64_t>(s.parts[partition].retry.size());
}

Result<int64_t> MemoryQueue::OldestMs(int partition) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  if (Status st = CheckPartition(partition, s.partitions); !st) return st.error();
  const auto& entries = s.parts[partition].entries;
  return entries.empty() ? int64_t{0} : entries.front().id.ms;
}

Result<std::vector<Item>> MemoryQueue::ListStream(int partition, const std::string& after_id,
                                                  int max) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  if (Status st = CheckPartition(partition, s.partitions); !st) return st.error();
  StreamId after;
  if (!after_id.empty() && !ParseId(after_id, &after)) {
    return Error::Invalid("'" + after_id + "' is not a stream entry id");
  }
  std::vector<Item> out;
  for (const Entry& e : s.parts[partition].entries) {
    if (static_cast<int>(out.size()) >= max) break;
    if (!after_id.empty() && !(after < e.id)) continue;
    Item item = e.item;
    item.entry_id = e.id.ToString();
    item.partition = partition;
    out.push_back(std::move(item));
  }
  return out;
}

Result<std::vector<DeadLetterEntry>> MemoryQueue::ListDeadLetters(const std::string& after_id,
                                                                  int max) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  std::vector<DeadLetterEntry> out;
  if (max <= 0) return out;
  StreamId after{-1, 0};
  if (!after_id.empty() && !ParseId(after_id, &after)) return BadId(after_id);
  for (const DeadLetterEntry& d : s.dlq) {
    if (static_cast<int>(out.size()) >= max) break;
    StreamId id;
    if (ParseId(d.id, &id) && (after_id.empty() || after < id)) out.push_back(d);
  }
  return out;
}

Result<DeadLetterEntry> MemoryQueue::GetDeadLetter(const std::string& id) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  StreamId want;
  if (!ParseId(id, &want)) return BadId(id);
  auto it = s.FindDead(want);
  if (it == s.dlq.end()) return NoDeadLetter(id);
  return *it;
}

Result<Item> MemoryQueue::ReplayDeadLetter(const std::string& id) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  StreamId want;
  if (!ParseId(id, &want)) return BadId(id);
  auto it = s.FindDead(want);
  if (it == s.dlq.end()) return NoDeadLetter(id);
  Item item = Stored(it->item);
  s.dlq.erase(it);
  item.partition = PartitionOf(item.profile, item.employee_key, s.partitions);
  item.entry_id = s.Append(item.partition, item);
  return item;
}

Status MemoryQueue::DropDeadLetter(const std::string& id) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st;
  StreamId want;
  if (!ParseId(id, &want)) return BadId(id);
  auto it = s.FindDead(want);
  if (it == s.dlq.end()) return NoDeadLetter(id);
  s.dlq.erase(it);
  return {};
}

Result<int64_t> MemoryQueue::DeadLetterCount() {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  if (Status st = s.Check(); !st) return st.error();
  return static_cast<int64_t>(s.dlq.size());
}

std::unique_ptr<MemoryQueue> NewMemoryQueue(int partitions) {
  return std::make_unique<MemoryQueue>(partitions, SystemClock::Instance());
}

std::unique_ptr<MemoryQueue> NewMemoryQueue(int partitions, const Clock& clock) {
  return std::make_unique<MemoryQueue>(partitions, clock);
}

}  // namespace scimsync::queue
