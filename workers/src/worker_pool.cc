#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <set>

#include "scimsync/log.h"
#include "scimsync/workers/worker.h"

namespace scimsync::workers {
namespace {

std::string EmployeeId(const queue::Item& item) {
  return item.profile + '\x1f' + item.tenant + '\x1f' + item.employee_key;
}

std::pair<long long, long long> SplitEntryId(const std::string& id) {
  auto dash = id.find('-');
  long long ms = std::strtoll(id.c_str(), nullptr, 10);
  long long seq = dash == std::string::npos ? 0 : std::strtoll(id.c_str() + dash + 1, nullptr, 10);
  return {ms, seq};
}

}  // namespace

std::string ScopeOf(const std::string& profile, const std::string& tenant) {
  return tenant.empty() ? profile : profile + "/" + tenant;
}

bool EntryIdLess(const std::string& a, const std::string& b) {
  return SplitEntryId(a) < SplitEntryId(b);
}

WorkerPool::WorkerPool(WorkerOptions options, queue::Queue& queue, Syncer& syncer,
                       const Clock& clock, std::function<bool(int)> owns,
                       std::function<void(int)> release_if_marked)
    : options_(std::move(options)),
      queue_(queue),
      syncer_(syncer),
      clock_(clock),
      owns_(std::move(owns)),
      release_if_marked_(std::move(release_if_marked)),
      partitions_(static_cast<size_t>(queue.partitions())),
      progress_(new std::atomic<uint64_t>[static_cast<size_t>(std::max(1, options_.threads))]) {
  for (int i = 0; i < std::max(1, options_.threads); ++i) progress_[static_cast<size_t>(i)] = 0;
}

WorkerPool::~WorkerPool() { Stop(0); }

namespace {

// On Linux setpriority(PRIO_PROCESS, 0) sets the calling thread only, which is what we want: the
// listener keeps the process's priority. Raising niceness needs no privilege.
void LowerPriority(int nice) {
  if (nice <= 0) return;
  errno = 0;
  const int current = getpriority(PRIO_PROCESS, 0);
  if (current == -1 && errno != 0) return;
  if (setpriority(PRIO_PROCESS, 0, std::min(19, current + nice)) != 0) {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      log::Warn(
          "cannot lower the worker threads' priority (workers.nice); they run at the "
          "listener's",
          {{"errno", errno}});
    }
  }
}

}  // namespace

uint64_t WorkerPool::progress(int thread) const {
  return progress_[static_cast<size_t>(thread)].load();
}

void WorkerPool::Start() {
  for (int t = 0; t < options_.threads; ++t) {
    threads_.emplace_back([this, t] {
      LowerPriority(options_.nice);
      Loop(t);
    });
  }
}

bool WorkerPool::Stop(int64_t drain_ms) {
  stopping_ = true;
  wake_.notify_all();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_ms);
  // In-flight syncs finish (each is bounded by the target's timeout); past the drain time the
  // threads are left to the process exit and their items stay pending in Redis.
  while (busy_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  bool drained = busy_.load() == 0;
  for (auto& t : threads_) {
    if (drained) {
      t.join();
    } else {
      t.detach();
    }
  }
  threads_.clear();
  return drained;
}

void WorkerPool::Loop(int thread) {
  while (!stopping_) {
    if (iteration_hook_) iteration_hook_(thread);
    int done = RunOnce(thread);
    if (done == 0 && !stopping_) {
      std::unique_lock lock(wake_mu_);
      wake_.wait_for(lock, std::chrono::milliseconds(paused_ ? 200 : options_.idle_sleep_ms));
    }
  }
}

int WorkerPool::RunOnce(int thread) {
  if (paused_ && !MaybeResume(thread)) return 0;
  int done = 0;
  const int threads = std::max(1, options_.threads);
  for (int p = thread; p < static_cast<int>(partitions_.size()); p += threads) {
    if (stopping_ || paused_) break;
    if (!owns_(p)) {
      // Not ours (any more): forget what we knew; whoever owns it next loads it afresh.
      partitions_[static_cast<size_t>(p)] = PartitionState{};
      release_if_marked_(p);
      continue;
    }
    // Taken again under a new lease since the state was loaded (lost in between): what it
    // knew may be stale, load afresh.
    const int64_t token = TokenOf(p);
    PartitionState& st = partitions_[static_cast<size_t>(p)];
    if (st.token != token) {
      st = PartitionState{};
      st.token = token;
    }
    done += Step(thread, p);
    release_if_marked_(p);
    if (!owns_(p)) partitions_[static_cast<size_t>(p)] = PartitionState{};
  }
  progress_[static_cast<size_t>(thread)]++;
  return done;
}

int64_t WorkerPool::TokenOf(int partition) const {
  if (token_) return token_(partition);
  return owns_(partition) ? 1 : 0;
}

bool WorkerPool::Holds(int partition, int64_t token) const {
  if (holds_) return holds_(partition, token);
  return owns_(partition);
}

queue::Fence WorkerPool::FenceOf(int partition, int64_t token) const {
  if (!token_key_) return {};
  return {token_key_(partition), token};
}

void WorkerPool::Repair(const EmployeeWork& work) {
  queue::Item repair;
  repair.profile = work.profile;
  repair.tenant = work.tenant;
  repair.employee_key = work.employee_key;
  repair.event_type = kRepairEvent;
  repair.trace_id = work.items.empty() ? "" : work.items.back().trace_id;
  repair.dedup_id = "repair:" + repair.trace_id + ":" + std::to_string(clock_.NowMs());
  repair.payload = "{}";
  repair.received_at_ms = clock_.NowMs();
  auto r = queue_.EnqueueBatch({repair}, 0);
  if (!r.ok()) {
    log::Error(
        "a sync ended after its partition lease was lost and the repair item could not be "
        "enqueued; run `scimsyncd reconcile` for this profile to be sure JumpCloud has the newest "
        "state",
        {{"trace_id", repair.trace_id},
         {"partition", work.partition},
         {"detail", r.error().message}});
    return;
  }
  log::Warn(
      "a sync ended after this instance lost its partition lease; enqueued a repair so the new "
      "owner converges the employee again from the newest state",
      {{"trace_id", repair.trace_id}, {"partition", work.partition}});
}

bool WorkerPool::ResolveRepair(int partition, queue::Item* item) {
  auto last = queue_.LastApplied(partition, item->profile, item->tenant, item->employee_key);
  if (!last && last.error().kind != ErrorKind::kNotFound) {
    // Left pending: claimed again once Redis answers.
    partitions_[static_cast<size_t>(partition)].loaded = false;
    log::Warn("cannot look up the state a repair re-applies; will try again",
              {{"trace_id", item->trace_id}, {"detail", last.error().message}});
    return false;
  }
  if (!last) {
    // Nothing was ever applied through the queue for this employee: nothing to restore.
    PartitionState& st = partitions_[static_cast<size_t>(partition)];
    Status s = queue_.Ack(*item, FenceOf(partition, st.token));
    if (!s.ok()) st.loaded = false;
    if (!s.ok() && queue::IsFenced(s.error())) {
      log::Warn("a queue write was fenced: this instance lost the partition's lease",
                {{"partition", partition}, {"detail", s.error().message}});
      return false;
    }
    log::Info("repair: no applied state remembered for the employee; nothing to re-apply",
              {{"trace_id", item->trace_id}});
    return false;
  }
  // The newest state applied, in the repair's place (its entry, its deliveries): converged
  // again after everything older, it overwrites the late write.
  queue::Item state = std::move(last.value());
  state.entry_id = item->entry_id;
  state.partition = partition;
  state.from_retry = item->from_retry;
  state.attempts = item->attempts;
  state.deliveries = item->deliveries;
  state.last_error = item->last_error;
  state.trace_id = item->trace_id;
  *item = std::move(state);
  return true;
}

int WorkerPool::Step(int thread, int partition) {
  PartitionState& st = partitions_[static_cast<size_t>(partition)];
  const int64_t now = clock_.NowMs();
  std::vector<queue::Item> items;

  if (!st.loaded) {
    // Taking a partition over: learn which employees have items waiting, and claim what a dead
    // worker left pending, before reading anything new.
    auto retries = queue_.ListRetries(partition);
    if (!retries) {
      log::Warn("cannot load a partition; will try again",
                {{"partition", partition}, {"detail", retries.error().message}});
      return 0;
    }
    st.waiting.clear();
    st.held.clear();
    for (const auto& s : *retries) {
      // A leased item (handed out, not ended: a pass that could not write its outcome, or an
      // instance that died) is due at its lease's end, whatever it waited for before: a
      // deferred one's date has passed. Its employee's other items wait behind it.
      if (s.item.deliveries == 0 && s.item.last_error.rfind("deferred", 0) == 0) {
        // An effective date holds nothing back until it has passed.
        st.held[EmployeeId(s.item)][s.item.entry_id] = s.due_ms;
        continue;
      }
      st.waiting[EmployeeId(s.item)][s.item.entry_id] = s.due_ms;
    }
    st.loaded = true;
    st.claiming = true;
    st.claim_cursor = "0-0";
    st.next_claim_ms = now + options_.claim_idle_ms;
  }
  if (st.claiming) {
    // Everything pending in the partition, one page per pass, following the scan's cursor: a
    // backlog larger than a page is claimed in several passes, each processed before the next.
    // Nothing new is read until the whole list is claimed, so an employee's pending items are
    // not overtaken by their newer ones.
    auto page = queue_.ClaimStalePage(partition, options_.consumer, 0, st.claim_cursor,
                                      std::max(1, options_.batch));
    if (!page) {
      log::Warn("cannot claim pending items; will try again",
                {{"partition", partition}, {"detail", page.error().message}});
      st.loaded = false;
      return 0;
    }
    items = std::move(page->items);
    st.claim_cursor = page->next;
    st.claiming = page->next != "0-0";
  } else if (now >= st.next_claim_ms) {
    auto page = queue_.ClaimStalePage(partition, options_.consumer, options_.claim_idle_ms,
                                      st.idle_cursor, std::max(1, options_.batch));
    if (page) {
      items.insert(items.end(), page->items.begin(), page->items.end());
      st.idle_cursor = page->next;
    }
    // Go on at once while the scan is under way, else look again in a while.
    st.next_claim_ms = st.idle_cursor != "0-0" ? now : now + options_.claim_idle_ms / 2;
  }

  auto due = queue_.TakeDue(partition, now, options_.due_batch, options_.retry_lease_ms);
  if (due) {
    items.insert(items.end(), due->begin(), due->end());
  } else {
    // Redis went away: what was delivered but not ended is claimed again once it is back, at
    // once rather than after claim_idle_ms (this instance still owns the partition).
    st.loaded = false;
    log::Warn("cannot read retries", {{"partition", partition}, {"detail", due.error().message}});
    return 0;
  }
  if (st.claiming) {
    if (items.empty()) return 0;
    return Process(thread, partition, std::move(items));
  }
  auto fresh = queue_.Read(partition, options_.consumer, options_.batch, 0);
  if (fresh) {
    items.insert(items.end(), fresh->begin(), fresh->end());
  } else {
    st.loaded = false;
    log::Warn("cannot read the queue",
              {{"partition", partition}, {"detail", fresh.error().message}});
  }
  if (items.empty()) return 0;
  return Process(thread, partition, std::move(items));
}

int WorkerPool::Process(int thread, int partition, std::vector<queue::Item> items) {
  PartitionState& st = partitions_[static_cast<size_t>(partition)];
  // Group by employee in order of first appearance; inside a group, arrival order. An employee
  // has at most one group not yet synced (`open`); items read ahead for an employee already
  // synced in this pass start a second group at the end.
  struct Group {
    std::string key;
    std::vector<queue::Item> items;
  };
  std::vector<Group> groups;
  std::map<std::string, size_t> open;
  std::set<std::string> seen_entries;
  std::set<std::string> repair_copies;
  int ended = 0;
  // The partition's fencing token, checked by Redis in each outcome write of the pass: the
  // in-process checks (Holds) are made before a write, and an instance frozen right after one
  // for longer than its lease would otherwise record a stale outcome (park an item the new
  // owner has synced and acknowledged back into the retry set).
  const queue::Fence fence = FenceOf(partition, st.token);
  // Set once a write was refused by the fence: the lease is lost, and nothing more of the pass
  // is written (the new owner claims what is left). No repair is needed: each sync of the pass
  // ended while Holds still said the lease was ours, so its SCIM writes landed before the new
  // owner's.
  bool fenced = false;
  auto fenced_by = [&](const Status& s) -> bool {
    if (s.ok() || !queue::IsFenced(s.error())) return false;
    st.loaded = false;
    if (!fenced) {
      fenced = true;
      log::Warn("a queue write was fenced: this instance lost the partition's lease",
                {{"partition", partition}, {"detail", s.error().message}});
    }
    return true;
  };
  auto add = [&](queue::Item&& item) {
    std::string key = EmployeeId(item);
    auto it = open.find(key);
    if (it == open.end()) {
      it = open.emplace(key, groups.size()).first;
      groups.push_back(Group{std::move(key), {}});
    }
    groups[it->second].items.push_back(std::move(item));
  };
  auto admit = [&](std::vector<queue::Item>& batch) {
    std::vector<queue::Item> repairs;
    for (auto& item : batch) {
      if (!seen_entries.insert(item.entry_id).second) continue;
      if (item.event_type == kRepairEvent) {
        repairs.push_back(std::move(item));
        continue;
      }
      if (options_.max_deliveries > 0 && item.deliveries > options_.max_deliveries) {
        // A poison item: each worker that took it died (or froze) before recording an outcome.
        // Syncing it again would most likely take this process down too.
        const std::string reason =
            "delivered " + std::to_string(item.deliveries) +
            " times without an outcome: each worker that took it crashed or stalled (see the logs "
            "for its trace_id); dead-lettered after workers.max_deliveries (" +
            std::to_string(options_.max_deliveries) +
            ") so the partition goes on. Replay it with `scimsyncd dlq replay ID` once fixed";
        if (fenced) continue;
        Status s = queue_.DeadLetter(item, "permanent", reason, "", "", fence);
        if (fenced_by(s)) continue;
        if (!s.ok()) {
          st.loaded = false;
          log::Error("cannot dead-letter an item; it will be processed again",
                     {{"trace_id", item.trace_id}, {"detail", s.error().message}});
          continue;
        }
        log::Error("dead-lettered an item that was delivered too often",
                   {{"trace_id", item.trace_id},
                    {"partition", partition},
                    {"entry_id", item.entry_id},
                    {"deliveries", item.deliveries}});
        if (hook_) {
          EmployeeWork work;
          work.partition = partition;
          work.profile = item.profile;
          work.tenant = item.tenant;
          work.employee_key = item.employee_key;
          work.items = {item};
          SyncResult result;
          result.kind = SyncResult::Kind::kDeadLetter;
          result.action = "sync";
          result.result = "dead_letter";
          result.reason = reason;
          result.error_kind = "permanent";
          hook_(work, item, result, 0);
        }
        ++ended;
        continue;
      }
      add(std::move(item));
    }
    for (auto& repair : repairs) {
      // A repair asks for one more sync of the employee, after everything before it, from the
      // newest state applied: it stands in for that state's item. In a group with other items
      // it goes first, so whatever of theirs is newer still wins (by version, or by arrival).
      if (!ResolveRepair(partition, &repair)) {
        ++ended;
        continue;
      }
      repair_copies.insert(repair.entry_id);
      add(std::move(repair));
    }
  };
  admit(items);
  items.clear();
  // Time this pass's syncs have waited for rate-limit slots since its last read.
  int64_t rate_waited_ms = 0;
  std::set<std::string> synced;  // employees whose group this pass has taken up

  // Converged employees' items are acknowledged together, every options_.ack_batch items and
  // when the pass ends: one script per batch instead of one per employee, and short enough that
  // webhooks' writes do not wait long behind it. An employee's next items come in a later pass,
  // after this write; a crash before it hands the items out again, and syncing a state
  // JumpCloud already has writes nothing.
  std::vector<queue::Item> acks;  // entry ids only: what the ack script needs
  // Per converged employee, the newest item applied: remembered for a repair (AckApplied).
  std::vector<queue::Item> applied;
  // The pass stays busy (busy_) while converged items wait for their acknowledgement.
  bool acks_busy = false;
  bool lost_logged = false;
  // Returns false when the converged items' outcome could not be stored: they stay pending.
  auto flush = [&]() -> bool {
    bool stored = true;
    // The batch's history goes with its acknowledgements, in the same script.
    queue::CappedLists records = syncer_.TakeRecords(thread);
    // The applied versions first: an item acknowledged without its version stored could let an
    // older event of the employee be applied after it.
    Status versions = syncer_.EndPass(thread);
    if (!versions.ok() && !acks.empty()) {
      // Acknowledged without their versions, the items would let an older event of the
      // employee overwrite what they applied. Left pending, they are claimed again and converge
      // again.
      st.loaded = false;
      stored = false;
      log::Error("cannot store the applied versions; the pass's items will be processed again",
                 {{"partition", partition},
                  {"items", static_cast<int64_t>(acks.size())},
                  {"detail", versions.error().message}});
      acks.clear();
    }
    if (acks.empty()) applied.clear();
    if (fenced) {
      // Nothing more is written: the new owner ends these items.
      stored = false;
    } else if (!acks.empty() || !records.pushes.empty()) {
      // With the newest state applied per employee, for a repair and `scimsyncd sync`; ignored
      // events are no state.
      Status s = queue_.AckPass(partition, acks, applied, std::move(records), fence);
      if (fenced_by(s)) {
        stored = false;
      } else if (!s.ok() && acks.empty()) {
        log::Warn("cannot record outcomes in the employee history (`scimsyncd employee`)",
                  {{"partition", partition}, {"detail", s.error().message}});
      } else if (!s.ok()) {
        // They stay pending in Redis and are handed out again: at least once.
        st.loaded = false;
        stored = false;
        log::Error("cannot record converged items as done; they will be processed again",
                   {{"partition", partition},
                    {"items", static_cast<int64_t>(acks.size())},
                    {"detail", s.error().message}});
      }
    }
    acks.clear();
    applied.clear();
    if (acks_busy) {
      acks_busy = false;
      --busy_;
    }
    return stored;
  };
  for (size_t g = 0; g < groups.size(); ++g) {
    if (fenced) break;
    if (!st.claiming && options_.read_ahead_after_ms > 0 && !stopping_ && !paused_ &&
        seen_entries.size() < static_cast<size_t>(options_.max_pass_items) &&
        rate_waited_ms >= options_.read_ahead_after_ms && owns_(partition) &&
        Holds(partition, st.token)) {
      // A slow pass (every sync waits for its rate-limit slot): the employees not reached yet
      // take in their newer items, so each burst is one sync. Not while claiming: an
      // employee's pending items must not be overtaken by their newer ones.
      rate_waited_ms = 0;
      const int room = options_.max_pass_items - static_cast<int>(seen_entries.size());
      auto more = queue_.Read(partition, options_.consumer, std::min(options_.batch, room), 0);
      if (more) {
        admit(*more);
      } else {
        log::Warn("cannot read ahead; the pass goes on with what it has",
                  {{"partition", partition}, {"detail", more.error().message}});
      }
    }
    const std::string key = groups[g].key;
    if (auto it = open.find(key); it != open.end() && it->second == g) open.erase(it);
    // An employee synced earlier in this pass: that sync's outcome is written first, as if
    // this were the next pass. If it cannot be, the earlier items come back, and these newer
    // ones are left pending to come back with them rather than overtake them.
    if (!synced.insert(key).second && !flush()) continue;
    std::vector<queue::Item>& group = groups[g].items;
    std::sort(group.begin(), group.end(), [](const queue::Item& a, const queue::Item& b) {
      return EntryIdLess(a.entry_id, b.entry_id);
    });
    if (!repair_copies.empty()) {
      std::stable_partition(group.begin(), group.end(), [&](const queue::Item& item) {
        return repair_copies.count(item.entry_id) != 0;
      });
    }
    const int64_t now = clock_.NowMs();

    // Between employees: hand over this thread's other partitions that a joining instance is
    // to get (they are idle while this one is worked), so scale-out does not wait for a pass.
    const int threads = std::max(1, options_.threads);
    for (int q = thread % threads; q < static_cast<int>(partitions_.size()); q += threads) {
      if (q != partition) release_if_marked_(q);
    }
    if (!owns_(partition) || !Holds(partition, st.token)) {
      // The lease was lost, or is marked to be handed over to a joining instance: stop here,
      // between employees. The rest is left as it is (pending in the stream, leased in the
      // retry set) for the next owner; retry-set items are made due at once so it need not
      // wait for their lease.
      if (!lost_logged) {
        lost_logged = true;
        log::Info("stopping a pass: the partition is no longer ours",
                  {{"partition", partition},
                   {"employees_left", static_cast<int64_t>(groups.size() - g)}});
      }
      for (const auto& item : group) {
        if (!item.from_retry || !Holds(partition, st.token)) continue;
        Status s = queue_.Park(item, now, item.last_error, fence);
        if (fenced_by(s)) break;
        if (!s.ok()) log::Warn("cannot hand an item back", {{"detail", s.error().message}});
      }
      st.loaded = false;
      continue;
    }

    if (stopping_ || paused_) {
      // Not started: hand back at once (no attempt counted) so nothing waits for a lease.
      for (const auto& item : group) {
        Status s = queue_.Park(item, now, paused_ ? "paused" : "shutting down", fence);
        if (fenced_by(s)) break;
        if (!s.ok()) log::Warn("cannot park an item", {{"detail", s.error().message}});
        st.waiting[key][item.entry_id] = now;
      }
      continue;
    }

    // Items of this employee still in the retry set but not in this batch: this batch waits
    // behind them (same due time), so they all come back together and nothing overtakes.
    auto w = st.waiting.find(key);
    if (w != st.waiting.end()) {
      std::set<std::string> here;
      for (const auto& item : group) here.insert(item.entry_id);
      int64_t behind = 0;
      for (const auto& [id, due] : w->second) {
        if (here.count(id) == 0) behind = std::max(behind, due);
      }
      if (behind > 0) {
        if (behind + 2 * options_.retry_lease_ms < now) {
          // Should have come back long ago: Redis and our view disagree (an admin removed it,
          // or another instance ended it). Look again from Redis.
          st.loaded = false;
          behind = now;
        }
        for (const auto& item : group) {
          const int64_t when = std::max(behind, now);
          Status s =
              queue_.Park(item, when, "waiting behind an earlier item of this employee", fence);
          if (fenced_by(s)) break;
          if (!s.ok()) log::Warn("cannot park an item", {{"detail", s.error().message}});
          w->second[item.entry_id] = when;
          ++ended;
        }
        continue;
      }
      st.waiting.erase(w);
    }

    // Items of this employee held until their effective date by an earlier pass and not in this
    // batch. Once a date has passed, this batch waits for them (they are due and come back with
    // it); before, the sync is told the earliest date so it does not write past it.
    int64_t held_due = 0;
    if (auto h = st.held.find(key); h != st.held.end()) {
      for (const auto& item : group) h->second.erase(item.entry_id);
      int64_t passed = 0;
      for (const auto& [id, due] : h->second) {
        if (due <= now) passed = std::max(passed, due);
        if (held_due == 0 || due < held_due) held_due = due;
      }
      if (passed > 0 && passed + 2 * options_.retry_lease_ms < now) {
        // Should have come back long ago: another instance ended it. Look again from Redis.
        st.loaded = false;
        st.held.erase(h);
        held_due = 0;
      } else if (passed > 0) {
        // Soon: the held item is due and comes back in the next pass (or its lease runs out).
        const int64_t when = now + 1000;
        for (const auto& item : group) {
          Status s = queue_.Park(item, when,
                                 "waiting behind an item of this employee whose "
                                 "effective date has passed",
                                 fence);
          if (fenced_by(s)) break;
          if (!s.ok()) log::Warn("cannot park an item", {{"detail", s.error().message}});
          st.waiting[key][item.entry_id] = when;
          ++ended;
        }
        continue;
      } else if (h->second.empty()) {
        st.held.erase(h);
      }
    }

    EmployeeWork work;
    work.partition = partition;
    work.held_due_ms = held_due;
    work.profile = group.front().profile;
    work.tenant = group.front().tenant;
    work.employee_key = group.front().employee_key;
    // Moved, not copied: a pass can hold a thousand items with their payloads.
    work.items = std::move(group);
    const std::vector<queue::Item>& done = work.items;
    const int64_t token = st.token;
    work.fence = [this, partition, token]() -> Status {
      if (Holds(partition, token)) return {};
      return Error::Transient("fenced: this instance lost the partition's lease (token " +
                              std::to_string(token) + "); another instance owns it now");
    };
    work.last_applied = [this, partition, &work]() -> Result<std::optional<queue::Item>> {
      auto last = queue_.LastApplied(partition, work.profile, work.tenant, work.employee_key);
      if (last.ok()) return std::optional<queue::Item>(std::move(last.value()));
      if (last.error().kind == ErrorKind::kNotFound) return std::optional<queue::Item>();
      return last.error();
    };

    ++busy_;
    const int64_t started = clock_.NowMs();
    SyncResult result = syncer_.Sync(thread, work);
    rate_waited_ms += result.rate_wait_ms;
    const int64_t latency = clock_.NowMs() - started;
    const int64_t after = clock_.NowMs();
    if (!Holds(partition, token)) {
      // The lease was lost during the sync. Its items are the new owner's now: record nothing
      // for them. A write of this sync may have landed after the new owner's writes, so make
      // the new owner converge the employee once more.
      Repair(work);
      st.loaded = false;
      --busy_;
      continue;
    }

    std::set<size_t> deferred;
    for (const auto& [index, when] : result.deferred) {
      if (index >= done.size()) continue;
      deferred.insert(index);
      if (fenced) break;
      Status s = queue_.Park(done[index], when, "deferred until its effective date", fence);
      if (fenced_by(s)) break;
      if (!s.ok()) log::Warn("cannot defer an item", {{"detail", s.error().message}});
      st.held[key][done[index].entry_id] = when;
    }
    int64_t wait_until = 0;
    if (result.kind == SyncResult::Kind::kRetry) wait_until = after + result.delay_ms;
    if (result.kind == SyncResult::Kind::kHold) wait_until = after + options_.hold_recheck_ms;
    if (result.kind == SyncResult::Kind::kPause) wait_until = after;
    if (wait_until > 0) {
      auto& mine = st.waiting[key];
      for (size_t i = 0; i < done.size(); ++i) {
        if (deferred.count(i) == 0) mine[done[i].entry_id] = wait_until;
      }
    }
    for (size_t i = 0; i < done.size() && !fenced; ++i) {
      if (deferred.count(i) != 0) continue;
      const queue::Item& item = done[i];
      Status s;
      switch (result.kind) {
        case SyncResult::Kind::kDone: {
          queue::Item ack;
          ack.entry_id = item.entry_id;
          ack.partition = item.partition;
          ack.from_retry = item.from_retry;
          acks.push_back(std::move(ack));
          break;
        }
        case SyncResult::Kind::kRetry:
          s = result.count_attempt
                  ? queue_.RetryLater(item, after + result.delay_ms, result.reason, fence)
                  : queue_.Park(item, after + result.delay_ms, result.reason, fence);
          break;
        case SyncResult::Kind::kDeadLetter:
          s = queue_.DeadLetter(item, result.error_kind, result.reason, result.last_request,
                                result.last_response, fence);
          break;
        case SyncResult::Kind::kPause:
          s = queue_.Park(item, after, "paused: " + result.reason, fence);
          break;
        case SyncResult::Kind::kHold:
          s = queue_.Park(item, after + options_.hold_recheck_ms,
                          "held by the mass-suspension guard", fence);
          break;
      }
      if (fenced_by(s)) break;
      if (!s.ok()) {
        // The item stays pending (or leased) in Redis and is handed out again: at least once.
        st.loaded = false;
        log::Error("cannot record an item's outcome; it will be processed again",
                   {{"trace_id", item.trace_id}, {"detail", s.error().message}});
      }
      if (hook_) hook_(work, item, result, latency);
    }
    if (fenced) {
      // Nothing of this employee was recorded: the new owner ends the items.
      --busy_;
      break;
    }
    if (result.kind == SyncResult::Kind::kDone && result.action != "ignore") {
      // The newest of the group, as the versions compare (without one, the later).
      const queue::Item* newest = nullptr;
      for (size_t i = 0; i < done.size(); ++i) {
        if (deferred.count(i) != 0) continue;
        const queue::Item& item = done[i];
        if (newest == nullptr || item.occurred_at.empty() || newest->occurred_at.empty() ||
            CompareVersions(item.occurred_at, newest->occurred_at) >= 0) {
          newest = &item;
        }
      }
      if (newest != nullptr) applied.push_back(*newest);
    }
    // The pass stays busy until its acknowledgements are written (counted once, and only when
    // there are some: a group whose items were all deferred has none).
    if (!acks.empty() && !acks_busy) {
      ++busy_;
      acks_busy = true;
    }
    --busy_;
    ended += static_cast<int>(done.size());
    if (result.kind == SyncResult::Kind::kPause) Pause(result.reason);
    if (acks.size() >= static_cast<size_t>(std::max(1, options_.ack_batch))) flush();
  }
  flush();
  return ended;
}

void WorkerPool::Pause(const std::string& reason) {
  bool was = paused_.exchange(true);
  if (was) return;
  {
    std::lock_guard lock(pause_mu_);
    pause_reason_ = reason;
  }
  const int64_t now = clock_.NowMs();
  next_probe_ms_ = now + options_.probe_interval_ms;
  next_pause_log_ms_ = now + options_.pause_log_interval_ms;
  log::Error(
      "SCIM work paused: the target refused the API key; nothing is consumed or "
      "dead-lettered meanwhile. Fix target.api_key_* and send SIGHUP (systemctl reload "
      "scimsync); work resumes by itself once the key is accepted",
      {{"detail", reason}});
  if (pause_hook_) pause_hook_(reason);
}

bool WorkerPool::MaybeResume(int thread) {
  const int64_t now = clock_.NowMs();
  int64_t next = next_probe_ms_.load();
  if (now < next ||
      !next_probe_ms_.compare_exchange_strong(next, now + options_.probe_interval_ms)) {
    return !paused_;
  }
  Status probe = syncer_.Probe(thread);
  if (probe.ok()) {
    if (paused_.exchange(false)) {
      log::Info("SCIM work resumed: the target accepts the API key again");
      if (pause_hook_) pause_hook_("");
      wake_.notify_all();
    }
    return true;
  }
  int64_t next_log = next_pause_log_ms_.load();
  if (now >= next_log &&
      next_pause_log_ms_.compare_exchange_strong(next_log, now + options_.pause_log_interval_ms)) {
    std::string reason;
    {
      std::lock_guard lock(pause_mu_);
      reason = pause_reason_;
    }
    log::Error("SCIM work is still paused: the target refuses the API key",
               {{"detail", probe.error().message}});
  }
  return false;
}

}  // namespace scimsync::workers
