// The shipped alert rules against the real thing: Debian's Prometheus server (loopback, private
// data dir, 1 s scrape and evaluation) loads monitoring/scimsync-alerts.yml and scrapes a real
// scimsyncd (redis + fake SCIM server, tests/daemon/e2e_fixture.h). The daemon is driven into a
// dead letter (the SCIM server answers 400), an auth pause (the SCIM server's key changes under
// it) and a backlog, and Prometheus's /api/v1/alerts must show the matching alerts firing.
//
// Two concessions to a test that must take seconds: every `for:` is rewritten to 0s (promtool's
// unit test, monitoring/scimsync-alerts.test.yml, covers the durations), and the backlog is an
// entry written into an idle partition's stream with an hour-old id, since the rule's threshold
// is 15 minutes of real age. The same server also runs every query of the Grafana dashboard.
#include <gtest/gtest.h>
#include <httplib.h>
#include <rapidjson/document.h>

#include <chrono>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include "e2e_fixture.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/keys.h"
#include "test_support.h"

namespace scimsync::testing {
namespace {

using Clock = std::chrono::steady_clock;

const std::string kSource = SCIMSYNC_SOURCE_DIR;

class Prometheus {
 public:
  bool Start(const std::string& rules_yaml, int target_port) {
    WriteFile(dir_.File("rules.yml"), rules_yaml);
    WriteFile(dir_.File("prometheus.yml"),
              "global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 1s}\n"
              "rule_files: [" +
                  dir_.File("rules.yml") +
                  "]\n"
                  "scrape_configs:\n"
                  "  - job_name: scimsync\n"
                  "    static_configs: [{targets: [\"127.0.0.1:" +
                  std::to_string(target_port) + "\"]}]\n");
    if (!proc_.Start({"prometheus", "--config.file=" + dir_.File("prometheus.yml"),
                      "--storage.tsdb.path=" + dir_.File("data"),
                      "--web.listen-address=127.0.0.1:0", "--log.level=info"},
                     dir_.File("prometheus.log"))) {
      return false;
    }
    // Its web listener says the address it got (logged at info).
    port_ = WaitForLoggedPort(proc_, dir_.File("prometheus.log"),
                              "msg=\"Listening on\" address=127.0.0.1:");
    if (port_ <= 0) return false;
    bool exited = false;
    return WaitFor(
               [&] {
                 exited = exited || proc_.Wait(0) >= 0;
                 return exited || Get("/-/ready").find("Ready") != std::string::npos;
               },
               20000, /*interval_ms=*/100) &&
           !exited;
  }

  std::string Get(const std::string& path) const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(1, 0);
    c.set_read_timeout(2, 0);
    auto res = c.Get(path);
    return res && res->status == 200 ? res->body : "";
  }

  // Names of the alerts in state "firing".
  std::set<std::string> Firing() const {
    std::set<std::string> out;
    std::string body = Get("/api/v1/alerts");
    rapidjson::Document d;
    d.Parse(body.c_str(), body.size());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember("data")) return out;
    for (const auto& a : d["data"]["alerts"].GetArray()) {
      if (std::string(a["state"].GetString()) == "firing") {
        out.insert(a["labels"]["alertname"].GetString());
      }
    }
    return out;
  }

  // Prometheus's verdict on an instant query: "" when it runs, else its error.
  std::string QueryError(const std::string& expr) const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(5, 0);
    auto res = c.Get("/api/v1/query?query=" + httplib::detail::encode_query_param(expr));
    if (!res) return "no answer";
    rapidjson::Document d;
    d.Parse(res->body.c_str(), res->body.size());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember("status")) return res->body;
    if (std::string(d["status"].GetString()) == "success") return "";
    return d.HasMember("error") ? d["error"].GetString() : res->body;
  }

  // The value of a one-sample instant query, or "" when there is none.
  std::string Query(const std::string& expr) const {
    std::string body = Get("/api/v1/query?query=" + httplib::detail::encode_query_param(expr));
    rapidjson::Document d;
    d.Parse(body.c_str(), body.size());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember("data")) return "";
    const auto& r = d["data"]["result"];
    if (!r.IsArray() || r.Size() != 1) return "";
    return r[0]["value"][1].GetString();
  }

  std::string Log() const { return ReadFile(dir_.File("prometheus.log")); }

 private:
  TempDir dir_;
  Process proc_;
  int port_ = 0;
};

TEST(PrometheusAlertsTest, AuthPauseDeadLettersAndBacklogFire) {
  E2E e2e;
  ASSERT_TRUE(e2e.StartRedis());
  ASSERT_TRUE(e2e.StartScim());
  E2EDaemonOptions options;
  options.workers = 1;
  ASSERT_TRUE(e2e.StartDaemon(0, options));

  const std::string rules =
      std::regex_replace(ReadFile(kSource + "/monitoring/scimsync-alerts.yml"),
                         std::regex("for: [0-9]+[smhdwy]"), "for: 0s");
  Prometheus prom;
  ASSERT_TRUE(prom.Start(rules, e2e.port(0))) << prom.Log();
  // Healthy first: Prometheus has seen no dead letters, so a new one is growth.
  ASSERT_TRUE(WaitFor([&] { return prom.Query("scimsync_dead_letters") == "0"; }, 20000))
      << prom.Log();
  EXPECT_EQ(prom.Firing().count("ScimsyncDeadLettersGrowing"), 0u);
  // The only instance holds every partition, and says so for each (what the unowned-partition
  // alert reads).
  EXPECT_TRUE(WaitFor(
      [&] {
        return prom.Query("count(scimsync_partition_held == 1)") == "8" &&
               prom.Query("count(scimsync_partition_held)") == "8";
      },
      20000))
      << prom.Query("count(scimsync_partition_held == 1)");

  // JumpCloud refuses the user: a dead letter.
  e2e.scim().InjectFault(Fault::Status(400).On("POST", "/Users"));
  ASSERT_EQ(e2e.PostUntilAccepted(
                0, GenericBody("ev-1", "employee.created", "E1", "Engineer", 1790000000)),
            202);
  const std::string dlq = redis::keys::queue::DeadLetters("scimsync");
  ASSERT_TRUE(WaitFor([&] { return e2e.redis().Cli({"XLEN", dlq}) == "1"; }, 15000)) << e2e.Log(0);

  // The key is rotated at JumpCloud but not here: the next item pauses all SCIM work.
  e2e.scim().SetApiKey("rotated-elsewhere");
  ASSERT_EQ(e2e.PostUntilAccepted(
                0, GenericBody("ev-2", "employee.created", "E2", "Engineer", 1790000000)),
            202);
  ASSERT_TRUE(WaitFor([&] { return prom.Query("scimsync_paused") == "1"; }, 20000)) << e2e.Log(0);

  // An hour-old item in an idle partition: the backlog the paused workers leave behind.
  int idle = -1;
  for (int p = 0; p < 8 && idle < 0; ++p) {
    if (e2e.redis().Cli({"XLEN", redis::keys::queue::Stream("scimsync", p)}) == "0") idle = p;
  }
  ASSERT_GE(idle, 0);
  const int64_t hour_ago_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count() -
                              3'600'000;
  e2e.redis().Cli({"XADD", redis::keys::queue::Stream("scimsync", idle),
                   std::to_string(hour_ago_ms) + "-0", "test", "backdated"});

  const std::set<std::string> want = {"ScimsyncDeadLettersGrowing", "ScimsyncPaused",
                                      "ScimsyncBacklog"};
  std::set<std::string> firing;
  EXPECT_TRUE(WaitFor(
      [&] {
        firing = prom.Firing();
        for (const auto& w : want) {
          if (!firing.count(w)) return false;
        }
        return true;
      },
      30000))
      << "firing: " << ::testing::PrintToString(firing) << "\n"
      << prom.Log();
  // `scimsyncd status` sees the same backlog, through the queue: the hour-old item is the oldest.
  int status_rc = -1;
  const std::string status = e2e.Command(0, {"status", "--json"}, &status_rc);
  EXPECT_EQ(status_rc, 0) << status;
  const size_t at = status.find("\"oldest_age_ms\":");
  ASSERT_NE(at, std::string::npos) << status;
  EXPECT_GE(std::stoll(status.substr(at + 16)), 3'600'000) << status;

  // A live, lease-holding daemon with its guard closed is neither down nor missing an owner.
  EXPECT_EQ(firing.count("ScimsyncDown"), 0u);
  EXPECT_EQ(firing.count("ScimsyncGuardHolding"), 0u);
  EXPECT_EQ(firing.count("ScimsyncPartitionUnowned"), 0u);

  // Every query of the Grafana dashboard parses and runs, with its variables as Grafana would
  // fill them in.
  const std::string text = ReadFile(kSource + "/monitoring/scimsync-dashboard.json");
  rapidjson::Document dash;
  dash.Parse(text.c_str(), text.size());
  ASSERT_FALSE(dash.HasParseError());
  int queries = 0;
  for (const auto& panel : dash["panels"].GetArray()) {
    if (!panel.HasMember("targets")) continue;
    for (const auto& target : panel["targets"].GetArray()) {
      std::string expr = target["expr"].GetString();
      expr = std::regex_replace(expr, std::regex("\\$__rate_interval"), "1m");
      expr = std::regex_replace(expr, std::regex("\\$(job|instance)"), ".*");
      EXPECT_EQ(prom.QueryError(expr), "") << panel["title"].GetString() << ": " << expr;
      ++queries;
    }
  }
  EXPECT_GT(queries, 20);
}

}  // namespace
}  // namespace scimsync::testing
