// The daemon's start/stop order with fake components (Lifecycle), and the SIGHUP handler
// (Reloader) against config files on disk: what is applied and what is refused.
#include "lifecycle.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "reload.h"
#include "test_support.h"

namespace scimsync::daemon {
namespace {

// Components named "1".."n" that record their calls; `fail` names the one whose start fails.
struct Recorder {
  std::vector<std::string> calls;
  void AddTo(Lifecycle& lifecycle, int n, int fail = 0) {
    for (int k = 1; k <= n; ++k) {
      const std::string name = std::to_string(k);
      lifecycle.Add(
          name,
          [this, name, k, fail]() -> Status {
            calls.push_back("start " + name);
            if (k == fail) return Error::Invalid("cannot listen on 127.0.0.1:8080: in use");
            return {};
          },
          [this, name] { calls.push_back("stop " + name); });
    }
  }
};

using Calls = std::vector<std::string>;

TEST(LifecycleTest, StartsInTheOrderAddedAndStopsInReverse) {
  Recorder r;
  Lifecycle lifecycle;
  r.AddTo(lifecycle, 3);
  ASSERT_TRUE(lifecycle.StartAll().ok());
  EXPECT_EQ(r.calls, (Calls{"start 1", "start 2", "start 3"}));
  EXPECT_EQ(lifecycle.running(), (Calls{"1", "2", "3"}));
  r.calls.clear();
  lifecycle.StopAll();
  EXPECT_EQ(r.calls, (Calls{"stop 3", "stop 2", "stop 1"}));
  EXPECT_TRUE(lifecycle.running().empty());
}

// Component k fails: k-1 .. 1 are stopped in that order, k is not stopped (it did not start),
// nothing after k is touched, and k's error comes back as it was (it names the setting).
TEST(LifecycleTest, AFailedStartStopsWhatStartedInReverseAndNothingElse) {
  for (int fail = 1; fail <= 4; ++fail) {
    SCOPED_TRACE("component " + std::to_string(fail) + " fails");
    Recorder r;
    Lifecycle lifecycle;
    r.AddTo(lifecycle, 4, fail);
    Status s = lifecycle.StartAll();
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().message, "cannot listen on 127.0.0.1:8080: in use");
    Calls want;
    for (int k = 1; k <= fail; ++k) want.push_back("start " + std::to_string(k));
    for (int k = fail - 1; k >= 1; --k) want.push_back("stop " + std::to_string(k));
    EXPECT_EQ(r.calls, want);
    EXPECT_TRUE(lifecycle.running().empty());
    // Nothing is stopped twice, also when the owner unwinds.
    r.calls.clear();
    lifecycle.StopAll();
    EXPECT_TRUE(r.calls.empty());
  }
}

TEST(LifecycleTest, StopsOnceAndTheDestructorStopsWhatStillRuns) {
  Recorder r;
  {
    Lifecycle lifecycle;
    r.AddTo(lifecycle, 2);
    // A check without a stop (the daemon's Redis ping) is skipped when stopping.
    lifecycle.Add("check", [&r]() -> Status {
      r.calls.push_back("start check");
      return {};
    });
    ASSERT_TRUE(lifecycle.StartAll().ok());
    r.calls.clear();
  }
  EXPECT_EQ(r.calls, (Calls{"stop 2", "stop 1"}));
}

// The reload handler, with the files a SIGHUP re-reads.
class ReloaderTest : public ::testing::Test {
 protected:
  void Write(const std::string& profiles) {
    testing::WriteFile(file_, "target: {dry_run: true}\nprofiles:\n" + profiles);
  }
  bool Reload() {
    Reloader reloader(file_, [this](Settings& fresh) { applied_.push_back(std::move(fresh)); });
    return reloader.Reload();
  }
  testing::TempDir dir_;
  const std::string file_ = dir_.File("scimsync.yaml");
  std::vector<Settings> applied_;
};

TEST_F(ReloaderTest, AppliesTheProfilesWithTheirSecrets) {
  setenv("RELOADER_TEST_SECRET", "s3cret", 1);
  Write(
      "  - {name: hr, connector: generic, secret_env: RELOADER_TEST_SECRET}\n"
      "  - {name: hr2, connector: generic, secret_env: RELOADER_TEST_SECRET}\n");
  EXPECT_TRUE(Reload());
  ASSERT_EQ(applied_.size(), 1u);
  ASSERT_EQ(applied_[0].active.size(), 2u);
  EXPECT_EQ(applied_[0].active.at("hr2").secrets, std::vector<std::string>{"s3cret"});
  EXPECT_EQ(applied_[0].api_key, "dry-run");
  EXPECT_EQ(applied_[0].profiles.count("hr2"), 1u);
}

TEST_F(ReloaderTest, RefusesAFileWithProblemsOrASecretItCannotReadAndAppliesNothing) {
  unsetenv("RELOADER_TEST_UNSET");
  Write("  - {name: hr, connector: no-such-connector, secret_env: RELOADER_TEST_SECRET}\n");
  EXPECT_FALSE(Reload());
  Write("  - {name: hr, connector: generic, secret_env: RELOADER_TEST_UNSET}\n");
  EXPECT_FALSE(Reload());
  Settings s;
  ASSERT_TRUE(LoadSettings(file_, &s));
  Status resolved = ResolveSecrets(&s);
  ASSERT_FALSE(resolved.ok());
  EXPECT_NE(resolved.error().message.find("profile 'hr'"), std::string::npos)
      << resolved.error().message;
  EXPECT_TRUE(applied_.empty());
}

}  // namespace
}  // namespace scimsync::daemon
