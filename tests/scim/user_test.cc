#include "scimsync/scim/user.h"

#include <gtest/gtest.h>

#include <string>

namespace scimsync::scim {
namespace {

User Valid() {
  User u;
  u.external_id = "E1";
  u.user_name = "jane.doe";
  u.email = "jane.doe@example.com";
  return u;
}

std::string Fields(const std::vector<ValidationProblem>& problems) {
  std::string out;
  for (const auto& p : problems) out += (out.empty() ? "" : ",") + p.field;
  return out;
}

TEST(Validate, AcceptsAValidUser) { EXPECT_TRUE(Validate(Valid()).empty()); }

TEST(Validate, UserNameRules) {
  User u = Valid();
  u.user_name = "";
  EXPECT_EQ(Fields(Validate(u)), "userName");
  u.user_name = "jane@example.com";
  EXPECT_EQ(Fields(Validate(u)), "userName");
  u.user_name = "jane doe";
  auto problems = Validate(u);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].rule.find("found ' '"), std::string::npos);
  u.user_name = std::string(1025, 'a');
  EXPECT_EQ(Fields(Validate(u)), "userName");
}

TEST(Validate, EmailAndLengths) {
  User u = Valid();
  u.email.reset();
  EXPECT_EQ(Fields(Validate(u)), "emails[primary].value");
  u.email = "not-an-email";
  EXPECT_EQ(Fields(Validate(u)), "emails[primary].value");
  u = Valid();
  u.employee_number = std::string(257, '1');
  u.given_name = std::string(1025, 'x');
  EXPECT_EQ(Fields(Validate(u)), "name.givenName,employeeNumber");
  // Lengths count characters, not bytes.
  u = Valid();
  std::string umlauts;
  for (int i = 0; i < 1024; ++i) umlauts += "ü";
  u.family_name = umlauts;
  EXPECT_TRUE(Validate(u).empty());
}

TEST(Validate, ExternalIdIsRequiredAndValidUtf8) {
  User u = Valid();
  u.external_id = "";
  EXPECT_EQ(Fields(Validate(u)), "externalId");
  u.external_id = "E\xff";
  EXPECT_EQ(Fields(Validate(u)), "externalId");
  u.external_id = "\xc0\xaf";  // overlong '/'
  EXPECT_EQ(Fields(Validate(u)), "externalId");
  u.external_id = "Zoë-日本-🙂";
  EXPECT_TRUE(Validate(u).empty());
}

TEST(SafeUserName, FoldsAndDrops) {
  EXPECT_EQ(SafeUserName("Jürgen.Müller"), "jurgen.muller");
  EXPECT_EQ(SafeUserName("Łukasz Żółć"), "lukaszzolc");
  EXPECT_EQ(SafeUserName("42_ann+tag"), "anntag");
  EXPECT_EQ(SafeUserName("Straße"), "strasse");
  EXPECT_EQ(SafeUserName("日本"), "");
}

}  // namespace
}  // namespace scimsync::scim
