#include "scimsync/log.h"

#include <gtest/gtest.h>

#include <string>

namespace scimsync::log {
namespace {

std::string g_lines;
void Capture(std::string_view line) { g_lines.append(line); }

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_lines.clear();
    SetSink(&Capture);
    SetLevel(Level::kInfo);
  }
  void TearDown() override { SetSink(nullptr); }
};

TEST_F(LogTest, OneJsonObjectPerLineWithContext) {
  Info("webhook", {{"profile", "hr"}, {"status", 202}, {"ok", true}});
  ASSERT_FALSE(g_lines.empty());
  EXPECT_EQ(g_lines.back(), '\n');
  EXPECT_EQ(g_lines.find('\n'), g_lines.size() - 1);
  EXPECT_EQ(g_lines.rfind("{\"ts\":\"", 0), 0u);
  EXPECT_NE(g_lines.find("\"level\":\"info\",\"msg\":\"webhook\",\"profile\":\"hr\","
                         "\"status\":202,\"ok\":true}"),
            std::string::npos)
      << g_lines;
}

TEST_F(LogTest, LevelFilters) {
  Debug("hidden");
  EXPECT_TRUE(g_lines.empty());
  SetLevel(Level::kDebug);
  Debug("shown");
  EXPECT_NE(g_lines.find("shown"), std::string::npos);
}

TEST_F(LogTest, ParseLevel) {
  Level l;
  EXPECT_TRUE(ParseLevel("warning", &l));
  EXPECT_EQ(l, Level::kWarn);
  EXPECT_FALSE(ParseLevel("loud", &l));
}

}  // namespace
}  // namespace scimsync::log
