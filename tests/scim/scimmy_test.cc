// The converger against an independent SCIM 2.0 implementation: scimmy + scimmy-routers +
// express (tests/scim/scimmy_server), started with node on loopback. scimmy parses our filters
// and applies our PATCH operations itself, so this catches wire-format mistakes that a
// home-made fake would share with the client.
#include <gtest/gtest.h>
#include <httplib.h>
#include <rapidjson/document.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "hook_transport.h"
#include "scimsync/clock.h"
#include "scimsync/scim/converger.h"
#include "test_support.h"

namespace scimsync::scim {
namespace {

constexpr char kKey[] = "scimmy-test-key";
constexpr char kEnt[] = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

class ScimmyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = std::make_unique<scimsync::testing::ScimmyServer>(kKey);
    started_ = server_->Start();
    port_ = server_->port();
  }
  static void TearDownTestSuite() {
    server_.reset();  // kills node
  }

  void SetUp() override { ASSERT_TRUE(started_) << server_->error(); }

  static std::string BaseUrl() { return "http://127.0.0.1:" + std::to_string(port_) + "/scim/v2"; }

  Converger& C(const std::string& key = kKey) {
    if (!converger_) {
      TransportOptions t;
      t.base_url = BaseUrl();
      t.api_key = key;
      auto transport = NewHttpTransport(t);
      EXPECT_TRUE(transport.ok());
      hook_ = new HookTransport(std::move(*transport));
      transport_.reset(hook_);
      ConvergerDeps deps;
      deps.transport = transport_.get();
      deps.limiter = limiter_.get();
      deps.links = &links_;
      deps.clock = &clock_;
      deps.random = &random_;
      deps.sleep = [this](int64_t ms) { clock_.AdvanceMs(ms); };
      converger_ = std::make_unique<Converger>(ConvergerOptions{}, std::move(deps));
    }
    return *converger_;
  }

  Outcome Run(const User& desired, Action action = Action::kSync) {
    Job job;
    job.scope = "scimmy";
    job.desired = desired;
    job.action = action;
    return C().Converge(job);
  }

  // Direct access to the server, bypassing the client under test.
  static httplib::Headers Auth() { return {{"x-api-key", kKey}}; }
  static rapidjson::Document Get(const std::string& path) {
    httplib::Client http("127.0.0.1", port_);
    auto r = http.Get(("/scim/v2" + path).c_str(), Auth());
    rapidjson::Document d;
    if (!r || r->status != 200) {
      ADD_FAILURE() << "GET " << path << " failed";
      d.SetObject();
      return d;
    }
    d.Parse(r->body.c_str());
    return d;
  }
  static std::string Post(const std::string& json) {
    httplib::Client http("127.0.0.1", port_);
    auto r = http.Post("/scim/v2/Users", Auth(), json, "application/scim+json");
    if (!r || r->status != 201) {
      ADD_FAILURE() << "POST failed: " << (r ? r->body : "no answer");
      return "";
    }
    rapidjson::Document d;
    d.Parse(r->body.c_str());
    return d["id"].GetString();
  }
  static int Count(const std::string& attribute, const std::string& value) {
    auto d = Get("/Users?filter=" + EqFilterQuery(attribute, value));
    return d.HasMember("totalResults") ? d["totalResults"].GetInt() : -1;
  }

  static User Employee(const std::string& id, const std::string& user_name) {
    User u;
    u.external_id = id;
    u.user_name = user_name;
    u.given_name = "Ada";
    u.family_name = "Lovelace";
    u.email = user_name + "@example.com";
    u.title = "Engineer";
    u.department = "R&D";
    return u;
  }

  static inline std::unique_ptr<scimsync::testing::ScimmyServer> server_;
  static inline int port_ = 0;
  static inline bool started_ = false;

  FakeClock clock_;
  SequenceRandom random_{{0.5}};
  MemoryLinkStore links_;
  std::unique_ptr<RateLimiter> limiter_ = NewMemoryRateLimiter({}, clock_);
  std::unique_ptr<Transport> transport_;
  HookTransport* hook_ = nullptr;
  std::unique_ptr<Converger> converger_;
};

TEST_F(ScimmyTest, CreateThenNothingToDo) {
  User ada = Employee("S-100", "ada");
  Outcome o = Run(ada);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason << "\n" << o.last_response;
  EXPECT_EQ(o.change, Change::kCreated);
  auto u = Get("/Users/" + o.jumpcloud_id);
  EXPECT_STREQ(u["externalId"].GetString(), "S-100");
  EXPECT_STREQ(u["userName"].GetString(), "ada");
  EXPECT_STREQ(u["name"]["familyName"].GetString(), "Lovelace");
  EXPECT_STREQ(u["emails"][0]["value"].GetString(), "ada@example.com");
  EXPECT_STREQ(u[kEnt]["employeeNumber"].GetString(), "S-100");
  EXPECT_STREQ(u[kEnt]["department"].GetString(), "R&D");

  Outcome again = Run(ada);
  ASSERT_EQ(again.decision, Decision::kDone) << again.reason;
  EXPECT_EQ(again.change, Change::kNone);
  EXPECT_EQ(again.jumpcloud_id, o.jumpcloud_id);
}

TEST_F(ScimmyTest, RenameIsAPatchNotASecondUser) {
  Outcome created = Run(Employee("S-200", "grace"));
  ASSERT_EQ(created.change, Change::kCreated) << created.reason;
  User renamed = Employee("S-200", "grace.hopper");
  renamed.family_name = "Hopper";
  renamed.department = "Navy";
  Outcome o = Run(renamed);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason << "\n" << o.last_response;
  EXPECT_EQ(o.change, Change::kUpdated);
  EXPECT_EQ(o.jumpcloud_id, created.jumpcloud_id);
  EXPECT_EQ(Count("externalId", "S-200"), 1);
  EXPECT_EQ(Count("userName", "grace"), 0);
  auto u = Get("/Users/" + o.jumpcloud_id);
  EXPECT_STREQ(u["userName"].GetString(), "grace.hopper");
  EXPECT_STREQ(u["emails"][0]["value"].GetString(), "grace.hopper@example.com");
  EXPECT_STREQ(u["name"]["familyName"].GetString(), "Hopper");
  EXPECT_STREQ(u[kEnt]["department"].GetString(), "Navy");
  EXPECT_STREQ(u[kEnt]["employeeNumber"].GetString(), "S-200");  // untouched
}

TEST_F(ScimmyTest, SuspendAndReactivate) {
  Outcome created = Run(Employee("S-300", "alan"));
  ASSERT_EQ(created.change, Change::kCreated) << created.reason;
  User leaver;
  leaver.external_id = "S-300";
  Outcome off = Run(leaver, Action::kSuspend);
  ASSERT_EQ(off.decision, Decision::kDone) << off.reason << "\n" << off.last_response;
  EXPECT_EQ(off.change, Change::kUpdated);
  EXPECT_FALSE(Get("/Users/" + created.jumpcloud_id)["active"].GetBool());
  EXPECT_STREQ(Get("/Users/" + created.jumpcloud_id)["userName"].GetString(), "alan");

  Outcome on = Run(Employee("S-300", "alan"), Action::kReactivate);
  ASSERT_EQ(on.decision, Decision::kDone) << on.reason;
  EXPECT_EQ(on.jumpcloud_id, created.jumpcloud_id);
  EXPECT_TRUE(Get("/Users/" + created.jumpcloud_id)["active"].GetBool());
}

TEST_F(ScimmyTest, ConflictOnCreateAdoptsTheUserThatWonTheRace) {
  C();
  std::string racer;
  hook_->before_post = [&racer] {
    racer = Post(R"({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],)"
                 R"("userName":"barbara","emails":[{"value":"b@example.com","primary":true}]})");
  };
  Outcome o = Run(Employee("S-400", "barbara"));
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason << "\n" << o.last_response;
  ASSERT_FALSE(racer.empty());
  EXPECT_EQ(o.jumpcloud_id, racer);
  EXPECT_EQ(o.change, Change::kUpdated);
  EXPECT_EQ(Count("userName", "barbara"), 1);
  auto u = Get("/Users/" + racer);
  EXPECT_STREQ(u["externalId"].GetString(), "S-400");
  EXPECT_STREQ(u["emails"][0]["value"].GetString(), "barbara@example.com");
}

TEST_F(ScimmyTest, UserNameHeldByAnotherEmployeeIsAConflict) {
  std::string holder = Post(R"({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],)"
                            R"("userName":"edsger","externalId":"S-999"})");
  Outcome o = Run(Employee("S-500", "edsger"));
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  ASSERT_TRUE(o.error.has_value());
  EXPECT_EQ(o.error->kind, ErrorKind::kConflict);
  EXPECT_NE(o.reason.find(holder), std::string::npos) << o.reason;
  EXPECT_NE(o.reason.find("S-999"), std::string::npos) << o.reason;
  EXPECT_EQ(Count("externalId", "S-500"), 0);
}

TEST_F(ScimmyTest, RenameOntoATakenNameIsAConflict) {
  ASSERT_EQ(Run(Employee("S-600", "linus")).change, Change::kCreated);
  std::string holder = Post(R"({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],)"
                            R"("userName":"torvalds","externalId":"S-601"})");
  Outcome o = Run(Employee("S-600", "torvalds"));
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  EXPECT_EQ(o.error->kind, ErrorKind::kConflict);
  EXPECT_NE(o.reason.find(holder), std::string::npos) << o.reason;
  EXPECT_NE(o.reason.find("uniqueness"), std::string::npos) << o.reason;  // scimmy's scimType
}

TEST_F(ScimmyTest, PutFallbackIsAcceptedAndKeepsUnmanagedAttributes) {
  std::string id = Post(R"({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],)"
                        R"("userName":"margaret","externalId":"S-700","nickName":"Maggie",)"
                        R"("active":false})");
  C().SetCapabilities({.patch = false, .filter = true});
  Outcome o = Run(Employee("S-700", "margaret"));
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason << "\n" << o.last_response;
  EXPECT_EQ(o.jumpcloud_id, id);
  auto u = Get("/Users/" + id);
  EXPECT_STREQ(u["nickName"].GetString(), "Maggie");
  EXPECT_FALSE(u["active"].GetBool());
  EXPECT_STREQ(u["title"].GetString(), "Engineer");
  EXPECT_STREQ(u[kEnt]["department"].GetString(), "R&D");
}

TEST_F(ScimmyTest, DeleteWhenAsked) {
  Outcome created = Run(Employee("S-800", "dennis"));
  ASSERT_EQ(created.change, Change::kCreated) << created.reason;
  Outcome gone = Run(Employee("S-800", "dennis"), Action::kDelete);
  ASSERT_EQ(gone.decision, Decision::kDone) << gone.reason;
  EXPECT_EQ(gone.change, Change::kDeleted);
  EXPECT_EQ(Count("externalId", "S-800"), 0);
}

TEST_F(ScimmyTest, WrongKeyPauses) {
  C("not-the-key");
  Outcome o = Run(Employee("S-900", "ken"));
  EXPECT_EQ(o.decision, Decision::kPause);
  EXPECT_EQ(o.error->http_status, 401);
}

}  // namespace
}  // namespace scimsync::scim
