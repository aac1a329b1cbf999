// The ingest side of the built-in generic profile: what the webhook listener relies on.
#include <gtest/gtest.h>

#include "scimsync/connectors/profile.h"
#include "test_util.h"

namespace scimsync::connectors {
namespace {

using testing::Entry;
using testing::HexHmacSha256;

constexpr char kSecret[] = "s3cret-webhook-key";
constexpr int64_t kNow = 1'795'000'000;

class GenericIngest : public ::testing::Test {
 protected:
  void SetUp() override {
    config::Problems problems("test.yaml");
    profile_ =
        LoadProfile(Entry("{name: hr, connector: generic, secret_env: HR_SECRET}"), &problems);
    ASSERT_NE(profile_, nullptr) << testing::ProblemsText(problems);
  }

  Request Signed(const std::string& body, const std::string& secret = kSecret) const {
    Request r;
    r.content_type = "application/json";
    r.body = body;
    r.headers = {{"X-Scimsync-Signature", "sha256=" + HexHmacSha256(secret, body)}};
    return r;
  }

  std::shared_ptr<const Profile> profile_;
};

const char kOneEvent[] =
    R"({"id":"evt-1","type":"employee.created","occurred_at":"2026-11-28T10:00:00Z",)"
    R"("employee":{"id":"E1","firstName":"Ada","lastName":"Lovelace",)"
    R"("workEmail":"ada@example.com","extra":{"ignored":true}}})";

TEST_F(GenericIngest, NameAndDedupWindowComeFromTheConfigEntry) {
  EXPECT_EQ(profile_->name(), "hr");
  EXPECT_EQ(profile_->dedup_window_s(), 7 * 24 * 3600);
}

TEST_F(GenericIngest, AcceptsACorrectSignature) {
  EXPECT_TRUE(profile_->Verify(Signed(kOneEvent), {kSecret}, kNow).ok());
}

TEST_F(GenericIngest, HeaderNamesMatchCaseInsensitivelyWithUnderscores) {
  Request r = Signed(kOneEvent);
  r.headers[0].first = "x_scimsync_SIGNATURE";
  EXPECT_TRUE(profile_->Verify(r, {kSecret}, kNow).ok());
}

TEST_F(GenericIngest, AcceptsUppercaseHex) {
  Request r = Signed(kOneEvent);
  std::string& v = r.headers[0].second;
  for (size_t i = 7; i < v.size(); ++i) v[i] = static_cast<char>(std::toupper(v[i]));
  EXPECT_TRUE(profile_->Verify(r, {kSecret}, kNow).ok());
}

TEST_F(GenericIngest, MissingSignatureIsAnAuthErrorNamingTheHeaderAndRecipe) {
  Request r = Signed(kOneEvent);
  r.headers.clear();
  Status s = profile_->Verify(r, {kSecret}, kNow);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kAuth);
  EXPECT_EQ(s.error().http_status, 401);
  EXPECT_NE(s.error().message.find("missing header X-Scimsync-Signature"), std::string::npos);
  EXPECT_NE(s.error().message.find("hmac-sha256"), std::string::npos) << s.error().message;
}

TEST_F(GenericIngest, WrongSecretIsRejectedWithoutRevealingSecretOrExpectedValue) {
  Request r = Signed(kOneEvent, "another-key");
  Status s = profile_->Verify(r, {kSecret}, kNow);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kAuth);
  const std::string& m = s.error().message;
  EXPECT_NE(m.find("does not match"), std::string::npos) << m;
  EXPECT_EQ(m.find(kSecret), std::string::npos);
  EXPECT_EQ(m.find(HexHmacSha256(kSecret, kOneEvent)), std::string::npos);
  EXPECT_EQ(m.find(HexHmacSha256("another-key", kOneEvent)), std::string::npos);
}

TEST_F(GenericIngest, ATamperedBodyFails) {
  Request r = Signed(kOneEvent);
  r.body[10] = 'X';
  EXPECT_FALSE(profile_->Verify(r, {kSecret}, kNow).ok());
}

TEST_F(GenericIngest, MissingPrefixIsReported) {
  Request r = Signed(kOneEvent);
  r.headers[0].second = HexHmacSha256(kSecret, kOneEvent);
  Status s = profile_->Verify(r, {kSecret}, kNow);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("'sha256='"), std::string::npos) << s.error().message;
}

TEST_F(GenericIngest, EitherSecretWorksDuringARotation) {
  EXPECT_TRUE(profile_->Verify(Signed(kOneEvent, "old"), {"new", "old"}, kNow).ok());
  EXPECT_TRUE(profile_->Verify(Signed(kOneEvent, "new"), {"new", "old"}, kNow).ok());
  EXPECT_FALSE(profile_->Verify(Signed(kOneEvent, "older"), {"new", "old"}, kNow).ok());
}

TEST_F(GenericIngest, NoConfiguredSecretFailsClosed) {
  Status s = profile_->Verify(Signed(kOneEvent), {}, kNow);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kAuth);
}

TEST_F(GenericIngest, DecodesOneEvent) {
  auto d = profile_->Decode(Signed(kOneEvent));
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->items.size(), 1u);
  const DecodedItem& item = d->items[0];
  EXPECT_EQ(item.employee_key, "E1");
  EXPECT_EQ(item.dedup_id, "evt-1");
  EXPECT_EQ(item.event_type, "employee.created");
  EXPECT_EQ(item.occurred_at, "2026-11-28T10:00:00Z");
  EXPECT_EQ(item.payload, kOneEvent);  // already compact
  EXPECT_FALSE(d->handshake);
}

TEST_F(GenericIngest, PayloadIsCompacted) {
  auto d = profile_->Decode(Signed("{\n  \"id\": \"e\",\n  \"employee\": {\"id\": 7}\n}\n"));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->items[0].payload, R"({"id":"e","employee":{"id":7}})");
  EXPECT_EQ(d->items[0].employee_key, "7");  // numeric ids become their decimal text
}

TEST_F(GenericIngest, FansOutABatch) {
  auto d = profile_->Decode(
      Signed(R"({"events":[{"id":"a","type":"employee.updated","employee":{"id":"E1"}},)"
             R"({"id":"b","type":"employee.terminated","employee":{"id":"E2"}}]})"));
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->items.size(), 2u);
  EXPECT_EQ(d->items[0].employee_key, "E1");
  EXPECT_EQ(d->items[1].employee_key, "E2");
  EXPECT_EQ(d->items[1].dedup_id, "b");
  EXPECT_EQ(d->items[1].event_type, "employee.terminated");
  EXPECT_EQ(d->items[1].payload,
            R"({"id":"b","type":"employee.terminated","employee":{"id":"E2"}})");
}

TEST_F(GenericIngest, ItemWithoutEmployeeKeyNamesIndexAndPointer) {
  auto d = profile_->Decode(
      Signed(R"({"events":[{"id":"a","type":"employee.updated","employee":{"id":"E1"}},)"
             R"({"id":"b","type":"employee.updated","employee":{}}]})"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(d.error().http_status, 400);
  EXPECT_NE(d.error().message.find("item 1"), std::string::npos) << d.error().message;
  EXPECT_NE(d.error().message.find("/employee/id"), std::string::npos) << d.error().message;
}

// A body that is no employee event (a ping, a test, a notification) is acknowledged, not
// refused: a 4xx makes the sender retry, alert and eventually disable the webhook.
TEST_F(GenericIngest, AnUntypedItemWithoutEmployeeKeyIsAcknowledged) {
  auto d = profile_->Decode(Signed(
      R"({"events":[{"id":"a","type":"employee.updated","employee":{"id":"E1"}},{"id":"b"}]})"));
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->items.size(), 1u);
  ASSERT_EQ(d->acknowledged.size(), 1u);
  EXPECT_EQ(d->acknowledged[0].event_type, "");
  EXPECT_NE(d->acknowledged[0].reason.find("/employee/id"), std::string::npos);
}

TEST_F(GenericIngest, MalformedJsonIsInvalid) {
  auto d = profile_->Decode(Signed(R"({"id":"a",)"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().kind, ErrorKind::kInvalid);
  EXPECT_NE(d.error().message.find("not valid JSON"), std::string::npos);
}

TEST_F(GenericIngest, EventsThatIsNotAnArrayIsInvalid) {
  auto d = profile_->Decode(Signed(R"({"events":{"id":"a"}})"));
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("/events"), std::string::npos);
}

TEST_F(GenericIngest, AnUnacceptedContentTypeIs415) {
  Request r = Signed(kOneEvent);
  r.content_type = "application/xml";
  auto d = profile_->Decode(r);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().http_status, 415);
  EXPECT_NE(d.error().message.find("application/json"), std::string::npos);
}

TEST_F(GenericIngest, ContentTypeParametersAreIgnored) {
  Request r = Signed(kOneEvent);
  r.content_type = "Application/JSON; charset=utf-8";
  EXPECT_TRUE(profile_->Decode(r).ok());
}

TEST_F(GenericIngest, MissingEventIdFallsBackToAContentHash) {
  const std::string body = R"({"type":"employee.updated","employee":{"id":"E1"}})";
  auto a = profile_->Decode(Signed(body));
  auto b = profile_->Decode(Signed(body));
  auto c = profile_->Decode(Signed(R"({"type":"employee.created","employee":{"id":"E1"}})"));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->items[0].dedup_id, b->items[0].dedup_id);
  EXPECT_NE(a->items[0].dedup_id, c->items[0].dedup_id);
  EXPECT_EQ(a->items[0].dedup_id.rfind("sha256:", 0), 0u);
}

TEST_F(GenericIngest, TenantScopesTheDedupId) {
  Request r = Signed(kOneEvent);
  r.tenant = "acme";
  auto d = profile_->Decode(r);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->items[0].dedup_id, "acme/evt-1");
}

TEST(LoadProfile, UnknownBuiltinNamesTheKeyAndTheChoices) {
  config::Problems problems("scimsync.yaml");
  auto p = LoadProfile(Entry("{name: hr, connector: nosuch, secret_env: X}"), &problems);
  EXPECT_EQ(p, nullptr);
  ASSERT_EQ(problems.list().size(), 1u);
  EXPECT_EQ(problems.list()[0].path, "profiles[0].connector");
  EXPECT_NE(problems.list()[0].message.find("generic"), std::string::npos);
}

TEST(LoadProfile, AProfileThatAuthenticatesNeedsASecret) {
  config::Problems problems("scimsync.yaml");
  auto p = LoadProfile(Entry("{name: hr, connector: generic}"), &problems);
  EXPECT_EQ(p, nullptr);
  ASSERT_FALSE(problems.empty());
  EXPECT_NE(problems.list()[0].message.find("secret_env"), std::string::npos);
}

TEST(LoadProfile, UnknownEntryKeysAreErrors) {
  config::Problems problems("scimsync.yaml");
  auto p = LoadProfile(Entry("{name: hr, connector: generic, secret_env: X,\n  colour: blue}"),
                       &problems);
  EXPECT_EQ(p, nullptr);
  ASSERT_EQ(problems.list().size(), 1u);
  EXPECT_EQ(problems.list()[0].path, "profiles[0].colour");
  EXPECT_EQ(problems.list()[0].line, 2);
}

}  // namespace
}  // namespace scimsync::connectors
