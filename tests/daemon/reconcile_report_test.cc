// The reconciliation report as scripts and people read it: the JSON object's exact bytes (field
// order, nulls, escaping; docs/reconcile.md lists the fields) and the table's lines, from a
// report built by hand. Pure functions: no Redis, no servers.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <string>

#include "scimsync/daemon/app.h"
#include "scimsync/daemon/reconcile.h"

namespace scimsync::daemon {
namespace {

ReconcileReport Sample() {
  ReconcileReport r;
  r.run_id = "20261128T101500Z-3f2a";
  r.profile = "rippling";
  r.started_ms = 1796594400000;
  r.finished_ms = 1796594401234;
  r.hris_employees = 3;
  r.jumpcloud_users = 4;
  r.in_sync = 1;
  r.missing = 1;
  r.attributes = 1;
  r.orphans = 1;
  r.conflicts = 1;
  r.enqueued = 2;
  r.scim_requests = 1;
  r.suspensions = 0;
  r.suspend_limit = 1;
  r.scope_users = 3;
  EmployeeDrift missing;
  missing.employee_key = "E2";
  missing.external_id = "E2";
  missing.user_name = "grace";
  missing.email = "grace@example.com";
  missing.kinds = {DriftKind::kMissing};
  missing.enqueued = true;
  EmployeeDrift attrs;
  attrs.tenant = "eu";
  attrs.employee_key = "E3";
  attrs.external_id = "E3";
  attrs.user_name = "alan";
  attrs.jumpcloud_id = "u3";
  attrs.kinds = {DriftKind::kAttributes};
  // Quotes, a backslash, a newline, a control character and UTF-8 from outside.
  attrs.changes = {{"title", std::string("Eng \"II\"\\\n\x01"), std::string("Ingénieur")},
                   {"department", std::nullopt, std::string("R&D")},
                   {"costCenter", std::string("42"), std::nullopt}};
  attrs.enqueued = true;
  EmployeeDrift orphan;
  orphan.employee_key = "X9";
  orphan.external_id = "X9";
  orphan.user_name = "bob";
  orphan.jumpcloud_id = "u9";
  orphan.kinds = {DriftKind::kOrphan};
  orphan.fixable = false;
  orphan.note = "reported only";
  r.drift = {missing, attrs, orphan};
  r.problems = {{ReconcileProblem::Kind::kConflict, "", "E1", "2 JumpCloud users carry E1"}};
  return r;
}

TEST(ReconcileReportJson, TheObjectIsPinnedByteForByte) {
  const std::string json = FormatReportJson(Sample());
  EXPECT_EQ(json, R"({"run_id":"20261128T101500Z-3f2a","profile":"rippling","dry_run":false,)"
                  R"("started_ms":1796594400000,"finished_ms":1796594401234,"hris_employees":3,)"
                  R"("jumpcloud_users":4,"in_sync":1,"drifted":3,"counts":{"missing":1,)"
                  R"("attributes":1,"active":0,"orphan":1,"conflict":1,"invalid":0,"error":0},)"
                  R"("enqueued":2,"duplicates":0,"scim_requests":1,"exit_code":1,"waiting":0,)"
                  R"("last_listed":-1,"refused":null,"held":false,"confirmed":false,)"
                  R"("plan":{"suspensions":0,"limit":1,"scope_users":3},"drift":[)"
                  R"({"tenant":"","employee_key":"E2","external_id":"E2","user_name":"grace",)"
                  R"("email":"grace@example.com","jumpcloud_id":null,"kinds":["missing"],)"
                  R"("changes":[],"fixable":true,"enqueued":true,"note":""},)"
                  R"({"tenant":"eu","employee_key":"E3","external_id":"E3","user_name":"alan",)"
                  R"("email":"","jumpcloud_id":"u3","kinds":["attributes"],"changes":[)"
                  R"({"attribute":"title","jumpcloud":"Eng \"II\"\\\n\u0001","hris":"Ingénieur"},)"
                  R"({"attribute":"department","jumpcloud":null,"hris":"R&D"},)"
                  R"({"attribute":"costCenter","jumpcloud":"42","hris":null}],)"
                  R"("fixable":true,"enqueued":true,"note":""},)"
                  R"({"tenant":"","employee_key":"X9","external_id":"X9","user_name":"bob",)"
                  R"("email":"","jumpcloud_id":"u9","kinds":["orphan"],"changes":[],)"
                  R"("fixable":false,"enqueued":false,"note":"reported only"}],)"
                  R"("problems":[{"kind":"conflict","tenant":"","employee_key":"E1",)"
                  R"("message":"2 JumpCloud users carry E1"}]})"
                  "\n");
}

TEST(ReconcileReportJson, ARefusedRunSaysWhyAndBytesFromOutsideStillParse) {
  ReconcileReport r = Sample();
  r.refused = "the HRIS list shrank";
  r.last_listed = 40;
  r.drift[1].changes[0].hris = std::string("bad \xff\xfe utf-8");
  const std::string json = FormatReportJson(r);
  rapidjson::Document d;
  d.Parse(json.c_str());
  ASSERT_FALSE(d.HasParseError()) << json;
  EXPECT_EQ(std::string(d["refused"].GetString()), "the HRIS list shrank");
  EXPECT_EQ(d["last_listed"].GetInt(), 40);
  EXPECT_EQ(d["exit_code"].GetInt(), kExitRefused);
}

TEST(ReconcileReportTable, OneLinePerDriftedEmployeeAndTheProblemsForAHuman) {
  const std::string table = FormatReportTable(Sample());
  EXPECT_NE(table.find("Reconciliation of profile rippling, run 20261128T101500Z-3f2a: 3 HRIS "
                       "employees, 4 JumpCloud users.\n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("E2        grace     missing     create grace <grace@example.com>\n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("eu/E3     alan      attributes  title: \"Eng \\\"II\\\"\\\\  \" -> "
                       "\"Ingénieur\"; department: (none) -> \"R&D\"; costCenter: \"42\" -> "
                       "(none)\n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("X9        bob       orphan      no HRIS employee has externalId X9: "
                       "reported only (not enqueued)\n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("Needs a human (not enqueued):\n  E1  conflict: 2 JumpCloud users carry "
                       "E1\n"),
            std::string::npos)
      << table;
}

}  // namespace
}  // namespace scimsync::daemon
