// What the reconciliation's files share (daemon/src/reconcile_internal.h): the options the
// command and the schedule both build from the config (SCAN patterns: tests/redis/keys_test.cc).
#include <gtest/gtest.h>

#include "reconcile_internal.h"

namespace scimsync::daemon {
namespace {

TEST(ReconcileOptionsFor, EveryConfiguredSettingReachesTheReconciler) {
  ScheduledProfile sp;
  sp.name = "hr";
  sp.reconcile.orphans = "suspend";
  sp.reconcile.max_shrink_percent = 25;
  sp.guard.max_suspends = 7;
  sp.guard.max_suspend_percent = 3.5;
  sp.multi_scope = true;
  sp.scope_prefix = "acme";
  sp.follow_user_name = false;
  ReconcilerOptions o = OptionsFor(sp, "prod", 2500, {"bamboo", "hibob/eu"});
  EXPECT_EQ(o.key_prefix, "prod");
  EXPECT_EQ(o.scim_list.timeout_ms, 2500);
  EXPECT_EQ(o.orphans, OrphanPolicy::kSuspend);
  EXPECT_EQ(o.max_shrink_percent, 25);
  EXPECT_EQ(o.max_suspends, 7);
  EXPECT_EQ(o.max_suspend_percent, 3.5);
  EXPECT_TRUE(o.multi_scope);
  EXPECT_EQ(o.scope_prefix, "acme");
  EXPECT_FALSE(o.follow_user_name);
  EXPECT_EQ(o.foreign_scopes, (std::vector<std::string>{"bamboo", "hibob/eu"}));
  // Flags of one command line, never of the config.
  EXPECT_FALSE(o.confirm);
  EXPECT_FALSE(o.allow_shrink);

  sp.reconcile.orphans = "report";
  EXPECT_EQ(OptionsFor(sp, "prod", 2500, {}).orphans, OrphanPolicy::kReport);
}

TEST(ReconcileErrorJson, AFailedRunIsStillOneObjectOnStdout) {
  EXPECT_EQ(FormatErrorJson("listing \"x\" failed\n", 69),
            "{\"error\":\"listing \\\"x\\\" failed\\n\",\"exit_code\":69}\n");
}

}  // namespace
}  // namespace scimsync::daemon
