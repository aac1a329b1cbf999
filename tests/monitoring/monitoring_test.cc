// monitoring/: the alert rules and the Grafana dashboard an operator imports. Checked the way
// they will be used: promtool (Debian's prometheus package) validates and unit-tests the rules;
// every metric a rule or a panel queries must be one the daemon exports, read from the daemon's
// own metrics table (Metrics::Render), so a renamed or new metric keeps this test honest; every
// runbook link must land on a heading of docs/operations.md.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstdio>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "scimsync/daemon/metrics.h"
#include "test_support.h"

namespace scimsync::testing {
namespace {

const std::string kSource = SCIMSYNC_SOURCE_DIR;
const std::string kRules = kSource + "/monitoring/scimsync-alerts.yml";
const std::string kDashboard = kSource + "/monitoring/scimsync-dashboard.json";

// Sample names the daemon can export: each family, and a histogram's _bucket/_sum/_count.
std::set<std::string> ExportedNames() {
  daemon::Metrics metrics("test");
  std::set<std::string> names;
  std::string text = metrics.Render();
  std::regex type_line("# TYPE (\\S+) (\\S+)");
  for (std::sregex_iterator it(text.begin(), text.end(), type_line), end; it != end; ++it) {
    std::string name = (*it)[1];
    names.insert(name);
    if ((*it)[2] == "histogram") {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) names.insert(name + suffix);
    }
  }
  return names;
}

// Every scimsync_* name a PromQL expression mentions.
std::vector<std::string> MetricsIn(const std::string& expr) {
  std::vector<std::string> out;
  std::regex name("scimsync_[a-zA-Z0-9_]+");
  for (std::sregex_iterator it(expr.begin(), expr.end(), name), end; it != end; ++it) {
    out.push_back(it->str());
  }
  return out;
}

// GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes.
std::set<std::string> HeadingAnchors(const std::string& markdown) {
  std::set<std::string> anchors;
  size_t pos = 0;
  while (pos < markdown.size()) {
    size_t end = markdown.find('\n', pos);
    if (end == std::string::npos) end = markdown.size();
    std::string line = markdown.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] != '#') continue;
    size_t text = line.find_first_not_of('#');
    if (text == std::string::npos || line[text] != ' ') continue;
    std::string slug;
    for (char c : line.substr(text + 1)) {
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
        slug.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      } else if (c == ' ') {
        slug.push_back('-');
      }
    }
    anchors.insert(slug);
  }
  return anchors;
}

TEST(AlertRulesTest, PromtoolChecksTheRules) {
  std::string out;
  int rc = RunShell("promtool check rules '" + kRules + "'", &out);
  ASSERT_NE(rc, 127) << "promtool is missing: install Debian's prometheus package "
                        "(./scripts/install-deps does)";
  EXPECT_EQ(rc, 0) << out;
}

TEST(AlertRulesTest, PromtoolUnitTestsPass) {
  std::string out;
  int rc = RunShell(
      "cd '" + kSource + "/monitoring' && promtool test rules scimsync-alerts.test.yml", &out);
  ASSERT_NE(rc, 127) << "promtool is missing: install Debian's prometheus package";
  EXPECT_EQ(rc, 0) << out;
}

TEST(AlertRulesTest, EveryRuleHasSummaryRunbookAndKnownMetrics) {
  YAML::Node doc = YAML::LoadFile(kRules);
  const std::set<std::string> exported = ExportedNames();
  const std::set<std::string> anchors = HeadingAnchors(ReadFile(kSource + "/docs/operations.md"));
  std::set<std::string> alerts;
  for (const auto& group : doc["groups"]) {
    for (const auto& rule : group["rules"]) {
      ASSERT_TRUE(rule["alert"]) << "only alerting rules expected";
      const std::string name = rule["alert"].as<std::string>();
      EXPECT_TRUE(alerts.insert(name).second) << name << " twice";
      EXPECT_TRUE(rule["labels"]["severity"]) << name << ": no severity";
      const YAML::Node ann = rule["annotations"];
      EXPECT_FALSE(ann["summary"].as<std::string>("").empty()) << name << ": no summary";
      const std::string runbook = ann["runbook_url"].as<std::string>("");
      const std::string prefix = "file:///usr/share/doc/scimsync/operations.md#";
      ASSERT_EQ(runbook.rfind(prefix, 0), 0u) << name << ": runbook_url " << runbook;
      const std::string anchor = runbook.substr(prefix.size());
      EXPECT_TRUE(anchors.count(anchor))
          << name << ": docs/operations.md has no heading for #" << anchor;
      for (const std::string& m : MetricsIn(rule["expr"].as<std::string>())) {
        EXPECT_TRUE(exported.count(m))
            << name << " queries " << m << ", which scimsyncd does not export";
      }
    }
  }
  // Each of these states has its alert (docs/operations.md).
  for (const char* want :
       {"ScimsyncDown", "ScimsyncWebhooksRejected", "ScimsyncWebhooksFailing", "ScimsyncBacklog",
        "ScimsyncRetriesWaiting", "ScimsyncDeadLettersGrowing", "ScimsyncPaused",
        "ScimsyncGuardHolding", "ScimsyncPartitionUnowned", "ScimsyncScimErrors",
        "ScimsyncReconcileFailed", "ScimsyncReconcileDrift"}) {
    EXPECT_TRUE(alerts.count(want)) << "missing alert " << want;
  }
}

TEST(DashboardTest, ImportableAndEveryQueryNamesAnExportedMetric) {
  const std::string text = ReadFile(kDashboard);
  rapidjson::Document d;
  d.Parse(text.c_str(), text.size());
  ASSERT_FALSE(d.HasParseError()) << "not JSON at offset " << d.GetErrorOffset();
  ASSERT_TRUE(d.IsObject());
  // What Grafana's import needs: a title, a uid, a schema version, panels, and the data source
  // as an input the importer asks for.
  ASSERT_TRUE(d.HasMember("title") && d["title"].IsString());
  ASSERT_TRUE(d.HasMember("uid") && d["uid"].IsString());
  ASSERT_TRUE(d.HasMember("schemaVersion") && d["schemaVersion"].IsInt());
  ASSERT_TRUE(d.HasMember("__inputs") && d["__inputs"].IsArray() && d["__inputs"].Size() == 1);
  EXPECT_EQ(std::string(d["__inputs"][0]["name"].GetString()), "DS_PROMETHEUS");
  std::set<std::string> variables = {"__rate_interval", "__interval", "DS_PROMETHEUS"};
  for (const auto& v : d["templating"]["list"].GetArray()) variables.insert(v["name"].GetString());

  const std::set<std::string> exported = ExportedNames();
  std::set<std::string> queried;
  std::set<int> ids;
  std::string titles;
  ASSERT_TRUE(d.HasMember("panels") && d["panels"].IsArray());
  for (const auto& p : d["panels"].GetArray()) {
    ASSERT_TRUE(p.HasMember("id") && p["id"].IsInt() && p.HasMember("type") &&
                p["type"].IsString());
    EXPECT_TRUE(ids.insert(p["id"].GetInt()).second) << "panel id " << p["id"].GetInt() << " twice";
    ASSERT_TRUE(p.HasMember("gridPos") && p["gridPos"].HasMember("w") &&
                p["gridPos"].HasMember("h"));
    const std::string title = p["title"].GetString();
    titles += title + "\n";
    if (std::string(p["type"].GetString()) == "row") continue;
    ASSERT_TRUE(p.HasMember("targets") && p["targets"].IsArray() && !p["targets"].Empty()) << title;
    for (const auto& t : p["targets"].GetArray()) {
      ASSERT_TRUE(t.HasMember("expr") && t["expr"].IsString()) << title;
      const std::string expr = t["expr"].GetString();
      std::vector<std::string> names = MetricsIn(expr);
      EXPECT_FALSE(names.empty() && expr.find("up{") == std::string::npos)
          << title << ": query names no metric: " << expr;
      for (const std::string& m : names) {
        EXPECT_TRUE(exported.count(m))
            << title << " queries " << m << ", which scimsyncd does not export";
        queried.insert(m);
      }
      std::regex var("\\$\\{?([A-Za-z_]+)");
      for (std::sregex_iterator it(expr.begin(), expr.end(), var), end; it != end; ++it) {
        EXPECT_TRUE(variables.count((*it)[1])) << title << ": unknown variable " << it->str();
      }
    }
  }
  // The dashboard's sections.
  for (const char* row :
       {"Ingest", "Queue", "Sync outcomes", "SCIM", "Dead letters", "Reconciliation"}) {
    EXPECT_NE(titles.find(std::string(row) + "\n"), std::string::npos) << "no row " << row;
  }
  for (const char* m :
       {"scimsync_webhooks_total", "scimsync_queue_depth", "scimsync_queue_oldest_age_seconds",
        "scimsync_syncs_total", "scimsync_scim_request_duration_seconds_bucket",
        "scimsync_rate_limit_waits_total", "scimsync_dead_letters", "scimsync_dead_letters_total",
        "scimsync_reconcile_runs_total"}) {
    EXPECT_TRUE(queried.count(m)) << "no panel shows " << m;
  }
}

}  // namespace
}  // namespace scimsync::testing
