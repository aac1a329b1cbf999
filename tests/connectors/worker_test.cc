// The worker side: actions, mapping with every transform, overrides, validation, ordering keys.
#include <gtest/gtest.h>

#include <cstdlib>

#include "scimsync/connectors/profile.h"
#include "scimsync/scim/protocol.h"
#include "test_support.h"
#include "test_util.h"

namespace scimsync::connectors {
namespace {

using testing::Entry;

constexpr int64_t kNow = 1'795'000'000;  // 2026-11-18

std::shared_ptr<const Profile> Generic() {
  config::Problems problems("test.yaml");
  auto p = LoadProfile(Entry("{name: hr, connector: generic, secret_env: S}"), &problems);
  EXPECT_NE(p, nullptr) << testing::ProblemsText(problems);
  return p;
}

Plan MustPlan(const Profile& profile, const WorkItem& item, int64_t now = kNow) {
  auto fetcher = NewRecordedFetcher("{}");
  auto plan = profile.PlanItem(item, *fetcher, now);
  EXPECT_TRUE(plan.ok()) << plan.error().message;
  return plan.ok() ? plan.value() : Plan{};
}

WorkItem GenericItem(const std::string& type, const std::string& employee,
                     const std::string& occurred_at = "2026-11-28T10:00:00Z") {
  WorkItem w;
  w.employee_key = "E1";
  w.event_type = type;
  w.occurred_at = occurred_at;
  w.payload = R"({"id":"evt-1","type":")" + type + R"(","occurred_at":")" + occurred_at +
              R"(","employee":)" + employee + "}";
  return w;
}

const char kAda[] =
    R"({"id":"E1","firstName":"Ada","lastName":"Lovelace","displayName":"Ada Lovelace",)"
    R"("workEmail":"ada@example.com","username":"ada.lovelace","title":"Analyst",)"
    R"("department":"Engines","location":"London","costCenter":"CC-1","employeeType":"Full-Time",)"
    R"("company":"Analytical Ltd","employeeNumber":"1815","favouriteColour":"green"})";

TEST(GenericWorker, CreatedSyncsTheWholeRecord) {
  auto p = Generic();
  Plan plan = MustPlan(*p, GenericItem("employee.created", kAda));
  EXPECT_EQ(plan.action, Action::kSync);
  ASSERT_TRUE(plan.user.has_value());
  const scim::User& u = *plan.user;
  EXPECT_EQ(u.external_id, "E1");
  EXPECT_EQ(u.user_name, "ada.lovelace");
  EXPECT_EQ(u.given_name, "Ada");
  EXPECT_EQ(u.family_name, "Lovelace");
  EXPECT_EQ(u.display_name, "Ada Lovelace");
  EXPECT_EQ(u.email, "ada@example.com");
  EXPECT_EQ(u.title, "Analyst");
  EXPECT_EQ(u.department, "Engines");
  EXPECT_EQ(u.locale, "London");
  EXPECT_EQ(u.cost_center, "CC-1");
  EXPECT_EQ(u.user_type, "Full-Time");
  EXPECT_EQ(u.organization, "Analytical Ltd");
  EXPECT_EQ(u.employee_number, "1815");
  EXPECT_FALSE(u.active.has_value());  // not managed unless an action or mapping says so
  EXPECT_TRUE(plan.problems.empty());
  EXPECT_FALSE(plan.fetched);
  EXPECT_TRUE(p->payload_carries_record());
}

TEST(GenericWorker, UserNameFallsBackToTheSafeFormOfTheEmailLocalPart) {
  auto p = Generic();
  Plan plan = MustPlan(
      *p, GenericItem("employee.updated", R"({"id":"E1","firstName":"Zoë","lastName":"O'Brien",)"
                                          R"("workEmail":"Zoë.O'Brien@Example.com"})"));
  ASSERT_TRUE(plan.user.has_value());
  EXPECT_EQ(plan.user->user_name, "zoe.obrien");
  EXPECT_EQ(plan.user->display_name, "Zoë O'Brien");  // from the template
  EXPECT_TRUE(plan.problems.empty());
}

TEST(GenericWorker, TerminatedSuspendsAndRehiredReactivates) {
  auto p = Generic();
  Plan t = MustPlan(*p, GenericItem("employee.terminated", kAda));
  EXPECT_EQ(t.action, Action::kSuspend);
  ASSERT_TRUE(t.user.has_value());
  EXPECT_EQ(t.user->active, false);
  Plan r = MustPlan(*p, GenericItem("employee.rehired", kAda));
  EXPECT_EQ(r.action, Action::kReactivate);
  EXPECT_EQ(r.user->active, true);
  EXPECT_EQ(r.user->user_name, "ada.lovelace");
}

TEST(GenericWorker, DeletedSuspendsRatherThanDeletes) {
  Plan d = MustPlan(*Generic(), GenericItem("employee.deleted", kAda));
  EXPECT_EQ(d.action, Action::kSuspend);
}

TEST(GenericWorker, UnknownEventsAreIgnoredWithAReason) {
  Plan d = MustPlan(*Generic(), GenericItem("employee.promoted", kAda));
  EXPECT_EQ(d.action, Action::kIgnore);
  EXPECT_FALSE(d.user.has_value());
  EXPECT_NE(d.reason.find("employee.promoted"), std::string::npos);
}

TEST(GenericWorker, VersionsOrderByOccurredAt) {
  auto p = Generic();
  Plan older = MustPlan(*p, GenericItem("employee.updated", kAda, "2026-11-28T10:00:00Z"));
  Plan newer = MustPlan(*p, GenericItem("employee.updated", kAda, "2026-11-28T11:00:00+00:00"));
  Plan offset = MustPlan(*p, GenericItem("employee.updated", kAda, "2026-11-28T12:30:00+02:00"));
  EXPECT_LT(older.version, newer.version);
  EXPECT_LT(offset.version, newer.version);  // 10:30Z
  EXPECT_LT(older.version, offset.version);
}

TEST(GenericWorker, MissingEmailIsAValidationProblemNamingTheField) {
  Plan plan =
      MustPlan(*Generic(), GenericItem("employee.created", R"({"id":"E1","username":"ada"})"));
  ASSERT_EQ(plan.problems.size(), 1u);
  EXPECT_EQ(plan.problems[0].field, "emails[primary].value");
}

TEST(GenericWorker, AnEmailShapedUsernameIsAValidationProblem) {
  Plan plan = MustPlan(
      *Generic(),
      GenericItem("employee.created", R"({"id":"E1","username":"a@b.com","workEmail":"a@b.com"})"));
  ASSERT_FALSE(plan.problems.empty());
  EXPECT_EQ(plan.problems[0].field, "userName");
  EXPECT_NE(plan.problems[0].rule.find("email"), std::string::npos);
}

TEST(GenericWorker, ScimJsonPutsEnterpriseAttributesUnderTheirUrn) {
  Plan plan = MustPlan(*Generic(), GenericItem("employee.created", kAda));
  std::string json = scim::CreateBody(*plan.user);
  EXPECT_NE(json.find(R"("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{)"
                      R"("employeeNumber":"1815","department":"Engines","costCenter":"CC-1",)"
                      R"("organization":"Analytical Ltd"})"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find(R"("emails":[{"value":"ada@example.com","type":"work","primary":true}])"),
            std::string::npos);
}

// A profile written for these tests exercises every transform.
class TransformProfile : public ::testing::Test {
 protected:
  void SetUp() override {
    scimsync::testing::WriteFile(dir_.File("t.yaml"), R"(name: t
auth: {type: none}
items: {employee_key: /id, event_type: /event, version: /seq}
actions:
  - {event: "emp.*", when: [{pointer: /status, in: [gone, left]}], action: suspend}
  - {event: "emp.*", when: {pointer: /status, exists: false}, action: ignore}
  - {event: ["emp.*", other], action: sync, effective_at: /start}
mapping:
  userName: {pointer: /login, transform: [trim, lowercase]}
  email: {first: [/mail/work, /mail/home]}
  givenName: {pointer: /first, transform: [uppercase]}
  familyName: {pointer: /last, transform: [{default: Unknown}]}
  displayName: {template: "{first} {/last}"}
  userType: {pointer: /type, transform: [{lookup: {table: {FT: Full-Time, PT: Part-Time}, default: Other}}]}
  title: {pointer: /title, transform: [{lookup: {table: {dev: Developer}}}]}
  organization: {constant: ACME}
  costCenter: {pointer: /cc, transform: [{prefix: "CC-"}]}
  employeeNumber: {var: employee_key}
  active: {pointer: /end, transform: [{date_reached: {then: "false", else: "true", missing: "true"}}]}
)");
    config::Problems problems("cfg.yaml");
    auto entry = Entry("{name: t, connector: " + dir_.File("t.yaml") +
                       ", fields: {title: /jobTitle}, tenants: {beta: {fields: {organization: "
                       "{constant: Beta Inc}}}}}");
    profile_ = LoadProfile(entry, &problems);
    ASSERT_NE(profile_, nullptr) << testing::ProblemsText(problems);
  }

  Plan Run(const std::string& payload, const std::string& tenant = "") {
    WorkItem w;
    w.tenant = tenant;
    w.employee_key = "42";
    w.event_type = "emp.changed";
    w.occurred_at = "7";
    w.payload = payload;
    return MustPlan(*profile_, w);
  }

  scimsync::testing::TempDir dir_;
  std::shared_ptr<const Profile> profile_;
};

TEST_F(TransformProfile, EveryTransform) {
  Plan plan =
      Run(R"({"id":"42","status":"active","login":"  Bob.Smith ","mail":{"home":"b@x.org"},)"
          R"("first":"Bob","type":"PT","title":"dev","jobTitle":"Engineer","cc":"7",)"
          R"("end":"2026-11-18","start":"2026-12-01"})");
  EXPECT_EQ(plan.action, Action::kSync);
  ASSERT_TRUE(plan.user.has_value());
  const scim::User& u = *plan.user;
  EXPECT_EQ(u.user_name, "bob.smith");
  EXPECT_EQ(u.email, "b@x.org");  // first non-empty
  EXPECT_EQ(u.given_name, "BOB");
  EXPECT_EQ(u.family_name, "Unknown");
  EXPECT_EQ(u.display_name, "Bob");  // template with a missing part
  EXPECT_EQ(u.user_type, "Part-Time");
  EXPECT_EQ(u.title, "Engineer");  // the config entry's fields override the profile
  EXPECT_EQ(u.organization, "ACME");
  EXPECT_EQ(u.cost_center, "CC-7");
  EXPECT_EQ(u.employee_number, "42");
  EXPECT_EQ(u.active, false);                     // termination dated today is in effect
  EXPECT_EQ(plan.effective_at_s, 1'796'083'200);  // 2026-12-01T00:00:00Z
  EXPECT_EQ(plan.version, "00000000000000000007");
}

TEST_F(TransformProfile, LookupDefaultAndDateInTheFuture) {
  Plan plan = Run(R"({"status":"a","login":"x","mail":{"work":"x@y.io"},"type":"Contractor",)"
                  R"("end":"2026-11-19"})");
  EXPECT_EQ(plan.user->user_type, "Other");
  EXPECT_EQ(plan.user->active, true);
  EXPECT_FALSE(plan.effective_at_s.has_value());
}

TEST_F(TransformProfile, ConditionsPickTheRule) {
  EXPECT_EQ(Run(R"({"status":"left"})").action, Action::kSuspend);
  EXPECT_EQ(Run(R"({"login":"x"})").action, Action::kIgnore);
}

TEST_F(TransformProfile, TenantOverridesWinOverTheEntry) {
  Plan plan = Run(R"({"status":"a","login":"x","mail":{"work":"x@y.io"}})", "beta");
  EXPECT_EQ(plan.user->organization, "Beta Inc");
  Plan other = Run(R"({"status":"a","login":"x","mail":{"work":"x@y.io"}})", "gamma");
  EXPECT_EQ(other.user->organization, "ACME");
}

TEST_F(TransformProfile, AnActiveValueThatIsNotABooleanIsAProblem) {
  Plan plan = Run(R"({"status":"a","login":"x","mail":{"work":"x@y.io"},"end":"soon"})");
  // "soon" is not a date: date_reached uses its `missing` value.
  EXPECT_EQ(plan.user->active, true);
}

// Factorial's webhook body carries no termination date; the record read back does
// (fetch.recheck_at: /terminated_on).
Plan FactorialPlan(const std::string& record, int64_t now = kNow) {
  config::Problems problems("test.yaml");
  auto profile = LoadProfile(
      Entry("{name: factorial, connector: factorial, secret_env: S, api: {key_env: K}}"),
      &problems);
  EXPECT_NE(profile, nullptr) << testing::ProblemsText(problems);
  if (profile == nullptr) return {};
  WorkItem w;
  w.employee_key = "52";
  w.event_type = "employee";
  w.payload = R"({"id":52,"first_name":"Bob","last_name":"Macri","email":"bob@example.com"})";
  auto fetcher = NewRecordedFetcher(record);
  auto plan = profile->PlanItem(w, *fetcher, now);
  EXPECT_TRUE(plan.ok()) << plan.error().message;
  return plan.ok() ? plan.value() : Plan{};
}

std::string FactorialRecord(const std::string& terminated_on) {
  return R"({"id":52,"first_name":"Bob","last_name":"Macri","login_email":"bob@example.com",)"
         R"("terminated_on":)" +
         terminated_on + "}";
}

TEST(FactorialWorker, ATerminationAheadInTheRecordIsPlannedAgainOnItsDayInUtc) {
  Plan plan = FactorialPlan(FactorialRecord(R"("2026-12-31")"));
  EXPECT_EQ(plan.action, Action::kSync);
  EXPECT_EQ(plan.user->active, true);
  ASSERT_TRUE(plan.recheck_at_s.has_value()) << plan.reason;
  EXPECT_EQ(*plan.recheck_at_s, 1'798'675'200);  // 2026-12-31T00:00:00Z
  EXPECT_NE(plan.reason.find("2026-12-31"), std::string::npos) << plan.reason;
  // A date with a time counts from the start of its day, as date_reached does.
  plan = FactorialPlan(FactorialRecord(R"("2026-12-31T17:30:00Z")"));
  ASSERT_TRUE(plan.recheck_at_s.has_value()) << plan.reason;
  EXPECT_EQ(*plan.recheck_at_s, 1'798'675'200);
}

TEST(FactorialWorker, ATerminationTodayOrPastOrNoneIsNotPlannedAgain) {
  for (const char* date : {R"("2026-11-18")", R"("2026-01-02")", "null"}) {
    Plan plan = FactorialPlan(FactorialRecord(date));
    EXPECT_FALSE(plan.recheck_at_s.has_value()) << date;
    EXPECT_TRUE(plan.problems.empty()) << date;
    EXPECT_EQ(plan.user->active, std::string(date) == "null") << date;
  }
  Plan plan = FactorialPlan(R"({"id":52,"login_email":"bob@example.com","first_name":"B"})");
  EXPECT_FALSE(plan.recheck_at_s.has_value());
}

// A termination date nobody can read would leave the employee active past their last day: the
// item is refused with a reason a person can act on, never synced as if there were no date.
TEST(FactorialWorker, ATerminationDateThatIsNotADateIsAProblemNamingThePointer) {
  for (const char* date : {R"("soon")", "20261231"}) {
    Plan plan = FactorialPlan(FactorialRecord(date));
    ASSERT_EQ(plan.problems.size(), 1u) << date;
    EXPECT_NE(plan.problems[0].ToString().find("/terminated_on"), std::string::npos)
        << plan.problems[0].ToString();
    EXPECT_NE(plan.problems[0].ToString().find("fetch.recheck_at"), std::string::npos)
        << plan.problems[0].ToString();
  }
}

}  // namespace
}  // namespace scimsync::connectors
