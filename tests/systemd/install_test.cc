// `cmake --install` into a scratch DESTDIR lays out what the Debian package and a hand install
// rely on (cmake/install.cmake): binary, unit with matching paths, sysusers/tmpfiles snippets,
// example config in /etc and in the docs, built-in profiles and docs -- and nothing else.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "test_support.h"

namespace scimsync::testing {
namespace {

namespace fs = std::filesystem;

const std::string kSource = SCIMSYNC_SOURCE_DIR;

// Installs the build tree into destdir with the given prefix; fails the test on error.
void Install(const std::string& destdir, const std::string& prefix) {
  std::string output;
  int rc = RunShell("DESTDIR='" + destdir + "' '" SCIMSYNC_CMAKE_COMMAND "' --install '" +
                        SCIMSYNC_BINARY_DIR + "' --prefix '" + prefix + "'",
                    &output);
  ASSERT_EQ(rc, 0) << output;
}

// Every regular file under root, relative to it, sorted.
std::vector<std::string> Files(const std::string& root) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) out.push_back(fs::relative(e.path(), root).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool Executable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

std::string Line(const std::string& text, const std::string& key) {
  size_t at = text.find("\n" + key);
  if (at == std::string::npos) return "";
  size_t end = text.find('\n', at + 1);
  return text.substr(at + 1, end - at - 1);
}

TEST(InstallLayoutTest, DebianLayoutUnderPrefixUsr) {
  TempDir dest;
  Install(dest.path(), "/usr");
  const std::string r = dest.path() + "/";

  EXPECT_TRUE(Executable(r + "usr/bin/scimsyncd"));
  const std::string unit = ReadFile(r + "usr/lib/systemd/system/scimsync.service");
  EXPECT_EQ(Line(unit, "ExecStart="),
            "ExecStart=/usr/bin/scimsyncd --config /etc/scimsync/scimsync.yaml");
  EXPECT_EQ(Line(unit, "Documentation="),
            "Documentation=file:/usr/share/doc/scimsync/operations.md");
  // Apart from those paths, the installed unit is the one in systemd/ that the unit test checks.
  EXPECT_EQ(unit, ReadFile(kSource + "/systemd/scimsync.service"));

  EXPECT_EQ(ReadFile(r + "usr/lib/sysusers.d/scimsync.conf"),
            ReadFile(kSource + "/systemd/scimsync.sysusers"));
  EXPECT_EQ(ReadFile(r + "usr/lib/tmpfiles.d/scimsync.conf"),
            ReadFile(kSource + "/systemd/scimsync.tmpfiles"));

  const std::string example = ReadFile(kSource + "/config/examples/scimsync.yaml");
  ASSERT_FALSE(example.empty());
  EXPECT_EQ(ReadFile(r + "etc/scimsync/scimsync.yaml"), example);
  EXPECT_EQ(ReadFile(r + "usr/share/doc/scimsync/examples/scimsync.yaml"), example);
  EXPECT_EQ(ReadFile(r + "usr/share/doc/scimsync/examples/scimsync.env.example"),
            ReadFile(kSource + "/systemd/scimsync.env.example"));
  EXPECT_EQ(ReadFile(r + "usr/share/doc/scimsync/operations.md"),
            ReadFile(kSource + "/docs/operations.md"));
  EXPECT_EQ(ReadFile(r + "usr/share/doc/scimsync/README.md"), ReadFile(kSource + "/README.md"));

  // The operator's kit: alert rules, dashboard, man pages generated at build time, completion.
  EXPECT_EQ(ReadFile(r + "usr/share/scimsync/prometheus/scimsync-alerts.yml"),
            ReadFile(kSource + "/monitoring/scimsync-alerts.yml"));
  EXPECT_EQ(ReadFile(r + "usr/share/scimsync/grafana/scimsync-dashboard.json"),
            ReadFile(kSource + "/monitoring/scimsync-dashboard.json"));
  EXPECT_EQ(ReadFile(r + "usr/share/bash-completion/completions/scimsyncd"),
            ReadFile(kSource + "/packaging/bash-completion/scimsyncd"));
  EXPECT_EQ(ReadFile(r + "usr/share/man/man8/scimsyncd.8.gz"),
            ReadFile(std::string(SCIMSYNC_BINARY_DIR) + "/man/scimsyncd.8.gz"));
  EXPECT_EQ(ReadFile(r + "usr/share/man/man5/scimsync.yaml.5.gz"),
            ReadFile(std::string(SCIMSYNC_BINARY_DIR) + "/man/scimsync.yaml.5.gz"));
  EXPECT_EQ(ReadFile(r + "usr/share/doc/scimsync/copyright"),
            ReadFile(kSource + "/packaging/debian/copyright"));
  EXPECT_TRUE(fs::exists(r + "usr/share/doc/scimsync/changelog.gz"));
  EXPECT_EQ(ReadFile(r + "usr/share/lintian/overrides/scimsync"),
            ReadFile(kSource + "/packaging/debian/lintian-overrides"));

  // Every built-in profile, for admins to read and copy.
  int profiles = 0;
  for (const auto& e : fs::directory_iterator(kSource + "/connectors/profiles")) {
    if (e.path().extension() != ".yaml") continue;
    ++profiles;
    EXPECT_EQ(ReadFile(r + "usr/share/scimsync/profiles/" + e.path().filename().string()),
              ReadFile(e.path().string()))
        << e.path();
  }
  EXPECT_GT(profiles, 0);

  // Nothing lands outside /usr and /etc/scimsync: a package must not scatter files.
  for (const auto& f : Files(dest.path())) {
    EXPECT_TRUE(f.rfind("usr/", 0) == 0 || f.rfind("etc/scimsync/", 0) == 0) << f;
    EXPECT_EQ(f.find("include/"), std::string::npos) << "headers are not installed: " << f;
  }
}

TEST(InstallLayoutTest, UnitFollowsAnotherPrefix) {
  TempDir dest;
  Install(dest.path(), "/opt/scimsync");
  const std::string r = dest.path() + "/opt/scimsync/";
  EXPECT_TRUE(Executable(r + "bin/scimsyncd"));
  const std::string unit = ReadFile(r + "lib/systemd/system/scimsync.service");
  EXPECT_EQ(Line(unit, "ExecStart="),
            "ExecStart=/opt/scimsync/bin/scimsyncd --config "
            "/opt/scimsync/etc/scimsync/scimsync.yaml");
  EXPECT_EQ(Line(unit, "ExecReload="),
            "ExecReload=/opt/scimsync/bin/scimsyncd check-config --config "
            "/opt/scimsync/etc/scimsync/scimsync.yaml");
  EXPECT_TRUE(fs::exists(r + "etc/scimsync/scimsync.yaml"));
  EXPECT_FALSE(fs::exists(dest.path() + "/etc"));
  EXPECT_FALSE(fs::exists(dest.path() + "/usr"));
}

TEST(InstallLayoutTest, ReinstallKeepsAnEditedConfig) {
  TempDir dest;
  Install(dest.path(), "/usr");
  const std::string config = dest.path() + "/etc/scimsync/scimsync.yaml";
  WriteFile(config, "# edited by the admin\n");
  Install(dest.path(), "/usr");
  EXPECT_EQ(ReadFile(config), "# edited by the admin\n");
}

}  // namespace
}  // namespace scimsync::testing
