#include "hris_client.h"

#include "codec.h"
#include "eval.h"
#include "json.h"
#include "scimsync/scim/retry.h"
#include "scimsync/strings.h"

namespace scimsync::connectors::internal {

std::string ExpandTemplate(const std::string& tmpl, const std::map<std::string, std::string>& vars,
                           const rapidjson::Value* payload, Escape escape) {
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    std::string name;
    size_t end = 0;
    if (tmpl[i] == '{' && PlaceholderAt(tmpl, i, &name, &end)) {
      std::string value;
      if (name[0] == '/') {
        if (payload != nullptr) value = ScalarText(Resolve(*payload, name)).value_or("");
      } else if (auto it = vars.find(name); it != vars.end()) {
        value = it->second;
      }
      if (escape == Escape::kUrl) {
        out += UrlEncode(value);
      } else if (escape == Escape::kJson) {
        AppendJsonEscaped(out, value);
      } else {
        out += value;
      }
      i = end;
      continue;
    }
    out += tmpl[i++];
  }
  return out;
}

HrisConnection ResolveConnection(std::string base_url, int timeout_ms,
                                 const EntrySettings& settings, const std::string& tenant) {
  HrisConnection c;
  c.base_url = std::move(base_url);
  c.timeout_ms = timeout_ms;
  c.tenant = tenant;
  auto apply = [&](const ApiSettings& api) {
    if (api.base_url) {
      c.base_url = *api.base_url;
      c.base_url_configured = true;
    }
    if (api.timeout_ms) c.timeout_ms = *api.timeout_ms;
    if (api.tenant && tenant.empty()) c.tenant = *api.tenant;
    for (const auto& [k, v] : api.credentials) c.credentials[k] = v;
  };
  apply(settings.api);
  if (auto it = settings.tenants.find(tenant); it != settings.tenants.end()) {
    apply(it->second.api);
  }
  return c;
}

std::optional<std::string> TokenCache::Get(const std::string& key, int64_t now_s) const {
  std::lock_guard lock(mu_);
  auto it = tokens_.find(key);
  if (it == tokens_.end() || now_s + 60 >= it->second.expires_s) return std::nullopt;
  return it->second.value;
}

void TokenCache::Put(const std::string& key, std::string token, int64_t expires_s) {
  std::lock_guard lock(mu_);
  tokens_[key] = Token{std::move(token), expires_s};
}

HrisClient::HrisClient(std::string profile, FetchAuthSpec auth, Headers headers, int timeout_ms,
                       TokenCache& tokens, Fetcher& fetcher, int64_t now_s)
    : profile_(std::move(profile)),
      auth_(std::move(auth)),
      headers_(std::move(headers)),
      timeout_ms_(timeout_ms),
      tokens_(tokens),
      fetcher_(fetcher),
      now_s_(now_s) {}

std::string HrisClient::Templates() const {
  std::string out;
  for (const auto& [k, v] : headers_) out += v;
  switch (auth_.type) {
    case FetchAuthSpec::Type::kBasic:
      out += auth_.username + auth_.password;
      break;
    case FetchAuthSpec::Type::kBearer:
    case FetchAuthSpec::Type::kHeader:
      out += auth_.token;
      break;
    case FetchAuthSpec::Type::kOAuth2:
      out += auth_.token_url + auth_.client_id + auth_.client_secret + auth_.scope;
      break;
    case FetchAuthSpec::Type::kNone:
      break;
  }
  return out;
}

Status HrisClient::ResolveCredentials(const std::vector<std::string>& names,
                                      const std::map<std::string, config::SecretRef>& refs,
                                      const std::string& used) {
  for (const std::string& c : names) {
    if (used.find("{" + c + "}") == std::string::npos) continue;
    auto ref = refs.find(c);
    Result<std::string> secret = ref == refs.end()
                                     ? Result<std::string>(Error::Invalid("not configured"))
                                     : config::ResolveSecret(ref->second);
    if (!secret.ok()) {
      if (!fetcher_.live()) {
        vars_[c] = "(" + c + ")";
        continue;
      }
      if (ref == refs.end()) {
        std::string message = "profile " + profile_ + ": the HRIS API credential '";
        message.append(c).append("' is not configured: set api.").append(c);
        message.append("_env or api.").append(c).append("_file in its config entry");
        return Error::Invalid(message);
      }
      // A secret that cannot be read is a problem of this host's setup, not a refused key.
      return Error::Invalid("profile " + profile_ + ": HRIS API credential '" + c +
                            "': " + secret.error().message);
    }
    vars_[c] = std::move(secret.value());
  }
  return {};
}

Result<std::string> HrisClient::AccessToken(bool force_refresh) {
  const std::string url = Expand(auth_.token_url, Escape::kNone);
  const std::string client_id = Expand(auth_.client_id, Escape::kNone);
  const std::string client_secret = Expand(auth_.client_secret, Escape::kNone);
  const std::string cache_key = url + "\n" + client_id;
  if (!force_refresh) {
    if (auto cached = tokens_.Get(cache_key, now_s_)) return *cached;
  }
  HttpRequest req;
  req.method = "POST";
  req.url = url;
  req.timeout_ms = timeout_ms_;
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                 {"Accept", "application/json"}};
  req.body = "grant_type=client_credentials";
  if (auth_.client_auth_basic) {
    req.headers.emplace_back("Authorization",
                             "Basic " + Base64Encode(client_id + ":" + client_secret));
  } else {
    req.body += "&client_id=" + UrlEncode(client_id) + "&client_secret=" + UrlEncode(client_secret);
  }
  if (!auth_.scope.empty()) req.body += "&scope=" + UrlEncode(Expand(auth_.scope, Escape::kNone));
  auto res = fetcher_.Fetch("oauth2_token", req);
  if (!res.ok()) return res.error();
  const std::string what = "OAuth2 token request to " + url.substr(0, url.find('?'));
  const std::string hint = "check the client id and secret in the profile's api settings";
  // RFC 6749 answers a rejected client 400 (invalid_client) as often as 401.
  if (res->status == 400) {
    Error e = Error::Auth(what + " answered 400: " + hint);
    e.http_status = 400;
    return e;
  }
  if (res->status < 200 || res->status > 299) return StatusError(what, *res, hint);
  rapidjson::Document doc;
  std::string error;
  if (!ParseJson(res->body, &doc, &error) || !doc.IsObject()) {
    return Error::Transient(what + " did not answer JSON");
  }
  auto token = ScalarText(Resolve(doc, "/access_token"));
  // Personio v2 answers {"access_token": ...}; some servers nest it under data.
  if (!token) token = ScalarText(Resolve(doc, "/data/token"));
  if (!token || token->empty()) return Error::Transient(what + " answered without access_token");
  int64_t ttl = 3600;
  if (auto e = ScalarText(Resolve(doc, "/expires_in"))) {
    char* end = nullptr;
    long long v = std::strtoll(e->c_str(), &end, 10);
    if (end != e->c_str() && v > 0) ttl = v;
  }
  tokens_.Put(cache_key, *token, now_s_ + ttl);
  return *token;
}

Result<HttpResponse> HrisClient::Send(const std::string& name, HttpRequest request,
                                      const std::string& content_type) {
  request.timeout_ms = timeout_ms_;
  for (const auto& [k, v] : headers_) request.headers.emplace_back(k, Expand(v, Escape::kNone));
  if (!content_type.empty()) request.headers.emplace_back("Content-Type", content_type);
  const size_t auth_index = request.headers.size();
  switch (auth_.type) {
    case FetchAuthSpec::Type::kNone:
      break;
    case FetchAuthSpec::Type::kBasic:
      request.headers.emplace_back(
          "Authorization", "Basic " + Base64Encode(Expand(auth_.username, Escape::kNone) + ":" +
                                                   Expand(auth_.password, Escape::kNone)));
      break;
    case FetchAuthSpec::Type::kBearer:
      request.headers.emplace_back("Authorization", "Bearer " + Expand(auth_.token, Escape::kNone));
      break;
    case FetchAuthSpec::Type::kHeader: {
      const std::string token = Expand(auth_.token, Escape::kNone);
      request.headers.emplace_back(auth_.header,
                                   auth_.scheme.empty() ? token : auth_.scheme + " " + token);
      break;
    }
    case FetchAuthSpec::Type::kOAuth2: {
      auto token = AccessToken(false);
      if (!token.ok()) return token.error();
      request.headers.emplace_back("Authorization", "Bearer " + *token);
      break;
    }
  }
  auto res = fetcher_.Fetch(name, request);
  if (res.ok() && res->status == 401 && auth_.type == FetchAuthSpec::Type::kOAuth2) {
    auto token = AccessToken(true);
    if (!token.ok()) return token.error();
    request.headers[auth_index].second = "Bearer " + *token;
    res = fetcher_.Fetch(name, request);
  }
  return res;
}

Error HrisClient::StatusError(const std::string& what, const HttpResponse& response,
                              const std::string& auth_hint,
                              const std::string& not_found_hint) const {
  const int status = response.status;
  Error e;
  e.http_status = status;
  e.message = what + " answered " + std::to_string(status);
  if (status == 401 || status == 403) {
    e.kind = ErrorKind::kAuth;
    e.message += ": " + auth_hint;
    return e;
  }
  if (status == 408 || status == 429 || status >= 500) {
    e.kind = ErrorKind::kTransient;
    for (const auto& [k, v] : response.headers) {
      if (AsciiLower(k) != "retry-after") continue;
      // Seconds or an HTTP-date: HRIS APIs and the gateways in front of them send either.
      if (auto ms = scim::ParseRetryAfterMs(v, now_s_ * 1000)) {
        e.retry_after = std::chrono::milliseconds(*ms);
      }
    }
    return e;
  }
  e.kind = ErrorKind::kPermanent;
  if (status == 404 && !not_found_hint.empty()) e.message += ": " + not_found_hint;
  return e;
}

}  // namespace scimsync::connectors::internal
