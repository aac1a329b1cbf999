// Golden fixtures: for every built-in profile, a webhook as the vendor sends it and a recorded
// fetch-back answer go in; the items, the action, the HRIS requests and the SCIM user come out.
// Layout (tests/connectors/fixtures/<profile>/<case>/):
//   config.yaml       the profile's config entry
//   request.json | request.form | request.txt   the body (the extension picks the Content-Type)
//   headers.txt       optional "Name: value" lines
//   response.json     the HRIS answer (profiles with one request), or response-<name>.json
//   expected.json     {"now", "tenant", "handshake", "acknowledged": [event types answered 2xx
//                      without enqueueing], "items": [{employee_key, event_type, tenant,
//                      dedup_id, action, effective_at, recheck_at, requests, user, version,
//                      problems}]}
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "scimsync/connectors/profile.h"
#include "scimsync/scim/protocol.h"
#include "test_util.h"

namespace scimsync::connectors {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(SCIMSYNC_SOURCE_DIR) / "tests/connectors/fixtures";

using testing::Compact;
using testing::Slurp;

// Answers each named request from its recorded file and remembers what was asked.
class FixtureFetcher final : public Fetcher {
 public:
  explicit FixtureFetcher(fs::path dir) : dir_(std::move(dir)) {}
  Result<HttpResponse> Fetch(const std::string& name, const HttpRequest& request) override {
    HttpResponse out;
    out.status = 200;
    if (name == "oauth2_token") {
      out.body = R"({"access_token":"fixture-token","expires_in":3600})";
      return out;
    }
    requests.push_back(request.method + " " + request.url +
                       (request.body.empty() ? "" : " " + request.body));
    fs::path file = dir_ / (name.empty() ? "response.json" : "response-" + name + ".json");
    if (!fs::exists(file)) {
      out.status = 404;
      return out;
    }
    out.body = Slurp(file);
    return out;
  }
  bool live() const override { return false; }
  std::vector<std::string> requests;

 private:
  fs::path dir_;
};

void RunCase(const fs::path& dir) {
  SCOPED_TRACE(dir.string());
  rapidjson::Document expected;
  expected.Parse(Slurp(dir / "expected.json").c_str());
  ASSERT_FALSE(expected.HasParseError()) << "expected.json is not JSON";

  config::Problems problems("config.yaml");
  auto profile = LoadProfile(testing::Entry(Slurp(dir / "config.yaml")), &problems);
  ASSERT_NE(profile, nullptr) << testing::ProblemsText(problems);

  Request request;
  for (const char* ext : {"json", "form", "txt"}) {
    fs::path body = dir / (std::string("request.") + ext);
    if (!fs::exists(body)) continue;
    request.body = Slurp(body);
    request.content_type = std::string(ext) == "json"   ? "application/json"
                           : std::string(ext) == "form" ? "application/x-www-form-urlencoded"
                                                        : "text/plain";
  }
  ASSERT_FALSE(request.body.empty()) << "no request.json/.form/.txt";
  if (fs::exists(dir / "headers.txt")) {
    std::istringstream lines(Slurp(dir / "headers.txt"));
    for (std::string line; std::getline(lines, line);) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      request.headers.emplace_back(line.substr(0, colon), line.substr(colon + 2));
    }
  }
  if (expected.HasMember("tenant")) request.tenant = expected["tenant"].GetString();
  int64_t now = expected.HasMember("now") ? expected["now"].GetInt64() : 1'795'000'000;

  auto decoded = profile->Decode(request);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  bool handshake = expected.HasMember("handshake") && expected["handshake"].GetBool();
  EXPECT_EQ(decoded->handshake, handshake);
  std::vector<std::string> acknowledged, want_acknowledged;
  for (const AcknowledgedItem& a : decoded->acknowledged) acknowledged.push_back(a.event_type);
  if (expected.HasMember("acknowledged")) {
    for (const auto& a : expected["acknowledged"].GetArray()) {
      want_acknowledged.emplace_back(a.GetString());
    }
  }
  EXPECT_EQ(acknowledged, want_acknowledged);
  const auto& items = expected["items"].GetArray();
  ASSERT_EQ(decoded->items.size(), items.Size());
  for (rapidjson::SizeType i = 0; i < items.Size(); ++i) {
    SCOPED_TRACE("item " + std::to_string(i));
    const rapidjson::Value& want = items[i];
    const DecodedItem& got = decoded->items[i];
    EXPECT_EQ(got.employee_key, want["employee_key"].GetString());
    EXPECT_EQ(got.event_type, want["event_type"].GetString());
    if (want.HasMember("dedup_id")) {
      EXPECT_EQ(got.dedup_id, want["dedup_id"].GetString());
    }
    if (want.HasMember("tenant")) {
      EXPECT_EQ(got.tenant, want["tenant"].GetString());
    }

    FixtureFetcher fetcher(dir);
    WorkItem work{got.tenant.empty() ? request.tenant : got.tenant, got.employee_key,
                  got.event_type, got.occurred_at, got.payload};
    auto plan = profile->PlanItem(work, fetcher, now);
    ASSERT_TRUE(plan.ok()) << plan.error().message;
    EXPECT_STREQ(ActionName(plan->action), want["action"].GetString()) << plan->reason;
    std::vector<std::string> want_requests;
    if (want.HasMember("requests")) {
      for (const auto& r : want["requests"].GetArray()) want_requests.emplace_back(r.GetString());
    }
    EXPECT_EQ(fetcher.requests, want_requests);
    if (want.HasMember("effective_at")) {
      ASSERT_TRUE(plan->effective_at_s.has_value());
      EXPECT_EQ(*plan->effective_at_s, want["effective_at"].GetInt64());
    }
    if (want.HasMember("recheck_at")) {
      ASSERT_TRUE(plan->recheck_at_s.has_value()) << plan->reason;
      EXPECT_EQ(*plan->recheck_at_s, want["recheck_at"].GetInt64());
    } else {
      EXPECT_FALSE(plan->recheck_at_s.has_value()) << *plan->recheck_at_s;
    }
    if (want.HasMember("version")) {
      EXPECT_EQ(plan->version, want["version"].GetString());
    }
    std::vector<std::string> problems_text;
    for (const auto& p : plan->problems) problems_text.push_back(p.ToString());
    std::vector<std::string> want_problems;
    if (want.HasMember("problems")) {
      for (const auto& p : want["problems"].GetArray()) want_problems.emplace_back(p.GetString());
    }
    EXPECT_EQ(problems_text, want_problems);
    if (want.HasMember("user")) {
      ASSERT_TRUE(plan->user.has_value());
      rapidjson::Document got_user;
      got_user.Parse(scim::CreateBody(*plan->user).c_str());
      EXPECT_TRUE(got_user == want["user"])
          << "got:  " << Compact(got_user) << "\nwant: " << Compact(want["user"]);
    }
  }
}

TEST(Golden, EveryBuiltinProfileFixture) {
  std::set<std::string> profiles_with_cases;
  size_t cases = 0;
  for (const auto& profile_dir : fs::directory_iterator(kFixtures)) {
    if (!profile_dir.is_directory()) continue;
    for (const auto& case_dir : fs::directory_iterator(profile_dir.path())) {
      if (!case_dir.is_directory()) continue;
      RunCase(case_dir.path());
      profiles_with_cases.insert(profile_dir.path().filename().string());
      ++cases;
    }
  }
  EXPECT_EQ(profiles_with_cases,
            (std::set<std::string>{"bamboohr", "deel", "factorial", "finch", "generic", "gusto",
                                   "hibob", "merge", "personio", "rippling"}));
  EXPECT_GE(cases, 10u);
}

// Every built-in vendor has golden cases for an employee create, update and termination and for
// at least two events it acknowledges: a case directory is named after what it shows.
TEST(Golden, EveryVendorCoversTheEmployeeLifecycleAndTwoAcknowledgedEvents) {
  for (const auto& profile_dir : fs::directory_iterator(kFixtures)) {
    if (!profile_dir.is_directory()) continue;
    const std::string vendor = profile_dir.path().filename().string();
    if (vendor == "generic") continue;
    size_t acknowledging = 0;
    for (const auto& case_dir : fs::directory_iterator(profile_dir.path())) {
      rapidjson::Document expected;
      expected.Parse(Slurp(case_dir.path() / "expected.json").c_str());
      if (!expected.HasParseError() && expected.HasMember("acknowledged") &&
          expected["acknowledged"].Size() > 0) {
        ++acknowledging;
      }
    }
    EXPECT_GE(acknowledging, 2u) << vendor << ": fewer than two acknowledged-event cases";
  }
}

}  // namespace
}  // namespace scimsync::connectors
