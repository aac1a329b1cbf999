#include "scimsync/daemon/employee.h"

#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <optional>
#include <sstream>

#include "employee_args.h"
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

std::string Json(const std::string& s) {
  std::string out = "\"";
  AppendJsonEscaped(out, s);
  return out + "\"";
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

std::string WaitingJson(const Waiting& w) {
  std::ostringstream o;
  o << "{\"where\":" << Json(w.where) << ",\"entry_id\":" << Json(w.item.entry_id)
    << ",\"event_type\":" << Json(w.item.event_type) << ",\"trace_id\":" << Json(w.item.trace_id)
    << ",\"received_at_ms\":" << w.item.received_at_ms << ",\"attempts\":" << w.item.attempts
    << ",\"due_ms\":" << w.due_ms << ",\"last_error\":" << Json(w.item.last_error) << "}";
  return o.str();
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
    o << "{\"profile\":" << Json(a.profile) << ",\"tenant\":" << Json(a.tenant)
      << ",\"employee\":" << Json(a.employee) << ",\"partition\":" << partition << ",\"link\":";
    if (*link) {
      const scim::LinkStore::Link& l = **link;
      o << "{\"jumpcloud_id\":" << Json(l.jumpcloud_id);
      if (!l.snapshot.empty()) {
        o << ",\"user_name\":" << Json(user_name) << ",\"applied_at_ms\":" << l.applied_ms
          << ",\"applied\":" << l.snapshot;
      }
      o << "}";
    } else {
      o << "null";
    }
    o << ",\"waiting\":[";
    for (size_t i = 0; i < waiting.size(); ++i) o << (i ? "," : "") << WaitingJson(waiting[i]);
    o << "],\"stream_scan_cut\":" << (scan_cut ? "true" : "false") << ",\"dead_letters\":[";
    for (size_t i = 0; i < dead.size(); ++i) {
      const auto& e = dead[i];
      o << (i ? "," : "") << "{\"id\":" << Json(e.id)
        << ",\"event_type\":" << Json(e.item.event_type)
        << ",\"trace_id\":" << Json(e.item.trace_id) << ",\"error_kind\":" << Json(e.error_kind)
        << ",\"reason\":" << Json(e.reason) << ",\"dead_at_ms\":" << e.dead_at_ms
        << ",\"last_request\":" << Json(e.last_request)
        << ",\"last_response\":" << Json(e.last_response)
        << ",\"replay\":" << Json("scimsyncd dlq replay " + e.id + config_flag) << "}";
    }
    o << "],\"history\":[";
    for (size_t i = 0; i < outcomes->size(); ++i) {
      o << (i ? "," : "") << OutcomeToJson((*outcomes)[i]);
    }
    o << "]}\n";
    out << config::MaskSecrets(o.str(), config::ResolvedSecrets(cfg));
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
