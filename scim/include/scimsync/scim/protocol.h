// SCIM 2.0 wire format as scimsync speaks it to JumpCloud: filters, request bodies, the diff that
// decides what a PATCH carries, and parsing of users and error answers. Pure functions, no I/O:
// the converger (converger.h) strings them together, and tests pin each one down.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scimsync/result.h"
#include "scimsync/scim/user.h"
#include "scimsync/strings.h"

namespace scimsync::scim {

inline constexpr char kPatchOpSchema[] = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
inline constexpr char kErrorSchema[] = "urn:ietf:params:scim:api:messages:2.0:Error";
inline constexpr char kListResponseSchema[] = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

// The body of a JSON string for `value` (no surrounding quotes): '"' and '\' escaped, control
// characters as \b \f \n \r \t or \u00XX, valid UTF-8 as is, an invalid byte as U+FFFD
// (scimsync::AppendJsonEscaped).
// SCIM filter literals are JSON strings (RFC 7644 3.4.2.2), so this is how a value gets into one.
std::string EscapeFilterValue(std::string_view value);

// Percent-encodes every byte outside RFC 3986's unreserved set (scimsync/strings.h).
using ::scimsync::UrlEncode;

// `attribute eq "value"`, escaped and URL-encoded: the part after "?filter=".
std::string EqFilterQuery(std::string_view attribute, std::string_view value);

// A user as the SCIM server holds it.
struct RemoteUser {
  std::string id;           // the server's (JumpCloud's) id
  std::string external_id;  // empty when the server has none
  // Every attribute scimsync manages, as the server returned it; unset = absent on the server.
  // `attributes.email` is the primary email (the first one when none is marked primary).
  User attributes;
  std::string json;  // the whole resource, compact: PUT carries the attributes we do not manage
};

// Parses one User resource. Errors (kPermanent) say what was wrong with the answer.
Result<RemoteUser> ParseUser(std::string_view json);
// Parses a ListResponse ("Resources" may be absent when totalResults is 0).
Result<std::vector<RemoteUser>> ParseListResponse(std::string_view json);

// One page of a paginated GET /Users (RFC 7644 3.4.2.4).
struct ListPage {
  std::vector<RemoteUser> users;
  // Users the whole listing covers, not only this page. A server that leaves it out is taken
  // to have sent everything: total_results = users.size().
  int64_t total_results = 0;
  int64_t start_index = 1;  // 1-based index of users[0]; 1 when the server leaves it out
};
Result<ListPage> ParseListPage(std::string_view json);

// "/Users?startIndex=N&count=M": one page of every user.
std::string ListUsersTarget(int64_t start_index, int count);

// One PATCH operation. `value_json` is the value as compact JSON; empty for "remove".
struct PatchOp {
  enum class Kind { kReplace, kRemove };
  Kind kind = Kind::kReplace;
  std::string path;  // "userName", "name.givenName", "emails", "<enterprise URN>:department"
  std::string value_json;
  bool operator==(const PatchOp&) const = default;
};

// What has to change on `remote` to match `desired`. Only attributes `desired` sets are compared
// (an unset optional is not managed); userName and email compare case-insensitively (SCIM
// userName is caseExact=false; mail domains are case-insensitive); an empty desired string
// removes the attribute; the password is never part of a diff (servers do not return it, and
// re-sending one on every sync would reset the user's own password). `emails` is replaced as a
// whole, keeping the remote's other addresses, so a server does not need filter paths.
std::vector<PatchOp> Diff(const User& desired, const RemoteUser& remote);

// Every attribute `desired` manages, as one PATCH's operations, whatever the server holds: an
// empty string removes the attribute, `emails` becomes the one primary work address, `active`
// is included when set, externalId too (an anchor cleared by hand comes back), never the
// password. The
// update sent from a snapshot (LinkStore::Link), without a GET: the HRIS is the authority for
// what it exports, so an admin's manual edit of a managed attribute is overwritten.
std::vector<PatchOp> ReplaceAll(const User& desired);

// The managed attributes last applied, as the link table keeps them: compact JSON of the set
// fields of `user` with flat keys ("userName", "givenName", "department", "active", ...),
// externalId and password left out (the link's key is the anchor; a password never goes to
// Redis). About 200-300 bytes for a typical employee.
std::string SnapshotJson(const User& user);
// The inverse; kPermanent when `json` is not a snapshot (then the caller GETs the user).
Result<User> ParseSnapshot(std::string_view json);

// {"schemas":[PatchOp],"Operations":[...]}.
std::string PatchBody(const std::vector<PatchOp>& ops);

// The POST body creating `desired`: core and enterprise schemas, externalId, the enterprise
// employeeNumber (defaulting to externalId when the profile maps none), `active` always
// (true when `desired` leaves it unset), and otherwise only the attributes `desired` sets. The
// password is included only when a profile mapped one.
std::string CreateBody(const User& desired);

// The PUT body for servers without PATCH: the remote resource with `ops` applied. Attributes
// scimsync does not manage -- and `active`, unless an op sets it -- are carried forward
// unchanged; read-only `meta` is dropped.
Result<std::string> MergeForPut(const RemoteUser& remote, const std::vector<PatchOp>& ops);

// Capabilities read from /ServiceProviderConfig.
struct ServiceProviderConfig {
  bool patch = true;  // JumpCloud supports PATCH; assumed when the document is absent
  bool filter = true;
};
Result<ServiceProviderConfig> ParseServiceProviderConfig(std::string_view json);

// Classifies a non-2xx answer: 408/429/500/502/503/504 kTransient, 401/403 kAuth, 404
// kNotFound, 409 kConflict, every other status kPermanent. A SCIM error body (`status` as string
// or number, `scimType`, `detail`) goes into the message; `retry_after` (the header's value, may
// be empty) becomes Error::retry_after. `now_ms` resolves an HTTP-date Retry-After.
Error ErrorFromResponse(int status, std::string_view body, std::string_view retry_after,
                        int64_t now_ms);

// The JSON with every "password" member's value replaced by "[redacted]"; text that is not JSON
// is returned unchanged. Used for logs, dead letters and the dry-run file.
std::string RedactBody(std::string_view body);

}  // namespace scimsync::scim
