#include "scimsync/scim/protocol.h"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <string>

namespace scimsync::scim {
namespace {

constexpr char kEnt[] = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

std::string Ent(const std::string& attr) { return std::string(kEnt) + ":" + attr; }

// Parses `"` + escaped + `"` as JSON: what a SCIM server's filter parser does with the literal.
std::string JsonUnquote(const std::string& escaped) {
  std::string literal = "\"" + escaped + "\"";
  rapidjson::Document d;
  d.Parse(literal.c_str(), literal.size());
  EXPECT_FALSE(d.HasParseError()) << literal;
  if (d.HasParseError() || !d.IsString()) return "<invalid>";
  return std::string(d.GetString(), d.GetStringLength());
}

RemoteUser Remote(const std::string& json) {
  auto r = ParseUser(json);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : RemoteUser{};
}

User Desired() {
  User u;
  u.external_id = "E1";
  u.user_name = "jdoe";
  u.given_name = "Jane";
  u.family_name = "Doe";
  u.email = "jane.doe@example.com";
  return u;
}

const char kRemoteJane[] = R"({
  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
  "id": "jc-1", "externalId": "E1", "userName": "jdoe",
  "name": {"givenName": "Jane", "familyName": "Doe"},
  "emails": [{"value": "jane.doe@example.com", "type": "work", "primary": true}],
  "active": true,
  "meta": {"resourceType": "User"}
})";

// --- Filter escaping -----------------------------------------------------------------------

TEST(FilterEscape, PlainValuesAreUnchanged) {
  EXPECT_EQ(EscapeFilterValue("E-1234_x.y"), "E-1234_x.y");
}

TEST(FilterEscape, QuotesAndBackslashesAreEscaped) {
  EXPECT_EQ(EscapeFilterValue(R"(a"b\c)"), R"(a\"b\\c)");
  EXPECT_EQ(EscapeFilterValue(R"(" or userName pr or ")"), R"(\" or userName pr or \")");
}

TEST(FilterEscape, UnicodeIsKeptAsUtf8) {
  EXPECT_EQ(EscapeFilterValue("Zoë 日本 🙂"), "Zoë 日本 🙂");
}

TEST(FilterEscape, ControlCharactersUseJsonEscapes) {
  EXPECT_EQ(EscapeFilterValue(std::string("a\nb\tc\rd\be\ff")), R"(a\nb\tc\rd\be\ff)");
  EXPECT_EQ(EscapeFilterValue(std::string("\x01\x1f", 2)), R"(\u0001\u001f)");
  EXPECT_EQ(EscapeFilterValue(std::string("a\0b", 3)), R"(a\u0000b)");
}

TEST(FilterEscape, EveryEscapedValueParsesBackToItself) {
  std::string all;
  for (int c = 0; c < 0x80; ++c) all += static_cast<char>(c);
  all += "é\xe2\x82\xac\xf0\x9f\x99\x82";
  for (const std::string& v : {all, std::string("\\\\\"\""), std::string(" "), std::string()}) {
    EXPECT_EQ(JsonUnquote(EscapeFilterValue(v)), v);
  }
}

TEST(FilterEscape, QueryIsEscapedThenUrlEncoded) {
  EXPECT_EQ(EqFilterQuery("externalId", "E1"), "externalId%20eq%20%22E1%22");
  EXPECT_EQ(EqFilterQuery("externalId", R"(a"b)"), "externalId%20eq%20%22a%5C%22b%22");
  EXPECT_EQ(EqFilterQuery("userName", "zoë"), "userName%20eq%20%22zo%C3%AB%22");
  EXPECT_EQ(EqFilterQuery("userName", "a\nb"), "userName%20eq%20%22a%5Cnb%22");
  EXPECT_EQ(EqFilterQuery("userName", "a&b=c+d"), "userName%20eq%20%22a%26b%3Dc%2Bd%22");
}

TEST(FilterEscape, UrlEncodeKeepsOnlyUnreserved) {
  EXPECT_EQ(UrlEncode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(UrlEncode("a b/c?d#e%"), "a%20b%2Fc%3Fd%23e%25");
}

// --- Parsing users --------------------------------------------------------------------------

TEST(ParseUser, ReadsManagedAttributes) {
  auto u = ParseUser(R"({"id":"jc-9","externalId":"E9","userName":"bob","displayName":"Bob",
    "title":"Eng","locale":"Berlin","userType":"Employee","active":false,
    "name":{"givenName":"Bob","familyName":"Builder"},
    "emails":[{"value":"home@x.org","type":"home"},{"value":"bob@x.org","primary":true}],
    ")" + std::string(kEnt) +
                     R"(":{"employeeNumber":"9","department":"R&D","costCenter":"C1",
    "organization":"ACME"}})");
  ASSERT_TRUE(u.ok()) << u.error().message;
  EXPECT_EQ(u->id, "jc-9");
  EXPECT_EQ(u->external_id, "E9");
  const User& a = u->attributes;
  EXPECT_EQ(a.user_name, "bob");
  EXPECT_EQ(a.given_name, "Bob");
  EXPECT_EQ(a.family_name, "Builder");
  EXPECT_EQ(a.email, "bob@x.org");
  EXPECT_EQ(a.title, "Eng");
  EXPECT_EQ(a.locale, "Berlin");
  EXPECT_EQ(a.user_type, "Employee");
  EXPECT_EQ(a.active, false);
  EXPECT_EQ(a.employee_number, "9");
  EXPECT_EQ(a.department, "R&D");
  EXPECT_EQ(a.cost_center, "C1");
  EXPECT_EQ(a.organization, "ACME");
}

TEST(ParseUser, AttributeNamesAreCaseInsensitiveAndWrongTypesAreAbsent) {
  auto u = ParseUser(R"({"ID":"x","USERNAME":"bob","title":5,"active":"TRUE","name":"oops"})");
  ASSERT_TRUE(u.ok()) << u.error().message;
  EXPECT_EQ(u->id, "x");
  EXPECT_EQ(u->attributes.user_name, "bob");
  EXPECT_FALSE(u->attributes.title.has_value());
  EXPECT_EQ(u->attributes.active, true);
  EXPECT_FALSE(u->attributes.given_name.has_value());
}

TEST(ParseUser, RejectsAnswersWithoutId) {
  EXPECT_FALSE(ParseUser(R"({"userName":"bob"})").ok());
  EXPECT_FALSE(ParseUser("not json").ok());
  EXPECT_FALSE(ParseUser("[]").ok());
}

TEST(ParseListResponse, EmptyAndMalformed) {
  auto empty = ParseListResponse(R"({"totalResults":0})");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_FALSE(ParseListResponse(R"({"totalResults":1})").ok());
  EXPECT_FALSE(ParseListResponse(R"({"Resources":{}})").ok());
  auto two = ParseListResponse(R"({"Resources":[{"id":"a"},{"id":"b"}]})");
  ASSERT_TRUE(two.ok());
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[1].id, "b");
}

// --- Diffing --------------------------------------------------------------------------------

TEST(Diff, NothingDiffersMeansNoOperations) {
  EXPECT_TRUE(Diff(Desired(), Remote(kRemoteJane)).empty());
}

TEST(Diff, UnmanagedAttributesAreNotCompared) {
  User d;
  d.external_id = "E1";
  d.user_name = "jdoe";
  // The remote has names, emails and active; the desired user manages none of them.
  EXPECT_TRUE(Diff(d, Remote(kRemoteJane)).empty());
}

TEST(Diff, UserNameAndEmailCompareCaseInsensitively) {
  User d = Desired();
  d.user_name = "JDoe";
  d.email = "Jane.Doe@EXAMPLE.com";
  EXPECT_TRUE(Diff(d, Remote(kRemoteJane)).empty());
}

TEST(Diff, ChangedCoreAttributes) {
  User d = Desired();
  d.user_name = "jane.doe";
  d.title = "CTO";
  d.display_name = "Jane D.";
  auto ops = Diff(d, Remote(kRemoteJane));
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0], (PatchOp{PatchOp::Kind::kReplace, "userName", R"("jane.doe")"}));
  EXPECT_EQ(ops[1], (PatchOp{PatchOp::Kind::kReplace, "displayName", R"("Jane D.")"}));
  EXPECT_EQ(ops[2], (PatchOp{PatchOp::Kind::kReplace, "title", R"("CTO")"}));
}

TEST(Diff, NameSubAttributesUseDottedPaths) {
  User d = Desired();
  d.family_name = "Smith";
  auto ops = Diff(d, Remote(kRemoteJane));
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0], (PatchOp{PatchOp::Kind::kReplace, "name.familyName", R"("Smith")"}));
}

TEST(Diff, EmptyDesiredValueRemovesTheAttribute) {
  User d = Desired();
  d.title = "";
  auto ops = Diff(d, Remote(R"({"id":"x","externalId":"E1","userName":"jdoe","title":"CEO",
    "name":{"givenName":"Jane","familyName":"Doe"},
    "emails":[{"value":"jane.doe@example.com","primary":true}]})"));
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0], (PatchOp{PatchOp::Kind::kRemove, "title", ""}));
  // Already absent: nothing to remove.
  EXPECT_TRUE(Diff(d, Remote(kRemoteJane)).empty());
}

TEST(Diff, EmailReplacesThePrimaryAndKeepsOtherAddresses) {
  User d = Desired();
  d.email = "jane@new.example.com";
  auto ops = Diff(d, Remote(R"({"id":"x","externalId":"E1","userName":"jdoe",
    "name":{"givenName":"Jane","familyName":"Doe"},
    "emails":[{"value":"jane@home.example","type":"home"},
              {"value":"jane.doe@example.com","type":"work","primary":true}]})"));
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].path, "emails");
  EXPECT_EQ(ops[0].value_json, R"([{"value":"jane@home.example","type":"home"},)"
                               R"({"value":"jane@new.example.com","type":"work","primary":true}])");
}

TEST(Diff, EmailIsAddedAsPrimaryWorkAddressWhenAbsent) {
  User d = Desired();
  auto ops = Diff(d, Remote(R"({"id":"x","externalId":"E1","userName":"jdoe",
    "name":{"givenName":"Jane","familyName":"Doe"}})"));
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].value_json,
            R"([{"value":"jane.doe@example.com","type":"work","primary":true}])");
}

TEST(Diff, EnterpriseAttributesUseUrnPaths) {
  User d = Desired();
  d.department = "Sales";
  d.employee_number = "1001";
  d.cost_center = "";
  d.organization = "ACME";
  auto ops =
      Diff(d, Remote(R"({"id":"x","externalId":"E1","userName":"jdoe",
    "name":{"givenName":"Jane","familyName":"Doe"},
    "emails":[{"value":"jane.doe@example.com","primary":true}],
    ")" + std::string(kEnt) +
                     R"(":{"employeeNumber":"1001","department":"Eng","costCenter":"C9"}})"));
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0], (PatchOp{PatchOp::Kind::kReplace, Ent("department"), R"("Sales")"}));
  EXPECT_EQ(ops[1], (PatchOp{PatchOp::Kind::kRemove, Ent("costCenter"), ""}));
  EXPECT_EQ(ops[2], (PatchOp{PatchOp::Kind::kReplace, Ent("organization"), R"("ACME")"}));
}

TEST(Diff, ActiveAndExternalId) {
  User d = Desired();
  d.active = false;
  auto ops = Diff(d, Remote(R"({"id":"x","userName":"jdoe",
    "name":{"givenName":"Jane","familyName":"Doe"},
    "emails":[{"value":"jane.doe@example.com","primary":true}],"active":true})"));
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_EQ(ops[0], (PatchOp{PatchOp::Kind::kReplace, "externalId", R"("E1")"}));
  EXPECT_EQ(ops[1], (PatchOp{PatchOp::Kind::kReplace, "active", "false"}));
  // A server that does not return active gets it written.
  d.active = true;
  auto ops2 = Diff(d, Remote(R"({"id":"x","externalId":"E1","userName":"jdoe",
    "name":{"givenName":"Jane","familyName":"Doe"},
    "emails":[{"value":"jane.doe@example.com","primary":true}]})"));
  ASSERT_EQ(ops2.size(), 1u);
  EXPECT_EQ(ops2[0], (PatchOp{PatchOp::Kind::kReplace, "active", "true"}));
}

TEST(Diff, PasswordIsNeverPartOfAnUpdate) {
  User d = Desired();
  d.password = "S3cret!";
  EXPECT_TRUE(Diff(d, Remote(kRemoteJane)).empty());
}

// --- Request bodies -------------------------------------------------------------------------

TEST(PatchBody, ExactDocument) {
  std::vector<PatchOp> ops = {
      {PatchOp::Kind::kReplace, "name.givenName", R"("Ann")"},
      {PatchOp::Kind::kReplace, "emails", R"([{"value":"a@x.org","type":"work","primary":true}])"},
      {PatchOp::Kind::kReplace, Ent("department"), R"("Ops")"},
      {PatchOp::Kind::kReplace, "active", "false"},
      {PatchOp::Kind::kRemove, "title", ""},
  };
  EXPECT_EQ(
      PatchBody(ops),
      R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[)"
      R"({"op":"replace","path":"name.givenName","value":"Ann"},)"
      R"({"op":"replace","path":"emails","value":[{"value":"a@x.org","type":"work","primary":true}]},)"
      R"({"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Ops"},)"
      R"({"op":"replace","path":"active","value":false},)"
      R"({"op":"remove","path":"title"}]})");
}

TEST(CreateBody, CarriesAnchorEmployeeNumberActiveAndOnlyMappedAttributes) {
  User d = Desired();
  d.department = "Eng";
  // `active` is always explicit: JumpCloud's default for a missing one is active, whatever the
  // desired state meant.
  EXPECT_EQ(CreateBody(d),
            R"({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User",)"
            R"("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],)"
            R"("externalId":"E1","userName":"jdoe","name":{"givenName":"Jane","familyName":"Doe"},)"
            R"("emails":[{"value":"jane.doe@example.com","type":"work","primary":true}],)"
            R"("active":true,)"
            R"("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":)"
            R"({"employeeNumber":"E1","department":"Eng"}})");
}

TEST(CreateBody, PasswordOnlyWhenMappedAndRedactedForReports) {
  User d = Desired();
  EXPECT_EQ(CreateBody(d).find("password"), std::string::npos);
  d.password = "Hunter2!";
  d.employee_number = "1001";
  d.active = true;
  std::string body = CreateBody(d);
  EXPECT_NE(body.find(R"("password":"Hunter2!")"), std::string::npos);
  EXPECT_NE(body.find(R"("employeeNumber":"1001")"), std::string::npos);
  EXPECT_NE(body.find(R"("active":true)"), std::string::npos);
  std::string redacted = RedactBody(body);
  EXPECT_EQ(redacted.find("Hunter2"), std::string::npos);
  EXPECT_NE(redacted.find(R"("password":"[redacted]")"), std::string::npos);
}

TEST(RedactBody, NestedAndPatchPasswordsAndNonJson) {
  EXPECT_EQ(RedactBody(R"({"a":{"Password":"x"},"b":[{"password":"y"}]})"),
            R"({"a":{"Password":"[redacted]"},"b":[{"password":"[redacted]"}]})");
  EXPECT_EQ(RedactBody(R"({"Operations":[{"op":"replace","path":"password","value":"z"}]})"),
            R"({"Operations":[{"op":"replace","path":"password","value":"[redacted]"}]})");
  EXPECT_EQ(RedactBody("plain text"), "plain text");
}

TEST(MergeForPut, CarriesUnmanagedAttributesAndActiveForward) {
  RemoteUser remote = Remote(R"({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
    "id":"x","externalId":"E1","userName":"jdoe","nickName":"JJ","active":false,
    "name":{"givenName":"Jane","familyName":"Doe","honorificPrefix":"Dr."},
    "meta":{"resourceType":"User","version":"W/1"}})");
  auto body = MergeForPut(remote, {{PatchOp::Kind::kReplace, "name.givenName", R"("Janet")"},
                                   {PatchOp::Kind::kReplace, Ent("department"), R"("Ops")"},
                                   {PatchOp::Kind::kRemove, "nickName", ""}});
  ASSERT_TRUE(body.ok()) << body.error().message;
  EXPECT_EQ(
      *body,
      R"({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User",)"
      R"("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],)"
      R"("id":"x","externalId":"E1","userName":"jdoe","active":false,)"
      R"("name":{"givenName":"Janet","familyName":"Doe","honorificPrefix":"Dr."},)"
      R"("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Ops"}})");
}

// --- Service provider config and errors -----------------------------------------------------

TEST(ServiceProviderConfig, PatchSupportIsRead) {
  auto no = ParseServiceProviderConfig(R"({"patch":{"supported":false}})");
  ASSERT_TRUE(no.ok());
  EXPECT_FALSE(no->patch);
  auto absent = ParseServiceProviderConfig(R"({"filter":{"supported":true}})");
  ASSERT_TRUE(absent.ok());
  EXPECT_TRUE(absent->patch);
  EXPECT_FALSE(ParseServiceProviderConfig("<html>").ok());
}

constexpr int64_t kNow = 1'700'000'000'000;  // 2023-11-14T22:13:20Z

TEST(ScimError, StatusAsStringWithScimTypeAndDetail) {
  Error e = ErrorFromResponse(
      400,
      R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400",)"
      R"("scimType":"invalidValue","detail":"userName must not contain '@'"})",
      "", kNow);
  EXPECT_EQ(e.kind, ErrorKind::kPermanent);
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.message,
            "SCIM server rejected the request (HTTP 400, scimType invalidValue): userName must "
            "not contain '@'");
  EXPECT_FALSE(e.retry_after.has_value());
}

TEST(ScimError, StatusAsNumber) {
  Error e = ErrorFromResponse(409, R"({"status":409,"scimType":"uniqueness","detail":"taken"})", "",
                              kNow);
  EXPECT_EQ(e.kind, ErrorKind::kConflict);
  EXPECT_EQ(e.message, "SCIM server reported a conflict (HTTP 409, scimType uniqueness): taken");
}

TEST(ScimError, BodyStatusThatDisagreesIsReported) {
  Error e = ErrorFromResponse(400, R"({"status":"409","detail":"dup"})", "", kNow);
  EXPECT_EQ(e.kind, ErrorKind::kPermanent);
  EXPECT_NE(e.message.find("body status 409"), std::string::npos) << e.message;
}

TEST(ScimError, KindsByStatus) {
  for (int s : {408, 429, 500, 502, 503, 504}) {
    EXPECT_EQ(ErrorFromResponse(s, "", "", kNow).kind, ErrorKind::kTransient) << s;
  }
  for (int s : {401, 403}) {
    Error e = ErrorFromResponse(s, "", "", kNow);
    EXPECT_EQ(e.kind, ErrorKind::kAuth) << s;
    EXPECT_NE(e.message.find("api_key"), std::string::npos);
  }
  EXPECT_EQ(ErrorFromResponse(404, "", "", kNow).kind, ErrorKind::kNotFound);
  EXPECT_EQ(ErrorFromResponse(409, "", "", kNow).kind, ErrorKind::kConflict);
  for (int s : {400, 405, 413, 422, 501, 505, 302}) {
    EXPECT_EQ(ErrorFromResponse(s, "", "", kNow).kind, ErrorKind::kPermanent) << s;
  }
}

TEST(ScimError, NonJsonBodyBecomesAOneLineSnippet) {
  Error e = ErrorFromResponse(502, "<html>\n<b>Bad gateway</b>\n</html>", "", kNow);
  EXPECT_EQ(e.kind, ErrorKind::kTransient);
  EXPECT_NE(e.message.find("<html> <b>Bad gateway</b> </html>"), std::string::npos) << e.message;
}

TEST(ScimError, RetryAfterInBothForms) {
  Error seconds = ErrorFromResponse(429, "", "7", kNow);
  ASSERT_TRUE(seconds.retry_after.has_value());
  EXPECT_EQ(seconds.retry_after->count(), 7000);
  Error date = ErrorFromResponse(503, "", "Tue, 14 Nov 2023 22:13:50 GMT", kNow);
  ASSERT_TRUE(date.retry_after.has_value());
  EXPECT_EQ(date.retry_after->count(), 30000);
  EXPECT_FALSE(ErrorFromResponse(429, "", "soon", kNow).retry_after.has_value());
}

// The snapshot of the last applied state: every managed attribute round-trips, the password
// never enters it, and anything unexpected is refused (the converger then reads the user).
TEST(Snapshot, RoundTripsTheManagedAttributesWithoutThePassword) {
  User u;
  u.external_id = "E1";
  u.user_name = "jdoe";
  u.given_name = "Jane";
  u.family_name = "Doe";
  u.display_name = "Jane Doe";
  u.email = "jane@example.com";
  u.title = "";
  u.locale = "Berlin";
  u.user_type = "Employee";
  u.department = "Engineering";
  u.cost_center = "CC1";
  u.organization = "Acme";
  u.employee_number = "0042";
  u.password = "secret";
  u.active = false;
  std::string json = SnapshotJson(u);
  EXPECT_EQ(json.find("secret"), std::string::npos) << json;
  EXPECT_EQ(json.find("E1"), std::string::npos) << json;
  auto back = ParseSnapshot(json);
  ASSERT_TRUE(back.ok()) << back.error().message;
  User want = u;
  want.external_id.clear();
  want.password.reset();
  EXPECT_EQ(*back, want);
  EXPECT_FALSE(ParseSnapshot("not json").ok());
  EXPECT_FALSE(ParseSnapshot("[]").ok());
  EXPECT_FALSE(ParseSnapshot(R"({"title":1})").ok());
  EXPECT_FALSE(ParseSnapshot(R"({"active":"yes"})").ok());
  EXPECT_FALSE(ParseSnapshot(R"({"nickName":"JJ"})").ok());  // a newer scimsync's key
}

TEST(ReplaceAll, EveryManagedAttributeEmptyOnesRemovedNoPassword) {
  User u;
  u.external_id = "E1";
  u.user_name = "jdoe";
  u.given_name = "Jane";
  u.title = "";
  u.email = "jane@example.com";
  u.department = "Sales";
  u.password = "secret";
  u.active = true;
  std::string body = PatchBody(ReplaceAll(u));
  EXPECT_EQ(
      body,
      R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[)"
      R"({"op":"replace","path":"userName","value":"jdoe"},)"
      R"({"op":"replace","path":"externalId","value":"E1"},)"
      R"({"op":"replace","path":"name.givenName","value":"Jane"},)"
      R"({"op":"remove","path":"title"},)"
      R"({"op":"replace","path":"emails","value":[{"value":"jane@example.com","type":"work","primary":true}]},)"
      R"({"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Sales"},)"
      R"({"op":"replace","path":"active","value":true}]})");
}

}  // namespace
}  // namespace scimsync::scim
