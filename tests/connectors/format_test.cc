// The profile format: auth recipes, decoders, handshakes, fan-out, and strict loading.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "scimsync/connectors/profile.h"
#include "test_support.h"
#include "test_util.h"

namespace scimsync::connectors {
namespace {

using testing::Entry;
using testing::HexHmacSha256;

constexpr int64_t kNow = 1'795'000'000;

std::string Base64(const std::string& bytes, bool url = false) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  if (url) {
    for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
    while (!out.empty() && out.back() == '=') out.pop_back();
  }
  return out;
}

std::string RawHmac(const EVP_MD* md, const std::string& key, const std::string& msg) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

class Format : public ::testing::Test {
 protected:
  std::shared_ptr<const Profile> Load(const std::string& yaml,
                                      const std::string& extra = ", secret_env: S") {
    scimsync::testing::WriteFile(dir_.File("p.yaml"), yaml);
    problems_ = config::Problems("cfg.yaml");
    return LoadProfile(Entry("{name: p, connector: " + dir_.File("p.yaml") + extra + "}"),
                       &problems_);
  }
  std::shared_ptr<const Profile> MustLoad(const std::string& yaml,
                                          const std::string& extra = ", secret_env: S") {
    auto p = Load(yaml, extra);
    EXPECT_NE(p, nullptr) << testing::ProblemsText(problems_);
    return p;
  }
  static Request Req(std::string body, std::vector<std::pair<std::string, std::string>> headers,
                     std::string content_type = "application/json") {
    Request r;
    r.body = std::move(body);
    r.headers = std::move(headers);
    r.content_type = std::move(content_type);
    return r;
  }

  scimsync::testing::TempDir dir_;
  config::Problems problems_{"cfg.yaml"};
};

constexpr char kTail[] = R"(
items: {employee_key: /id}
mapping: {email: /email}
)";

TEST_F(Format, Sha512Base64LikeHiBob) {
  auto p = MustLoad(std::string(R"(name: x
auth: {type: hmac, algorithm: sha512, encoding: base64, header: Bob-Signature})") +
                    kTail);
  const std::string body = R"({"id":"1"})";
  std::string sig = Base64(RawHmac(EVP_sha512(), "k", body));
  EXPECT_TRUE(p->Verify(Req(body, {{"bob-signature", sig}}), {"k"}, kNow).ok());
  EXPECT_FALSE(p->Verify(Req(body, {{"bob-signature", sig}}), {"other"}, kNow).ok());
}

TEST_F(Format, OrderedMessagePartsLikeBambooHr) {
  auto p = MustLoad(std::string(R"(name: x
auth:
  type: hmac
  algorithm: sha256
  encoding: hex
  header: X-BambooHR-Signature
  message: [body, {header: X-BambooHR-Timestamp}])") +
                    kTail);
  const std::string body = R"({"id":"1"})";
  std::string sig = HexHmacSha256("k", body + "1658248023");
  EXPECT_TRUE(
      p->Verify(Req(body, {{"X-BambooHR-Signature", sig}, {"X-BambooHR-Timestamp", "1658248023"}}),
                {"k"}, kNow)
          .ok());
  Status missing = p->Verify(Req(body, {{"X-BambooHR-Signature", sig}}), {"k"}, kNow);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("X-BambooHR-Timestamp"), std::string::npos);
}

TEST_F(Format, LiteralAndMethodPartsLikeDeel) {
  auto p = MustLoad(std::string(R"(name: x
auth: {type: hmac, algorithm: sha256, encoding: hex, header: x-deel-signature,
       message: [{literal: POST}, body]})") +
                    kTail);
  const std::string body = R"({"id":"1"})";
  EXPECT_TRUE(
      p->Verify(Req(body, {{"X-Deel-Signature", HexHmacSha256("k", "POST" + body)}}), {"k"}, kNow)
          .ok());
}

class FinchLike : public Format {
 protected:
  void SetUp() override {
    profile_ = MustLoad(std::string(R"(name: x
auth:
  type: hmac
  algorithm: sha256
  key: base64
  key_prefix: whsec_
  message: [{header: Finch-Event-Id}, {literal: "."}, {header: Finch-Timestamp}, {literal: "."}, body]
  encoding: base64
  header: Finch-Signature
  prefix: "v1,"
  separator: " "
  timestamp_header: Finch-Timestamp
  tolerance_s: 300)") + kTail);
  }
  Request Signed(int64_t ts, const std::string& key_bytes, const std::string& extra = "") {
    const std::string body = R"({"id":"1"})";
    std::string sig =
        Base64(RawHmac(EVP_sha256(), key_bytes, "evt_1." + std::to_string(ts) + "." + body));
    return Req(body, {{"Finch-Event-Id", "evt_1"},
                      {"Finch-Timestamp", std::to_string(ts)},
                      {"Finch-Signature", extra + "v1," + sig}});
  }
  std::shared_ptr<const Profile> profile_;
  const std::string secret_ = "whsec_" + Base64("0123456789abcdef");
};

TEST_F(FinchLike, OneOfSeveralCandidatesMustMatch) {
  EXPECT_TRUE(
      profile_->Verify(Signed(kNow, "0123456789abcdef", "v1,AAAA v2,zzz "), {secret_}, kNow).ok());
  EXPECT_FALSE(profile_->Verify(Signed(kNow, "wrong-key-bytes!"), {secret_}, kNow).ok());
}

TEST_F(FinchLike, TimestampOutsideTheWindowNamesTheSkew) {
  Status s = profile_->Verify(Signed(kNow - 400, "0123456789abcdef"), {secret_}, kNow);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kAuth);
  EXPECT_NE(s.error().message.find("400 s old"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("±300 s"), std::string::npos);
  Status future = profile_->Verify(Signed(kNow + 301, "0123456789abcdef"), {secret_}, kNow);
  ASSERT_FALSE(future.ok());
  EXPECT_NE(future.error().message.find("in the future"), std::string::npos);
  EXPECT_TRUE(profile_->Verify(Signed(kNow + 299, "0123456789abcdef"), {secret_}, kNow).ok());
}

TEST_F(Format, Base64UrlLikeMerge) {
  auto p = MustLoad(std::string(R"(name: x
auth: {type: hmac, algorithm: sha256, encoding: base64url, header: X-Merge-Webhook-Signature})") +
                    kTail);
  // A body whose MAC has '+' or '/' in standard base64 shows the alphabet matters.
  std::string body;
  std::string sig;
  for (int i = 0; i < 100; ++i) {
    body = R"({"id":")" + std::to_string(i) + R"("})";
    sig = Base64(RawHmac(EVP_sha256(), "k", body), true);
    if (sig.find_first_of("-_") != std::string::npos) break;
  }
  EXPECT_TRUE(p->Verify(Req(body, {{"X-Merge-Webhook-Signature", sig}}), {"k"}, kNow).ok());
}

TEST_F(Format, BearerBasicAndStaticHeader) {
  auto bearer = MustLoad(std::string("name: x\nauth: {type: bearer}") + kTail);
  EXPECT_TRUE(bearer->Verify(Req("{}", {{"Authorization", "Bearer tok"}}), {"tok"}, kNow).ok());
  EXPECT_FALSE(bearer->Verify(Req("{}", {{"Authorization", "Bearer nope"}}), {"tok"}, kNow).ok());
  Status no_scheme = bearer->Verify(Req("{}", {{"Authorization", "tok"}}), {"tok"}, kNow);
  ASSERT_FALSE(no_scheme.ok());
  EXPECT_NE(no_scheme.error().message.find("Bearer"), std::string::npos);

  auto basic = MustLoad(std::string("name: x\nauth: {type: basic}") + kTail);
  EXPECT_TRUE(
      basic->Verify(Req("{}", {{"Authorization", "Basic " + Base64("u:p")}}), {"u:p"}, kNow).ok());
  EXPECT_FALSE(
      basic->Verify(Req("{}", {{"Authorization", "Basic " + Base64("u:x")}}), {"u:p"}, kNow).ok());

  auto header = MustLoad(
      std::string("name: x\nauth: {type: header, header: x-factorial-wh-challenge}") + kTail);
  EXPECT_TRUE(header->Verify(Req("{}", {{"X_Factorial_WH_Challenge", "c"}}), {"c"}, kNow).ok());
  EXPECT_FALSE(header->Verify(Req("{}", {{"x-factorial-wh-challenge", "d"}}), {"c"}, kNow).ok());
}

TEST_F(Format, NoneMustBeWrittenExplicitly) {
  EXPECT_EQ(Load(std::string("name: x") + kTail), nullptr);
  EXPECT_NE(testing::ProblemsText(problems_).find("auth"), std::string::npos);
  auto none = MustLoad(std::string("name: x\nauth: {type: none}") + kTail, "");
  EXPECT_TRUE(none->Verify(Req("{}", {}), {}, kNow).ok());
}

TEST_F(Format, FormBodiesNestWithBrackets) {
  auto p = MustLoad(R"(name: x
auth: {type: none}
decode: {formats: [json, form]}
items: {array: /employees, employee_key: /id, event_type: {pointer: /type, from: body}}
mapping: {email: /email}
)",
                    "");
  auto d = p->Decode(
      Req("type=employee.updated&employees%5B1%5D%5Bid%5D=2&employees[0][id]=1"
          "&employees[0][name]=Ada+L%C3%B6we&employees[0][tags][]=a&employees[0][tags][]=b",
          {}, "application/x-www-form-urlencoded"));
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->items.size(), 2u);
  EXPECT_EQ(d->items[0].employee_key, "1");
  EXPECT_EQ(d->items[0].payload, R"({"id":"1","name":"Ada Löwe","tags":["a","b"]})");
  EXPECT_EQ(d->items[1].employee_key, "2");
  EXPECT_EQ(d->items[1].event_type, "employee.updated");  // from the envelope

  auto json = p->Decode(Req(R"({"type":"t","employees":[{"id":"9"}]})", {}));
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(json->items[0].employee_key, "9");

  auto bad = p->Decode(Req("employees[0=1", {}, "application/x-www-form-urlencoded"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::kInvalid);
}

TEST_F(Format, FormIsRefusedWhereOnlyJsonIsAccepted) {
  auto p = MustLoad(std::string("name: x\nauth: {type: none}") + kTail, "");
  auto d = p->Decode(Req("id=1", {}, "application/x-www-form-urlencoded"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().http_status, 415);
}

TEST_F(Format, APingIsAHandshakeThatNeedsNoSignature) {
  auto p = MustLoad(std::string(R"(name: x
auth: {type: hmac, algorithm: sha512, encoding: base64, header: Bob-Signature}
decode: {ping: Ping test})") +
                    kTail);
  Request ping = Req("Ping test", {}, "text/plain");
  EXPECT_TRUE(p->Verify(ping, {"k"}, kNow).ok());
  auto d = p->Decode(ping);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->handshake);
  EXPECT_EQ(d->handshake_status, 200);
  EXPECT_TRUE(d->items.empty());
  // Anything else still needs the signature.
  EXPECT_FALSE(p->Verify(Req("Ping test!", {}, "text/plain"), {"k"}, kNow).ok());
}

TEST_F(Format, AVerificationTokenIsStoredOnceAndNeverOverwritten) {
  const std::string token_file = dir_.File("token");
  auto p = MustLoad(std::string(R"(name: x
auth: {type: hmac, algorithm: sha256, encoding: hex, header: X-Gusto-Signature}
decode: {verification_token: /verification_token, verification_instructions: "Verify it."})") +
                        kTail,
                    ", secret_env: S, verification_token_file: " + token_file);
  Request hello = Req(R"({"verification_token":"tok-1"})", {});
  EXPECT_TRUE(p->Verify(hello, {}, kNow).ok());
  auto d = p->Decode(hello);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_TRUE(d->handshake);
  EXPECT_TRUE(d->items.empty());
  EXPECT_EQ(d->handshake_note.find("tok-1"), std::string::npos);  // never the token
  EXPECT_NE(d->handshake_note.find("Verify it."), std::string::npos);
  EXPECT_EQ(scimsync::testing::ReadFile(token_file), "tok-1");

  auto again = p->Decode(Req(R"({"verification_token":"tok-evil"})", {}));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(scimsync::testing::ReadFile(token_file), "tok-1");
  EXPECT_NE(again->handshake_note.find("delete the file"), std::string::npos);

  // A token riding along with an event is not a handshake: it needs the signature.
  EXPECT_FALSE(p->Verify(Req(R"({"verification_token":"t","id":"E1"})", {}), {"k"}, kNow).ok());
}

TEST_F(Format, DedupIdFromAHeaderOrAHash) {
  auto p = MustLoad(R"(name: x
auth: {type: none}
items: {employee_key: /id, dedup_id: {header: X-Event-Id}}
mapping: {email: /email}
)",
                    "");
  auto d = p->Decode(Req(R"({"id":"1"})", {{"x-event-id", "abc"}}));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->items[0].dedup_id, "abc");
  auto h = MustLoad(R"(name: x
auth: {type: none}
items: {employee_key: /id, dedup_id: {hash: [/id, {header: X-Ts}]}}
mapping: {email: /email}
)",
                    "");
  auto a = h->Decode(Req(R"({"id":"1","x":1})", {{"X-Ts", "1"}}));
  auto b = h->Decode(Req(R"({"id":"1","x":2})", {{"X-Ts", "1"}}));
  auto c = h->Decode(Req(R"({"id":"1"})", {{"X-Ts", "2"}}));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->items[0].dedup_id, b->items[0].dedup_id);
  EXPECT_NE(a->items[0].dedup_id, c->items[0].dedup_id);
  EXPECT_EQ(a->items[0].dedup_id.size(), 64u);
}

// ---- strict loading ----

TEST_F(Format, AMalformedProfileNamesFileLineAndKey) {
  EXPECT_EQ(Load(R"(name: x
auth:
  type: hmac
  algorithm: sha384
  encoding: hex
  header: X-Sig
items: {employee_key: employee/id}
mapping:
  email: /email
  usrName: /login
)"),
            nullptr);
  const auto& list = problems_.list();
  ASSERT_EQ(list.size(), 3u) << testing::ProblemsText(problems_);
  const std::string file = dir_.File("p.yaml");
  EXPECT_EQ(list[0].path, file + ": auth.algorithm");
  EXPECT_EQ(list[0].line, 4);
  EXPECT_NE(list[0].message.find("sha256, sha512"), std::string::npos);
  EXPECT_EQ(list[1].path, file + ": items.employee_key");
  EXPECT_EQ(list[1].line, 7);
  EXPECT_NE(list[1].message.find("JSON Pointer"), std::string::npos);
  EXPECT_EQ(list[2].path, file + ": mapping.usrName");
  EXPECT_EQ(list[2].line, 10);
  EXPECT_NE(list[2].message.find("unknown key"), std::string::npos);
}

TEST_F(Format, YamlSyntaxErrorsNameTheLine) {
  EXPECT_EQ(Load("name: x\nauth: {type: none\nitems: [\n"), nullptr);
  ASSERT_EQ(problems_.list().size(), 1u);
  EXPECT_GT(problems_.list()[0].line, 0);
  EXPECT_NE(problems_.list()[0].message.find("YAML"), std::string::npos);
}

TEST_F(Format, UnknownTransformsAndTemplateNamesAreErrors) {
  EXPECT_EQ(Load(R"(name: x
auth: {type: none}
items: {employee_key: /id}
fetch:
  base_url: https://api.example.com/{company}
  path: /e/{employee_key}
mapping:
  email: {pointer: /email, transform: [titlecase]}
)",
                 ""),
            nullptr);
  std::string text = testing::ProblemsText(problems_);
  EXPECT_NE(text.find("fetch.base_url (line 5): {company} is not known"), std::string::npos)
      << text;
  EXPECT_NE(text.find("unknown transform 'titlecase'"), std::string::npos) << text;
}

TEST_F(Format, ConfigEntryKeysAreCheckedAgainstTheProfile) {
  auto p = Load(std::string("name: x\nauth: {type: none}") + kTail,
                ",\n  api: {base_url: https://x.example.com},\n  fields: {mail: /m}");
  EXPECT_EQ(p, nullptr);
  std::string text = testing::ProblemsText(problems_);
  EXPECT_NE(text.find("profiles[0].api (line 2): profile 'x' does not fetch"), std::string::npos)
      << text;
  EXPECT_NE(text.find("profiles[0].fields.mail (line 3): unknown key"), std::string::npos) << text;
}

TEST_F(Format, CredentialsAreNeverLiteralInTheConfig) {
  auto p = Load(R"(name: x
auth: {type: none}
items: {employee_key: /id}
fetch: {base_url: "https://api.example.com", credentials: [key], auth: {type: bearer, token: "{key}"}, path: /e}
mapping: {email: /email}
)",
                ", api: {key: hunter2}");
  EXPECT_EQ(p, nullptr);
  std::string text = testing::ProblemsText(problems_);
  EXPECT_NE(text.find("profiles[0].api.key"), std::string::npos) << text;
  EXPECT_NE(text.find("key_env"), std::string::npos);
  EXPECT_EQ(text.find("hunter2"), std::string::npos);
}

// fetch.recheck_at names a date in the fetched record: a pointer, and not the whole record.
TEST_F(Format, RecheckAtIsAPointerIntoTheFetchedRecord) {
  const std::string head = R"(name: x
auth: {type: none}
items: {employee_key: /id}
mapping: {email: /email}
fetch:
  base_url: https://api.example.com
  path: /e/{employee_key}
)";
  for (const char* bad : {"  recheck_at: terminated_on\n", "  recheck_at: \"\"\n"}) {
    EXPECT_EQ(Load(head + bad, ""), nullptr) << bad;
    std::string text = testing::ProblemsText(problems_);
    EXPECT_NE(text.find("fetch.recheck_at (line 8)"), std::string::npos) << text;
  }
  MustLoad(head + "  recheck_at: /employee/terminated_on\n", "");
}

// The events section is read strictly: a typo or a wrong shape names its key path.
TEST_F(Format, EventsSectionIsStrict) {
  EXPECT_EQ(Load(std::string("name: x\nauth: {type: bearer}\nevents: {employe: [a]}") + kTail),
            nullptr);
  EXPECT_NE(testing::ProblemsText(problems_).find("events.employe"), std::string::npos)
      << testing::ProblemsText(problems_);
  EXPECT_EQ(Load(std::string("name: x\nauth: {type: bearer}\nevents: [a]") + kTail), nullptr);
  EXPECT_NE(testing::ProblemsText(problems_).find("events"), std::string::npos);
  EXPECT_EQ(
      Load(std::string("name: x\nauth: {type: bearer}\nevents: {shape: {pointer: /a}}") + kTail),
      nullptr);
  EXPECT_NE(testing::ProblemsText(problems_).find("events.shape"), std::string::npos);
  EXPECT_EQ(Load(std::string("name: x\nauth: {type: bearer}\nitems: {employee_key: {var: tenant}}"
                             "\nmapping: {email: /email}\n")),
            nullptr);
  EXPECT_NE(testing::ProblemsText(problems_).find("item_key"), std::string::npos)
      << testing::ProblemsText(problems_);
  auto ok = MustLoad(std::string("name: x\nauth: {type: bearer}\nevents: {employee: emp.*, "
                                 "other: [\"*\"], shape: [{pointer: /kind, equals: person}]}") +
                     kTail);
  ASSERT_NE(ok, nullptr);
  auto d = ok->Decode(Req(R"({"id":"1","kind":"robot"})", {}));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_TRUE(d->items.empty());
  ASSERT_EQ(d->acknowledged.size(), 1u);
  EXPECT_NE(d->acknowledged[0].reason.find("/kind"), std::string::npos);
}

}  // namespace
}  // namespace scimsync::connectors
