// Two HR sources in one JumpCloud organisation, each with an employee 1001: the real scimsyncd
// (two generic profiles) against the fake SCIM server and against the independent scimmy server.
// One source's employee must never rename, suspend or adopt the other's account; where they
// collide, a dead letter names both sides.
#include <gtest/gtest.h>
#include <httplib.h>
#include <rapidjson/document.h>

#include <filesystem>
#include <string>
#include <vector>

#include "e2e_fixture.h"

namespace scimsync::testing {
namespace {

constexpr char kScimmyKey[] = "scimmy-scopes-key";

// A generic-profile event with an explicit username and email.
std::string Body(const std::string& event_id, const std::string& type, const std::string& employee,
                 const std::string& username, const std::string& title, int64_t when_s) {
  return R"({"id":")" + event_id + R"(","type":")" + type + R"(","occurred_at":")" +
         std::to_string(when_s) + R"(","employee":{"id":")" + employee + R"(","username":")" +
         username + R"(","firstName":"F","lastName":"L","workEmail":")" + username +
         R"(@example.com","title":")" + title + R"("}})";
}

struct ScimUser {
  std::string id;
  std::string user_name;
  std::string external_id;
  std::string title;
  bool active = true;
};

class ScopesE2E : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(e2e_.StartRedis());
    ASSERT_TRUE(e2e_.StartScim());
    E2EDaemonOptions options;
    options.workers = 2;
    options.extra_profiles = "  - {name: hr2, connector: generic, secret_env: TEST_HR_SECRET}\n";
    if (scimmy()) {
      ASSERT_TRUE(node_.Start()) << node_.error();
      port_ = node_.port();
      options.base_url = node_.base_url();
      options.api_key = kScimmyKey;
      key_ = kScimmyKey;
    } else {
      port_ = e2e_.scim().port();
    }
    ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  }
  void TearDown() override { node_.Kill(); }

  bool scimmy() const { return std::string(GetParam()) == "scimmy"; }

  void Send(const std::string& profile, const std::string& body) {
    ASSERT_EQ(e2e_.PostUntilAccepted(0, body, 30000, "/webhooks/" + profile), 202);
    ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  }

  httplib::Result Call(const std::string& method, const std::string& path,
                       const std::string& body = "") {
    httplib::Client c("127.0.0.1", port_);
    httplib::Headers h = {{"x-api-key", key_}};
    const std::string target = "/scim/v2" + path;
    if (method == "PATCH") return c.Patch(target, h, body, "application/scim+json");
    return c.Get(target, h);
  }

  std::vector<ScimUser> Users() {
    std::vector<ScimUser> out;
    auto res = Call("GET", "/Users?count=1000");
    if (!res || res->status != 200) {
      ADD_FAILURE() << "cannot list the SCIM users";
      return out;
    }
    rapidjson::Document doc;
    doc.Parse(res->body.c_str());
    for (const auto& r : doc["Resources"].GetArray()) {
      ScimUser u;
      u.id = r["id"].GetString();
      u.user_name = r["userName"].GetString();
      if (r.HasMember("externalId") && r["externalId"].IsString())
        u.external_id = r["externalId"].GetString();
      if (r.HasMember("title") && r["title"].IsString()) u.title = r["title"].GetString();
      if (r.HasMember("active") && r["active"].IsBool()) u.active = r["active"].GetBool();
      out.push_back(u);
    }
    return out;
  }

  ScimUser ByName(const std::string& user_name) {
    for (const ScimUser& u : Users()) {
      if (u.user_name == user_name) return u;
    }
    ADD_FAILURE() << "no user " << user_name;
    return {};
  }

  std::string DeadLetters() { return e2e_.redis().Cli({"XRANGE", "scimsync:dlq", "-", "+"}); }

  E2E e2e_;
  ScimmyServer node_{kScimmyKey};
  int port_ = 0;
  std::string key_ = "test-key";
};

TEST_P(ScopesE2E, CollidingEmployeeIdsNeverTouchTheOtherSourcesAccount) {
  const int64_t t = 1'790'000'000;
  Send("hr", Body("a1", "employee.created", "1001", "ada", "Analyst", t));
  Send("hr2", Body("b1", "employee.created", "1001", "bob", "Baker", t + 1));
  // Two accounts, each anchored in its own scope.
  ASSERT_EQ(Users().size(), 2u);
  ScimUser ada = ByName("ada");
  ScimUser bob = ByName("bob");
  EXPECT_EQ(ada.external_id, "hr:1001");
  EXPECT_EQ(bob.external_id, "hr2:1001");

  // The second source's update and termination reach its own employee only.
  Send("hr2", Body("b2", "employee.updated", "1001", "bob", "Head Baker", t + 2));
  Send("hr2", Body("b3", "employee.terminated", "1001", "bob", "Head Baker", t + 3));
  ada = ByName("ada");
  bob = ByName("bob");
  EXPECT_TRUE(ada.active);
  EXPECT_EQ(ada.title, "Analyst");
  EXPECT_FALSE(bob.active);
  EXPECT_EQ(bob.title, "Head Baker");
  EXPECT_EQ(DeadLetters(), "");

  // hr2's new hire wants Ada's userName: never adopted, a dead letter names both sides.
  Send("hr2", Body("b4", "employee.created", "3003", "ada", "Chemist", t + 4));
  EXPECT_EQ(Users().size(), 2u);
  std::string dlq = DeadLetters();
  EXPECT_NE(dlq.find("hr2:3003"), std::string::npos) << dlq;
  EXPECT_NE(dlq.find("hr:1001"), std::string::npos) << dlq;
  EXPECT_EQ(ByName("ada").title, "Analyst");

  // Ada's externalId is cleared by hand: hr's link still claims the account, so hr2 again
  // cannot adopt it by userName, and the dead letter says whose it is.
  auto cleared = Call("PATCH", "/Users/" + ada.id,
                      R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
                      R"("Operations":[{"op":"remove","path":"externalId"}]})");
  ASSERT_TRUE(cleared);
  ASSERT_LT(cleared->status, 300) << cleared->body;
  ASSERT_EQ(ByName("ada").external_id, "");
  Send("hr2", Body("b5", "employee.created", "4004", "ada", "Chemist", t + 5));
  EXPECT_EQ(Users().size(), 2u);
  dlq = DeadLetters();
  EXPECT_NE(dlq.find("belongs to employee hr:1001 of hr; employee hr2:4004 of hr2"),
            std::string::npos)
      << dlq;
  EXPECT_EQ(ByName("ada").title, "Analyst");

  // hr's own employee still converges, and gets its anchor back.
  Send("hr", Body("a2", "employee.updated", "1001", "ada", "Lead Analyst", t + 6));
  ada = ByName("ada");
  EXPECT_EQ(ada.title, "Lead Analyst");
  EXPECT_EQ(ada.external_id, "hr:1001");
  EXPECT_TRUE(ada.active);
  EXPECT_EQ(Users().size(), 2u);
}

// The per-employee tools with two HR sources: each finds its own source's link (the link table
// is keyed by the scoped externalId), and `sync` repairs that account, never the other's.
TEST_P(ScopesE2E, EmployeeAndSyncFindEachSourcesOwnLink) {
  const int64_t t = 1'790'000'000;
  Send("hr", Body("a1", "employee.created", "1001", "ada", "Analyst", t));
  Send("hr2", Body("b1", "employee.created", "1001", "bob", "Baker", t + 1));
  const ScimUser ada = ByName("ada");
  const ScimUser bob = ByName("bob");
  auto [rc, text] = e2e_.RunCommand(0, {"employee", "--profile", "hr2", "1001"});
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("JumpCloud user: " + bob.id + " (linked)"), std::string::npos) << text;
  EXPECT_EQ(text.find(ada.id), std::string::npos) << text;

  // Bob's title drifts by hand; `sync` for hr2's 1001 puts it back and leaves Ada alone.
  auto drifted = Call("PATCH", "/Users/" + bob.id,
                      R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
                      R"("Operations":[{"op":"replace","path":"title","value":"Drifted"}]})");
  ASSERT_TRUE(drifted);
  ASSERT_LT(drifted->status, 300) << drifted->body;
  auto [sync_rc, sync] = e2e_.RunCommand(0, {"sync", "--profile", "hr2", "1001"});
  EXPECT_EQ(sync_rc, 0) << sync;
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  EXPECT_EQ(ByName("bob").title, "Baker") << sync;
  EXPECT_EQ(ByName("ada").title, "Analyst");
  EXPECT_EQ(Users().size(), 2u);
}

// An email change renames the account only where the profile says `username_updates: follow`;
// with the default (keep) the login stays, the email follows, and the log says what differs.
TEST_P(ScopesE2E, EmailChangeKeepsTheUserNameUnlessTheProfileFollows) {
  e2e_.StopDaemon(0);
  E2EDaemonOptions options;
  options.workers = 2;
  options.extra_profiles =
      "  - {name: hr2, connector: generic, secret_env: TEST_HR_SECRET, username_updates: follow}\n";
  if (scimmy()) {
    options.base_url = "http://127.0.0.1:" + std::to_string(port_) + "/scim/v2";
    options.api_key = kScimmyKey;
  }
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  auto hire = [](const std::string& id, const std::string& type, const std::string& email,
                 int64_t when) {
    return R"({"id":")" + id + R"(","type":")" + type + R"(","occurred_at":")" +
           std::to_string(when) +
           R"(","employee":{"id":"7","firstName":"F","lastName":"L","workEmail":")" + email +
           R"("}})";
  };
  Send("hr", hire("k1", "employee.created", "kim.old@example.com", 1));
  Send("hr2", hire("f1", "employee.created", "fay.old@example.com", 1));
  ASSERT_EQ(ByName("kim.old").external_id, "hr:7");
  ASSERT_EQ(ByName("fay.old").external_id, "hr2:7");

  Send("hr", hire("k2", "employee.updated", "kim.new@example.com", 2));
  Send("hr2", hire("f2", "employee.updated", "fay.new@example.com", 2));
  std::vector<ScimUser> users = Users();
  ASSERT_EQ(users.size(), 2u);
  ScimUser kept = ByName("kim.old");  // keep: the login stays
  ScimUser followed = ByName("fay.new");
  EXPECT_EQ(followed.external_id, "hr2:7");
  auto user = Call("GET", "/Users/" + kept.id);
  ASSERT_TRUE(user);
  EXPECT_NE(user->body.find("kim.new@example.com"), std::string::npos) << "the email is updated";
  EXPECT_EQ(user->body.find("kim.old@example.com"), std::string::npos) << user->body;
  e2e_.StopDaemon(0);
  const std::string log = e2e_.Log(0);
  EXPECT_NE(log.find("HR's userName differs from the JumpCloud user's; kept"), std::string::npos);
  EXPECT_NE(log.find("\"hr_user_name\":\"kim.new\""), std::string::npos);
  EXPECT_EQ(log.find("\"hr_user_name\":\"fay.new\""), std::string::npos);
  EXPECT_EQ(DeadLetters(), "");
}

// An install that ran with one profile (bare externalIds) adds a second: nothing of the first is
// adopted or renamed by the second, the first's employees are dead-lettered with the way out
// until `scimsyncd migrate-scope` namespaces their externalIds, and then converge again.
TEST_P(ScopesE2E, AddingASecondScopeMigratesTheFirstScopesExternalIds) {
  e2e_.StopDaemon(0);
  E2EDaemonOptions options;
  options.workers = 2;
  if (scimmy()) {
    options.base_url = "http://127.0.0.1:" + std::to_string(port_) + "/scim/v2";
    options.api_key = kScimmyKey;
  }
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  const int64_t t = 1'790'000'000;
  Send("hr", Body("a1", "employee.created", "1001", "ada", "Analyst", t));
  ASSERT_EQ(ByName("ada").external_id, "1001");  // one scope: bare, as always
  e2e_.StopDaemon(0);

  options.extra_profiles = "  - {name: hr2, connector: generic, secret_env: TEST_HR_SECRET}\n";
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  auto [dry_rc, dry] = e2e_.RunCommand(0, {"migrate-scope", "--profile", "hr"});
  EXPECT_EQ(dry_rc, 0) << dry;
  EXPECT_NE(dry.find("would rewrite  "), std::string::npos) << dry;
  EXPECT_NE(dry.find("externalId 1001 -> hr:1001"), std::string::npos) << dry;
  EXPECT_EQ(ByName("ada").external_id, "1001") << "a dry run wrote";

  Send("hr2", Body("b1", "employee.created", "1001", "bob", "Baker", t + 1));
  Send("hr", Body("a2", "employee.updated", "1001", "ada", "Lead Analyst", t + 2));
  EXPECT_EQ(Users().size(), 2u);
  EXPECT_EQ(ByName("ada").title, "Analyst");
  EXPECT_EQ(ByName("bob").external_id, "hr2:1001");
  const std::string dlq = DeadLetters();
  EXPECT_NE(dlq.find("scimsyncd migrate-scope --profile NAME"), std::string::npos) << dlq;

  auto [rc, text] = e2e_.RunCommand(0, {"migrate-scope", "--profile", "hr", "--apply"});
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("rewrote 1, skipped 0 of 2 JumpCloud users"), std::string::npos) << text;
  EXPECT_EQ(ByName("ada").external_id, "hr:1001");
  EXPECT_EQ(ByName("bob").external_id, "hr2:1001");

  auto [replay_rc, replay] = e2e_.RunCommand(0, {"dlq", "replay", "--all"});
  EXPECT_EQ(replay_rc, 0) << replay;
  ASSERT_TRUE(e2e_.WaitIdle(30000));
  EXPECT_EQ(ByName("ada").title, "Lead Analyst");
  EXPECT_EQ(DeadLetters(), "");
  EXPECT_EQ(Users().size(), 2u);

  auto [single_rc, single] = e2e_.RunCommand(0, {"migrate-scope", "--profile", "nope"});
  EXPECT_EQ(single_rc, 64) << single;
}

INSTANTIATE_TEST_SUITE_P(BothScimServers, ScopesE2E, ::testing::Values("fake", "scimmy"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace scimsync::testing
