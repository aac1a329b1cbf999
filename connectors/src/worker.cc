// The worker side of a profile: action, fetch-back, mapping, validation.
#include <algorithm>
#include <cctype>

#include "codec.h"
#include "eval.h"
#include "events.h"
#include "json.h"
#include "profile_impl.h"
#include "scimsync/log.h"
#include "scimsync/scim/retry.h"
#include "scimsync/strings.h"

namespace scimsync::connectors {

Result<Plan> Profile::PlanItem(const WorkItem& /*item*/, Fetcher& /*fetcher*/,
                               int64_t /*now_s*/) const {
  Plan plan;
  plan.reason = "profile " + name() + " maps no users";
  return plan;
}

namespace internal {
namespace {

Error Permanent(std::string m) { return Error::Permanent(std::move(m)); }

enum class Escape { kNone, kUrl, kJson };

// Expands {name} (a variable or credential) and {/pointer} (into the item's payload).
std::string Expand(const std::string& tmpl, const std::map<std::string, std::string>& vars,
                   const rapidjson::Value& payload, Escape escape) {
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    std::string name;
    size_t end = 0;
    if (tmpl[i] == '{' && PlaceholderAt(tmpl, i, &name, &end)) {
      std::string value;
      if (name[0] == '/') {
        value = ScalarText(Resolve(payload, name)).value_or("");
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

Error StatusError(int status, const std::string& what, const HttpResponse& response,
                  int64_t now_s) {
  if (status == 401 || status == 403) {
    Error e = Error::Auth(what + " answered " + std::to_string(status) +
                          ": the HRIS API credentials are wrong or lack access (check the "
                          "profile's api settings)");
    e.http_status = status;
    return e;
  }
  if (status == 408 || status == 429 || status >= 500) {
    Error e = Error::Transient(what + " answered " + std::to_string(status));
    e.http_status = status;
    for (const auto& [k, v] : response.headers) {
      if (AsciiLower(k) != "retry-after") continue;
      // Seconds or an HTTP-date: HRIS APIs behind a gateway send either.
      if (auto ms = scim::ParseRetryAfterMs(v, now_s * 1000)) {
        e.retry_after = std::chrono::milliseconds(*ms);
      }
    }
    return e;
  }
  Error e = Error::Permanent(what + " answered " + std::to_string(status));
  e.http_status = status;
  return e;
}

bool ParseBool(std::string text, bool* out) {
  text = AsciiLower(Trim(text));
  if (text == "true" || text == "1" || text == "yes" || text == "active") {
    *out = true;
    return true;
  }
  if (text == "false" || text == "0" || text == "no" || text == "inactive") {
    *out = false;
    return true;
  }
  return false;
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string OrderingKey(const std::string& occurred_at) {
  std::string t = Trim(occurred_at);
  if (t.empty()) return "";
  auto pad = [](const std::string& digits) {
    return digits.size() >= 20 ? digits : std::string(20 - digits.size(), '0') + digits;
  };
  bool digits = std::all_of(t.begin(), t.end(),
                            [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  // A number (a version, or Unix time in the unit the HRIS always uses) orders as itself.
  if (digits) return pad(t);
  if (auto ms = ParseTimeMillis(t); ms && *ms >= 0) return pad(std::to_string(*ms));
  return t;
}

struct SpecProfile::Resolved {
  std::string tenant;
  std::string base_url;
  int timeout_ms = 10000;
  std::map<std::string, config::SecretRef> credentials;
  std::map<std::string, const Source*> fields;
};

SpecProfile::Resolved SpecProfile::ResolveSettings(const std::string& tenant) const {
  Resolved r;
  r.base_url = spec_->fetch.base_url;
  r.timeout_ms = spec_->fetch.timeout_ms;
  r.tenant = tenant;
  for (const auto& [k, v] : spec_->mapping.fields) r.fields[k] = &v;
  auto apply = [&](const ApiSettings& api, const std::map<std::string, Source>& fields) {
    if (api.base_url) r.base_url = *api.base_url;
    if (api.timeout_ms) r.timeout_ms = *api.timeout_ms;
    if (api.tenant && tenant.empty()) r.tenant = *api.tenant;
    for (const auto& [k, v] : api.credentials) r.credentials[k] = v;
    for (const auto& [k, v] : fields) r.fields[k] = &v;
  };
  apply(settings_.api, settings_.fields);
  if (auto it = settings_.tenants.find(tenant); it != settings_.tenants.end()) {
    apply(it->second.api, it->second.fields);
  }
  return r;
}

Result<std::string> SpecProfile::AccessToken(const std::map<std::string, std::string>& vars,
                                             Fetcher& fetcher, int64_t now_s, int timeout_ms,
                                             bool force_refresh) const {
  const FetchAuthSpec& a = spec_->fetch.auth;
  rapidjson::Value none;
  const std::string url = Expand(a.token_url, vars, none, Escape::kNone);
  const std::string client_id = Expand(a.client_id, vars, none, Escape::kNone);
  const std::string client_secret = Expand(a.client_secret, vars, none, Escape::kNone);
  const std::string cache_key = url + "\n" + client_id;
  {
    std::lock_guard lock(token_mu_);
    auto it = tokens_.find(cache_key);
    // Refreshed a minute early, so a token never expires between check and use.
    if (!force_refresh && it != tokens_.end() && now_s + 60 < it->second.expires_s) {
      return it->second.value;
    }
  }
  HttpRequest req;
  req.method = "POST";
  req.url = url;
  req.timeout_ms = timeout_ms;
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                 {"Accept", "application/json"}};
  req.body = "grant_type=client_credentials";
  if (a.client_auth_basic) {
    req.headers.emplace_back("Authorization",
                             "Basic " + Base64Encode(client_id + ":" + client_secret));
  } else {
    req.body += "&client_id=" + UrlEncode(client_id) + "&client_secret=" + UrlEncode(client_secret);
  }
  if (!a.scope.empty())
    req.body += "&scope=" + UrlEncode(Expand(a.scope, vars, none, Escape::kNone));
  auto res = fetcher.Fetch("oauth2_token", req);
  if (!res.ok()) return res.error();
  const std::string what = "OAuth2 token request to " + url.substr(0, url.find('?'));
  if (res->status == 400 || res->status == 401 || res->status == 403) {
    Error e = Error::Auth(what + " answered " + std::to_string(res->status) +
                          ": check the client id and secret in the profile's api settings");
    e.http_status = res->status;
    return e;
  }
  if (res->status < 200 || res->status > 299) return StatusError(res->status, what, *res, now_s);
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
  std::lock_guard lock(token_mu_);
  tokens_[cache_key] = Token{*token, now_s + ttl};
  return *token;
}

Status SpecProfile::FetchRecord(const WorkItem& item, const rapidjson::Value& payload,
                                const Resolved& r, Fetcher& fetcher, int64_t now_s,
                                rapidjson::Document* record, std::string* gone_request) const {
  const FetchSpec& f = spec_->fetch;
  std::map<std::string, std::string> vars = {{"employee_key", item.employee_key},
                                             {"tenant", r.tenant}};
  // Only the credentials this fetch actually uses must be set: a profile may declare one for
  // another auth type that its config entry overrides.
  std::string used = r.base_url;
  for (const auto& [k, v] : f.headers) used += v;
  for (const auto& q : f.requests) used += q.path + q.body;
  switch (f.auth.type) {
    case FetchAuthSpec::Type::kBasic:
      used += f.auth.username + f.auth.password;
      break;
    case FetchAuthSpec::Type::kBearer:
    case FetchAuthSpec::Type::kHeader:
      used += f.auth.token;
      break;
    case FetchAuthSpec::Type::kOAuth2:
      used += f.auth.token_url + f.auth.client_id + f.auth.client_secret + f.auth.scope;
      break;
    case FetchAuthSpec::Type::kNone:
      break;
  }
  for (const std::string& c : f.credentials) {
    if (used.find("{" + c + "}") == std::string::npos) continue;
    auto ref = r.credentials.find(c);
    if (ref == r.credentials.end()) {
      if (!fetcher.live()) {
        vars[c] = "(" + c + ")";
        continue;
      }
      std::string message = "profile " + name_ + ": the HRIS API credential '";
      message.append(c).append("' is not configured: set api.").append(c);
      message.append("_env or api.").append(c).append("_file in its config entry");
      return Error::Auth(message);
    }
    auto secret = config::ResolveSecret(ref->second);
    if (!secret.ok()) {
      if (!fetcher.live()) {
        vars[c] = "(" + c + ")";
        continue;
      }
      return Error::Auth("profile " + name_ + ": HRIS API credential '" + c +
                         "': " + secret.error().message);
    }
    vars[c] = std::move(secret.value());
  }
  if (r.tenant.empty() && f.base_url.find("{tenant}") != std::string::npos &&
      r.base_url == f.base_url) {
    return Error::Permanent(
        "profile " + name_ +
        ": the HRIS API URL needs {tenant}: list the tenant under `tenants` and post to "
        "/webhooks/" +
        name_ + "/{tenant}, or set api.tenant (or api.base_url) in its config entry");
  }
  const std::string base = Expand(r.base_url, vars, payload, Escape::kUrl);
  record->SetObject();
  bool single = f.requests.size() == 1 && f.requests[0].name.empty();
  for (const FetchRequestSpec& q : f.requests) {
    HttpRequest req;
    req.method = q.method;
    req.url = base + Expand(q.path, vars, payload, Escape::kUrl);
    req.timeout_ms = r.timeout_ms;
    for (const auto& [k, v] : f.headers) {
      req.headers.emplace_back(k, Expand(v, vars, payload, Escape::kNone));
    }
    if (q.method == "POST") {
      req.body = Expand(q.body, vars, payload, Escape::kJson);
      req.headers.emplace_back("Content-Type", q.content_type);
    }
    const FetchAuthSpec& a = f.auth;
    size_t auth_index = req.headers.size();
    switch (a.type) {
      case FetchAuthSpec::Type::kNone:
        break;
      case FetchAuthSpec::Type::kBasic:
        req.headers.emplace_back(
            "Authorization",
            "Basic " + Base64Encode(Expand(a.username, vars, payload, Escape::kNone) + ":" +
                                    Expand(a.password, vars, payload, Escape::kNone)));
        break;
      case FetchAuthSpec::Type::kBearer:
        req.headers.emplace_back("Authorization",
                                 "Bearer " + Expand(a.token, vars, payload, Escape::kNone));
        break;
      case FetchAuthSpec::Type::kHeader: {
        std::string token = Expand(a.token, vars, payload, Escape::kNone);
        req.headers.emplace_back(a.header, a.scheme.empty() ? token : a.scheme + " " + token);
        break;
      }
      case FetchAuthSpec::Type::kOAuth2: {
        auto token = AccessToken(vars, fetcher, now_s, r.timeout_ms, false);
        if (!token.ok()) return token.error();
        req.headers.emplace_back("Authorization", "Bearer " + *token);
        break;
      }
    }
    const std::string what = "HRIS API " + req.method + " " + req.url.substr(0, req.url.find('?'));
    auto res = fetcher.Fetch(q.name, req);
    if (res.ok() && res->status == 401 && a.type == FetchAuthSpec::Type::kOAuth2) {
      // The cached token may have been revoked early: one fresh token, one more try.
      auto token = AccessToken(vars, fetcher, now_s, r.timeout_ms, true);
      if (!token.ok()) return token.error();
      req.headers[auth_index].second = "Bearer " + *token;
      res = fetcher.Fetch(q.name, req);
    }
    if (!res.ok()) return res.error();
    if (res->status == 404 || res->status == 410) {
      if (q.optional) {
        record->AddMember(StringValue(q.name, record->GetAllocator()), rapidjson::Value(),
                          record->GetAllocator());
        continue;
      }
      *gone_request = what + " answered " + std::to_string(res->status);
      return {};
    }
    if (res->status < 200 || res->status > 299) return StatusError(res->status, what, *res, now_s);
    rapidjson::Document doc;
    std::string error;
    if (!ParseJson(res->body, &doc, &error)) {
      std::string message = what + " answered " + std::to_string(res->status);
      message.append(" with a body that is not JSON (").append(error).append(")");
      return Permanent(message);
    }
    const rapidjson::Value* rec = Resolve(doc, q.record);
    if (rec == nullptr || rec->IsNull()) {
      return Permanent(what + ": the answer has no record at " +
                       (q.record.empty() ? std::string("\"\"") : q.record) +
                       " (fetch.record in the profile)");
    }
    if (single) {
      record->CopyFrom(*rec, record->GetAllocator());
    } else {
      rapidjson::Value copy(*rec, record->GetAllocator());
      record->AddMember(StringValue(q.name, record->GetAllocator()), copy, record->GetAllocator());
    }
  }
  return {};
}

namespace {

// fetch.recheck_at: a date in the record read back at which its state changes by itself. Due
// from 00:00 UTC that day, as date_reached counts days, so the fresh read on the day maps the
// change. A value that is no date would keep a leaver active past their last day unnoticed: it
// is a problem (the item is refused with the reason), not a silent "no date".
void PlanRecheck(const rapidjson::Value& record, const std::string& pointer, int64_t now_s,
                 Plan* plan, std::vector<scim::ValidationProblem>* problems) {
  const rapidjson::Value* v = Resolve(record, pointer);
  if (v == nullptr || v->IsNull()) return;
  std::optional<int64_t> when;
  std::string text;
  if (v->IsString()) {
    text.assign(v->GetString(), v->GetStringLength());
    if (Trim(text).empty()) return;
    when = ParseTimeSeconds(text);
  }
  if (!when) {
    problems->push_back(
        {pointer,
         "the record's value is not a date (fetch.recheck_at), so the change it dates "
         "cannot be applied on its day: correct it in the HR system, then replay the "
         "item"});
    return;
  }
  const int64_t day_start = (*when >= 0 ? *when / 86400 : -((-*when + 86399) / 86400)) * 86400;
  if (day_start <= now_s) return;  // due already: the mapping applies it now
  plan->recheck_at_s = day_start;
  plan->reason += "; the record dates a change on " + text.substr(0, 64) + " (" + pointer +
                  "): planned again then (fetch.recheck_at)";
}

}  // namespace

Result<Plan> SpecProfile::PlanItem(const WorkItem& item, Fetcher& fetcher, int64_t now_s) const {
  rapidjson::Document payload;
  std::string error;
  if (!ParseJson(item.payload, &payload, &error)) {
    return Permanent("the queued payload is not JSON: " + error);
  }
  Plan plan;
  const ProfileSpec& s = *spec_;
  const ActionRule* rule = nullptr;
  for (const ActionRule& r : s.actions) {
    bool event_ok = r.events.empty();
    for (const std::string& pattern : r.events)
      event_ok = event_ok || GlobMatch(pattern, item.event_type);
    if (!event_ok) continue;
    bool all = true;
    for (const Condition& c : r.when) all = all && ConditionHolds(c, payload);
    if (all) {
      rule = &r;
      break;
    }
  }
  const std::string event =
      item.event_type.empty() ? std::string("(no event type)") : item.event_type;
  if (rule != nullptr) {
    plan.action = rule->action;
    plan.reason = "actions[" + std::to_string(rule->index) + "]: " + event + " -> " +
                  ActionName(rule->action);
    if (rule->effective_at.configured) {
      EvalContext ctx;
      ctx.payload = &payload;
      ctx.item = &payload;
      ctx.default_scope = Scope::kPayload;
      ctx.now_s = now_s;
      if (auto when = Evaluate(rule->effective_at, ctx)) {
        if (auto t = ParseTimeSeconds(*when)) plan.effective_at_s = *t;
      }
    }
  } else if (IsOtherEvent(s, item.event_type)) {
    // Queued before the profile listed it (ingest acknowledges these without enqueueing).
    plan.action = Action::kIgnore;
    plan.reason = event + " is not about an employee (events.other) -> ignore";
  } else {
    plan.action = s.default_action;
    plan.reason =
        "no rule matches " + event + " -> " + ActionName(s.default_action) + " (default_action" +
        (s.fetch.enabled && !s.default_action_set
             ? std::string(": the profile fetches the current record, so syncing is safe)")
             : std::string(")"));
  }
  if (!s.fetch.enabled) plan.version = OrderingKey(item.occurred_at);
  if (plan.action == Action::kIgnore) return plan;

  const Resolved r = ResolveSettings(item.tenant);
  rapidjson::Document record;
  const rapidjson::Value* source = &payload;
  bool full_record = !s.fetch.enabled;
  if (s.fetch.enabled && (plan.action == Action::kSync || plan.action == Action::kReactivate)) {
    std::string gone;
    Status st = FetchRecord(item, payload, r, fetcher, now_s, &record, &gone);
    if (!st.ok()) return st.error();
    if (!gone.empty()) {
      plan.action = s.fetch.not_found;
      plan.reason =
          gone + ": the employee is gone -> " + ActionName(plan.action) + " (fetch.not_found)";
      if (plan.action == Action::kIgnore) return plan;
    } else {
      plan.fetched = true;
      full_record = true;
      source = &record;
    }
  }

  scim::User user;
  std::vector<scim::ValidationProblem> mapping_problems;
  if (full_record) {
    std::map<std::string, std::string> vars = {
        {"employee_key", item.employee_key}, {"tenant", r.tenant}, {"event_type", item.event_type}};
    EvalContext ctx;
    ctx.record = s.fetch.enabled ? source : nullptr;
    ctx.payload = &payload;
    ctx.item = &payload;
    ctx.default_scope = s.mapping.from;
    ctx.variables = &vars;
    ctx.now_s = now_s;
    auto get = [&](const char* attr) -> std::optional<std::string> {
      auto it = r.fields.find(attr);
      if (it == r.fields.end()) return std::nullopt;
      return Evaluate(*it->second, ctx);
    };
    auto opt = [&](const char* attr, std::optional<std::string>* out) {
      auto v = get(attr);
      if (v) *out = Trim(*v);
    };
    user.external_id = get("externalId").value_or(item.employee_key);
    user.user_name = Trim(get("userName").value_or(""));
    opt("givenName", &user.given_name);
    opt("familyName", &user.family_name);
    opt("displayName", &user.display_name);
    opt("email", &user.email);
    opt("title", &user.title);
    opt("locale", &user.locale);
    opt("userType", &user.user_type);
    opt("department", &user.department);
    opt("costCenter", &user.cost_center);
    opt("organization", &user.organization);
    opt("employeeNumber", &user.employee_number);
    if (auto pw = get("password"); pw && !pw->empty()) user.password = *pw;
    if (auto active = get("active"); active && !Trim(*active).empty()) {
      bool b = true;
      if (ParseBool(*active, &b)) {
        user.active = b;
      } else {
        mapping_problems.push_back(
            {"active", "the mapped value '" + *active +
                           "' is not true or false: add a lookup or date_reached transform"});
      }
    }
  } else {
    user.external_id = item.employee_key;
  }
  switch (plan.action) {
    case Action::kReactivate:
      user.active = true;
      break;
    case Action::kSuspend:
    case Action::kDelete:
      user.active = false;
      break;
    default:
      break;
  }
  if (plan.fetched && !s.fetch.recheck_at.empty()) {
    PlanRecheck(*source, s.fetch.recheck_at, now_s, &plan, &mapping_problems);
  }
  if (plan.action == Action::kSync || plan.action == Action::kReactivate) {
    plan.problems = scim::Validate(user);
    plan.problems.insert(plan.problems.end(), mapping_problems.begin(), mapping_problems.end());
  }
  plan.user = std::move(user);
  return plan;
}

}  // namespace internal
}  // namespace scimsync::connectors
