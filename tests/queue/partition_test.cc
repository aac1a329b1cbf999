#include <gtest/gtest.h>

#include "scimsync/queue/queue.h"

namespace scimsync::queue {
namespace {

// Golden values: changing the hash re-homes every employee and breaks per-employee ordering for
// items already queued, so these must never change. Computed independently (FNV-1a 64 over
// profile, 0x00, employee key).
TEST(PartitionOf, GoldenValues) {
  EXPECT_EQ(PartitionOf("hr", "E1", 16), 11);
  EXPECT_EQ(PartitionOf("hr", "E2", 16), 14);
  EXPECT_EQ(PartitionOf("hr", "", 16), 13);
  EXPECT_EQ(PartitionOf("", "", 16), 15);
  EXPECT_EQ(PartitionOf("bamboo", "12345", 16), 10);
  EXPECT_EQ(PartitionOf("hr", "E1", 7), 2);
  EXPECT_EQ(PartitionOf("generic", "ada@example.com", 4096), 3023);
}

TEST(PartitionOf, OnePartitionIsAlwaysZero) {
  EXPECT_EQ(PartitionOf("hr", "E1", 1), 0);
  EXPECT_EQ(PartitionOf("hr", "E1", 0), 0);
}

TEST(PartitionOf, ProfileAndKeyAreSeparated) {
  // Without the 0 byte, ("ab","c") and ("a","bc") would always share a partition.
  int differing = 0;
  for (int n = 2; n < 40; ++n) {
    if (PartitionOf("ab", "c", n) != PartitionOf("a", "bc", n)) ++differing;
  }
  EXPECT_GT(differing, 20);
}

TEST(PartitionOf, SpreadsEmployees) {
  std::vector<int> counts(16);
  for (int i = 0; i < 16000; ++i) ++counts[PartitionOf("hr", "E" + std::to_string(i), 16)];
  for (int c : counts) {
    EXPECT_GT(c, 800);
    EXPECT_LT(c, 1200);
  }
}

}  // namespace
}  // namespace scimsync::queue
