// The parsed form of a profile YAML file (docs/profiles.md is the user-facing description). The
// loader fills these strictly; the engine only reads them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "codec.h"
#include "scimsync/config.h"
#include "scimsync/connectors/profile.h"

namespace scimsync::connectors::internal {

// ---- auth ---------------------------------------------------------------------------------

enum class AuthType { kHmac, kBearer, kBasic, kHeader, kNone };

struct MessagePart {
  enum class Kind { kBody, kLiteral, kHeader, kMethod };
  Kind kind = Kind::kBody;
  std::string text;  // literal text or header name
};

struct AuthSpec {
  AuthType type = AuthType::kHmac;
  // hmac
  HashAlgorithm algorithm = HashAlgorithm::kSha256;
  Encoding key_encoding = Encoding::kHex;  // meaningful only when key_decode is set
  bool key_decode = false;                 // false: the secret's UTF-8 bytes are the key
  std::string key_prefix;                  // stripped from the secret before decoding (whsec_)
  std::vector<MessagePart> message;
  Encoding encoding = Encoding::kHex;
  std::string header;     // signature / token header
  std::string prefix;     // each candidate starts with it ("sha256=", "v1,")
  std::string separator;  // non-empty: the header holds several candidates
  // Optional timestamp check.
  std::string timestamp_header;
  int64_t tolerance_s = 0;  // 0: the timestamp is only signed, not checked against the clock
  std::string scheme;       // bearer: "Bearer"; header: optional scheme before the token
};

// ---- decode -------------------------------------------------------------------------------

enum class BodyFormat { kJson, kForm };

struct DecodeSpec {
  std::vector<BodyFormat> formats = {BodyFormat::kJson};
  std::string ping_text;  // a body equal to this (trimmed) is a handshake, answered 200
  int ping_status = 200;
  std::string token_pointer;       // verification-token handshake: pointer to the token
  std::string token_instructions;  // logged with the handshake: what the admin does next
};

// ---- values -------------------------------------------------------------------------------

// Where a pointer is resolved. kDefault means "the natural document here": the item for item
// fields, the mapping source (record or payload) for mapping fields.
enum class Scope { kDefault, kItem, kBody, kRecord, kPayload };

struct Transform {
  enum class Kind {
    kLowercase,
    kUppercase,
    kTrim,
    kEmailLocalPart,
    kSafeUsername,
    kLookup,
    kDateReached,
    kDefault,
    kPrefix,
  };
  Kind kind = Kind::kTrim;
  std::map<std::string, std::string> table;  // lookup
  std::optional<std::string> fallback;       // lookup default / default value / date missing
  std::string then_value;                    // date_reached: date <= today
  std::string else_value;                    // date_reached: date > today
  std::string text;                          // prefix
};

struct Source {
  enum class Kind { kPointer, kHeader, kConstant, kHash, kFirst, kTemplate, kVariable };
  Kind kind = Kind::kPointer;
  std::string text;  // pointer, header name, constant, template, variable name
  Scope scope = Scope::kDefault;
  std::vector<Source> parts;  // hash / first
  std::vector<Transform> transforms;
  bool configured = false;  // false: the key was absent
};

// ---- items --------------------------------------------------------------------------------

struct ItemsSpec {
  std::string array;           // empty: the body is one item
  bool array_required = true;  // false: a body without the array is one item
  Source employee_key;
  Source dedup_id;
  Source event_type;
  Source occurred_at;  // or `version`: either fills DecodedItem::occurred_at
  // Optional: the tenant named in the body (Finch's connection_id), so one URL serves every
  // tenant. A /webhooks/{profile}/{tenant} segment, when present, wins.
  Source tenant;
  // The dedup window for a profile whose dedup id cannot tell two changes apart (a hash of a body
  // without event id or timestamp): minutes, so redeliveries of one change collapse and a later
  // change of the same kind is not dropped. 0: the config entry's dedup_window_s (7 days), for
  // profiles whose ids are unique per change. A config entry that sets dedup_window_s wins.
  int64_t dedup_window_s = 0;
};

// ---- actions ------------------------------------------------------------------------------

struct Condition {
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kMissing };
  Source value;  // resolved against the item's payload
  Op op = Op::kEquals;
  std::vector<std::string> values;
};

struct ActionRule {
  std::vector<std::string> events;  // patterns with '*' wildcards; empty matches every event
  std::vector<Condition> when;      // all must hold
  Action action = Action::kIgnore;
  Source effective_at;  // deferred actions: not before this time
  size_t index = 0;
};

// ---- event classes ------------------------------------------------------------------------

// Which items are about an employee (acted on) and which are not (acknowledged: answered 2xx,
// counted, never enqueued). Vendors count a 4xx as a failed delivery, retry and eventually
// disable the webhook, so an event that is merely not ours must never be answered 4xx.
struct EventsSpec {
  // Patterns ('*' wildcards) of event types about an employee: such an item without its
  // employee key is malformed (400). Empty: the patterns of the action rules other than "*".
  std::vector<std::string> employee;
  // Patterns of event types that are not about an employee. Checked after `employee`, so
  // `other: ["*"]` acknowledges every type the profile does not name as an employee's.
  std::vector<std::string> other;
  // Conditions (on the item) an employee item meets; an item that fails one is acknowledged
  // as "not an employee's shape" (Factorial sends every subscription's bodies untyped).
  std::vector<Condition> shape;
};

// ---- fetch-back ---------------------------------------------------------------------------

struct FetchAuthSpec {
  enum class Type { kNone, kBasic, kBearer, kHeader, kOAuth2 };
  Type type = Type::kNone;
  // Templates over the credentials ({key}, {client_id}...), {tenant} and {employee_key}.
  std::string username;
  std::string password;
  std::string token;
  std::string header;  // kHeader: the header's name
  std::string scheme;  // kHeader: optional scheme before the token
  std::string token_url;
  std::string client_id;
  std::string client_secret;
  std::string scope;
  bool client_auth_basic = false;  // send client id/secret as HTTP Basic instead of in the form
};

struct FetchRequestSpec {
  std::string name;  // "" when the profile has one request
  std::string method = "GET";
  std::string path;  // template appended to base_url
  std::string body;  // template (JSON-escaped substitution)
  std::string content_type = "application/json";
  std::string record;     // pointer to the record in the response
  bool optional = false;  // a 404 of this request leaves its part empty instead of "gone"
};

struct FetchSpec {
  bool enabled = false;
  std::string base_url;  // template; api.base_url in the config entry overrides it
  std::vector<std::string> credentials;
  FetchAuthSpec auth;
  std::vector<std::pair<std::string, std::string>> headers;  // templates
  std::vector<FetchRequestSpec> requests;
  Action not_found = Action::kSuspend;
  int timeout_ms = 10000;
  // Optional pointer into the fetched record to a date at which the record's state changes by
  // itself (Factorial's terminated_on: a termination entered for a day ahead). When that day is
  // ahead, the item is applied now and planned again at 00:00 UTC that day (the calendar day, as
  // date_reached counts it), so a fresh read suspends the user on the day. Empty: not set.
  std::string recheck_at;
};

// ---- list (reconciliation) ----------------------------------------------------------------

// How a list endpoint pages. Page and offset styles stop at the first page without records (or
// once `total` is reached), never at a short page: an API that caps the page size below
// `size` still gets read to the end.
struct PaginationSpec {
  enum class Style { kNone, kPage, kOffset, kCursor };
  Style style = Style::kNone;
  std::string param;       // query parameter: page number, offset, or cursor
  std::string size_param;  // query parameter for the page size; empty: not sent
  int size = 100;
  int64_t start = 0;     // first page number (page style; default 1) or offset (0)
  std::string cursor;    // cursor style: pointer to the next cursor in each answer
  std::string next_url;  // cursor style: pointer to the next page's whole URL instead
  std::string has_more;  // optional pointer: a false value ends the listing
  std::string total;     // optional pointer (page/offset): records in the whole listing
  int max_pages = 10000;
};

struct ListSpec {
  bool enabled = false;
  // Connection: each empty/unset one is taken from fetch (base_url, credentials, auth,
  // headers, timeout_ms).
  std::string base_url;
  std::vector<std::string> credentials;  // in addition to fetch.credentials
  std::optional<FetchAuthSpec> auth;
  std::optional<std::vector<std::pair<std::string, std::string>>> headers;
  std::optional<int> timeout_ms;
  // The request.
  std::string method = "GET";
  std::string path;  // template appended to the base URL; no {employee_key}
  std::string body;
  std::string content_type = "application/json";
  // The answer.
  std::string records;               // pointer to the array of records in each page
  std::string employee_key = "/id";  // pointer into a record
  bool yields_records = false;       // false: only keys; the worker fetches each record
  std::string record_at;             // payload-carrying profiles: the record's place in a payload
  std::string version;               // optional pointer into a record: its ordering key
  PaginationSpec pagination;
};

// ---- mapping ------------------------------------------------------------------------------

// JumpCloud attributes a mapping can set, in the order they are documented.
const std::vector<std::string>& MappingAttributes();

struct MappingSpec {
  Scope from = Scope::kDefault;  // kDefault: record when fetch is enabled, else payload
  std::map<std::string, Source> fields;
};

// ---- whole profile ------------------------------------------------------------------------

struct ProfileSpec {
  std::string name;
  std::string file;  // where it was loaded from
  AuthSpec auth;
  DecodeSpec decode;
  ItemsSpec items;
  EventsSpec events;
  std::vector<ActionRule> actions;
  // Without a matching rule: ignore for payload-carrying profiles; sync for profiles that fetch
  // the record (the fetch makes it safe, and an unknown employee event must not be lost).
  Action default_action = Action::kIgnore;
  bool default_action_set = false;
  FetchSpec fetch;
  ListSpec list;
  MappingSpec mapping;
};

// ---- per-config-entry settings ------------------------------------------------------------

struct ApiSettings {
  std::optional<std::string> base_url;
  std::optional<std::string> tenant;  // {tenant} when the webhook URL has none
  std::map<std::string, config::SecretRef> credentials;
  std::optional<int> timeout_ms;
};

struct TenantSettings {
  ApiSettings api;
  std::map<std::string, Source> fields;
};

struct EntrySettings {
  ApiSettings api;
  std::map<std::string, Source> fields;
  std::map<std::string, TenantSettings> tenants;
};

}  // namespace scimsync::connectors::internal
