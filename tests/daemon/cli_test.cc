// The command line as an admin uses it: exit codes and messages.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_support.h"

namespace scimsync::testing {
namespace {

struct Run {
  int code;
  std::string output;
};

Run Scimsyncd(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  TempDir dir;
  std::vector<std::string> argv = {std::string(SCIMSYNC_BINARY_DIR) + "/daemon/scimsyncd"};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p;
  p.Start(argv, dir.File("out"), env);
  int code = p.Wait(30000);
  return {code, ReadFile(dir.File("out"))};
}

TEST(CliTest, VersionAndHelp) {
  auto v = Scimsyncd({"--version"});
  EXPECT_EQ(v.code, 0);
  EXPECT_EQ(v.output.rfind("scimsyncd ", 0), 0u);
  auto h = Scimsyncd({"--help"});
  EXPECT_EQ(h.code, 0);
  EXPECT_NE(h.output.find("check-config"), std::string::npos);
  auto bad = Scimsyncd({"frobnicate"});
  EXPECT_EQ(bad.code, 64);
  EXPECT_NE(bad.output.find("unknown command 'frobnicate'"), std::string::npos);
}

TEST(CliTest, CheckConfigAcceptsAValidFile) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"),
            "target: {dry_run: true}\nprofiles: [{name: hr, connector: generic, secret_env: S}]\n");
  auto r = Scimsyncd({"check-config", "--config", dir.File("c.yaml")}, {"S=x"});
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(": ok (1 profile)"), std::string::npos) << r.output;
}

TEST(CliTest, CheckConfigListsEveryProblemAndExits78) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"),
            "listen:\n  port: 99999\ntarget:\n  base_url: http://jumpcloud.example/scim\n"
            "  dry_run: true\nprofiles: [{name: hr, connector: generic}]\n");
  auto r = Scimsyncd({"check-config", "--config", dir.File("c.yaml")});
  EXPECT_EQ(r.code, 78);
  EXPECT_NE(r.output.find("2 problems"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("listen.port (line 2): must be between 0 and 65535 (got 99999)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("target.base_url (line 4): must start with https:// (http:// only for "
                          "loopback)"),
            std::string::npos)
      << r.output;
}

TEST(CliTest, CheckConfigReportsUnsetSecrets) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"),
            "profiles: [{name: hr, connector: generic, secret_env: SCIMSYNC_UNSET_SECRET}]\n");
  auto r = Scimsyncd({"check-config", "--config", dir.File("c.yaml")});
  EXPECT_EQ(r.code, 78);
  EXPECT_NE(r.output.find("JUMPCLOUD_API_KEY is not set"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("SCIMSYNC_UNSET_SECRET is not set"), std::string::npos) << r.output;
}

TEST(CliTest, RunWithBadConfigExits78WithoutStarting) {
  auto r = Scimsyncd({"--config", "/nonexistent.yaml"});
  EXPECT_EQ(r.code, 78);
  EXPECT_NE(r.output.find("cannot read config file /nonexistent.yaml"), std::string::npos);
}

TEST(CliTest, RunWithUnsetWebhookSecretExits78NamingIt) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"),
            "target: {dry_run: true}\n"
            "profiles: [{name: hr, connector: generic, secret_env: NOPE_X}]\n");
  auto r = Scimsyncd({"--config", dir.File("c.yaml")});
  EXPECT_EQ(r.code, 78);
  EXPECT_NE(r.output.find("profile 'hr': environment variable NOPE_X is not set"),
            std::string::npos)
      << r.output;
}

TEST(CliTest, PortInUseIsAClearError) {
  TempDir dir;
  // Another program holds the port (without SO_REUSEPORT, which would let both listen).
  int holder = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(holder, 1), 0);
  socklen_t len = sizeof addr;
  getsockname(holder, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  WriteFile(dir.File("c.yaml"), "listen: {port: " + std::to_string(port) +
                                    "}\ntarget: {dry_run: true}\n"
                                    "profiles: [{name: hr, connector: generic, secret_env: S}]\n");
  auto r = Scimsyncd({"--config", dir.File("c.yaml")}, {"S=x"});
  close(holder);
  EXPECT_EQ(r.code, 78);
  EXPECT_NE(r.output.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace scimsync::testing
