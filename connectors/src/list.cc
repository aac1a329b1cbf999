// The reconciliation side of a profile: the paginated list endpoint that yields every employee,
// and the items a reconciliation enqueues for the workers (docs/profiles.md, `list`).
#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "codec.h"
#include "eval.h"
#include "json.h"
#include "profile_impl.h"
#include "scimsync/log.h"
#include "scimsync/strings.h"

namespace scimsync::connectors {

Result<std::vector<ListedEmployee>> Profile::ListEmployees(const std::string& /*tenant*/,
                                                           Fetcher& /*fetcher*/,
                                                           int64_t /*now_s*/) const {
  return Error::Invalid("profile " + name() +
                        " has no list section: it cannot list the HRIS's employees "
                        "(docs/profiles.md, list)");
}

WorkItem Profile::ReconcileItem(const ListedEmployee& employee) const {
  WorkItem item;
  item.tenant = employee.tenant;
  item.employee_key = employee.employee_key;
  item.event_type = kReconcileEventType;
  item.occurred_at = employee.version;
  item.payload = "{}";
  return item;
}

Result<Plan> Profile::PlanListed(const ListedEmployee& employee, Fetcher& fetcher,
                                 int64_t now_s) const {
  return PlanItem(ReconcileItem(employee), fetcher, now_s);
}

namespace internal {
namespace {

std::string WithParam(std::string url, const std::string& name, const std::string& value) {
  url += url.find('?') == std::string::npos ? '?' : '&';
  url += UrlEncode(name) + "=" + UrlEncode(value);
  return url;
}

// "scheme://host[:port]" of an absolute URL; empty when it is not one.
std::string Origin(const std::string& url) {
  config::UrlParts parts;
  if (!config::ParseUrl(url, &parts)) return "";
  std::string out = parts.scheme + "://" + parts.host;
  if (parts.port != 0) out += ":" + std::to_string(parts.port);
  return out;
}

// `inner` placed at `pointer` inside otherwise empty objects ("" is `inner` itself), so that
// resolving `pointer` in the result finds it again.
std::string Nest(const std::string& inner, const std::string& pointer) {
  if (pointer.empty()) return inner;
  std::string out;
  std::string closing;
  size_t i = 1;  // past the leading '/'
  while (true) {
    size_t slash = pointer.find('/', i);
    std::string token =
        pointer.substr(i, slash == std::string::npos ? std::string::npos : slash - i);
    std::string name;
    for (size_t k = 0; k < token.size(); ++k) {
      if (token[k] == '~' && k + 1 < token.size()) {
        name += token[k + 1] == '1' ? '/' : '~';
        ++k;
      } else {
        name += token[k];
      }
    }
    out += "{\"";
    AppendJsonEscaped(out, name);
    out += "\":";
    closing += "}";
    if (slash == std::string::npos) break;
    i = slash + 1;
  }
  return out + inner + closing;
}

// Answers the profile's single fetch request with a record the list already yielded, so
// mapping a listed employee costs no request; anything else (a token) goes to `inner`.
class ListedRecordFetcher final : public Fetcher {
 public:
  ListedRecordFetcher(const FetchRequestSpec& request, std::string body, Fetcher& inner)
      : request_(request), body_(std::move(body)), inner_(inner) {}
  Result<HttpResponse> Fetch(const std::string& name, const HttpRequest& request) override {
    if (name != request_.name) return inner_.Fetch(name, request);
    HttpResponse out;
    out.status = 200;
    out.body = body_;
    return out;
  }
  bool live() const override { return inner_.live(); }

 private:
  const FetchRequestSpec& request_;
  std::string body_;
  Fetcher& inner_;
};

}  // namespace

std::vector<std::string> SpecProfile::list_tenants() const {
  if (settings_.tenants.empty()) return {""};
  std::vector<std::string> out;
  for (const auto& [tenant, unused] : settings_.tenants) out.push_back(tenant);
  return out;
}

Result<std::vector<ListedEmployee>> SpecProfile::ListEmployees(const std::string& tenant,
                                                               Fetcher& fetcher,
                                                               int64_t now_s) const {
  const ListSpec& l = spec_->list;
  if (!l.enabled) return Profile::ListEmployees(tenant, fetcher, now_s);
  const FetchSpec& f = spec_->fetch;

  // The list's own connection where it has one, else fetch's; then the entry's and the
  // tenant's api settings.
  const HrisConnection c =
      ResolveConnection(l.base_url.empty() ? f.base_url : l.base_url,
                        l.timeout_ms.value_or(f.timeout_ms), settings_, tenant);
  if (c.base_url.empty()) {
    return Error::Invalid("profile " + name_ +
                          ": the list has no base URL: set api.base_url in its config entry");
  }
  const bool needs_tenant =
      (!c.base_url_configured && c.base_url.find("{tenant}") != std::string::npos) ||
      l.path.find("{tenant}") != std::string::npos;
  if (c.tenant.empty() && needs_tenant) {
    return Error::Invalid("profile " + name_ +
                          ": the HRIS list URL needs {tenant}: set api.tenant (or api.base_url) "
                          "in its config entry");
  }

  HrisClient client(name_, l.auth ? *l.auth : f.auth, l.headers ? *l.headers : f.headers,
                    c.timeout_ms, tokens_, fetcher, now_s);
  client.SetVariable("tenant", c.tenant);
  std::vector<std::string> credentials = f.credentials;
  credentials.insert(credentials.end(), l.credentials.begin(), l.credentials.end());
  if (Status st = client.ResolveCredentials(credentials, c.credentials,
                                            c.base_url + l.path + l.body + client.Templates());
      !st.ok()) {
    return st.error();
  }

  const std::string first_url =
      client.Expand(c.base_url, Escape::kUrl) + client.Expand(l.path, Escape::kUrl);
  const PaginationSpec& g = l.pagination;
  std::vector<ListedEmployee> out;
  std::set<std::string> seen;
  int64_t position = g.start;  // page number or offset
  std::string cursor;
  std::string next_url;
  for (int page = 0;; ++page) {
    if (page >= g.max_pages) {
      return Error::Permanent("profile " + name_ + ": the HRIS list did not end within " +
                              std::to_string(g.max_pages) + " pages (list.pagination.max_pages)");
    }
    std::string url = next_url.empty() ? first_url : next_url;
    switch (g.style) {
      case PaginationSpec::Style::kNone:
        break;
      case PaginationSpec::Style::kPage:
      case PaginationSpec::Style::kOffset:
        url = WithParam(url, g.param, std::to_string(position));
        break;
      case PaginationSpec::Style::kCursor:
        if (!cursor.empty()) url = WithParam(url, g.param, cursor);
        break;
    }
    if (!g.size_param.empty() && next_url.empty()) {
      url = WithParam(url, g.size_param, std::to_string(g.size));
    }
    const std::string what = "HRIS API " + l.method + " " + url.substr(0, url.find('?')) +
                             " (page " + std::to_string(page + 1) + ")";
    HttpRequest req;
    req.method = l.method;
    req.url = url;
    std::string content_type;
    if (l.method == "POST") {
      req.body = client.Expand(l.body, Escape::kJson);
      content_type = l.content_type;
    }
    auto res = client.Send("list", std::move(req), content_type);
    if (!res.ok()) {
      Error e = res.error();
      e.message = "page " + std::to_string(page + 1) + " of the list: " + e.message;
      return e;
    }
    if (res->status < 200 || res->status > 299) {
      return client.StatusError(what, *res,
                                "the HRIS API credentials are wrong or may not list employees "
                                "(check the profile's api settings and the API user's "
                                "permissions)",
                                "check list.path in the profile and api.base_url");
    }
    rapidjson::Document doc;
    std::string error;
    if (!ParseJson(res->body, &doc, &error)) {
      std::string message = what + " answered a body that is not JSON (";
      message.append(error).append(")");
      return Error::Permanent(message);
    }
    const rapidjson::Value* records = Resolve(doc, l.records);
    if (records == nullptr || !records->IsArray()) {
      return Error::Permanent(what + ": the answer has no array of records at " +
                              (l.records.empty() ? std::string("\"\"") : l.records) +
                              " (list.records in the profile)");
    }
    size_t index = 0;
    for (const auto& record : records->GetArray()) {
      auto key = ScalarText(Resolve(record, l.employee_key));
      if (!key || Trim(*key).empty()) {
        return Error::Permanent(what + ": record " + std::to_string(index) + " of page " +
                                std::to_string(page + 1) + " has no employee key at " +
                                l.employee_key + " (list.employee_key in the profile)");
      }
      ++index;
      // Offset pages shift when an employee is added while we list: one may come twice.
      if (!seen.insert(*key).second) continue;
      ListedEmployee e;
      e.tenant = tenant;
      e.employee_key = *key;
      if (l.yields_records) e.record = Compact(record);
      if (!l.version.empty()) e.version = ScalarText(Resolve(record, l.version)).value_or("");
      out.push_back(std::move(e));
    }
    const size_t received = records->Size();
    if (!g.has_more.empty()) {
      auto more = ScalarText(Resolve(doc, g.has_more));
      if (!more || *more == "false" || *more == "0") return out;
    }
    switch (g.style) {
      case PaginationSpec::Style::kNone:
        return out;
      case PaginationSpec::Style::kPage:
      case PaginationSpec::Style::kOffset: {
        // An empty page ends the listing, not a short one: APIs cap page sizes.
        if (received == 0) return out;
        position += g.style == PaginationSpec::Style::kPage ? 1 : static_cast<int64_t>(received);
        if (!g.total.empty()) {
          auto total = ScalarText(Resolve(doc, g.total));
          char* end = nullptr;
          const long long t = total ? std::strtoll(total->c_str(), &end, 10) : -1;
          const int64_t listed = g.style == PaginationSpec::Style::kPage
                                     ? static_cast<int64_t>(seen.size())
                                     : position - g.start;
          if (total && end != total->c_str() && listed >= t) return out;
        }
        break;
      }
      case PaginationSpec::Style::kCursor: {
        if (!g.cursor.empty()) {
          auto next = ScalarText(Resolve(doc, g.cursor));
          if (!next || next->empty()) return out;
          if (*next == cursor) {
            return Error::Permanent(what + " answered the same cursor twice (" +
                                    l.path.substr(0, l.path.find('?')) +
                                    "): list.pagination.cursor points at the wrong field");
          }
          cursor = *next;
        } else {
          auto next = ScalarText(Resolve(doc, g.next_url));
          if (!next || next->empty()) return out;
          std::string absolute = *next;
          if (absolute[0] == '/') absolute.insert(0, Origin(first_url));
          // Credentials go along with the next request: only ever to the same origin.
          if (Origin(absolute).empty() || Origin(absolute) != Origin(first_url)) {
            return Error::Permanent(what +
                                    ": the next page's URL is on another host; "
                                    "refusing to send the HRIS credentials there");
          }
          if (absolute == next_url) {
            return Error::Permanent(what + " answered the same next URL twice");
          }
          next_url = absolute;
        }
        break;
      }
    }
  }
}

WorkItem SpecProfile::ReconcileItem(const ListedEmployee& employee) const {
  WorkItem item = Profile::ReconcileItem(employee);
  if (!spec_->fetch.enabled && !employee.record.empty()) {
    item.payload = Nest(employee.record, spec_->list.record_at);
  }
  return item;
}

Result<Plan> SpecProfile::PlanListed(const ListedEmployee& employee, Fetcher& fetcher,
                                     int64_t now_s) const {
  const WorkItem item = ReconcileItem(employee);
  const FetchSpec& f = spec_->fetch;
  if (f.enabled && !employee.record.empty() && f.requests.size() == 1) {
    ListedRecordFetcher listed(f.requests[0], Nest(employee.record, f.requests[0].record), fetcher);
    return PlanItem(item, listed, now_s);
  }
  return PlanItem(item, fetcher, now_s);
}

}  // namespace internal
}  // namespace scimsync::connectors
