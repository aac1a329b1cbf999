// Fetch-back against an in-process cpp-httplib server standing in for the HRIS: URL templates,
// credentials, OAuth2 client credentials with caching and refresh, and status classification.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "fake_hris.h"
#include "scimsync/connectors/profile.h"
#include "test_support.h"
#include "test_util.h"

namespace scimsync::connectors {
namespace {

using testing::Entry;
using testing::FakeHris;

constexpr int64_t kNow = 1'795'000'000;

class Fetch : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("ACME_KEY", "key-123", 1);            // NOLINT(concurrency-mt-unsafe)
    setenv("ACME_CLIENT_ID", "cid", 1);          // NOLINT(concurrency-mt-unsafe)
    setenv("ACME_CLIENT_SECRET", "csecret", 1);  // NOLINT(concurrency-mt-unsafe)
    hris_.server().Get(R"(/api/(\w+)/employees/(\w+))", [this](const httplib::Request& req,
                                                               httplib::Response& res) {
      ++calls_;
      last_auth_ = req.get_header_value("Authorization");
      last_path_ = req.path;
      std::string id = req.matches[2];
      if (id == "gone") {
        res.status = 404;
      } else if (id == "busy") {
        res.status = 503;
        res.set_header("Retry-After", "7");
      } else if (id == "throttled" || id == "down") {
        // Throttled (429) or in maintenance (503) until a date 90 s after kNow.
        res.status = id == "throttled" ? 429 : 503;
        res.set_header("Retry-After", testing::HttpDate(kNow + 90));
      } else if (id == "denied") {
        res.status = 401;
      } else if (id == "junk") {
        res.set_content("<html>", "text/html");
      } else {
        res.set_content(R"({"employee":{"id":")" + id + R"(","firstName":"Ada","tenant":")" +
                            std::string(req.matches[1]) + R"(","workEmail":"ada@example.com"}})",
                        "application/json");
      }
    });
  }

  std::shared_ptr<const Profile> Load(const std::string& auth_yaml,
                                      const std::string& entry_extra) {
    scimsync::testing::WriteFile(dir_.File("p.yaml"), R"(name: p
auth: {type: none}
items: {employee_key: /id, event_type: /event}
actions:
  - {event: "*", action: sync}
fetch:
  base_url: https://hris.example.com/api/{tenant}
  credentials: [key, client_id, client_secret]
  auth: )" + auth_yaml + R"(
  headers: {Accept: application/json}
  path: /employees/{employee_key}
  record: /employee
mapping:
  userName: {pointer: /workEmail, transform: [email_local_part]}
  email: /workEmail
  givenName: /firstName
  department: /tenant
)");
    config::Problems problems("cfg.yaml");
    auto p =
        LoadProfile(Entry("{name: p, connector: " + dir_.File("p.yaml") + ", api: {base_url: '" +
                          hris_.url() + "/api/{tenant}', " + entry_extra + "}}"),
                    &problems);
    EXPECT_NE(p, nullptr) << testing::ProblemsText(problems);
    return p;
  }

  Result<Plan> Run(const Profile& p, const std::string& employee, const std::string& tenant,
                   int64_t now = kNow) {
    WorkItem w;
    w.tenant = tenant;
    w.employee_key = employee;
    w.event_type = "employee.updated";
    w.payload = R"({"id":")" + employee + R"(","event":"employee.updated"})";
    return p.PlanItem(w, *fetcher_, now);
  }

  FakeHris hris_;
  scimsync::testing::TempDir dir_;
  std::unique_ptr<Fetcher> fetcher_ = NewHttpFetcher();
  std::atomic<int> calls_{0};
  std::string last_auth_;
  std::string last_path_;
};

TEST_F(Fetch, FetchesTheRecordWithBasicAuthAndMapsIt) {
  auto p = Load("{type: basic, username: '{key}', password: x}", "key_env: ACME_KEY");
  auto plan = Run(*p, "E42", "acme");
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(plan->action, Action::kSync);
  EXPECT_TRUE(plan->fetched);
  EXPECT_EQ(last_path_, "/api/acme/employees/E42");
  EXPECT_EQ(last_auth_, "Basic a2V5LTEyMzp4");  // base64("key-123:x")
  ASSERT_TRUE(plan->user.has_value());
  EXPECT_EQ(plan->user->user_name, "ada");
  EXPECT_EQ(plan->user->department, "acme");
  EXPECT_TRUE(plan->version.empty());  // level-triggered: no ordering key
  EXPECT_FALSE(p->payload_carries_record());
}

TEST_F(Fetch, TenantFallsBackToTheConfiguredOne) {
  auto p = Load("{type: bearer, token: '{key}'}", "key_env: ACME_KEY, tenant: main");
  auto plan = Run(*p, "E1", "");
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(last_path_, "/api/main/employees/E1");
  EXPECT_EQ(last_auth_, "Bearer key-123");
}

TEST_F(Fetch, NotFoundSuspendsByDefault) {
  auto p = Load("{type: bearer, token: '{key}'}", "key_env: ACME_KEY");
  auto plan = Run(*p, "gone", "acme");
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(plan->action, Action::kSuspend);
  EXPECT_NE(plan->reason.find("404"), std::string::npos);
  ASSERT_TRUE(plan->user.has_value());
  EXPECT_EQ(plan->user->external_id, "gone");
  EXPECT_EQ(plan->user->active, false);
}

TEST_F(Fetch, ServerErrorsAreTransientAndHonourRetryAfter) {
  auto p = Load("{type: bearer, token: '{key}'}", "key_env: ACME_KEY");
  auto plan = Run(*p, "busy", "acme");
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().kind, ErrorKind::kTransient);
  EXPECT_EQ(plan.error().http_status, 503);
  ASSERT_TRUE(plan.error().retry_after.has_value());
  EXPECT_EQ(plan.error().retry_after->count(), 7000);
}

TEST_F(Fetch, ARetryAfterDateIsHonouredAsTheDistanceFromNow) {
  auto p = Load("{type: bearer, token: '{key}'}", "key_env: ACME_KEY");
  for (const char* id : {"throttled", "down"}) {
    SCOPED_TRACE(id);
    auto plan = Run(*p, id, "acme", kNow + 30);
    ASSERT_FALSE(plan.ok());
    EXPECT_EQ(plan.error().kind, ErrorKind::kTransient);
    EXPECT_EQ(plan.error().http_status, std::string(id) == "throttled" ? 429 : 503);
    ASSERT_TRUE(plan.error().retry_after.has_value()) << "the date was ignored";
    EXPECT_EQ(plan.error().retry_after->count(), 60'000);  // the date is 90 s after kNow
  }
}

TEST_F(Fetch, UnauthorizedIsAnAuthErrorWithoutTheKey) {
  auto p = Load("{type: bearer, token: '{key}'}", "key_env: ACME_KEY");
  auto plan = Run(*p, "denied", "acme");
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().kind, ErrorKind::kAuth);
  EXPECT_EQ(plan.error().message.find("key-123"), std::string::npos);
}

TEST_F(Fetch, ANonJsonAnswerIsPermanent) {
  auto p = Load("{type: bearer, token: '{key}'}", "key_env: ACME_KEY");
  auto plan = Run(*p, "junk", "acme");
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().kind, ErrorKind::kPermanent);
}

TEST_F(Fetch, AnUnreachableHrisIsTransient) {
  auto p = Load("{type: bearer, token: '{key}'}", "key_env: ACME_KEY");
  config::Problems problems("cfg.yaml");
  auto dead = LoadProfile(
      Entry("{name: p, connector: " + dir_.File("p.yaml") + ", api: {base_url: 'http://127.0.0.1:" +
            std::to_string(scimsync::testing::FreePort()) + "/x', key_env: ACME_KEY}}"),
      &problems);
  ASSERT_NE(dead, nullptr) << testing::ProblemsText(problems);
  auto plan = Run(*dead, "E1", "acme");
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().kind, ErrorKind::kTransient);
}

TEST_F(Fetch, AMissingCredentialIsAnAuthErrorNamingTheSetting) {
  auto p = Load("{type: bearer, token: '{key}'}", "key_env: ACME_UNSET_VARIABLE");
  auto plan = Run(*p, "E1", "acme");
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().kind, ErrorKind::kAuth);
  EXPECT_NE(plan.error().message.find("ACME_UNSET_VARIABLE"), std::string::npos);
}

TEST_F(Fetch, OAuth2TokensAreCachedUntilTheyExpireAndRefreshedOn401) {
  std::atomic<int> token_calls{0};
  std::atomic<bool> reject_first{false};
  hris_.server().Post("/token", [&](const httplib::Request& req, httplib::Response& res) {
    int n = ++token_calls;
    if (req.get_param_value("grant_type") != "client_credentials" ||
        req.get_param_value("client_id") != "cid" ||
        req.get_param_value("client_secret") != "csecret") {
      res.status = 401;
      return;
    }
    res.set_content(R"({"access_token":"tok-)" + std::to_string(n) + R"(","expires_in":600})",
                    "application/json");
  });
  hris_.server().Get(
      "/api/t/employees/O-1", [&](const httplib::Request& req, httplib::Response& res) {
        if (req.get_header_value("Authorization") == "Bearer tok-1" && reject_first) {
          res.status = 401;
          return;
        }
        last_auth_ = req.get_header_value("Authorization");
        res.set_content(R"({"employee":{"workEmail":"o@x.io"}})", "application/json");
      });
  auto p = Load("{type: oauth2_client_credentials, token_url: '" + hris_.url() +
                    "/token', client_id: '{client_id}', client_secret: '{client_secret}'}",
                "client_id_env: ACME_CLIENT_ID, client_secret_env: ACME_CLIENT_SECRET");
  ASSERT_TRUE(Run(*p, "O-1", "t").ok());
  ASSERT_TRUE(Run(*p, "O-1", "t", kNow + 100).ok());
  EXPECT_EQ(token_calls, 1);  // cached
  EXPECT_EQ(last_auth_, "Bearer tok-1");
  ASSERT_TRUE(Run(*p, "O-1", "t", kNow + 590).ok());  // within a minute of expiry: refreshed
  EXPECT_EQ(token_calls, 2);
  EXPECT_EQ(last_auth_, "Bearer tok-2");
  // A token the HRIS revoked early: one refresh and one retry.
  auto p2 = Load("{type: oauth2_client_credentials, token_url: '" + hris_.url() +
                     "/token', client_id: '{client_id}', client_secret: '{client_secret}'}",
                 "client_id_env: ACME_CLIENT_ID, client_secret_env: ACME_CLIENT_SECRET");
  token_calls = 0;
  reject_first = true;
  auto plan = Run(*p2, "O-1", "t");
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(token_calls, 2);
  EXPECT_EQ(last_auth_, "Bearer tok-2");
}

TEST_F(Fetch, ARejectedClientSecretIsAnAuthError) {
  hris_.server().Post("/token",
                      [](const httplib::Request&, httplib::Response& res) { res.status = 401; });
  auto p = Load("{type: oauth2_client_credentials, token_url: '" + hris_.url() +
                    "/token', client_id: '{client_id}', client_secret: '{client_secret}'}",
                "client_id_env: ACME_CLIENT_ID, client_secret_env: ACME_CLIENT_SECRET");
  auto plan = Run(*p, "E1", "t");
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().kind, ErrorKind::kAuth);
  EXPECT_EQ(plan.error().message.find("csecret"), std::string::npos);
}

TEST_F(Fetch, PlainHttpIsRefusedForRemoteHosts) {
  HttpRequest req;
  req.url = "http://hris.example.com/x";
  auto res = fetcher_->Fetch("", req);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().message.find("https"), std::string::npos);
}

}  // namespace
}  // namespace scimsync::connectors
