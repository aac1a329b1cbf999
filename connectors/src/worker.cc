// The worker side of a profile: action, fetch-back, mapping, validation.
#include <algorithm>
#include <cctype>

#include "codec.h"
#include "eval.h"
#include "events.h"
#include "json.h"
#include "profile_impl.h"
#include "scimsync/log.h"
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
  HrisConnection api;
  std::map<std::string, const Source*> fields;
};

SpecProfile::Resolved SpecProfile::ResolveSettings(const std::string& tenant) const {
  Resolved r;
  r.api = ResolveConnection(spec_->fetch.base_url, spec_->fetch.timeout_ms, settings_, tenant);
  for (const auto& [k, v] : spec_->mapping.fields) r.fields[k] = &v;
  for (const auto& [k, v] : settings_.fields) r.fields[k] = &v;
  if (auto it = settings_.tenants.find(tenant); it != settings_.tenants.end()) {
    for (const auto& [k, v] : it->second.fields) r.fields[k] = &v;
  }
  return r;
}

Status SpecProfile::FetchRecord(const WorkItem& item, const rapidjson::Value& payload,
                                const Resolved& r, Fetcher& fetcher, int64_t now_s,
                                rapidjson::Document* record, std::string* gone_request) const {
  const FetchSpec& f = spec_->fetch;
  HrisClient client(name_, f.auth, f.headers, r.api.timeout_ms, tokens_, fetcher, now_s);
  client.SetVariable("employee_key", item.employee_key);
  client.SetVariable("tenant", r.api.tenant);
  client.set_payload(&payload);
  std::string used = r.api.base_url + client.Templates();
  for (const auto& q : f.requests) used += q.path + q.body;
  if (Status st = client.ResolveCredentials(f.credentials, r.api.credentials, used); !st.ok()) {
    // A worker retries an auth error with backoff until a reload fixes the setting; an invalid
    // item would be dead-lettered, and the employee's change lost for a config slip.
    return Error::Auth(st.error().message);
  }
  if (r.api.tenant.empty() && f.base_url.find("{tenant}") != std::string::npos &&
      r.api.base_url == f.base_url) {
    return Error::Permanent(
        "profile " + name_ +
        ": the HRIS API URL needs {tenant}: list the tenant under `tenants` and post to "
        "/webhooks/" +
        name_ + "/{tenant}, or set api.tenant (or api.base_url) in its config entry");
  }
  const std::string base = client.Expand(r.api.base_url, Escape::kUrl);
  record->SetObject();
  bool single = f.requests.size() == 1 && f.requests[0].name.empty();
  for (const FetchRequestSpec& q : f.requests) {
    HttpRequest req;
    req.method = q.method;
    req.url = base + client.Expand(q.path, Escape::kUrl);
    std::string content_type;
    if (q.method == "POST") {
      req.body = client.Expand(q.body, Escape::kJson);
      content_type = q.content_type;
    }
    const std::string what = "HRIS API " + req.method + " " + req.url.substr(0, req.url.find('?'));
    auto res = client.Send(q.name, std::move(req), content_type);
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
    if (res->status < 200 || res->status > 299) {
      return client.StatusError(
          what, *res,
          "the HRIS API credentials are wrong or lack access (check the profile's api settings)");
    }
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
    std::map<std::string, std::string> vars = {{"employee_key", item.employee_key},
                                               {"tenant", r.api.tenant},
                                               {"event_type", item.event_type}};
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
