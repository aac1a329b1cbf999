#include "scimsync/workers/history.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <set>

#include "scimsync/log.h"
#include "scimsync/redis/client.h"
#include "scimsync/redis/keys.h"
#include "scimsync/strings.h"

namespace scimsync::workers {
namespace {

constexpr size_t kMaxReason = 300;
constexpr size_t kMaxRequest = 200;

void Field(std::string& out, const char* name, const std::string& value) {
  if (value.empty()) return;
  out += out.size() > 1 ? ",\"" : "\"";
  out += name;
  out += "\":\"";
  AppendJsonEscaped(out, value);
  out += '"';
}

void Field(std::string& out, const char* name, int64_t value) {
  out += out.size() > 1 ? ",\"" : "\"";
  out += name;
  out += "\":";
  out += std::to_string(value);
}

std::string Cut(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // whole UTF-8 chars
  return s.substr(0, n) + "...";
}

std::string Str(const rapidjson::Value& v, const char* name) {
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsString() ? it->value.GetString() : std::string();
}

int64_t Int(const rapidjson::Value& v, const char* name) {
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsInt64() ? it->value.GetInt64() : 0;
}

// What the worker pool does with the items of a result (worker.h, SyncResult::Kind).
std::string OutcomeName(const SyncResult& r) {
  switch (r.kind) {
    case SyncResult::Kind::kDone:
      return "done";
    case SyncResult::Kind::kRetry:
      return r.count_attempt ? "retry" : "waiting";
    case SyncResult::Kind::kDeadLetter:
      return "dead_letter";
    case SyncResult::Kind::kPause:
      return "paused";
    case SyncResult::Kind::kHold:
      return "held";
  }
  return "done";
}

}  // namespace

std::string OutcomeToJson(const OutcomeRecord& r) {
  std::string out = "{";
  Field(out, "at_ms", r.at_ms);
  Field(out, "trace_id", r.trace_id);
  Field(out, "entry_id", r.entry_id);
  Field(out, "event_type", r.event_type);
  Field(out, "occurred_at", r.occurred_at);
  Field(out, "attempt", r.attempt);
  Field(out, "outcome", r.outcome);
  Field(out, "action", r.action);
  Field(out, "result", r.result);
  if (r.http_status != 0) Field(out, "http_status", r.http_status);
  Field(out, "reason", Cut(r.reason, kMaxReason));
  Field(out, "jumpcloud_id", r.jumpcloud_id);
  Field(out, "request", Cut(r.request, kMaxRequest));
  out += '}';
  return out;
}

Result<OutcomeRecord> OutcomeFromJson(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  if (d.HasParseError() || !d.IsObject()) {
    return Error::Invalid("a history entry is not a JSON object");
  }
  OutcomeRecord r;
  r.at_ms = Int(d, "at_ms");
  r.trace_id = Str(d, "trace_id");
  r.entry_id = Str(d, "entry_id");
  r.event_type = Str(d, "event_type");
  r.occurred_at = Str(d, "occurred_at");
  r.attempt = static_cast<int>(Int(d, "attempt"));
  r.outcome = Str(d, "outcome");
  r.action = Str(d, "action");
  r.result = Str(d, "result");
  r.http_status = static_cast<int>(Int(d, "http_status"));
  r.reason = Str(d, "reason");
  r.jumpcloud_id = Str(d, "jumpcloud_id");
  r.request = Str(d, "request");
  return r;
}

std::string HistoryKey(const std::string& key_prefix, const std::string& profile,
                       const std::string& tenant, const std::string& employee) {
  return redis::keys::workers::History(key_prefix, ScopeOf(profile, tenant), employee);
}

std::vector<OutcomeRecord> OutcomesOf(const EmployeeWork& work, const SyncResult& result,
                                      int64_t now_ms) {
  std::set<size_t> deferred;
  for (const auto& [index, when] : result.deferred) deferred.insert(index);
  for (size_t applied : result.rechecks) deferred.erase(applied);  // applied now, recorded so
  std::string request = result.last_request.substr(0, result.last_request.find('\n'));
  std::vector<OutcomeRecord> out;
  for (size_t i = 0; i < work.items.size(); ++i) {
    const queue::Item& item = work.items[i];
    OutcomeRecord r;
    r.at_ms = now_ms;
    r.trace_id = item.trace_id;
    r.entry_id = item.entry_id;
    r.event_type = item.event_type;
    r.occurred_at = item.occurred_at;
    r.attempt = item.attempts + 1;
    if (deferred.count(i) != 0) {
      r.outcome = "deferred";
      r.result = "deferred";
      for (const auto& [index, when] : result.deferred) {
        if (index == i)
          r.reason = "deferred until its effective date (" + std::to_string(when) + " ms)";
      }
    } else {
      r.outcome = OutcomeName(result);
      r.action = result.action;
      r.result = result.result;
      r.http_status = result.http_status;
      r.reason = result.reason;
      r.jumpcloud_id = result.jumpcloud_id;
      r.request = request;
      for (const auto& [index, when] : result.deferred) {
        if (index == i) {
          r.reason += (r.reason.empty() ? "" : "; ") + std::string("planned again at ") +
                      std::to_string(when) + " ms (fetch.recheck_at)";
        }
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

History::History(redis::Pool& pool, std::string key_prefix, config::HistoryOptions options)
    : pool_(pool), prefix_(std::move(key_prefix)), options_(options) {}

Status History::Append(const std::vector<Write>& writes) {
  if (options_.max_entries <= 0 || writes.empty()) return {};
  std::vector<std::vector<std::string>> cmds;
  cmds.reserve(writes.size() * 3);
  const std::string keep = std::to_string(options_.max_entries - 1);
  const std::string ttl = std::to_string(options_.max_age_days * 86400);
  for (const Write& w : writes) {
    if (w.records.empty()) continue;
    std::vector<std::string> push = {"LPUSH", w.key};
    for (const OutcomeRecord& r : w.records) push.push_back(OutcomeToJson(r));
    cmds.push_back(std::move(push));
    cmds.push_back({"LTRIM", w.key, "0", keep});
    cmds.push_back({"EXPIRE", w.key, ttl});
  }
  if (cmds.empty()) return {};
  auto r = pool_.Acquire()->Commands(cmds);
  if (!r) return r.error();
  for (const auto& one : *r) {
    if (!one) return one.error();
  }
  return {};
}

Result<std::vector<OutcomeRecord>> History::Read(const std::string& profile,
                                                 const std::string& tenant,
                                                 const std::string& employee, int max,
                                                 int64_t now_ms) {
  std::vector<OutcomeRecord> out;
  if (max <= 0) return out;
  auto r = pool_.Acquire()->Command(
      {"LRANGE", HistoryKey(prefix_, profile, tenant, employee), "0", std::to_string(max - 1)});
  if (!r) return r.error();
  const int64_t oldest = now_ms - options_.max_age_days * 86400 * 1000;
  for (const auto& e : r->elements()) {
    auto rec = OutcomeFromJson(e.text());
    if (!rec || rec->at_ms < oldest) continue;
    out.push_back(std::move(*rec));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

namespace {

class RecordingSyncer final : public Syncer {
 public:
  RecordingSyncer(Syncer& inner, History& history, const Clock& clock)
      : inner_(inner), history_(history), clock_(clock) {}

  SyncResult Sync(int thread, const EmployeeWork& work) override {
    SyncResult result = inner_.Sync(thread, work);
    if (history_.options().max_entries > 0 && !work.items.empty()) {
      History::Write w;
      w.key = HistoryKey(history_.key_prefix(), work.profile, work.tenant, work.employee_key);
      w.records = OutcomesOf(work, result, clock_.NowMs());
      std::lock_guard lock(mu_);
      pending_[thread].push_back(std::move(w));
    }
    return result;
  }

  Status Probe(int thread) override { return inner_.Probe(thread); }

  // The worker pool writes them with the pass's acknowledgements (one script per pass).
  queue::CappedLists TakeRecords(int thread) override {
    queue::CappedLists lists;
    std::vector<History::Write> writes;
    {
      std::lock_guard lock(mu_);
      auto it = pending_.find(thread);
      if (it != pending_.end()) writes.swap(it->second);
    }
    const config::HistoryOptions& options = history_.options();
    if (writes.empty() || options.max_entries <= 0) return lists;
    lists.max_entries = options.max_entries;
    lists.ttl_s = options.max_age_days * 86400;
    lists.pushes.reserve(writes.size());
    for (History::Write& w : writes) {
      if (w.records.empty()) continue;
      queue::CappedLists::Push push;
      push.key = std::move(w.key);
      // Only the newest max_entries would survive the trim.
      const size_t max = static_cast<size_t>(options.max_entries);
      const size_t from = w.records.size() > max ? w.records.size() - max : 0;
      for (size_t i = from; i < w.records.size(); ++i) {
        push.entries.push_back(OutcomeToJson(w.records[i]));
      }
      lists.pushes.push_back(std::move(push));
    }
    return lists;
  }

  Status EndPass(int thread) override {
    Status s = inner_.EndPass(thread);
    std::vector<History::Write> writes;
    {
      std::lock_guard lock(mu_);
      auto it = pending_.find(thread);
      if (it != pending_.end()) writes.swap(it->second);
    }
    if (!writes.empty()) {
      Status h = history_.Append(writes);
      if (!h.ok()) {
        log::Warn(
            "cannot record outcomes in the employee history (`scimsyncd employee`)",
            {{"employees", static_cast<int64_t>(writes.size())}, {"detail", h.error().message}});
      }
    }
    return s;
  }

 private:
  Syncer& inner_;
  History& history_;
  const Clock& clock_;
  std::mutex mu_;
  std::map<int, std::vector<History::Write>> pending_;  // per worker thread, this pass
};

}  // namespace

std::unique_ptr<Syncer> NewRecordingSyncer(Syncer& inner, History& history, const Clock& clock) {
  return std::make_unique<RecordingSyncer>(inner, history, clock);
}

}  // namespace scimsync::workers
