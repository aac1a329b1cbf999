// The workers end to end: real redis-server, the real scimsyncd binary, and a SCIM server
// standing in for JumpCloud. What a user would check: every employee ends in the HRIS's last
// state, exactly one JumpCloud user each, nothing applied out of order, through faults, crashes
// and outages.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rapidjson/document.h>
#include <signal.h>

#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "daemon_fixture.h"
#include "e2e_fixture.h"

namespace scimsync::testing {
namespace {

std::string Join(const std::vector<std::string>& v, size_t max = 10) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < max; ++i) out += v[i] + "\n";
  if (v.size() > max) out += "... and " + std::to_string(v.size() - max) + " more\n";
  return out;
}

class WorkersE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(e2e_.StartRedis());
    ASSERT_TRUE(e2e_.StartScim());
  }
  E2E e2e_;
};

std::string Base64HmacSha256(const std::string& key, const std::string& msg, bool url = false) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
  std::string out(4 * ((len + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), mac, static_cast<int>(len));
  out.resize(static_cast<size_t>(n));
  if (url) {
    for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  }
  return out;
}

// Through the real binary: a Merge "Send test" ping and a Finch account.updated are
// answered 2xx and queue nothing (a 4xx would make the vendor retry, alert and disable the
// webhook); a BambooHR form post keyed by employee id reaches JumpCloud as that employee.
TEST_F(WorkersE2E, VendorEventsNotAboutAnEmployeeAre2xxAndABambooHrFormPostSyncsTheRightUser) {
  // BambooHR's API, answering the fetch-back for employee 12345.
  httplib::Server bamboo;
  std::atomic<int> fetches{0};
  bamboo.Get("/v1/employees/12345", [&](const httplib::Request&, httplib::Response& res) {
    ++fetches;
    res.set_content(
        R"({"id":"12345","firstName":"John","lastName":"Doe","workEmail":"john.doe@example.com",)"
        R"("jobTitle":"Engineer","status":"Active","employeeNumber":"9"})",
        "application/json");
  });
  const int bamboo_port = bamboo.bind_to_any_port("127.0.0.1");
  ASSERT_GT(bamboo_port, 0);
  std::thread serve([&] { bamboo.listen_after_bind(); });
  ASSERT_TRUE(WaitForPort(bamboo_port, 5000));
  struct Stop {
    httplib::Server& s;
    std::thread& t;
    ~Stop() {
      s.stop();
      t.join();
    }
  } stop{bamboo, serve};

  const std::string finch_key = "c2VjcmV0LWZpbmNoLWtleS0xMjM0";  // base64("secret-finch-key-1234")
  E2EDaemonOptions options;
  options.extra_profile_keys =
      "  - {name: merge, connector: merge, secret_env: MERGE_SECRET}\n"
      "  - {name: finch, connector: finch, secret_env: FINCH_SECRET}\n"
      "  - name: bamboohr\n    connector: bamboohr\n    secret_env: BAMBOO_SECRET\n"
      "    api: {base_url: \"http://127.0.0.1:" +
      std::to_string(bamboo_port) + "\", tenant: acme, key_env: BAMBOO_API_KEY}\n";
  options.env = {"MERGE_SECRET=merge-key", "FINCH_SECRET=" + finch_key, "BAMBOO_SECRET=bamboo-key",
                 "BAMBOO_API_KEY=api-key"};
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  httplib::Client http("127.0.0.1", e2e_.port(0));

  const std::string ping = ReadFile(std::string(SCIMSYNC_SOURCE_DIR) +
                                    "/tests/connectors/fixtures/merge/send-test/request.json");
  auto merge = http.Post("/webhooks/merge",
                         {{"X-Merge-Webhook-Signature", Base64HmacSha256("merge-key", ping, true)}},
                         ping, "application/json");
  ASSERT_TRUE(merge);
  EXPECT_EQ(merge->status, 200) << merge->body;
  EXPECT_EQ(merge->body.rfind(R"({"accepted":0,"duplicates":0,"ignored":1,)", 0), 0u)
      << merge->body;

  const std::string account =
      ReadFile(std::string(SCIMSYNC_SOURCE_DIR) +
               "/tests/connectors/fixtures/finch/account-updated/request.json");
  const std::string ts = std::to_string(time(nullptr));
  std::string raw_key;
  {
    std::string decoded(finch_key.size(), '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                            reinterpret_cast<const unsigned char*>(finch_key.data()),
                            static_cast<int>(finch_key.size()));
    decoded.resize(static_cast<size_t>(n));
    while (!decoded.empty() && decoded.back() == '\0') decoded.pop_back();  // padding
    raw_key = decoded;
  }
  auto finch = http.Post(
      "/webhooks/finch",
      {{"Finch-Event-Id", "msg_1"},
       {"Finch-Timestamp", ts},
       {"Finch-Signature", "v1," + Base64HmacSha256(raw_key, "msg_1." + ts + "." + account)}},
      account, "application/json");
  ASSERT_TRUE(finch);
  EXPECT_EQ(finch->status, 200) << finch->body;
  EXPECT_EQ(finch->body.rfind(R"({"accepted":0,"duplicates":0,"ignored":1,)", 0), 0u)
      << finch->body;
  EXPECT_EQ(e2e_.Pending(), 0);

  const std::string form =
      ReadFile(std::string(SCIMSYNC_SOURCE_DIR) +
               "/tests/connectors/fixtures/bamboohr/field-based-form/request.form");
  auto post =
      http.Post("/webhooks/bamboohr",
                {{"X-BambooHR-Timestamp", "1769884920"},
                 {"X-BambooHR-Signature", HmacSha256Hex("bamboo-key", form + "1769884920")}},
                form, "application/x-www-form-urlencoded");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 202) << post->body;
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  // One user, and it is employee 12345 (the form's key), not "0" (the decoder's old reading).
  std::vector<std::string> users = e2e_.scim().Users();
  ASSERT_EQ(users.size(), 1u) << e2e_.Log(0);
  EXPECT_NE(users[0].find("\"userName\":\"john.doe\""), std::string::npos) << users[0];
  EXPECT_NE(users[0].find("12345"), std::string::npos) << users[0];
  EXPECT_EQ(fetches.load(), 1);

  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find(
                R"(scimsync_items_ignored_total{profile="finch",event_type="account.updated"} 1)"),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find(R"(scimsync_items_ignored_total{profile="merge",event_type=""} 1)"),
            std::string::npos);
  EXPECT_NE(e2e_.Log(0).find("webhook item acknowledged"), std::string::npos);
}

// Factorial: an employee body without a termination date, whose record read back dates the
// termination ahead (terminated_on, fetch.recheck_at). The real binary syncs the user now, still
// active, and parks the item until 00:00 UTC of that day, when a fresh read suspends the user
// (that day's read is
// SyncTest.ATerminationDatedAheadInTheFetchedRecordIsSyncedNowAndLandsOnItsDay).
TEST_F(WorkersE2E, AFactorialTerminationDatedAheadInTheRecordIsSyncedNowAndHeldForItsDay) {
  httplib::Server factorial;
  std::atomic<int> fetches{0};
  factorial.Get("/resources/employees/employees/52", [&](const httplib::Request& req,
                                                         httplib::Response& res) {
    if (req.get_header_value("x-api-key") != "api-key") {
      res.status = 401;
      return;
    }
    ++fetches;
    res.set_content(R"({"id":52,"first_name":"Bob","last_name":"Macri","full_name":"Bob Macri",)"
                    R"("login_email":"bob.macri@example.com","company_identifier":"F-052",)"
                    R"("is_terminating":true,"terminated_on":"2099-12-31","active":true})",
                    "application/json");
  });
  const int api_port = factorial.bind_to_any_port("127.0.0.1");
  ASSERT_GT(api_port, 0);
  std::thread serve([&] { factorial.listen_after_bind(); });
  struct Stop {
    httplib::Server& s;
    std::thread& t;
    ~Stop() {
      s.stop();
      t.join();
    }
  } stop{factorial, serve};

  E2EDaemonOptions options;
  options.extra_profile_keys =
      "  - name: factorial\n    connector: factorial\n    secret_env: FACTORIAL_CHALLENGE\n"
      "    api: {base_url: \"http://127.0.0.1:" +
      std::to_string(api_port) + "\", key_env: FACTORIAL_API_KEY}\n";
  options.env = {"FACTORIAL_CHALLENGE=challenge-1", "FACTORIAL_API_KEY=api-key"};
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  httplib::Client http("127.0.0.1", e2e_.port(0));
  const std::string body =
      ReadFile(std::string(SCIMSYNC_SOURCE_DIR) +
               "/tests/connectors/fixtures/factorial/employee-updated-termination-in-record/"
               "request.json");
  auto post = http.Post(
      "/webhooks/factorial",
      {{"x-factorial-wh-challenge", "challenge-1"}, {"Date", "Sun, 06 Dec 2026 19:00:00 GMT"}},
      body, "application/json");
  ASSERT_TRUE(post);
  ASSERT_EQ(post->status, 202) << post->body;

  // Synced now: one user, active, while the item waits in the retry set for its day.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline &&
         (e2e_.scim().Users().size() != 1 || e2e_.Pending() != 1 || fetches.load() < 1)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::vector<std::string> users = e2e_.scim().Users();
  ASSERT_EQ(users.size(), 1u) << e2e_.Log(0);
  EXPECT_NE(users[0].find("\"userName\":\"bob.macri\""), std::string::npos) << users[0];
  EXPECT_NE(users[0].find("\"active\":true"), std::string::npos) << users[0];
  EXPECT_EQ(e2e_.Pending(), 1) << e2e_.Log(0);
  int status = -1;
  std::string shown =
      e2e_.Command(0, {"employee", "--profile", "factorial", "--json", "52"}, &status);
  EXPECT_EQ(status, 0) << shown;
  EXPECT_NE(shown.find(R"({"where":"deferred")"), std::string::npos) << shown;
  EXPECT_NE(shown.find(R"("due_ms":4102358400000)"), std::string::npos) << shown;
  // Its history says what happened now (created), and when it is planned again.
  EXPECT_NE(shown.find(R"("outcome":"done","action":"sync","result":"created")"), std::string::npos)
      << shown;
  EXPECT_NE(shown.find("planned again at 4102358400000 ms (fetch.recheck_at)"), std::string::npos)
      << shown;
  EXPECT_EQ(fetches.load(), 1);
}

TEST_F(WorkersE2E, HireUpdateTerminateRehireArriveInOrder) {
  ASSERT_TRUE(e2e_.StartDaemon(0)) << e2e_.Log(0);
  const int64_t t0 = 1'790'000'000;
  ASSERT_EQ(e2e_.PostUntilAccepted(0, GenericBody("a1", "employee.created", "E1", "Analyst", t0)),
            202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  ASSERT_EQ(
      e2e_.PostUntilAccepted(0, GenericBody("a2", "employee.updated", "E1", "Manager", t0 + 1)),
      202);
  ASSERT_TRUE(e2e_.WaitIdle(30000));
  ASSERT_EQ(
      e2e_.PostUntilAccepted(0, GenericBody("a3", "employee.terminated", "E1", "Manager", t0 + 2)),
      202);
  ASSERT_TRUE(e2e_.WaitIdle(30000));
  auto ids = e2e_.scim().FindUsers("externalId", "E1");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_NE(ids[0].find("\"active\":false"), std::string::npos) << ids[0];
  ASSERT_EQ(
      e2e_.PostUntilAccepted(0, GenericBody("a4", "employee.rehired", "E1", "Director", t0 + 3)),
      202);
  ASSERT_TRUE(e2e_.WaitIdle(30000));

  EXPECT_TRUE(e2e_.CheckUsers({{"E1", {"Director", true}}}).empty())
      << Join(e2e_.CheckUsers({{"E1", {"Director", true}}}));
  // The writes JumpCloud saw, in order: create, the title, the suspension, the rehire.
  std::vector<std::string> writes;
  for (const auto& r : e2e_.scim().requests()) {
    if (r.method == "POST" || r.method == "PATCH" || r.method == "PUT") {
      writes.push_back(r.method + " " + r.body);
    }
  }
  ASSERT_EQ(writes.size(), 4u) << Join(writes);
  EXPECT_EQ(writes[0].rfind("POST", 0), 0u);
  EXPECT_NE(writes[0].find("\"Analyst\""), std::string::npos);
  EXPECT_NE(writes[1].find("\"Manager\""), std::string::npos);
  EXPECT_NE(writes[2].find("\"active\""), std::string::npos);
  EXPECT_NE(writes[2].find("false"), std::string::npos);
  EXPECT_NE(writes[3].find("\"Director\""), std::string::npos);
  // /metrics counts what happened, in Prometheus text format.
  httplib::Client http("127.0.0.1", e2e_.port(0));
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  const std::string& m = metrics->body;
  EXPECT_NE(m.find("scimsync_webhooks_total{profile=\"hr\",status=\"202\"} 4"), std::string::npos)
      << m;
  EXPECT_NE(m.find("scimsync_syncs_total{action=\"sync\",result=\"created\"} 1"), std::string::npos)
      << m;
  EXPECT_NE(m.find("scimsync_scim_requests_total{method=\"POST\",status=\"201\"} 1"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("scimsync_scim_requests_total{method=\"PATCH\",status=\"200\"} 3"),
            std::string::npos)
      << m;
  // One outcome line per item, with the trace id of its webhook.
  std::string log = e2e_.Log(0);
  EXPECT_NE(log.find("\"msg\":\"sync\""), std::string::npos);
  EXPECT_NE(log.find("\"result\":\"created\""), std::string::npos);
  EXPECT_EQ(log.find("test-key"), std::string::npos) << "the API key was logged";
}

TEST_F(WorkersE2E, FlakyJumpCloudEveryUserEndsInTheLastStateWithinTheRateLimit) {
  RandomFaults faults;
  faults.status500 = 0.20;
  faults.status429 = 0.10;
  faults.drop = 0.05;
  faults.seed = 7;
  e2e_.scim().SetRandomFaults(faults);
  E2EDaemonOptions options;
  options.rate = 400;
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  Workload w = MakeWorkload(200, 10, 1);
  EXPECT_EQ(e2e_.SendWorkload(w), w.total);
  ASSERT_TRUE(e2e_.WaitIdle(240000)) << "still pending: " << e2e_.Pending();
  auto problems = e2e_.CheckUsers(w.expected);
  EXPECT_TRUE(problems.empty()) << Join(problems);
  EXPECT_TRUE(e2e_.ConcurrentWork().empty()) << Join(e2e_.ConcurrentWork());
  // The limiter spaces requests 1/rate apart; one more can land at a window's edge.
  EXPECT_LE(e2e_.MaxRequestsPerSecond(), 401);
  EXPECT_EQ(e2e_.redis().Cli({"XLEN", "scimsync:dlq"}), "0");
  // The 429s' blocks and the pacing made workers wait, and /metrics says how often and how long.
  httplib::Client http("127.0.0.1", e2e_.port(0));
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  auto sample = [&](const std::string& name) {
    size_t at = metrics->body.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(metrics->body.substr(at + name.size() + 2));
  };
  EXPECT_GT(sample("scimsync_rate_limit_waits_total"), 0) << metrics->body;
  EXPECT_GT(sample("scimsync_rate_limit_wait_seconds_total"), 0) << metrics->body;
}

// The fixture's restart keeps an instance's port (as a deployment's HRIS keeps one address);
// when another process took that port while the instance was down, the instance comes back on a
// new one and the sender follows, instead of the restart failing (model seed 1026, many seeds
// at once).
TEST_F(WorkersE2E, ARestartWhosePortWasTakenComesBackOnANewOne) {
  ASSERT_TRUE(e2e_.StartDaemon(0)) << e2e_.Log(0);
  const int old_port = e2e_.port(0);
  e2e_.KillDaemon(0);
  httplib::Server squatter;
  ASSERT_TRUE(squatter.bind_to_port("127.0.0.1", old_port));
  std::thread serve([&] { squatter.listen_after_bind(); });
  const bool restarted = e2e_.StartDaemon(0);
  squatter.stop();
  serve.join();
  ASSERT_TRUE(restarted) << e2e_.Log(0);
  EXPECT_NE(e2e_.port(0), old_port);
  EXPECT_EQ(e2e_.PostUntilAccepted(
                0, GenericBody("p1", "employee.created", "P1", "Analyst", 1'790'000'000)),
            202);
}

TEST_F(WorkersE2E, KilledThreeTimesNothingLostNothingDuplicated) {
  RandomFaults faults;
  faults.status500 = 0.10;
  faults.seed = 11;
  e2e_.scim().SetRandomFaults(faults);
  ASSERT_TRUE(e2e_.StartDaemon(0)) << e2e_.Log(0);
  Workload w = MakeWorkload(200, 10, 2);
  std::atomic<bool> done{false};
  std::thread killer([&] {
    for (int i = 0; i < 3 && !done; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      e2e_.KillDaemon(0);
      // The HRIS sees connection errors meanwhile and retries: PostUntilAccepted does.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      ASSERT_TRUE(e2e_.StartDaemon(0));
    }
  });
  EXPECT_EQ(e2e_.SendWorkload(w), w.total);
  done = true;
  killer.join();
  ASSERT_TRUE(e2e_.WaitIdle(240000)) << "still pending: " << e2e_.Pending();
  auto problems = e2e_.CheckUsers(w.expected);
  EXPECT_TRUE(problems.empty()) << Join(problems);
}

TEST_F(WorkersE2E, RedisRestartEveryAcknowledgedEventIsApplied) {
  ASSERT_TRUE(e2e_.StartDaemon(0)) << e2e_.Log(0);
  Workload w = MakeWorkload(200, 10, 3);
  std::thread outage([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    e2e_.redis().Stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    ASSERT_TRUE(e2e_.redis().Start());
  });
  EXPECT_EQ(e2e_.SendWorkload(w), w.total);
  outage.join();
  ASSERT_TRUE(e2e_.WaitIdle(240000))
      << "still pending: " << e2e_.Pending() << e2e_.Log(0).substr(0, 3000);
  auto problems = e2e_.CheckUsers(w.expected);
  EXPECT_TRUE(problems.empty()) << Join(problems);
}

TEST_F(WorkersE2E, TwoInstancesShareTheWorkWithoutOverlap) {
  RandomFaults faults;
  faults.status500 = 0.10;
  faults.seed = 5;
  e2e_.scim().SetRandomFaults(faults);
  ASSERT_TRUE(e2e_.StartDaemon(0)) << e2e_.Log(0);
  ASSERT_TRUE(e2e_.StartDaemon(1)) << e2e_.Log(1);
  // The second instance gets its share at the next lease heartbeats: wait until both own some.
  auto owners = [&] {
    std::set<std::string> ids;
    for (int p = 0; p < 8; ++p) {
      std::string owner = e2e_.redis().Cli({"GET", "scimsync:lease:{p" + std::to_string(p) + "}"});
      if (!owner.empty()) ids.insert(owner);
    }
    return ids.size();
  };
  WaitFor([&] { return owners() >= 2; }, 15000, /*interval_ms=*/100);
  ASSERT_EQ(owners(), 2u) << "the partitions were not split between the two instances";
  Workload w = MakeWorkload(200, 10, 4);
  EXPECT_EQ(e2e_.SendWorkload(w), w.total);
  ASSERT_TRUE(e2e_.WaitIdle(240000)) << "still pending: " << e2e_.Pending();
  auto problems = e2e_.CheckUsers(w.expected);
  EXPECT_TRUE(problems.empty()) << Join(problems);
  EXPECT_TRUE(e2e_.ConcurrentWork().empty()) << Join(e2e_.ConcurrentWork());
  // Both instances worked: each synced some employees.
  EXPECT_NE(e2e_.Log(0).find("\"msg\":\"sync\""), std::string::npos);
  EXPECT_NE(e2e_.Log(1).find("\"msg\":\"sync\""), std::string::npos);
}

TEST_F(WorkersE2E, AuthFailurePausesWithoutLosingAnythingAndResumesAfterTheKeyIsFixed) {
  E2EDaemonOptions options;
  options.api_key = "wrong-key";
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  Workload w = MakeWorkload(20, 3, 6);
  EXPECT_EQ(e2e_.SendWorkload(w, 4), w.total);
  WaitFor([&] { return e2e_.Log(0).find("SCIM work paused") != std::string::npos; }, 10000,
          /*interval_ms=*/100);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(e2e_.scim().user_count(), 0u);
  EXPECT_GT(e2e_.Pending(), 0) << "items were consumed while paused";
  EXPECT_EQ(e2e_.redis().Cli({"XLEN", "scimsync:dlq"}), "0") << "an item was dead-lettered";
  EXPECT_NE(e2e_.Log(0).find("SCIM work paused"), std::string::npos) << e2e_.Log(0);
  EXPECT_EQ(e2e_.redis().Cli({"EXISTS", "scimsync:paused"}), "1");

  e2e_.SetDaemonApiKey(0, "test-key");
  e2e_.ReloadDaemon(0);
  ASSERT_TRUE(e2e_.WaitIdle(60000)) << "still pending: " << e2e_.Pending();
  auto problems = e2e_.CheckUsers(w.expected);
  EXPECT_TRUE(problems.empty()) << Join(problems);
  EXPECT_NE(e2e_.Log(0).find("SCIM work resumed"), std::string::npos);
  EXPECT_EQ(e2e_.Log(0).find("wrong-key"), std::string::npos) << "a key was logged";
}

TEST_F(WorkersE2E, GuardHoldsAMassTerminationUntilReleased) {
  E2EDaemonOptions options;
  options.guard_max_suspends = 5;
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  const int64_t t0 = 1'790'000'000;
  for (int e = 0; e < 12; ++e) {
    std::string id = "G" + std::to_string(e);
    ASSERT_EQ(e2e_.PostUntilAccepted(0, GenericBody(id + "-1", "employee.created", id, "T", t0)),
              202);
  }
  ASSERT_TRUE(e2e_.WaitIdle(30000));
  for (int e = 0; e < 12; ++e) {
    std::string id = "G" + std::to_string(e);
    ASSERT_EQ(
        e2e_.PostUntilAccepted(0, GenericBody(id + "-2", "employee.terminated", id, "T", t0 + 1)),
        202);
  }
  // Five go through; the rest are held, kept in Redis, and logged.
  auto count_suspended = [&] {
    int n = 0;
    for (const auto& json : e2e_.scim().Users()) {
      if (json.find("\"active\":false") != std::string::npos) ++n;
    }
    return n;
  };
  WaitFor([&] { return count_suspended() >= 5; }, 10000, /*interval_ms=*/100);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // a sixth would show by now
  int suspended = count_suspended();
  EXPECT_EQ(suspended, 5);
  EXPECT_EQ(e2e_.Pending(), 7);

  TempDir out;
  Process release;
  ASSERT_TRUE(release.Start({e2e_.Scimsyncd(), "guard", "release", "--config", e2e_.config_path(0)},
                            out.File("out")));
  EXPECT_EQ(release.Wait(20000), 0) << ReadFile(out.File("out"));
  ASSERT_TRUE(e2e_.WaitIdle(60000)) << "still pending: " << e2e_.Pending();
  suspended = 0;
  for (const auto& json : e2e_.scim().Users()) {
    if (json.find("\"active\":false") != std::string::npos) ++suspended;
  }
  EXPECT_EQ(suspended, 12);
}

TEST_F(WorkersE2E, PermanentErrorsAreDeadLetteredAndCanBeReplayed) {
  ASSERT_TRUE(e2e_.StartDaemon(0)) << e2e_.Log(0);
  // JumpCloud rejects the create once with a 400: the item dies with the reason and the exchange.
  e2e_.scim().InjectFault(Fault::Status(400).On("POST", "/Users"));
  ASSERT_EQ(
      e2e_.PostUntilAccepted(0, GenericBody("d1", "employee.created", "D1", "T", 1'790'000'000)),
      202);
  ASSERT_TRUE(e2e_.WaitIdle(30000));
  EXPECT_EQ(e2e_.redis().Cli({"XLEN", "scimsync:dlq"}), "1");

  TempDir out;
  auto run = [&](std::vector<std::string> args) {
    Process p;
    std::vector<std::string> argv = {e2e_.Scimsyncd()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--config");
    argv.push_back(e2e_.config_path(0));
    std::remove(out.File("out").c_str());
    p.Start(argv, out.File("out"));
    int rc = p.Wait(20000);
    return std::make_pair(rc, ReadFile(out.File("out")));
  };
  auto [list_rc, list] = run({"dlq", "list"});
  EXPECT_EQ(list_rc, 0);
  EXPECT_NE(list.find("D1"), std::string::npos) << list;
  std::string id = list.substr(0, list.find(' '));
  auto [show_rc, show] = run({"dlq", "show", id});
  EXPECT_EQ(show_rc, 0);
  EXPECT_NE(show.find("\"error_kind\":\"permanent\""), std::string::npos) << show;
  EXPECT_NE(show.find("POST"), std::string::npos) << show;
  EXPECT_EQ(show.find("test-key"), std::string::npos) << "the API key is in a dead letter";
  auto [replay_rc, replay] = run({"dlq", "replay", id});
  EXPECT_EQ(replay_rc, 0) << replay;
  ASSERT_TRUE(e2e_.WaitIdle(30000));
  EXPECT_TRUE(e2e_.CheckUsers({{"D1", {"T", true}}}).empty());
  EXPECT_EQ(e2e_.redis().Cli({"XLEN", "scimsync:dlq"}), "0");
  auto [status_rc, status] = run({"status", "--json"});
  EXPECT_EQ(status_rc, 0);
  EXPECT_NE(status.find("\"dead_letters\":0"), std::string::npos) << status;
}

TEST_F(WorkersE2E, SigtermDrainsAndExitsZero) {
  ASSERT_TRUE(e2e_.StartDaemon(0)) << e2e_.Log(0);
  ASSERT_EQ(
      e2e_.PostUntilAccepted(0, GenericBody("s1", "employee.created", "S1", "T", 1'790'000'000)),
      202);
  ASSERT_TRUE(e2e_.WaitIdle(30000));
  EXPECT_EQ(e2e_.StopDaemon(0), 0) << e2e_.Log(0);
  EXPECT_NE(e2e_.Log(0).find("scimsyncd stopped"), std::string::npos);
}

// Fencing. Instance A freezes (SIGSTOP) while a sync is in flight -- waiting on a slow GET --
// until its lease is long gone. B takes the partition over, applies A's pending update and the
// newer events (an update, then the termination). When A is thawed its GET answer arrives; A
// must not send its stale PATCH: the terminated user stays suspended with the newest title,
// and the last write JumpCloud saw is B's.
TEST_F(WorkersE2E, AFrozenInstanceNeverWritesAfterLosingItsLease) {
  E2EDaemonOptions options;
  options.workers = 2;
  options.extra_worker_keys = "  lease_ms: 2000\n  takeover_grace_ms: 500\n";
  // A's update must read the user first, so that A can freeze between its read and its write:
  // with the link's snapshot it would send its PATCH at once, before losing the lease. The
  // snapshot path's writes ask the same fence (converger_test, TheFenceIsAskedBefore...).
  options.extra_target_keys = "  snapshot_max_age_s: 0\n";
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  const int64_t t0 = 1'790'000'000;
  ASSERT_EQ(e2e_.PostUntilAccepted(0, GenericBody("f1", "employee.created", "F1", "Analyst", t0)),
            202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  ASSERT_TRUE(e2e_.CheckUsers({{"F1", {"Analyst", true}}}).empty());

  // A's next read of the user is answered after 1.8 s (within target.timeout_ms, 2 s); A
  // freezes while it waits, and finds the answer there when it is thawed.
  e2e_.scim().InjectFault(Fault::Delay(1800).On("GET", "/Users"));
  ASSERT_EQ(e2e_.PostUntilAccepted(0, GenericBody("f2", "employee.updated", "F1", "Stale", t0 + 1)),
            202);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  e2e_.FreezeDaemon(0);

  ASSERT_TRUE(e2e_.StartDaemon(1, options)) << e2e_.Log(1);
  ASSERT_EQ(e2e_.PostUntilAccepted(1, GenericBody("f3", "employee.updated", "F1", "Newer", t0 + 2)),
            202);
  ASSERT_EQ(
      e2e_.PostUntilAccepted(1, GenericBody("f4", "employee.terminated", "F1", "Newer", t0 + 3)),
      202);
  WaitFor(
      [&] {
        return e2e_.CheckUsers({{"F1", {"Newer", false}}}).empty();
      },
      30000,
      /*interval_ms=*/100);
  ASSERT_TRUE(e2e_.CheckUsers({{"F1", {"Newer", false}}}).empty())
      << Join(e2e_.CheckUsers({{"F1", {"Newer", false}}})) << e2e_.Log(1);
  const size_t writes_before_thaw = e2e_.scim().requests().size();

  e2e_.ThawDaemon(0);
  // A reads its held answer now; give it time to do whatever it would do.
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0) << e2e_.Log(1);
  std::vector<std::string> late;
  const auto requests = e2e_.scim().requests();
  for (size_t i = writes_before_thaw; i < requests.size(); ++i) {
    const auto& r = requests[i];
    if (r.method != "GET" && r.body.find("Stale") != std::string::npos) {
      late.push_back(r.method + " " + r.path + " " + r.body);
    }
  }
  EXPECT_TRUE(late.empty()) << "A wrote after losing its lease:\n" << Join(late);
  EXPECT_TRUE(e2e_.CheckUsers({{"F1", {"Newer", false}}}).empty())
      << Join(e2e_.CheckUsers({{"F1", {"Newer", false}}}));
  EXPECT_NE(e2e_.Log(0).find("lost a partition lease"), std::string::npos) << e2e_.Log(0);
  // A's sync was stopped by the fence right before its PATCH, and A asked the new owner for a
  // repair, which B applied: the newest state, once more.
  EXPECT_NE(e2e_.Log(0).find("not sending a SCIM write: fenced"), std::string::npos) << e2e_.Log(0);
  EXPECT_NE(e2e_.Log(0).find("enqueued a repair"), std::string::npos) << e2e_.Log(0);
  EXPECT_EQ(e2e_.redis().Cli({"XLEN", "scimsync:dlq"}), "0");
}

// An instance is SIGKILLed after its suspension landed in JumpCloud, before it stored the link's
// new snapshot. The rehire that follows is taken in while no worker runs, so the next owner gets
// the redelivered termination and the rehire (back to the same job) as one burst whose newest
// state is active. The snapshot left from before the suspension said exactly that: the burst sent
// nothing and the rehired employee stayed locked out. Now the snapshot is forgotten before every
// write.
TEST_F(WorkersE2E, AKillAfterASuspensionLandedCannotLeaveTheRehiredEmployeeSuspended) {
  E2EDaemonOptions options;
  options.workers = 2;
  options.extra_worker_keys = "  lease_ms: 2000\n  takeover_grace_ms: 500\n";
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  const int64_t t0 = 1'790'000'000;
  ASSERT_EQ(e2e_.PostUntilAccepted(0, GenericBody("k1", "employee.created", "K1", "Analyst", t0)),
            202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  ASSERT_TRUE(e2e_.CheckUsers({{"K1", {"Analyst", true}}}).empty());

  // The suspension is applied at once and its answer held: the instance is killed meanwhile.
  e2e_.scim().InjectFault(Fault::Delay(1500).On("PATCH", "/Users"));
  ASSERT_EQ(
      e2e_.PostUntilAccepted(0, GenericBody("k2", "employee.terminated", "K1", "Analyst", t0 + 1)),
      202);
  WaitFor(
      [&] {
        auto users = e2e_.scim().FindUsers("externalId", "K1");
        return users.size() == 1 && users[0].find("\"active\":false") != std::string::npos;
      },
      30000, /*interval_ms=*/5);
  e2e_.KillDaemon(0);
  ASSERT_TRUE(e2e_.CheckUsers({{"K1", {"Analyst", false}}}).empty())
      << Join(e2e_.CheckUsers({{"K1", {"Analyst", false}}})) << e2e_.Log(0);

  // The rehire arrives while nothing works the queue (an ingest-only instance takes it in).
  E2EDaemonOptions ingest = options;
  ingest.workers = 0;
  ASSERT_TRUE(e2e_.StartDaemon(1, ingest)) << e2e_.Log(1);
  ASSERT_EQ(
      e2e_.PostUntilAccepted(1, GenericBody("k3", "employee.rehired", "K1", "Analyst", t0 + 2)),
      202);

  ASSERT_TRUE(e2e_.StartDaemon(2, options)) << e2e_.Log(2);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(2);
  EXPECT_TRUE(e2e_.CheckUsers({{"K1", {"Analyst", true}}}).empty())
      << Join(e2e_.CheckUsers({{"K1", {"Analyst", true}}})) << e2e_.Log(2);
  EXPECT_EQ(e2e_.redis().Cli({"XLEN", "scimsync:dlq"}), "0");
}

// Scale-out under load: A works a backlog against a rate-limited target, so a pass over one
// partition lasts far longer than a lease. B starts next to it and gets its share (half the
// partitions) within about a lease period, because A hands partitions over between employees,
// not only between passes. Nobody is synced by both at once.
TEST_F(WorkersE2E, AJoiningInstanceGetsItsShareWithinAboutALeaseUnderLoad) {
  E2EDaemonOptions options;
  options.workers = 2;
  options.rate = 4;  // requests per second, shared: a pass over a partition takes ~15 s
  options.extra_worker_keys = "  lease_ms: 2000\n  takeover_grace_ms: 500\n";
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  Workload w = MakeWorkload(240, 1, 11);
  ASSERT_EQ(e2e_.SendWorkload(w), 240);
  auto owners = [&] {
    std::map<std::string, int> out;
    for (int p = 0; p < 8; ++p) {
      ++out[e2e_.redis().Cli({"GET", "scimsync:lease:{p" + std::to_string(p) + "}"})];
    }
    return out;
  };
  const std::string a = e2e_.redis().Cli({"GET", "scimsync:lease:{p0}"});
  ASSERT_EQ(owners()[a], 8) << e2e_.Log(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // A is inside its passes

  ASSERT_TRUE(e2e_.StartDaemon(1, options)) << e2e_.Log(1);
  const auto started = std::chrono::steady_clock::now();
  int b_owns = 0;
  WaitFor(
      [&] {
        auto o = owners();
        b_owns = 8 - o[a] - o[""];
        return b_owns >= 4;
      },
      20000, /*interval_ms=*/100);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
  EXPECT_GE(b_owns, 4) << e2e_.Log(0);
  EXPECT_LT(took, 6000) << "the new instance waited " << took << " ms for its share";
  EXPECT_TRUE(e2e_.Pending() > 0) << "the backlog was gone: the test proves nothing";
  EXPECT_TRUE(e2e_.ConcurrentWork().empty()) << Join(e2e_.ConcurrentWork());
}

// The same lifecycle against the independent SCIM implementation (scimmy), so the daemon is not
// only right about our own double.
TEST_F(WorkersE2E, LifecycleAgainstTheScimmyServer) {
  ScimmyServer node("scimmy-key");
  ASSERT_TRUE(node.Start()) << node.error();
  const int port = node.port();
  E2EDaemonOptions options;
  options.api_key = "scimmy-key";
  options.base_url = node.base_url();
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);

  httplib::Client scim("127.0.0.1", port);
  auto user = [&](const std::string& external_id) {
    auto res = scim.Get("/scim/v2/Users?filter=externalId%20eq%20%22" + external_id + "%22",
                        {{"x-api-key", "scimmy-key"}});
    rapidjson::Document doc;
    if (res && res->status == 200) doc.Parse(res->body.c_str());
    return doc;
  };
  const int64_t t0 = 1'790'000'000;
  const char* steps[][3] = {{"employee.created", "Analyst", "true"},
                            {"employee.updated", "Manager", "true"},
                            {"employee.terminated", "Manager", "false"},
                            {"employee.rehired", "Director", "true"}};
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(e2e_.PostUntilAccepted(
                  0, GenericBody("m" + std::to_string(i), steps[i][0], "M1", steps[i][1], t0 + i)),
              202);
    ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
    auto doc = user("M1");
    ASSERT_TRUE(doc.IsObject() && doc.HasMember("Resources") && doc["Resources"].IsArray())
        << e2e_.Log(0);
    ASSERT_EQ(doc["Resources"].Size(), 1u) << "step " << i << ": not exactly one user";
    const auto& u = doc["Resources"][0];
    EXPECT_EQ(std::string(u["title"].GetString()), steps[i][1]) << "step " << i;
    bool active = !u.HasMember("active") || u["active"].GetBool();
    EXPECT_EQ(active, std::string(steps[i][2]) == "true") << "step " << i;
  }
  node.Kill();
}

// The offboarding guarantee through the real binary: a termination is sent on its own and
// always, a record JumpCloud refuses does not keep the user active, and no account is created
// for a leaver.
TEST_F(WorkersE2E, TerminationsAlwaysLandAndNeverCreateAnAccount) {
  // P3's rename onto a taken userName is sent only where userNames follow HR.
  E2EDaemonOptions options;
  options.extra_profile_keys = "    username_updates: follow\n";
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  const int64_t t0 = 1'790'000'000;
  auto active_of = [&](const std::string& employee) -> std::string {
    auto users = e2e_.scim().FindUsers("externalId", employee);
    if (users.size() != 1) return "users: " + std::to_string(users.size());
    return users[0].find("\"active\":false") == std::string::npos ? "active" : "suspended";
  };
  // P1 exists and reads inactive (its password is pending), but is not suspended.
  e2e_.scim().AddUser(R"({"userName":"emp.p1","externalId":"P1","active":false,)"
                      R"("emails":[{"value":"emp.p1@example.com","primary":true}]})");
  // P3 is hired; its termination's record renames it onto another employee's userName.
  ASSERT_EQ(e2e_.PostUntilAccepted(0, GenericBody("p3-1", "employee.created", "P3", "T", t0)), 202);
  // P4 is hired, terminated, then deleted by an admin; a later update must not bring it back.
  ASSERT_EQ(e2e_.PostUntilAccepted(0, GenericBody("p4-1", "employee.created", "P4", "T", t0)), 202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  e2e_.scim().AddUser(R"({"userName":"taken","externalId":"X9"})");
  e2e_.scim().ClearRequests();

  ASSERT_EQ(
      e2e_.PostUntilAccepted(0, GenericBody("p1-2", "employee.terminated", "P1", "T", t0 + 1)),
      202);
  // P2: never seen by JumpCloud.
  ASSERT_EQ(
      e2e_.PostUntilAccepted(0, GenericBody("p2-2", "employee.terminated", "P2", "T", t0 + 1)),
      202);
  std::string p3 = GenericBody("p3-2", "employee.terminated", "P3", "T", t0 + 1);
  p3.replace(p3.find("emp.p3@example.com"), 18, "taken@example.com");
  ASSERT_EQ(e2e_.PostUntilAccepted(0, p3), 202);
  ASSERT_EQ(
      e2e_.PostUntilAccepted(0, GenericBody("p4-2", "employee.terminated", "P4", "T", t0 + 1)),
      202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);

  EXPECT_EQ(active_of("P1"), "suspended");
  // Each user's first write is the suspension, alone.
  const std::string alone = R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],)"
                            R"("Operations":[{"op":"replace","path":"active","value":false}]})";
  std::map<std::string, std::string> first_patch;
  for (const auto& r : e2e_.scim().requests()) {
    if (r.method == "PATCH" && first_patch.count(r.path) == 0) first_patch[r.path] = r.body;
  }
  EXPECT_EQ(first_patch.size(), 3u) << "P1, P3 and P4 are written";
  for (const auto& [path, body] : first_patch) EXPECT_EQ(body, alone) << path;
  EXPECT_EQ(active_of("P2"), "users: 0");
  EXPECT_EQ(active_of("P3"), "suspended");
  EXPECT_EQ(e2e_.redis().Cli({"XLEN", "scimsync:dlq"}), "1") << "P3's rename is for a human";
  EXPECT_EQ(active_of("P4"), "suspended");

  auto p4 = e2e_.scim().FindUsers("externalId", "P4");
  ASSERT_EQ(p4.size(), 1u);
  size_t at = p4[0].find("\"id\":\"") + 6;
  ASSERT_TRUE(e2e_.scim().RemoveUser(p4[0].substr(at, p4[0].find('"', at) - at)));
  ASSERT_EQ(e2e_.PostUntilAccepted(0, GenericBody("p4-3", "employee.updated", "P4", "T2", t0 + 2)),
            202);
  ASSERT_TRUE(e2e_.WaitIdle(30000)) << e2e_.Log(0);
  EXPECT_EQ(active_of("P4"), "users: 0");
  EXPECT_EQ(e2e_.scim().CountRequests("POST"), 0) << "an account was created for a leaver";
}

// Discovery that answers without the key (or 404s) cannot tell a good key from a bad one: the
// pause must hold until a request that needs the key succeeds.
TEST_F(WorkersE2E, ABadKeyStaysPausedWhenDiscoveryIsPublic) {
  ASSERT_TRUE(e2e_.StartScim({.public_discovery = true}));
  E2EDaemonOptions options;
  options.api_key = "wrong-key";
  ASSERT_TRUE(e2e_.StartDaemon(0, options)) << e2e_.Log(0);
  const int64_t t0 = 1'790'000'000;
  ASSERT_EQ(e2e_.PostUntilAccepted(0, GenericBody("k1", "employee.created", "K1", "T", t0)), 202);
  ASSERT_TRUE(WaitFor([&] { return e2e_.Log(0).find("SCIM work paused") != std::string::npos; },
                      10000,
                      /*interval_ms=*/100))
      << e2e_.Log(0);
  // The workers probe every 5 s.
  std::this_thread::sleep_for(std::chrono::milliseconds(6500));
  EXPECT_EQ(e2e_.Log(0).find("SCIM work resumed"), std::string::npos) << e2e_.Log(0);
  EXPECT_EQ(e2e_.redis().Cli({"EXISTS", "scimsync:paused"}), "1");
  EXPECT_EQ(e2e_.scim().user_count(), 0u);
  EXPECT_GT(e2e_.Pending(), 0);
}

}  // namespace
}  // namespace scimsync::testing
