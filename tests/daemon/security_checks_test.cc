// The start-up warnings about settings that weaken security (daemon/security_checks.h).
#include "scimsync/daemon/security_checks.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "scimsync/log.h"

namespace scimsync::daemon {
namespace {

config::Config Load(const std::string& yaml) {
  config::Config c;
  auto problems = config::LoadString(yaml, "test.yaml", &c);
  for (const auto& p : problems) ADD_FAILURE() << p.ToString();
  return c;
}

constexpr char kHardened[] =
    "target: {api_key_env: KEY}\n"
    "profiles: [{name: hr, connector: generic, secret_env: S}]\n";

std::vector<std::string> Settings(const config::Config& c) {
  std::vector<std::string> out;
  for (const auto& w : SecurityWarnings(c)) out.push_back(w.setting);
  return out;
}

TEST(SecurityWarnings, AHardenedConfigHasNone) {
  EXPECT_TRUE(SecurityWarnings(Load(kHardened)).empty());
}

TEST(SecurityWarnings, SkippingCertificateVerificationIsNamed) {
  auto c = Load(
      "target: {api_key_env: KEY, insecure_skip_verify: true}\n"
      "profiles: [{name: hr, connector: generic, secret_env: S}]\n");
  auto w = SecurityWarnings(c);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].setting, "target.insecure_skip_verify");
  EXPECT_NE(w[0].message.find("target.ca_file"), std::string::npos) << w[0].message;
}

TEST(SecurityWarnings, PlainHttpOnAPublicAddressAndOtherWeakSettings) {
  auto c = Load(
      "listen: {address: 0.0.0.0}\n"
      "redis: {url: \"redis://:pw@127.0.0.1:6379/0\"}\n"
      "target: {api_key_env: KEY, base_url: \"http://127.0.0.1:9000/scim/v2\"}\n"
      "profiles: [{name: hr, connector: generic, secrets: [{env: OLD}, {env: NEW}]}]\n");
  EXPECT_EQ(Settings(c), (std::vector<std::string>{"target.base_url", "listen.address", "redis.url",
                                                   "profiles[0].secrets"}));
  for (const auto& w : SecurityWarnings(c)) {
    EXPECT_EQ(w.message.find("pw@"), std::string::npos) << "a warning quoted the password";
  }
}

TEST(SecurityWarnings, TlsOnThePublicAddressIsFine) {
  auto c = Load("listen: {address: 0.0.0.0, tls_cert_file: c.pem, tls_key_file: k.pem}\n" +
                std::string(kHardened));
  EXPECT_TRUE(SecurityWarnings(c).empty());
}

std::vector<std::string>* g_lines = nullptr;

TEST(SecurityWarnings, LoggedOneWarnLineEach) {
  std::vector<std::string> lines;
  g_lines = &lines;
  log::SetSink([](std::string_view line) { g_lines->emplace_back(line); });
  LogSecurityWarnings(
      Load("target: {api_key_env: KEY, insecure_skip_verify: true}\n"
           "profiles: [{name: hr, connector: generic, secret_env: S}]\n"));
  log::SetSink(nullptr);
  g_lines = nullptr;
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("\"level\":\"warn\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"setting\":\"target.insecure_skip_verify\""), std::string::npos)
      << lines[0];
}

}  // namespace
}  // namespace scimsync::daemon
