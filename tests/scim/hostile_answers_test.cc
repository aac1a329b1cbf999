// Answers no SCIM server should send, but something in its place might: nesting deep enough to
// exhaust a worker's stack when parsed, redacted or logged. Found by tests/fuzz (fuzz_scim_parse).
#include <gtest/gtest.h>

#include <string>

#include "scimsync/scim/protocol.h"

namespace scimsync::scim {
namespace {

std::string Deep(const std::string& open, size_t bytes) {
  std::string out;
  while (out.size() < bytes) out += open;
  return out;
}

TEST(HostileAnswers, DeepNestingIsAnErrorNotACrash) {
  for (const std::string open : {"[", "{\"a\":", "{\"Resources\":"}) {
    SCOPED_TRACE(open);
    const std::string body = Deep(open, 1 << 20);
    EXPECT_FALSE(ParseUser(body).ok());
    EXPECT_FALSE(ParseListResponse(body).ok());
    // Not JSON it can read: the body is kept as it is rather than redacted recursively.
    EXPECT_EQ(RedactBody(body).size(), body.size());
    Error e = ErrorFromResponse(400, body, "", 0);
    EXPECT_EQ(e.kind, ErrorKind::kPermanent);
    EXPECT_LT(e.message.size(), 1000u);
  }
}

TEST(HostileAnswers, NestingWithinTheLimitStillParses) {
  std::string inner = "1";
  for (int i = 0; i < 100; ++i) inner = "[" + inner + "]";
  auto user = ParseUser(R"({"id":"jc-1","userName":"a","x":)" + inner + "}");
  ASSERT_TRUE(user.ok()) << user.error().message;
  EXPECT_EQ(user->id, "jc-1");
}

TEST(HostileAnswers, BracketsInStringsAreNotNesting) {
  auto user =
      ParseUser(R"({"id":"jc-1","userName":"a","title":")" + std::string(5000, '[') + R"("})");
  ASSERT_TRUE(user.ok()) << user.error().message;
  EXPECT_EQ(user->attributes.title->size(), 5000u);
}

}  // namespace
}  // namespace scimsync::scim
