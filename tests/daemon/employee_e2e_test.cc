// "What happened to Alice?" end to end: the real scimsyncd binary and redis-server, the fake
// SCIM server as JumpCloud, and the `employee` / `sync` commands run as an admin would run them,
// from outside the daemon (they talk to Redis only).
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "daemon_fixture.h"
#include "e2e_fixture.h"
#include "scimsync/redis/client.h"
#include "scimsync/workers/history.h"

namespace scimsync::testing {
namespace {

class EmployeeE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(e2e_.StartRedis());
    FakeScimOptions scim;
    scim.api_key = kApiKey;
    ASSERT_TRUE(e2e_.StartScim(scim));
  }

  // Runs a command and checks that nothing it printed carries a secret.
  std::string Run(std::vector<std::string> args, int* status = nullptr) {
    std::string err;
    int rc = 0;
    std::string out = e2e_.Command(0, std::move(args), &rc, &err);
    if (status != nullptr) *status = rc;
    for (const std::string& secret : {std::string(kApiKey), std::string(kWebhookSecret)}) {
      EXPECT_EQ(out.find(secret), std::string::npos) << out;
      EXPECT_EQ(err.find(secret), std::string::npos) << err;
    }
    return out + err;
  }

  static constexpr char kApiKey[] = "jc-api-key-5b0e7d1f";
  E2E e2e_;
};

E2EDaemonOptions Options() {
  E2EDaemonOptions o;
  o.api_key = "jc-api-key-5b0e7d1f";
  o.workers = 2;
  return o;
}

TEST_F(EmployeeE2E, ShowsTheLinkAndTheOutcomesOfHireUpdateTerminationInOrder) {
  ASSERT_TRUE(e2e_.StartDaemon(0, Options())) << e2e_.Log(0);
  const int64_t t0 = 1'790'000'000;
  const std::vector<std::pair<std::string, std::string>> events = {
      {"employee.created", "Analyst"},
      {"employee.updated", "Manager"},
      {"employee.terminated", "Manager"}};
  for (size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(
        e2e_.PostUntilAccepted(0, GenericBody("h" + std::to_string(i), events[i].first, "E1",
                                              events[i].second, t0 + static_cast<int64_t>(i))),
        202);
    ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  }
  auto users = e2e_.scim().FindUsers("externalId", "E1");
  ASSERT_EQ(users.size(), 1u);
  EXPECT_NE(users[0].find("\"active\":false"), std::string::npos) << users[0];
  rapidjson::Document user;
  user.Parse(users[0].c_str());
  const std::string id = user["id"].GetString();

  int rc = -1;
  std::string text = Run({"employee", "--profile", "hr", "E1"}, &rc);
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("JumpCloud user: " + id + " (linked), userName " +
                      std::string(user["userName"].GetString())),
            std::string::npos)
      << text;
  // The managed attributes scimsync last applied, with when: the termination's.
  const size_t state = text.find("last state applied at ");
  ASSERT_NE(state, std::string::npos) << text;
  const std::string state_line = text.substr(state, text.find('\n', state) - state);
  EXPECT_NE(state_line.find("\"title\":\"Manager\""), std::string::npos) << text;
  EXPECT_NE(state_line.find("\"active\":false"), std::string::npos) << text;
  EXPECT_NE(text.find("waiting: nothing"), std::string::npos) << text;
  EXPECT_NE(text.find("dead letters: none"), std::string::npos) << text;
  const size_t created = text.find("employee.created  sync  created");
  const size_t updated = text.find("employee.updated  sync  updated");
  // The generic profile's termination is a sync with active=false: what the admin asks about
  // is whether access ended, so the result says "suspended", not "updated".
  const size_t suspended = text.find("employee.terminated  sync  suspended");
  EXPECT_NE(created, std::string::npos) << text;
  EXPECT_NE(updated, std::string::npos) << text;
  EXPECT_NE(suspended, std::string::npos) << text;
  EXPECT_LT(created, updated) << text;
  EXPECT_LT(updated, suspended) << text;

  std::string json = Run({"employee", "--profile", "hr", "E1", "--json"}, &rc);
  EXPECT_EQ(rc, 0);
  rapidjson::Document d;
  d.Parse(json.c_str());
  ASSERT_TRUE(d.IsObject()) << json;
  EXPECT_STREQ(d["link"]["jumpcloud_id"].GetString(), id.c_str());
  EXPECT_STREQ(d["link"]["user_name"].GetString(), user["userName"].GetString());
  ASSERT_TRUE(d["link"]["applied"].IsObject()) << json;
  EXPECT_STREQ(d["link"]["applied"]["title"].GetString(), "Manager");
  EXPECT_GT(d["link"]["applied_at_ms"].GetInt64(), 0);
  ASSERT_EQ(d["history"].Size(), 3u) << json;
  EXPECT_STREQ(d["history"][0]["event_type"].GetString(), "employee.created");
  EXPECT_STREQ(d["history"][0]["result"].GetString(), "created");
  EXPECT_STREQ(d["history"][1]["result"].GetString(), "updated");
  EXPECT_STREQ(d["history"][2]["event_type"].GetString(), "employee.terminated");
  EXPECT_STREQ(d["history"][2]["result"].GetString(), "suspended");
  EXPECT_STREQ(d["history"][2]["outcome"].GetString(), "done");
  EXPECT_TRUE(d["history"][0].HasMember("trace_id"));

  // Someone nobody has heard of: exit 0, nothing known.
  text = Run({"employee", "--profile", "hr", "NOBODY"}, &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(text.find("not linked"), std::string::npos) << text;
  EXPECT_NE(text.find("none recorded"), std::string::npos) << text;
}

TEST_F(EmployeeE2E, ADeadLetterShowsItsReasonAndTheReplayCommand) {
  ASSERT_TRUE(e2e_.StartDaemon(0, Options())) << e2e_.Log(0);
  e2e_.scim().InjectFault(Fault::Status(400).On("POST", "/Users"));
  ASSERT_EQ(e2e_.PostUntilAccepted(
                0, GenericBody("d1", "employee.created", "E2", "Analyst", 1'790'000'000)),
            202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  int rc = -1;
  std::string text = Run({"employee", "--profile", "hr", "E2"}, &rc);
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("dead letters: 1"), std::string::npos) << text;
  EXPECT_NE(text.find("reason: "), std::string::npos) << text;
  EXPECT_NE(text.find("last request: POST"), std::string::npos) << text;
  EXPECT_NE(text.find("replay once fixed: scimsyncd dlq replay "), std::string::npos) << text;
  EXPECT_NE(text.find("dead_letter"), std::string::npos) << text;
  EXPECT_NE(text.find("HTTP 400"), std::string::npos) << text;

  std::string json = Run({"employee", "--profile", "hr", "--json", "E2"}, &rc);
  rapidjson::Document d;
  d.Parse(json.c_str());
  ASSERT_TRUE(d.IsObject()) << json;
  ASSERT_EQ(d["dead_letters"].Size(), 1u);
  EXPECT_STREQ(d["dead_letters"][0]["error_kind"].GetString(), "permanent");
  const std::string replay = d["dead_letters"][0]["replay"].GetString();
  EXPECT_EQ(replay.rfind(
                "scimsyncd dlq replay " + std::string(d["dead_letters"][0]["id"].GetString()), 0),
            0u)
      << replay;
}

TEST_F(EmployeeE2E, AHeldTerminationIsShownAsWaitingWithItsReason) {
  E2EDaemonOptions o = Options();
  o.guard_max_suspends = 0;
  ASSERT_TRUE(e2e_.StartDaemon(0, o)) << e2e_.Log(0);
  ASSERT_EQ(e2e_.PostUntilAccepted(
                0, GenericBody("g1", "employee.created", "E3", "Analyst", 1'790'000'000)),
            202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  ASSERT_EQ(e2e_.PostUntilAccepted(
                0, GenericBody("g2", "employee.terminated", "E3", "Analyst", 1'790'000'001)),
            202);
  std::string text;
  WaitFor(
      [&] {
        text = Run({"employee", "--profile", "hr", "E3"});
        return text.find("  held  ") != std::string::npos;
      },
      10000, /*interval_ms=*/100);
  EXPECT_NE(text.find("  held  "), std::string::npos) << text;
  EXPECT_NE(text.find("held by the mass-suspension guard"), std::string::npos) << text;
  EXPECT_NE(text.find("guard release"), std::string::npos) << text;
}

TEST_F(EmployeeE2E, HistoryIsCappedInCount) {
  E2EDaemonOptions o = Options();
  o.extra_worker_keys = "  history: {max_entries: 3, max_age_days: 1}\n";
  ASSERT_TRUE(e2e_.StartDaemon(0, o)) << e2e_.Log(0);
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(
        e2e_.PostUntilAccepted(0, GenericBody("c" + std::to_string(i), "employee.updated", "E4",
                                              "Title" + std::to_string(i), 1'790'000'000 + i)),
        202);
    ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  }
  int rc = -1;
  std::string json = Run({"employee", "--profile", "hr", "--json", "--last", "50", "E4"}, &rc);
  rapidjson::Document d;
  d.Parse(json.c_str());
  ASSERT_TRUE(d.IsObject()) << json;
  ASSERT_EQ(d["history"].Size(), 3u) << json;
  // The newest three, oldest first: c3, c4, c5 (their trace ids differ; their titles too).
  EXPECT_STREQ(d["history"][2]["result"].GetString(), "updated");
  const std::string key = e2e_.redis().Cli({"--scan", "--pattern", "*history*E4*"});
  ASSERT_FALSE(key.empty());
  std::string k = key.substr(0, key.find('\n'));
  EXPECT_EQ(e2e_.redis().Cli({"LLEN", k}), "3");
  const int64_t ttl = std::stoll(e2e_.redis().Cli({"TTL", k}));
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 86400);
  std::cerr << "history memory for 3 entries: " << e2e_.redis().Cli({"MEMORY", "USAGE", k})
            << " bytes\n";
}

// Changes a user behind scimsync's back, as an admin in the JumpCloud console would.
void Drift(FakeScimServer& scim, const std::string& id, const std::string& title) {
  const std::string base = scim.base_url();  // http://127.0.0.1:PORT/scim/v2
  const std::string host_port = base.substr(7, base.find('/', 7) - 7);
  httplib::Client c("127.0.0.1", std::stoi(host_port.substr(host_port.find(':') + 1)));
  auto r = c.Patch(("/scim/v2/Users/" + id).c_str(), {{"x-api-key", "jc-api-key-5b0e7d1f"}},
                   R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
                   R"("Operations":[{"op":"replace","path":"title","value":")" +
                       title + R"("}]})",
                   "application/scim+json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status / 100, 2) << r->body;
}

TEST_F(EmployeeE2E, SyncRepairsADriftedUserThroughTheWorkersAndDryRunWritesNothing) {
  ASSERT_TRUE(e2e_.StartDaemon(0, Options())) << e2e_.Log(0);
  ASSERT_EQ(e2e_.PostUntilAccepted(
                0, GenericBody("s1", "employee.created", "E6", "Analyst", 1'790'000'000)),
            202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  auto users = e2e_.scim().FindUsers("externalId", "E6");
  ASSERT_EQ(users.size(), 1u);
  rapidjson::Document user;
  user.Parse(users[0].c_str());
  const std::string id = user["id"].GetString();
  Drift(e2e_.scim(), id, "Hacked");
  ASSERT_NE(e2e_.scim().GetUser(id)->find("Hacked"), std::string::npos);

  // --dry-run: shows the PATCH it would send, sends nothing, enqueues nothing.
  const int writes_before = e2e_.scim().CountRequests("PATCH") + e2e_.scim().CountRequests("POST") +
                            e2e_.scim().CountRequests("PUT");
  int rc = -1;
  std::string text = Run({"sync", "--profile", "hr", "--dry-run", "E6"}, &rc);
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("JumpCloud user: " + id), std::string::npos) << text;
  EXPECT_NE(text.find("PATCH"), std::string::npos) << text;
  EXPECT_NE(text.find("Analyst"), std::string::npos) << text;
  EXPECT_NE(text.find("nothing was sent"), std::string::npos) << text;
  EXPECT_EQ(e2e_.scim().CountRequests("PATCH") + e2e_.scim().CountRequests("POST") +
                e2e_.scim().CountRequests("PUT"),
            writes_before);
  EXPECT_EQ(e2e_.Pending(), 0);
  EXPECT_NE(e2e_.scim().GetUser(id)->find("Hacked"), std::string::npos);

  // The real thing: through the queue and a worker, with each step printed.
  text = Run({"sync", "--profile", "hr", "--timeout", "30", "E6"}, &rc);
  EXPECT_EQ(rc, 0) << text << e2e_.Log(0);
  EXPECT_NE(text.find("enqueued: trace sync-"), std::string::npos) << text;
  EXPECT_NE(text.find("requests expected:\n  PATCH "), std::string::npos) << text;
  EXPECT_NE(text.find("sync  updated"), std::string::npos) << text;
  EXPECT_NE(e2e_.scim().GetUser(id)->find("Analyst"), std::string::npos)
      << *e2e_.scim().GetUser(id);
  EXPECT_EQ(e2e_.scim().FindUsers("externalId", "E6").size(), 1u);
  // And the history says so.
  text = Run({"employee", "--profile", "hr", "E6"}, &rc);
  EXPECT_NE(text.find("sync-"), std::string::npos) << text;

  // Nothing to send again for someone nobody has heard of.
  text = Run({"sync", "--profile", "hr", "NOBODY"}, &rc);
  EXPECT_EQ(rc, 65) << text;
  EXPECT_NE(text.find("no record of employee NOBODY"), std::string::npos) << text;
}

// The same against the independent SCIM implementation (scimmy): the history, the dry run and
// the repair are not only right about our own double.
TEST_F(EmployeeE2E, EmployeeAndSyncAgainstTheScimmyServer) {
  ScimmyServer node(kApiKey);
  ASSERT_TRUE(node.Start()) << node.error();
  const int port = node.port();
  E2EDaemonOptions options = Options();
  options.base_url = node.base_url();
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  ASSERT_EQ(e2e_.PostUntilAccepted(
                0, GenericBody("m1", "employee.created", "M1", "Analyst", 1'790'000'000)),
            202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  httplib::Client scim("127.0.0.1", port);
  auto title = [&]() {
    auto res =
        scim.Get("/scim/v2/Users?filter=externalId%20eq%20%22M1%22", {{"x-api-key", kApiKey}});
    rapidjson::Document doc;
    if (res && res->status == 200) doc.Parse(res->body.c_str());
    if (!doc.IsObject() || !doc.HasMember("Resources") || doc["Resources"].Size() != 1) {
      return std::string("?");
    }
    const auto& u = doc["Resources"][0];
    return std::string(u["id"].GetString()) + " " +
           (u.HasMember("title") ? u["title"].GetString() : "");
  };
  const std::string before = title();
  ASSERT_NE(before.find(" Analyst"), std::string::npos) << before;
  const std::string id = before.substr(0, before.find(' '));
  auto drift = scim.Patch(("/scim/v2/Users/" + id).c_str(), {{"x-api-key", kApiKey}},
                          R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
                          R"("Operations":[{"op":"replace","path":"title","value":"Hacked"}]})",
                          "application/scim+json");
  ASSERT_TRUE(drift);
  ASSERT_EQ(title(), id + " Hacked");

  int rc = -1;
  std::string text = Run({"sync", "--profile", "hr", "--dry-run", "M1"}, &rc);
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("PATCH"), std::string::npos) << text;
  EXPECT_EQ(title(), id + " Hacked");
  text = Run({"sync", "--profile", "hr", "--timeout", "30", "M1"}, &rc);
  EXPECT_EQ(rc, 0) << text << e2e_.Log(0);
  EXPECT_EQ(title(), id + " Analyst");
  text = Run({"employee", "--profile", "hr", "M1"}, &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(text.find("JumpCloud user: " + id + " (linked)"), std::string::npos) << text;
  EXPECT_NE(text.find("employee.created  sync  created"), std::string::npos) << text;
  EXPECT_NE(text.find("sync  updated"), std::string::npos) << text;
}

TEST_F(EmployeeE2E, UsageErrorsHaveDocumentedExitCodes) {
  ASSERT_TRUE(e2e_.StartDaemon(0, Options())) << e2e_.Log(0);
  int rc = -1;
  std::string text = Run({"employee", "E1"}, &rc);
  EXPECT_EQ(rc, 64) << text;
  EXPECT_NE(text.find("--profile NAME is required"), std::string::npos) << text;
  text = Run({"employee", "--profile", "nope", "E1"}, &rc);
  EXPECT_EQ(rc, 64) << text;
  EXPECT_NE(text.find("no profile named 'nope'"), std::string::npos) << text;
  e2e_.redis().Stop();
  text = Run({"employee", "--profile", "hr", "E1"}, &rc);
  EXPECT_EQ(rc, 69) << text;
  EXPECT_NE(text.find("Redis is not reachable"), std::string::npos) << text;
}

config::RedisOptions RedisAt(const std::string& url) {
  config::Config cfg;
  config::LoadString("redis: {url: \"" + url + "\", connect_timeout_ms: 500}\n", "test.yaml", &cfg);
  return cfg.redis;
}

TEST(HistoryTest, KeepsTheNewestEntriesAndHidesThoseOlderThanTheMaxAge) {
  RedisServer server;
  ASSERT_TRUE(server.Start());
  redis::Pool pool(RedisAt(server.url()), "");
  config::HistoryOptions options;
  options.max_entries = 3;
  options.max_age_days = 1;
  workers::History history(pool, "ht", options);
  const int64_t day = 86'400'000;
  workers::History::Write w;
  w.key = workers::HistoryKey("ht", "hr", "", "E1");
  for (int i = 0; i < 5; ++i) {
    workers::OutcomeRecord r;
    r.at_ms = 10 * day + i * 1000;
    r.trace_id = "t" + std::to_string(i);
    r.result = "updated";
    r.reason = std::string(1000, 'x');  // cut, so an entry stays small
    w.records.push_back(r);
  }
  ASSERT_TRUE(history.Append({w}).ok());
  auto got = history.Read("hr", "", "E1", 50, 10 * day + 5000);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[0].trace_id, "t2");  // oldest first
  EXPECT_EQ((*got)[2].trace_id, "t4");
  EXPECT_LT((*got)[2].reason.size(), 400u);
  // A day later they are past the max age: not shown (the key's expiry removes them).
  got = history.Read("hr", "", "E1", 50, 11 * day + 5000);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
  // Another scope is another person.
  got = history.Read("hr", "acme", "E1", 50, 10 * day + 5000);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
}

TEST(HistoryTest, ZeroEntriesKeepsNothing) {
  RedisServer server;
  ASSERT_TRUE(server.Start());
  redis::Pool pool(RedisAt(server.url()), "");
  config::HistoryOptions options;
  options.max_entries = 0;
  workers::History history(pool, "ht", options);
  workers::History::Write w;
  w.key = workers::HistoryKey("ht", "hr", "", "E1");
  w.records.push_back(workers::OutcomeRecord{});
  ASSERT_TRUE(history.Append({w}).ok());
  EXPECT_EQ(server.Cli({"DBSIZE"}), "0");
}

TEST(HistoryTest, ADeferredItemIsRecordedAsDeferredAndTheRestWithTheResult) {
  workers::EmployeeWork work;
  work.profile = "hr";
  work.employee_key = "E1";
  work.items.resize(2);
  work.items[0].trace_id = "a";
  work.items[0].event_type = "employee.terminated";
  work.items[1].trace_id = "b";
  work.items[1].attempts = 2;
  workers::SyncResult result;
  result.kind = workers::SyncResult::Kind::kRetry;
  result.action = "sync";
  result.result = "retry";
  result.http_status = 503;
  result.reason = "JumpCloud answered 503";
  result.last_request = "PATCH https://x/Users/1\n{\"body\":1}";
  result.deferred = {{0, 2'000'000'000'000}};
  auto recs = workers::OutcomesOf(work, result, 5);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].outcome, "deferred");
  EXPECT_EQ(recs[0].trace_id, "a");
  EXPECT_EQ(recs[1].outcome, "retry");
  EXPECT_EQ(recs[1].attempt, 3);
  EXPECT_EQ(recs[1].http_status, 503);
  EXPECT_EQ(recs[1].request, "PATCH https://x/Users/1");  // the line only, never the body
  auto back = workers::OutcomeFromJson(workers::OutcomeToJson(recs[1]));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->reason, "JumpCloud answered 503");
  EXPECT_EQ(back->request, recs[1].request);
}

}  // namespace
}  // namespace scimsync::testing
