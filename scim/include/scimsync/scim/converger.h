// Makes one employee's JumpCloud user match the desired state, and says what the worker should
// do next: done, retry after a delay, give up (dead letter), or pause (the API key is refused).
//
//   snapshot: the link carries a snapshot of the managed attributes scimsync last applied,
//             younger than snapshot_max_age_ms: no GET. Equal to the desired state (the HRIS
//             changed something the profile does not map): no request at all. Otherwise one
//             PATCH replacing every managed attribute (the HRIS is their authority, so a manual
//             edit in JumpCloud is overwritten). The snapshot is deleted before the first
//             write and stored again once it is answered, so a process that dies in between
//             leaves none to mislead the next job. A 404, 409 or 412 on it drops the snapshot and
//             the job goes on by the path below; suspensions are still always sent, alone, first.
//   resolve:  link table -> filter externalId eq; after a 409 on create also filter userName eq
//             (the rules are ResolveUser's, resolve.h, shared with reconciliation's join).
//             More than one match, or a match that carries another employee's externalId, or
//             (several scopes) that another scope's link claims, is a conflict: nothing is
//             guessed, both sides are reported.
//   absent:   POST (externalId = HRIS id, enterprise employeeNumber, `active` always explicit),
//             store the link: a hire is two requests. A 409 (the userName or another unique
//             attribute is taken) resolves again, by userName too, and adopts or reports what it
//             finds, as a lookup before the POST would have. A leaver (desired active=false) is
//             not created unless ConvergerOptions::create_leavers.
//   present:  a suspension (kSuspend, or desired active=false) first sends `active=false` alone,
//             always, even when the user already reads inactive (JumpCloud reads a user with an
//             expired or pending password as inactive); the record's other changes follow in a
//             request of their own, so their failure cannot keep the suspension from landing.
//             Then diff against the user as GET returned it; PATCH only what differs (nothing
//             differs: no write), or GET-merge-PUT when the server has no PATCH. A 404 on a
//             linked id drops the link and resolves again.
//
// Every job starts with a lookup, and a failed POST is never repeated within a job: a POST that
// timed out (JumpCloud may have created the user anyway) is followed by a lookup on the next
// attempt, so a slow JumpCloud never yields two accounts.
//
// Every converged job stores the snapshot of what the user now holds (managed attributes only).
//
// Dry run (a dry-run Transport): requests go to the dry-run file instead of the network, every
// GET is answered as "no such user", so what gets recorded is what a first sync would send.
// The link table is read but never written or dropped, and snapshots are not used.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "scimsync/clock.h"
#include "scimsync/config.h"
#include "scimsync/result.h"
#include "scimsync/scim/action.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/protocol.h"
#include "scimsync/scim/rate_limiter.h"
#include "scimsync/scim/retry.h"
#include "scimsync/scim/transport.h"
#include "scimsync/scim/user.h"

namespace scimsync::scim {

struct Job {
  std::string scope;  // link-table namespace: the profile (LinkStore explains)
  User desired;
  Action action = Action::kSync;
  int attempt = 1;               // this attempt's number, 1 for the first
  int64_t first_attempt_ms = 0;  // when attempt 1 started; 0 means now
  std::string trace_id;          // logged with every request
  // Asked only before creating a user whose desired `active` is unset: is the employee's newest
  // known state terminated? Then no account is created (or, with create_leavers, a suspended
  // one): an update for a leaver whose user an admin deleted must not bring back an active one.
  // Unset: not terminated. Asked only there, so a sync of an existing user costs nothing more.
  std::function<Result<bool>()> known_terminated;
  // Only `active` is meant: the record is older than the attributes JumpCloud already has (a
  // rehire delivered after a newer update). An existing user gets `active` alone; the record is
  // used only to create a user JumpCloud does not have. False: the whole record is desired.
  bool status_only = false;
  // Called immediately before each write (any request but GET); an error ends the job at once
  // with that error and nothing is sent. The workers' fencing: a job whose partition lease was
  // lost must not write. Unset: no check.
  std::function<Status()> fence;
  // false (username_updates: keep, the daemon's default): an existing user keeps its userName
  // (the login, and the local account name on bound devices); when HR's differs a line is
  // logged and everything else is still converged. true here, so a bare Job follows HR.
  bool follow_user_name = true;
  // More than one identity scope writes to this JumpCloud: a user whose link belongs to another
  // scope is a conflict, never adopted (LinkStore::Owner; one extra lookup per resolution).
  bool other_scopes = false;
};

enum class Decision {
  kDone,    // ack the item
  kRetry,   // try again after Outcome::retry_after_ms
  kGiveUp,  // dead letter with reason, error kind, last request and response
  kPause,   // 401/403: the API key is refused. Pause all SCIM work and alert; dead-letter nothing
};
const char* DecisionName(Decision decision);

enum class Change {
  kNone,     // the user already matched: no write
  kCreated,  // POST
  kUpdated,  // PATCH or PUT
  kDeleted,  // DELETE (or it was already gone)
  kAbsent,   // suspend or delete of an employee JumpCloud does not know: nothing to do
};
const char* ChangeName(Change change);

struct Outcome {
  Decision decision = Decision::kDone;

  // kDone.
  Change change = Change::kNone;
  std::string jumpcloud_id;          // empty when the user does not exist
  std::vector<std::string> written;  // SCIM paths written ("userName", "active", ...)
  // active=false landed (its own request). Also set for kRetry and kGiveUp when the record's
  // other changes failed after it: the user is suspended whatever the rest of the job did.
  bool suspended = false;

  // kRetry: wait this long. Includes Retry-After, capped by max_delay_ms.
  int64_t retry_after_ms = 0;
  // kRetry only because no shared rate-limit slot was free within max_rate_wait_ms: nothing
  // failed, so the attempt does not count (the worker can wait with Queue::Park) and
  // max_attempts does not end the job; only max age does.
  bool rate_limited = false;
  // Any decision: how long the job waited for rate-limit slots (target.max_requests_per_second
  // or a 429's block). The worker pool reads ahead only when passes spend their time here.
  int64_t rate_wait_ms = 0;

  // kRetry, kGiveUp, kPause: the error (its kind goes into the dead letter), the reason in words,
  // and the last request and response, secrets redacted ("" when nothing was sent; always ""
  // for kDone).
  std::optional<Error> error;
  std::string reason;
  std::string last_request;
  std::string last_response;
};

struct ConvergerOptions {
  int64_t timeout_ms = 10000;  // per request, clipped to what is left of the job's max age
  // A worker waits at most this long for a rate-limit slot; beyond, the job comes back as
  // kRetry so the worker can serve other employees meanwhile.
  int64_t max_rate_wait_ms = 5000;
  RetryOptions retry;
  // A leaver (desired active=false) JumpCloud does not know: false (default) creates nothing,
  // true creates the user suspended (an audit account). config: target.create_leavers.
  bool create_leavers = false;
  // Snapshots of the last applied state younger than this are trusted instead of a GET
  // (config: target.snapshot_max_age_s, default 24 h). 0: never; every update GETs first.
  int64_t snapshot_max_age_ms = int64_t{86400} * 1000;

  static ConvergerOptions From(const config::TargetOptions& target,
                               const config::RetryOptions& retry);
};

// What /ServiceProviderConfig said, shared by every converger of a process: the probe is made
// once per process (and again after Reset, on reload), not once per worker or per job.
class SharedCapabilities {
 public:
  std::optional<ServiceProviderConfig> Get() const;
  void Set(const ServiceProviderConfig& capabilities);
  void Reset();
  // Held while one converger probes, so that the others wait for its answer instead of
  // probing too.
  std::mutex& probe_mutex() { return probe_mu_; }

 private:
  mutable std::mutex mu_;
  std::optional<ServiceProviderConfig> capabilities_;
  std::mutex probe_mu_;
};

// Everything a Converger talks to. All must outlive it. `transport` belongs to this converger
// alone; the limiter and the link store are shared by all workers.
struct ConvergerDeps {
  Transport* transport = nullptr;
  RateLimiter* limiter = nullptr;
  LinkStore* links = nullptr;
  const Clock* clock = nullptr;
  Random* random = nullptr;
  // Waits for a rate-limit slot. Default: std::this_thread::sleep_for. Tests pass one that
  // advances a FakeClock.
  std::function<void(int64_t ms)> sleep;
  // Shared capabilities (optional): set, the process probes once instead of each converger.
  SharedCapabilities* capabilities = nullptr;
};

// One per worker thread (not thread-safe: it owns its transport's connection).
class Converger {
 public:
  Converger(ConvergerOptions options, ConvergerDeps deps);

  // GET /ServiceProviderConfig, to learn whether PATCH is supported. An absent or unreadable
  // document means PATCH (JumpCloud has it). kAuth when the key is refused, kTransient when the
  // server cannot be reached; Converge probes by itself until one probe got an answer.
  Result<ServiceProviderConfig> Probe();
  // Does the server accept the API key? One `GET /Users?startIndex=1&count=1`: an endpoint that
  // always needs the key, unlike /ServiceProviderConfig (discovery may be public, and a 404 there
  // says nothing about the key). ok on 2xx; kAuth on 401/403; other statuses and no answer are
  // errors of their kind. The pause ends only when this succeeds.
  Status CheckKey();
  // For callers that probed once and share the answer between workers.
  void SetCapabilities(const ServiceProviderConfig& capabilities);

  Outcome Converge(const Job& job);

  const RetryPolicy& retry_policy() const { return policy_; }

 private:
  struct Run;
  Result<ServiceProviderConfig> Probe(Run& run);
  Result<std::optional<RemoteUser>> Resolve(Run& run);
  Result<std::vector<RemoteUser>> Search(Run& run, const char* attribute, const std::string& value);
  Status Converge(Run& run);
  enum class SnapshotPath { kDone, kFallBack };
  SnapshotPath FromSnapshot(Run& run, const User& desired, bool suspending, Status* status);
  void Record(Run& run, const std::string& id, const User& applied);
  Result<HttpResponse> Call(Run& run, const std::string& method, const std::string& target,
                            const std::string& body);
  Result<RemoteUser> Create(Run& run, const User& desired);
  Status Update(Run& run, const RemoteUser& remote, const std::vector<PatchOp>& ops);
  Status Suspend(Run& run, const RemoteUser& remote);
  Error UserNameTaken(Run& run, const Error& error, const RemoteUser& remote);
  Outcome Finish(Run& run, const Status& status);
  void Link(Run& run, const std::string& id);
  void Unlink(Run& run);

  ConvergerOptions options_;
  ConvergerDeps deps_;
  RetryPolicy policy_;
  std::optional<ServiceProviderConfig> capabilities_;
  int64_t next_probe_ms_ = 0;
};

}  // namespace scimsync::scim
