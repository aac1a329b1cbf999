// systemd/scimsync.service and its snippets, checked by systemd's own tools: the unit must load
// without a warning, stay at a security exposure of 2.0 or lower, and the sysusers/tmpfiles
// snippets must create what the unit relies on.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <sstream>
#include <string>

#include "test_support.h"

namespace scimsync::testing {
namespace {

const std::string kSystemdDir = std::string(SCIMSYNC_SOURCE_DIR) + "/systemd";

bool OnPath(const std::string& tool) {
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe)
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + tool).c_str(), X_OK) == 0) return true;
  }
  return false;
}

#define REQUIRE_TOOL(tool)                                                      \
  if (!OnPath(tool)) {                                                          \
    GTEST_SKIP() << tool                                                        \
        " is not installed: install Debian's systemd package (apt-get install " \
        "systemd) to check the unit";                                           \
  }

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// The unit as installed, with ExecStart=/ExecReload= pointing at the binary just built (verify
// checks that it exists and is executable). The file name must stay scimsync.service.
std::string WriteUnit(const TempDir& dir) {
  std::string unit = ReadFile(kSystemdDir + "/scimsync.service");
  EXPECT_NE(unit.find("/usr/bin/scimsyncd"), std::string::npos);
  std::string path = dir.File("scimsync.service");
  WriteFile(path, Replace(unit, "/usr/bin/scimsyncd", SCIMSYNC_DAEMON_BINARY));
  return path;
}

TEST(SystemdUnitTest, VerifyIsClean) {
  REQUIRE_TOOL("systemd-analyze");
  TempDir dir;
  std::string unit = WriteUnit(dir);
  std::string output;
  int rc = RunShell("cd '" + dir.path() + "' && systemd-analyze verify --man=no '" + unit + "'",
                    &output);
  EXPECT_EQ(rc, 0) << output;
  // verify reports unknown keys, bad values and missing executables as messages, sometimes with
  // exit status 0: any output is a finding.
  EXPECT_EQ(output, "");
}

TEST(SystemdUnitTest, VerifyWouldCatchABrokenUnit) {
  // Guards the test above: the same call flags a misspelt key and a missing binary.
  REQUIRE_TOOL("systemd-analyze");
  TempDir dir;
  std::string unit = ReadFile(kSystemdDir + "/scimsync.service");
  unit = Replace(unit, "NoNewPrivileges=", "NoNewPrivilege=");
  WriteFile(dir.File("scimsync.service"), unit);
  std::string output;
  RunShell("cd '" + dir.path() + "' && systemd-analyze verify --man=no '" +
               dir.File("scimsync.service") + "'",
           &output);
  EXPECT_NE(output.find("NoNewPrivilege"), std::string::npos) << output;
}

TEST(SystemdUnitTest, SecurityExposureIsAtMostTwo) {
  REQUIRE_TOOL("systemd-analyze");
  TempDir dir;
  std::string unit = WriteUnit(dir);
  std::string output;
  int rc = RunShell("cd '" + dir.path() +
                        "' && systemd-analyze security --offline=true --no-pager '" + unit + "'",
                    &output);
  EXPECT_EQ(rc, 0) << output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      output, m, std::regex(R"(Overall exposure level for scimsync\.service: ([0-9]+\.[0-9]+))")))
      << output;
  double exposure = std::stod(m[1]);
  EXPECT_LE(exposure, 2.0) << output;
}

TEST(SystemdUnitTest, SysusersCreatesTheUserTheUnitRunsAs) {
  REQUIRE_TOOL("systemd-sysusers");
  if (geteuid() != 0) GTEST_SKIP() << "systemd-sysusers --root needs root to write the files";
  std::string unit = ReadFile(kSystemdDir + "/scimsync.service");
  ASSERT_NE(unit.find("\nUser=scimsync\n"), std::string::npos);
  ASSERT_NE(unit.find("\nGroup=scimsync\n"), std::string::npos);

  TempDir root;
  std::string output;
  ASSERT_EQ(mkdir(root.File("etc").c_str(), 0755), 0);
  int rc = RunShell(
      "systemd-sysusers --root='" + root.path() + "' '" + kSystemdDir + "/scimsync.sysusers'",
      &output);
  ASSERT_EQ(rc, 0) << output;
  std::string passwd = ReadFile(root.File("etc/passwd"));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(passwd, m, std::regex(R"((^|\n)scimsync:x:(\d+):(\d+):[^\n]*)")))
      << passwd;
  EXPECT_LT(std::stoi(m[2]), 1000) << "not a system uid: " << m[0];
  EXPECT_NE(m[0].str().find(":/var/lib/scimsync:/usr/sbin/nologin"), std::string::npos) << m[0];
  EXPECT_NE(ReadFile(root.File("etc/group")).find("scimsync:x:"), std::string::npos);
}

TEST(SystemdUnitTest, TmpfilesCreatesAPrivateCredentialStore) {
  REQUIRE_TOOL("systemd-tmpfiles");
  if (geteuid() != 0) GTEST_SKIP() << "systemd-tmpfiles --root needs root to set ownership";
  TempDir root;
  std::string output;
  int rc = RunShell("systemd-tmpfiles --root='" + root.path() + "' --create '" + kSystemdDir +
                        "/scimsync.tmpfiles'",
                    &output);
  ASSERT_EQ(rc, 0) << output;
  struct stat st {};
  ASSERT_EQ(stat(root.File("etc/credstore").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, 0u);
}

}  // namespace
}  // namespace scimsync::testing
