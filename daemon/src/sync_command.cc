// `scimsyncd sync`: provision one employee on demand (employee.h has the contract).
#include <time.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "employee_args.h"
#include "scimsync/clock.h"
#include "scimsync/connectors/profile.h"
#include "scimsync/daemon/admin.h"
#include "scimsync/daemon/app.h"
#include "scimsync/daemon/employee.h"
#include "scimsync/daemon/ingest.h"
#include "scimsync/daemon/reconcile.h"
#include "scimsync/log.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/client.h"
#include "scimsync/scim/converger.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/protocol.h"
#include "scimsync/scim/rate_limiter.h"
#include "scimsync/scim/transport.h"
#include "scimsync/workers/history.h"
#include "scimsync/workers/sync.h"
#include "scimsync/workers/worker.h"

namespace scimsync::daemon {

using workers::History;
using workers::OutcomeRecord;
using workers::ScopeOf;

namespace {

constexpr char kSyncUsage[] =
    "usage: scimsyncd sync --config FILE --profile NAME [--tenant T] [--dry-run] [--timeout S] "
    "EMPLOYEE_ID\n";

// Masks every configured secret that resolves here (defence in depth: what is printed was
// redacted when recorded).
class Masker {
 public:
  explicit Masker(const config::Config& cfg) : secrets_(config::ResolvedSecrets(cfg)) {}
  std::string operator()(std::string text) const {
    return config::MaskSecrets(std::move(text), secrets_);
  }

 private:
  std::vector<std::string> secrets_;
};

// Reads go to JumpCloud; writes are recorded and answered as if they had succeeded, so the
// converger plans against the real user and nothing changes.
class ReadOnlyTransport final : public scim::Transport {
 public:
  explicit ReadOnlyTransport(scim::Transport& inner) : inner_(inner) {}
  Result<scim::HttpResponse> Send(const scim::HttpRequest& request, int64_t timeout_ms) override {
    if (request.method == "GET") return inner_.Send(request, timeout_ms);
    writes.push_back(request);
    scim::HttpResponse r;
    if (request.method == "POST") {
      r.status = 201;
      r.body = request.body;
      if (!r.body.empty() && r.body[0] == '{') r.body.insert(1, "\"id\":\"dry-run\",");
    } else if (request.method == "DELETE") {
      r.status = 204;
    } else {
      r.status = 200;
    }
    return r;
  }
  std::string Describe(const scim::HttpRequest& request) const override {
    return inner_.Describe(request);
  }
  bool dry_run() const override { return true; }

  std::vector<scim::HttpRequest> writes;

 private:
  scim::Transport& inner_;
};

std::string IsoTime(int64_t ms) {
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return stamp;
}

std::string Step(const OutcomeRecord& r) {
  std::string s = IsoTime(r.at_ms) + "  attempt " + std::to_string(r.attempt) + "  " +
                  (r.action.empty() ? "-" : r.action) + "  " + r.result;
  if (r.outcome != "done" && r.outcome != r.result) s += " (" + r.outcome + ")";
  if (r.http_status != 0) s += "  HTTP " + std::to_string(r.http_status);
  if (!r.jumpcloud_id.empty()) s += "  JumpCloud user " + r.jumpcloud_id;
  if (!r.request.empty()) s += "\n    request: " + r.request;
  if (!r.reason.empty()) s += "\n    reason: " + r.reason;
  return s;
}

}  // namespace

int RunSyncCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  std::string file = "/etc/scimsync/scimsync.yaml";
  bool dry_run = false;
  int64_t timeout_s = 60;
  auto own =
      [&](const std::string& a,
          const std::function<std::optional<std::string>()>& value) -> std::optional<std::string> {
    if (a == "--config" || a == "-c") {
      auto v = value();
      if (!v) return a + " needs a file path";
      file = *v;
    } else if (a.rfind("--config=", 0) == 0) {
      file = a.substr(9);
    } else if (a == "--dry-run") {
      dry_run = true;
    } else if (a == "--timeout") {
      auto t = value();
      if (!t) return "--timeout needs seconds";
      char* end = nullptr;
      timeout_s = std::strtoll(t->c_str(), &end, 10);
      if (end == t->c_str() || *end != '\0' || timeout_s < 1 || timeout_s > 3600) {
        return "--timeout must be 1 to 3600 seconds (got '" + *t + "')";
      }
    } else {
      return std::nullopt;
    }
    return "";
  };
  EmployeeArgs who;
  if (std::string problem = ParseEmployeeArgs(args, own, &who); !problem.empty()) {
    err << "scimsyncd sync: " << problem << "\n" << kSyncUsage;
    return kExitUsage;
  }
  const std::string& name = who.profile;
  const std::string& tenant = who.tenant;
  const std::string& employee = who.employee;

  config::Config cfg;
  ProfileMap profiles;
  if (!LoadConfigAndProfiles(file, &cfg, &profiles, /*check_secrets=*/false, err)) {
    return kExitConfig;
  }
  log::SetLevel(log::Level::kWarn);
  auto it = profiles.find(name);
  if (it == profiles.end()) {
    err << "scimsyncd sync: no profile named '" << name << "' in " << file << "\n";
    return kExitUsage;
  }
  const connectors::Profile& profile = *it->second;
  const config::ProfileConfig* entry = config::FindProfile(cfg, name);
  // The link table is keyed by the externalId that anchors the employee in JumpCloud: scoped
  // ("hr2:1001") when several HR sources share the organisation, as the workers key it.
  const std::string anchor = config::ScopedExternalId(cfg, *entry, tenant, employee);
  const Masker mask(cfg);
  const Clock& clock = SystemClock::Instance();
  AdminRedis db;
  if (int rc = OpenAdminRedis(cfg, 4, /*ping=*/true, "scimsyncd sync: redis password", err, &db);
      rc != kExitOk) {
    return rc;
  }
  redis::Pool& pool = *db.pool;
  History history(pool, cfg.redis.key_prefix, cfg.workers.history);
  queue::Queue* q = db.queue.get();

  // The item: the current record is fetched by the worker (level-triggered profiles), or the
  // last record the employee's HR source sent is sent again (profiles whose payload carries it).
  queue::Item item;
  if (profile.payload_carries_record()) {
    // The newest item the workers applied for the employee (the one a repair re-applies).
    auto last =
        q->LastApplied(queue::PartitionOf(name, employee, q->partitions()), name, tenant, employee);
    if (!last && last.error().kind != ErrorKind::kNotFound) {
      err << "scimsyncd: Redis: " << last.error().message << "\n";
      return kExitUnavailable;
    }
    if (!last) {
      err << "scimsyncd sync: profile '" << name
          << "' gets the record in the webhook, and no record of employee " << employee
          << " is kept (none was applied yet); have the HR system send an event for them\n";
      return kExitDataErr;
    }
    item.event_type = last->event_type;
    item.occurred_at = last->occurred_at;
    item.payload = last->payload;
    out << "record: the last one received (" << item.event_type
        << (item.occurred_at.empty() ? "" : ", " + item.occurred_at) << ")\n";
  } else {
    connectors::ListedEmployee listed;
    listed.tenant = tenant;
    listed.employee_key = employee;
    connectors::WorkItem w = profile.ReconcileItem(listed);
    item.event_type = w.event_type;
    item.occurred_at = w.occurred_at;
    item.payload = w.payload;
    out << "record: fetched from the HR system's API when the sync runs\n";
  }
  item.profile = name;
  item.tenant = tenant;
  item.employee_key = employee;
  item.trace_id = "sync-" + NewTraceId();  // on-demand syncs stand out in logs and history
  item.dedup_id = item.trace_id;
  item.received_at_ms = clock.NowMs();

  // Plans locally what a worker would do: fetch (or the last record), map, validate, read the
  // JumpCloud user, and the writes it would send -- with writes recorded, never sent.
  auto plan_locally = [&]() -> int {
    auto api_key = config::ResolveSecret(cfg.target.api_key);
    if (!api_key.ok()) {
      err << "scimsyncd sync: reading the JumpCloud user needs the API key: "
          << api_key.error().message << "\n";
      return kExitConfig;
    }
    connectors::HttpFetcherOptions fetcher_options;
    fetcher_options.ca_file = cfg.target.ca_file;
    auto fetcher = connectors::NewHttpFetcher(fetcher_options);
    connectors::WorkItem w;
    w.tenant = tenant;
    w.employee_key = employee;
    w.event_type = item.event_type;
    w.occurred_at = item.occurred_at;
    w.payload = item.payload;
    auto plan = profile.PlanItem(w, *fetcher, clock.NowMs() / 1000);
    if (!plan) {
      err << "scimsyncd sync: planning failed: " << mask(plan.error().message) << "\n";
      return plan.error().kind == ErrorKind::kTransient ? kExitUnavailable : kExitDataErr;
    }
    out << "plan: " << scim::ActionName(plan->action)
        << (plan->reason.empty() ? "" : " (" + plan->reason + ")") << "\n";
    if (plan->user)
      out << "mapped user: " << mask(scim::RedactBody(scim::CreateBody(*plan->user))) << "\n";
    if (!plan->problems.empty()) {
      out << "validation: the mapped user breaks JumpCloud's rules:";
      for (const auto& p : plan->problems) out << " " << p.ToString() << ";";
      out << "\nnothing would be sent (the item would be a dead letter)\n";
      return kExitDataErr;
    }
    if (plan->action == connectors::Action::kIgnore) {
      out << "nothing to do: the profile ignores this event\n";
      return kExitOk;
    }
    auto http = scim::NewHttpTransport(scim::TransportOptions::From(cfg.target, *api_key));
    if (!http.ok()) {
      err << "scimsyncd sync: " << http.error().message << "\n";
      return kExitConfig;
    }
    ReadOnlyTransport transport(**http);
    auto redis_links = scim::NewRedisLinkStore(pool, cfg.redis.key_prefix);
    scim::MemoryLinkStore links;  // the dry run may "link"; Redis's table stays as it is
    auto link = redis_links->Get(ScopeOf(name, tenant), anchor);
    if (link.ok() && *link) (void)links.Put(ScopeOf(name, tenant), anchor, **link);
    auto limiter = scim::NewRedisRateLimiter(pool, scim::RateLimitKey(cfg.redis.key_prefix),
                                             scim::RateLimitOptions::From(cfg.target), clock);
    scim::SystemRandom random;
    scim::ConvergerDeps deps;
    deps.transport = &transport;
    deps.limiter = limiter.get();
    deps.links = &links;
    deps.clock = &clock;
    deps.random = &random;
    scim::Converger converger(scim::ConvergerOptions::From(cfg.target, cfg.workers.retry), deps);
    scim::Job job;
    job.scope = ScopeOf(name, tenant);
    job.trace_id = item.trace_id;
    job.action = plan->action;
    if (plan->user) job.desired = *plan->user;
    if (job.desired.external_id.empty()) job.desired.external_id = employee;
    job.desired.external_id =
        config::ScopedExternalId(cfg, *entry, tenant, job.desired.external_id);
    job.follow_user_name = entry->follow_user_name;
    job.other_scopes = cfg.multi_scope;
    scim::Outcome o = converger.Converge(job);
    out << "JumpCloud user: " << (o.jumpcloud_id.empty() ? "none" : o.jumpcloud_id) << "\n";
    if (transport.writes.empty()) {
      out << "requests " << (dry_run ? "it would send" : "expected")
          << ": none (JumpCloud already matches)\n";
    } else {
      out << "requests " << (dry_run ? "it would send" : "expected") << ":\n";
      for (const auto& r : transport.writes) {
        out << "  " << mask(transport.Describe(r)) << "\n";
        if (!r.body.empty()) out << "    " << mask(scim::RedactBody(r.body)) << "\n";
      }
    }
    if (o.decision != scim::Decision::kDone) {
      out << "result: " << scim::DecisionName(o.decision) << ": " << mask(o.reason) << "\n";
      return o.decision == scim::Decision::kGiveUp ? kExitDataErr : kExitUnavailable;
    }
    return kExitOk;
  };
  if (dry_run) {
    int rc = plan_locally();
    if (rc == kExitOk) out << "dry run: nothing was sent or enqueued\n";
    return rc;
  }
  if (int rc = plan_locally(); rc != kExitOk) {
    out << "(the plan above is only a preview; the worker decides when it runs)\n";
  }

  // A repair: the worker reads the user instead of trusting the link's snapshot of what was
  // last applied (an admin may have edited it since).
  if (Status dropped = scim::NewRedisLinkStore(pool, cfg.redis.key_prefix)
                           ->DropSnapshot(ScopeOf(name, tenant), anchor);
      !dropped.ok()) {
    err << "scimsyncd: Redis: " << dropped.error().message << "\n";
    return kExitUnavailable;
  }
  auto enq = q->EnqueueBatch({item}, 0);
  if (!enq.ok()) {
    err << "scimsyncd: Redis: " << enq.error().message << "\n";
    return kExitUnavailable;
  }
  out << "enqueued: trace " << item.trace_id << ", partition "
      << queue::PartitionOf(name, employee, cfg.redis.partitions)
      << "; waiting for a worker (up to " << timeout_s << "s)\n";
  out.flush();

  const int64_t deadline = clock.NowMs() + timeout_s * 1000;
  std::set<std::string> shown;
  while (clock.NowMs() < deadline) {
    auto recs = history.Read(name, tenant, employee, 50, clock.NowMs());
    if (recs.ok()) {
      for (const auto& r : *recs) {
        if (r.trace_id != item.trace_id) continue;
        const std::string line = Step(r);
        if (!shown.insert(line).second) continue;
        out << mask(line) << "\n";
        out.flush();
        if (r.outcome == "done") return kExitOk;
        if (r.outcome == "dead_letter") {
          out << "dead-lettered: `scimsyncd employee --profile " << name << " " << employee
              << "` shows it and the replay command\n";
          return kExitDataErr;
        }
        if (r.outcome == "held") {
          out << "held by the mass-suspension guard: check `scimsyncd status`, then `scimsyncd "
                 "guard release`\n";
          return kExitDataErr;
        }
        if (r.outcome == "paused") return kExitUnavailable;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  out << "timed out: the item is still queued and will be worked on; `scimsyncd employee "
         "--profile "
      << name << " " << employee << "` shows where it is\n";
  return kExitTempFail;
}

}  // namespace scimsync::daemon
