// The HRIS API client that fetch-back and listing share, against an in-process HTTP server over
// the real fetcher: each auth kind's header, the OAuth2 token cache and its refresh, the
// credentials a call needs, and what each class of HTTP status becomes.
#include "hris_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "fake_hris.h"
#include "test_support.h"
#include "test_util.h"

namespace scimsync::connectors::internal {
namespace {

using testing::FakeHris;

constexpr int64_t kNow = 1'795'000'000;

class Client : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("HRIS_CLIENT_TEST_KEY", "key-123", 1);  // NOLINT(concurrency-mt-unsafe)
    // GET /api/people: answers `status_` with `retry_after_` and records what came.
    hris_.server().Get("/api/people", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu_);
      ++calls_;
      seen_ = req.headers;
      if (req.get_header_value("Authorization") == rejected_) {
        res.status = 401;
        return;
      }
      res.status = status_;
      if (!retry_after_.empty()) res.set_header("Retry-After", retry_after_);
      res.set_content(R"({"people":[]})", "application/json");
    });
    hris_.server().Post("/token", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu_);
      const int n = ++token_calls_;
      token_form_ = req.body;
      token_auth_ = req.get_header_value("Authorization");
      if (token_status_ != 200) {
        res.status = token_status_;
        if (!token_retry_after_.empty()) res.set_header("Retry-After", token_retry_after_);
        res.set_content(R"({"error":"invalid_client"})", "application/json");
        return;
      }
      res.set_content(token_body_.empty() ? R"({"access_token":"tok-)" + std::to_string(n) +
                                                R"(","expires_in":600})"
                                          : token_body_,
                      "application/json");
    });
  }

  // One GET of /api/people through a client with `auth`, at `now`.
  Result<HttpResponse> Get(const FetchAuthSpec& auth, int64_t now = kNow,
                           const HrisClient::Headers& headers = {}) {
    HrisClient client("p", auth, headers, 5000, tokens_, *fetcher_, now);
    client.SetVariable("key", "key-123");
    client.SetVariable("tenant", "acme");
    HttpRequest req;
    req.url = hris_.url() + "/api/people";
    return client.Send("list", std::move(req));
  }

  std::string Seen(const std::string& header) {
    std::lock_guard lock(mu_);
    auto it = seen_.find(header);
    return it == seen_.end() ? "(absent)" : it->second;
  }

  FetchAuthSpec OAuth2() const {
    FetchAuthSpec a;
    a.type = FetchAuthSpec::Type::kOAuth2;
    a.token_url = hris_.url() + "/token";
    a.client_id = "cid-{tenant}";
    a.client_secret = "csecret";
    return a;
  }

  // What `status` (with `retry_after`) becomes, at `now`.
  Error ErrorFor(int status, const std::string& retry_after = "", int64_t now = kNow) {
    {
      std::lock_guard lock(mu_);
      status_ = status;
      retry_after_ = retry_after;
    }
    FetchAuthSpec none;
    HrisClient client("p", none, {}, 5000, tokens_, *fetcher_, now);
    HttpRequest req;
    req.url = hris_.url() + "/api/people";
    auto res = client.Send("list", std::move(req));
    EXPECT_TRUE(res.ok()) << res.error().message;
    EXPECT_EQ(res->status, status);
    return client.StatusError("HRIS API GET /api/people", *res, "check api.key", "check list.path");
  }

  FakeHris hris_;
  std::unique_ptr<Fetcher> fetcher_ = NewHttpFetcher();
  TokenCache tokens_;
  std::mutex mu_;
  int calls_ = 0;
  httplib::Headers seen_;
  int status_ = 200;
  std::string retry_after_;
  std::string rejected_ = "(none)";  // an Authorization value the API answers 401
  int token_calls_ = 0;
  int token_status_ = 200;
  std::string token_retry_after_;
  std::string token_body_;
  std::string token_form_;
  std::string token_auth_;
};

TEST_F(Client, EachAuthKindSendsItsHeader) {
  FetchAuthSpec none;
  ASSERT_TRUE(Get(none).ok());
  EXPECT_EQ(Seen("Authorization"), "(absent)");

  FetchAuthSpec basic;
  basic.type = FetchAuthSpec::Type::kBasic;
  basic.username = "{key}";
  basic.password = "x";
  ASSERT_TRUE(Get(basic).ok());
  EXPECT_EQ(Seen("Authorization"), "Basic a2V5LTEyMzp4");  // base64("key-123:x")

  FetchAuthSpec bearer;
  bearer.type = FetchAuthSpec::Type::kBearer;
  bearer.token = "{key}";
  ASSERT_TRUE(Get(bearer).ok());
  EXPECT_EQ(Seen("Authorization"), "Bearer key-123");

  FetchAuthSpec header;
  header.type = FetchAuthSpec::Type::kHeader;
  header.header = "X-Api-Key";
  header.token = "{key}";
  ASSERT_TRUE(Get(header).ok());
  EXPECT_EQ(Seen("X-Api-Key"), "key-123");
  EXPECT_EQ(Seen("Authorization"), "(absent)");
  header.header = "Authorization";
  header.scheme = "Token";
  ASSERT_TRUE(Get(header).ok());
  EXPECT_EQ(Seen("Authorization"), "Token key-123");

  ASSERT_TRUE(Get(OAuth2()).ok());
  EXPECT_EQ(Seen("Authorization"), "Bearer tok-1");
  std::lock_guard lock(mu_);
  EXPECT_EQ(token_form_, "grant_type=client_credentials&client_id=cid-acme&client_secret=csecret");
  EXPECT_EQ(token_auth_, "");
}

TEST_F(Client, TheProfileHeadersAreExpandedAndSentWithTheAuth) {
  FetchAuthSpec bearer;
  bearer.type = FetchAuthSpec::Type::kBearer;
  bearer.token = "{key}";
  ASSERT_TRUE(Get(bearer, kNow, {{"Accept", "application/json"}, {"X-Company", "{tenant}"}}).ok());
  EXPECT_EQ(Seen("Accept"), "application/json");
  EXPECT_EQ(Seen("X-Company"), "acme");
  EXPECT_EQ(Seen("Authorization"), "Bearer key-123");
}

TEST_F(Client, AnOAuth2ClientMaySendItsSecretAsBasicAuth) {
  FetchAuthSpec a = OAuth2();
  a.client_auth_basic = true;
  a.scope = "employees:read";
  ASSERT_TRUE(Get(a).ok());
  std::lock_guard lock(mu_);
  EXPECT_EQ(token_auth_, "Basic Y2lkLWFjbWU6Y3NlY3JldA==");  // base64("cid-acme:csecret")
  EXPECT_EQ(token_form_, "grant_type=client_credentials&scope=employees%3Aread");
}

TEST_F(Client, ATokenIsCachedUntilAMinuteBeforeItExpires) {
  ASSERT_TRUE(Get(OAuth2()).ok());
  ASSERT_TRUE(Get(OAuth2(), kNow + 539).ok());  // expires at +600: still good
  EXPECT_EQ(token_calls_, 1);
  EXPECT_EQ(Seen("Authorization"), "Bearer tok-1");
  ASSERT_TRUE(Get(OAuth2(), kNow + 540).ok());  // within a minute of expiry: refreshed
  EXPECT_EQ(token_calls_, 2);
  EXPECT_EQ(Seen("Authorization"), "Bearer tok-2");
  ASSERT_TRUE(Get(OAuth2(), kNow + 600).ok());  // the new one counts from its own issue
  EXPECT_EQ(token_calls_, 2);
}

TEST_F(Client, ATokenRevokedEarlyIsRefreshedOnceOnA401) {
  ASSERT_TRUE(Get(OAuth2()).ok());
  {
    std::lock_guard lock(mu_);
    rejected_ = "Bearer tok-1";
    calls_ = 0;
  }
  auto res = Get(OAuth2(), kNow + 10);
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(token_calls_, 2);
  EXPECT_EQ(calls_, 2);  // the refused request and its one retry
  EXPECT_EQ(Seen("Authorization"), "Bearer tok-2");
  // A fresh token refused too: the 401 goes back to the caller, no loop.
  {
    std::lock_guard lock(mu_);
    rejected_ = "Bearer tok-3";
    token_body_ = R"({"access_token":"tok-3","expires_in":600})";
    calls_ = 0;
  }
  tokens_.Put(hris_.url() + "/token\ncid-acme", "tok-3", kNow + 600);
  res = Get(OAuth2(), kNow + 20);
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(calls_, 2);
}

TEST_F(Client, PersonioNestsItsTokenUnderData) {
  token_body_ = R"({"success":true,"data":{"token":"personio-tok"}})";
  ASSERT_TRUE(Get(OAuth2()).ok());
  EXPECT_EQ(Seen("Authorization"), "Bearer personio-tok");
}

TEST_F(Client, ARejectedClientIsAnAuthErrorThatNamesTheSettingsNotTheSecret) {
  for (int status : {400, 401, 403}) {
    SCOPED_TRACE(status);
    token_status_ = status;
    auto res = Get(OAuth2());
    ASSERT_FALSE(res.ok());
    EXPECT_EQ(res.error().kind, ErrorKind::kAuth);
    EXPECT_EQ(res.error().http_status, status);
    EXPECT_NE(res.error().message.find("client id and secret"), std::string::npos);
    EXPECT_EQ(res.error().message.find("csecret"), std::string::npos);
  }
  // A throttled token endpoint is waited for like the API itself.
  token_status_ = 429;
  token_retry_after_ = testing::HttpDate(kNow + 40);
  auto res = Get(OAuth2());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ErrorKind::kTransient);
  ASSERT_TRUE(res.error().retry_after.has_value());
  EXPECT_EQ(res.error().retry_after->count(), 40'000);
  token_status_ = 200;
  token_body_ = R"({"token_type":"Bearer"})";
  res = Get(OAuth2());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ErrorKind::kTransient);
  EXPECT_NE(res.error().message.find("without access_token"), std::string::npos);
}

TEST_F(Client, AuthStatusesAreAuthErrorsWithTheHint) {
  for (int status : {401, 403}) {
    Error e = ErrorFor(status);
    EXPECT_EQ(e.kind, ErrorKind::kAuth);
    EXPECT_EQ(e.http_status, status);
    EXPECT_EQ(e.message,
              "HRIS API GET /api/people answered " + std::to_string(status) + ": check api.key");
  }
}

TEST_F(Client, ANotFoundIsPermanentWithItsHint) {
  Error e = ErrorFor(404);
  EXPECT_EQ(e.kind, ErrorKind::kPermanent);
  EXPECT_EQ(e.message, "HRIS API GET /api/people answered 404: check list.path");
  e = ErrorFor(410);
  EXPECT_EQ(e.kind, ErrorKind::kPermanent);
  EXPECT_EQ(e.message, "HRIS API GET /api/people answered 410");
}

TEST_F(Client, OtherClientErrorsArePermanent) {
  for (int status : {400, 405, 422}) {
    Error e = ErrorFor(status);
    EXPECT_EQ(e.kind, ErrorKind::kPermanent) << status;
    EXPECT_EQ(e.http_status, status);
    EXPECT_FALSE(e.retry_after.has_value());
  }
}

TEST_F(Client, BusyStatusesAreTransientAndHonourRetryAfterInSecondsOrAsADate) {
  for (int status : {408, 429, 500, 502, 503, 504}) {
    Error e = ErrorFor(status);
    EXPECT_EQ(e.kind, ErrorKind::kTransient) << status;
    EXPECT_EQ(e.http_status, status);
    EXPECT_FALSE(e.retry_after.has_value());
  }
  Error e = ErrorFor(429, "7");
  ASSERT_TRUE(e.retry_after.has_value());
  EXPECT_EQ(e.retry_after->count(), 7000);
  // The date is 2 minutes after kNow; asked 30 s later, 90 s are left.
  e = ErrorFor(503, testing::HttpDate(kNow + 120), kNow + 30);
  ASSERT_TRUE(e.retry_after.has_value());
  EXPECT_EQ(e.retry_after->count(), 90'000);
  e = ErrorFor(429, testing::HttpDate(kNow - 5));  // already past: now
  ASSERT_TRUE(e.retry_after.has_value());
  EXPECT_EQ(e.retry_after->count(), 0);
  e = ErrorFor(503, "soon");  // neither: the caller's backoff decides
  EXPECT_FALSE(e.retry_after.has_value());
}

TEST_F(Client, OnlyTheCredentialsACallUsesMustBeConfigured) {
  FetchAuthSpec bearer;
  bearer.type = FetchAuthSpec::Type::kBearer;
  bearer.token = "{key}";
  HrisClient client("p", bearer, {}, 5000, tokens_, *fetcher_, kNow);
  const std::map<std::string, config::SecretRef> refs = {{"key", {"HRIS_CLIENT_TEST_KEY", ""}}};
  // client_secret is declared but nothing here uses it.
  ASSERT_TRUE(client.ResolveCredentials({"key", "client_secret"}, refs, client.Templates()).ok());
  EXPECT_EQ(client.Expand("{key}", Escape::kNone), "key-123");

  HrisClient missing("p", bearer, {}, 5000, tokens_, *fetcher_, kNow);
  Status st = missing.ResolveCredentials({"key"}, {}, missing.Templates());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind, ErrorKind::kInvalid);
  EXPECT_NE(st.error().message.find("set api.key_env or api.key_file"), std::string::npos);

  HrisClient unset("p", bearer, {}, 5000, tokens_, *fetcher_, kNow);
  st = unset.ResolveCredentials({"key"}, {{"key", {"HRIS_CLIENT_TEST_UNSET", ""}}},
                                unset.Templates());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind, ErrorKind::kInvalid);
  EXPECT_NE(st.error().message.find("HRIS_CLIENT_TEST_UNSET"), std::string::npos);

  // A canned fetcher (map --record) needs no secrets: a placeholder stands in.
  auto canned = NewRecordedFetcher("{}", 200);
  HrisClient dry("p", bearer, {}, 5000, tokens_, *canned, kNow);
  ASSERT_TRUE(dry.ResolveCredentials({"key"}, {}, dry.Templates()).ok());
  EXPECT_EQ(dry.Expand("{key}", Escape::kNone), "(key)");
}

TEST_F(Client, TemplatesEscapeForWhereTheyGo) {
  rapidjson::Document payload;
  payload.Parse(R"({"id":"a/b \"c\""})");
  HrisClient client("p", FetchAuthSpec{}, {}, 5000, tokens_, *fetcher_, kNow);
  client.SetVariable("employee_key", "E 1");
  client.set_payload(&payload);
  EXPECT_EQ(client.Expand("/e/{employee_key}/{/id}", Escape::kUrl), "/e/E%201/a%2Fb%20%22c%22");
  EXPECT_EQ(client.Expand(R"({"q":"{/id}"})", Escape::kJson), R"({"q":"a/b \"c\""})");
  EXPECT_EQ(client.Expand("{unknown}{/missing}", Escape::kNone), "");
}

TEST_F(Client, NoAnswerIsTransient) {
  FetchAuthSpec none;
  HrisClient client("p", none, {}, 5000, tokens_, *fetcher_, kNow);
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(scimsync::testing::FreePort()) + "/x";
  auto res = client.Send("list", std::move(req));
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ErrorKind::kTransient);
}

}  // namespace
}  // namespace scimsync::connectors::internal
