// ProfileSyncer: how one employee's items become one SCIM convergence, against the fake SCIM
// server, with scripted profiles standing in for connector profiles.
#include "scimsync/daemon/sync.h"

#include <gtest/gtest.h>

#include "fake_scim_server.h"
#include "scimsync/daemon/metrics.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/rate_limiter.h"
#include "scimsync/scim/retry.h"

namespace scimsync::daemon {
namespace {

// Plans each item from its event type; the payload holds the title ("" = no record).
class ScriptedProfile : public connectors::Profile {
 public:
  explicit ScriptedProfile(bool carries) : carries_(carries) {}
  const std::string& name() const override { return name_; }
  int64_t dedup_window_s() const override { return 60; }
  Status Verify(const connectors::Request&, const std::vector<std::string>&,
                int64_t) const override {
    return {};
  }
  Result<connectors::Decoded> Decode(const connectors::Request&) const override {
    return connectors::Decoded{};
  }
  bool payload_carries_record() const override { return carries_; }
  Result<connectors::Plan> PlanItem(const connectors::WorkItem& item, connectors::Fetcher&,
                                    int64_t) const override {
    connectors::Plan plan;
    plan.version = item.occurred_at;
    scim::User u;
    u.external_id = item.employee_key;
    if (!item.payload.empty()) {
      u.user_name = "user." + item.employee_key;
      u.email = "user." + item.employee_key + "@example.com";
      u.title = item.payload;
    }
    if (item.event_type == "hire") plan.action = connectors::Action::kSync;
    if (item.event_type == "leave") plan.action = connectors::Action::kSuspend;
    if (item.event_type == "rehire") plan.action = connectors::Action::kReactivate;
    if (item.event_type == "leave" && item.payload.empty()) u.active = false;
    plan.user = u;
    return plan;
  }

 private:
  std::string name_ = "hr";
  bool carries_;
};

class SyncTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(scim_.Start()); }

  SyncResult Run(bool carries,
                 std::vector<std::tuple<std::string, std::string, std::string>> events) {
    std::map<std::string, ActiveProfile> m;
    m["hr"] = ActiveProfile{std::make_shared<ScriptedProfile>(carries), {}};
    profiles_.Replace(std::move(m));
    config::TargetOptions target;
    target.base_url = scim_.base_url();
    target.max_requests_per_second = 0;
    SyncerDeps deps;
    deps.profiles = &profiles_;
    auto fetcher = connectors::NewRecordedFetcher("{}");
    deps.fetcher = fetcher.get();
    deps.limiter = limiter_.get();
    deps.links = &links_;
    deps.clock = &clock_;
    deps.random = &random_;
    ProfileSyncer syncer(target, config::RetryOptions{}, 1, deps);
    syncer.SetApiKey("test-key");
    EmployeeWork work;
    work.partition = 0;
    work.profile = "hr";
    work.employee_key = "E1";
    int n = 0;
    for (const auto& [type, title, version] : events) {
      queue::Item item;
      item.profile = "hr";
      item.employee_key = "E1";
      item.event_type = type;
      item.payload = title;
      item.occurred_at = version;
      item.entry_id = "1-" + std::to_string(n++);
      work.items.push_back(item);
    }
    return syncer.Sync(0, work);
  }

  std::string User() {
    auto users = scim_.FindUsers("externalId", "E1");
    return users.size() == 1 ? users[0] : "";
  }

  testing::FakeScimServer scim_;
  ProfileSet profiles_;
  FakeClock clock_;
  scim::SequenceRandom random_{{0.5}};
  scim::MemoryLinkStore links_;
  std::unique_ptr<scim::RateLimiter> limiter_ =
      scim::NewMemoryRateLimiter(scim::RateLimitOptions{0, 60000, 1.0 / 16, 1000}, clock_);
};

TEST_F(SyncTest, PayloadItemsFoldInVersionOrderIntoOneWrite) {
  // Sent out of order: the newest record wins, the suspension in between is kept.
  SyncResult r =
      Run(true, {{"hire", "Analyst", "1"}, {"hire", "Director", "3"}, {"leave", "Manager", "2"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone) << r.reason;
  EXPECT_EQ(r.result, "created");
  EXPECT_EQ(scim_.CountRequests("POST"), 1);
  EXPECT_EQ(scim_.CountRequests("PATCH"), 0);
  std::string u = User();
  EXPECT_NE(u.find("\"title\":\"Director\""), std::string::npos) << u;
  EXPECT_NE(u.find("\"active\":false"), std::string::npos) << u;
}

TEST_F(SyncTest, ATerminationWithItsRecordAppliesTheRecord) {
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}).kind, SyncResult::Kind::kDone);
  SyncResult r = Run(true, {{"leave", "Manager", "2"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone) << r.reason;
  std::string u = User();
  EXPECT_NE(u.find("\"title\":\"Manager\""), std::string::npos) << u;
  EXPECT_NE(u.find("\"active\":false"), std::string::npos) << u;
}

TEST_F(SyncTest, ASuspensionWithoutARecordSuspendsAndLeavesAttributesAlone) {
  // A fetch-back profile whose HRIS no longer has the record: only the anchor is known.
  ASSERT_EQ(Run(false, {{"hire", "Analyst", ""}}).kind, SyncResult::Kind::kDone);
  SyncResult r = Run(false, {{"leave", "", ""}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone) << r.reason;
  EXPECT_EQ(r.action, "suspend");
  std::string u = User();
  EXPECT_NE(u.find("\"active\":false"), std::string::npos) << u;
  EXPECT_NE(u.find("\"title\":\"Analyst\""), std::string::npos) << u;
}

TEST_F(SyncTest, AnOlderVersionThanTheAppliedOneIsDropped) {
  // No Versions store here: within one batch, ordering is by version.
  SyncResult r = Run(true, {{"hire", "New", "5"}, {"hire", "Old", "4"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone);
  EXPECT_NE(User().find("\"title\":\"New\""), std::string::npos) << User();
}

TEST_F(SyncTest, TheWrongKeyPauses) {
  scim_.SetApiKey("rotated");
  SyncResult r = Run(true, {{"hire", "Analyst", "1"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kPause) << r.reason;
  EXPECT_EQ(scim_.user_count(), 0u);
}

// Each reservation that makes a worker wait is counted with its wait; a refused one is not (the
// job goes back to its retry set and shows as a retry).
TEST(MeteredRateLimiter, CountsTheWaitsOfGrantedReservations) {
  FakeClock clock;
  scim::RateLimitOptions o;
  o.requests_per_second = 4;  // slots 250 ms apart: the seconds add up exactly in binary
  auto inner = scim::NewMemoryRateLimiter(o, clock);
  Metrics metrics("test");
  auto limiter = NewMeteredRateLimiter(inner.get(), metrics);
  EXPECT_EQ(limiter->Reserve(1000)->wait_ms, 0);
  EXPECT_EQ(limiter->Reserve(1000)->wait_ms, 250);
  EXPECT_EQ(limiter->Reserve(1000)->wait_ms, 500);
  EXPECT_FALSE(limiter->Reserve(100)->granted);  // 750 ms away: refused, no wait
  ASSERT_TRUE(limiter->Throttled(2000).ok());    // passed through: everyone is held
  EXPECT_FALSE(limiter->Reserve(1000)->granted);
  std::string text = metrics.Render();
  EXPECT_NE(text.find("\nscimsync_rate_limit_waits_total 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nscimsync_rate_limit_wait_seconds_total 0.75\n"), std::string::npos)
      << text;
}

}  // namespace
}  // namespace scimsync::daemon
