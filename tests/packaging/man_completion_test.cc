// The man pages and the bash completion cannot drift from what they document: scimsyncd(8) must
// show every line of `scimsyncd --help`, scimsync.yaml(5) every key of the example config
// (config/examples/scimsync.yaml, commented-out optional keys included), and the completion
// must offer every command and flag of --help. The pages are read as man(1) renders them.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace scimsync::testing {
namespace {

const std::string kSource = SCIMSYNC_SOURCE_DIR;
const std::string kBinary = SCIMSYNC_BINARY_DIR;

std::string Help() {
  std::string out;
  EXPECT_EQ(RunShell("ASAN_OPTIONS=detect_leaks=0 '" SCIMSYNC_DAEMON_BINARY "' --help", &out,
                     /*with_stderr=*/false),
            0);
  return out;
}

// The page as man(1) shows it, in ASCII, one long line per paragraph where it fits.
std::string Render(const std::string& page) {
  std::string out;
  int rc = RunShell("LC_ALL=C MANWIDTH=250 man -l '" + page + "' 2>&1 | col -b", &out,
                    /*with_stderr=*/false);
  EXPECT_EQ(rc, 0) << out;
  return out;
}

std::string Squeeze(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n') {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Usage entries of --help: command ("" for the daemon itself) -> the text of its entry.
std::map<std::string, std::string> UsageEntries(const std::string& help) {
  std::map<std::string, std::string> entries;
  std::istringstream in(help);
  std::string line, current;
  bool in_usage = false;
  while (std::getline(in, line)) {
    if (line == "Usage:") {
      in_usage = true;
      continue;
    }
    if (!in_usage) continue;
    if (line.empty() || line[0] != ' ') break;
    if (line.rfind("  scimsyncd", 0) == 0) {
      std::string rest = line.substr(11);
      std::string word = rest.empty() ? "" : rest.substr(1, rest.find(' ', 1) - 1);
      current = word.empty() || word[0] == '-' || word[0] == '[' ? "" : word;
    }
    entries[current] += line + "\n";
  }
  return entries;
}

std::set<std::string> Flags(const std::string& text) {
  std::set<std::string> out;
  std::regex flag("--[a-z][a-z-]*");
  for (std::sregex_iterator it(text.begin(), text.end(), flag), end; it != end; ++it) {
    out.insert(it->str());
  }
  return out;
}

TEST(ManPageTest, ScimsyncdShowsEveryLineOfHelp) {
  const std::string help = Help();
  ASSERT_FALSE(help.empty());
  const std::string page = Squeeze(Render(kBinary + "/man/scimsyncd.8"));
  ASSERT_NE(page.find("SCIMSYNCD(8)"), std::string::npos) << page;
  std::istringstream in(help);
  std::string line;
  while (std::getline(in, line)) {
    if (Squeeze(line).empty()) continue;
    EXPECT_NE(page.find(Squeeze(line)), std::string::npos) << "not in scimsyncd(8): " << line;
  }
  for (const auto& [command, entry] : UsageEntries(help)) {
    if (!command.empty()) {
      EXPECT_NE(page.find("scimsyncd " + command), std::string::npos) << command;
    }
    for (const auto& f : Flags(entry)) {
      EXPECT_NE(page.find(f), std::string::npos) << f;
    }
  }
  // The gzipped copy the package installs is the same page.
  EXPECT_EQ(Squeeze(Render(kBinary + "/man/scimsyncd.8.gz")), page);
}

void KeyPaths(const YAML::Node& node, const std::string& prefix, std::set<std::string>* out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      std::string path = prefix + kv.first.as<std::string>();
      out->insert(path);
      KeyPaths(kv.second, path + ".", out);
    }
  } else if (node.IsSequence()) {
    for (const auto& item : node) KeyPaths(item, prefix, out);
  }
}

TEST(ManPageTest, ConfigPageShowsEveryKeyOfTheExample) {
  const std::string example_file = kSource + "/config/examples/scimsync.yaml";
  std::set<std::string> paths;
  KeyPaths(YAML::LoadFile(example_file), "", &paths);
  ASSERT_GT(paths.size(), 30u);
  const std::string page = Render(kBinary + "/man/scimsync.yaml.5");
  ASSERT_NE(page.find("SCIMSYNC.YAML(5)"), std::string::npos) << page;
  const std::string keys =
      page.substr(page.find("\nKEYS"), page.find("\nEXAMPLE") - page.find("\nKEYS"));
  for (const auto& p : paths) {
    EXPECT_NE(keys.find(p), std::string::npos) << "scimsync.yaml(5) does not describe " << p;
  }
  // Keys the example shows commented out (optional ones) are described too.
  const std::string example = ReadFile(example_file);
  std::regex optional("\\n\\s*# ([a-z_]+): ");
  int n = 0;
  for (std::sregex_iterator it(example.begin(), example.end(), optional), end; it != end; ++it) {
    ++n;
    EXPECT_NE(keys.find("." + (*it)[1].str() + " (optional)"), std::string::npos) << (*it)[1];
  }
  EXPECT_GT(n, 3);
}

// What completion offers for the words typed so far (the last one is being completed).
std::set<std::string> Complete(const std::vector<std::string>& words) {
  std::string array;
  for (const auto& w : words) array += " '" + w + "'";
  std::string script = "source '" + kSource +
                       "/packaging/bash-completion/scimsyncd'; COMP_WORDS=(scimsyncd" + array +
                       "); COMP_CWORD=" + std::to_string(words.size()) +
                       "; _scimsyncd; printf '%s\\n' \"${COMPREPLY[@]}\"";
  std::string out;
  EXPECT_EQ(RunShell("cd / && bash -c \"$(cat <<'EOS'\n" + script + "\nEOS\n)\"", &out,
                     /*with_stderr=*/false),
            0);
  std::set<std::string> result;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) result.insert(line);
  }
  return result;
}

TEST(BashCompletionTest, OffersEveryCommandAndFlagOfHelp) {
  const auto entries = UsageEntries(Help());
  ASSERT_GT(entries.size(), 5u);
  const std::set<std::string> top = Complete({""});
  for (const auto& [command, entry] : entries) {
    std::vector<std::string> words;
    if (!command.empty()) {
      EXPECT_TRUE(top.count(command)) << "no completion for command " << command;
      words.push_back(command);
    }
    if (command == "dlq") {
      const auto verbs = Complete({"dlq", ""});
      for (const char* v : {"list", "show", "replay", "drop"}) EXPECT_TRUE(verbs.count(v)) << v;
      words.push_back("replay");
    }
    if (command == "guard") {
      EXPECT_TRUE(Complete({"guard", ""}).count("release"));
      words.push_back("release");
    }
    words.push_back("--");
    const auto flags = Complete(words);
    for (const auto& f : Flags(entry)) {
      EXPECT_TRUE(flags.count(f)) << "scimsyncd " << command << ": no completion for " << f;
    }
  }
}

TEST(BashCompletionTest, ProfileNamesComeFromTheConfig) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"), "profiles:\n  - name: bamboo\n  - name: hibob\n");
  EXPECT_EQ(Complete({"map", "--config", dir.File("c.yaml"), "--profile", ""}),
            (std::set<std::string>{"bamboo", "hibob"}));
  EXPECT_EQ(Complete({"reconcile", "--config", dir.File("c.yaml"), "--profile", "hi"}),
            (std::set<std::string>{"hibob"}));
}

}  // namespace
}  // namespace scimsync::testing
