// Built-in profiles: each loads, and each one's auth recipe accepts what its HRIS sends. The
// Finch case is a published test vector (Svix's example, whose scheme Finch uses); the others
// sign the vendor's sample with an independent HMAC so a wrong recipe fails.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <fstream>
#include <sstream>

#include "scimsync/connectors/profile.h"
#include "test_support.h"
#include "test_util.h"

namespace scimsync::connectors {
namespace {

using testing::Entry;

constexpr int64_t kNow = 1'795'000'000;

std::string Sample(const std::string& name) {
  std::ifstream in(std::string(SCIMSYNC_SOURCE_DIR) + "/tests/connectors/fixtures/" + name,
                   std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Mac(const EVP_MD* md, const std::string& key, const std::string& msg) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Hex(const std::string& bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string B64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::shared_ptr<const Profile> Builtin(const std::string& connector,
                                       const std::string& extra = "") {
  config::Problems problems("scimsync.yaml");
  auto p = LoadProfile(Entry("{name: p, connector: " + connector + ", secret_env: S" + extra + "}"),
                       &problems);
  EXPECT_NE(p, nullptr) << connector << ":\n" << testing::ProblemsText(problems);
  return p;
}

Request Json(std::string body, std::vector<std::pair<std::string, std::string>> headers) {
  Request r;
  r.content_type = "application/json";
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

TEST(BuiltinProfiles, EveryOneLoads) {
  for (const char* name : {"generic", "bamboohr", "hibob", "personio", "rippling", "gusto", "deel",
                           "merge", "finch", "factorial"}) {
    SCOPED_TRACE(name);
    EXPECT_NE(Builtin(name), nullptr);
  }
}

TEST(BuiltinProfiles, FinchVerifiesTheSvixPublishedVector) {
  auto p = Builtin("finch");
  Request r = Json(R"({"test": 2432232314})",
                   {{"Finch-Event-Id", "msg_p5jXN8AQM9LWM0D4loKWxJek"},
                    {"Finch-Timestamp", "1614265330"},
                    {"Finch-Signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}});
  const std::string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  EXPECT_TRUE(p->Verify(r, {secret}, 1614265330).ok());
  EXPECT_TRUE(p->Verify(r, {"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, 1614265330).ok());  // no prefix
  Status late = p->Verify(r, {secret}, 1614265330 + 301);
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.error().message.find("Finch-Timestamp"), std::string::npos);
  r.body = R"({"test": 2432232315})";
  EXPECT_FALSE(p->Verify(r, {secret}, 1614265330).ok());
}

TEST(BuiltinProfiles, BambooHrSignsBodyThenTimestamp) {
  auto p = Builtin("bamboohr");
  const std::string body = Sample("bamboohr/event-json/request.json");
  const std::string ts = "1769884920";
  Request r = Json(body, {{"X-BambooHR-Signature", Hex(Mac(EVP_sha256(), "k", body + ts))},
                          {"X-BambooHR-Timestamp", ts}});
  EXPECT_TRUE(p->Verify(r, {"k"}, kNow).ok());
  // Third-party guides sign "timestamp.body": that must not verify.
  r.headers[0].second = Hex(Mac(EVP_sha256(), "k", ts + "." + body));
  EXPECT_FALSE(p->Verify(r, {"k"}, kNow).ok());
}

TEST(BuiltinProfiles, BambooHrAcceptsTheFormEncodedVariant) {
  auto p = Builtin("bamboohr");
  Request r;
  r.content_type = "application/x-www-form-urlencoded";
  r.body = Sample("bamboohr/event-form/request.form");
  auto d = p->Decode(r);
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->items.size(), 1u);
  EXPECT_EQ(d->items[0].employee_key, "67890");
  EXPECT_EQ(d->items[0].payload,
            R"({"type":"employee.updated","timestamp":"2026-01-31T18:42:00+0000","data":)"
            R"({"companyId":"12345","employeeId":"67890","changedFields":["firstName"]}})");
}

TEST(BuiltinProfiles, HiBobSignsWithBase64Sha512AndAnswersThePing) {
  auto p = Builtin("hibob");
  const std::string body = Sample("hibob/table-entry-created/request.json");
  EXPECT_TRUE(
      p->Verify(Json(body, {{"Bob-Signature", B64(Mac(EVP_sha512(), "k", body))}}), {"k"}, kNow)
          .ok());
  EXPECT_FALSE(
      p->Verify(Json(body, {{"Bob-Signature", B64(Mac(EVP_sha256(), "k", body))}}), {"k"}, kNow)
          .ok());
  Request ping;
  ping.content_type = "text/plain";
  ping.body = "Ping test";
  EXPECT_TRUE(p->Verify(ping, {"k"}, kNow).ok());
  auto d = p->Decode(ping);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->handshake);
}

TEST(BuiltinProfiles, GustoSignsTheBodyAndStoresTheVerificationToken) {
  scimsync::testing::TempDir dir;
  auto p = Builtin("gusto", ", verification_token_file: " + dir.File("token"));
  const std::string body = Sample("gusto/employee-created/request.json");
  EXPECT_TRUE(p->Verify(Json(body, {{"x_gusto_signature", Hex(Mac(EVP_sha256(), "tok", body))}}),
                        {"tok"}, kNow)
                  .ok());
  Request hello = Json(R"({"verification_token":"asdf1234qwer5678"})", {});
  ASSERT_TRUE(p->Verify(hello, {}, kNow).ok());
  auto d = p->Decode(hello);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->handshake);
  EXPECT_NE(d->handshake_note.find("PUT /v1/webhook_subscriptions"), std::string::npos);
  EXPECT_EQ(scimsync::testing::ReadFile(dir.File("token")), "asdf1234qwer5678");
}

TEST(BuiltinProfiles, DeelSignsMethodThenBody) {
  auto p = Builtin("deel");
  const std::string body = Sample("deel/employee-updated/request.json");
  EXPECT_TRUE(
      p->Verify(Json(body, {{"x-deel-signature", Hex(Mac(EVP_sha256(), "k", "POST" + body))}}),
                {"k"}, kNow)
          .ok());
  EXPECT_FALSE(
      p->Verify(Json(body, {{"x-deel-signature", Hex(Mac(EVP_sha256(), "k", body))}}), {"k"}, kNow)
          .ok());
}

TEST(BuiltinProfiles, MergeSignsWithBase64Url) {
  auto p = Builtin("merge");
  const std::string body = Sample("merge/employee-changed/request.json");
  std::string sig = B64(Mac(EVP_sha256(), "k", body));
  for (char& c : sig) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!sig.empty() && sig.back() == '=') sig.pop_back();
  EXPECT_TRUE(p->Verify(Json(body, {{"X-Merge-Webhook-Signature", sig}}), {"k"}, kNow).ok());
}

TEST(BuiltinProfiles, StaticTokenProfiles) {
  auto rippling = Builtin("rippling");
  EXPECT_TRUE(rippling->Verify(Json("{}", {{"Authorization", "Bearer t"}}), {"t"}, kNow).ok());
  EXPECT_FALSE(rippling->Verify(Json("{}", {}), {"t"}, kNow).ok());
  auto personio = Builtin("personio");
  EXPECT_TRUE(personio->Verify(Json("{}", {{"authorization", "bearer t"}}), {"t"}, kNow).ok());
  auto factorial = Builtin("factorial");
  EXPECT_TRUE(factorial->Verify(Json("{}", {{"x-factorial-wh-challenge", "c"}}), {"c"}, kNow).ok());
  Status bad = factorial->Verify(Json("{}", {{"x-factorial-wh-challenge", "d"}}), {"c"}, kNow);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("x-factorial-wh-challenge"), std::string::npos);
}

// Personio sends the subscription's token (auth_type TOKEN, the default) as the exact value of
// the Authorization header and adds no prefix; an admin may have written "Bearer <token>" as the
// token. Both verify against the token; anything else is 401 naming the header.
// Source: developer.personio.de/reference/post_v2-webhooks (token, auth_type).
TEST(BuiltinProfiles, PersonioAcceptsTheTokenAsSentWithOrWithoutBearer) {
  auto personio = Builtin("personio");
  EXPECT_TRUE(personio->Verify(Json("{}", {{"Authorization", "s3cr3t"}}), {"s3cr3t"}, kNow).ok());
  EXPECT_TRUE(
      personio->Verify(Json("{}", {{"Authorization", "Bearer s3cr3t"}}), {"s3cr3t"}, kNow).ok());
  for (const char* wrong : {"s3cr3", "Bearer other", "Basic s3cr3t"}) {
    Status bad = personio->Verify(Json("{}", {{"Authorization", wrong}}), {"s3cr3t"}, kNow);
    ASSERT_FALSE(bad.ok()) << wrong;
    EXPECT_NE(bad.error().message.find("Authorization"), std::string::npos) << bad.error().message;
  }
  EXPECT_FALSE(personio->Verify(Json("{}", {}), {"s3cr3t"}, kNow).ok());
}

// A profile whose dedup id cannot tell two changes apart keeps it for minutes (docs/profiles.md
// says which profile does what); an entry's own dedup_window_s still wins.
TEST(DedupWindow, HashOnlyProfilesUseMinutesAndTheEntryWins) {
  config::Problems problems("test.yaml");
  auto rippling = LoadProfile(Entry("{name: r, connector: rippling, secret_env: R}"), &problems);
  ASSERT_NE(rippling, nullptr) << testing::ProblemsText(problems);
  EXPECT_EQ(rippling->dedup_window_s(), 300);
  auto generic = LoadProfile(Entry("{name: g, connector: generic, secret_env: G}"), &problems);
  ASSERT_NE(generic, nullptr) << testing::ProblemsText(problems);
  EXPECT_EQ(generic->dedup_window_s(), 7 * 86400);
  config::ProfileConfig chosen =
      Entry("{name: r, connector: rippling, secret_env: R, dedup_window_s: 120}");
  chosen.dedup_window_s = 120;
  auto set = LoadProfile(chosen, &problems);
  ASSERT_NE(set, nullptr) << testing::ProblemsText(problems);
  EXPECT_EQ(set->dedup_window_s(), 120);
}

}  // namespace
}  // namespace scimsync::connectors
