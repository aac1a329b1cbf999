// Webhook bodies built to hurt: nesting that would exhaust a stack, strings and batches past the
// limits, bytes that are not text, replayed signatures. Each case is one the fuzz targets
// (tests/fuzz) found or guard against; here it is pinned as a plain test.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include "scimsync/connectors/profile.h"
#include "test_util.h"

namespace scimsync::connectors {
namespace {

using testing::Entry;
using testing::HexHmacSha256;

constexpr char kSecret[] = "s3cret-webhook-key";
constexpr int64_t kNow = 1'795'000'000;

std::shared_ptr<const Profile> Load(const std::string& yaml) {
  config::Problems problems("test.yaml");
  auto p = LoadProfile(Entry(yaml), &problems);
  EXPECT_NE(p, nullptr) << testing::ProblemsText(problems);
  return p;
}

Request Json(std::string body) {
  Request r;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

Request Form(std::string body) {
  Request r;
  r.content_type = "application/x-www-form-urlencoded";
  r.body = std::move(body);
  return r;
}

std::string Event(const std::string& id, const std::string& employee) {
  return R"({"id":")" + id + R"(","type":"employee.updated","employee":{"id":")" + employee +
         R"(","workEmail":"a@example.com"}})";
}

class Generic : public ::testing::Test {
 protected:
  void SetUp() override { profile_ = Load("{name: hr, connector: generic, secret_env: S}"); }
  std::shared_ptr<const Profile> profile_;
};

TEST_F(Generic, AMegabyteOfOpeningBracketsIsRefusedNotACrash) {
  // Before the depth check, RapidJSON's recursive parser overflowed the thread's stack here.
  for (const char* open : {"[", "{\"a\":"}) {
    std::string body;
    while (body.size() < (1u << 20)) body += open;
    auto decoded = profile_->Decode(Json(body));
    ASSERT_FALSE(decoded.ok()) << open;
    EXPECT_EQ(decoded.error().http_status, 400);
    EXPECT_NE(decoded.error().message.find("listen.max_json_depth"), std::string::npos)
        << decoded.error().message;
  }
}

TEST_F(Generic, NestingUpToTheLimitIsAcceptedAndOneMoreIsNot) {
  auto nested = [](int levels) {
    std::string open, close;
    for (int i = 0; i < levels - 3; ++i) {
      open += "{\"x\":";
      close += "}";
    }
    // The event, its employee object and the innermost object make three levels.
    return R"({"id":"e1","type":"employee.updated","employee":{"id":"E1","deep":)" + open + "{}" +
           close + "}}";
  };
  Request ok = Json(nested(6));
  ok.limits.max_json_depth = 6;
  EXPECT_TRUE(profile_->Decode(ok).ok());
  Request deep = Json(nested(7));
  deep.limits.max_json_depth = 6;
  auto decoded = profile_->Decode(deep);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message.find("deeper than 6 levels"), std::string::npos)
      << decoded.error().message;
}

TEST_F(Generic, BracketsInsideStringsDoNotCountAsNesting) {
  Request r = Json(Event(std::string(100, '['), "E1"));
  r.limits.max_json_depth = 3;
  EXPECT_TRUE(profile_->Decode(r).ok());
}

TEST_F(Generic, ALongStringIs413NamingWhereItIs) {
  Request r = Json(R"({"id":"e1","type":"t","employee":{"id":"E1","bio":")" +
                   std::string(2000, 'x') + R"("}})");
  r.limits.max_field_bytes = 1000;
  auto decoded = profile_->Decode(r);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().http_status, 413);
  EXPECT_NE(decoded.error().message.find("/employee/bio"), std::string::npos)
      << decoded.error().message;
  EXPECT_NE(decoded.error().message.find("listen.max_field_bytes"), std::string::npos);
  r.limits.max_field_bytes = 2000;
  EXPECT_TRUE(profile_->Decode(r).ok());
}

TEST_F(Generic, ALongMemberNameCountsAsAField) {
  Request r = Json(R"({"id":"e1","employee":{"id":"E1",")" + std::string(300, 'k') + R"(":1}})");
  r.limits.max_field_bytes = 256;
  auto decoded = profile_->Decode(r);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().http_status, 413);
}

TEST_F(Generic, MoreItemsThanTheLimitIs413AndNothingIsDecoded) {
  std::string body = R"({"events":[)";
  for (int i = 0; i < 11; ++i) body += (i ? "," : "") + Event("e" + std::to_string(i), "E1");
  body += "]}";
  Request r = Json(body);
  r.limits.max_items = 10;
  auto decoded = profile_->Decode(r);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().http_status, 413);
  EXPECT_NE(decoded.error().message.find("11 items"), std::string::npos);
  EXPECT_NE(decoded.error().message.find("listen.max_items"), std::string::npos);
  r.limits.max_items = 11;
  ASSERT_TRUE(profile_->Decode(r).ok());
  EXPECT_EQ(profile_->Decode(r)->items.size(), 11u);
}

TEST_F(Generic, AnEmployeeKeyLongerThanTheIdLimitIs400) {
  Request r = Json(Event("e1", std::string(600, '7')));
  auto decoded = profile_->Decode(r);  // default max_id_bytes: 512
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().http_status, 400);
  EXPECT_NE(decoded.error().message.find("employee key of 600 bytes"), std::string::npos)
      << decoded.error().message;
}

TEST_F(Generic, AnObjectAsEventIdCannotMakeAHugeDedupId) {
  std::string big = "{\"a\":\"" + std::string(1000, 'x') + "\"}";
  Request r = Json(R"({"id":)" + big + R"(,"employee":{"id":"E1"}})");
  auto decoded = profile_->Decode(r);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message.find("dedup id"), std::string::npos) << decoded.error().message;
}

class Rippling : public ::testing::Test {
 protected:
  void SetUp() override {
    profile_ = Load("{name: rippling, connector: rippling, secret_env: S, api: {key_env: K}}");
  }
  std::shared_ptr<const Profile> profile_;
};

TEST_F(Rippling, FormBracketNestingIsBoundedLikeJson) {
  // Before the bound, a[x][x][x]... built a tree as deep as the body was long and converted it
  // recursively.
  std::string key = "a";
  while (key.size() < 300000) key += "[x]";
  auto decoded = profile_->Decode(Form(key + "=1"));
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().http_status, 400);
  EXPECT_NE(decoded.error().message.find("nests deeper"), std::string::npos);
  EXPECT_LT(decoded.error().message.size(), 400u) << "the error quotes the whole field name";
}

TEST_F(Rippling, FormBytesThatAreNotUtf8Are400) {
  // Found by fuzz_webhook: %FF decoded into the payload, which the worker's strict JSON parser
  // then refused, turning a sender's typo into a dead letter instead of a 400.
  for (const char* body : {"event_name=employee.created&id=E1&name=%FF",
                           "event_name=employee.created&id=E1&na\xffme=x",
                           "event_name=employee.created&id=%ED%A0%80"}) {
    auto decoded = profile_->Decode(Form(body));
    ASSERT_FALSE(decoded.ok()) << body;
    EXPECT_EQ(decoded.error().http_status, 400);
    EXPECT_NE(decoded.error().message.find("UTF-8"), std::string::npos) << decoded.error().message;
  }
  EXPECT_TRUE(profile_->Decode(Form("event_name=employee.created&id=E1&name=Ren%C3%A9e")).ok());
}

TEST_F(Rippling, ManyFormFieldsDecodeToOneObject) {
  std::string body = "event_name=employee.created&id=E1";
  for (int i = 0; i < 20000; ++i) body += "&data[f" + std::to_string(i) + "]=" + std::to_string(i);
  Request r = Form(body);
  auto decoded = profile_->Decode(r);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  ASSERT_EQ(decoded->items.size(), 1u);
  EXPECT_NE(decoded->items[0].payload.find("\"f19999\":\"19999\""), std::string::npos);
}

// ---- replay ---------------------------------------------------------------------------------

std::string Base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string RawHmacSha256(const std::string& key, const std::string& msg) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

class FinchReplay : public ::testing::Test {
 protected:
  void SetUp() override {
    profile_ = Load("{name: finch, connector: finch, secret_env: S, api: {key_env: K}}");
  }
  // A request Finch signed at `ts` (the timestamp header as given).
  Request SignedAt(const std::string& ts) const {
    Request r = Json(R"({"company_id":"c1","event_type":"individual.updated",)"
                     R"("data":{"individual_id":"i1"}})");
    const std::string sig = Base64(RawHmacSha256(key_, "msg_1." + ts + "." + r.body));
    r.headers = {
        {"Finch-Event-Id", "msg_1"}, {"Finch-Timestamp", ts}, {"Finch-Signature", "v1," + sig}};
    return r;
  }
  const std::string key_ = "0123456789abcdef0123456789abcdef";
  const std::string secret_ = "whsec_" + Base64(key_);
  std::shared_ptr<const Profile> profile_;
};

TEST_F(FinchReplay, TheSameSignedRequestIsRefusedOnceItLeavesTheWindow) {
  const Request r = SignedAt(std::to_string(kNow));
  EXPECT_TRUE(profile_->Verify(r, {secret_}, kNow).ok());
  EXPECT_TRUE(profile_->Verify(r, {secret_}, kNow + 300).ok());  // the edge is inside
  Status replayed = profile_->Verify(r, {secret_}, kNow + 301);
  ASSERT_FALSE(replayed.ok());
  EXPECT_EQ(replayed.error().kind, ErrorKind::kAuth);
  EXPECT_NE(replayed.error().message.find("replayed"), std::string::npos);
  EXPECT_FALSE(profile_->Verify(r, {secret_}, kNow - 301).ok());  // from the future
}

TEST_F(FinchReplay, TimestampsThatAreNotTimesOrAbsurdlyFarAreRefused) {
  for (const std::string ts : {"", "soon", "-1", "999999999999999999", "99999999999999999999",
                               "1e9", "0x6a0c2d00", "9999-12-31T23:59:59Z"}) {
    SCOPED_TRACE(ts);
    Status s = profile_->Verify(SignedAt(ts), {secret_}, kNow);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().kind, ErrorKind::kAuth);
  }
}

TEST_F(FinchReplay, AnIsoTimestampInsideTheWindowIsAccepted) {
  // 1795000000 is 2026-11-18T11:06:40Z.
  EXPECT_TRUE(profile_->Verify(SignedAt("2026-11-18T11:06:40Z"), {secret_}, kNow).ok());
}

TEST(BambooHrReplay, TheTimestampIsSignedButNotWindowedBecauseTheEventOnlyTriggersAFetch) {
  // docs/security.md: BambooHR publishes no replay window, and its webhooks carry ids only, so a
  // replay makes the worker fetch and apply the current record -- the state it already has.
  auto p = Load("{name: b, connector: bamboohr, secret_env: S, api: {tenant: acme, key_env: K}}");
  const std::string body = R"({"employees":[{"id":"42","action":"Updated"}]})";
  const std::string ts = std::to_string(kNow - 30 * 86400);
  Request r = Json(body);
  r.headers = {{"X-BambooHR-Timestamp", ts},
               {"X-BambooHR-Signature", HexHmacSha256(kSecret, body + ts)}};
  EXPECT_TRUE(p->Verify(r, {kSecret}, kNow).ok());
  r.headers[0].second = std::to_string(kNow);  // a changed timestamp breaks the signature
  EXPECT_FALSE(p->Verify(r, {kSecret}, kNow).ok());
  EXPECT_FALSE(p->payload_carries_record());
}

}  // namespace
}  // namespace scimsync::connectors
