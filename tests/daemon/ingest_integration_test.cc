// The real scimsyncd binary over HTTP against a real redis-server: what an HRIS sees, and what
// ends up durable in Redis.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "daemon_fixture.h"

namespace scimsync::testing {
namespace {

class IngestIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fx_.StartRedis());
    ASSERT_TRUE(fx_.StartDaemon()) << fx_.log();
    client_ = fx_.Client();
  }

  DaemonFixture fx_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(IngestIntegrationTest, AcceptedEventIsDurableInRedis) {
  auto res = fx_.PostSigned(*client_, GenericEvent("evt-1", "E1", "employee.created"));
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 202) << res->body;
  EXPECT_EQ(res->body.rfind("{\"accepted\":1,\"duplicates\":0", 0), 0u) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");

  auto items = fx_.ReadAll();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].profile, "hr");
  EXPECT_EQ(items[0].employee_key, "E1");
  EXPECT_EQ(items[0].dedup_id, "evt-1");
  EXPECT_EQ(items[0].event_type, "employee.created");
  EXPECT_NE(items[0].payload.find("\"E1\""), std::string::npos);
  EXPECT_FALSE(items[0].trace_id.empty());
}

// A second profile that serves two tenants, next to "hr", which serves none.
constexpr char kTenantProfile[] =
    "  - {name: multi, connector: generic, secret_env: TEST_HR_SECRET,\n"
    "     tenants: {acme: {}, beta: {}}}\n";

class TenantIngestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fx_.StartRedis());
    ASSERT_TRUE(fx_.StartDaemon()) << fx_.log();
    client_ = fx_.Client();
  }

  DaemonFixture fx_{kTenantProfile};
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(TenantIngestTest, BatchAndTenantSegment) {
  std::string body = "{\"events\":[" + GenericEvent("b-1", "E1") + "," + GenericEvent("b-2", "E2") +
                     "," + GenericEvent("b-3", "E3") + "]}";
  auto res = fx_.PostSigned(*client_, body, "/webhooks/multi/acme");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 202) << res->body;
  EXPECT_EQ(res->body.rfind("{\"accepted\":3,\"duplicates\":0", 0), 0u) << res->body;
  auto items = fx_.ReadAll();
  ASSERT_EQ(items.size(), 3u);
  for (const auto& item : items) EXPECT_EQ(item.tenant, "acme");
}

// A captured, correctly signed webhook replayed under tenants nobody configured: each is 404 and
// nothing is enqueued, so an old termination cannot be re-applied past dedup and ordering.
TEST_F(TenantIngestTest, ReplayUnderAnInventedTenantIs404AndEnqueuesNothing) {
  const std::string body = GenericEvent("evt-term", "E1", "employee.terminated");
  ASSERT_EQ(fx_.PostSigned(*client_, body)->status, 202);
  ASSERT_EQ(fx_.PostSigned(*client_, body, "/webhooks/multi/acme")->status, 202);
  ASSERT_EQ(fx_.TotalDepth(), 2);
  for (const char* path : {"/webhooks/hr/x1", "/webhooks/hr/x2", "/webhooks/hr/.",
                           "/webhooks/hr/%2E%2E", "/webhooks/hr/acme", "/webhooks/multi/x1",
                           "/webhooks/multi/ACME", "/webhooks/multi/.", "/webhooks/multi"}) {
    SCOPED_TRACE(path);
    auto res = fx_.PostSigned(*client_, body, path);
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 404) << res->body;
    EXPECT_NE(res->body.find("\"error\":\"unknown_tenant\""), std::string::npos) << res->body;
  }
  EXPECT_EQ(fx_.TotalDepth(), 2);
  // The configured tenants still take webhooks, each in its own dedup scope.
  auto beta = fx_.PostSigned(*client_, body, "/webhooks/multi/beta");
  ASSERT_TRUE(beta);
  EXPECT_EQ(beta->status, 202) << beta->body;
  EXPECT_EQ(beta->body.rfind("{\"accepted\":1,\"duplicates\":0", 0), 0u) << beta->body;
  auto again = fx_.PostSigned(*client_, body, "/webhooks/multi/acme");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body.rfind("{\"accepted\":0,\"duplicates\":1", 0), 0u) << again->body;
  EXPECT_EQ(fx_.TotalDepth(), 3);
}

TEST_F(IngestIntegrationTest, DuplicateIsAcknowledgedNotEnqueuedAgain) {
  std::string body = GenericEvent("evt-dup", "E7");
  ASSERT_EQ(fx_.PostSigned(*client_, body)->status, 202);
  auto again = fx_.PostSigned(*client_, body);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 202);
  EXPECT_EQ(again->body.rfind("{\"accepted\":0,\"duplicates\":1", 0), 0u) << again->body;
  EXPECT_EQ(fx_.TotalDepth(), 1);
}

TEST_F(IngestIntegrationTest, EveryClientErrorEnqueuesNothing) {
  const std::string body = GenericEvent("evt-x", "E1");
  struct Case {
    const char* what;
    int status;
    const char* error;
    httplib::Result result;
  };
  std::vector<Case> cases;

  cases.push_back({"no signature", 401, "unauthorized",
                   client_->Post("/webhooks/hr", body, "application/json")});
  cases.push_back(
      {"wrong signature", 401, "unauthorized",
       client_->Post("/webhooks/hr",
                     {{"X-Scimsync-Signature", "sha256=" + HmacSha256Hex("wrong", body)}}, body,
                     "application/json")});
  cases.push_back({"unknown profile", 404, "unknown_profile",
                   fx_.PostSigned(*client_, body, "/webhooks/payroll")});
  cases.push_back({"wrong method", 405, "method_not_allowed", client_->Get("/webhooks/hr")});
  cases.push_back({"malformed JSON", 400, "malformed_body", fx_.PostSigned(*client_, "{\"id\":")});
  cases.push_back(
      {"item without employee id", 400, "malformed_body",
       fx_.PostSigned(*client_, R"({"id":"e","type":"employee.updated","employee":{}})")});
  std::string big(70000, ' ');
  cases.push_back({"too large", 413, "payload_too_large", fx_.PostSigned(*client_, big)});
  cases.push_back(
      {"unsupported content type", 415, "unsupported_media_type",
       client_->Post("/webhooks/hr",
                     {{"X-Scimsync-Signature", "sha256=" + HmacSha256Hex(kWebhookSecret, body)}},
                     body, "application/xml")});
  cases.push_back({"unknown path", 404, "not_found", client_->Get("/nothing/here")});

  for (auto& c : cases) {
    SCOPED_TRACE(c.what);
    ASSERT_TRUE(c.result) << httplib::to_string(c.result.error());
    EXPECT_EQ(c.result->status, c.status) << c.result->body;
    EXPECT_NE(c.result->body.find(std::string("\"error\":\"") + c.error + "\""), std::string::npos)
        << c.result->body;
    EXPECT_NE(c.result->body.find("\"detail\":\""), std::string::npos) << c.result->body;
  }
  EXPECT_EQ(fx_.TotalDepth(), 0);
}

TEST_F(IngestIntegrationTest, RedisOutageIs503ThenAcceptedAgainWithNothingLost) {
  ASSERT_EQ(fx_.PostSigned(*client_, GenericEvent("before", "E1"))->status, 202);
  auto ready = client_->Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);

  fx_.redis().Stop();
  auto during = fx_.PostSigned(*client_, GenericEvent("during", "E2"));
  ASSERT_TRUE(during);
  EXPECT_EQ(during->status, 503) << during->body;
  EXPECT_EQ(during->get_header_value("Retry-After"), "5");
  EXPECT_NE(during->body.find("queue_unavailable"), std::string::npos);
  auto not_ready = client_->Get("/readyz");
  ASSERT_TRUE(not_ready);
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_EQ(client_->Get("/healthz")->status, 200);

  ASSERT_TRUE(fx_.redis().Start());
  // The sender retries what was refused; the daemon reconnects by itself.
  auto after = fx_.PostSigned(*client_, GenericEvent("during", "E2"));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 202) << after->body;
  EXPECT_EQ(client_->Get("/readyz")->status, 200);

  std::set<std::string> ids;
  for (const auto& item : fx_.ReadAll()) ids.insert(item.dedup_id);
  EXPECT_EQ(ids, (std::set<std::string>{"before", "during"}));
}

TEST_F(IngestIntegrationTest, ThousandConcurrentRequestsEachStoredExactlyOnce) {
  constexpr int kThreads = 16;
  constexpr int kPerThread = 63;  // 1,008 requests
  std::atomic<int> accepted{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = fx_.Client();
      client->set_keep_alive(true);
      for (int i = 0; i < kPerThread; ++i) {
        std::string id = "c-" + std::to_string(t) + "-" + std::to_string(i);
        auto res = fx_.PostSigned(*client, GenericEvent(id, "E" + std::to_string(i % 50)));
        if (res && res->status == 202 && res->body.rfind("{\"accepted\":1,", 0) == 0) {
          ++accepted;
        } else {
          ++failed;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(accepted.load(), kThreads * kPerThread);

  auto items = fx_.ReadAll();
  std::set<std::string> ids;
  for (const auto& item : items) ids.insert(item.dedup_id);
  EXPECT_EQ(items.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(ids.size(), items.size()) << "an item was stored twice";
}

TEST_F(IngestIntegrationTest, OneJsonLogLinePerRequestWithoutSecrets) {
  ASSERT_EQ(fx_.PostSigned(*client_, GenericEvent("log-1", "E1"))->status, 202);
  ASSERT_EQ(client_->Post("/webhooks/hr", "{}", "application/json")->status, 401);
  fx_.StopDaemon();
  std::string log = fx_.log();
  EXPECT_EQ(log.find(kWebhookSecret), std::string::npos) << "the webhook secret was logged";
  int webhook_lines = 0;
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    std::string line = log.substr(start, end - start);
    start = end == std::string::npos ? log.size() : end + 1;
    if (line.empty()) continue;
    EXPECT_EQ(line.front(), '{') << line;
    EXPECT_EQ(line.back(), '}') << line;
    if (line.find("\"msg\":\"webhook\"") != std::string::npos) ++webhook_lines;
  }
  EXPECT_EQ(webhook_lines, 2);
  EXPECT_NE(log.find("\"status\":202"), std::string::npos);
  EXPECT_NE(log.find("\"status\":401"), std::string::npos);
  EXPECT_EQ(log.find("Lovelace"), std::string::npos) << "payload content was logged at info";
}

TEST_F(IngestIntegrationTest, SigtermStopsCleanly) {
  fx_.daemon().Signal(SIGTERM);
  EXPECT_EQ(fx_.daemon().Wait(10000), 0);
}

}  // namespace
}  // namespace scimsync::testing
