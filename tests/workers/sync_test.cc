// ProfileSyncer: how one employee's items become one SCIM convergence, against the fake SCIM
// server, with scripted profiles standing in for connector profiles.
#include "scimsync/workers/sync.h"

#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "../queue/queue_test_util.h"
#include "fake_scim_server.h"
#include "scimsync/daemon/metrics.h"
#include "scimsync/redis/client.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/rate_limiter.h"
#include "scimsync/scim/retry.h"
#include "scimsync/workers/coordination.h"
#include "scimsync/workers/history.h"
#include "test_support.h"

namespace scimsync::workers {
namespace {

using daemon::Metrics;

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
                                    int64_t now_s) const override {
    connectors::Plan plan;
    plan.version = item.occurred_at;
    scim::User u;
    u.external_id = item.employee_key;
    if (!item.payload.empty()) {
      u.user_name = "user." + item.employee_key;
      u.email = "user." + item.employee_key + "@example.com";
      u.title = item.payload;
    }
    std::string type = item.event_type;
    if (auto at = type.find('@'); at != std::string::npos) {
      // "leave@SECONDS": a termination effective at that Unix time.
      plan.effective_at_s = std::stoll(type.substr(at + 1));
      type.resize(at);
    }
    if (auto at = type.find('~'); at != std::string::npos) {
      // "hire~SECONDS": the fetched record dates a termination at that Unix time (Factorial's
      // terminated_on): active until then, and planned again on the day; inactive from then on.
      const int64_t ends = std::stoll(type.substr(at + 1));
      if (now_s < ends) {
        plan.recheck_at_s = ends;
      } else {
        u.active = false;
      }
      type.resize(at);
    }
    if (type == "hire") plan.action = connectors::Action::kSync;
    if (type == "leave") plan.action = connectors::Action::kSuspend;
    if (type == "rehire") plan.action = connectors::Action::kReactivate;
    if (type == "leave" && item.payload.empty()) u.active = false;
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

  // What tests with a Redis add (the applied versions, the guard).
  virtual void AddDeps(SyncerDeps&) {}

  std::unique_ptr<ProfileSyncer> Syncer(bool carries) {
    std::map<std::string, ActiveProfile> m;
    m["hr"] = ActiveProfile{std::make_shared<ScriptedProfile>(carries), {}};
    profiles_.Replace(std::move(m));
    config::TargetOptions target;
    target.base_url = scim_.base_url();
    target.max_requests_per_second = 0;
    SyncerDeps deps;
    deps.profiles = &profiles_;
    deps.fetcher = fetcher_.get();
    deps.limiter = limiter_.get();
    deps.links = &links_;
    deps.clock = sync_clock_ != nullptr ? sync_clock_ : &clock_;
    deps.random = &random_;
    deps.metrics = &metrics_;
    AddDeps(deps);
    auto syncer = std::make_unique<ProfileSyncer>(target, config::RetryOptions{}, 1, deps);
    syncer->SetApiKey("test-key");
    return syncer;
  }

  SyncResult Run(bool carries,
                 std::vector<std::tuple<std::string, std::string, std::string>> events,
                 const std::string& employee = "E1") {
    auto syncer = Syncer(carries);
    EmployeeWork work;
    work.partition = 0;
    work.profile = "hr";
    work.employee_key = employee;
    for (const auto& [type, title, version] : events) {
      queue::Item item;
      item.profile = "hr";
      item.employee_key = employee;
      item.event_type = type;
      item.payload = title;
      item.occurred_at = version;
      item.entry_id = "1-" + std::to_string(entries_++);
      item.trace_id = "t-" + item.entry_id;
      work.items.push_back(item);
    }
    work.last_applied = [this, employee]() -> Result<std::optional<queue::Item>> {
      if (!last_applied_error_.empty()) return Error::Transient(last_applied_error_);
      auto it = applied_.find(employee);
      if (it == applied_.end()) return std::optional<queue::Item>();
      return std::optional<queue::Item>(it->second);
    };
    work.held_due_ms = held_due_ms_;
    SyncResult r = syncer->Sync(0, work);
    if (before_end_pass_) before_end_pass_();
    last_end_pass_ = syncer->EndPass(0);
    if (expect_end_pass_ok_) {
      EXPECT_TRUE(last_end_pass_.ok()) << last_end_pass_.error().message;
    }
    if (r.kind == SyncResult::Kind::kDone && r.action != "ignore") {
      // What the pool remembers for the employee (Queue::AckApplied): the newest item applied.
      for (const auto& item : work.items) {
        auto it = applied_.find(employee);
        if (it == applied_.end() || item.occurred_at.empty() ||
            CompareVersions(item.occurred_at, it->second.occurred_at) >= 0) {
          applied_[employee] = item;
        }
      }
    }
    return r;
  }

  bool expect_end_pass_ok_ = true;              // each Run's EndPass must succeed
  Status last_end_pass_;                        // what the last Run's EndPass returned
  std::function<void()> before_end_pass_;       // runs between each Run's Sync and its EndPass
  int64_t held_due_ms_ = 0;                     // EmployeeWork::held_due_ms of each Run
  std::map<std::string, queue::Item> applied_;  // by employee
  std::string last_applied_error_;              // set: reading the newest applied item fails

  std::string User(const std::string& employee = "E1") {
    auto users = scim_.FindUsers("externalId", employee);
    return users.size() == 1 ? users[0] : "";
  }

  std::string IdOf(const std::string& employee) {
    std::string u = User(employee);
    size_t at = u.find("\"id\":\"");
    if (at == std::string::npos) return "";
    at += 6;
    return u.substr(at, u.find('"', at) - at);
  }

  bool Active(const std::string& employee = "E1") {
    std::string u = User(employee);
    EXPECT_FALSE(u.empty()) << "no user for " << employee;
    return u.find("\"active\":false") == std::string::npos;
  }

  testing::FakeScimServer scim_;
  ProfileSet profiles_;
  std::unique_ptr<connectors::Fetcher> fetcher_ = connectors::NewRecordedFetcher("{}");
  Metrics metrics_{"test"};
  int entries_ = 0;
  FakeClock clock_;
  const Clock* sync_clock_ = nullptr;  // set: the syncer reads this clock instead of clock_
  scim::SequenceRandom random_{{0.5}};
  scim::MemoryLinkStore links_;
  std::unique_ptr<scim::RateLimiter> limiter_ =
      scim::NewMemoryRateLimiter(scim::RateLimitOptions{0, 60000, 1.0 / 16, 1000}, clock_);
};

// An item queued under a tenant the profile does not serve (before ingest checked tenants, or
// a tenant since removed from the config) is not applied: its scope is not one of the config's.
TEST_F(SyncTest, AnItemOfAnUnconfiguredTenantIsDeadLetteredUnsent) {
  auto syncer = Syncer(true);
  EmployeeWork work;
  work.partition = 0;
  work.profile = "hr";
  work.tenant = "x1";
  work.employee_key = "E1";
  queue::Item item;
  item.profile = "hr";
  item.tenant = "x1";
  item.employee_key = "E1";
  item.event_type = "leave";
  item.payload = "Manager";
  item.occurred_at = "2";
  item.entry_id = "1-0";
  work.items.push_back(item);
  SyncResult r = syncer->Sync(0, work);
  EXPECT_EQ(r.kind, SyncResult::Kind::kDeadLetter);
  EXPECT_NE(r.reason.find("configures no tenants"), std::string::npos) << r.reason;
  EXPECT_EQ(scim_.TotalRequests(), 0);
}

TEST_F(SyncTest, PayloadItemsFoldInVersionOrderIntoOneSync) {
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}).result, "created");
  // Sent out of order: the newest record wins, the suspension in between is kept. The
  // suspension is its own request, first; the record follows.
  SyncResult r = Run(true, {{"hire", "Director", "3"}, {"leave", "Manager", "2"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone) << r.reason;
  EXPECT_EQ(r.result, "suspended");
  EXPECT_EQ(scim_.CountRequests("POST"), 1);
  EXPECT_EQ(scim_.CountRequests("PATCH"), 2);
  std::string u = User();
  EXPECT_NE(u.find("\"title\":\"Director\""), std::string::npos) << u;
  EXPECT_NE(u.find("\"active\":false"), std::string::npos) << u;
}

TEST_F(SyncTest, ALeaversBurstCreatesNoAccount) {
  // Hired and terminated before JumpCloud ever saw the employee: the newest state is terminated.
  SyncResult r =
      Run(true, {{"hire", "Analyst", "1"}, {"hire", "Director", "3"}, {"leave", "Manager", "2"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone) << r.reason;
  EXPECT_EQ(r.result, "absent");
  EXPECT_EQ(scim_.CountRequests("POST"), 0);
  EXPECT_EQ(scim_.user_count(), 0u);
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

// Level-triggered: a burst is one sync of the newest item, but a deferred termination among the
// older items is neither lost (its date ahead: held) nor ignored (its date passed: it lands).
TEST_F(SyncTest, ADeferredTerminationInALevelTriggeredBurstIsHeldOrApplied) {
  ASSERT_EQ(Run(false, {{"hire", "Analyst", ""}}).kind, SyncResult::Kind::kDone);
  const int64_t now_s = clock_.NowMs() / 1000;
  SyncResult ahead =
      Run(false, {{"leave@" + std::to_string(now_s + 3600), "", ""}, {"hire", "Manager", ""}});
  EXPECT_EQ(ahead.kind, SyncResult::Kind::kDone) << ahead.reason;
  ASSERT_EQ(ahead.deferred.size(), 1u);
  EXPECT_EQ(ahead.deferred[0].first, 0u);
  EXPECT_TRUE(Active());

  clock_.AdvanceMs(3'601'000);
  SyncResult due =
      Run(false, {{"leave@" + std::to_string(now_s + 3600), "", ""}, {"hire", "Director", ""}});
  EXPECT_EQ(due.kind, SyncResult::Kind::kDone) << due.reason;
  EXPECT_TRUE(due.deferred.empty());
  EXPECT_FALSE(Active()) << User();
  EXPECT_NE(User().find("\"title\":\"Director\""), std::string::npos) << User();
}

// Factorial: a termination entered for a day ahead shows only in the record read back. The sync
// lands now (the employee is still active) and the item is held until that day, when a fresh read
// suspends the user. A sync that fails is retried as usual, not held until the day.
TEST_F(SyncTest, ATerminationDatedAheadInTheFetchedRecordIsSyncedNowAndLandsOnItsDay) {
  const int64_t ends_s = clock_.NowMs() / 1000 + 86'400;
  const std::string event = "hire~" + std::to_string(ends_s);
  SyncResult now = Run(false, {{"hire", "Analyst", ""}, {event, "Manager", ""}});
  EXPECT_EQ(now.kind, SyncResult::Kind::kDone) << now.reason;
  EXPECT_TRUE(Active());
  EXPECT_NE(User().find("\"title\":\"Manager\""), std::string::npos) << User();
  ASSERT_EQ(now.deferred.size(), 1u);
  EXPECT_EQ(now.deferred[0].first, 1u);
  EXPECT_EQ(now.deferred[0].second, ends_s * 1000);
  EXPECT_EQ(now.rechecks, std::vector<size_t>{1});  // applied now as well

  scim_.InjectFault(testing::Fault::Status(503).On("PATCH"));
  SyncResult failed = Run(false, {{event, "Director", ""}});
  EXPECT_EQ(failed.kind, SyncResult::Kind::kRetry) << failed.result << ": " << failed.reason;
  EXPECT_TRUE(failed.deferred.empty()) << "a failed sync would wait for the termination day";

  clock_.AdvanceMs(86'400'000);
  SyncResult due = Run(false, {{event, "Director", ""}});
  EXPECT_EQ(due.kind, SyncResult::Kind::kDone) << due.reason;
  EXPECT_TRUE(due.deferred.empty());
  EXPECT_FALSE(Active()) << User();
}

// clock_, moved on by step_ms once the SCIM server has answered a request: the sync's first
// exchanges took that long (a slow JumpCloud, a 429 pause every worker shares).
class SlowTargetClock final : public Clock {
 public:
  SlowTargetClock(const FakeClock& base, const testing::FakeScimServer& scim, int64_t step_ms)
      : base_(base), scim_(scim), step_ms_(step_ms) {}
  int64_t NowMs() const override {
    return base_.NowMs() + (scim_.TotalRequests() > 0 ? step_ms_ : 0);
  }

 private:
  const FakeClock& base_;
  const testing::FakeScimServer& scim_;
  int64_t step_ms_;
};

// Seed 610 of the model test: a termination effective in a second is deferred, the updates of
// the same burst are synced without it, and the sync outlasts the date (it waited out a 429
// pause). Written as planned, they would create an active account -- or update one -- for
// someone who has left by then. The job stops before writing and the burst is planned again
// with the termination, which now takes effect: no account for the leaver.
TEST_F(SyncTest, ADeferredTerminationThatFallsDueDuringTheSyncIsNotOvertaken) {
  const int64_t now_ms = clock_.NowMs();
  const std::string date_s = std::to_string(now_ms / 1000 + 1);
  SlowTargetClock slow(clock_, scim_, 2000);
  sync_clock_ = &slow;
  const std::vector<std::tuple<std::string, std::string, std::string>> burst = {
      {"hire", "Analyst", "1"}, {"leave@" + date_s, "Analyst", "2"}, {"hire", "Analyst II", "3"}};
  SyncResult first = Run(true, burst);
  EXPECT_EQ(scim_.CountRequests("POST"), 0) << "an account was created for a leaver: " << User();
  EXPECT_EQ(first.kind, SyncResult::Kind::kRetry) << first.result << ": " << first.reason;
  EXPECT_FALSE(first.count_attempt) << "planning again is no failed attempt";
  ASSERT_EQ(first.deferred.size(), 1u);
  EXPECT_EQ(first.deferred[0].first, 1u);

  // The next pass: the termination is due and lands with the burst.
  sync_clock_ = nullptr;
  clock_.AdvanceMs(2000);
  SyncResult again = Run(true, burst);
  EXPECT_EQ(again.kind, SyncResult::Kind::kDone) << again.reason;
  EXPECT_TRUE(again.deferred.empty());
  EXPECT_EQ(scim_.CountRequests("POST"), 0) << User();
  EXPECT_EQ(scim_.user_count(), 0u);

  // An existing user: the burst's update is not written while the person has left either; the
  // next pass suspends them with the newest attributes.
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}, "E2").kind, SyncResult::Kind::kDone);
  ASSERT_TRUE(Active("E2"));
  const std::string date2_s = std::to_string(clock_.NowMs() / 1000 + 1);
  const std::vector<std::tuple<std::string, std::string, std::string>> burst2 = {
      {"leave@" + date2_s, "Analyst", "2"}, {"hire", "Analyst II", "3"}};
  SlowTargetClock slow2(clock_, scim_, 2000);
  scim_.ClearRequests();
  sync_clock_ = &slow2;
  SyncResult stale = Run(true, burst2, "E2");
  EXPECT_EQ(stale.kind, SyncResult::Kind::kRetry) << stale.result << ": " << stale.reason;
  EXPECT_EQ(scim_.CountRequests("PATCH"), 0) << User("E2");
  sync_clock_ = nullptr;
  clock_.AdvanceMs(2000);
  SyncResult suspended = Run(true, burst2, "E2");
  EXPECT_EQ(suspended.kind, SyncResult::Kind::kDone) << suspended.reason;
  EXPECT_FALSE(Active("E2")) << User("E2");
  EXPECT_NE(User("E2").find("\"title\":\"Analyst II\""), std::string::npos) << User("E2");
}

// The same when the termination is not in the burst: an earlier pass held it in the retry set
// until its date, and this pass's update began before that date (EmployeeWork::held_due_ms). A
// sync that outlasts the date stops before its write and is planned again.
TEST_F(SyncTest, AnUpdateSyncThatOutlastsAnEarlierHeldTerminationStopsBeforeWriting) {
  held_due_ms_ = clock_.NowMs() + 1000;
  SlowTargetClock slow(clock_, scim_, 2000);
  sync_clock_ = &slow;
  SyncResult r = Run(true, {{"hire", "Analyst II", "3"}});
  EXPECT_EQ(scim_.CountRequests("POST"), 0) << "an account was created for a leaver: " << User();
  EXPECT_EQ(r.kind, SyncResult::Kind::kRetry) << r.result << ": " << r.reason;
  EXPECT_FALSE(r.count_attempt);
  // Before the date the update lands as usual.
  sync_clock_ = nullptr;
  held_due_ms_ = clock_.NowMs() + 60'000;
  EXPECT_EQ(Run(true, {{"hire", "Analyst II", "3"}}).result, "created");
}

// The same when the date is in the record read back (fetch.recheck_at): a sync that outlasts
// it is planned again from a fresh read, which says the person has left.
TEST_F(SyncTest, ATerminationDatedInTheFetchedRecordThatFallsDueDuringTheSyncIsReadAgain) {
  const std::string event = "hire~" + std::to_string(clock_.NowMs() / 1000 + 1);
  SlowTargetClock slow(clock_, scim_, 2000);
  sync_clock_ = &slow;
  SyncResult first = Run(false, {{event, "Manager", ""}});
  EXPECT_EQ(scim_.CountRequests("POST"), 0) << "an account was created for a leaver: " << User();
  EXPECT_EQ(first.kind, SyncResult::Kind::kRetry) << first.result << ": " << first.reason;
  EXPECT_FALSE(first.count_attempt);

  sync_clock_ = nullptr;
  clock_.AdvanceMs(2000);
  SyncResult again = Run(false, {{event, "Manager", ""}});
  EXPECT_EQ(again.kind, SyncResult::Kind::kDone) << again.reason;
  EXPECT_EQ(scim_.user_count(), 0u) << User();
}

TEST_F(SyncTest, AnOlderVersionThanTheAppliedOneIsDropped) {
  // No Versions store here: within one batch, ordering is by version.
  SyncResult r = Run(true, {{"hire", "New", "5"}, {"hire", "Old", "4"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone);
  EXPECT_NE(User().find("\"title\":\"New\""), std::string::npos) << User();
}

TEST_F(SyncTest, AnIgnoredItemSaysWhy) {
  for (bool carries : {true, false}) {
    SyncResult r = Run(carries, {{"payroll.run", "", "1"}});
    EXPECT_EQ(r.kind, SyncResult::Kind::kDone);
    EXPECT_EQ(r.result, "ignored");
    EXPECT_FALSE(r.reason.empty());
  }
}

TEST_F(SyncTest, TheWrongKeyPauses) {
  scim_.SetApiKey("rotated");
  SyncResult r = Run(true, {{"hire", "Analyst", "1"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kPause) << r.reason;
  EXPECT_EQ(scim_.user_count(), 0u);
}

TEST_F(SyncTest, TheAuthProbeUsesAnEndpointThatNeedsTheKey) {
  // Discovery answers without the key (or not at all): only a request that needs the key says
  // whether the key is good, or a bad key pauses and resumes all work every few seconds.
  for (bool has_config : {true, false}) {
    testing::FakeScimServer server(
        {.api_key = "rotated", .service_provider_config = has_config, .public_discovery = true});
    ASSERT_TRUE(server.Start());
    config::TargetOptions target;
    target.base_url = server.base_url();
    target.max_requests_per_second = 0;
    SyncerDeps deps;
    deps.profiles = &profiles_;
    deps.fetcher = fetcher_.get();
    deps.limiter = limiter_.get();
    deps.links = &links_;
    deps.clock = &clock_;
    deps.random = &random_;
    ProfileSyncer syncer(target, config::RetryOptions{}, 1, deps);
    syncer.SetApiKey("test-key");
    Status probe = syncer.Probe(0);
    ASSERT_FALSE(probe.ok()) << "a refused key passed the probe (ServiceProviderConfig "
                             << (has_config ? "public" : "404") << ")";
    EXPECT_EQ(probe.error().kind, ErrorKind::kAuth) << probe.error().message;
    syncer.SetApiKey("rotated");
    probe = syncer.Probe(0);
    EXPECT_TRUE(probe.ok()) << probe.error().message;
    EXPECT_EQ(server.user_count(), 0u);  // a probe reads, never writes
  }
}

// With a real Redis: the applied versions across passes, and the mass-suspension guard.
class SyncRedisTest : public SyncTest {
 protected:
  SyncRedisTest() : pool_(RedisOptions(redis_.url()), "") {}

  static config::RedisOptions RedisOptions(const std::string& url) {
    config::Config cfg;
    config::LoadString("redis: {url: \"" + url + "\", connect_timeout_ms: 500}\n", "test.yaml",
                       &cfg);
    return cfg.redis;
  }

  void SetUp() override {
    SyncTest::SetUp();
    ASSERT_TRUE(redis_.Start());
  }

  void AddDeps(SyncerDeps& deps) override {
    deps.versions = &versions_;
    deps.guard = &guard_;
  }

  std::string Metric(const std::string& line) {
    std::string text = metrics_.Render();
    return text.find("\n" + line + "\n") != std::string::npos ? line : text;
  }

  static config::GuardOptions Guard() {
    config::GuardOptions o;
    o.max_suspends = 3;
    o.max_suspend_percent = 0;
    o.window_s = 3600;
    return o;
  }

  scimsync::testing::RedisServer redis_;
  redis::Pool pool_;
  Versions versions_{pool_, "st"};
  SuspensionGuard guard_{pool_, "st", Guard(), clock_};
};

// Monday: a termination effective Friday is entered (deferred). Tuesday: an update raises the
// applied version. Friday: the termination must land, and Tuesday's title stay.
TEST_F(SyncRedisTest, ADeferredTerminationLandsAfterALaterUpdate) {
  const int64_t monday_ms = clock_.NowMs();
  const int64_t day = 86'400'000;
  const std::string friday_s = std::to_string((monday_ms + 4 * day) / 1000);
  ASSERT_EQ(Run(true, {{"hire", "Analyst", std::to_string(monday_ms - day)}}).kind,
            SyncResult::Kind::kDone);
  SyncResult entered = Run(true, {{"leave@" + friday_s, "Analyst", std::to_string(monday_ms)}});
  ASSERT_EQ(entered.deferred.size(), 1u);
  EXPECT_TRUE(Active());

  clock_.AdvanceMs(day);
  ASSERT_EQ(Run(true, {{"hire", "Manager", std::to_string(monday_ms + day)}}).kind,
            SyncResult::Kind::kDone);

  clock_.AdvanceMs(3 * day + 1000);
  SyncResult due = Run(true, {{"leave@" + friday_s, "Analyst", std::to_string(monday_ms)}});
  EXPECT_EQ(due.kind, SyncResult::Kind::kDone) << due.reason;
  EXPECT_TRUE(due.deferred.empty());
  EXPECT_EQ(due.action, "suspend") << due.result << ": " << due.reason;
  EXPECT_FALSE(Active()) << User();
  EXPECT_NE(User().find("\"title\":\"Manager\""), std::string::npos) << User();

  // Due in the same pass as a newer update: the update's record, then the suspension.
  ASSERT_EQ(Run(true, {{"rehire", "Manager", std::to_string(monday_ms + 5 * day)}}, "E2").kind,
            SyncResult::Kind::kDone);
  SyncResult both = Run(true,
                        {{"leave@" + friday_s, "Analyst", std::to_string(monday_ms)},
                         {"hire", "Director", std::to_string(monday_ms + 5 * day + 1)}},
                        "E2");
  EXPECT_EQ(both.kind, SyncResult::Kind::kDone) << both.reason;
  EXPECT_FALSE(Active("E2")) << User("E2");
  EXPECT_NE(User("E2").find("\"title\":\"Director\""), std::string::npos) << User("E2");
}

TEST_F(SyncRedisTest, AnItemOlderThanTheAppliedVersionIsDroppedWithAReasonAndCounted) {
  ASSERT_EQ(Run(true, {{"hire", "New", "5"}}).kind, SyncResult::Kind::kDone);
  SyncResult r = Run(true, {{"hire", "Old", "4"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone);
  EXPECT_EQ(r.result, "dropped");
  EXPECT_NE(r.reason.find("older than the version already applied"), std::string::npos) << r.reason;
  EXPECT_NE(User().find("\"title\":\"New\""), std::string::npos) << User();
  const std::string line =
      "scimsync_items_dropped_total{profile=\"hr\",reason=\"older_than_applied\"} 1";
  EXPECT_EQ(Metric(line), line);
}

// One event dated a year ahead (or milliseconds where the sender used seconds) must not make
// every later event of the employee, its termination included, "older".
TEST_F(SyncRedisTest, AFutureDatedEventCannotOutrankLaterEvents) {
  const int64_t now = clock_.NowMs();
  const int64_t year = int64_t{365} * 86'400'000;
  ASSERT_EQ(Run(true, {{"hire", "Analyst", std::to_string(now + year)}}).kind,
            SyncResult::Kind::kDone);
  EXPECT_NE(User().find("\"title\":\"Analyst\""), std::string::npos) << User();
  const std::string line = "scimsync_future_versions_total{profile=\"hr\",what=\"item_clamped\"} 1";
  EXPECT_EQ(Metric(line), line);

  clock_.AdvanceMs(60'000);
  SyncResult leave = Run(true, {{"leave", "Analyst", std::to_string(now + 30'000)}});
  EXPECT_EQ(leave.kind, SyncResult::Kind::kDone) << leave.reason;
  EXPECT_FALSE(Active()) << User();

  // Seconds: the same rule in the sender's unit.
  ASSERT_EQ(Run(true, {{"hire", "Analyst", std::to_string((now + year) / 1000)}}, "E2").kind,
            SyncResult::Kind::kDone);
  SyncResult leave2 = Run(true, {{"leave", "Analyst", std::to_string(now / 1000 + 90)}}, "E2");
  EXPECT_EQ(leave2.kind, SyncResult::Kind::kDone) << leave2.reason;
  EXPECT_FALSE(Active("E2")) << User("E2");
}

TEST_F(SyncRedisTest, AFutureVersionStoredEarlierIsDisregarded) {
  // Stored before the clamp existed: a year ahead.
  const int64_t now = clock_.NowMs();
  ASSERT_EQ(Run(true, {{"hire", "Analyst", std::to_string(now)}}).kind, SyncResult::Kind::kDone);
  ASSERT_TRUE(versions_
                  .Raise(0,
                         "hr\x1f"
                         "E1",
                         std::to_string(now + int64_t{365} * 86'400'000))
                  .ok());
  SyncResult leave = Run(true, {{"leave", "Analyst", std::to_string(now + 1000)}});
  EXPECT_EQ(leave.kind, SyncResult::Kind::kDone) << leave.reason;
  EXPECT_FALSE(Active()) << User();
}

// No account for a leaver: a termination for an unknown employee creates nothing, and a later
// update for a terminated employee whose JumpCloud user was deleted creates nothing either.
TEST_F(SyncRedisTest, NoAccountIsCreatedForALeaver) {
  SyncResult r = Run(true, {{"leave", "Analyst", "1"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone) << r.reason;
  EXPECT_EQ(r.result, "absent");
  EXPECT_EQ(scim_.CountRequests("POST"), 0);

  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}, "E2").kind, SyncResult::Kind::kDone);
  ASSERT_EQ(Run(true, {{"leave", "Analyst", "2"}}, "E2").kind, SyncResult::Kind::kDone);
  ASSERT_FALSE(Active("E2"));
  ASSERT_TRUE(scim_.RemoveUser(IdOf("E2")));  // an admin deleted the suspended user
  const int posts = scim_.CountRequests("POST");
  SyncResult later = Run(true, {{"hire", "Analyst II", "3"}}, "E2");
  EXPECT_EQ(later.kind, SyncResult::Kind::kDone) << later.reason;
  EXPECT_EQ(scim_.CountRequests("POST"), posts) << User("E2");
  EXPECT_EQ(scim_.FindUsers("externalId", "E2").size(), 0u);

  // A rehire says otherwise: the account comes back, active.
  SyncResult back = Run(true, {{"rehire", "Analyst II", "4"}}, "E2");
  EXPECT_EQ(back.kind, SyncResult::Kind::kDone) << back.reason;
  EXPECT_TRUE(Active("E2"));
}

// The pass records a leaver in two places: the applied versions (an older item is dropped) and
// the guard's set (no account for a leaver). When only the versions were stored -- Redis went
// away between the two writes -- the redelivered burst dropped its termination as older and the
// update created an active account (model seed 693). A pass whose leavers cannot be recorded
// stores no versions either: the burst comes back whole.
TEST_F(SyncRedisTest, ALeaverStaysALeaverWhenThePassCouldNotRecordIt) {
  // The guard's set cannot be written when the pass ends (a key of the wrong type stands in for
  // a lost connection).
  before_end_pass_ = [this] { redis_.Cli({"SET", "st:guard:suspended", "x"}); };
  expect_end_pass_ok_ = false;
  SyncResult first = Run(true, {{"leave", "Analyst", "1"}, {"hire", "Analyst", "2"}});
  EXPECT_EQ(first.result, "absent") << first.reason;
  EXPECT_FALSE(last_end_pass_.ok());
  EXPECT_EQ(scim_.CountRequests("POST"), 0);

  // Not acknowledged, the items come back together once Redis answers.
  before_end_pass_ = nullptr;
  ASSERT_EQ(redis_.Cli({"DEL", "st:guard:suspended"}), "1");
  expect_end_pass_ok_ = true;
  SyncResult again = Run(true, {{"leave", "Analyst", "1"}, {"hire", "Analyst", "2"}});
  EXPECT_EQ(again.kind, SyncResult::Kind::kDone) << again.reason;
  EXPECT_EQ(scim_.CountRequests("POST"), 0) << User();
  EXPECT_EQ(scim_.user_count(), 0u) << User();
}

TEST_F(SyncRedisTest, ALeaverRehiredGetsAnAccount) {
  // Hired and terminated in one burst (no account), then rehired and updated.
  EXPECT_EQ(Run(true, {{"hire", "Analyst", "1"}, {"leave", "Analyst", "2"}}).result, "absent");
  SyncResult r = Run(true, {{"rehire", "Manager", "3"}});
  EXPECT_EQ(r.result, "created") << r.reason;
  EXPECT_TRUE(Active());
  r = Run(true, {{"hire", "Director", "4"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone) << r.reason;
  EXPECT_TRUE(Active());
  EXPECT_NE(User().find("Director"), std::string::npos) << User();
}

// Access is ordered against other status events, not against attribute updates: a termination
// delivered after a newer update (an HRIS retry after a timeout) still suspends, and the newer
// attributes stay.
TEST_F(SyncRedisTest, ALateTerminationOlderThanAnAppliedUpdateStillSuspends) {
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}).result, "created");
  ASSERT_EQ(Run(true, {{"hire", "Analyst II", "3"}}).result, "updated");
  SyncResult late = Run(true, {{"leave", "Analyst", "2"}});
  EXPECT_EQ(late.kind, SyncResult::Kind::kDone) << late.result << ": " << late.reason;
  EXPECT_EQ(late.action, "suspend") << late.result << ": " << late.reason;
  EXPECT_FALSE(Active()) << User();
  EXPECT_NE(User().find("\"title\":\"Analyst II\""), std::string::npos) << User();
  // Delivered again: its status is no newer than the applied one.
  EXPECT_EQ(Run(true, {{"leave", "Analyst", "2"}}).result, "dropped");

  // In one burst with a newer update: the update's record, suspended.
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}, "E2").result, "created");
  ASSERT_EQ(Run(true, {{"hire", "Analyst II", "3"}}, "E2").result, "updated");
  SyncResult both = Run(true, {{"leave", "Analyst", "2"}, {"hire", "Director", "4"}}, "E2");
  EXPECT_EQ(both.kind, SyncResult::Kind::kDone) << both.result << ": " << both.reason;
  EXPECT_FALSE(Active("E2")) << User("E2");
  EXPECT_NE(User("E2").find("\"title\":\"Director\""), std::string::npos) << User("E2");
}

// The same for a rehire: a returning employee delivered after a newer update gets access back
// (only `active` is written: the newer attributes stay), or an account when none exists.
TEST_F(SyncRedisTest, ALateRehireOlderThanAnAppliedUpdateStillReactivates) {
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}).result, "created");
  ASSERT_EQ(Run(true, {{"leave", "Analyst", "2"}}).kind, SyncResult::Kind::kDone);
  ASSERT_EQ(Run(true, {{"hire", "Analyst II", "4"}}).kind, SyncResult::Kind::kDone);
  ASSERT_FALSE(Active()) << User();
  SyncResult late = Run(true, {{"rehire", "Analyst", "3"}});
  EXPECT_EQ(late.kind, SyncResult::Kind::kDone) << late.result << ": " << late.reason;
  EXPECT_TRUE(Active()) << User();
  EXPECT_NE(User().find("\"title\":\"Analyst II\""), std::string::npos) << User();

  // Terminated before JumpCloud saw the employee (no account), updated, then the late rehire:
  // the account is created, active.
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}, {"leave", "Analyst", "2"}}, "E2").result,
            "absent");
  ASSERT_EQ(Run(true, {{"hire", "Analyst II", "4"}}, "E2").kind, SyncResult::Kind::kDone);
  ASSERT_EQ(scim_.FindUsers("externalId", "E2").size(), 0u);
  SyncResult back = Run(true, {{"rehire", "Analyst", "3"}}, "E2");
  EXPECT_EQ(back.result, "created") << back.reason;
  EXPECT_TRUE(Active("E2")) << User("E2");
  // With the newest record applied, not the rehire's older one (the update's version is
  // applied already: nothing would send its title later).
  EXPECT_NE(User("E2").find("\"title\":\"Analyst II\""), std::string::npos) << User("E2");
}

// When the newest applied record cannot be read, the late rehire waits (a retry that does not
// count as an attempt) instead of creating the account from its older record.
TEST_F(SyncRedisTest, ALateRehireWaitsWhenTheNewestAppliedRecordCannotBeRead) {
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}, {"leave", "Analyst", "2"}}).result, "absent");
  ASSERT_EQ(Run(true, {{"hire", "Analyst II", "4"}}).kind, SyncResult::Kind::kDone);
  last_applied_error_ = "connection refused";
  SyncResult r = Run(true, {{"rehire", "Analyst", "3"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kRetry) << r.result << ": " << r.reason;
  EXPECT_FALSE(r.count_attempt);
  EXPECT_NE(r.reason.find("connection refused"), std::string::npos) << r.reason;
  EXPECT_EQ(scim_.FindUsers("externalId", "E1").size(), 0u);
  last_applied_error_.clear();
  EXPECT_EQ(Run(true, {{"rehire", "Analyst", "3"}}).result, "created");
  EXPECT_NE(User().find("\"title\":\"Analyst II\""), std::string::npos) << User();
}

// A termination older than an applied rehire is still dropped: the rehire is the newer status.
TEST_F(SyncRedisTest, ALateTerminationOlderThanAnAppliedRehireIsDropped) {
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}).result, "created");
  ASSERT_EQ(Run(true, {{"leave", "Analyst", "2"}}).kind, SyncResult::Kind::kDone);
  ASSERT_EQ(Run(true, {{"rehire", "Analyst", "4"}}).kind, SyncResult::Kind::kDone);
  ASSERT_EQ(Run(true, {{"hire", "Analyst II", "5"}}).kind, SyncResult::Kind::kDone);
  ASSERT_TRUE(Active()) << User();
  SyncResult late = Run(true, {{"leave", "Analyst", "3"}});
  EXPECT_EQ(late.kind, SyncResult::Kind::kDone);
  EXPECT_EQ(late.result, "dropped") << late.reason;
  EXPECT_TRUE(Active()) << User();
  EXPECT_NE(User().find("\"title\":\"Analyst II\""), std::string::npos) << User();
  // Nor does a late rehire undo a newer termination.
  ASSERT_EQ(Run(true, {{"leave", "Analyst II", "6"}}).kind, SyncResult::Kind::kDone);
  EXPECT_EQ(Run(true, {{"rehire", "Analyst", "4"}}).result, "dropped");
  EXPECT_FALSE(Active()) << User();
}

// What the history, the log and the metrics say of a termination: "suspended", whether it was a
// bare suspension or a record with active=false, and "unchanged" only when nothing was written.
TEST_F(SyncRedisTest, ATerminationIsReportedAsSuspended) {
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}).result, "created");
  SyncResult r = Run(true, {{"leave", "Analyst", "2"}});
  EXPECT_EQ(r.kind, SyncResult::Kind::kDone) << r.reason;
  EXPECT_EQ(r.result, "suspended") << r.action << ": " << r.reason;
  EXPECT_FALSE(Active()) << User();
  // A termination with new attributes: still "suspended" (active=false went alone, first).
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}, "E2").result, "created");
  r = Run(true, {{"leave", "Director", "2"}}, "E2");
  EXPECT_EQ(r.result, "suspended") << r.action << ": " << r.reason;
  EXPECT_NE(User("E2").find("Director"), std::string::npos) << User("E2");
}

// The guard counts employees: one termination retried after 503s is one suspension.
TEST_F(SyncRedisTest, TheGuardCountsEmployeesNotAttempts) {
  for (const char* e : {"E1", "E2", "E3"}) {
    ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}, e).kind, SyncResult::Kind::kDone);
  }
  scim_.InjectFault(testing::Fault::Status(503).On("PATCH").Times(3));
  for (int attempt = 0; attempt < 3; ++attempt) {
    clock_.AdvanceMs(1000);  // the retry's backoff
    SyncResult r = Run(true, {{"leave", "Analyst", "2"}}, "E1");
    EXPECT_EQ(r.kind, SyncResult::Kind::kRetry) << r.result << ": " << r.reason;
  }
  EXPECT_EQ(Run(true, {{"leave", "Analyst", "2"}}, "E1").kind, SyncResult::Kind::kDone);
  SyncResult other = Run(true, {{"leave", "Analyst", "2"}}, "E2");
  EXPECT_EQ(other.kind, SyncResult::Kind::kDone) << other.result << ": " << other.reason;
  EXPECT_FALSE(Active("E2"));
  auto state = guard_.State();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->recent, 2);
  EXPECT_FALSE(state->tripped);
  // The limit still holds for distinct employees: a fourth is held.
  ASSERT_EQ(Run(true, {{"hire", "Analyst", "1"}}, "E4").kind, SyncResult::Kind::kDone);
  EXPECT_EQ(Run(true, {{"leave", "Analyst", "2"}}, "E3").kind, SyncResult::Kind::kDone);
  EXPECT_EQ(Run(true, {{"leave", "Analyst", "2"}}, "E4").kind, SyncResult::Kind::kHold);
}

// What a worker pass costs Redis, watched on a real server with MONITOR: per employee one read
// (the applied versions with the guard's view, pipelined), per pass a few scripts; the history,
// the applied items and the acknowledgements are written by one of them. Per-employee history
// writes and a second copy of the applied item sent as commands of their own cost the end-to-end
// bench 15% (bench/README.md); this keeps them from coming back.
TEST_F(SyncRedisTest, APassCostsRedisOneReadPerEmployeeAndAFewScripts) {
  constexpr int kEmployees = 30;
  auto q =
      queue::NewRedisQueue(scimsync::testing::RedisOptionsFor(redis_.url(), 1, "st"), "", clock_);
  std::vector<queue::Item> items;
  for (int k = 0; k < 3; ++k) {
    for (int e = 0; e < kEmployees; ++e) {
      queue::Item item =
          scimsync::testing::MinimalItem("E" + std::to_string(e), "d" + std::to_string(e * 10 + k));
      item.event_type = "hire";
      item.payload = "Title " + std::to_string(k);
      item.occurred_at = std::to_string(1000 + k);
      item.received_at_ms = clock_.NowMs();
      items.push_back(item);
    }
  }
  ASSERT_TRUE(q->EnqueueBatch(items, 0).ok());
  auto syncer = Syncer(true);
  History history(pool_, "st", config::HistoryOptions{});
  auto recording = NewRecordingSyncer(*syncer, history, clock_);
  WorkerOptions o;
  o.threads = 1;
  o.consumer = "w";
  WorkerPool workers(
      o, *q, *recording, clock_, [](int) { return true; }, [](int) {});

  scimsync::testing::TempDir dir;
  scimsync::testing::Process monitor;
  ASSERT_TRUE(monitor.Start({"redis-cli", "-p", std::to_string(redis_.port()), "monitor"},
                            dir.File("monitor.log")));
  auto wait_for = [&](const std::string& text) {
    for (int i = 0; i < 500; ++i) {
      if (scimsync::testing::ReadFile(dir.File("monitor.log")).find(text) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  ASSERT_TRUE(wait_for("OK")) << "redis-cli monitor did not start";
  EXPECT_EQ(workers.RunOnce(), 3 * kEmployees);
  redis_.Cli({"ECHO", "end-of-pass"});
  ASSERT_TRUE(wait_for("end-of-pass"));
  monitor.Signal(SIGTERM);

  // Per command: sent by the daemon (a round trip, or a share of a pipeline) or run by a script.
  std::map<std::string, int> sent, scripted;
  std::istringstream lines(scimsync::testing::ReadFile(dir.File("monitor.log")));
  std::string line;
  while (std::getline(lines, line)) {
    const size_t quote = line.find('"');
    if (quote == std::string::npos || line.find("end-of-pass") != std::string::npos) continue;
    const std::string cmd = line.substr(quote + 1, line.find('"', quote + 1) - quote - 1);
    (line.find(" lua] ") != std::string::npos ? scripted : sent)[cmd]++;
  }
  std::string all;
  for (const auto& [cmd, n] : sent) all += cmd + "=" + std::to_string(n) + " ";
  all += "| scripts ran: ";
  for (const auto& [cmd, n] : scripted) all += cmd + "=" + std::to_string(n) + " ";

  EXPECT_EQ(*q->Depth(0), 0) << all;
  EXPECT_EQ(scim_.FindUsers("externalId", "E7").size(), 1u);
  int commands = 0;
  for (const auto& [cmd, n] : sent) commands += n;
  // Per employee: the applied versions (HMGET) and the guard's view (SISMEMBER, the same round
  // trip). Per pass: the retries, the claim, the due retries, the read, the versions and the ack
  // script (each sent twice the first time: EVALSHA, then EVAL when Redis does not know it).
  EXPECT_EQ(sent["HMGET"], kEmployees) << all;
  EXPECT_LE(sent["SISMEMBER"], kEmployees) << all;
  EXPECT_LE(commands, 2 * kEmployees + 10) << all;
  // Nothing per employee is written outside the pass's scripts, nor twice.
  for (const char* cmd : {"LPUSH", "LTRIM", "EXPIRE", "SET", "HSET", "XACK"}) {
    EXPECT_EQ(sent[cmd], 0) << cmd << ": " << all;
  }
  EXPECT_EQ(scripted["LPUSH"], kEmployees) << all;
  EXPECT_EQ(scripted["LTRIM"], 0) << "short lists need no trim: " << all;
  EXPECT_EQ(scripted["SET"], 0) << "the applied item is kept once: " << all;

  // And what was written is what `scimsyncd employee` and `scimsyncd sync` read.
  auto recs = history.Read("hr", "", "E7", 50, clock_.NowMs());
  ASSERT_TRUE(recs.ok());
  ASSERT_EQ(recs->size(), 3u);
  EXPECT_EQ(recs->back().outcome, "done");
  auto last = q->LastApplied(0, "hr", "", "E7");
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->payload, "Title 2");
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
}  // namespace scimsync::workers
