// The HRIS API client that fetch-back (worker.cc) and listing (list.cc) share: the settings of
// one call, its credentials, the auth header (basic, bearer, a token header, OAuth2 client
// credentials with a cached token), one request function and one mapping from an HTTP status to
// an Error. The transport is the Fetcher (fetch.cc): this file never opens a socket, so tests and
// `map --record` drive it with canned answers.
#pragma once

#include <rapidjson/document.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scimsync/config.h"
#include "scimsync/connectors/profile.h"
#include "spec.h"

namespace scimsync::connectors::internal {

enum class Escape { kNone, kUrl, kJson };

// Expands {name} from `vars` and {/pointer} from `payload` (nullptr, or a pointer that resolves
// to nothing: empty), each value escaped for where the template puts it.
std::string ExpandTemplate(const std::string& tmpl, const std::map<std::string, std::string>& vars,
                           const rapidjson::Value* payload, Escape escape);

// Where one call goes: the profile's defaults, then the config entry's `api` settings, then the
// tenant's (tenants.<name>.api), each set value winning over the one before.
struct HrisConnection {
  std::string base_url;              // a template
  bool base_url_configured = false;  // true: an `api.base_url` replaced the profile's default
  int timeout_ms = 10000;
  std::string tenant;  // {tenant}: the item's, else the configured api.tenant
  std::map<std::string, config::SecretRef> credentials;  // by credential name
};
HrisConnection ResolveConnection(std::string base_url, int timeout_ms,
                                 const EntrySettings& settings, const std::string& tenant);

// OAuth2 access tokens of one profile, keyed by token URL and client id: shared by its fetch-back
// and its listing and by every worker thread, so a token is asked for once per lifetime, not once
// per employee.
class TokenCache {
 public:
  // The cached token, unless it expires within a minute: refreshed early, it never expires
  // between this check and the request that carries it.
  std::optional<std::string> Get(const std::string& key, int64_t now_s) const;
  void Put(const std::string& key, std::string token, int64_t expires_s);

 private:
  struct Token {
    std::string value;
    int64_t expires_s = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, Token> tokens_;
};

// One call's client: a fetch-back of one employee, or one listing. It copies the auth and the
// headers (a few strings, against an HTTP request) and refers to the token cache and the
// Fetcher, which must outlive it.
class HrisClient {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  HrisClient(std::string profile, FetchAuthSpec auth, Headers headers, int timeout_ms,
             TokenCache& tokens, Fetcher& fetcher, int64_t now_s);

  // {name} variables (tenant, employee_key, the credentials) and the item's payload that
  // {/pointer}s read (none by default).
  void SetVariable(const std::string& name, std::string value) { vars_[name] = std::move(value); }
  void set_payload(const rapidjson::Value* payload) { payload_ = payload; }

  // The text of every template this client sends (the headers and the fields of its auth type),
  // for a caller that tells which credentials a call needs.
  std::string Templates() const;

  // Resolves each credential of `names` that `used` mentions as {name}: only those must be
  // configured, since a profile may declare one for an auth its config entry overrides. One that
  // is not configured, or whose secret cannot be read, is kInvalid naming the setting to fix; a
  // canned Fetcher (map --record, tests) gets "(name)" instead, so a dry run needs no secrets.
  Status ResolveCredentials(const std::vector<std::string>& names,
                            const std::map<std::string, config::SecretRef>& refs,
                            const std::string& used);

  std::string Expand(const std::string& tmpl, Escape escape) const {
    return ExpandTemplate(tmpl, vars_, payload_, escape);
  }

  // Sends `request` (its method, URL and body; a body goes with `content_type`) named `name` for
  // the Fetcher, with the profile's headers and the auth added. An OAuth2 request that is
  // answered 401 gets one fresh token and one more try: the cached one may have been revoked
  // early. Any HTTP answer is a response, to be classified by the caller (StatusError); an error
  // means no answer, or no token.
  Result<HttpResponse> Send(const std::string& name, HttpRequest request,
                            const std::string& content_type = "");

  // What a non-2xx answer to `what` ("HRIS API GET https://…") means. 401/403: kAuth, with
  // `auth_hint` saying which setting to fix; 408, 429 and 5xx: kTransient with the Retry-After
  // wait (seconds or an HTTP-date, from now); any other: kPermanent, a 404 with `not_found_hint`
  // when one is given (a 404 from a configured endpoint is a wrong URL; fetch-back reads an
  // employee's 404 as "gone" before asking here).
  Error StatusError(const std::string& what, const HttpResponse& response,
                    const std::string& auth_hint, const std::string& not_found_hint = "") const;

 private:
  Result<std::string> AccessToken(bool force_refresh);

  std::string profile_;
  FetchAuthSpec auth_;
  Headers headers_;
  int timeout_ms_;
  TokenCache& tokens_;
  Fetcher& fetcher_;
  int64_t now_s_;
  std::map<std::string, std::string> vars_;
  const rapidjson::Value* payload_ = nullptr;
};

}  // namespace scimsync::connectors::internal
