// A connector profile teaches scimsync one HRIS: how its webhooks are authenticated and shaped
// (ingest side), and how an employee's record maps to a JumpCloud user (worker side). Profiles
// are YAML files (built-ins under connectors/profiles/); docs/profiles.md is the format.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scimsync/config.h"
#include "scimsync/result.h"
#include "scimsync/scim/action.h"
#include "scimsync/scim/user.h"

namespace scimsync::connectors {

// What one webhook request may contain (listen.max_* in the config); the defaults are the safe
// ones the daemon uses when the config says nothing.
using RequestLimits = config::RequestLimits;

// A webhook request as received, before any parsing.
struct Request {
  std::string method = "POST";
  std::string content_type;  // the Content-Type header, as sent
  // Header names as sent; lookups are case-insensitive and treat '_' and '-' alike.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;    // raw bytes: signatures are checked on exactly these
  std::string tenant;  // optional /webhooks/{profile}/{tenant} segment
  RequestLimits limits;
};

// One event split out of a request.
struct DecodedItem {
  std::string employee_key;
  std::string dedup_id;
  std::string event_type;
  std::string occurred_at;  // or a version; empty when the HRIS sends neither
  std::string payload;      // the item's JSON, compact
  // The tenant the body names (a profile's items.tenant); empty: the URL's segment, if any.
  std::string tenant;
};

// An item that is validly signed and well-formed but not about an employee (a ping, a test, an
// account, payroll or sync notification): answered 2xx and counted, never enqueued.
struct AcknowledgedItem {
  std::string event_type;  // "" when the item has none
  std::string reason;      // "account.updated is listed under events.other"
};

struct Decoded {
  std::vector<DecodedItem> items;
  std::vector<AcknowledgedItem> acknowledged;
  // A handshake (HiBob's "Ping test", Gusto's verification token) is answered with
  // handshake_status and enqueues nothing.
  bool handshake = false;
  int handshake_status = 200;
  std::string handshake_note;  // logged: what the admin must do, never a secret
};

// What a profile's rule asks for: scim/'s vocabulary, the converger's job action.
using Action = scim::Action;
using scim::ActionName;

// ---- worker side --------------------------------------------------------------------------

// One queued item, as the worker reads it back (the fields of DecodedItem plus the tenant).
struct WorkItem {
  std::string tenant;
  std::string employee_key;
  std::string event_type;
  std::string occurred_at;
  std::string payload;  // the item's JSON
};

// A request to the HRIS API (fetch-back, or an OAuth2 token request).
struct HttpRequest {
  std::string method = "GET";
  std::string url;  // absolute: https://api.example.com/v1/employees/42
  std::vector<std::pair<std::string, std::string>> headers;  // may carry credentials: never log
  std::string body;
  int timeout_ms = 10000;
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Answers a profile's fetch-back requests. `name` is the request's name in the profile ("" for
// a profile with one request; "oauth2_token" for a token request).
class Fetcher {
 public:
  virtual ~Fetcher() = default;
  // Any HTTP answer, 4xx and 5xx included, is a response: the profile classifies statuses. An
  // error means there was no answer (kTransient: refused, reset, timeout, TLS failure).
  virtual Result<HttpResponse> Fetch(const std::string& name, const HttpRequest& request) = 0;
  // False for canned answers (map --record, tests): credentials need not be resolvable.
  virtual bool live() const { return true; }
};

struct HttpFetcherOptions {
  std::string ca_file;  // extra CA bundle; empty: the system store
  int connect_timeout_ms = 5000;
  // http:// is accepted only for loopback hosts (tests, local relays); redirects are not
  // followed, so credentials never travel to another host.
};

// cpp-httplib over TLS with certificate and host name verification. Thread-safe (a client per
// call: fetch-back is rare next to SCIM traffic).
std::unique_ptr<Fetcher> NewHttpFetcher(HttpFetcherOptions options = {});

// Answers from a recorded response body (map --record, golden fixtures): the body as given for
// a profile with one request; for several, a JSON object with one member per request name.
std::unique_ptr<Fetcher> NewRecordedFetcher(std::string recorded, int status = 200);

// What the worker should do with one item.
struct Plan {
  Action action = Action::kIgnore;
  // The desired state: set for sync and reactivate (and for suspend/delete when the payload
  // carries the record). For suspend/delete without a record only external_id and active are
  // meaningful: the worker finds the user by its link or externalId.
  std::optional<scim::User> user;
  // A deferred action (e.g. a termination dated in the future): not before this Unix time.
  std::optional<int64_t> effective_at_s;
  // Level-triggered profiles (fetch.recheck_at): the fetched record dates a change of its own
  // state ahead (Factorial's terminated_on): the item is applied now and planned again at this
  // Unix time, when a fresh read of the record suspends the user on the day. Unset otherwise.
  std::optional<int64_t> recheck_at_s;
  // For profiles whose payload carries the record: an ordering key (compare as strings; a
  // larger key is newer). An item older than the last applied one must not overwrite it.
  // Empty for level-triggered profiles, which always apply the current record.
  std::string version;
  // JumpCloud rules the mapped user breaks. Non-empty: a permanent error, send nothing.
  std::vector<scim::ValidationProblem> problems;
  std::string reason;    // "rule 3: employee.terminated -> suspend", "HRIS 404 -> suspend"
  bool fetched = false;  // the record came from the HRIS API
};

// ---- reconciliation side (docs/reconcile.md) ----------------------------------------------

// The event type of the items a reconciliation enqueues. Every built-in profile maps it to sync,
// so such an item takes the same path as a webhook's: fetch (or payload), map, converge.
inline constexpr char kReconcileEventType[] = "scimsync.reconcile";

// One employee as a profile's list endpoint yields it.
struct ListedEmployee {
  std::string tenant;
  std::string employee_key;
  // The listed record, compact JSON, when the list yields records; empty when it yields keys.
  std::string record;
  // list.version read from the record (payload-carrying profiles); empty when not configured.
  std::string version;
};

class Profile {
 public:
  virtual ~Profile() = default;
  virtual const std::string& name() const = 0;
  virtual int64_t dedup_window_s() const = 0;

  // Checks the request's auth on the raw bytes with the active secrets (several during a
  // rotation). Error kind kAuth with a message naming the header and the recipe; never a
  // secret or the expected signature.
  virtual Status Verify(const Request& request, const std::vector<std::string>& secrets,
                        int64_t now_s) const = 0;

  // Decodes and fans out. Errors: kInvalid (400, malformed or an item without employee key),
  // or an Error with http_status 415 for a content type the profile does not accept. Each
  // message says what to fix.
  virtual Result<Decoded> Decode(const Request& request) const = 0;

  // Worker side: chooses the action, fetches the record when the profile needs it, maps it.
  // Errors: kTransient (HRIS unreachable, 408/429/5xx: retry; retry_after set when the HRIS
  // asked), kAuth (HRIS API answered 401/403, or a credential is not set), kPermanent (a record
  // that cannot be read). Validation problems are not errors: they are in Plan::problems.
  // The default (for test doubles of the ingest side) ignores every item.
  virtual Result<Plan> PlanItem(const WorkItem& item, Fetcher& fetcher, int64_t now_s) const;

  // True when the payload carries the record (no fetch-back): ordering by Plan::version matters.
  virtual bool payload_carries_record() const { return false; }

  // Reconciliation. True when the profile has a list section.
  virtual bool can_list() const { return false; }
  // The tenants a reconciliation covers: the config entry's `tenants`, or one "" without them.
  virtual std::vector<std::string> list_tenants() const { return {""}; }
  // Every employee the HRIS lists for `tenant`, following the pagination to its end; each key
  // once. Errors as PlanItem's; kPermanent also for an answer without the records array or a
  // record without a key (a partial list must never pass for a whole one); kInvalid when the
  // profile has no list section.
  virtual Result<std::vector<ListedEmployee>> ListEmployees(const std::string& tenant,
                                                            Fetcher& fetcher, int64_t now_s) const;
  // The item that makes a worker sync `employee`: event kReconcileEventType, occurred_at its
  // version, and as payload the record (placed at list.record_at) for profiles whose payload
  // carries it, else {}.
  virtual WorkItem ReconcileItem(const ListedEmployee& employee) const;
  // The desired state of a listed employee: what a worker would plan for ReconcileItem(), but
  // without a fetch when the list already yielded the employee's record.
  virtual Result<Plan> PlanListed(const ListedEmployee& employee, Fetcher& fetcher,
                                  int64_t now_s) const;
};

// Whether webhooks for `tenant` (the /webhooks/{profile}/{tenant} segment, "" when absent) belong
// to `profile`: it must be one of profile.list_tenants(), so a profile without `tenants` takes no
// segment and one with `tenants` takes only those. The tenant becomes part of the dedup ids, the
// applied versions and the link table's scope, so an unchecked segment would let anyone holding
// one captured webhook replay it under invented tenants past dedup and ordering. kNotFound (the
// daemon answers 404) with a message that says what the profile accepts. The one place that
// decides; also for a tenant read from the body.
Status CheckTenant(const Profile& profile, const std::string& tenant);

// Builds the profile named by a config entry (built-in name or file path), reading its
// connector-specific keys strictly. Problems name file, line and key; nullptr when any.
std::shared_ptr<const Profile> LoadProfile(const config::ProfileConfig& entry,
                                           config::Problems* problems);

}  // namespace scimsync::connectors
