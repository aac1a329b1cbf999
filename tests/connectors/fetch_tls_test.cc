// The HRIS fetcher over real TLS: a self-signed or wrong-host certificate is refused (there is no
// switch to turn that off), and a CA given in the profile's settings is trusted.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "scimsync/connectors/profile.h"
#include "test_support.h"

namespace scimsync::connectors {
namespace {

using scimsync::testing::TempDir;

class TlsHris {
 public:
  // `san`: the certificate's subjectAltName, "IP:127.0.0.1" or "DNS:other.example".
  explicit TlsHris(const std::string& san) {
    cert_ = dir_.File("cert.pem");
    const std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=scimsync-hris-test"
        " -addext subjectAltName=" +
        san + " -keyout " + dir_.File("key.pem") + " -out " + cert_ + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) return;
    server_ = std::make_unique<httplib::SSLServer>(cert_.c_str(), dir_.File("key.pem").c_str());
    server_->Get("/v1/employees/42", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"id":"42"})", "application/json");
    });
    port_ = server_->bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    ok_ = port_ > 0 && scimsync::testing::WaitForPort(port_, 5000);
  }
  ~TlsHris() {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
  }
  bool ok() const { return ok_; }
  const std::string& cert() const { return cert_; }
  HttpRequest Get() const {
    HttpRequest r;
    r.url = "https://127.0.0.1:" + std::to_string(port_) + "/v1/employees/42";
    r.headers = {{"Authorization", "Bearer hris-token-must-not-leak"}};
    r.timeout_ms = 5000;
    return r;
  }

 private:
  TempDir dir_;
  std::string cert_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
  bool ok_ = false;
};

TEST(HttpFetcherTls, ASelfSignedServerIsRefused) {
  TlsHris hris("IP:127.0.0.1");
  ASSERT_TRUE(hris.ok()) << "openssl CLI needed (scripts/install-deps)";
  auto r = NewHttpFetcher()->Fetch("", hris.Get());
  ASSERT_FALSE(r.ok()) << "a self-signed HRIS answered " << r->status;
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_EQ(r.error().message.find("hris-token-must-not-leak"), std::string::npos);
}

TEST(HttpFetcherTls, ACertificateForAnotherHostIsRefusedEvenWhenItsCaIsTrusted) {
  TlsHris hris("DNS:other.example");
  ASSERT_TRUE(hris.ok());
  HttpFetcherOptions o;
  o.ca_file = hris.cert();
  auto r = NewHttpFetcher(o)->Fetch("", hris.Get());
  EXPECT_FALSE(r.ok()) << "the host name was not checked";
}

TEST(HttpFetcherTls, AServerSignedByTheConfiguredCaIsTrusted) {
  TlsHris hris("IP:127.0.0.1");
  ASSERT_TRUE(hris.ok());
  HttpFetcherOptions o;
  o.ca_file = hris.cert();
  auto r = NewHttpFetcher(o)->Fetch("", hris.Get());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"id":"42"})");
}

}  // namespace
}  // namespace scimsync::connectors
