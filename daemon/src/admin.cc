#include "scimsync/daemon/admin.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdlib>
#include <iomanip>
#include <sstream>

#include "scimsync/clock.h"
#include "scimsync/daemon/app.h"
#include "scimsync/daemon/reconcile.h"
#include "scimsync/log.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/client.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/lister.h"
#include "scimsync/scim/protocol.h"
#include "scimsync/scim/rate_limiter.h"
#include "scimsync/scim/transport.h"
#include "scimsync/strings.h"
#include "scimsync/workers/coordination.h"

namespace scimsync::daemon {

using workers::ReadWorkersState;
using workers::SuspensionGuard;
using workers::WorkersState;

namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// What Redis holds came from outside (payloads, SCIM answers): scrubbed to UTF-8, since the
// writer copies bytes as they are and the output must parse.
void Str(JsonWriter& w, const char* key, const std::string& value) {
  w.Key(key);
  const std::string text = ScrubUtf8(value);
  w.String(text.c_str(), static_cast<rapidjson::SizeType>(text.size()));
}

void Int(JsonWriter& w, const char* key, int64_t value) {
  w.Key(key);
  w.Int64(value);
}

void WriteItem(JsonWriter& w, const queue::Item& item) {
  w.StartObject();
  Str(w, "profile", item.profile);
  Str(w, "tenant", item.tenant);
  Str(w, "employee", item.employee_key);
  Str(w, "dedup_id", item.dedup_id);
  Str(w, "event_type", item.event_type);
  Str(w, "occurred_at", item.occurred_at);
  Str(w, "trace_id", item.trace_id);
  Int(w, "attempts", item.attempts);
  Int(w, "received_at_ms", item.received_at_ms);
  Str(w, "payload", item.payload);
  w.EndObject();
}

}  // namespace

int RedisDown(std::ostream& err, const Error& e) {
  err << "scimsyncd: Redis is not reachable: " << e.message
      << " (check redis.url, or redis.sentinels and redis.master_name, and that Redis runs)\n";
  return kExitUnavailable;
}

int OpenAdminRedis(const config::Config& cfg, int pool_size, bool ping, const std::string& context,
                   std::ostream& err, AdminRedis* out) {
  auto password = RedisPassword(cfg);
  if (!password) {
    err << context << ": " << password.error().message << "\n";
    return kExitConfig;
  }
  out->pool = std::make_unique<redis::Pool>(cfg.redis, *password, pool_size);
  out->queue = queue::NewRedisQueue(cfg.redis, *password, SystemClock::Instance());
  if (ping) {
    if (Status s = out->queue->Ping(); !s.ok()) return RedisDown(err, s.error());
  }
  return kExitOk;
}

Result<std::string> RedisPassword(const config::Config& cfg) {
  if (cfg.redis.password.empty()) return std::string();
  auto pw = config::ResolveSecret(cfg.redis.password);
  if (pw.ok()) return pw;
  if (!cfg.redis.password.file.empty()) return pw.error();
  return std::string();  // an unset REDIS_PASSWORD means no AUTH
}

int RunStatusCommand(const config::Config& cfg, const std::vector<std::string>& args,
                     std::ostream& out, std::ostream& err) {
  bool json = false;
  for (const auto& a : args) {
    if (a == "--json") {
      json = true;
    } else {
      err << "scimsyncd status: unexpected argument '" << a << "' (usage: status [--json])\n";
      return kExitUsage;
    }
  }
  AdminRedis db;
  if (int rc = OpenAdminRedis(cfg, 2, /*ping=*/true, "scimsyncd", err, &db); rc != kExitOk) {
    return rc;
  }
  redis::Pool& pool = *db.pool;
  queue::Queue* q = db.queue.get();
  const std::string& prefix = cfg.redis.key_prefix;
  const int64_t now = SystemClock::Instance().NowMs();
  // Instances heard from within the last 10 s: a lease's default length.
  auto workers = ReadWorkersState(pool, prefix, cfg.redis.partitions, now - 10000);
  if (!workers) return RedisDown(err, workers.error());

  struct Part {
    int64_t depth = 0, retries = 0, oldest_ms = 0;
  };
  std::vector<Part> parts(static_cast<size_t>(cfg.redis.partitions));
  int64_t total = 0, total_retries = 0, oldest = 0;
  for (int p = 0; p < cfg.redis.partitions; ++p) {
    Part& part = parts[static_cast<size_t>(p)];
    auto depth = q->Depth(p);
    if (!depth) return RedisDown(err, depth.error());
    auto retries = q->RetryDepth(p);
    if (!retries) return RedisDown(err, retries.error());
    auto since = q->OldestMs(p);
    if (!since) return RedisDown(err, since.error());
    part.depth = *depth;
    part.retries = *retries;
    if (*since > 0) part.oldest_ms = now - *since;
    total += part.depth;
    total_retries += part.retries;
    oldest = std::max(oldest, part.oldest_ms);
  }
  auto dead = q->DeadLetterCount();
  if (!dead) return RedisDown(err, dead.error());
  const std::string& pause_reason = workers->pause_reason;
  const std::vector<std::string>& instances = workers->instances;
  SuspensionGuard guard(pool, prefix, cfg.workers.guard, SystemClock::Instance());
  auto gs = guard.State();
  if (!gs) return RedisDown(err, gs.error());
  // The guard stays tripped until released, but it only holds someone while an item it held
  // still waits: once those resolved (the HRIS changed its mind, a later sync needed no
  // suspension), saying HOLDING would send the admin looking for nobody.
  int64_t held_items = 0;
  if (gs->tripped) {
    for (int p = 0; p < cfg.redis.partitions; ++p) {
      auto waiting = q->ListRetries(p);
      if (!waiting) return RedisDown(err, waiting.error());
      for (const auto& w : *waiting) {
        if (w.item.last_error == "held by the mass-suspension guard") ++held_items;
      }
    }
  }
  const bool holding = gs->tripped && held_items > 0;

  if (json) {
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    w.StartObject();
    Int(w, "queued", total);
    Int(w, "retries_waiting", total_retries);
    Int(w, "oldest_age_ms", oldest);
    Int(w, "dead_letters", *dead);
    w.Key("paused");
    w.Bool(!pause_reason.empty());
    Str(w, "pause_reason", pause_reason);
    w.Key("guard");
    w.StartObject();
    w.Key("tripped");
    w.Bool(gs->tripped);
    w.Key("holding");
    w.Bool(holding);
    Int(w, "held_items", held_items);
    Int(w, "recent_suspensions", gs->recent);
    Int(w, "limit", gs->limit);
    w.EndObject();
    w.Key("instances");
    w.StartArray();
    for (const auto& instance : instances) {
      const std::string text = ScrubUtf8(instance);
      w.String(text.c_str(), static_cast<rapidjson::SizeType>(text.size()));
    }
    w.EndArray();
    w.Key("partitions");
    w.StartArray();
    for (size_t p = 0; p < parts.size(); ++p) {
      const Part& part = parts[p];
      const WorkersState::Lease& lease = workers->leases[p];
      w.StartObject();
      Int(w, "partition", static_cast<int64_t>(p));
      Int(w, "depth", part.depth);
      Int(w, "oldest_age_ms", part.oldest_ms);
      Int(w, "retries", part.retries);
      Str(w, "owner", lease.owner);
      Int(w, "lease_ttl_ms", lease.ttl_ms);
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    out << buf.GetString() << "\n";
    return kExitOk;
  }
  out << "queued " << total << ", oldest " << oldest / 1000 << "s, retries waiting "
      << total_retries << ", dead letters " << *dead << "\n";
  out << "SCIM work: " << (pause_reason.empty() ? "running" : "PAUSED (" + pause_reason + ")")
      << "\n";
  out << "guard: "
      << (holding ? "HOLDING " + std::to_string(held_items) +
                        " suspensions (run `scimsyncd guard release` once checked)"
          : gs->tripped
              ? std::string("tripped, holding nobody now (the held items resolved); the next "
                            "suspension over the limit is held")
              : std::string("ok"))
      << ", " << gs->recent << " suspensions in the window (limit " << gs->limit << ")\n";
  out << "instances: ";
  if (!instances.empty()) {
    for (size_t i = 0; i < instances.size(); ++i) out << (i ? ", " : "") << instances[i];
  } else {
    out << "none running";
  }
  out << "\n\npartition  depth  oldest  retries  owner\n";
  for (size_t p = 0; p < parts.size(); ++p) {
    const Part& part = parts[p];
    const std::string& owner = workers->leases[p].owner;
    out << std::setw(9) << p << "  " << std::setw(5) << part.depth << "  " << std::setw(5)
        << part.oldest_ms / 1000 << "s  " << std::setw(7) << part.retries << "  "
        << (owner.empty() ? "-" : owner) << "\n";
  }
  return kExitOk;
}

int RunDlqCommand(const config::Config& cfg, const std::vector<std::string>& args,
                  std::ostream& out, std::ostream& err) {
  const char* usage = "usage: scimsyncd dlq list | show ID | replay ID | replay --all | drop ID";
  if (args.empty()) {
    err << usage << "\n";
    return kExitUsage;
  }
  AdminRedis db;
  if (int rc = OpenAdminRedis(cfg, 1, /*ping=*/true, "scimsyncd", err, &db); rc != kExitOk) {
    return rc;
  }
  queue::Queue* q = db.queue.get();
  const std::string& verb = args[0];
  auto not_found = [&](const Error& e) {
    err << "scimsyncd dlq: " << e.message << " (see `scimsyncd dlq list`)\n";
    return e.kind == ErrorKind::kTransient ? kExitUnavailable : kExitDataErr;
  };
  if (verb == "list" && args.size() == 1) {
    std::string after;
    int n = 0;
    while (true) {
      auto page = q->ListDeadLetters(after, 200);
      if (!page) return RedisDown(err, page.error());
      for (const auto& e : *page) {
        out << e.id << "  " << e.item.profile << "  " << e.item.employee_key << "  "
            << e.item.event_type << "  " << e.error_kind << "  " << e.reason << "\n";
        after = e.id;
        ++n;
      }
      if (page->size() < 200) break;
    }
    if (n == 0) out << "no dead letters\n";
    return kExitOk;
  }
  if (verb == "show" && args.size() == 2) {
    auto e = q->GetDeadLetter(args[1]);
    if (!e) return not_found(e.error());
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    w.StartObject();
    Str(w, "id", e->id);
    Str(w, "error_kind", e->error_kind);
    Str(w, "reason", e->reason);
    Int(w, "dead_at_ms", e->dead_at_ms);
    Str(w, "last_request", e->last_request);
    Str(w, "last_response", e->last_response);
    w.Key("item");
    WriteItem(w, e->item);
    w.EndObject();
    out << buf.GetString() << "\n";
    return kExitOk;
  }
  if (verb == "replay" && args.size() == 2 && args[1] == "--all") {
    // The dead letters as they are now, listed first: a replayed item that dies again while this
    // runs is a new dead letter (a new id) and is not replayed a second time, so each one is
    // replayed once and the count is true.
    std::vector<std::string> ids;
    std::string after;
    while (true) {
      auto page = q->ListDeadLetters(after, 200);
      if (!page) return RedisDown(err, page.error());
      for (const auto& e : *page) ids.push_back(e.id);
      if (page->size() < 200) break;
      after = page->back().id;
    }
    int replayed = 0;
    int gone = 0;
    for (const std::string& id : ids) {
      auto r = q->ReplayDeadLetter(id);
      if (r) {
        ++replayed;
      } else if (r.error().kind == ErrorKind::kNotFound) {
        ++gone;  // replayed or dropped by someone else meanwhile
      } else {
        err << "scimsyncd dlq: stopped after replaying " << replayed << " of " << ids.size()
            << " dead letters: " << r.error().message << " (run it again for the rest)\n";
        return r.error().kind == ErrorKind::kTransient ? kExitUnavailable : kExitDataErr;
      }
    }
    out << "replayed " << replayed << " dead letters into their partitions";
    if (gone > 0) out << " (" << gone << " were replayed or dropped by someone else meanwhile)";
    out << "\n";
    return kExitOk;
  }
  if (verb == "replay" && args.size() == 2) {
    auto r = q->ReplayDeadLetter(args[1]);
    if (!r) return not_found(r.error());
    out << "replayed " << args[1] << " (employee " << r->employee_key << ", partition "
        << r->partition << ")\n";
    return kExitOk;
  }
  if (verb == "drop" && args.size() == 2) {
    Status s = q->DropDeadLetter(args[1]);
    if (!s.ok()) return not_found(s.error());
    out << "dropped " << args[1] << "\n";
    return kExitOk;
  }
  err << usage << "\n";
  return kExitUsage;
}

int RunGuardCommand(const config::Config& cfg, const std::vector<std::string>& args,
                    std::ostream& out, std::ostream& err) {
  if (args.size() != 1 || args[0] != "release") {
    err << "usage: scimsyncd guard release\n";
    return kExitUsage;
  }
  AdminRedis db;
  if (int rc = OpenAdminRedis(cfg, 1, /*ping=*/false, "scimsyncd", err, &db); rc != kExitOk) {
    return rc;
  }
  redis::Pool& pool = *db.pool;
  SuspensionGuard guard(pool, cfg.redis.key_prefix, cfg.workers.guard, SystemClock::Instance());
  Status s = guard.Release();
  if (!s.ok()) return RedisDown(err, s.error());
  out << "guard released: held suspensions are applied within a minute; counting starts afresh\n";
  // Reconciliations held for their plan's suspensions (docs/reconcile.md) go in now, while the
  // guard is open, so they are not held a second time.
  auto held = ApplyHeldReconciliations(pool, *db.queue, cfg.redis.key_prefix, out);
  if (!held) return RedisDown(err, held.error());
  return kExitOk;
}

int RunMigrateScopeCommand(const config::Config& cfg, const std::vector<std::string>& args,
                           std::ostream& out, std::ostream& err) {
  const char* usage =
      "usage: scimsyncd migrate-scope --profile NAME [--tenant TENANT] [--include-unlinked] "
      "[--apply] [--config FILE]";
  std::string name, tenant;
  bool apply = false, unlinked = false, has_tenant = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "--profile" || a == "--tenant") && i + 1 < args.size()) {
      (a == "--profile" ? name : tenant) = args[++i];
      has_tenant = has_tenant || a == "--tenant";
    } else if (a == "--apply") {
      apply = true;
    } else if (a == "--include-unlinked") {
      unlinked = true;
    } else {
      err << "scimsyncd migrate-scope: unexpected argument '" << a << "'\n" << usage << "\n";
      return kExitUsage;
    }
  }
  const config::ProfileConfig* pc = config::FindProfile(cfg, name);
  if (pc == nullptr) {
    err << "scimsyncd migrate-scope: "
        << (name.empty() ? "--profile is required" : "no profile named '" + name + "'")
        << ": name the profile whose users were created while it was the only scope\n"
        << usage << "\n";
    return kExitUsage;
  }
  if (!cfg.multi_scope) {
    err << "scimsyncd migrate-scope: " << cfg.file
        << " configures a single scope, which keeps bare externalIds: add the second profile "
           "(or tenant) to the config first, run this command with that config, then start "
           "scimsyncd with it\n";
    return kExitConfig;
  }
  const bool tenant_ok = pc->tenants.empty() ? !has_tenant
                                             : std::find(pc->tenants.begin(), pc->tenants.end(),
                                                         tenant) != pc->tenants.end();
  if (!tenant_ok) {
    err << "scimsyncd migrate-scope: profile '" << name << "' "
        << (pc->tenants.empty() ? "serves no tenants: drop --tenant"
                                : "serves tenants: give --tenant with one of them")
        << "\n";
    return kExitUsage;
  }
  // Every configured scope's prefix: an externalId that starts with one is already namespaced.
  std::vector<std::string> prefixes;
  for (const auto& p : cfg.profiles) {
    if (p.tenants.empty()) prefixes.push_back(config::ExternalIdPrefix(cfg, p, ""));
    for (const auto& t : p.tenants) prefixes.push_back(config::ExternalIdPrefix(cfg, p, t));
  }
  const std::string prefix = config::ExternalIdPrefix(cfg, *pc, tenant);
  const std::string scope = tenant.empty() ? name : name + "/" + tenant;

  auto api_key = config::ResolveSecret(cfg.target.api_key);
  if (!api_key.ok()) {
    err << "scimsyncd migrate-scope: reading JumpCloud's users needs the API key: "
        << api_key.error().message << "\n";
    return kExitConfig;
  }
  if (cfg.target.dry_run) {
    err << "scimsyncd migrate-scope: target.dry_run is on: there is no JumpCloud to migrate\n";
    return kExitConfig;
  }
  AdminRedis db;
  if (int rc = OpenAdminRedis(cfg, 2, /*ping=*/false, "scimsyncd", err, &db); rc != kExitOk) {
    return rc;
  }
  const Clock& clock = SystemClock::Instance();
  redis::Pool& pool = *db.pool;
  auto links = scim::NewRedisLinkStore(pool, cfg.redis.key_prefix);
  auto limiter = scim::NewRedisRateLimiter(pool, scim::RateLimitKey(cfg.redis.key_prefix),
                                           scim::RateLimitOptions::From(cfg.target), clock);
  auto transport = scim::NewHttpTransport(scim::TransportOptions::From(cfg.target, *api_key));
  if (!transport.ok()) {
    err << "scimsyncd migrate-scope: " << transport.error().message << "\n";
    return kExitConfig;
  }
  scim::SystemRandom random;
  scim::ListDeps deps;
  deps.transport = transport->get();
  deps.limiter = limiter.get();
  deps.clock = &clock;
  deps.random = &random;
  scim::ListOptions list;
  list.timeout_ms = cfg.target.timeout_ms;
  auto users = scim::ListAllUsers(list, deps);
  if (!users.ok()) {
    err << "scimsyncd migrate-scope: cannot list JumpCloud's users: " << users.error().message
        << "\n";
    return users.error().kind == ErrorKind::kAuth ? kExitConfig : kExitUnavailable;
  }
  int rewritten = 0, skipped = 0, failed = 0;
  for (const scim::RemoteUser& u : *users) {
    const std::string& ext = u.external_id;
    if (ext.empty()) continue;
    bool namespaced = false;
    for (const auto& p : prefixes) namespaced = namespaced || ext.rfind(p, 0) == 0;
    if (namespaced) continue;
    auto link = links->Get(scope, ext);
    auto owner = links->OwnerOf(u.id);
    if (!link.ok() || !owner.ok()) {
      return RedisDown(err, link.ok() ? owner.error() : link.error());
    }
    const bool linked = *link && **link == u.id;
    if (*owner && (*owner)->scope != scope) {
      out << "skipped  " << u.id << "  " << u.attributes.user_name << "  externalId " << ext
          << ": linked by " << (*owner)->scope << ", not " << scope << "\n";
      ++skipped;
      continue;
    }
    if (!linked && !unlinked) {
      out << "skipped  " << u.id << "  " << u.attributes.user_name << "  externalId " << ext
          << ": no link of " << scope
          << " says it is this profile's (--include-unlinked claims it)\n";
      ++skipped;
      continue;
    }
    const std::string next = prefix + ext;
    if (!apply) {
      out << "would rewrite  " << u.id << "  " << u.attributes.user_name << "  externalId " << ext
          << " -> " << next << "\n";
      ++rewritten;
      continue;
    }
    scim::PatchOp op;
    op.path = "externalId";
    rapidjson::StringBuffer value;
    JsonWriter vw(value);
    vw.String(next.c_str(), static_cast<rapidjson::SizeType>(next.size()));
    op.value_json = value.GetString();
    scim::HttpRequest req{"PATCH", "/Users/" + scim::UrlEncode(u.id), scim::PatchBody({op})};
    auto resp = deps.transport->Send(req, cfg.target.timeout_ms);
    if (!resp.ok() || resp->status < 200 || resp->status >= 300) {
      out << "FAILED   " << u.id << "  " << u.attributes.user_name << "  externalId " << ext << ": "
          << (resp.ok() ? "HTTP " + std::to_string(resp->status) + " " + resp->body.substr(0, 200)
                        : resp.error().message)
          << "\n";
      ++failed;
      continue;
    }
    Status moved = links->Remove(scope, ext);
    if (moved.ok()) moved = links->Put(scope, next, u.id);
    if (!moved.ok()) return RedisDown(err, moved.error());
    out << "rewrote  " << u.id << "  " << u.attributes.user_name << "  externalId " << ext << " -> "
        << next << "\n";
    ++rewritten;
  }
  out << (apply ? "rewrote " : "would rewrite ") << rewritten << ", skipped " << skipped
      << (failed ? ", failed " + std::to_string(failed) : std::string()) << " of " << users->size()
      << " JumpCloud users" << (apply ? "" : " (nothing written: run again with --apply)") << "\n";
  return failed ? kExitUnavailable : kExitOk;
}

}  // namespace scimsync::daemon
