// The converger against the in-process SCIM server: lifecycle, resolution, conflicts, and every
// fault the server can inject. Time (deadlines, rate-limit waits) runs on a FakeClock; only the
// HTTP timeouts are real.
#include "scimsync/scim/converger.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <rapidjson/document.h>

#include <chrono>
#include <memory>
#include <string>

#include "fake_scim_server.h"
#include "hook_transport.h"
#include "scimsync/clock.h"

namespace scimsync::scim {
namespace {

using testing::FakeScimOptions;
using testing::FakeScimServer;
using testing::Fault;

constexpr char kScope[] = "hibob";

std::string EnterprisePrefixed(const char* name) {
  return std::string("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:") + name;
}

User Jane() {
  User u;
  u.external_id = "E1";
  u.user_name = "jdoe";
  u.given_name = "Jane";
  u.family_name = "Doe";
  u.email = "jane.doe@example.com";
  u.department = "Engineering";
  return u;
}

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str(), text.size());
  EXPECT_FALSE(d.HasParseError()) << text;
  return d;
}

// The user reads active=false (absent counts as active: JumpCloud's default).
bool Inactive(const rapidjson::Value& user) {
  return user.IsObject() && user.HasMember("active") && user["active"].IsBool() &&
         !user["active"].GetBool();
}

std::string Str(const rapidjson::Value& v, const char* key) {
  return v.IsObject() && v.HasMember(key) && v[key].IsString() ? v[key].GetString() : "";
}

class ConvergerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_->Start()); }

  void Restart(FakeScimOptions options) {
    server_ = std::make_unique<FakeScimServer>(options);
    ASSERT_TRUE(server_->Start());
    converger_.reset();
  }

  TransportOptions Transport() const {
    TransportOptions t;
    t.base_url = server_->base_url();
    t.api_key = "test-key";
    return t;
  }

  Converger& C() {
    if (!converger_) {
      auto t = NewHttpTransport(transport_options_ ? *transport_options_ : Transport());
      EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
      hook_ = new HookTransport(std::move(*t));
      transport_.reset(hook_);
      ConvergerDeps deps;
      deps.transport = transport_.get();
      deps.limiter = limiter_.get();
      deps.links = &links_;
      deps.clock = &clock_;
      deps.random = &random_;
      deps.sleep = [this](int64_t ms) {
        sleeps_.push_back(ms);
        clock_.AdvanceMs(ms);
      };
      converger_ = std::make_unique<Converger>(options_, std::move(deps));
    }
    return *converger_;
  }

  Outcome Run(const User& desired, Action action = Action::kSync, int attempt = 1) {
    Job job;
    job.scope = kScope;
    job.desired = desired;
    job.action = action;
    job.attempt = attempt;
    job.first_attempt_ms = clock_.NowMs();
    job.trace_id = "t-1";
    return C().Converge(job);
  }

  std::string OnlyUser() {
    auto users = server_->Users();
    EXPECT_EQ(users.size(), 1u);
    return users.empty() ? "{}" : users[0];
  }

  std::optional<std::string> Link(const std::string& employee = "E1") {
    auto l = links_.Get(kScope, employee);
    EXPECT_TRUE(l.ok());
    return l.ok() ? *l : std::nullopt;
  }

  std::unique_ptr<FakeScimServer> server_ = std::make_unique<FakeScimServer>();
  FakeClock clock_;
  SequenceRandom random_{{0.5}};
  MemoryLinkStore links_;
  std::unique_ptr<RateLimiter> limiter_ = NewMemoryRateLimiter(
      [] {
        RateLimitOptions o;
        o.requests_per_second = 0;
        return o;
      }(),
      clock_);
  std::vector<int64_t> sleeps_;
  ConvergerOptions options_;
  std::optional<TransportOptions> transport_options_;
  std::unique_ptr<scim::Transport> transport_;
  HookTransport* hook_ = nullptr;
  std::unique_ptr<Converger> converger_;
};

// --- Lifecycle ------------------------------------------------------------------------------

TEST_F(ConvergerTest, CreatesAnAbsentUserAndStoresTheLink) {
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kCreated);
  EXPECT_FALSE(o.jumpcloud_id.empty());
  EXPECT_EQ(Link(), o.jumpcloud_id);

  auto user = Json(OnlyUser());
  EXPECT_EQ(Str(user, "id"), o.jumpcloud_id);
  EXPECT_EQ(Str(user, "externalId"), "E1");
  EXPECT_EQ(Str(user, "userName"), "jdoe");
  EXPECT_EQ(Str(user["name"], "givenName"), "Jane");
  EXPECT_EQ(Str(user["emails"][0], "value"), "jane.doe@example.com");
  const auto& ent = user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
  EXPECT_EQ(Str(ent, "employeeNumber"), "E1");
  EXPECT_EQ(Str(ent, "department"), "Engineering");
  EXPECT_FALSE(user.HasMember("password"));

  // Looked up by externalId, then created: a hire is two requests (after the converger's one
  // capabilities probe). The userName is looked up only after a 409.
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].path, "/ServiceProviderConfig");
  EXPECT_EQ(reqs[1].filter, R"(externalId eq "E1")");
  EXPECT_EQ(reqs[2].method, "POST");
  EXPECT_EQ(reqs[2].headers["x-api-key"], "test-key");
  EXPECT_EQ(reqs[2].headers["content-type"], "application/scim+json");
  EXPECT_EQ(reqs[2].headers["accept"], "application/scim+json");
  EXPECT_EQ(reqs[2].headers.count("x-org-id"), 0u);
  // Only a failed job carries its last exchange (for the dead letter).
  EXPECT_EQ(o.last_request, "");
  EXPECT_EQ(o.last_response, "");
}

TEST_F(ConvergerTest, SecondSyncOfTheSameStateWritesNothing) {
  ASSERT_EQ(Run(Jane()).change, Change::kCreated);
  server_->ClearRequests();
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kNone);
  EXPECT_TRUE(o.written.empty());
  // The link's snapshot says the user already holds this state: no request at all.
  EXPECT_EQ(server_->requests().size(), 0u);
  EXPECT_EQ(Link(), o.jumpcloud_id);
}

TEST_F(ConvergerTest, RenameIsAPatchOfTheSameUser) {
  std::string id = Run(Jane()).jumpcloud_id;
  User renamed = Jane();
  renamed.user_name = "jsmith";
  renamed.family_name = "Smith";
  renamed.email = "jane.smith@example.com";
  server_->ClearRequests();
  Outcome o = Run(renamed);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kUpdated);
  EXPECT_EQ(o.jumpcloud_id, id);
  EXPECT_EQ(o.written, (std::vector<std::string>{"userName", "name.familyName", "emails"}));
  // One request: the PATCH, no GET first.
  EXPECT_EQ(server_->requests().size(), 1u);
  EXPECT_EQ(server_->CountRequests("PATCH"), 1);
  EXPECT_EQ(server_->CountRequests("POST"), 0);
  auto user = Json(OnlyUser());
  EXPECT_EQ(Str(user, "id"), id);
  EXPECT_EQ(Str(user, "userName"), "jsmith");
  EXPECT_EQ(Str(user["name"], "familyName"), "Smith");
  EXPECT_EQ(Str(user["emails"][0], "value"), "jane.smith@example.com");
}

// username_updates: keep. The login stays what it was at creation; the email still follows HR.
TEST_F(ConvergerTest, AKeptUserNameIsNotRenamedButTheRestConverges) {
  std::string id = Run(Jane()).jumpcloud_id;
  Job job;
  job.scope = kScope;
  job.desired = Jane();
  job.desired.user_name = "jsmith";
  job.desired.email = "jane.smith@example.com";
  job.first_attempt_ms = clock_.NowMs();
  job.follow_user_name = false;
  Outcome o = C().Converge(job);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.written, (std::vector<std::string>{"emails"}));
  auto user = Json(OnlyUser());
  EXPECT_EQ(Str(user, "id"), id);
  EXPECT_EQ(Str(user, "userName"), "jdoe");
  EXPECT_EQ(Str(user["emails"][0], "value"), "jane.smith@example.com");
}

// Several scopes: a user another scope's link owns is never adopted, even with no externalId.
TEST_F(ConvergerTest, AUserAnotherScopeOwnsIsAConflictNamingBothSides) {
  std::string id = server_->AddUser(R"({"userName":"jdoe","emails":[{"value":"x@example.com"}]})");
  ASSERT_TRUE(links_.Put("bamboohr", "bamboohr:7", id).ok());
  Job job;
  job.scope = "hibob";
  job.desired = Jane();
  job.desired.external_id = "hibob:E1";
  job.first_attempt_ms = clock_.NowMs();
  job.other_scopes = true;
  Outcome o = C().Converge(job);
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  ASSERT_TRUE(o.error.has_value());
  EXPECT_EQ(o.error->kind, ErrorKind::kConflict);
  EXPECT_NE(o.reason.find("belongs to employee bamboohr:7 of bamboohr; employee hibob:E1 of hibob"),
            std::string::npos)
      << o.reason;
  EXPECT_EQ(server_->CountRequests("PATCH"), 0);
  // The POST came first and was refused (the userName is taken); only then was it looked up.
  EXPECT_EQ(server_->CountRequests("POST"), 1);
  EXPECT_EQ(server_->user_count(), 1u);
  // One scope: the same user is adopted, as before scopes existed.
  job.other_scopes = false;
  EXPECT_EQ(C().Converge(job).decision, Decision::kDone);
}

TEST_F(ConvergerTest, SuspendTouchesOnlyActiveAndWorksOnAHalfEmptyRecord) {
  std::string id = Run(Jane()).jumpcloud_id;
  User leaver;
  leaver.external_id = "E1";  // the HRIS already cleared name and email
  server_->ClearRequests();
  Outcome o = Run(leaver, Action::kSuspend);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kUpdated);
  EXPECT_EQ(o.written, (std::vector<std::string>{"active"}));
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.back().method, "PATCH");
  EXPECT_EQ(reqs.back().body, R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
                              R"("Operations":[{"op":"replace","path":"active","value":false}]})");
  auto user = Json(OnlyUser());
  EXPECT_FALSE(user["active"].GetBool());
  EXPECT_EQ(Str(user, "userName"), "jdoe");

  // Suspending again: sent again (see AlwaysSendsTheSuspension...).
  EXPECT_EQ(Run(leaver, Action::kSuspend).change, Change::kUpdated);

  // Rehire: the same user comes back.
  Outcome back = Run(Jane(), Action::kReactivate);
  ASSERT_EQ(back.decision, Decision::kDone) << back.reason;
  EXPECT_EQ(back.jumpcloud_id, id);
  EXPECT_TRUE(Json(OnlyUser())["active"].GetBool());
}

// A late rehire (status_only): an existing user gets `active` alone, its newer attributes stay;
// a user JumpCloud does not have is created from the record.
TEST_F(ConvergerTest, AStatusOnlyJobWritesOnlyActiveOrCreatesFromTheRecord) {
  User newer = Jane();
  newer.title = "Director";
  ASSERT_EQ(Run(newer).change, Change::kCreated);
  User leaver;
  leaver.external_id = "E1";
  ASSERT_EQ(Run(leaver, Action::kSuspend).change, Change::kUpdated);

  Job job;
  job.scope = kScope;
  job.desired = Jane();
  job.desired.title = "Analyst";
  job.desired.user_name = "jane.old";
  job.desired.active = true;
  job.status_only = true;
  job.trace_id = "t-2";
  server_->ClearRequests();
  Outcome o = C().Converge(job);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.written, (std::vector<std::string>{"active"}));
  auto user = Json(OnlyUser());
  EXPECT_TRUE(user["active"].GetBool());
  EXPECT_EQ(Str(user, "title"), "Director");
  EXPECT_EQ(Str(user, "userName"), "jdoe");

  job.desired.external_id = "E2";
  job.desired.email = "e2@example.com";
  Outcome created = C().Converge(job);
  ASSERT_EQ(created.decision, Decision::kDone) << created.reason;
  EXPECT_EQ(created.change, Change::kCreated);
  EXPECT_EQ(server_->FindUsers("externalId", "E2").size(), 1u);
}

// JumpCloud reads active = !suspended && !passwordExpired: a user whose password expired (or is
// still pending) reads inactive but is not suspended, and a password reset gives access back.
TEST_F(ConvergerTest, AlwaysSendsTheSuspensionEvenWhenTheUserReadsInactive) {
  std::string id = server_->AddUser(
      R"({"userName":"jdoe","externalId":"E1","active":false,
          "emails":[{"value":"jane.doe@example.com","primary":true}]})");
  User leaver;
  leaver.external_id = "E1";
  Outcome o = Run(leaver, Action::kSuspend);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kUpdated);
  EXPECT_TRUE(o.suspended);
  ASSERT_EQ(server_->CountRequests("PATCH"), 1);
  EXPECT_EQ(server_->requests().back().body,
            R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
            R"("Operations":[{"op":"replace","path":"active","value":false}]})");

  // The same for a termination that carries the record (a sync to active=false).
  User terminated = Jane();
  terminated.active = false;
  server_->ClearRequests();
  o = Run(terminated);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(server_->CountRequests("PATCH"), 2);  // active=false, then the record
  EXPECT_EQ(o.jumpcloud_id, id);
}

// A termination with its record: active=false goes alone and first, so a record JumpCloud
// refuses (the new email's local part is another employee's userName) cannot keep it active.
TEST_F(ConvergerTest, ASuspensionLandsWhenTheRecordsRenameIsAConflict) {
  Run(Jane());
  std::string holder = server_->AddUser(R"({"userName":"jsmith","externalId":"E2"})");
  User leaver = Jane();
  leaver.user_name = "jsmith";
  leaver.title = "Former";
  leaver.active = false;
  server_->ClearRequests();
  Outcome o = Run(leaver);
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  ASSERT_TRUE(o.error.has_value());
  EXPECT_EQ(o.error->kind, ErrorKind::kConflict);
  EXPECT_TRUE(o.suspended);
  EXPECT_NE(o.reason.find("is suspended"), std::string::npos) << o.reason;
  EXPECT_NE(o.reason.find(holder), std::string::npos) << o.reason;
  // active=false alone; the record from the snapshot (409); the record again after reading the
  // user (409 again: the name is taken), then the holder is looked up for the message.
  auto patches = server_->requests();
  std::erase_if(patches, [](const auto& r) { return r.method != "PATCH"; });
  ASSERT_EQ(patches.size(), 3u);
  EXPECT_EQ(patches[0].body, R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
                             R"("Operations":[{"op":"replace","path":"active","value":false}]})");
  auto users = server_->FindUsers("externalId", "E1");
  ASSERT_EQ(users.size(), 1u);
  auto user = Json(users[0]);
  EXPECT_TRUE(Inactive(user));
  EXPECT_EQ(Str(user, "userName"), "jdoe");
}

TEST_F(ConvergerTest, ASuspensionLandsWhenOneAttributeIsRefused) {
  Run(Jane());
  C();
  // JumpCloud refuses the record's title with a 400; the suspension is a request of its own.
  hook_->answer = [](const HttpRequest& r) -> std::optional<HttpResponse> {
    if (r.method == "PATCH" && r.body.find("title") != std::string::npos) {
      HttpResponse bad;
      bad.status = 400;
      bad.body = R"({"detail":"title: invalid value","status":"400"})";
      return bad;
    }
    return std::nullopt;
  };
  User leaver = Jane();
  leaver.title = "Former";
  leaver.active = false;
  Outcome o = Run(leaver);
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  EXPECT_TRUE(o.suspended);
  EXPECT_NE(o.last_request.find("title"), std::string::npos) << o.last_request;
  EXPECT_TRUE(Inactive(Json(OnlyUser())));

  // A suspension that itself fails is retried on its own, and nothing else is sent.
  server_->ClearRequests();
  server_->InjectFault(Fault::Status(503).On("PATCH"));
  o = Run(leaver, Action::kSync, 2);
  EXPECT_EQ(o.decision, Decision::kRetry);
  EXPECT_FALSE(o.suspended);
  EXPECT_EQ(server_->CountRequests("PATCH"), 1);
}

TEST_F(ConvergerTest, NoAccountIsCreatedForALeaver) {
  User leaver = Jane();
  leaver.active = false;  // a termination that carries the record
  Outcome o = Run(leaver);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kAbsent);
  EXPECT_EQ(server_->CountRequests("POST"), 0);
  EXPECT_EQ(server_->user_count(), 0u);
}

// An update for an employee whose newest known state is terminated (its user deleted by an
// admin) creates nothing; the question is asked only before a create.
TEST_F(ConvergerTest, NoAccountIsCreatedForAKnownLeaversUpdate) {
  int asked = 0;
  Job job;
  job.scope = kScope;
  job.desired = Jane();
  job.first_attempt_ms = clock_.NowMs();
  job.known_terminated = [&asked]() -> Result<bool> {
    ++asked;
    return true;
  };
  Outcome o = C().Converge(job);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kAbsent);
  EXPECT_EQ(server_->CountRequests("POST"), 0);
  EXPECT_EQ(asked, 1);

  // Its store unreachable: retried, never created.
  job.known_terminated = []() -> Result<bool> { return Error::Transient("redis: down"); };
  EXPECT_EQ(C().Converge(job).decision, Decision::kRetry);
  EXPECT_EQ(server_->CountRequests("POST"), 0);

  // An existing user is synced without asking.
  server_->AddUser(R"({"userName":"jdoe","externalId":"E1"})");
  job.known_terminated = [&asked]() -> Result<bool> {
    ++asked;
    return true;
  };
  EXPECT_EQ(C().Converge(job).change, Change::kUpdated);
  EXPECT_EQ(asked, 1);
}

TEST_F(ConvergerTest, ALeaverAccountIsCreatedSuspendedOnlyWhenAllowed) {
  options_.create_leavers = true;  // audit accounts
  User leaver = Jane();
  leaver.active = false;
  Outcome o = Run(leaver);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kCreated);
  EXPECT_TRUE(Inactive(Json(OnlyUser())));
}

TEST_F(ConvergerTest, SuspendOrDeleteOfAnUnknownEmployeeDoesNothing) {
  EXPECT_EQ(Run(Jane(), Action::kSuspend).change, Change::kAbsent);
  EXPECT_EQ(Run(Jane(), Action::kDelete).change, Change::kAbsent);
  EXPECT_EQ(server_->user_count(), 0u);
  EXPECT_EQ(server_->CountRequests("POST"), 0);
}

TEST_F(ConvergerTest, ReactivateOfAnUnknownEmployeeCreatesAnActiveUser) {
  Outcome o = Run(Jane(), Action::kReactivate);
  ASSERT_EQ(o.change, Change::kCreated) << o.reason;
  EXPECT_TRUE(Json(OnlyUser())["active"].GetBool());
}

TEST_F(ConvergerTest, AnIgnoredEventSendsNothing) {
  Run(Jane());
  server_->ClearRequests();
  Outcome o = Run(Jane(), Action::kIgnore);
  EXPECT_EQ(o.decision, Decision::kDone);
  EXPECT_EQ(o.change, Change::kNone);
  EXPECT_TRUE(server_->requests().empty());
  EXPECT_STREQ(ActionName(Action::kIgnore), "ignore");
}

TEST_F(ConvergerTest, DeleteOnlyWhenAsked) {
  Run(Jane());
  Outcome o = Run(Jane(), Action::kDelete);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kDeleted);
  EXPECT_EQ(server_->user_count(), 0u);
  EXPECT_FALSE(Link().has_value());
}

// --- Resolution -----------------------------------------------------------------------------

TEST_F(ConvergerTest, FindsAnUnlinkedUserByExternalId) {
  std::string id = server_->AddUser(
      R"({"externalId":"E1","userName":"old.name","emails":[{"value":"x@example.com"}]})");
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.jumpcloud_id, id);
  EXPECT_EQ(o.change, Change::kUpdated);
  EXPECT_EQ(Link(), id);
  EXPECT_EQ(server_->CountRequests("POST"), 0);
  EXPECT_EQ(Str(Json(OnlyUser()), "userName"), "jdoe");
}

TEST_F(ConvergerTest, AdoptsAUserWithTheSameUserNameAndNoExternalId) {
  std::string id = server_->AddUser(R"({"userName":"JDoe","nickName":"JJ"})");
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.jumpcloud_id, id);
  auto user = Json(OnlyUser());
  EXPECT_EQ(Str(user, "externalId"), "E1");
  EXPECT_EQ(Str(user, "nickName"), "JJ");  // not managed, not touched
}

TEST_F(ConvergerTest, UserNameOfAnotherEmployeeIsAConflictReportingBothIds) {
  std::string other = server_->AddUser(R"({"userName":"jdoe","externalId":"E2"})");
  Outcome o = Run(Jane());
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  ASSERT_TRUE(o.error.has_value());
  EXPECT_EQ(o.error->kind, ErrorKind::kConflict);
  EXPECT_NE(o.reason.find(other), std::string::npos) << o.reason;
  EXPECT_NE(o.reason.find("E2"), std::string::npos) << o.reason;
  EXPECT_NE(o.reason.find("E1"), std::string::npos) << o.reason;
  EXPECT_EQ(server_->user_count(), 1u);
  // The POST was refused (409 uniqueness), and only then the userName looked up.
  EXPECT_EQ(server_->CountRequests("POST"), 1);
  EXPECT_EQ(server_->CountRequests("PATCH"), 0);
}

TEST_F(ConvergerTest, TwoUsersWithOneExternalIdIsAConflict) {
  std::string a = server_->AddUser(R"({"userName":"a","externalId":"E1"})");
  std::string b = server_->AddUser(R"({"userName":"b","externalId":"E1"})");
  Outcome o = Run(Jane());
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  ASSERT_TRUE(o.error.has_value());
  EXPECT_EQ(o.error->kind, ErrorKind::kConflict);
  EXPECT_NE(o.reason.find(a), std::string::npos);
  EXPECT_NE(o.reason.find(b), std::string::npos);
}

TEST_F(ConvergerTest, LinkToAnotherEmployeesUserIsAConflict) {
  std::string other = server_->AddUser(R"({"userName":"x","externalId":"E2"})");
  ASSERT_TRUE(links_.Put(kScope, "E1", other).ok());
  Outcome o = Run(Jane());
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  EXPECT_EQ(o.error->kind, ErrorKind::kConflict);
  EXPECT_NE(o.reason.find(other), std::string::npos);
}

TEST_F(ConvergerTest, StaleLinkIsDroppedAndTheEmployeeResolvedAgain) {
  std::string first = Run(Jane()).jumpcloud_id;
  server_->RemoveUser(first);  // deleted by an admin in JumpCloud
  std::string again = server_->AddUser(R"({"userName":"jdoe","externalId":"E1"})");
  // The same state again sends nothing (the snapshot); the next change finds out.
  EXPECT_EQ(Run(Jane()).change, Change::kNone);
  User changed = Jane();
  changed.title = "Lead";
  Outcome o = Run(changed);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.jumpcloud_id, again);
  EXPECT_EQ(Link(), again);
  EXPECT_EQ(server_->user_count(), 1u);
}

TEST_F(ConvergerTest, ConflictOnCreateResolvesAgainAndAdopts) {
  // Someone creates the same username between our lookup and our POST: the POST gets 409.
  C();
  hook_->before_post = [this] { server_->AddUser(R"({"userName":"jdoe"})"); };
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kUpdated);
  EXPECT_EQ(server_->user_count(), 1u);
  EXPECT_EQ(server_->CountRequests("POST"), 1);
  EXPECT_EQ(Str(Json(OnlyUser()), "externalId"), "E1");
  EXPECT_EQ(Link(), o.jumpcloud_id);
}

TEST_F(ConvergerTest, ConflictOnCreateWithNothingToFindIsAConflict) {
  server_->InjectFault(Fault::Status(409).On("POST").Times(5));
  Outcome o = Run(Jane());
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  EXPECT_EQ(o.error->kind, ErrorKind::kConflict);
  EXPECT_NE(o.reason.find("409"), std::string::npos);
  EXPECT_EQ(server_->CountRequests("POST"), 3);  // bounded rounds
}

TEST_F(ConvergerTest, RenameOntoATakenUserNameIsAConflictNamingTheHolder) {
  Run(Jane());
  std::string holder = server_->AddUser(R"({"userName":"jsmith","externalId":"E2"})");
  User renamed = Jane();
  renamed.user_name = "jsmith";
  Outcome o = Run(renamed);
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  EXPECT_EQ(o.error->kind, ErrorKind::kConflict);
  EXPECT_NE(o.reason.find(holder), std::string::npos) << o.reason;
  EXPECT_NE(o.last_request.find("PATCH"), std::string::npos) << o.last_request;
}

// --- Without PATCH --------------------------------------------------------------------------

TEST_F(ConvergerTest, WithoutPatchMergesAndPutsCarryingUnmanagedAttributes) {
  Restart({.patch_supported = false});
  std::string id = server_->AddUser(
      R"({"userName":"jdoe","externalId":"E1","nickName":"JJ","active":false,
          "name":{"givenName":"J","familyName":"Doe","middleName":"Q"},
          "emails":[{"value":"jane.doe@example.com","primary":true}]})");
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kUpdated);
  EXPECT_EQ(server_->CountRequests("PATCH"), 0);
  EXPECT_EQ(server_->CountRequests("PUT"), 1);
  auto user = Json(OnlyUser());
  EXPECT_EQ(Str(user["name"], "givenName"), "Jane");
  EXPECT_EQ(Str(user["name"], "middleName"), "Q");
  EXPECT_EQ(Str(user, "nickName"), "JJ");
  EXPECT_FALSE(user["active"].GetBool());  // sync does not manage active: carried forward
}

TEST_F(ConvergerTest, MissingServiceProviderConfigMeansPatch) {
  Restart({.service_provider_config = false});
  Run(Jane());
  User renamed = Jane();
  renamed.title = "CTO";
  ASSERT_EQ(Run(renamed).change, Change::kUpdated);
  EXPECT_EQ(server_->CountRequests("PATCH"), 1);
}

// --- Faults ---------------------------------------------------------------------------------

TEST_F(ConvergerTest, Status429HonoursRetryAfterAndBlocksEveryone) {
  server_->InjectFault(Fault::Status(429, "3").On("GET", "/Users"));
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kRetry);
  EXPECT_EQ(o.retry_after_ms, 3000);
  EXPECT_EQ(o.error->kind, ErrorKind::kTransient);
  EXPECT_EQ(o.error->http_status, 429);
  // The shared limiter holds the next request (any worker's) until Retry-After has passed.
  Outcome next = Run(Jane(), Action::kSync, 2);
  ASSERT_EQ(next.decision, Decision::kDone) << next.reason;
  ASSERT_FALSE(sleeps_.empty());
  EXPECT_EQ(sleeps_.front(), 3000);
  // The wait is reported: the worker pool reads ahead when its passes spend time here.
  EXPECT_EQ(next.rate_wait_ms, 3000);
  EXPECT_EQ(o.rate_wait_ms, 0);
}

TEST_F(ConvergerTest, RateLimitWaitBeyondTheBoundReturnsTheJob) {
  options_.max_rate_wait_ms = 1000;
  options_.retry.max_attempts = 3;
  ASSERT_TRUE(limiter_->Throttled(60000).ok());
  // Even on what would be the last attempt: waiting for a slot is not a failure.
  Outcome o = Run(Jane(), Action::kSync, 3);
  ASSERT_EQ(o.decision, Decision::kRetry) << o.reason;
  EXPECT_TRUE(o.rate_limited);
  EXPECT_EQ(o.retry_after_ms, 60000);
  EXPECT_TRUE(server_->requests().empty());
}

TEST_F(ConvergerTest, FailuresAreNotMarkedRateLimited) {
  server_->InjectFault(Fault::Status(429, "1").On("GET", "/Users"));
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kRetry);
  EXPECT_FALSE(o.rate_limited);  // the server's 429 is a failed attempt
}

TEST_F(ConvergerTest, ServerErrorIsRetriedWithBackoff) {
  server_->InjectFault(Fault::Status(500).On("GET", "/Users"));
  Outcome o = Run(Jane(), Action::kSync, 3);
  ASSERT_EQ(o.decision, Decision::kRetry);
  EXPECT_EQ(o.retry_after_ms, 2000);  // 0.5 * min(300 s, 1 s * 2^2)
  EXPECT_NE(o.last_response.find("HTTP 500"), std::string::npos);
}

TEST_F(ConvergerTest, ServerErrorOnTheLastAttemptIsGivenUp) {
  options_.retry.max_attempts = 3;
  server_->InjectFault(Fault::Status(503).On("GET", "/Users"));
  Outcome o = Run(Jane(), Action::kSync, 3);
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  EXPECT_EQ(o.error->kind, ErrorKind::kTransient);
  EXPECT_NE(o.reason.find("gave up after 3 attempts"), std::string::npos);
}

TEST_F(ConvergerTest, SlowPostNeverYieldsTwoAccounts) {
  options_.timeout_ms = 300;
  // JumpCloud creates the user but answers after the client gave up.
  server_->InjectFault(Fault::Delay(1500).On("POST", "/Users"));
  Outcome first = Run(Jane());
  ASSERT_EQ(first.decision, Decision::kRetry) << first.reason;
  EXPECT_EQ(first.error->kind, ErrorKind::kTransient);
  EXPECT_EQ(server_->user_count(), 1u);

  Outcome second = Run(Jane(), Action::kSync, 2);
  ASSERT_EQ(second.decision, Decision::kDone) << second.reason;
  EXPECT_EQ(server_->CountRequests("POST"), 1);
  EXPECT_EQ(server_->user_count(), 1u);
  EXPECT_EQ(Link(), Str(Json(OnlyUser()), "id"));
}

TEST_F(ConvergerTest, DroppedConnectionIsRetried) {
  server_->InjectFault(Fault::Drop().On("GET", "/Users"));
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kRetry);
  EXPECT_EQ(o.error->kind, ErrorKind::kTransient);
  EXPECT_NE(o.last_response.find("no answer"), std::string::npos);
  EXPECT_EQ(Run(Jane(), Action::kSync, 2).change, Change::kCreated);
}

TEST_F(ConvergerTest, UnreachableServerIsRetried) {
  server_->Stop();
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kRetry);
  EXPECT_EQ(o.error->kind, ErrorKind::kTransient);
}

TEST_F(ConvergerTest, RefusedKeyPausesWithoutLeakingIt) {
  TransportOptions t = Transport();
  t.api_key = "wrong-key-123";
  transport_options_ = t;
  Outcome o = Run(Jane());
  EXPECT_EQ(o.decision, Decision::kPause);
  EXPECT_EQ(o.error->kind, ErrorKind::kAuth);
  EXPECT_EQ(o.error->http_status, 401);
  EXPECT_NE(o.reason.find("api_key"), std::string::npos);
  for (const auto& text : {o.reason, o.last_request, o.last_response}) {
    EXPECT_EQ(text.find("wrong-key-123"), std::string::npos) << text;
  }
  EXPECT_EQ(server_->CountRequests("POST"), 0);
}

TEST_F(ConvergerTest, BadRequestIsGivenUpWithTheRedactedExchange) {
  server_->InjectFault(Fault::Status(400).On("POST"));
  User u = Jane();
  u.password = "Initial-Pa55";
  Outcome o = Run(u);
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  EXPECT_EQ(o.error->kind, ErrorKind::kPermanent);
  EXPECT_NE(o.last_request.find("POST http://127.0.0.1"), std::string::npos) << o.last_request;
  EXPECT_NE(o.last_request.find("\"password\":\"[redacted]\""), std::string::npos);
  EXPECT_EQ(o.last_request.find("Initial-Pa55"), std::string::npos);
  EXPECT_NE(o.last_response.find("HTTP 400"), std::string::npos);
}

TEST_F(ConvergerTest, InvalidDesiredUserIsGivenUpBeforeAnyRequest) {
  User u = Jane();
  u.user_name = "jane@example.com";
  Outcome o = Run(u);
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  EXPECT_EQ(o.error->kind, ErrorKind::kInvalid);
  EXPECT_NE(o.reason.find("userName"), std::string::npos);
  EXPECT_TRUE(server_->requests().empty());
}

TEST_F(ConvergerTest, JobOlderThanMaxAgeIsGivenUpWithoutSending) {
  options_.retry.max_age_ms = 60000;
  Job job;
  job.scope = kScope;
  job.desired = Jane();
  job.attempt = 2;
  job.first_attempt_ms = clock_.NowMs() - 61000;
  Outcome o = C().Converge(job);
  EXPECT_EQ(o.decision, Decision::kGiveUp);
  EXPECT_NE(o.reason.find("max_age_s"), std::string::npos) << o.reason;
  EXPECT_EQ(server_->CountRequests("POST"), 0);
  EXPECT_EQ(server_->CountRequests("GET", "/Users"), 0);
}

// --- Headers --------------------------------------------------------------------------------

TEST_F(ConvergerTest, BearerAuthAndOrgId) {
  TransportOptions t = Transport();
  t.auth_header = "bearer";
  t.org_id = "org-42";
  transport_options_ = t;
  ASSERT_EQ(Run(Jane()).decision, Decision::kDone);
  for (const auto& r : server_->requests()) {
    EXPECT_EQ(r.headers.at("authorization"), "Bearer test-key");
    EXPECT_EQ(r.headers.count("x-api-key"), 0u);
    EXPECT_EQ(r.headers.at("x-org-id"), "org-42");
  }
}

TEST_F(ConvergerTest, FilterValuesAreEscapedOnTheWire) {
  User u = Jane();
  u.external_id = R"(E"1\x)";
  ASSERT_EQ(Run(u).change, Change::kCreated);
  auto reqs = server_->requests();
  ASSERT_GE(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].filter, R"(externalId eq "E\"1\\x")");
  EXPECT_NE(reqs[1].target.find("filter=externalId%20eq%20%22E%5C%221%5C%5Cx%22"),
            std::string::npos)
      << reqs[1].target;
  // And it is found again by that filter.
  EXPECT_EQ(server_->FindUsers("externalId", R"(E"1\x)").size(), 1u);
  ASSERT_TRUE(links_.Remove(kScope, u.external_id).ok());
  EXPECT_EQ(Run(u).change, Change::kNone);
}

}  // namespace
}  // namespace scimsync::scim

namespace scimsync::scim {
namespace {

// The fake's benchmark settings: a fixed latency on every answer, and counting without keeping
// every request.
TEST(FakeScimServer, LatencyAndCountingWithoutRecording) {
  testing::FakeScimServer server({.latency_ms = 30, .record_requests = false});
  ASSERT_TRUE(server.Start());
  TransportOptions t;
  t.base_url = server.base_url();
  t.api_key = "test-key";
  auto transport = NewHttpTransport(t);
  ASSERT_TRUE(transport.ok());
  auto started = std::chrono::steady_clock::now();
  auto r = (*transport)->Send({"GET", "/Users", ""}, 2000);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started)
                .count();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_GE(ms, 30);
  EXPECT_TRUE(server.requests().empty());
  EXPECT_EQ(server.TotalRequests("GET"), 1);
  EXPECT_EQ(server.TotalRequests(), 1);
}

// --- Requests per HR change (issue 20): the rate limit is the bottleneck -------------------------

class RequestsPerChangeTest : public ConvergerTest {
 protected:
  // The converger's capabilities probe is made before counting: it happens once per process.
  void SetUp() override {
    ConvergerTest::SetUp();
    ASSERT_TRUE(C().Probe().ok());
    server_->ClearRequests();
  }

  // An admin edits the user in JumpCloud's console.
  void EditByHand(const std::string& id, const std::string& path, const std::string& value) {
    httplib::Client cli("127.0.0.1", server_->port());
    std::string body = R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
                       R"("Operations":[{"op":"replace","path":")" +
                       path + R"(","value":")" + value + R"("}]})";
    auto r = cli.Patch("/scim/v2/Users/" + id, {{"x-api-key", "test-key"}}, body,
                       "application/scim+json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  }

  int64_t Total() { return server_->TotalRequests(); }
};

TEST_F(RequestsPerChangeTest, AHireIsTwoRequests) {
  Outcome o = Run(Jane());
  ASSERT_EQ(o.change, Change::kCreated) << o.reason;
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].filter, R"(externalId eq "E1")");
  EXPECT_EQ(reqs[1].method, "POST");
  // The link keeps the state applied, with when.
  auto link = links_.Read(kScope, "E1");
  ASSERT_TRUE(link.ok() && link->has_value());
  EXPECT_EQ((*link)->jumpcloud_id, o.jumpcloud_id);
  EXPECT_EQ((*link)->applied_ms, clock_.NowMs());
  auto snapshot = ParseSnapshot((*link)->snapshot);
  ASSERT_TRUE(snapshot.ok()) << (*link)->snapshot;
  EXPECT_EQ(snapshot->department, "Engineering");
  EXPECT_EQ(snapshot->active, true);
}

TEST_F(RequestsPerChangeTest, AMappedChangeIsOnePatchCarryingEveryManagedAttribute) {
  std::string id = Run(Jane()).jumpcloud_id;
  server_->ClearRequests();
  User moved = Jane();
  moved.department = "Sales";
  Outcome o = Run(moved);
  ASSERT_EQ(o.change, Change::kUpdated) << o.reason;
  EXPECT_EQ(o.written, (std::vector<std::string>{EnterprisePrefixed("department")}));
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "PATCH");
  EXPECT_EQ(reqs[0].path, "/Users/" + id);
  // Every managed attribute, not only the department.
  for (const char* path : {"userName", "name.givenName", "name.familyName", "emails"}) {
    EXPECT_NE(reqs[0].body.find(std::string("\"") + path + "\""), std::string::npos)
        << path << " in " << reqs[0].body;
  }
  auto user = Json(OnlyUser());
  EXPECT_EQ(Str(user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"], "department"),
            "Sales");
}

TEST_F(RequestsPerChangeTest, AnUnmappedChangeIsNoRequest) {
  Run(Jane());
  server_->ClearRequests();
  // The HRIS changed a field the profile does not map: the desired user is the same.
  for (int i = 0; i < 3; ++i) {
    Outcome o = Run(Jane());
    ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
    EXPECT_EQ(o.change, Change::kNone);
  }
  EXPECT_EQ(Total(), 0);
}

TEST_F(RequestsPerChangeTest, ARenameIsOneRequest) {
  std::string id = Run(Jane()).jumpcloud_id;
  server_->ClearRequests();
  User renamed = Jane();
  renamed.user_name = "jsmith";
  Outcome o = Run(renamed);
  ASSERT_EQ(o.change, Change::kUpdated) << o.reason;
  EXPECT_EQ(Total(), 1);
  EXPECT_EQ(Str(Json(OnlyUser()), "userName"), "jsmith");
  EXPECT_EQ(Str(Json(OnlyUser()), "id"), id);
}

// The HRIS is the authority for what it exports: an admin's edit of a managed attribute lasts
// until the employee's next change (reconciliation finds it in between).
TEST_F(RequestsPerChangeTest, AManualEditInJumpCloudIsOverwrittenAtTheNextChange) {
  std::string id = Run(Jane()).jumpcloud_id;
  EditByHand(id, "name.givenName", "Janet");
  server_->ClearRequests();
  User promoted = Jane();
  promoted.title = "Lead";
  Outcome o = Run(promoted);
  ASSERT_EQ(o.change, Change::kUpdated) << o.reason;
  EXPECT_EQ(Total(), 1);
  auto user = Json(OnlyUser());
  EXPECT_EQ(Str(user["name"], "givenName"), "Jane");
  EXPECT_EQ(Str(user, "title"), "Lead");
}

TEST_F(RequestsPerChangeTest, ADeletedUserIsRecreatedAtTheNextChange) {
  std::string first = Run(Jane()).jumpcloud_id;
  server_->RemoveUser(first);  // deleted by an admin
  server_->ClearRequests();
  User promoted = Jane();
  promoted.title = "Lead";
  Outcome o = Run(promoted);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kCreated);
  EXPECT_NE(o.jumpcloud_id, first);
  EXPECT_EQ(Link(), o.jumpcloud_id);
  // PATCH (404), the externalId lookup, the POST.
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].method, "PATCH");
  EXPECT_EQ(reqs[1].filter, R"(externalId eq "E1")");
  EXPECT_EQ(reqs[2].method, "POST");
  EXPECT_EQ(Str(Json(OnlyUser()), "title"), "Lead");
}

// 409 and 412 on the PATCH from a snapshot: the snapshot is dropped and the job goes the old
// way, GET then a diff.
TEST_F(RequestsPerChangeTest, A409Or412OnThePatchFallsBackToReadingTheUser) {
  for (int status : {409, 412}) {
    SCOPED_TRACE(status);
    User jane = Jane();
    jane.external_id = "E" + std::to_string(status);
    jane.user_name = "j" + std::to_string(status);
    jane.email = jane.user_name + "@example.com";
    std::string id = Run(jane).jumpcloud_id;
    server_->ClearRequests();
    server_->InjectFault(Fault::Status(status).On("PATCH").Times(1));
    User moved = jane;
    moved.department = "Sales";
    Outcome o = Run(moved);
    ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
    EXPECT_EQ(o.change, Change::kUpdated);
    auto reqs = server_->requests();
    ASSERT_EQ(reqs.size(), 3u);
    EXPECT_EQ(reqs[0].method, "PATCH");
    EXPECT_EQ(reqs[1].method, "GET");
    EXPECT_EQ(reqs[1].path, "/Users/" + id);
    EXPECT_EQ(reqs[2].method, "PATCH");
    // The diff: only the department this time.
    EXPECT_EQ(reqs[2].body.find("userName"), std::string::npos) << reqs[2].body;
    // And the snapshot is back for the next change.
    server_->ClearRequests();
    moved.department = "Legal";
    ASSERT_EQ(Run(moved).change, Change::kUpdated);
    EXPECT_EQ(Total(), 1);
  }
}

// Seed 3665 of the model test. A suspension lands on its own and the record's other changes fail
// (a 500; JumpCloud may even have applied them and the answer was lost). The link's snapshot
// must not go on saying what it said before: the next job (the record's update, without a status)
// wrote it back as active, and a late rehire then found "nothing to send" and left the rehired
// employee suspended. After a failed write the snapshot is dropped; the next job reads the user.
TEST_F(RequestsPerChangeTest, AWriteThatFailsAfterTheSuspensionLandedDropsTheSnapshot) {
  std::string id = Run(Jane()).jumpcloud_id;
  User leaver = Jane();
  leaver.title = "Former";
  leaver.active = false;
  C();
  int failures = 1;
  hook_->answer = [&failures](const HttpRequest& r) -> std::optional<HttpResponse> {
    if (r.method != "PATCH" || r.body.find("title") == std::string::npos || failures == 0) {
      return std::nullopt;
    }
    --failures;
    HttpResponse bad;
    bad.status = 500;
    bad.body = R"({"detail":"internal error","status":"500"})";
    return bad;
  };
  Outcome o = Run(leaver);
  ASSERT_EQ(o.decision, Decision::kRetry) << o.reason;
  ASSERT_TRUE(o.suspended);
  ASSERT_TRUE(Inactive(Json(OnlyUser())));

  // The record's next update carries no status: attributes only, the user stays suspended.
  User update = Jane();
  update.title = "Former";
  update.active.reset();
  ASSERT_EQ(Run(update, Action::kSync, 2).decision, Decision::kDone);
  ASSERT_TRUE(Inactive(Json(OnlyUser())));

  // A late rehire: only `active` applies, and it must be sent.
  Job rehire;
  rehire.scope = kScope;
  rehire.desired = Jane();
  rehire.desired.active = true;
  rehire.action = Action::kSync;
  rehire.status_only = true;
  rehire.attempt = 1;
  rehire.first_attempt_ms = clock_.NowMs();
  rehire.trace_id = "t-rehire";
  o = C().Converge(rehire);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_FALSE(Inactive(Json(OnlyUser()))) << "the rehired employee is still suspended";
  EXPECT_EQ(o.jumpcloud_id, id);
}

// The process is killed (or frozen past its lease, or cut off from Redis) after its suspension
// landed in JumpCloud and before it stored the new snapshot. The termination comes back with the
// rehire that followed it, as one burst whose newest state is active. Against the snapshot left
// from before the suspension (active) that burst found "nothing to send", and the rehired
// employee stayed suspended. The snapshot is forgotten before the write, so the burst reads the
// user instead.
TEST_F(RequestsPerChangeTest, ASnapshotIsForgottenBeforeAWriteSoAKillAfterTheWriteCannotHideIt) {
  std::string id = Run(Jane()).jumpcloud_id;
  ASSERT_TRUE(Link().has_value());
  // What the link store holds while the suspension is on the wire: all a process killed at that
  // moment leaves behind.
  std::optional<LinkStore::Link> at_write;
  C();
  hook_->answer = [&](const HttpRequest& r) -> std::optional<HttpResponse> {
    if (r.method == "PATCH" && !at_write) {
      auto l = links_.Read(kScope, "E1");
      EXPECT_TRUE(l.ok() && l->has_value());
      if (l.ok() && l->has_value()) at_write = **l;
    }
    return std::nullopt;
  };
  User leaver = Jane();
  leaver.active = false;
  ASSERT_EQ(Run(leaver).decision, Decision::kDone);
  ASSERT_TRUE(Inactive(Json(OnlyUser())));
  ASSERT_TRUE(at_write.has_value());
  // The kill: nothing the job did after its write reached the link store.
  ASSERT_TRUE(links_.PutApplied(kScope, "E1", *at_write).ok());
  hook_->answer = nullptr;

  // The redelivered termination and the rehire, coalesced: the newest state is an active record.
  server_->ClearRequests();
  User rehired = Jane();
  rehired.active = true;
  Outcome o = Run(rehired, Action::kSync, 2);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.jumpcloud_id, id);
  EXPECT_FALSE(Inactive(Json(OnlyUser()))) << "the rehired employee is still suspended";
  // It read the user rather than trusting what the snapshot said.
  auto reqs = server_->requests();
  ASSERT_FALSE(reqs.empty());
  EXPECT_EQ(reqs[0].method, "GET");
}

// Redis answers the link's read, then goes away before the snapshot can be forgotten: nothing is
// written (a write that landed could not be told from the old snapshot), and the job is retried.
TEST_F(RequestsPerChangeTest, NothingIsWrittenWhenTheSnapshotCannotBeForgotten) {
  class NoDrop final : public LinkStore {
   public:
    explicit NoDrop(LinkStore& inner) : inner_(inner) {}
    Result<std::optional<Link>> Read(const std::string& s, const std::string& e) override {
      return inner_.Read(s, e);
    }
    Status Put(const std::string& s, const std::string& e, const std::string& id) override {
      return inner_.Put(s, e, id);
    }
    Status PutApplied(const std::string& s, const std::string& e, const Link& l) override {
      return inner_.PutApplied(s, e, l);
    }
    Status DropSnapshot(const std::string&, const std::string&) override {
      return Error::Make(ErrorKind::kTransient, "redis: connection refused");
    }
    Status Remove(const std::string& s, const std::string& e) override {
      return inner_.Remove(s, e);
    }
    Result<std::optional<Owner>> OwnerOf(const std::string& id) override {
      return inner_.OwnerOf(id);
    }
    Result<int64_t> Count(const std::string& s) override { return inner_.Count(s); }
    Result<int64_t> CountAll() override { return inner_.CountAll(); }

   private:
    LinkStore& inner_;
  };
  ASSERT_EQ(Run(Jane()).change, Change::kCreated);
  NoDrop no_drop(links_);
  auto t = NewHttpTransport(Transport());
  ASSERT_TRUE(t.ok());
  ConvergerDeps deps;
  deps.transport = t->get();
  deps.limiter = limiter_.get();
  deps.links = &no_drop;
  deps.clock = &clock_;
  deps.random = &random_;
  deps.sleep = [this](int64_t ms) { clock_.AdvanceMs(ms); };
  Converger converger(options_, std::move(deps));
  ASSERT_TRUE(converger.Probe().ok());
  server_->ClearRequests();

  for (bool leaving : {true, false}) {
    SCOPED_TRACE(leaving ? "a suspension" : "an update");
    User changed = Jane();
    changed.title = "Director";
    if (leaving) changed.active = false;
    Job job;
    job.scope = kScope;
    job.desired = changed;
    job.first_attempt_ms = clock_.NowMs();
    Outcome o = converger.Converge(job);
    EXPECT_EQ(o.decision, Decision::kRetry) << o.reason;
    EXPECT_NE(o.reason.find("connection refused"), std::string::npos) << o.reason;
    EXPECT_EQ(server_->TotalRequests(), 0) << "a write was sent";
  }
  EXPECT_FALSE(Inactive(Json(OnlyUser())));
}

TEST_F(RequestsPerChangeTest, ASnapshotOlderThanTheMaxAgeIsRefreshedWithAGet) {
  std::string id = Run(Jane()).jumpcloud_id;
  clock_.AdvanceMs(options_.snapshot_max_age_ms);
  server_->ClearRequests();
  ASSERT_EQ(Run(Jane()).change, Change::kNone);
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "GET");
  EXPECT_EQ(reqs[0].path, "/Users/" + id);
  // The refreshed snapshot is young again.
  EXPECT_EQ((*links_.Read(kScope, "E1"))->applied_ms, clock_.NowMs());
  server_->ClearRequests();
  ASSERT_EQ(Run(Jane()).change, Change::kNone);
  EXPECT_EQ(Total(), 0);
}

TEST_F(RequestsPerChangeTest, NoSnapshotsWhenTheMaxAgeIsZero) {
  options_.snapshot_max_age_ms = 0;
  converger_.reset();
  Run(Jane());
  server_->ClearRequests();
  User moved = Jane();
  moved.department = "Sales";
  ASSERT_EQ(Run(moved).change, Change::kUpdated);
  EXPECT_EQ(server_->CountRequests("GET"), 1);
  EXPECT_EQ(server_->CountRequests("PATCH"), 1);
}

// A userName held by a manually created account: the POST's 409 leads to the lookup, which
// adopts an account without externalId and refuses one that carries another employee's.
TEST_F(RequestsPerChangeTest, AUserNameTakenByAManualAccountIsResolvedAfterThe409) {
  std::string manual = server_->AddUser(R"({"userName":"jdoe","nickName":"JJ"})");
  server_->ClearRequests();
  Outcome o = Run(Jane());
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.jumpcloud_id, manual);
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 5u);
  EXPECT_EQ(reqs[0].filter, R"(externalId eq "E1")");
  EXPECT_EQ(reqs[1].method, "POST");  // 409
  EXPECT_EQ(reqs[2].filter, R"(externalId eq "E1")");
  EXPECT_EQ(reqs[3].filter, R"(userName eq "jdoe")");
  EXPECT_EQ(reqs[4].method, "PATCH");
  EXPECT_EQ(Str(Json(OnlyUser()), "externalId"), "E1");
  EXPECT_EQ(Link(), manual);

  std::string other = server_->AddUser(R"({"userName":"asmith","externalId":"E9"})");
  User ann = Jane();
  ann.external_id = "E2";
  ann.user_name = "asmith";
  ann.email = "ann@example.com";
  Outcome conflict = Run(ann);
  EXPECT_EQ(conflict.decision, Decision::kGiveUp);
  EXPECT_EQ(conflict.error->kind, ErrorKind::kConflict);
  EXPECT_NE(conflict.reason.find(other), std::string::npos) << conflict.reason;
  EXPECT_EQ(server_->user_count(), 2u);
}

// The offboarding rules hold on the snapshot path: the suspension is always sent, alone, first,
// even when the snapshot already says inactive.
TEST_F(RequestsPerChangeTest, SuspensionsAreAlwaysSentFromASnapshot) {
  Run(Jane());
  server_->ClearRequests();
  User leaver;
  leaver.external_id = "E1";
  for (int i = 0; i < 2; ++i) {
    Outcome o = Run(leaver, Action::kSuspend);
    ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
    EXPECT_TRUE(o.suspended);
  }
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 2u);
  for (const auto& r : reqs) {
    EXPECT_EQ(r.method, "PATCH");
    EXPECT_EQ(r.body, R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
                      R"("Operations":[{"op":"replace","path":"active","value":false}]})");
  }
  // A termination carrying a changed record: active=false alone, then the record.
  User terminated = Jane();
  terminated.active = false;
  terminated.title = "Former";
  server_->ClearRequests();
  Outcome o = Run(terminated);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_NE(reqs[0].body.find(R"("path":"active","value":false}]})"), std::string::npos);
  EXPECT_EQ(reqs[1].body.find("active"), std::string::npos) << reqs[1].body;
  EXPECT_TRUE(Inactive(Json(OnlyUser())));
}

TEST_F(RequestsPerChangeTest, AStatusOnlyJobSendsOnlyActiveFromASnapshot) {
  User leaver = Jane();
  leaver.active = false;
  options_.create_leavers = true;
  converger_.reset();
  ASSERT_TRUE(C().Probe().ok());
  Run(leaver);
  server_->ClearRequests();
  Job job;
  job.scope = kScope;
  job.desired = Jane();
  job.desired.title = "Old title";
  job.action = Action::kReactivate;
  job.status_only = true;
  job.first_attempt_ms = clock_.NowMs();
  Outcome o = C().Converge(job);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].body, R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
                          R"("Operations":[{"op":"replace","path":"active","value":true}]})");
  EXPECT_EQ(Str(Json(OnlyUser()), "title"), "");
}

TEST_F(RequestsPerChangeTest, TheFenceIsAskedBeforeAWriteFromASnapshot) {
  Run(Jane());
  server_->ClearRequests();
  Job job;
  job.scope = kScope;
  job.desired = Jane();
  job.desired.title = "Lead";
  job.first_attempt_ms = clock_.NowMs();
  int asked = 0;
  job.fence = [&asked]() -> Status {
    ++asked;
    return Error::Transient("lease lost");
  };
  Outcome o = C().Converge(job);
  EXPECT_EQ(o.decision, Decision::kRetry);
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(Total(), 0);
}

// The lease is lost between the PATCH and storing its snapshot: the new owner may apply a newer
// state meanwhile, so no snapshot is kept and the next job reads the user.
TEST_F(RequestsPerChangeTest, ASnapshotIsNotStoredOnceFenced) {
  Run(Jane());
  Job job;
  job.scope = kScope;
  job.desired = Jane();
  job.desired.title = "Lead";
  job.first_attempt_ms = clock_.NowMs();
  int asked = 0;
  job.fence = [&asked]() -> Status {
    if (++asked == 1) return {};  // the PATCH
    return Error::Transient("lease lost");
  };
  server_->ClearRequests();
  Outcome o = C().Converge(job);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(Total(), 1);
  EXPECT_EQ(asked, 2);
  EXPECT_EQ((*links_.Read(kScope, "E1"))->snapshot, "");
  server_->ClearRequests();
  User lead = Jane();
  lead.title = "Lead";
  ASSERT_EQ(Run(lead).change, Change::kNone);
  EXPECT_EQ(server_->CountRequests("GET"), 1);
}

// Every converger of a process shares one probe of /ServiceProviderConfig; a reload probes again.
TEST_F(ConvergerTest, CapabilitiesAreProbedOncePerProcessAndAgainAfterAReload) {
  SharedCapabilities shared;
  std::vector<std::unique_ptr<scim::Transport>> transports;
  std::vector<std::unique_ptr<Converger>> convergers;
  for (int i = 0; i < 3; ++i) {
    auto t = NewHttpTransport(Transport());
    ASSERT_TRUE(t.ok());
    transports.push_back(std::move(*t));
    ConvergerDeps deps;
    deps.transport = transports.back().get();
    deps.limiter = limiter_.get();
    deps.links = &links_;
    deps.clock = &clock_;
    deps.random = &random_;
    deps.capabilities = &shared;
    convergers.push_back(std::make_unique<Converger>(options_, std::move(deps)));
  }
  auto job = [](const std::string& ext, const std::string& name) {
    Job j;
    j.scope = kScope;
    j.desired = Jane();
    j.desired.external_id = ext;
    j.desired.user_name = name;
    j.desired.email = name + "@example.com";
    return j;
  };
  for (int i = 0; i < 3; ++i) {
    auto o = convergers[i]->Converge(job("E" + std::to_string(i), "user" + std::to_string(i)));
    ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  }
  EXPECT_EQ(server_->CountRequests("GET", "/ServiceProviderConfig"), 1);
  shared.Reset();  // what a reload does, with convergers built afresh
  convergers[0] = std::make_unique<Converger>(options_, [&] {
    ConvergerDeps deps;
    deps.transport = transports[0].get();
    deps.limiter = limiter_.get();
    deps.links = &links_;
    deps.clock = &clock_;
    deps.random = &random_;
    deps.capabilities = &shared;
    return deps;
  }());
  ASSERT_EQ(convergers[0]->Converge(job("E9", "user9")).decision, Decision::kDone);
  EXPECT_EQ(server_->CountRequests("GET", "/ServiceProviderConfig"), 2);
}

}  // namespace
}  // namespace scimsync::scim
