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

std::string StringMember(const rapidjson::Value& v, const char* name) {
  if (!v.IsObject()) return "";
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
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
  std::map<std::string, std::string> employee_of;  // SCIM id -> externalId
  for (const auto& json : server_->Users()) {
    rapidjson::Document d;
    d.Parse(json.c_str(), json.size());
    std::string id = StringMember(d, "id");
    if (!id.empty()) employee_of[id] = StringMember(d, "externalId");
  }
  for (const auto& r : server_->requests()) {
    ++s.requests;
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
  for (auto& [who, list] : s.writes) {
    std::sort(list.begin(), list.end(),
              [](const Write& a, const Write& b) { return a.at_us < b.at_us; });
  }
  return s;
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
