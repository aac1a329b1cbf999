#include "scimsync/scim/converger.h"

#include <chrono>
#include <thread>
#include <utility>

#include "json_util.h"
#include "scimsync/log.h"
#include "scimsync/scim/resolve.h"

namespace scimsync::scim {
namespace {

// Bodies in dead letters are cut here: enough to read a SCIM error, bounded for Redis.
constexpr size_t kMaxBodyInReport = 4096;

// Resolve/converge rounds within one attempt: a 409 on create or a user deleted under us sends
// the job back to resolve; more than this means the user keeps changing, and a later attempt
// will see a calmer picture.
constexpr int kMaxRounds = 3;

// After a probe of /ServiceProviderConfig got no answer, jobs go on assuming PATCH and the probe
// is repeated at most this often, so an outage does not double every job's failed requests.
constexpr int64_t kProbeIntervalMs = 60000;

bool Is2xx(int status) { return status >= 200 && status < 300; }

std::string Truncate(std::string s) {
  if (s.size() > kMaxBodyInReport) {
    s.resize(kMaxBodyInReport);
    s += "...(truncated)";
  }
  return s;
}

// The string attributes a snapshot keeps, besides userName and active.
constexpr std::optional<std::string> User::*kManagedStrings[] = {
    &User::given_name,  &User::family_name,  &User::display_name,    &User::email,
    &User::title,       &User::locale,       &User::user_type,       &User::department,
    &User::cost_center, &User::organization, &User::employee_number,
};

// `base` (what the user held) with every attribute `wanted` manages set to the wanted value:
// what the user holds once `wanted` is applied. userName and email keep base's spelling when
// they differ only in case (Diff does not write those). Neither externalId nor the password.
User Overlay(User base, const User& wanted) {
  base.external_id.clear();
  base.password.reset();
  if (!wanted.user_name.empty() && !json::EqualsIgnoreCase(wanted.user_name, base.user_name)) {
    base.user_name = wanted.user_name;
  }
  for (auto field : kManagedStrings) {
    const auto& w = wanted.*field;
    if (!w) continue;
    auto& b = base.*field;
    if (field == &User::email && b && json::EqualsIgnoreCase(*b, *w)) continue;
    b = w;
  }
  if (wanted.active) base.active = wanted.active;
  return base;
}

std::vector<std::string> Paths(const std::vector<PatchOp>& ops) {
  std::vector<std::string> out;
  out.reserve(ops.size());
  for (const auto& op : ops) out.push_back(op.path);
  return out;
}

}  // namespace

const char* ActionName(Action action) {
  switch (action) {
    case Action::kSync:
      return "sync";
    case Action::kSuspend:
      return "suspend";
    case Action::kReactivate:
      return "reactivate";
    case Action::kDelete:
      return "delete";
    case Action::kIgnore:
      return "ignore";
  }
  return "?";
}

const char* DecisionName(Decision decision) {
  switch (decision) {
    case Decision::kDone:
      return "done";
    case Decision::kRetry:
      return "retry";
    case Decision::kGiveUp:
      return "give_up";
    case Decision::kPause:
      return "pause";
  }
  return "give_up";
}

const char* ChangeName(Change change) {
  switch (change) {
    case Change::kNone:
      return "none";
    case Change::kCreated:
      return "created";
    case Change::kUpdated:
      return "updated";
    case Change::kDeleted:
      return "deleted";
    case Change::kAbsent:
      return "absent";
  }
  return "none";
}

ConvergerOptions ConvergerOptions::From(const config::TargetOptions& target,
                                        const config::RetryOptions& retry) {
  ConvergerOptions o;
  o.timeout_ms = target.timeout_ms;
  o.retry = RetryOptions::From(retry);
  o.create_leavers = target.create_leavers;
  o.snapshot_max_age_ms = target.snapshot_max_age_s * 1000;
  return o;
}

std::optional<ServiceProviderConfig> SharedCapabilities::Get() const {
  std::lock_guard lock(mu_);
  return capabilities_;
}

void SharedCapabilities::Set(const ServiceProviderConfig& capabilities) {
  std::lock_guard lock(mu_);
  capabilities_ = capabilities;
}

void SharedCapabilities::Reset() {
  std::lock_guard lock(mu_);
  capabilities_.reset();
}

// The state of one Converge call.
struct Converger::Run {
  explicit Run(const Job& j) : job(j) {}
  const Job& job;
  int64_t first_ms = 0;
  int64_t rate_wait_ms = 0;         // spent waiting for rate-limit slots
  std::optional<std::string> link;  // what the link table held at the start
  // The link's snapshot of the last applied state, when it is young enough to be trusted
  // (reset once a write from it failed), and as stored.
  std::optional<User> snapshot;
  std::string snapshot_json;
  // The last exchange, raw: redacted and truncated only in Finish and only for a failed job
  // (the dead letter shows it); a converged job drops it, and redacting every body cost ~2% of
  // the daemon's CPU under load (bench/README.md).
  struct Exchange {
    std::string request_line;
    std::string request_body;
    std::string response_line;
    std::string response_body;
  } last;
  std::string id;
  std::vector<std::string> written;
  Change change = Change::kNone;
  bool link_read = false;  // `link` was just read: the first resolution reuses it
  // A POST was answered 409: resolution now also looks the userName up.
  bool by_user_name = false;
  bool rate_limited = false;  // the last Call found no rate-limit slot
  bool suspended = false;     // active=false was written (sent on its own, before the rest)
};

Converger::Converger(ConvergerOptions options, ConvergerDeps deps)
    : options_(options),
      deps_(std::move(deps)),
      policy_(options_.retry, *deps_.clock, *deps_.random) {
  if (!deps_.sleep) {
    deps_.sleep = [](int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
  }
}

void Converger::SetCapabilities(const ServiceProviderConfig& capabilities) {
  capabilities_ = capabilities;
}

Result<ServiceProviderConfig> Converger::Probe() {
  Job job;
  job.first_attempt_ms = deps_.clock->NowMs();
  Run run(job);
  run.first_ms = job.first_attempt_ms;
  return Probe(run);
}

Status Converger::CheckKey() {
  Job job;
  job.first_attempt_ms = deps_.clock->NowMs();
  job.trace_id = "auth-probe";
  Run run(job);
  run.first_ms = job.first_attempt_ms;
  auto resp = Call(run, "GET", ListUsersTarget(1, 1), "");
  if (!resp.ok()) return resp.error();
  if (!Is2xx(resp->status)) {
    return ErrorFromResponse(resp->status, resp->body, resp->retry_after, deps_.clock->NowMs());
  }
  return {};
}

Result<ServiceProviderConfig> Converger::Probe(Run& run) {
  next_probe_ms_ = deps_.clock->NowMs() + kProbeIntervalMs;
  auto resp = Call(run, "GET", "/ServiceProviderConfig", "");
  if (!resp.ok()) return resp.error();
  ServiceProviderConfig caps;
  if (Is2xx(resp->status)) {
    auto parsed = ParseServiceProviderConfig(resp->body);
    if (parsed.ok()) caps = *parsed;
  } else {
    Error e = ErrorFromResponse(resp->status, resp->body, resp->retry_after, deps_.clock->NowMs());
    if (e.kind == ErrorKind::kAuth || e.kind == ErrorKind::kTransient) return e;
    // Absent or refused: JumpCloud has PATCH, so that is what we assume.
  }
  capabilities_ = caps;
  if (deps_.capabilities) deps_.capabilities->Set(caps);
  log::Info("SCIM server capabilities", {{"patch", caps.patch}, {"filter", caps.filter}});
  return caps;
}

Result<HttpResponse> Converger::Call(Run& run, const std::string& method, const std::string& target,
                                     const std::string& body) {
  run.rate_limited = false;
  int64_t timeout = policy_.AttemptTimeoutMs(run.first_ms, options_.timeout_ms);
  if (timeout <= 0) {
    return Error::Transient("the job is older than workers.retry.max_age_s; not sending " + method +
                            " " + target);
  }
  auto slot = deps_.limiter->Reserve(std::min(options_.max_rate_wait_ms, timeout));
  if (!slot.ok()) return slot.error();
  if (!slot->granted) {
    run.rate_limited = true;
    Error e = Error::Transient("rate limit: no SCIM request slot free within " +
                               std::to_string(options_.max_rate_wait_ms) +
                               " ms (target.max_requests_per_second, or a recent 429)");
    e.retry_after = std::chrono::milliseconds(slot->wait_ms);
    return e;
  }
  if (slot->wait_ms > 0) {
    run.rate_wait_ms += slot->wait_ms;
    deps_.sleep(slot->wait_ms);
    timeout = policy_.AttemptTimeoutMs(run.first_ms, options_.timeout_ms);
    if (timeout <= 0) return Error::Transient("the job is older than workers.retry.max_age_s");
  }

  if (method != "GET" && run.job.fence) {
    // Last moment before a write: a worker that lost its partition's lease (it froze, its
    // lease ran out, another instance took over) must not be the last writer.
    if (Status fenced = run.job.fence(); !fenced.ok()) {
      log::Warn(
          "not sending a SCIM write: fenced",
          {{"trace_id", run.job.trace_id}, {"method", method}, {"detail", fenced.error().message}});
      return fenced.error();
    }
  }
  HttpRequest req{method, target, body};
  run.last.request_line = deps_.transport->Describe(req);
  run.last.request_body = body;
  run.last.response_line.clear();
  run.last.response_body.clear();
  auto started = std::chrono::steady_clock::now();
  auto resp = deps_.transport->Send(req, timeout);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started)
                .count();
  if (!resp.ok()) {
    run.last.response_line = "no answer: " + resp.error().message;
    log::Warn("SCIM request failed", {{"trace_id", run.job.trace_id},
                                      {"method", method},
                                      {"error", resp.error().message},
                                      {"ms", static_cast<int64_t>(ms)}});
    return resp.error();
  }
  run.last.response_line = "HTTP " + std::to_string(resp->status);
  run.last.response_body = resp->body;
  log::Debug("SCIM request", {{"trace_id", run.job.trace_id},
                              {"method", method},
                              {"target", target},
                              {"status", resp->status},
                              {"ms", static_cast<int64_t>(ms)}});
  if (resp->status == 429) {
    int64_t block = 0;
    if (auto ra = ParseRetryAfterMs(resp->retry_after, deps_.clock->NowMs())) {
      block = std::min(*ra, options_.retry.max_delay_ms);
    }
    log::Warn("SCIM server rate-limits us (429): pausing every worker's requests",
              {{"retry_after", resp->retry_after}, {"block_ms", block}});
    Status s = deps_.limiter->Throttled(block);
    if (!s.ok())
      log::Warn("cannot record the 429 in the rate limiter", {{"error", s.error().message}});
  }
  return resp;
}

Result<std::vector<RemoteUser>> Converger::Search(Run& run, const char* attribute,
                                                  const std::string& value) {
  auto resp = Call(run, "GET", "/Users?filter=" + EqFilterQuery(attribute, value), "");
  if (!resp.ok()) return resp.error();
  if (!Is2xx(resp->status)) {
    return ErrorFromResponse(resp->status, resp->body, resp->retry_after, deps_.clock->NowMs());
  }
  return ParseListResponse(resp->body);
}

void Converger::Link(Run& run, const std::string& id) {
  if (deps_.transport->dry_run() || run.link == id) return;
  Status s = deps_.links->Put(run.job.scope, run.job.desired.external_id, id);
  if (!s.ok()) {
    // The externalId still anchors the user; the next job stores the link.
    log::Warn("cannot store the link HRIS id -> JumpCloud id",
              {{"trace_id", run.job.trace_id}, {"error", s.error().message}});
    return;
  }
  run.link = id;
}

void Converger::Unlink(Run& run) {
  if (deps_.transport->dry_run() || !run.link) return;
  Status s = deps_.links->Remove(run.job.scope, run.job.desired.external_id);
  if (!s.ok()) {
    log::Warn("cannot drop a stale link",
              {{"trace_id", run.job.trace_id}, {"error", s.error().message}});
    return;
  }
  run.link.reset();
}

Result<std::optional<RemoteUser>> Converger::Resolve(Run& run) {
  const User& d = run.job.desired;
  ResolveQuery query;
  query.scope = run.job.scope;
  query.external_id = d.external_id;
  query.user_name = d.user_name;
  query.by_user_name = run.by_user_name;
  query.other_scopes = run.job.other_scopes;
  ResolveLookups lookups;
  lookups.linked = [&]() -> Result<std::optional<RemoteUser>> {
    if (!run.link_read) {
      auto link = deps_.links->Get(run.job.scope, d.external_id);
      if (!link.ok()) return link.error();
      run.link = *link;
    }
    run.link_read = false;
    if (!run.link) return std::optional<RemoteUser>();
    auto resp = Call(run, "GET", "/Users/" + UrlEncode(*run.link), "");
    if (!resp.ok()) return resp.error();
    if (Is2xx(resp->status)) {
      auto user = ParseUser(resp->body);
      if (!user.ok()) return user.error();
      return std::optional<RemoteUser>(std::move(*user));
    }
    if (resp->status != 404) {
      return ErrorFromResponse(resp->status, resp->body, resp->retry_after, deps_.clock->NowMs());
    }
    log::Info("linked JumpCloud user is gone; resolving again",
              {{"trace_id", run.job.trace_id}, {"jumpcloud_id", *run.link}});
    Unlink(run);
    return std::optional<RemoteUser>();
  };
  lookups.by_external_id = [&](const std::string& ext) { return Search(run, "externalId", ext); };
  lookups.by_user_name = [&](const std::string& name) { return Search(run, "userName", name); };
  lookups.owner_of = [&](const std::string& id) { return deps_.links->OwnerOf(id); };
  auto found = ResolveUser(query, lookups);
  if (!found.ok()) return found.error();
  if (found->via == Resolution::Via::kUserName) {
    log::Info("adopting the JumpCloud user with this userName",
              {{"trace_id", run.job.trace_id}, {"jumpcloud_id", found->user->id}});
  }
  return std::move(found->user);
}

Result<RemoteUser> Converger::Create(Run& run, const User& desired) {
  auto resp = Call(run, "POST", "/Users", CreateBody(desired));
  if (!resp.ok()) return resp.error();
  if (!Is2xx(resp->status)) {
    return ErrorFromResponse(resp->status, resp->body, resp->retry_after, deps_.clock->NowMs());
  }
  auto user = ParseUser(resp->body);
  if (!user.ok()) {
    // The user probably exists now; the next attempt finds it by externalId before any POST.
    return Error::Transient(
        "the SCIM server accepted the create but its answer carries no "
        "user id (" +
        user.error().message + "); will look the user up");
  }
  return user;
}

Status Converger::Update(Run& run, const RemoteUser& remote, const std::vector<PatchOp>& ops) {
  std::string target = "/Users/" + UrlEncode(remote.id);
  if (!capabilities_ || capabilities_->patch) {
    auto resp = Call(run, "PATCH", target, PatchBody(ops));
    if (!resp.ok()) return resp.error();
    if (!Is2xx(resp->status)) {
      return ErrorFromResponse(resp->status, resp->body, resp->retry_after, deps_.clock->NowMs());
    }
    return {};
  }
  // No PATCH: read the whole user now, so the PUT carries everything scimsync does not manage
  // as it is at this moment.
  auto current = Call(run, "GET", target, "");
  if (!current.ok()) return current.error();
  if (!Is2xx(current->status)) {
    return ErrorFromResponse(current->status, current->body, current->retry_after,
                             deps_.clock->NowMs());
  }
  auto fresh = ParseUser(current->body);
  if (!fresh.ok()) return fresh.error();
  auto body = MergeForPut(*fresh, ops);
  if (!body.ok()) return body.error();
  auto resp = Call(run, "PUT", target, *body);
  if (!resp.ok()) return resp.error();
  if (!Is2xx(resp->status)) {
    return ErrorFromResponse(resp->status, resp->body, resp->retry_after, deps_.clock->NowMs());
  }
  return {};
}

Error Converger::UserNameTaken(Run& run, const Error& error, const RemoteUser& remote) {
  const std::string& name = run.job.desired.user_name;
  std::string holder;
  Run::Exchange saved = run.last;
  auto others = Search(run, "userName", name);
  if (others.ok()) {
    for (const auto& u : *others) {
      if (u.id != remote.id)
        holder = u.id + (u.external_id.empty() ? "" : " (externalId " + u.external_id + ")");
    }
  }
  // The dead letter should show the write that failed, not the lookup made to explain it.
  run.last = std::move(saved);
  run.rate_limited = false;
  Error e = error;
  e.kind = ErrorKind::kConflict;
  e.message = "renaming JumpCloud user " + remote.id + " (employee " + run.job.desired.external_id +
              ") to userName " + name + " failed: " +
              (holder.empty() ? std::string("the name is taken") : "it belongs to user " + holder) +
              ". " + error.message;
  return e;
}

Status Converger::Suspend(Run& run, const RemoteUser& remote) {
  // Always sent, whatever `active` reads: JumpCloud reports active = !suspended &&
  // !passwordExpired, so a user whose password expired or is still pending reads inactive but
  // gets access back with a password reset. And sent alone, so that nothing else in the request
  // (a taken userName, an attribute JumpCloud refuses) can keep it from landing.
  Status s = Update(run, remote, {{PatchOp::Kind::kReplace, "active", "false"}});
  if (!s.ok()) return s;
  run.suspended = true;
  run.change = Change::kUpdated;
  run.written = {"active"};
  return {};
}

Status Converger::Converge(Run& run) {
  const Action action = run.job.action;
  User desired = run.job.desired;
  if (action == Action::kReactivate) desired.active = true;
  // A suspension, or a sync of a record whose newest state is terminated.
  const bool suspending = action == Action::kSuspend || desired.active == false;

  auto link = deps_.links->Read(run.job.scope, run.job.desired.external_id);
  if (!link.ok()) return link.error();
  run.link_read = true;
  if (*link) {
    const LinkStore::Link& l = **link;
    run.link = l.jumpcloud_id;
    const int64_t now = deps_.clock->NowMs();
    const int64_t max_age = options_.snapshot_max_age_ms;
    if (!deps_.transport->dry_run() && max_age > 0 && !l.snapshot.empty() &&
        now - l.applied_ms < max_age && l.applied_ms - now < max_age) {
      auto parsed = ParseSnapshot(l.snapshot);
      if (parsed.ok()) {
        run.snapshot = std::move(*parsed);
        run.snapshot_json = l.snapshot;
      } else {
        log::Warn("ignoring the link's snapshot; reading the user",
                  {{"trace_id", run.job.trace_id}, {"error", parsed.error().message}});
      }
    }
  }

  for (int round = 0; round < kMaxRounds; ++round) {
    if (run.snapshot && run.link && action != Action::kDelete) {
      Status status;
      if (FromSnapshot(run, desired, suspending, &status) == SnapshotPath::kDone) return status;
    }
    auto found = Resolve(run);
    if (!found.ok()) return found.error();

    if (!*found) {
      if (action == Action::kSuspend || action == Action::kDelete) {
        run.change = Change::kAbsent;
        return {};
      }
      if (!desired.active && run.job.known_terminated) {
        auto terminated = run.job.known_terminated();
        if (!terminated.ok()) return terminated.error();
        if (*terminated) desired.active = false;
      }
      if (desired.active == false && !options_.create_leavers) {
        // No account for a leaver: nobody needs a login that starts out suspended, and one
        // that exists can be reactivated by mistake (target.create_leavers allows it).
        log::Info("not creating a JumpCloud user for a terminated employee",
                  {{"trace_id", run.job.trace_id},
                   {"employee", desired.external_id},
                   {"detail", "target.create_leavers is false"}});
        run.change = Change::kAbsent;
        return {};
      }
      auto created = Create(run, desired);
      if (created.ok()) {
        run.id = created->id;
        run.change = Change::kCreated;
        run.written = Paths(Diff(desired, RemoteUser{}));
        if (desired.password) run.written.push_back("password");
        User applied = desired;
        if (!applied.active) applied.active = true;  // CreateBody always sends it
        Record(run, run.id, Overlay(User{}, applied));
        return {};
      }
      if (created.error().kind != ErrorKind::kConflict) return created.error();
      if (round + 1 < kMaxRounds) {
        log::Info("409 on create: resolving again, by userName too",
                  {{"trace_id", run.job.trace_id}});
        run.by_user_name = true;
        continue;
      }
      Error e = created.error();
      e.message = "the SCIM server answered 409 to creating employee " + desired.external_id +
                  ", but no user with that externalId or userName " + desired.user_name +
                  " exists: another unique attribute (email, employeeNumber) is probably taken. " +
                  e.message;
      return e;
    }

    RemoteUser remote = std::move(**found);
    run.id = remote.id;
    Link(run, remote.id);

    if (action == Action::kDelete) {
      auto resp = Call(run, "DELETE", "/Users/" + UrlEncode(remote.id), "");
      if (!resp.ok()) return resp.error();
      if (!Is2xx(resp->status) && resp->status != 404) {
        return ErrorFromResponse(resp->status, resp->body, resp->retry_after, deps_.clock->NowMs());
      }
      run.change = Change::kDeleted;
      Unlink(run);
      return {};
    }

    if (suspending && !run.suspended) {
      Status s = Suspend(run, remote);
      if (!s.ok()) {
        if (s.error().kind == ErrorKind::kNotFound && round + 1 < kMaxRounds) {
          log::Info("JumpCloud user vanished during the suspension; resolving again",
                    {{"trace_id", run.job.trace_id}, {"jumpcloud_id", remote.id}});
          Unlink(run);
          continue;
        }
        return s;
      }
      remote.attributes.active = false;
    }
    // Only the access changes: a leaver's record is often half-emptied by the HRIS.
    if (action == Action::kSuspend) {
      Record(run, remote.id, Overlay(remote.attributes, User{}));
      return {};
    }

    User wanted = desired;
    if (!run.job.follow_user_name && !wanted.user_name.empty() &&
        !remote.attributes.user_name.empty() &&
        !json::EqualsIgnoreCase(wanted.user_name, remote.attributes.user_name)) {
      log::Info("HR's userName differs from the JumpCloud user's; kept (username_updates: keep)",
                {{"trace_id", run.job.trace_id},
                 {"jumpcloud_id", remote.id},
                 {"user_name", remote.attributes.user_name},
                 {"hr_user_name", wanted.user_name}});
      wanted.user_name.clear();
    }
    auto ops = Diff(wanted, remote);
    if (run.job.status_only) {
      // The record is older than the attributes JumpCloud has: they must not go back.
      std::erase_if(ops, [](const PatchOp& op) { return op.path != "active"; });
    }
    User applied = Overlay(remote.attributes, wanted);
    if (run.job.status_only) {
      applied = remote.attributes;
      if (wanted.active) applied.active = wanted.active;
      applied = Overlay(applied, User{});
    }
    if (ops.empty()) {
      if (!run.suspended) run.change = Change::kNone;
      Record(run, remote.id, applied);
      return {};
    }
    Status s = Update(run, remote, ops);
    if (s.ok()) {
      run.change = Change::kUpdated;
      for (auto& path : Paths(ops)) run.written.push_back(std::move(path));
      Record(run, remote.id, applied);
      return {};
    }
    if (s.error().kind == ErrorKind::kNotFound && round + 1 < kMaxRounds) {
      log::Info("JumpCloud user vanished during the update; resolving again",
                {{"trace_id", run.job.trace_id}, {"jumpcloud_id", remote.id}});
      Unlink(run);
      continue;
    }
    Error e = s.error();
    if (e.kind == ErrorKind::kConflict) {
      for (const auto& op : ops) {
        if (op.path == "userName") {
          e = UserNameTaken(run, s.error(), remote);
          break;
        }
      }
    }
    if (run.suspended) {
      e.message = "JumpCloud user " + remote.id +
                  " is suspended (active=false was applied on its own), but the record's other "
                  "changes failed: " +
                  e.message;
    }
    return e;
  }
  return Error::Transient("the JumpCloud user kept changing while it was being converged");
}

// The path without a GET: the link's snapshot stands for the user. kFallBack when the user is
// gone (404) or the write was refused in a way a read may explain (409, 412): the snapshot is
// dropped and the job goes on by resolution and diff.
Converger::SnapshotPath Converger::FromSnapshot(Run& run, const User& desired, bool suspending,
                                                Status* status) {
  const Job& job = run.job;
  User snapshot = *run.snapshot;
  RemoteUser remote;
  remote.id = *run.link;
  remote.external_id = desired.external_id;
  remote.attributes = snapshot;
  run.id = remote.id;

  bool forgotten = false;  // the snapshot was deleted before this job's first write
  auto drop_snapshot = [&] {
    run.snapshot.reset();
    run.snapshot_json.clear();
    if (deps_.transport->dry_run() || forgotten) return;
    Status dropped = deps_.links->DropSnapshot(job.scope, desired.external_id);
    if (!dropped.ok()) {
      log::Warn("cannot drop the link's snapshot",
                {{"trace_id", job.trace_id}, {"error", dropped.error().message}});
    }
  };
  auto fall_back = [&](const Error& e) {
    const bool gone = e.kind == ErrorKind::kNotFound;
    if (!gone && e.http_status != 409 && e.http_status != 412) return false;
    log::Info(gone ? "linked JumpCloud user is gone; resolving again"
                   : "write from the snapshot refused; reading the user",
              {{"trace_id", job.trace_id}, {"jumpcloud_id", remote.id}, {"error", e.message}});
    if (gone) {
      run.snapshot.reset();
      run.snapshot_json.clear();
      Unlink(run);
    } else {
      drop_snapshot();
    }
    return true;
  };
  // A write that failed otherwise leaves the user unknown: a suspension sent on its own may have
  // landed, a write whose answer was lost may have been applied. The snapshot no longer says
  // what JumpCloud holds (kept, it would let a later job find "nothing to send", e.g. a rehire
  // whose user was suspended meanwhile), so the next job reads the user.
  auto failed = [&](const Status& s) {
    drop_snapshot();
    *status = s;
    return SnapshotPath::kDone;
  };
  // The snapshot stops standing for the user before the first write, not after it: a process
  // killed, frozen past its lease or cut off from Redis after its write landed never stores the
  // new snapshot, and the old one would let the next job (say a redelivered suspension with the
  // rehire that followed it) find "nothing to send". One DEL per job that writes; Record stores
  // the new snapshot once the write is answered. Nothing is sent when the DEL fails.
  auto forget_before_write = [&]() -> Status {
    if (forgotten || deps_.transport->dry_run()) return {};
    Status dropped = deps_.links->DropSnapshot(job.scope, desired.external_id);
    if (!dropped.ok()) return dropped;
    forgotten = true;
    run.snapshot_json.clear();  // so that Record stores the snapshot again, even if unchanged
    return {};
  };

  if (suspending && !run.suspended) {
    if (Status f = forget_before_write(); !f.ok()) {
      *status = f;
      return SnapshotPath::kDone;
    }
    // Always sent, whatever the snapshot says (Suspend explains).
    Status s = Suspend(run, remote);
    if (!s.ok()) {
      if (fall_back(s.error())) return SnapshotPath::kFallBack;
      return failed(s);
    }
    snapshot.active = false;
    remote.attributes.active = false;
  }
  if (job.action == Action::kSuspend) {
    Record(run, remote.id, snapshot);
    *status = {};
    return SnapshotPath::kDone;
  }

  User wanted = desired;
  if (job.status_only) {
    // The record is older than the attributes JumpCloud has: only `active` may be applied.
    wanted = User{};
    wanted.active = desired.active;
  } else if (!job.follow_user_name && !wanted.user_name.empty() && !snapshot.user_name.empty() &&
             !json::EqualsIgnoreCase(wanted.user_name, snapshot.user_name)) {
    log::Info("HR's userName differs from the JumpCloud user's; kept (username_updates: keep)",
              {{"trace_id", job.trace_id},
               {"jumpcloud_id", remote.id},
               {"user_name", snapshot.user_name},
               {"hr_user_name", wanted.user_name}});
    wanted.user_name.clear();
  }
  if (run.suspended) wanted.active.reset();  // sent already, on its own
  User applied = Overlay(snapshot, wanted);
  if (applied == snapshot) {
    // The HRIS changed something the profile does not map: nothing to send.
    if (!run.suspended) run.change = Change::kNone;
    Record(run, remote.id, applied);
    *status = {};
    return SnapshotPath::kDone;
  }
  // Every managed attribute, not only what differs from the snapshot: the HRIS is their
  // authority, so an admin's manual edit is overwritten at the next change.
  std::vector<PatchOp> ops = ReplaceAll(wanted);
  if (Status f = forget_before_write(); !f.ok()) {
    *status = f;
    return SnapshotPath::kDone;
  }
  Status s = Update(run, remote, ops);
  if (!s.ok()) {
    if (fall_back(s.error())) return SnapshotPath::kFallBack;
    Error e = s.error();
    if (run.suspended) {
      e.message = "JumpCloud user " + remote.id +
                  " is suspended (active=false was applied on its own), but the record's other "
                  "changes failed: " +
                  e.message;
    }
    return failed(e);
  }
  run.change = Change::kUpdated;
  // What changed, as far as scimsync knows; the request carried every managed attribute.
  for (auto& path : Paths(Diff(wanted, remote))) run.written.push_back(std::move(path));
  Record(run, remote.id, applied);
  *status = {};
  return SnapshotPath::kDone;
}

void Converger::Record(Run& run, const std::string& id, const User& applied) {
  if (deps_.transport->dry_run()) return;
  std::string json = SnapshotJson(Overlay(applied, User{}));
  if (run.link == id && run.snapshot && run.snapshot_json == json) return;  // unchanged, young
  if (run.job.fence && !run.job.fence().ok()) {
    // This instance lost the employee's partition: the new owner may have applied a newer
    // state since, and a snapshot from here could hide it. Without one, the next job reads.
    Status dropped = deps_.links->DropSnapshot(run.job.scope, run.job.desired.external_id);
    log::Info("not storing the snapshot: fenced",
              {{"trace_id", run.job.trace_id}, {"dropped", dropped.ok()}});
    return;
  }
  LinkStore::Link link{id, json, deps_.clock->NowMs()};
  Status s = deps_.links->PutApplied(run.job.scope, run.job.desired.external_id, link);
  if (!s.ok()) {
    // The externalId still anchors the user; the next job reads it and stores the link.
    log::Warn("cannot store the link HRIS id -> JumpCloud id and its snapshot",
              {{"trace_id", run.job.trace_id}, {"error", s.error().message}});
    return;
  }
  run.link = id;
}

Outcome Converger::Finish(Run& run, const Status& status) {
  Outcome o;
  o.suspended = run.suspended;
  o.rate_wait_ms = run.rate_wait_ms;
  if (!status.ok()) {
    auto shown = [](const std::string& line, const std::string& body) {
      return body.empty() ? line : line + "\n" + Truncate(RedactBody(body));
    };
    o.last_request = shown(run.last.request_line, run.last.request_body);
    o.last_response = shown(run.last.response_line, run.last.response_body);
  }
  const Job& job = run.job;
  if (status.ok()) {
    o.decision = Decision::kDone;
    o.change = run.change;
    o.jumpcloud_id = run.id;
    o.written = run.written;
    log::Info("SCIM user converged", {{"trace_id", job.trace_id},
                                      {"action", ActionName(job.action)},
                                      {"change", ChangeName(run.change)},
                                      {"jumpcloud_id", run.id},
                                      {"writes", run.written.size()}});
    return o;
  }
  const Error& e = status.error();
  o.error = e;
  o.reason = e.message;
  if (e.kind == ErrorKind::kAuth) {
    o.decision = Decision::kPause;
    log::Error("the SCIM server refuses the API key: SCIM work must pause until it is fixed",
               {{"trace_id", job.trace_id}, {"error", e.message}});
    return o;
  }
  // A wait for a rate-limit slot is not a failed attempt: attempt 0 leaves only max age.
  o.rate_limited = run.rate_limited && e.kind == ErrorKind::kTransient;
  RetryDecision d = policy_.Decide(o.rate_limited ? 0 : job.attempt, run.first_ms, e);
  if (d.retry) {
    o.decision = Decision::kRetry;
    o.retry_after_ms = d.delay_ms;
    log::Info("SCIM job will be retried", {{"trace_id", job.trace_id},
                                           {"attempt", job.attempt},
                                           {"delay_ms", d.delay_ms},
                                           {"error", e.message}});
  } else {
    o.decision = Decision::kGiveUp;
    o.reason = d.reason;
    log::Warn("SCIM job given up",
              {{"trace_id", job.trace_id}, {"kind", ErrorKindName(e.kind)}, {"reason", d.reason}});
  }
  return o;
}

Outcome Converger::Converge(const Job& job) {
  if (job.action == Action::kIgnore) return Outcome{};
  Run run(job);
  run.first_ms = job.first_attempt_ms > 0 ? job.first_attempt_ms : deps_.clock->NowMs();

  const User& d = job.desired;
  std::vector<ValidationProblem> problems;
  if (job.action == Action::kSync || job.action == Action::kReactivate) {
    problems = Validate(d);
  } else {
    // Suspend and delete need only the anchor: they must work on a half-emptied record.
    for (auto& p : Validate(d)) {
      if (p.field == "externalId") problems.push_back(std::move(p));
    }
  }
  if (!problems.empty()) {
    std::string message = "the desired user breaks JumpCloud's rules: ";
    for (size_t i = 0; i < problems.size(); ++i) {
      if (i > 0) message += "; ";
      message += problems[i].ToString();
    }
    return Finish(run, Error::Invalid(message));
  }

  if (!capabilities_ && deps_.capabilities) capabilities_ = deps_.capabilities->Get();
  if (!capabilities_ && deps_.clock->NowMs() >= next_probe_ms_) {
    // One converger probes; the others wait for its answer (SharedCapabilities).
    std::unique_lock<std::mutex> probing;
    if (deps_.capabilities) {
      probing = std::unique_lock(deps_.capabilities->probe_mutex());
      capabilities_ = deps_.capabilities->Get();
    }
    if (!capabilities_) {
      auto caps = Probe(run);
      // Only a refused key stops the job here; an unreachable server shows up in the job.
      if (!caps.ok() && caps.error().kind == ErrorKind::kAuth) return Finish(run, caps.error());
    }
  }
  return Finish(run, Converge(run));
}

}  // namespace scimsync::scim
