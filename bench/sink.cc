#include "sink.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <cstdlib>

namespace scimsync::bench {
namespace {

// The N of the first "Title N" in a request body; -1 when there is none.
int EventIndexIn(const std::string& body) {
  static const std::string kTitle = "\"Title ";
  auto at = body.find(kTitle);
  if (at == std::string::npos) return -1;
  return std::atoi(body.c_str() + at + kTitle.size());
}

// totalResults of a ListResponse; -1 when there is none.
int64_t FoundIn(const std::string& response) {
  static const std::string kTotal = "\"totalResults\":";
  auto at = response.find(kTotal);
  if (at == std::string::npos) return -1;
  return std::atoll(response.c_str() + at + kTotal.size());
}

// The value of a decoded filter `ATTRIBUTE eq "VALUE"` (the SCIM client's only form), unescaped;
// false when the filter is about another attribute.
bool FilterValue(const std::string& filter, const std::string& attribute, std::string* value) {
  const std::string head = attribute + " eq \"";
  if (filter.size() < head.size() + 1 || filter.compare(0, head.size(), head) != 0 ||
      filter.back() != '"') {
    return false;
  }
  value->clear();
  for (size_t i = head.size(); i + 1 < filter.size(); ++i) {
    if (filter[i] == '\\' && i + 2 < filter.size()) ++i;
    value->push_back(filter[i]);
  }
  return true;
}

std::string StringMember(const rapidjson::Value& v, const char* name) {
  if (!v.IsObject()) return "";
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

// SCIM id -> externalId of every user the sink holds: whose a request to /Users/{id} is.
std::map<std::string, std::string> EmployeeOfIds(const testing::FakeScimServer& server) {
  std::map<std::string, std::string> out;
  for (const auto& json : server.Users()) {
    rapidjson::Document d;
    d.Parse(json.c_str(), json.size());
    std::string id = StringMember(d, "id");
    if (!id.empty()) out[id] = StringMember(d, "externalId");
  }
  return out;
}

}  // namespace

Sink::Sink(int threads) {
  testing::FakeScimOptions o;
  o.api_key = "bench-key";
  o.threads = threads;
  // cpp-httplib closes a connection after 5 requests by default, which made the workers
  // reconnect every few SCIM requests; JumpCloud's front end, like nginx, keeps it far longer.
  o.keep_alive_max_requests = 1000;
  // The latency analysis needs each write's arrival time and body.
  o.record_requests = true;
  server_ = std::make_unique<testing::FakeScimServer>(o);
}

SinkSummary Sink::Summarize() const {
  SinkSummary s;
  const std::map<std::string, std::string> employee_of = EmployeeOfIds(*server_);
  const std::vector<testing::RecordedRequest> requests = server_->requests();
  std::map<std::string, int64_t> posted;         // externalId -> its POSTs answered 2xx
  std::map<std::string, int64_t> empty_lookups;  // externalId -> its lookups that found none
  for (const auto& r : requests) {
    ++s.requests;
    RequestKinds& k = s.kinds;
    const bool ok = r.status >= 200 && r.status <= 299;
    std::string value;
    if (!ok) {
      ++k.not_2xx;
    } else if (r.method == "GET" && !r.filter.empty()) {
      const int64_t found = FoundIn(r.response);
      ++(found > 0 ? k.lookup_found : k.lookup_none);
      if (FilterValue(r.filter, "userName", &value)) ++k.username_lookups;
      if (found == 0 && FilterValue(r.filter, "externalId", &value)) ++empty_lookups[value];
    } else if (r.method == "GET" && r.path.rfind("/Users/", 0) == 0) {
      ++k.get_by_id;
    } else if (r.method == "POST") {
      ++k.post;
    } else if (r.method == "PATCH") {
      ++k.patch;
    } else if (r.method == "PUT") {
      ++k.put;
    } else if (r.method == "DELETE") {
      ++k.del;
    } else {
      ++k.other;
    }
    if (s.first_request_us == 0 || r.arrived_us < s.first_request_us) {
      s.first_request_us = r.arrived_us;
    }
    if (r.method == "GET" || r.status < 200 || r.status > 299) continue;
    ++s.all_writes;
    if (r.method == "POST") ++s.creates;
    std::string who;
    if (r.method == "POST") {
      rapidjson::Document d;
      d.Parse(r.body.c_str(), r.body.size());
      who = StringMember(d, "externalId");
      ++posted[who];
    } else if (r.path.rfind("/Users/", 0) == 0) {
      auto it = employee_of.find(r.path.substr(7));
      if (it != employee_of.end()) who = it->second;
    }
    int index = EventIndexIn(r.body);
    if (who.empty() || index < 0) continue;
    s.writes[who].push_back(Write{r.arrived_us, index});
    ++s.writes_total;
    s.last_write_us = std::max(s.last_write_us, r.arrived_us);
  }
  // An employee looked up and created in the phase was a hire: that lookup is the first of the
  // floor's two requests per create. The others were looked up and never created.
  for (const auto& [id, n] : empty_lookups) {
    auto it = posted.find(id);
    if (it == posted.end()) {
      ++s.kinds.leavers_never_created;
      s.kinds.leaver_lookups += n;
    } else if (n > it->second) {
      s.kinds.created_extra_lookups += n - it->second;
    }
  }
  for (auto& [who, list] : s.writes) {
    std::sort(list.begin(), list.end(),
              [](const Write& a, const Write& b) { return a.at_us < b.at_us; });
  }
  return s;
}

void Sink::WriteLog(std::ostream& out, const std::string& phase) const {
  const std::map<std::string, std::string> employee_of = EmployeeOfIds(*server_);
  for (const auto& r : server_->requests()) {
    std::string who;
    if (!FilterValue(r.filter, "externalId", &who) && r.path.rfind("/Users/", 0) == 0) {
      auto it = employee_of.find(r.path.substr(7));
      if (it != employee_of.end()) who = it->second;
    }
    if (who.empty() && r.method == "POST") {
      rapidjson::Document d;
      d.Parse(r.body.c_str(), r.body.size());
      who = StringMember(d, "externalId");
    }
    out << phase << '\t' << r.arrived_us << '\t' << r.method << '\t' << r.path << '\t' << r.filter
        << '\t' << r.status << '\t' << (r.filter.empty() ? -1 : FoundIn(r.response)) << '\t' << who
        << '\t' << EventIndexIn(r.body) << '\n';
  }
}

std::vector<std::string> Sink::Stale(const std::map<std::string, Expected>& expected) const {
  std::vector<std::string> stale;
  for (const auto& [id, want] : expected) {
    auto users = server_->FindUsers("externalId", id);
    // No account is created for an employee whose newest state is terminated: a leaver whose
    // events coalesced into one sync has none, and is right.
    if (users.empty() && !want.active) continue;
    if (users.size() != 1) {
      stale.push_back(id + ": " + std::to_string(users.size()) + " users");
      continue;
    }
    rapidjson::Document d;
    d.Parse(users[0].c_str());
    std::string title = StringMember(d, "title");
    bool active = true;
    if (d.IsObject()) {
      auto it = d.FindMember("active");
      if (it != d.MemberEnd() && it->value.IsBool()) active = it->value.GetBool();
    }
    if (title != "Title " + std::to_string(want.event_index) || active != want.active) {
      stale.push_back(id + ": title '" + title + "' active " + (active ? "true" : "false") +
                      ", want 'Title " + std::to_string(want.event_index) + "' " +
                      (want.active ? "true" : "false"));
    }
  }
  return stale;
}

}  // namespace scimsync::bench
