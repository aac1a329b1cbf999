#include "scimsync/daemon/employee.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <optional>
#include <sstream>

#include "employee_args.h"
#include "json_out.h"
#include "scimsync/clock.h"
#include "scimsync/daemon/admin.h"
#include "scimsync/daemon/app.h"
#include "scimsync/log.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/client.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/protocol.h"
#include "scimsync/strings.h"
#include "scimsync/workers/history.h"
#include "scimsync/workers/worker.h"

namespace scimsync::daemon {

using workers::History;
using workers::OutcomeToJson;
using workers::ScopeOf;

namespace {

constexpr int kDefaultLast = 20;
// A partition's stream is scanned this far at most for the employee's items.
constexpr int kMaxStreamScan = 100000;

using json_out::Int;
using json_out::JsonWriter;
using json_out::Str;

// JSON that is already JSON (a stored snapshot, a history entry), checked by the writer's caller.
void Raw(JsonWriter& w, const std::string& json) {
  w.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

std::string IsoTime(int64_t ms) {
  if (ms <= 0) return "-";
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return stamp;
}

// What a retry-set item is waiting for, from the reason the worker parked it with
// (workers/src/worker_pool.cc): a failure to retry, an effective date, the guard, a pause, an
// earlier item.
std::string WaitKind(const queue::Item& item) {
  const std::string& e = item.last_error;
  if (e.rfind("deferred", 0) == 0) return "deferred";
  if (e.rfind("held", 0) == 0) return "held";
  if (e.rfind("paused", 0) == 0 || e == "shutting down") return "paused";
  if (e.rfind("waiting behind", 0) == 0) return "waiting";
  return "retry";
}

struct Waiting {
  std::string where;  // stream, retry, deferred, held, paused, waiting
  queue::Item item;
  int64_t due_ms = 0;
};

struct Args {
  std::string profile, tenant, employee;
  bool json = false;
  int last = kDefaultLast;
};

int Usage(std::ostream& err, const std::string& why) {
  err << "scimsyncd employee: " << why
      << "\nusage: scimsyncd employee --config FILE --profile NAME [--tenant T] [--last N] "
         "[--json] EMPLOYEE_ID\n";
  return kExitUsage;
}

void WriteWaiting(JsonWriter& w, const Waiting& item) {
  w.StartObject();
  Str(w, "where", item.where);
  Str(w, "entry_id", item.item.entry_id);
  Str(w, "event_type", item.item.event_type);
  Str(w, "trace_id", item.item.trace_id);
  Int(w, "received_at_ms", item.item.received_at_ms);
  Int(w, "attempts", item.item.attempts);
  Int(w, "due_ms", item.due_ms);
  Str(w, "last_error", item.item.last_error);
  w.EndObject();
}

}  // namespace

int RunEmployeeCommand(const config::Config& cfg, const std::string& config_file,
                       const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Args a;
  EmployeeArgs who;
  auto own =
      [&a](const std::string& option,
           const std::function<std::optional<std::string>()>& value) -> std::optional<std::string> {
    if (option == "--json") {
      a.json = true;
      return "";
    }
    if (option != "--last") return std::nullopt;
    auto n = value();
    if (!n) return "--last needs a number";
    char* end = nullptr;
    long v = std::strtol(n->c_str(), &end, 10);
    if (end == n->c_str() || *end != '\0' || v < 0 || v > 1000) {
      return "--last must be a number from 0 to 1000 (got '" + *n + "')";
    }
    a.last = static_cast<int>(v);
    return "";
  };
  if (std::string problem = ParseEmployeeArgs(args, own, &who); !problem.empty()) {
    return Usage(err, problem);
  }
  a.profile = who.profile;
  a.tenant = who.tenant;
  a.employee = who.employee;
  const config::ProfileConfig* entry = config::FindProfile(cfg, a.profile);
  if (entry == nullptr) {
    return Usage(err, "no profile named '" + a.profile + "' in " + config_file +
                          " (configured: " + config::ProfileNames(cfg) + ")");
  }

  AdminRedis db;
  if (int rc = OpenAdminRedis(cfg, 2, /*ping=*/true, "scimsyncd", err, &db); rc != kExitOk) {
    return rc;
  }
  const int64_t now = SystemClock::Instance().NowMs();
  redis::Pool& pool = *db.pool;
  queue::Queue* q = db.queue.get();

  // The link.
  auto links = scim::NewRedisLinkStore(pool, cfg.redis.key_prefix);
  // Keyed by the externalId that anchors the employee: scoped with several HR sources.
  auto link = links->Read(ScopeOf(a.profile, a.tenant),
                          config::ScopedExternalId(cfg, *entry, a.tenant, a.employee));
  if (!link) return RedisDown(err, link.error());
  // The managed attributes last applied (never a password: the snapshot does not keep one).
  std::string user_name;
  if (*link && !(*link)->snapshot.empty()) {
    auto applied = scim::ParseSnapshot((*link)->snapshot);
    if (applied.ok()) user_name = applied->user_name;
  }

  // What is waiting: the employee's partition's stream and retry set.
  const int partition = queue::PartitionOf(a.profile, a.employee, cfg.redis.partitions);
  auto mine = [&](const queue::Item& item) {
    return item.profile == a.profile && item.tenant == a.tenant && item.employee_key == a.employee;
  };
  std::vector<Waiting> waiting;
  bool scan_cut = false;
  {
    std::string after;
    int scanned = 0;
    while (true) {
      auto page = q->ListStream(partition, after, 1000);
      if (!page) return RedisDown(err, page.error());
      for (auto& item : *page) {
        after = item.entry_id;
        if (mine(item)) waiting.push_back({"stream", item, 0});
      }
      scanned += static_cast<int>(page->size());
      if (page->size() < 1000) break;
      if (scanned >= kMaxStreamScan) {
        scan_cut = true;
        break;
      }
    }
  }
  auto retries = q->ListRetries(partition);
  if (!retries) return RedisDown(err, retries.error());
  for (auto& s : *retries) {
    if (mine(s.item)) waiting.push_back({WaitKind(s.item), s.item, s.due_ms});
  }

  // Dead letters.
  std::vector<queue::DeadLetterEntry> dead;
  {
    std::string after;
    while (true) {
      auto page = q->ListDeadLetters(after, 500);
      if (!page) return RedisDown(err, page.error());
      for (auto& e : *page) {
        after = e.id;
        if (mine(e.item)) dead.push_back(std::move(e));
      }
      if (page->size() < 500) break;
    }
  }

  History history(pool, cfg.redis.key_prefix, cfg.workers.history);
  auto outcomes = history.Read(a.profile, a.tenant, a.employee, a.last, now);
  if (!outcomes) return RedisDown(err, outcomes.error());

  const std::string config_flag = config_file.empty() ? "" : " --config " + config_file;
  std::ostringstream o;
  if (a.json) {
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    w.StartObject();
    Str(w, "profile", a.profile);
    Str(w, "tenant", a.tenant);
    Str(w, "employee", a.employee);
    Int(w, "partition", partition);
    w.Key("link");
    if (*link) {
      const scim::LinkStore::Link& l = **link;
      w.StartObject();
      Str(w, "jumpcloud_id", l.jumpcloud_id);
      if (!l.snapshot.empty()) {
        Str(w, "user_name", user_name);
        Int(w, "applied_at_ms", l.applied_ms);
        w.Key("applied");
        Raw(w, l.snapshot);
      }
      w.EndObject();
    } else {
      w.Null();
    }
    w.Key("waiting");
    w.StartArray();
    for (const auto& item : waiting) WriteWaiting(w, item);
    w.EndArray();
    w.Key("stream_scan_cut");
    w.Bool(scan_cut);
    w.Key("dead_letters");
    w.StartArray();
    for (const auto& e : dead) {
      w.StartObject();
      Str(w, "id", e.id);
      Str(w, "event_type", e.item.event_type);
      Str(w, "trace_id", e.item.trace_id);
      Str(w, "error_kind", e.error_kind);
      Str(w, "reason", e.reason);
      Int(w, "dead_at_ms", e.dead_at_ms);
      Str(w, "last_request", e.last_request);
      Str(w, "last_response", e.last_response);
      Str(w, "replay", "scimsyncd dlq replay " + e.id + config_flag);
      w.EndObject();
    }
    w.EndArray();
    w.Key("history");
    w.StartArray();
    for (const auto& outcome : *outcomes) Raw(w, OutcomeToJson(outcome));
    w.EndArray();
    w.EndObject();
    out << config::MaskSecrets(std::string(buf.GetString(), buf.GetSize()),
                               config::ResolvedSecrets(cfg))
        << '\n';
    return kExitOk;
  }

  o << "employee " << a.employee << " (profile " << ScopeOf(a.profile, a.tenant) << ", partition "
    << partition << ")\n";
  o << "JumpCloud user: ";
  if (!*link) {
    o << "not linked (scimsync has not created or found a user yet)\n";
  } else {
    o << (*link)->jumpcloud_id << " (linked)"
      << (user_name.empty() ? "" : ", userName " + user_name) << "\n";
    if (!(*link)->snapshot.empty()) {
      o << "last state applied at " << IsoTime((*link)->applied_ms) << ": " << (*link)->snapshot
        << "\n";
    } else {
      o << "last state applied: not kept (the next change reads the user from JumpCloud)\n";
    }
  }
  for (auto it = outcomes->rbegin(); it != outcomes->rend(); ++it) {
    if (it->outcome == "done" && it->result != "ignored" && it->result != "dropped") {
      o << "last applied: " << it->result << " (" << it->action << ") at " << IsoTime(it->at_ms)
        << ", trace " << it->trace_id << "\n";
      break;
    }
  }
  o << "\nwaiting: " << (waiting.empty() ? "nothing" : std::to_string(waiting.size())) << "\n";
  for (const auto& w : waiting) {
    o << "  " << w.where << "  " << w.item.entry_id << "  " << w.item.event_type << "  received "
      << IsoTime(w.item.received_at_ms) << "  trace " << w.item.trace_id;
    if (w.where == "retry") {
      o << "  attempt " << w.item.attempts << ", next try " << IsoTime(w.due_ms)
        << ", last error: " << w.item.last_error;
    } else if (w.where != "stream") {
      o << "  until " << IsoTime(w.due_ms) << ": " << w.item.last_error;
    }
    o << "\n";
  }
  if (scan_cut) {
    o << "  (only the first " << kMaxStreamScan << " entries of partition " << partition
      << " were looked at)\n";
  }
  o << "\ndead letters: " << (dead.empty() ? "none" : std::to_string(dead.size())) << "\n";
  for (const auto& e : dead) {
    o << "  " << e.id << "  " << e.item.event_type << "  " << e.error_kind << "  dead at "
      << IsoTime(e.dead_at_ms) << "  trace " << e.item.trace_id << "\n";
    o << "    reason: " << e.reason << "\n";
    if (!e.last_request.empty()) o << "    last request: " << e.last_request << "\n";
    if (!e.last_response.empty()) o << "    last response: " << e.last_response << "\n";
    o << "    replay once fixed: scimsyncd dlq replay " << e.id << config_flag << "\n";
  }
  o << "\nlast " << outcomes->size() << " outcomes (oldest first):\n";
  if (outcomes->empty()) {
    o << "  none recorded"
      << (cfg.workers.history.max_entries == 0 ? " (workers.history.max_entries is 0)" : "")
      << "\n";
  }
  for (const auto& r : *outcomes) {
    o << "  " << IsoTime(r.at_ms) << "  " << r.trace_id << "  " << r.event_type << "  "
      << (r.action.empty() ? "-" : r.action) << "  " << r.result;
    if (r.outcome != "done" && r.outcome != r.result) o << " (" << r.outcome << ")";
    if (r.http_status != 0) o << "  HTTP " << r.http_status;
    if (!r.reason.empty()) o << "  " << r.reason;
    o << "\n";
  }
  out << config::MaskSecrets(o.str(), config::ResolvedSecrets(cfg));
  return kExitOk;
}

}  // namespace scimsync::daemon
