// Real vendor traffic through the built-in profiles: what is not about an employee is
// acknowledged (never a 4xx, never enqueued), and every employee change is acted on.
#include <gtest/gtest.h>

#include <filesystem>

#include "scimsync/connectors/profile.h"
#include "test_util.h"

namespace scimsync::connectors {
namespace {

namespace fs = std::filesystem;
using testing::Entry;
using testing::Slurp;

constexpr int64_t kNow = 1'795'000'000;
const fs::path kFixtures = fs::path(SCIMSYNC_SOURCE_DIR) / "tests/connectors/fixtures";

std::shared_ptr<const Profile> Builtin(const std::string& name, const std::string& extra = "") {
  config::Problems problems("test.yaml");
  auto p = LoadProfile(
      Entry("{name: " + name + ", connector: " + name + ", secret_env: S" + extra + "}"),
      &problems);
  EXPECT_NE(p, nullptr) << testing::ProblemsText(problems);
  return p;
}

Request Json(const std::string& body) {
  Request r;
  r.content_type = "application/json";
  r.body = body;
  return r;
}

Request Form(const std::string& body) {
  Request r;
  r.content_type = "application/x-www-form-urlencoded";
  r.body = body;
  return r;
}

Decoded MustDecode(const Profile& profile, const Request& request) {
  auto d = profile.Decode(request);
  EXPECT_TRUE(d.ok()) << d.error().message;
  return d.ok() ? d.value() : Decoded{};
}

Plan MustPlan(const Profile& profile, const DecodedItem& item, const std::string& record = "{}") {
  auto fetcher = NewRecordedFetcher(record);
  WorkItem w{item.tenant, item.employee_key, item.event_type, item.occurred_at, item.payload};
  auto plan = profile.PlanItem(w, *fetcher, kNow);
  EXPECT_TRUE(plan.ok()) << plan.error().message;
  return plan.ok() ? plan.value() : Plan{};
}

TEST(VendorTraffic, FinchAccountUpdatedIsAcknowledgedNotRefused) {
  auto finch = Builtin("finch");
  Decoded d = MustDecode(*finch, Json(Slurp(kFixtures / "finch/account-updated/request.json")));
  EXPECT_TRUE(d.items.empty());
  ASSERT_EQ(d.acknowledged.size(), 1u);
  EXPECT_EQ(d.acknowledged[0].event_type, "account.updated");
}

TEST(VendorTraffic, FinchJobAndPaymentEventsAreAcknowledged) {
  auto finch = Builtin("finch");
  // The finch-api SDKs' WebhookEvent union; pay statements name an individual, yet are payroll.
  for (const char* type :
       {"job.data_sync_all.completed", "job.data_sync_all.updated", "company.updated",
        "payment.created", "pay_statement.updated", "job.benefit_create.updated"}) {
    SCOPED_TRACE(type);
    Decoded d = MustDecode(
        *finch, Json(std::string(R"({"company_id":"c","connection_id":"k","event_type":")") + type +
                     R"(","data":{"job_id":"j","payment_id":"p","individual_id":"i"}})"));
    EXPECT_TRUE(d.items.empty());
    EXPECT_EQ(d.acknowledged.size(), 1u);
  }
}

TEST(VendorTraffic, FinchEmployeeEventWithoutItsKeyIsStillMalformed) {
  auto finch = Builtin("finch");
  auto d =
      finch->Decode(Json(R"({"connection_id":"k","event_type":"individual.updated","data":{}})"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().http_status, 400);
  EXPECT_NE(d.error().message.find("/data/individual_id"), std::string::npos) << d.error().message;
}

TEST(VendorTraffic, FinchRoutesTheTenantFromTheBodysConnectionId) {
  auto finch = Builtin(
      "finch", ", tenants: {4ab15e51-11ad-49f4-acae-f343b7794375: {api: {key_env: K}}, acme: {}}");
  Decoded d = MustDecode(*finch, Json(Slurp(kFixtures / "finch/individual-updated/request.json")));
  ASSERT_EQ(d.items.size(), 1u);
  EXPECT_EQ(d.items[0].tenant, "4ab15e51-11ad-49f4-acae-f343b7794375");
  EXPECT_EQ(d.items[0].dedup_id.rfind("4ab15e51-11ad-49f4-acae-f343b7794375/", 0), 0u);
  // The URL segment, when given, wins (and the item carries no tenant of its own).
  Request r = Json(Slurp(kFixtures / "finch/individual-updated/request.json"));
  r.tenant = "acme";
  Decoded by_url = MustDecode(*finch, r);
  ASSERT_EQ(by_url.items.size(), 1u);
  EXPECT_EQ(by_url.items[0].tenant, "");
  EXPECT_EQ(by_url.items[0].dedup_id.rfind("acme/", 0), 0u);
}

// One connection, no tenants: the entry's own api settings serve it, whatever the body names.
TEST(VendorTraffic, FinchWithoutTenantsIgnoresTheBodysConnectionId) {
  auto finch = Builtin("finch", ", api: {key_env: K}");
  Decoded d = MustDecode(*finch, Json(Slurp(kFixtures / "finch/individual-updated/request.json")));
  ASSERT_EQ(d.items.size(), 1u);
  EXPECT_EQ(d.items[0].tenant, "");
}

TEST(VendorTraffic, FinchBodyTenantThatIsNotConfiguredIs404) {
  auto finch = Builtin("finch", ", tenants: {other-connection: {api: {key_env: K}}}");
  auto d = finch->Decode(Json(Slurp(kFixtures / "finch/individual-updated/request.json")));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().http_status, 404);
  EXPECT_NE(d.error().message.find("4ab15e51-11ad-49f4-acae-f343b7794375"), std::string::npos);
  EXPECT_NE(d.error().message.find("tenants"), std::string::npos) << d.error().message;
}

// An acknowledged type is logged and labels a metric: its length is bounded like any id.
TEST(VendorTraffic, AnOversizedEventTypeIsRefusedNotAcknowledged) {
  auto merge = Builtin("merge");
  auto d = merge->Decode(Json(R"({"hook":{"event":")" + std::string(600, 'x') + R"("}})"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().http_status, 400);
  EXPECT_NE(d.error().message.find("max_id_bytes"), std::string::npos) << d.error().message;
}

TEST(VendorTraffic, MergeSendTestIsAcknowledged) {
  auto merge = Builtin("merge");
  Decoded d = MustDecode(*merge, Json(R"({"response": "Success! This URL will be notified."})"));
  EXPECT_TRUE(d.items.empty());
  EXPECT_EQ(d.acknowledged.size(), 1u);
}

TEST(VendorTraffic, MergeSyncNotificationsAreAcknowledged) {
  auto merge = Builtin("merge");
  for (const char* type : {"LinkedAccount.sync_completed", "Employee.synced", "Issue.created",
                           "LinkedAccount.linked", "TimeOff.added"}) {
    SCOPED_TRACE(type);
    Decoded d = MustDecode(
        *merge, Json(std::string(R"({"hook":{"event":")") + type +
                     R"("},"linked_account":{"id":"la"},"data":{"id":"x","status":"DONE"}})"));
    EXPECT_TRUE(d.items.empty());
    EXPECT_EQ(d.acknowledged.size(), 1u);
  }
}

TEST(VendorTraffic, BambooHrFormPostKeyedByEmployeeIdKeepsTheId) {
  auto bamboo = Builtin("bamboohr");
  Decoded d = MustDecode(*bamboo, Form("employees[12345][changedFields][0]=First+name&"
                                       "employees[12345][First+name]=John&"
                                       "employees[678][action]=Deleted"));
  ASSERT_EQ(d.items.size(), 2u);
  EXPECT_EQ(d.items[0].employee_key, "12345");
  EXPECT_EQ(d.items[1].employee_key, "678");
  EXPECT_EQ(MustPlan(*bamboo, d.items[1]).action, Action::kSuspend);
}

TEST(VendorTraffic, BambooHrFieldBasedWithoutActionIsSyncedNotIgnored) {
  auto bamboo = Builtin("bamboohr", ", api: {tenant: acme, key_env: K}");
  Decoded d = MustDecode(*bamboo, Json(R"({"employees":[{"id":"42","changedFields":["First Name"],)"
                                       R"("fields":{"First Name":{"value":"Ada"}}}]})"));
  ASSERT_EQ(d.items.size(), 1u);
  EXPECT_EQ(d.items[0].employee_key, "42");
  Plan p = MustPlan(*bamboo, d.items[0],
                    R"({"id":"42","firstName":"Ada","lastName":"L","workEmail":"ada@example.com",)"
                    R"("status":"Active"})");
  EXPECT_EQ(p.action, Action::kSync) << p.reason;
}

TEST(VendorTraffic, DeelContractEventsAreNeverActedOnAsAnEmployee) {
  auto deel = Builtin("deel");
  for (const char* type : {"contract.status.updated", "contract.terminated", "contract.created",
                           "contract.amended", "invoice.created", "timesheet.updated"}) {
    SCOPED_TRACE(type);
    Decoded d = MustDecode(*deel, Json(std::string(R"({"data":{"meta":{"event_type":")") + type +
                                       R"("},"resource":{"id":"3w4zdd9"}}})"));
    EXPECT_TRUE(d.items.empty());
    EXPECT_EQ(d.acknowledged.size(), 1u);
  }
}

TEST(VendorTraffic, GustoPayrollIsAcknowledged) {
  auto gusto = Builtin("gusto");
  Decoded d = MustDecode(*gusto, Json(Slurp(kFixtures / "gusto/payroll-updated/request.json")));
  EXPECT_TRUE(d.items.empty());
  ASSERT_EQ(d.acknowledged.size(), 1u);
  EXPECT_EQ(d.acknowledged[0].event_type, "payroll.updated");
}

// docs.gusto.com's employee events guide says employee.terminated_effective; the changelog that
// announced it says employee.termination_effective. Either is the termination taking effect.
TEST(VendorTraffic, GustoTerminationEffectiveSuspendsUnderEitherSpelling) {
  auto gusto = Builtin("gusto", ", api: {key_env: K}");
  for (const char* type : {"employee.terminated_effective", "employee.termination_effective"}) {
    SCOPED_TRACE(type);
    Decoded d = MustDecode(*gusto, Json(std::string(R"({"uuid":"u","event_type":")") + type +
                                        R"(","entity_type":"Employee","entity_uuid":"E1"})"));
    ASSERT_EQ(d.items.size(), 1u);
    EXPECT_EQ(MustPlan(*gusto, d.items[0]).action, Action::kSuspend);
  }
}

TEST(VendorTraffic, HiBobV1ShapeIsDecoded) {
  auto hibob = Builtin("hibob");
  Decoded d = MustDecode(
      *hibob,
      Json(R"({"companyId":636192,"type":"employee.updated","triggeredBy":"1",)"
           R"("triggeredAt":"2024-03-01T10:00:00","data":{"employee":{"id":"3332883854254932743",)"
           R"("firstName":"Ada"}}})"));
  ASSERT_EQ(d.items.size(), 1u);
  EXPECT_EQ(d.items[0].employee_key, "3332883854254932743");
}

TEST(VendorTraffic, FactorialAttendanceIsAcknowledgedWithoutAFetch) {
  auto factorial = Builtin("factorial");
  Decoded d = MustDecode(
      *factorial, Json(R"({"id":901,"employee_id":52,"clock_in":"09:00","clock_out":null})"));
  EXPECT_TRUE(d.items.empty());
  EXPECT_EQ(d.acknowledged.size(), 1u);
}

TEST(VendorTraffic, GenericAcknowledgesTypesItDoesNotName) {
  auto generic = Builtin("generic");
  Decoded d = MustDecode(
      *generic, Json(R"({"events":[{"id":"a","type":"payroll.completed","employee":{"id":"E1"}},)"
                     R"({"id":"b","type":"employee.updated","employee":{"id":"E2"}}]})"));
  ASSERT_EQ(d.items.size(), 1u);
  EXPECT_EQ(d.items[0].employee_key, "E2");
  ASSERT_EQ(d.acknowledged.size(), 1u);
  EXPECT_EQ(d.acknowledged[0].event_type, "payroll.completed");
}

TEST(VendorTraffic, LevelTriggeredUnknownEventTypeIsSynced) {
  auto gusto = Builtin("rippling", ", api: {key_env: K}");
  Decoded d = MustDecode(*gusto, Json(R"({"event_name":"employee.role_changed","id":"E9"})"));
  ASSERT_EQ(d.items.size(), 1u);
  Plan p = MustPlan(*gusto, d.items[0],
                    R"({"id":"E9","firstName":"A","lastName":"B","workEmail":"a@example.com",)"
                    R"("roleState":"ACTIVE"})");
  EXPECT_EQ(p.action, Action::kSync) << p.reason;
}

TEST(VendorTraffic, AFetchingProfileMayNotIgnoreUnnamedEvents) {
  config::Problems problems("test.yaml");
  fs::path dir = fs::temp_directory_path() / "scimsync-vendor-traffic";
  fs::create_directories(dir);
  std::string text = Slurp(fs::path(SCIMSYNC_SOURCE_DIR) / "connectors/profiles/rippling.yaml") +
                     "\ndefault_action: ignore\n";
  {
    std::ofstream out(dir / "p.yaml");
    out << text;
  }
  auto p = LoadProfile(
      Entry("{name: r, connector: " + (dir / "p.yaml").string() + ", secret_env: S}"), &problems);
  EXPECT_EQ(p, nullptr);
  EXPECT_NE(testing::ProblemsText(problems).find("events.other"), std::string::npos)
      << testing::ProblemsText(problems);
}

}  // namespace
}  // namespace scimsync::connectors
