#include "scimsync/daemon/metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace scimsync::daemon {
namespace {

// The samples of a rendering: "name{labels}" -> value text. Also checks the exposition grammar
// line by line: every sample's family was announced by # HELP then # TYPE, names and label
// pairs are well formed, each family appears once.
std::map<std::string, std::string> Samples(const std::string& text) {
  static const std::regex kSample(
      R"re(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+))re");
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  std::string family;
  std::string type;
  std::vector<std::string> seen;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      family = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_EQ(std::count(seen.begin(), seen.end(), family), 0) << family << " twice";
      seen.push_back(family);
      type.clear();
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      EXPECT_EQ(line.substr(7, family.size() + 1), family + " ") << line;
      type = line.substr(7 + family.size() + 1);
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      continue;
    }
    std::smatch m;
    EXPECT_TRUE(std::regex_match(line, m, kSample)) << "not a sample line: " << line;
    if (m.empty()) continue;
    std::string name = m[1];
    EXPECT_FALSE(type.empty()) << "sample before # TYPE: " << line;
    if (type == "histogram") {
      EXPECT_TRUE(name == family + "_bucket" || name == family + "_sum" ||
                  name == family + "_count")
          << line;
    } else {
      EXPECT_EQ(name, family) << line;
    }
    std::string key = line.substr(0, line.rfind(' '));
    EXPECT_EQ(out.count(key), 0u) << "duplicate sample " << key;
    out[key] = m[3];
  }
  return out;
}

TEST(MetricsTest, FreshRegistryRendersEveryFamilyExactly) {
  Metrics metrics("1.2.3");
  EXPECT_EQ(
      metrics.Render(),
      "# HELP scimsync_webhooks_total Webhook requests answered, by profile and HTTP status.\n"
      "# TYPE scimsync_webhooks_total counter\n"
      "# HELP scimsync_items_enqueued_total Employee events written to the queue.\n"
      "# TYPE scimsync_items_enqueued_total counter\n"
      "# HELP scimsync_items_duplicate_total Employee events dropped because the same event "
      "was accepted within the dedup window.\n"
      "# TYPE scimsync_items_duplicate_total counter\n"
      "# HELP scimsync_items_ignored_total Validly signed items not about an employee (pings, "
      "tests, account, payroll or sync notifications), answered 2xx and not queued, by profile "
      "and event type.\n"
      "# TYPE scimsync_items_ignored_total counter\n"
      "# HELP scimsync_syncs_total Item outcomes of the workers, by action and result.\n"
      "# TYPE scimsync_syncs_total counter\n"
      "# HELP scimsync_items_dropped_total Items the workers dropped without applying them, by "
      "profile and reason (older_than_applied: a newer version of the employee was already "
      "applied).\n"
      "# TYPE scimsync_items_dropped_total counter\n"
      "# HELP scimsync_future_versions_total Versions dated beyond workers.max_future_skew_s: "
      "item_clamped (the item was applied as of now), stored_ignored (a stored applied version "
      "was disregarded).\n"
      "# TYPE scimsync_future_versions_total counter\n"
      "# HELP scimsync_scim_requests_total HTTP requests to the SCIM server, by method and "
      "status (error: no answer).\n"
      "# TYPE scimsync_scim_requests_total counter\n"
      "# HELP scimsync_scim_request_duration_seconds Time from sending a SCIM request to "
      "reading its whole answer.\n"
      "# TYPE scimsync_scim_request_duration_seconds histogram\n"
      "# HELP scimsync_rate_limit_waits_total Times a worker waited for a slot of the shared "
      "SCIM rate limit.\n"
      "# TYPE scimsync_rate_limit_waits_total counter\n"
      "scimsync_rate_limit_waits_total 0\n"
      "# HELP scimsync_rate_limit_wait_seconds_total Time workers spent waiting for the "
      "shared SCIM rate limit.\n"
      "# TYPE scimsync_rate_limit_wait_seconds_total counter\n"
      "scimsync_rate_limit_wait_seconds_total 0\n"
      "# HELP scimsync_dead_letters_total Items this process moved to the dead-letter "
      "stream, by profile and error kind.\n"
      "# TYPE scimsync_dead_letters_total counter\n"
      "# HELP scimsync_dead_letters Dead letters stored in Redis waiting for a human (all "
      "instances).\n"
      "# TYPE scimsync_dead_letters gauge\n"
      "scimsync_dead_letters 0\n"
      "# HELP scimsync_retries_waiting Items waiting in a partition's retry set.\n"
      "# TYPE scimsync_retries_waiting gauge\n"
      "# HELP scimsync_queue_depth Items in a partition's stream, new or being worked on.\n"
      "# TYPE scimsync_queue_depth gauge\n"
      "# HELP scimsync_queue_oldest_age_seconds Age of the oldest item in a partition's "
      "stream; 0 when empty.\n"
      "# TYPE scimsync_queue_oldest_age_seconds gauge\n"
      "# HELP scimsync_partition_held 1 while this instance holds the partition's lease "
      "(works its items), else 0.\n"
      "# TYPE scimsync_partition_held gauge\n"
      "# HELP scimsync_paused 1 while SCIM work is paused because the SCIM server rejected "
      "the API key (401/403).\n"
      "# TYPE scimsync_paused gauge\n"
      "scimsync_paused 0\n"
      "# HELP scimsync_guard_tripped 1 while the mass-suspension guard holds suspensions "
      "back.\n"
      "# TYPE scimsync_guard_tripped gauge\n"
      "scimsync_guard_tripped 0\n"
      "# HELP scimsync_reconcile_runs_total Scheduled reconciliations, by profile and result "
      "(clean, drift, held, refused, error).\n"
      "# TYPE scimsync_reconcile_runs_total counter\n"
      "# HELP scimsync_reconcile_drift Employees found drifted by the last reconciliation, by "
      "kind.\n"
      "# TYPE scimsync_reconcile_drift gauge\n"
      "# HELP scimsync_reconcile_enqueued_total Sync items queued by reconciliations.\n"
      "# TYPE scimsync_reconcile_enqueued_total counter\n"
      "# HELP scimsync_reconcile_last_success_timestamp_seconds When the last successful "
      "reconciliation of a profile finished (Unix time).\n"
      "# TYPE scimsync_reconcile_last_success_timestamp_seconds gauge\n"
      "# HELP scimsync_build_info The running scimsyncd's version.\n"
      "# TYPE scimsync_build_info gauge\n"
      "scimsync_build_info{version=\"1.2.3\"} 1\n");
  Samples(metrics.Render());
}

TEST(MetricsTest, CountersAndGaugesCarryTheirLabelsSorted) {
  Metrics metrics("1.2.3");
  metrics.WebhookAnswered("hr", 202);
  metrics.WebhookAnswered("hr", 202);
  metrics.WebhookAnswered("bamboo", 401);
  metrics.WebhookAnswered("", 404);  // unknown profile: never the URL's text
  metrics.ItemsEnqueued("hr", 3, 1);
  metrics.ItemsEnqueued("hr", 2, 0);
  metrics.SyncFinished("sync", "created");
  metrics.SyncFinished("suspend", "give_up");
  metrics.RateLimitWaited(0.25);
  metrics.RateLimitWaited(0.5);
  metrics.DeadLettered("hr", "permanent");
  metrics.ItemDropped("hr", "older_than_applied");
  metrics.FutureVersion("hr", "item_clamped");
  metrics.FutureVersion("hr", "item_clamped");
  metrics.SetDeadLettersStored(7);
  metrics.SetQueueDepth(0, 12);
  metrics.SetQueueDepth(10, 1);
  metrics.SetQueueDepth(0, 4);  // a gauge: the last value wins
  metrics.SetQueueOldestAge(0, 2.5);
  metrics.SetRetriesWaiting(3, 2);
  metrics.SetPartitionHeld(0, true);
  metrics.SetPartitionHeld(1, false);
  metrics.SetPaused(true);
  metrics.SetGuardTripped(true);
  metrics.SetGuardTripped(false);

  std::string text = metrics.Render();
  auto s = Samples(text);
  EXPECT_EQ(s["scimsync_webhooks_total{profile=\"hr\",status=\"202\"}"], "2");
  EXPECT_EQ(s["scimsync_webhooks_total{profile=\"bamboo\",status=\"401\"}"], "1");
  EXPECT_EQ(s["scimsync_webhooks_total{profile=\"\",status=\"404\"}"], "1");
  EXPECT_EQ(s["scimsync_items_enqueued_total{profile=\"hr\"}"], "5");
  EXPECT_EQ(s["scimsync_items_duplicate_total{profile=\"hr\"}"], "1");
  EXPECT_EQ(s["scimsync_syncs_total{action=\"sync\",result=\"created\"}"], "1");
  EXPECT_EQ(s["scimsync_syncs_total{action=\"suspend\",result=\"give_up\"}"], "1");
  EXPECT_EQ(s["scimsync_rate_limit_waits_total"], "2");
  EXPECT_EQ(s["scimsync_rate_limit_wait_seconds_total"], "0.75");
  EXPECT_EQ(s["scimsync_dead_letters_total{profile=\"hr\",kind=\"permanent\"}"], "1");
  EXPECT_EQ(s["scimsync_items_dropped_total{profile=\"hr\",reason=\"older_than_applied\"}"], "1");
  EXPECT_EQ(s["scimsync_future_versions_total{profile=\"hr\",what=\"item_clamped\"}"], "2");
  EXPECT_EQ(s["scimsync_dead_letters"], "7");
  EXPECT_EQ(s["scimsync_queue_depth{partition=\"0\"}"], "4");
  EXPECT_EQ(s["scimsync_queue_depth{partition=\"10\"}"], "1");
  EXPECT_EQ(s["scimsync_queue_oldest_age_seconds{partition=\"0\"}"], "2.5");
  EXPECT_EQ(s["scimsync_retries_waiting{partition=\"3\"}"], "2");
  EXPECT_EQ(s["scimsync_partition_held{partition=\"0\"}"], "1");
  EXPECT_EQ(s["scimsync_partition_held{partition=\"1\"}"], "0");
  EXPECT_EQ(s["scimsync_paused"], "1");
  EXPECT_EQ(s["scimsync_guard_tripped"], "0");

  // Label sets in a fixed order, so two scrapes of the same state are byte-identical.
  EXPECT_LT(text.find("profile=\"\",status=\"404\""), text.find("profile=\"bamboo\""));
  EXPECT_LT(text.find("profile=\"bamboo\""), text.find("profile=\"hr\",status=\"202\""));
  EXPECT_EQ(text, metrics.Render());
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  Metrics metrics("v\"1\\\n");
  metrics.WebhookAnswered("a\"b\\c\nd", 202);
  std::string text = metrics.Render();
  EXPECT_NE(text.find("scimsync_webhooks_total{profile=\"a\\\"b\\\\c\\nd\",status=\"202\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("scimsync_build_info{version=\"v\\\"1\\\\\\n\"} 1\n"), std::string::npos)
      << text;
  Samples(text);
}

TEST(MetricsTest, HistogramHasCumulativeBucketsSumAndCount) {
  Metrics metrics("1");
  metrics.ScimRequest("POST", 201, 0.004);  // le 0.005
  metrics.ScimRequest("POST", 201, 0.005);  // le 0.005: bounds are inclusive
  metrics.ScimRequest("POST", 409, 0.2);    // le 0.25
  metrics.ScimRequest("POST", 0, 12);       // no answer, beyond 10 s: +Inf only
  metrics.ScimRequest("GET", 200, 1);

  std::string text = metrics.Render();
  auto s = Samples(text);
  EXPECT_EQ(s["scimsync_scim_requests_total{method=\"POST\",status=\"201\"}"], "2");
  EXPECT_EQ(s["scimsync_scim_requests_total{method=\"POST\",status=\"409\"}"], "1");
  EXPECT_EQ(s["scimsync_scim_requests_total{method=\"POST\",status=\"error\"}"], "1");
  EXPECT_EQ(s["scimsync_scim_requests_total{method=\"GET\",status=\"200\"}"], "1");

  const std::string post =
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"0.005\"} 2\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"0.01\"} 2\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"0.025\"} 2\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"0.05\"} 2\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"0.1\"} 2\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"0.25\"} 3\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"0.5\"} 3\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"1\"} 3\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"2.5\"} 3\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"5\"} 3\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"10\"} 3\n"
      "scimsync_scim_request_duration_seconds_bucket{method=\"POST\",le=\"+Inf\"} 4\n"
      "scimsync_scim_request_duration_seconds_sum{method=\"POST\"} 12.209\n"
      "scimsync_scim_request_duration_seconds_count{method=\"POST\"} 4\n";
  EXPECT_NE(text.find(post), std::string::npos) << text;
  EXPECT_EQ(s["scimsync_scim_request_duration_seconds_bucket{method=\"GET\",le=\"0.5\"}"], "0");
  EXPECT_EQ(s["scimsync_scim_request_duration_seconds_bucket{method=\"GET\",le=\"1\"}"], "1");
  EXPECT_EQ(s["scimsync_scim_request_duration_seconds_count{method=\"GET\"}"], "1");
  // GET sorts before POST.
  EXPECT_LT(text.find("method=\"GET\",le=\"0.005\""), text.find("method=\"POST\",le=\"0.005\""));
}

TEST(MetricsTest, NegativeDurationCountsInTheFirstBucket) {
  Metrics metrics("1");
  metrics.ScimRequest("GET", 200, -0.5);
  auto s = Samples(metrics.Render());
  EXPECT_EQ(s["scimsync_scim_request_duration_seconds_bucket{method=\"GET\",le=\"0.005\"}"], "1");
  EXPECT_EQ(s["scimsync_scim_request_duration_seconds_sum{method=\"GET\"}"], "0");
}

TEST(MetricsTest, UnboundedLabelsEndInOverflow) {
  Metrics metrics("1");
  for (int i = 0; i < 1005; ++i) metrics.SyncFinished("a" + std::to_string(i), "ok");
  metrics.SyncFinished("a1", "ok");  // an existing label set keeps counting as itself
  auto s = Samples(metrics.Render());
  EXPECT_EQ(s["scimsync_syncs_total{action=\"a1\",result=\"ok\"}"], "2");
  EXPECT_EQ(s["scimsync_syncs_total{action=\"overflow\",result=\"overflow\"}"], "5");
  EXPECT_EQ(s.count("scimsync_syncs_total{action=\"a1004\",result=\"ok\"}"), 0u);
}

TEST(MetricsTest, ConcurrentRecordingLosesNothingAndScrapesStayConsistent) {
  Metrics metrics("1");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 5000;
  std::atomic<bool> done{false};
  std::atomic<int> scrapes{0};
  std::atomic<int> inconsistent{0};
  std::thread scraper([&] {
    while (!done.load()) {
      auto s = Samples(metrics.Render());
      // Within one scrape, a histogram's +Inf bucket and its _count agree.
      for (const char* m : {"GET", "PATCH"}) {
        std::string inf = std::string("scimsync_scim_request_duration_seconds_bucket{method=\"") +
                          m + "\",le=\"+Inf\"}";
        std::string count =
            std::string("scimsync_scim_request_duration_seconds_count{method=\"") + m + "\"}";
        if (s.count(inf) && s[inf] != s[count]) inconsistent.fetch_add(1);
      }
      scrapes.fetch_add(1);
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&metrics, t] {
      std::string profile = "p" + std::to_string(t % 3);
      for (int i = 0; i < kPerThread; ++i) {
        metrics.WebhookAnswered(profile, 202);
        metrics.ItemsEnqueued(profile, 2, 1);
        metrics.ScimRequest(i % 2 ? "GET" : "PATCH", 200, 0.03);
        metrics.RateLimitWaited(0.5);
        metrics.SetQueueDepth(t, i);
      }
    });
  }
  for (auto& w : workers) w.join();
  done.store(true);
  scraper.join();

  auto s = Samples(metrics.Render());
  // Threads 0,3,6 -> p0; 1,4,7 -> p1; 2,5 -> p2.
  EXPECT_EQ(s["scimsync_webhooks_total{profile=\"p0\",status=\"202\"}"], "15000");
  EXPECT_EQ(s["scimsync_webhooks_total{profile=\"p2\",status=\"202\"}"], "10000");
  EXPECT_EQ(s["scimsync_items_enqueued_total{profile=\"p1\"}"], "30000");
  EXPECT_EQ(s["scimsync_items_duplicate_total{profile=\"p1\"}"], "15000");
  EXPECT_EQ(s["scimsync_scim_request_duration_seconds_count{method=\"GET\"}"], "20000");
  EXPECT_EQ(s["scimsync_scim_request_duration_seconds_bucket{method=\"PATCH\",le=\"0.05\"}"],
            "20000");
  EXPECT_EQ(s["scimsync_scim_requests_total{method=\"PATCH\",status=\"200\"}"], "20000");
  EXPECT_EQ(s["scimsync_rate_limit_waits_total"], "40000");
  EXPECT_EQ(s["scimsync_rate_limit_wait_seconds_total"], "20000");
  EXPECT_EQ(s["scimsync_queue_depth{partition=\"5\"}"], std::to_string(kPerThread - 1));
  EXPECT_GT(scrapes.load(), 0);
  EXPECT_EQ(inconsistent.load(), 0);
}

TEST(MetricsTest, GlobalCarriesTheBuildVersion) {
  auto s = Samples(Metrics::Global().Render());
  bool found = false;
  for (const auto& [key, value] : s) {
    if (key.rfind("scimsync_build_info{version=\"", 0) == 0) {
      found = true;
      EXPECT_EQ(value, "1");
      EXPECT_NE(key, "scimsync_build_info{version=\"\"}");
    }
  }
  EXPECT_TRUE(found);
  EXPECT_STREQ(kMetricsContentType, "text/plain; version=0.0.4; charset=utf-8");
}

}  // namespace
}  // namespace scimsync::daemon
