// The list endpoint (reconciliation). Golden cases for every built-in profile that has one
// (tests/connectors/list_fixtures/<profile>/): the pages go in, the requests, the listed keys and
// the planned user come out -- and the user must equal the webhook golden's user for the same
// record, so a reconciliation converges exactly where a webhook would. Then the pagination
// styles, their ends and failures, and the profile format's rules for `list`.
//
//   config.yaml    the profile's config entry
//   pages.json     [{"request": "METHOD URL", "status"?: N, "response": JSON}, ...] in order
//   expected.json  {"tenant"?, "employees": [keys], "version"?, "fetch_fixture"?: "<golden case>",
//                   "plan": {"action", "same_user_as": "<golden case>"},
//                   "inactive"?: {"employee_key", "active"}}
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "scimsync/connectors/profile.h"
#include "scimsync/scim/protocol.h"
#include "test_util.h"

namespace scimsync::connectors {
namespace {

namespace fs = std::filesystem;

const fs::path kConnectorTests = fs::path(SCIMSYNC_SOURCE_DIR) / "tests/connectors";

using testing::Compact;
using testing::Slurp;

// Answers list requests from a script, in order, and fetch-back requests from a webhook golden
// case's recorded answers.
class ScriptedFetcher final : public Fetcher {
 public:
  struct Page {
    std::string request;  // "METHOD URL"
    int status = 200;
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
  };
  std::vector<Page> pages;
  fs::path fetch_dir;
  std::vector<std::string> list_requests;
  std::vector<HttpRequest> sent;

  Result<HttpResponse> Fetch(const std::string& name, const HttpRequest& request) override {
    sent.push_back(request);
    HttpResponse out;
    out.status = 200;
    if (name == "oauth2_token") {
      out.body = R"({"access_token":"fixture-token","expires_in":3600})";
      return out;
    }
    if (name == "list") {
      list_requests.push_back(request.method + " " + request.url);
      if (next_ >= pages.size()) {
        ADD_FAILURE() << "unexpected list request " << request.method << " " << request.url;
        out.status = 500;
        return out;
      }
      const Page& p = pages[next_++];
      EXPECT_EQ(request.method + " " + request.url, p.request);
      out.status = p.status;
      out.body = p.body;
      out.headers = p.headers;
      return out;
    }
    fs::path file = fetch_dir / (name.empty() ? "response.json" : "response-" + name + ".json");
    if (fetch_dir.empty() || !fs::exists(file)) {
      out.status = 404;
      return out;
    }
    out.body = Slurp(file);
    return out;
  }
  bool live() const override { return false; }

 private:
  size_t next_ = 0;
};

rapidjson::Document GoldenUser(const std::string& golden_case) {
  rapidjson::Document d;
  d.Parse(Slurp(kConnectorTests / "fixtures" / golden_case / "expected.json").c_str());
  rapidjson::Document user;
  user.CopyFrom(d["items"][0]["user"], user.GetAllocator());
  return user;
}

void RunListCase(const fs::path& dir) {
  SCOPED_TRACE(dir.string());
  rapidjson::Document expected;
  expected.Parse(Slurp(dir / "expected.json").c_str());
  ASSERT_FALSE(expected.HasParseError());
  rapidjson::Document pages;
  pages.Parse(Slurp(dir / "pages.json").c_str());
  ASSERT_TRUE(pages.IsArray());

  config::Problems problems("config.yaml");
  auto profile = LoadProfile(testing::Entry(Slurp(dir / "config.yaml")), &problems);
  ASSERT_NE(profile, nullptr) << testing::ProblemsText(problems);
  ASSERT_TRUE(profile->can_list());

  ScriptedFetcher fetcher;
  std::vector<std::string> want_requests;
  for (const auto& p : pages.GetArray()) {
    ScriptedFetcher::Page page;
    page.request = p["request"].GetString();
    if (p.HasMember("status")) page.status = p["status"].GetInt();
    page.body = Compact(p["response"]);
    fetcher.pages.push_back(page);
    want_requests.push_back(page.request);
  }
  if (expected.HasMember("fetch_fixture")) {
    fetcher.fetch_dir = kConnectorTests / "fixtures" / expected["fetch_fixture"].GetString();
  }
  const std::string tenant = expected.HasMember("tenant") ? expected["tenant"].GetString() : "";
  const auto tenants = profile->list_tenants();
  EXPECT_NE(std::find(tenants.begin(), tenants.end(), tenant), tenants.end());

  auto listed = profile->ListEmployees(tenant, fetcher, 1'795'000'000);
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  EXPECT_EQ(fetcher.list_requests, want_requests);
  std::vector<std::string> keys;
  for (const auto& e : *listed) keys.push_back(e.employee_key);
  std::vector<std::string> want_keys;
  for (const auto& k : expected["employees"].GetArray()) want_keys.emplace_back(k.GetString());
  EXPECT_EQ(keys, want_keys);
  ASSERT_FALSE(listed->empty());
  const ListedEmployee& first = listed->front();
  EXPECT_EQ(first.tenant, tenant);
  if (expected.HasMember("version")) {
    EXPECT_EQ(first.version, expected["version"].GetString());
  }

  // What the reconciler compares against JumpCloud...
  const auto& plan_want = expected["plan"];
  auto plan = profile->PlanListed(first, fetcher, 1'795'000'000);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_STREQ(ActionName(plan->action), plan_want["action"].GetString()) << plan->reason;
  ASSERT_TRUE(plan->user.has_value());
  rapidjson::Document got;
  got.Parse(scim::CreateBody(*plan->user).c_str());
  rapidjson::Document want = GoldenUser(plan_want["same_user_as"].GetString());
  EXPECT_TRUE(got == want) << "got:  " << Compact(got) << "\nwant: " << Compact(want);
  EXPECT_TRUE(plan->problems.empty());

  // ...is what a worker converges to when it plans the enqueued item.
  const WorkItem item = profile->ReconcileItem(first);
  EXPECT_EQ(item.event_type, kReconcileEventType);
  EXPECT_EQ(item.employee_key, first.employee_key);
  if (profile->payload_carries_record() || expected.HasMember("fetch_fixture")) {
    auto worker_plan = profile->PlanItem(item, fetcher, 1'795'000'000);
    ASSERT_TRUE(worker_plan.ok()) << worker_plan.error().message;
    EXPECT_EQ(worker_plan->action, Action::kSync) << worker_plan->reason;
    ASSERT_TRUE(worker_plan->user.has_value());
    EXPECT_EQ(*worker_plan->user, *plan->user);
  } else {
    EXPECT_EQ(item.payload, "{}");  // level-triggered: the worker fetches the record itself
  }

  if (expected.HasMember("inactive")) {
    const auto& want_inactive = expected["inactive"];
    auto it = std::find_if(listed->begin(), listed->end(), [&](const ListedEmployee& e) {
      return e.employee_key == want_inactive["employee_key"].GetString();
    });
    ASSERT_NE(it, listed->end());
    auto p = profile->PlanListed(*it, fetcher, 1'795'000'000);
    ASSERT_TRUE(p.ok());
    ASSERT_TRUE(p->user && p->user->active.has_value());
    EXPECT_EQ(*p->user->active, want_inactive["active"].GetBool());
  }
}

TEST(ListGolden, EveryBuiltinProfileWithAListSection) {
  std::set<std::string> cases;
  for (const auto& dir : fs::directory_iterator(kConnectorTests / "list_fixtures")) {
    if (!dir.is_directory()) continue;
    RunListCase(dir.path());
    cases.insert(dir.path().filename().string());
  }
  EXPECT_EQ(cases, (std::set<std::string>{"bamboohr", "factorial", "finch", "generic", "gusto",
                                          "hibob", "merge", "personio", "rippling"}));
}

TEST(ListGolden, EveryBuiltinProfileMapsTheReconcileEventToSync) {
  for (const char* name : {"bamboohr", "deel", "factorial", "finch", "generic", "gusto", "hibob",
                           "merge", "personio", "rippling"}) {
    SCOPED_TRACE(name);
    config::Problems problems;
    // BambooHR's API URL carries the company: give it one.
    const std::string api = std::string(name) == "bamboohr" ? ", api: {tenant: acme}" : "";
    auto profile = LoadProfile(
        testing::Entry(std::string("{name: p, connector: ") + name + ", secret_env: S" + api + "}"),
        &problems);
    ASSERT_NE(profile, nullptr) << testing::ProblemsText(problems);
    WorkItem item;
    item.employee_key = "E1";
    item.event_type = kReconcileEventType;
    item.payload = "{}";
    // Every fetch answers an empty record: the user will not validate, but the rule is what
    // this test is about.
    class EmptyRecords final : public Fetcher {
     public:
      Result<HttpResponse> Fetch(const std::string& name, const HttpRequest&) override {
        HttpResponse out;
        out.status = 200;
        // Something at every built-in's record pointer ("", /responses/0/body, /_data/0).
        out.body = name == "oauth2_token" ? R"({"access_token":"t","expires_in":60})"
                                          : R"({"responses":[{"body":{}}],"_data":[{}]})";
        return out;
      }
      bool live() const override { return false; }
    } empty;
    auto plan = profile->PlanItem(item, empty, 1'795'000'000);
    ASSERT_TRUE(plan.ok()) << plan.error().message;
    EXPECT_EQ(plan->action, Action::kSync);
    EXPECT_EQ(plan->reason, "actions[0]: scimsync.reconcile -> sync");
  }
}

// ---- pagination and failures, on a profile of our own ---------------------------------------

constexpr char kProfileHead[] = R"(name: test
auth: {type: none}
items: {employee_key: /id}
actions: [{event: scimsync.reconcile, action: sync}]
fetch:
  base_url: https://hris.example.com/api
  credentials: [key]
  auth: {type: bearer, token: "{key}"}
  path: /employees/{employee_key}
mapping: {userName: /user, email: /email}
)";

class ListPaging : public ::testing::Test {
 protected:
  std::shared_ptr<const Profile> Load(const std::string& list_yaml, bool expect_ok = true) {
    dir_ = std::make_unique<fs::path>(fs::temp_directory_path() /
                                      ("scimsync-list-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    std::ofstream(*dir_ / "test.yaml") << kProfileHead << list_yaml;
    config::Problems problems("config.yaml");
    auto profile =
        LoadProfile(testing::Entry("{name: t, connector: " + (*dir_ / "test.yaml").string() +
                                   ", api: {key_env: SCIMSYNC_LIST_TEST_KEY}}"),
                    &problems);
    if (expect_ok) {
      EXPECT_NE(profile, nullptr) << testing::ProblemsText(problems);
    }
    problems_ = testing::ProblemsText(problems);
    return profile;
  }
  std::string LoadProblems(const std::string& list_yaml) {
    Load(list_yaml, false);
    return problems_;
  }
  void TearDown() override {
    if (dir_) fs::remove_all(*dir_);
  }
  void Page(const std::string& request, const std::string& body, int status = 200) {
    fetcher_.pages.push_back({request, status, body, {}});
  }
  static std::vector<std::string> Keys(const std::vector<ListedEmployee>& listed) {
    std::vector<std::string> out;
    for (const auto& e : listed) out.push_back(e.employee_key);
    return out;
  }

  ScriptedFetcher fetcher_;
  std::unique_ptr<fs::path> dir_;
  std::string problems_;
};

TEST_F(ListPaging, PageStyleReadsUntilAnEmptyPageNotAShortOne) {
  auto p = Load(
      "list: {path: /people, records: /items, pagination: {style: page, size_param: per, size: "
      "3}}\n");
  ASSERT_NE(p, nullptr);
  // The API caps pages at 2 although 3 were asked for: a short page is not the end.
  Page("GET https://hris.example.com/api/people?page=1&per=3", R"({"items":[{"id":1},{"id":2}]})");
  Page("GET https://hris.example.com/api/people?page=2&per=3", R"({"items":[{"id":3},{"id":4}]})");
  Page("GET https://hris.example.com/api/people?page=3&per=3", R"({"items":[]})");
  auto listed = p->ListEmployees("", fetcher_, 0);
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  EXPECT_EQ(Keys(*listed), (std::vector<std::string>{"1", "2", "3", "4"}));
  // Credentials go along (a canned fetcher gets a placeholder, never a real secret).
  bool bearer = false;
  for (const auto& [k, v] : fetcher_.sent[0].headers) bearer |= k == "Authorization";
  EXPECT_TRUE(bearer);
}

TEST_F(ListPaging, OffsetStyleAdvancesByWhatCameAndStopsAtTheTotal) {
  auto p = Load(
      "list: {path: \"/people?active=any\", records: /data, pagination: {style: offset, "
      "size_param: "
      "limit, size: 2, total: /meta/total}}\n");
  ASSERT_NE(p, nullptr);
  Page("GET https://hris.example.com/api/people?active=any&offset=0&limit=2",
       R"({"meta":{"total":3},"data":[{"id":"a"},{"id":"b"}]})");
  Page("GET https://hris.example.com/api/people?active=any&offset=2&limit=2",
       R"({"meta":{"total":3},"data":[{"id":"c"}]})");
  auto listed = p->ListEmployees("", fetcher_, 0);
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  EXPECT_EQ(Keys(*listed), (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(ListPaging, AnEmployeeSeenTwiceWhilePagesShiftIsListedOnce) {
  auto p = Load("list: {path: /people, records: \"\", pagination: {style: offset}}\n");
  ASSERT_NE(p, nullptr);
  Page("GET https://hris.example.com/api/people?offset=0", R"([{"id":"a"},{"id":"b"}])");
  Page("GET https://hris.example.com/api/people?offset=2", R"([{"id":"b"},{"id":"c"}])");
  Page("GET https://hris.example.com/api/people?offset=4", R"([])");
  auto listed = p->ListEmployees("", fetcher_, 0);
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  EXPECT_EQ(Keys(*listed), (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(ListPaging, CursorStyleEndsWithoutACursorAndRefusesALoop) {
  auto p = Load(
      "list: {path: /people, records: /r, pagination: {style: cursor, param: next, cursor: "
      "/next}}\n");
  ASSERT_NE(p, nullptr);
  Page("GET https://hris.example.com/api/people", R"({"r":[{"id":1}],"next":"x y"})");
  Page("GET https://hris.example.com/api/people?next=x%20y", R"({"r":[{"id":2}],"next":""})");
  auto listed = p->ListEmployees("", fetcher_, 0);
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  EXPECT_EQ(Keys(*listed), (std::vector<std::string>{"1", "2"}));

  ScriptedFetcher looping;
  looping.pages = {
      {"GET https://hris.example.com/api/people", 200, R"({"r":[{"id":1}],"next":"c"})", {}},
      {"GET https://hris.example.com/api/people?next=c",
       200,
       R"({"r":[{"id":2}],"next":"c"})",
       {}}};
  auto loop = p->ListEmployees("", looping, 0);
  ASSERT_FALSE(loop.ok());
  EXPECT_NE(loop.error().message.find("same cursor twice"), std::string::npos);
}

TEST_F(ListPaging, NextUrlsAreFollowedOnlyToTheSameHost) {
  auto p = Load(
      "list: {path: /people, records: /r, pagination: {style: cursor, next_url: /links/next}}\n");
  ASSERT_NE(p, nullptr);
  Page("GET https://hris.example.com/api/people",
       R"({"r":[{"id":1}],"links":{"next":"/api/people?page=2"}})");
  Page("GET https://hris.example.com/api/people?page=2",
       R"({"r":[{"id":2}],"links":{"next":"https://evil.example.net/steal"}})");
  auto listed = p->ListEmployees("", fetcher_, 0);
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.error().kind, ErrorKind::kPermanent);
  EXPECT_NE(listed.error().message.find("another host"), std::string::npos);
  EXPECT_EQ(fetcher_.list_requests.size(), 2u);
}

TEST_F(ListPaging, HasMoreFalseEndsTheListing) {
  auto p = Load(
      "list: {path: /people, records: /r, pagination: {style: cursor, param: after, cursor: "
      "/c, has_more: /more}}\n");
  ASSERT_NE(p, nullptr);
  Page("GET https://hris.example.com/api/people", R"({"r":[{"id":1}],"c":"1","more":false})");
  auto listed = p->ListEmployees("", fetcher_, 0);
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  EXPECT_EQ(Keys(*listed), (std::vector<std::string>{"1"}));
}

TEST_F(ListPaging, APartialListIsAnErrorNeverAShortList) {
  auto p = Load("list: {path: /people, records: /r, pagination: {style: page}}\n");
  ASSERT_NE(p, nullptr);
  Page("GET https://hris.example.com/api/people?page=1", R"({"r":[{"id":1}]})");
  Page("GET https://hris.example.com/api/people?page=2", R"({"oops":"maintenance"})");
  auto listed = p->ListEmployees("", fetcher_, 0);
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.error().kind, ErrorKind::kPermanent);
  EXPECT_NE(listed.error().message.find("no array of records at /r"), std::string::npos);

  ScriptedFetcher keyless;
  keyless.pages = {{"GET https://hris.example.com/api/people?page=1",
                    200,
                    R"({"r":[{"id":1},{"name":"x"}]})",
                    {}}};
  auto bad = p->ListEmployees("", keyless, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("record 1 of page 1 has no employee key at /id"),
            std::string::npos);
}

TEST_F(ListPaging, StatusesBecomeErrorKinds) {
  auto p = Load("list: {path: /people, records: /r}\n");
  ASSERT_NE(p, nullptr);
  ScriptedFetcher busy;
  busy.pages = {{"GET https://hris.example.com/api/people", 503, "", {{"Retry-After", "30"}}}};
  auto r = p->ListEmployees("", busy, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  ASSERT_TRUE(r.error().retry_after.has_value());
  EXPECT_EQ(r.error().retry_after->count(), 30000);
  ScriptedFetcher refused;
  refused.pages = {{"GET https://hris.example.com/api/people", 403, "", {}}};
  r = p->ListEmployees("", refused, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kAuth);
  ScriptedFetcher missing;
  missing.pages = {{"GET https://hris.example.com/api/people", 404, "", {}}};
  r = p->ListEmployees("", missing, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kPermanent);
  EXPECT_NE(r.error().message.find("check list.path"), std::string::npos);
}

TEST_F(ListPaging, ARetryAfterDateIsHonouredAsTheDistanceFromNow) {
  auto p = Load("list: {path: /people, records: /r}\n");
  ASSERT_NE(p, nullptr);
  constexpr int64_t kNow = 1'795'000'000;
  for (int status : {429, 503}) {
    SCOPED_TRACE(status);
    ScriptedFetcher throttled;
    throttled.pages = {{"GET https://hris.example.com/api/people",
                        status,
                        "",
                        {{"Retry-After", testing::HttpDate(kNow + 45)}}}};
    auto r = p->ListEmployees("", throttled, kNow);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
    EXPECT_EQ(r.error().http_status, status);
    ASSERT_TRUE(r.error().retry_after.has_value()) << "the date was ignored";
    EXPECT_EQ(r.error().retry_after->count(), 45'000);
  }
}

TEST_F(ListPaging, ARunawayListingStopsAtMaxPages) {
  auto p = Load("list: {path: /p, records: /r, pagination: {style: page, max_pages: 2}}\n");
  ASSERT_NE(p, nullptr);
  Page("GET https://hris.example.com/api/p?page=1", R"({"r":[{"id":1}]})");
  Page("GET https://hris.example.com/api/p?page=2", R"({"r":[{"id":2}]})");
  auto r = p->ListEmployees("", fetcher_, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("max_pages"), std::string::npos);
}

TEST_F(ListPaging, ARecordListedForAFetchingProfileIsMappedWithoutARequest) {
  auto p = Load("list: {path: /people, records: /r, yields: records}\n");
  ASSERT_NE(p, nullptr);
  Page("GET https://hris.example.com/api/people",
       R"({"r":[{"id":"E1","user":"ada","email":"ada@example.com"}]})");
  auto listed = p->ListEmployees("", fetcher_, 0);
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  ASSERT_EQ(listed->size(), 1u);
  fetcher_.sent.clear();
  auto plan = p->PlanListed(listed->front(), fetcher_, 0);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_TRUE(fetcher_.sent.empty());
  ASSERT_TRUE(plan->user.has_value());
  EXPECT_EQ(plan->user->user_name, "ada");
  EXPECT_EQ(plan->user->external_id, "E1");
}

TEST_F(ListPaging, TheProfileFormatRulesForList) {
  EXPECT_NE(LoadProblems("list: {path: /p}\n").find("list.records"), std::string::npos);
  EXPECT_NE(LoadProblems("list: {path: \"/p/{employee_key}\", records: /r}\n")
                .find("{employee_key} is not known in a list request"),
            std::string::npos);
  EXPECT_NE(LoadProblems("list: {path: /p, records: /r, record_at: /data}\n")
                .find("applies only to profiles whose payload carries the record"),
            std::string::npos);
  EXPECT_NE(LoadProblems("list: {path: /p, records: /r, yields: all}\n").find("list.yields"),
            std::string::npos);
  EXPECT_NE(LoadProblems("list: {path: /p, records: /r, pagination: {style: cursor}}\n")
                .find("give cursor"),
            std::string::npos);
  EXPECT_NE(LoadProblems("list: {path: /p, records: /r, pagination: {style: cursor, cursor: /n}}\n")
                .find("list.pagination.param"),
            std::string::npos);
  EXPECT_NE(LoadProblems("list: {path: /p, records: /r, pagination: {style: none, size: 5}}\n")
                .find("style none reads one answer"),
            std::string::npos);
  EXPECT_NE(LoadProblems("list: {path: /p, records: /r, auth: {type: oauth2_client_credentials, "
                         "token_url: \"https://x/t\", client_id: a, client_secret: b}}\n")
                .find("only through fetch.auth"),
            std::string::npos);
  EXPECT_NE(LoadProblems("list: {path: /p, records: /r, paging: page}\n").find("list.paging"),
            std::string::npos);
}

}  // namespace
}  // namespace scimsync::connectors
