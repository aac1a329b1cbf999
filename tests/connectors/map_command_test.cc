// `scimsyncd map` on every vendor sample, plus its verification report and exit codes.
#include "scimsync/connectors/map_command.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rapidjson/document.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "scimsync/connectors/profile.h"
#include "scimsync/scim/converger.h"
#include "test_support.h"
#include "test_util.h"

namespace scimsync::connectors {
namespace {

namespace fs = std::filesystem;
using scimsync::testing::ReadFile;
using scimsync::testing::WriteFile;

const fs::path kFixtures = fs::path(SCIMSYNC_SOURCE_DIR) / "tests/connectors/fixtures";

class MapCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("MAP_TEST_SECRET", "s3cret", 1);  // NOLINT(concurrency-mt-unsafe)
    config_ = dir_.File("scimsync.yaml");
    std::string profiles;
    for (const char* p : {"generic", "bamboohr", "hibob", "personio", "rippling", "gusto", "deel",
                          "merge", "finch", "factorial"}) {
      // BambooHR's API URL names the company; the others need nothing beyond the secret.
      std::string extra = std::string(p) == "bamboohr" ? ", api: {tenant: acmeinc}" : "";
      profiles += std::string("  - {name: ") + p + ", connector: " + p +
                  ", secret_env: MAP_TEST_SECRET" + extra + "}\n";
    }
    WriteFile(config_, "target: {dry_run: true, dry_run_file: " + dir_.File("dry.jsonl") +
                           "}\nprofiles:\n" + profiles);
  }

  int Run(std::vector<std::string> args) {
    std::ostringstream out, err;
    args.insert(args.begin(), {"map", "--config", config_});
    int rc = RunMapCommand(args, out, err);
    out_ = out.str();
    err_ = err.str();
    json_.Parse(out_.c_str());
    return rc;
  }

  // The recorded answer as map --record takes it: the body, or for several requests an object
  // with one member per request name.
  std::string RecordFor(const fs::path& case_dir) {
    if (fs::exists(case_dir / "response.json")) return (case_dir / "response.json").string();
    std::string combined;
    for (const auto& f : fs::directory_iterator(case_dir)) {
      std::string name = f.path().filename().string();
      if (name.rfind("response-", 0) != 0) continue;
      std::string member = name.substr(9, name.size() - 9 - 5);
      combined += (combined.empty() ? "" : ",") + ("\"" + member + "\":" + ReadFile(f.path()));
    }
    if (combined.empty()) return "";
    std::string path = dir_.File(case_dir.filename().string() + "-record.json");
    WriteFile(path, "{" + combined + "}");
    return path;
  }

  scimsync::testing::TempDir dir_;
  std::string config_;
  std::string out_, err_;
  rapidjson::Document json_;
};

TEST_F(MapCommand, MapsEveryVendorSample) {
  size_t samples = 0;
  for (const auto& profile_dir : fs::directory_iterator(kFixtures)) {
    if (!profile_dir.is_directory()) continue;
    const std::string profile = profile_dir.path().filename().string();
    for (const auto& case_dir : fs::directory_iterator(profile_dir.path())) {
      fs::path body;
      std::vector<std::string> extra;
      for (const char* f : {"request.json", "request.form", "request.txt"}) {
        if (fs::exists(case_dir.path() / f)) body = case_dir.path() / f;
      }
      if (body.empty()) continue;
      SCOPED_TRACE(body.string());
      if (body.extension() == ".form") {
        extra = {"--header", "Content-Type: application/x-www-form-urlencoded"};
      }
      std::string record = RecordFor(case_dir.path());
      if (!record.empty()) extra.insert(extra.end(), {"--record", record});
      if (fs::exists(case_dir.path() / "headers.txt")) {
        std::istringstream lines(ReadFile(case_dir.path() / "headers.txt"));
        for (std::string line; std::getline(lines, line);) extra.insert(extra.end(), {"-H", line});
      }
      std::vector<std::string> args = {"--profile", profile, body.string()};
      args.insert(args.end(), extra.begin(), extra.end());
      int rc = Run(args);
      ASSERT_FALSE(json_.HasParseError()) << out_ << err_;
      bool expect_problems = profile == "generic" && case_dir.path().filename() == "batch";
      EXPECT_EQ(rc, expect_problems ? 65 : 0) << out_ << err_;
      ASSERT_TRUE(json_.HasMember("items")) << out_;
      for (const auto& item : json_["items"].GetArray()) {
        EXPECT_TRUE(item.HasMember("action")) << out_;
        EXPECT_TRUE(item.HasMember("outcome")) << out_;
        EXPECT_FALSE(item.HasMember("error")) << out_;
      }
      ++samples;
    }
  }
  EXPECT_GE(samples, 15u);
}

// A record read back that dates a change ahead (fetch.recheck_at) shows when the item is planned
// again, and why.
TEST_F(MapCommand, ShowsWhenARecordDatedChangeIsPlannedAgain) {
  const fs::path c = kFixtures / "factorial/employee-updated-termination-in-record";
  ASSERT_EQ(Run({"--profile", "factorial", (c / "request.json").string(), "--record",
                 (c / "response.json").string(), "-H", "x-factorial-wh-challenge: s3cret", "--now",
                 "1795000000"}),
            0)
      << out_ << err_;
  const auto& item = json_["items"][0];
  EXPECT_STREQ(item["action"].GetString(), "sync");
  ASSERT_TRUE(item.HasMember("recheck_at")) << out_;
  EXPECT_EQ(item["recheck_at"].GetInt64(), 1'798'675'200);
  EXPECT_NE(std::string(item["reason"].GetString()).find("fetch.recheck_at"), std::string::npos)
      << out_;
}

// Each item says whether scimsyncd would act on it, acknowledge it or refuse the
// request, and why; acknowledged items exit 0.
TEST_F(MapCommand, ShowsActOrAcknowledgeOrRefuseAndWhy) {
  EXPECT_EQ(
      Run({"--profile", "finch", (kFixtures / "finch/account-updated/request.json").string()}), 0)
      << out_ << err_;
  EXPECT_EQ(json_["http_status"].GetInt(), 200) << out_;
  ASSERT_EQ(json_["acknowledged"].Size(), 1u) << out_;
  EXPECT_STREQ(json_["acknowledged"][0]["outcome"].GetString(), "acknowledge");
  EXPECT_STREQ(json_["acknowledged"][0]["event_type"].GetString(), "account.updated");
  EXPECT_NE(std::string(json_["acknowledged"][0]["why"].GetString()).find("events.other"),
            std::string::npos);
  EXPECT_EQ(json_["items"].Size(), 0u);

  WriteFile(dir_.File("p.json"),
            R"({"id":"e","type":"employee.created","employee":{"id":"E9","workEmail":"a@b.c"}})");
  EXPECT_EQ(Run({"--profile", "generic", dir_.File("p.json")}), 0) << out_ << err_;
  EXPECT_EQ(json_["http_status"].GetInt(), 202);
  EXPECT_STREQ(json_["items"][0]["outcome"].GetString(), "act");

  WriteFile(dir_.File("nokey.json"), R"({"id":"e","type":"employee.created","employee":{}})");
  EXPECT_EQ(Run({"--profile", "generic", dir_.File("nokey.json")}), 65);
  EXPECT_STREQ(json_["outcome"].GetString(), "refuse");
  EXPECT_EQ(json_["http_status"].GetInt(), 400);
  EXPECT_NE(std::string(json_["error"].GetString()).find("/employee/id"), std::string::npos);
}

TEST_F(MapCommand, ShowsActionUserAndProblems) {
  WriteFile(dir_.File("p.json"),
            R"({"id":"e","type":"employee.created","employee":{"id":"E9","workEmail":"a@b.c"}})");
  EXPECT_EQ(Run({"--profile", "generic", dir_.File("p.json")}), 0) << out_ << err_;
  const auto& item = json_["items"][0];
  EXPECT_STREQ(item["action"].GetString(), "sync");
  EXPECT_STREQ(item["user"]["userName"].GetString(), "a");
  EXPECT_STREQ(item["user"]["externalId"].GetString(), "E9");
  EXPECT_EQ(item["problems"].Size(), 0u);

  WriteFile(dir_.File("bad.json"),
            R"({"id":"e","type":"employee.created","employee":{"id":"E9","username":"x"}})");
  EXPECT_EQ(Run({"--profile", "generic", dir_.File("bad.json")}), 65);
  EXPECT_STREQ(json_["items"][0]["problems"][0]["field"].GetString(), "emails[primary].value");
}

// A SCIM server that knows nobody: every lookup finds no one, a POST creates. Keeps the POSTs.
class EmptyScimServer final : public scim::Transport {
 public:
  Result<scim::HttpResponse> Send(const scim::HttpRequest& r, int64_t /*timeout_ms*/) override {
    if (r.method == "POST") {
      posts.push_back(r.body);
      return scim::HttpResponse{201, R"({"id":"u-1","userName":"x"})", "", ""};
    }
    if (r.target.rfind("/ServiceProviderConfig", 0) == 0)
      return scim::HttpResponse{404, "", "", ""};
    return scim::HttpResponse{
        200,
        R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,)"
        R"("Resources":[]})",
        "", ""};
  }
  std::string Describe(const scim::HttpRequest& r) const override {
    return r.method + " " + r.target;
  }
  std::vector<std::string> posts;
};

// `map` promises to show what would be sent: its user is the body the converger POSTs for the
// same record, enterprise schema, employeeNumber and `active` included -- also for a record
// that maps none of the enterprise attributes.
TEST_F(MapCommand, ShowsTheBodyTheConvergerPosts) {
  const std::string payload =
      R"({"id":"e","type":"employee.created","employee":{"id":"E9","workEmail":"zed@b.c",)"
      R"("firstName":"Zed","lastName":"Zeta"}})";
  WriteFile(dir_.File("p.json"), payload);
  ASSERT_EQ(Run({"--profile", "generic", dir_.File("p.json")}), 0) << out_ << err_;
  const rapidjson::Value& shown = json_["items"][0]["user"];

  config::Problems problems("test.yaml");
  auto profile =
      LoadProfile(testing::Entry("{name: generic, connector: generic, secret_env: S}"), &problems);
  ASSERT_NE(profile, nullptr) << testing::ProblemsText(problems);
  auto fetcher = NewRecordedFetcher("");
  auto plan = profile->PlanItem(WorkItem{"", "E9", "employee.created", "", payload}, *fetcher, 0);
  ASSERT_TRUE(plan.ok() && plan->user) << (plan.ok() ? plan->reason : plan.error().message);

  EmptyScimServer server;
  FakeClock clock;
  scim::SequenceRandom random({0.5});
  scim::MemoryLinkStore links;
  auto limiter = scim::NewMemoryRateLimiter({}, clock);
  scim::Converger converger({}, {&server, limiter.get(), &links, &clock, &random, {}});
  scim::Job job;
  job.scope = "generic";
  job.desired = *plan->user;
  const scim::Outcome outcome = converger.Converge(job);
  ASSERT_EQ(outcome.decision, scim::Decision::kDone) << outcome.reason;
  ASSERT_EQ(server.posts.size(), 1u);
  rapidjson::Document posted;
  posted.Parse(server.posts[0].c_str());
  EXPECT_TRUE(posted == shown) << "map shows: " << testing::Compact(shown)
                               << "\nPOSTed:    " << server.posts[0];
}

TEST_F(MapCommand, AFetchingProfileNeedsARecordAndMakesNoNetworkCall) {
  EXPECT_EQ(
      Run({"--profile", "bamboohr", (kFixtures / "bamboohr/event-json/request.json").string()}),
      65);
  const auto& item = json_["items"][0];
  EXPECT_NE(std::string(item["error"].GetString()).find("--record"), std::string::npos) << out_;
}

TEST_F(MapCommand, VerifySaysWhichHeaderAndRecipeFail) {
  const std::string body =
      R"({"id":"e","type":"employee.updated","employee":{"id":"E1","workEmail":"a@b.io"}})";
  WriteFile(dir_.File("p.json"), body);
  EXPECT_EQ(Run({"--profile", "generic", "--verify", dir_.File("p.json")}), 65);
  EXPECT_FALSE(json_["verify"]["ok"].GetBool());
  std::string error = json_["verify"]["error"].GetString();
  EXPECT_NE(error.find("missing header X-Scimsync-Signature"), std::string::npos) << error;
  EXPECT_NE(std::string(json_["verify"]["recipe"].GetString()).find("hmac-sha256 over body"),
            std::string::npos);

  EXPECT_EQ(Run({"--profile", "generic", "--verify", "-H", "X-Scimsync-Signature: sha256=00ff",
                 dir_.File("p.json")}),
            65);
  error = json_["verify"]["error"].GetString();
  EXPECT_NE(error.find("does not match"), std::string::npos) << error;
  EXPECT_EQ(out_.find("s3cret"), std::string::npos);

  std::string sig = "sha256=" + testing::HexHmacSha256("s3cret", body);
  EXPECT_EQ(Run({"--profile", "generic", "--verify", "-H", "X-Scimsync-Signature: " + sig,
                 dir_.File("p.json")}),
            0)
      << out_;
  EXPECT_TRUE(json_["verify"]["ok"].GetBool());
}

TEST_F(MapCommand, VerifyReportsTimestampSkew) {
  WriteFile(dir_.File("p.json"),
            R"({"event_type":"individual.updated","data":{"individual_id":"i"}})");
  EXPECT_EQ(Run({"--profile", "finch", "--verify", "--now", "1700000400", "-H",
                 "Finch-Event-Id: msg_1", "-H", "Finch-Timestamp: 1700000000", "-H",
                 "Finch-Signature: v1,AAAA", dir_.File("p.json")}),
            65);
  std::string error = json_["verify"]["error"].GetString();
  EXPECT_NE(error.find("Finch-Timestamp is 400 s old"), std::string::npos) << error;
}

TEST_F(MapCommand, HandshakesAreShownAndExitZero) {
  WriteFile(dir_.File("ping.txt"), "Ping test");
  EXPECT_EQ(Run({"--profile", "hibob", "--content-type", "text/plain", dir_.File("ping.txt")}), 0);
  EXPECT_TRUE(json_["handshake"].GetBool());
  EXPECT_EQ(json_["items"].Size(), 0u);
}

TEST_F(MapCommand, UsageAndConfigErrors) {
  std::ostringstream out, err;
  EXPECT_EQ(RunMapCommand({"map", "--profile", "generic"}, out, err), 64);
  EXPECT_NE(err.str().find("--config FILE is required"), std::string::npos);
  EXPECT_EQ(Run({"--profile", "nosuch", "x.json"}), 78);
  EXPECT_NE(err_.find("no profile named 'nosuch'"), std::string::npos);
  EXPECT_EQ(Run({"--profile", "generic", dir_.File("missing.json")}), 64);
  WriteFile(dir_.File("p.json"), "{not json");
  EXPECT_EQ(Run({"--profile", "generic", dir_.File("p.json")}), 65);
  EXPECT_NE(std::string(json_["error"].GetString()).find("not valid JSON"), std::string::npos);
}

}  // namespace
}  // namespace scimsync::connectors
