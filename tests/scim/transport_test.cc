// The transports: settings checked up front, TLS verification (certificate and host name)
// against a local HTTPS server, and the dry run's file.
#include "scimsync/scim/transport.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <rapidjson/document.h>

#include <cstdlib>
#include <sstream>
#include <thread>

#include "fake_scim_server.h"
#include "scimsync/clock.h"
#include "scimsync/scim/converger.h"
#include "test_support.h"

namespace scimsync::scim {
namespace {

using scimsync::testing::TempDir;

TransportOptions Options(const std::string& base_url) {
  TransportOptions o;
  o.base_url = base_url;
  o.api_key = "k3y-value";
  return o;
}

std::string ErrorOf(const Result<std::unique_ptr<Transport>>& r) {
  return r.ok() ? "" : r.error().message;
}

TEST(HttpTransport, ARefusedConnectionIsReportedAsRefusedNotAsATimeout) {
  const int closed = scimsync::testing::FreePort();  // nothing listens there
  auto t = NewHttpTransport(Options("http://127.0.0.1:" + std::to_string(closed) + "/scim/v2"));
  ASSERT_TRUE(t.ok());
  auto r = (*t)->Send({"GET", "/Users?startIndex=1&count=1", ""}, 5000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("connection refused"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("timeout"), std::string::npos) << r.error().message;
}

TEST(HttpTransport, SettingsAreCheckedUpFront) {
  auto plain = NewHttpTransport(Options("http://scim.example.com/scim/v2"));
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.error().kind, ErrorKind::kInvalid);
  EXPECT_NE(ErrorOf(plain).find("https"), std::string::npos);

  EXPECT_TRUE(NewHttpTransport(Options("http://127.0.0.1:9/scim/v2")).ok());
  EXPECT_TRUE(NewHttpTransport(Options("http://localhost:9/scim/v2")).ok());
  EXPECT_TRUE(NewHttpTransport(Options("https://api.jumpcloud.com/scim/v2")).ok());
  EXPECT_FALSE(NewHttpTransport(Options("ftp://x/y")).ok());
  EXPECT_FALSE(NewHttpTransport(Options("not a url")).ok());

  TransportOptions no_key = Options("https://api.jumpcloud.com/scim/v2");
  no_key.api_key.clear();
  EXPECT_NE(ErrorOf(NewHttpTransport(no_key)).find("api_key_env"), std::string::npos);

  TransportOptions bad_header = Options("https://api.jumpcloud.com/scim/v2");
  bad_header.auth_header = "x api key";
  EXPECT_NE(ErrorOf(NewHttpTransport(bad_header)).find("auth_header"), std::string::npos);

  TransportOptions bad_ca = Options("https://api.jumpcloud.com/scim/v2");
  bad_ca.ca_file = "/nonexistent/ca.pem";
  EXPECT_NE(ErrorOf(NewHttpTransport(bad_ca)).find("ca_file"), std::string::npos);

  TempDir dir;
  scimsync::testing::WriteFile(dir.File("junk.pem"), "not a certificate\n");
  bad_ca.ca_file = dir.File("junk.pem");
  EXPECT_NE(ErrorOf(NewHttpTransport(bad_ca)).find("no PEM certificates"), std::string::npos);
}

TEST(HttpTransport, CustomAuthHeader) {
  testing::FakeScimServer server({.api_key = ""});
  ASSERT_TRUE(server.Start());
  TransportOptions o = Options(server.base_url());
  o.auth_header = "X-Custom-Key";
  auto t = NewHttpTransport(o);
  ASSERT_TRUE(t.ok());
  auto r = (*t)->Send({"GET", "/ServiceProviderConfig", ""}, 2000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(server.requests().at(0).headers.at("x-custom-key"), "k3y-value");
  EXPECT_EQ((*t)->Describe({"GET", "/Users/a", ""}), "GET " + server.base_url() + "/Users/a");
}

// A local HTTPS server with a self-signed certificate made by the openssl CLI.
class TlsServer {
 public:
  // `san` is the certificate's subjectAltName, e.g. "IP:127.0.0.1" or "DNS:other.example".
  explicit TlsServer(const std::string& san) {
    cert_ = dir_.File("cert.pem");
    std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=scimsync-test"
        " -addext subjectAltName=" +
        san + " -keyout " + dir_.File("key.pem") + " -out " + cert_ + " >/dev/null 2>&1";
    ok_ = std::system(cmd.c_str()) == 0;
    if (!ok_) return;
    server_ = std::make_unique<httplib::SSLServer>(cert_.c_str(), dir_.File("key.pem").c_str());
    server_->Get("/scim/v2/ServiceProviderConfig", [](const auto&, auto& res) {
      res.set_content(R"({"patch":{"supported":true}})", "application/scim+json");
    });
    port_ = server_->bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    ok_ = port_ > 0 && scimsync::testing::WaitForPort(port_, 5000);
  }
  ~TlsServer() {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
  }
  bool ok() const { return ok_; }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/scim/v2"; }
  const std::string& cert() const { return cert_; }

 private:
  TempDir dir_;
  std::string cert_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
  bool ok_ = false;
};

Result<HttpResponse> Probe(const TransportOptions& o) {
  auto t = NewHttpTransport(o);
  if (!t.ok()) return t.error();
  return (*t)->Send({"GET", "/ServiceProviderConfig", ""}, 5000);
}

TEST(HttpTransport, UntrustedCertificateIsRefused) {
  TlsServer tls("IP:127.0.0.1");
  ASSERT_TRUE(tls.ok()) << "openssl CLI needed (scripts/install-deps)";
  auto r = Probe(Options(tls.url()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("target.ca_file"), std::string::npos) << r.error().message;
}

TEST(HttpTransport, CertificateFromCaFileIsTrusted) {
  TlsServer tls("IP:127.0.0.1");
  ASSERT_TRUE(tls.ok());
  TransportOptions o = Options(tls.url());
  o.ca_file = tls.cert();
  auto r = Probe(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
}

TEST(HttpTransport, CaFileExtendsTheSystemStoreInsteadOfReplacingIt) {
  TlsServer system_trusted("IP:127.0.0.1");
  TlsServer other("IP:127.0.0.1");
  ASSERT_TRUE(system_trusted.ok() && other.ok());
  // OpenSSL's default verify paths honour SSL_CERT_FILE: stand-in for the system store.
  setenv("SSL_CERT_FILE", system_trusted.cert().c_str(), 1);
  TransportOptions o = Options(system_trusted.url());
  o.ca_file = other.cert();
  auto r = Probe(o);
  unsetenv("SSL_CERT_FILE");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
}

TEST(HttpTransport, CertificateForAnotherHostIsRefused) {
  TlsServer tls("DNS:other.example");
  ASSERT_TRUE(tls.ok());
  TransportOptions o = Options(tls.url());
  o.ca_file = tls.cert();
  auto r = Probe(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
}

TEST(HttpTransport, InsecureSkipVerifyAcceptsAnyCertificate) {
  TlsServer tls("DNS:other.example");
  ASSERT_TRUE(tls.ok());
  TransportOptions o = Options(tls.url());
  o.insecure_skip_verify = true;
  auto r = Probe(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
}

// --- Dry run --------------------------------------------------------------------------------

std::vector<rapidjson::Document> Lines(const std::string& file) {
  std::vector<rapidjson::Document> out;
  std::istringstream in(scimsync::testing::ReadFile(file));
  std::string line;
  while (std::getline(in, line)) {
    out.emplace_back();
    out.back().Parse(line.c_str(), line.size());
    EXPECT_FALSE(out.back().HasParseError()) << line;
  }
  return out;
}

TEST(DryRunTransport, AppendsRedactedJsonLinesAndAnswersAsAbsent) {
  TempDir dir;
  std::string file = dir.File("a/b/dry-run.jsonl");
  auto t = NewDryRunTransport(Options("https://api.jumpcloud.com/scim/v2"), file);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_TRUE((*t)->dry_run());

  auto list = (*t)->Send({"GET", "/Users?filter=externalId%20eq%20%22E1%22", ""}, 1000);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->status, 200);
  EXPECT_NE(list->body.find("\"totalResults\":0"), std::string::npos);
  auto one = (*t)->Send({"GET", "/Users/abc", ""}, 1000);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->status, 404);
  auto created =
      (*t)->Send({"POST", "/Users", R"({"userName":"jdoe","password":"Hunter2!"})"}, 1000);
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->status, 201);
  EXPECT_NE(created->body.find("\"id\":\"dry-run-1\""), std::string::npos);

  std::string text = scimsync::testing::ReadFile(file);
  EXPECT_EQ(text.find("k3y-value"), std::string::npos);
  EXPECT_EQ(text.find("Hunter2"), std::string::npos);
  auto lines = Lines(file);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_STREQ(lines[2]["method"].GetString(), "POST");
  EXPECT_STREQ(lines[2]["url"].GetString(), "https://api.jumpcloud.com/scim/v2/Users");
  EXPECT_STREQ(lines[2]["headers"]["x-api-key"].GetString(), "[redacted]");
  EXPECT_STREQ(lines[2]["headers"]["Content-Type"].GetString(), "application/scim+json");
  EXPECT_STREQ(lines[2]["body"]["userName"].GetString(), "jdoe");
  EXPECT_STREQ(lines[2]["body"]["password"].GetString(), "[redacted]");
  EXPECT_TRUE(lines[0]["ts_ms"].IsInt64());
  EXPECT_FALSE(lines[0].HasMember("body"));
}

TEST(DryRunTransport, UnwritableFileIsReportedUpFront) {
  auto t = NewDryRunTransport(Options("https://api.jumpcloud.com/scim/v2"),
                              "/proc/scimsync-cannot-write/dry-run.jsonl");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("dry_run_file"), std::string::npos);
}

TEST(DryRunTransport, ConvergeRecordsACreateAndLeavesLinksAlone) {
  TempDir dir;
  std::string file = dir.File("dry.jsonl");
  auto t = NewDryRunTransport(Options("https://api.jumpcloud.com/scim/v2"), file);
  ASSERT_TRUE(t.ok());
  FakeClock clock;
  SequenceRandom random({0.5});
  MemoryLinkStore links;
  auto limiter = NewMemoryRateLimiter({}, clock);
  ConvergerDeps deps{t->get(), limiter.get(), &links,
                     &clock,   &random,       [&clock](int64_t ms) { clock.AdvanceMs(ms); }};
  Converger c(ConvergerOptions{}, deps);

  Job job;
  job.scope = "bamboohr";
  job.desired.external_id = "E7";
  job.desired.user_name = "ann";
  job.desired.email = "ann@example.com";
  Outcome o = c.Converge(job);
  ASSERT_EQ(o.decision, Decision::kDone) << o.reason;
  EXPECT_EQ(o.change, Change::kCreated);
  EXPECT_EQ(o.jumpcloud_id, "dry-run-1");
  EXPECT_EQ(links.size(), 0u);

  // The userName is looked up only after a 409, which a dry run never gets: a hire is a lookup
  // and the POST.
  auto lines = Lines(file);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_STREQ(lines[0]["url"].GetString(),
               "https://api.jumpcloud.com/scim/v2/ServiceProviderConfig");
  EXPECT_STREQ(lines[1]["url"].GetString(),
               "https://api.jumpcloud.com/scim/v2/Users?filter=externalId%20eq%20%22E7%22");
  EXPECT_STREQ(lines[2]["method"].GetString(), "POST");
  EXPECT_STREQ(lines[2]["body"]["externalId"].GetString(), "E7");

  // A link from an earlier real run is read (its GET is recorded) but never dropped. Its
  // snapshot is not used: the dry run records what a first sync would send.
  ASSERT_TRUE(
      links.PutApplied("bamboohr", "E7", {"jc-real", SnapshotJson(job.desired), clock.NowMs()})
          .ok());
  Outcome again = c.Converge(job);
  ASSERT_EQ(again.decision, Decision::kDone) << again.reason;
  EXPECT_EQ(links.Get("bamboohr", "E7")->value_or(""), "jc-real");
  auto after = Lines(file);
  ASSERT_EQ(after.size(), 6u);
  EXPECT_STREQ(after[3]["url"].GetString(), "https://api.jumpcloud.com/scim/v2/Users/jc-real");
  EXPECT_STREQ(after[5]["method"].GetString(), "POST");
}

}  // namespace
}  // namespace scimsync::scim
