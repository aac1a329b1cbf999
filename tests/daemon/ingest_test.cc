// Ingest's decisions (status codes, bodies, what reaches the queue) with a fake profile and an
// in-test queue function; the HTTP and Redis paths are covered by the integration test.
#include "scimsync/daemon/ingest.h"

#include <gtest/gtest.h>

#include <set>

#include "fake_profile.h"
#include "scimsync/daemon/metrics.h"
#include "scimsync/log.h"

namespace scimsync::daemon {
namespace {

class IngestTest : public ::testing::Test {
 protected:
  IngestTest()
      : ingest_(
            &profiles_,
            [this](const std::vector<queue::Queue::Batch>& batches) {
              ++enqueue_calls_;
              std::vector<Result<queue::EnqueueOutcome>> out;
              for (const auto& b : batches) out.push_back(Enqueue(*b.items, b.dedup_window_s));
              return out;
            },
            &clock_) {
    std::map<std::string, ActiveProfile> m;
    m["hr"] = ActiveProfile{std::make_shared<FakeProfile>(), {"old", "new"}};
    profiles_.Replace(std::move(m));
  }

  Result<queue::EnqueueOutcome> Enqueue(const std::vector<queue::Item>& items, int64_t window) {
    if (redis_down_) return Error::Transient("connection refused");
    last_window_ = window;
    queue::EnqueueOutcome out;
    for (const auto& item : items) {
      if (seen_.insert(item.dedup_id).second) {
        stored_.push_back(item);
        ++out.accepted;
      } else {
        ++out.duplicates;
      }
    }
    return out;
  }

  connectors::Request Req(std::string body, std::string key = "new") {
    connectors::Request r;
    r.content_type = "application/json";
    r.body = std::move(body);
    if (!key.empty()) r.headers.emplace_back("X-Key", key);
    return r;
  }

  FakeClock clock_;
  ProfileSet profiles_;
  Ingest ingest_;
  bool redis_down_ = false;
  int enqueue_calls_ = 0;
  int64_t last_window_ = 0;
  std::set<std::string> seen_;
  std::vector<queue::Item> stored_;
};

TEST_F(IngestTest, AcceptedItemsAreStoredWithContext) {
  connectors::Request r = Req("E1,d1\nE2,d2");
  r.tenant = "acme";
  auto resp = ingest_.Handle("hr", r);
  EXPECT_EQ(resp.status, 202);
  EXPECT_EQ(resp.body.rfind("{\"accepted\":2,\"duplicates\":0,\"ignored\":0,\"trace_id\":\"", 0),
            0u)
      << resp.body;
  ASSERT_EQ(stored_.size(), 2u);
  EXPECT_EQ(stored_[0].profile, "hr");
  EXPECT_EQ(stored_[0].tenant, "acme");
  EXPECT_EQ(stored_[0].employee_key, "E1");
  EXPECT_EQ(stored_[1].dedup_id, "d2");
  EXPECT_EQ(stored_[0].received_at_ms, clock_.NowMs());
  EXPECT_NE(stored_[0].trace_id, stored_[1].trace_id);
  EXPECT_EQ(last_window_, 3600);
}

// Vendors count a 4xx as a failed delivery (retry, alert, disable the webhook): what is not about
// an employee is answered 2xx, counted by event type, and never reaches the queue.
TEST_F(IngestTest, AcknowledgedItemsAre2xxCountedAndNotEnqueued) {
  WebhookResponse resp = ingest_.Handle("hr", Req("ack:account.updated\nack:account.updated"));
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body.rfind("{\"accepted\":0,\"duplicates\":0,\"ignored\":2,", 0), 0u) << resp.body;
  EXPECT_TRUE(stored_.empty());
  EXPECT_EQ(enqueue_calls_, 0);
  EXPECT_NE(Metrics::Global().Render().find(
                "scimsync_items_ignored_total{profile=\"hr\",event_type=\"account.updated\"}"),
            std::string::npos);

  WebhookResponse mixed = ingest_.Handle("hr", Req("E1,d1\nack:payroll.updated"));
  EXPECT_EQ(mixed.status, 202);
  EXPECT_EQ(mixed.body.rfind("{\"accepted\":1,\"duplicates\":0,\"ignored\":1,", 0), 0u)
      << mixed.body;
  ASSERT_EQ(stored_.size(), 1u);
  EXPECT_EQ(stored_[0].employee_key, "E1");
}

// Finch routes tenants from the body's connection_id: the item's tenant is the body's when the
// URL has none, and the URL segment wins when it has one.
TEST_F(IngestTest, ATenantNamedInTheBodyIsTheItemsTenant) {
  EXPECT_EQ(ingest_.Handle("hr", Req("E1,d1,conn-1")).status, 202);
  ASSERT_EQ(stored_.size(), 1u);
  EXPECT_EQ(stored_[0].tenant, "conn-1");
  connectors::Request r = Req("E2,d2,conn-1");
  r.tenant = "acme";
  EXPECT_EQ(ingest_.Handle("hr", r).status, 202);
  ASSERT_EQ(stored_.size(), 2u);
  EXPECT_EQ(stored_[1].tenant, "acme");
}

std::vector<std::string>* g_log_lines = nullptr;

// One info line per profile, event type and hour: a vendor posting payroll events all day must
// not flood the log, and each kind is still seen.
TEST_F(IngestTest, AnAcknowledgedEventTypeIsLoggedOnceAnHour) {
  std::vector<std::string> lines;
  g_log_lines = &lines;
  log::SetSink([](std::string_view line) { g_log_lines->emplace_back(line); });
  auto acknowledged = [&] {
    size_t n = 0;
    for (const auto& l : lines) n += l.find("webhook item acknowledged") != std::string::npos;
    return n;
  };
  ingest_.Handle("hr", Req("ack:payroll.updated\nack:payroll.updated"));
  ingest_.Handle("hr", Req("ack:payroll.updated"));
  EXPECT_EQ(acknowledged(), 1u);
  ingest_.Handle("hr", Req("ack:company.updated"));
  EXPECT_EQ(acknowledged(), 2u);
  clock_.AdvanceMs(3600 * 1000);
  ingest_.Handle("hr", Req("ack:payroll.updated"));
  EXPECT_EQ(acknowledged(), 3u);
  log::SetSink(nullptr);
  g_log_lines = nullptr;
  bool has_reason = false;
  for (const auto& l : lines) has_reason |= l.find("not about an employee") != std::string::npos;
  EXPECT_TRUE(has_reason);
}

TEST_F(IngestTest, DuplicatesAreCounted) {
  EXPECT_EQ(ingest_.Handle("hr", Req("E1,d1")).status, 202);
  auto resp = ingest_.Handle("hr", Req("E1,d1\nE1,d3"));
  EXPECT_EQ(resp.status, 202);
  EXPECT_EQ(resp.body.rfind("{\"accepted\":1,\"duplicates\":1", 0), 0u) << resp.body;
}

TEST_F(IngestTest, EitherActiveSecretIsAcceptedDuringRotation) {
  EXPECT_EQ(ingest_.Handle("hr", Req("E1,d1", "old")).status, 202);
  EXPECT_EQ(ingest_.Handle("hr", Req("E1,d2", "new")).status, 202);
}

TEST_F(IngestTest, ErrorsEnqueueNothingAndSayWhatToFix) {
  auto unknown = ingest_.Handle("payroll", Req("E1,d1"));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body,
            "{\"error\":\"unknown_profile\",\"detail\":\"no profile named 'payroll' is "
            "configured: check the webhook URL against profiles[].name\"}");

  auto bad_sig = ingest_.Handle("hr", Req("E1,d1", "wrong"));
  EXPECT_EQ(bad_sig.status, 401);
  EXPECT_EQ(bad_sig.body,
            "{\"error\":\"unauthorized\",\"detail\":\"X-Key does not match any active secret\"}");
  EXPECT_EQ(ingest_.Handle("hr", Req("E1,d1", "")).status, 401);

  auto malformed = ingest_.Handle("hr", Req("E1,d1\nbad"));
  EXPECT_EQ(malformed.status, 400);
  EXPECT_NE(malformed.body.find("malformed_body"), std::string::npos);

  connectors::Request csv = Req("E1,d1");
  csv.content_type = "text/csv";
  EXPECT_EQ(ingest_.Handle("hr", csv).status, 415);

  connectors::Request bad_tenant = Req("E1,d1");
  bad_tenant.tenant = "a b";
  EXPECT_EQ(ingest_.Handle("hr", bad_tenant).status, 400);

  // A signed webhook replayed under a tenant the profile does not serve.
  for (const char* invented : {"x1", ".", "..", "ACME"}) {
    connectors::Request replay = Req("E1,d1");
    replay.tenant = invented;
    auto resp = ingest_.Handle("hr", replay);
    EXPECT_EQ(resp.status, 404) << invented;
    EXPECT_NE(resp.body.find("\"error\":\"unknown_tenant\""), std::string::npos) << resp.body;
    if (invented == std::string("x1")) {
      EXPECT_EQ(resp.body.find("x1"), std::string::npos) << "the segment is echoed: " << resp.body;
    }
  }

  EXPECT_TRUE(stored_.empty());
}

TEST_F(IngestTest, RedisDownIs503WithRetryAfter) {
  redis_down_ = true;
  auto resp = ingest_.Handle("hr", Req("E1,d1"));
  EXPECT_EQ(resp.status, 503);
  ASSERT_EQ(resp.headers.size(), 1u);
  EXPECT_EQ(resp.headers[0].first, "Retry-After");
  EXPECT_EQ(resp.headers[0].second, "5");
  EXPECT_NE(resp.body.find("queue_unavailable"), std::string::npos);
  redis_down_ = false;
  EXPECT_EQ(ingest_.Handle("hr", Req("E1,d1")).status, 202);
  EXPECT_EQ(stored_.size(), 1u);
}

TEST_F(IngestTest, HandshakeIsAnsweredAndEnqueuesNothing) {
  auto resp = ingest_.Handle("hr", Req("ping"));
  EXPECT_EQ(resp.status, 200);
  EXPECT_TRUE(stored_.empty());
}

TEST_F(IngestTest, DrainingAnswers503) {
  ingest_.SetDraining(true);
  auto resp = ingest_.Handle("hr", Req("E1,d1"));
  EXPECT_EQ(resp.status, 503);
  EXPECT_TRUE(stored_.empty());
}

TEST_F(IngestTest, ReloadSwapsProfilesForNewRequests) {
  std::map<std::string, ActiveProfile> m;
  m["hr"] = ActiveProfile{std::make_shared<FakeProfile>(), {"rotated"}};
  profiles_.Replace(std::move(m));
  EXPECT_EQ(ingest_.Handle("hr", Req("E1,d1", "old")).status, 401);
  EXPECT_EQ(ingest_.Handle("hr", Req("E1,d1", "rotated")).status, 202);
}

TEST_F(IngestTest, ABatchIsAnsweredInOrderWithOneQueueWriteForTheValidOnes) {
  // What the listener's event loop does with the webhooks it read together.
  ASSERT_EQ(ingest_.Handle("hr", Req("E9,d9")).status, 202);
  enqueue_calls_ = 0;
  std::vector<WebhookCall> calls;
  calls.push_back({"hr", Req("E1,d1\nE2,d2")});
  calls.push_back({"hr", Req("E3,d3", "wrong")});
  calls.push_back({"payroll", Req("E4,d4")});
  calls.push_back({"hr", Req("E9,d9")});
  calls.push_back({"hr", Req("ping")});
  calls.push_back({"hr", Req("E5,d5")});
  std::vector<WebhookResponse> out = ingest_.HandleBatch(calls);
  ASSERT_EQ(out.size(), 6u);
  EXPECT_EQ(out[0].status, 202);
  EXPECT_EQ(out[0].body.rfind("{\"accepted\":2,\"duplicates\":0", 0), 0u) << out[0].body;
  EXPECT_EQ(out[1].status, 401);
  EXPECT_EQ(out[2].status, 404);
  EXPECT_EQ(out[3].body.rfind("{\"accepted\":0,\"duplicates\":1", 0), 0u) << out[3].body;
  EXPECT_EQ(out[4].status, 200);
  EXPECT_EQ(out[5].body.rfind("{\"accepted\":1,\"duplicates\":0", 0), 0u) << out[5].body;
  EXPECT_EQ(enqueue_calls_, 1);
  ASSERT_EQ(stored_.size(), 4u);  // E9 earlier, then E1, E2, E5
  EXPECT_EQ(stored_[3].employee_key, "E5");
}

TEST_F(IngestTest, RedisDownFailsEveryWebhookOfTheBatchWith503) {
  redis_down_ = true;
  std::vector<WebhookCall> calls;
  calls.push_back({"hr", Req("E1,d1")});
  calls.push_back({"hr", Req("E2,d2", "wrong")});
  calls.push_back({"hr", Req("E3,d3")});
  std::vector<WebhookResponse> out = ingest_.HandleBatch(calls);
  EXPECT_EQ(out[0].status, 503);
  EXPECT_EQ(out[1].status, 401);
  EXPECT_EQ(out[2].status, 503);
  EXPECT_TRUE(stored_.empty());
}

TEST(ErrorBodyTest, EscapesDetail) {
  EXPECT_EQ(ErrorBody("x", "a \"quoted\"\nline"),
            "{\"error\":\"x\",\"detail\":\"a \\\"quoted\\\"\\nline\"}");
}

// The built-in Rippling profile, whose webhooks carry no event id and no timestamp: its dedup id
// is a hash of the body, so two deliveries of different changes look alike. Through Ingest and
// the in-memory queue (the Redis queue's dedup semantics) with a fake clock.
class RipplingRepeatTest : public ::testing::Test {
 protected:
  RipplingRepeatTest()
      : queue_(4, clock_),
        ingest_(
            &profiles_,
            [this](const std::vector<queue::Queue::Batch>& batches) {
              return queue_.EnqueueBatches(batches);
            },
            &clock_) {
    config::ProfileConfig entry;
    entry.node = YAML::Load("{name: rippling, connector: rippling, secret_env: RIPPLING_TOKEN}");
    entry.name = "rippling";
    entry.connector = "rippling";
    entry.secrets.push_back({"RIPPLING_TOKEN", ""});
    entry.path = "profiles[0]";
    config::Problems problems("test.yaml");
    auto profile = connectors::LoadProfile(entry, &problems);
    EXPECT_NE(profile, nullptr);
    std::map<std::string, ActiveProfile> m;
    if (profile) m["rippling"] = ActiveProfile{profile, {"tok"}};
    profiles_.Replace(std::move(m));
  }

  // One Rippling delivery, form-encoded as Rippling sends it.
  std::string Post(const std::string& event) {
    connectors::Request r;
    r.content_type = "application/x-www-form-urlencoded";
    r.headers = {{"Authorization", "Bearer tok"}};
    r.body =
        "event_name=" + event + "&id=656992816f26d6caea00072c&company_id=656992806f26d6caeaffff9f";
    WebhookResponse resp = ingest_.Handle("rippling", r);
    EXPECT_EQ(resp.status, 202) << resp.body;
    return resp.body.substr(0, resp.body.find(",\"ignored\""));
  }

  FakeClock clock_{1'795'000'000'000};
  queue::MemoryQueue queue_;
  ProfileSet profiles_;
  Ingest ingest_;
};

TEST_F(RipplingRepeatTest, EachChangeOfOneEmployeeIsAcceptedAndOnlyRedeliveriesCollapse) {
  const char kAccepted[] = "{\"accepted\":1,\"duplicates\":0";
  const char kDuplicate[] = "{\"accepted\":0,\"duplicates\":1";
  // Rippling may deliver one change more than once, minutes apart at most.
  EXPECT_EQ(Post("employee.updated"), kAccepted);
  clock_.AdvanceMs(20'000);
  EXPECT_EQ(Post("employee.updated"), kDuplicate);
  // Later changes of the same employee, hours apart: a second update, a termination, a
  // correcting update after it, and a second termination. Each must reach the worker.
  for (const char* event :
       {"employee.updated", "employee.terminated", "employee.updated", "employee.terminated"}) {
    clock_.AdvanceMs(2 * 3600 * 1000);
    EXPECT_EQ(Post(event), kAccepted) << event;
  }
}

}  // namespace
}  // namespace scimsync::daemon
