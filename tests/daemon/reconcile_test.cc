// Reconciliation against real parts: a real redis-server, an in-process HRIS API with
// pagination (cpp-httplib, shaped like Rippling's so the built-in `rippling` profile lists and
// fetches from it), and both SCIM test servers -- the in-process fake and the independent scimmy
// server. Seeded drift of every kind is found; --dry-run writes nothing anywhere; a real run
// enqueues one sync per drifted employee; the real scimsyncd's workers then fix it, and the next
// reconciliation finds nothing and sends no write.
#include "scimsync/daemon/reconcile.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "fake_scim_server.h"
#include "scimsync/clock.h"
#include "scimsync/daemon/admin.h"
#include "scimsync/daemon/app.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/client.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/protocol.h"
#include "test_support.h"

namespace scimsync::daemon {
namespace {

using scimsync::testing::FakeScimServer;
using scimsync::testing::Process;
using scimsync::testing::RedisServer;
using scimsync::testing::TempDir;

constexpr char kHrisKey[] = "hris-key-5f2e";
constexpr char kScimKey[] = "test-key";

std::string LowerCase(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Compact(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return buf.GetString();
}

// ---- the HRIS -----------------------------------------------------------------------------

// Rippling-shaped: GET /platform/api/employees/include_terminated?offset=&limit= answers a JSON
// array but never more than `page_cap` records whatever the limit (APIs cap pages), and GET
// /platform/api/employees/{id} answers one record or 404. A second API, /relay/employees, serves
// the same employees in scimsync's generic shape with cursor pagination.
class FakeHris {
 public:
  FakeHris() {
    server_.Get("/platform/api/employees/include_terminated",
                [this](const httplib::Request& req, httplib::Response& res) {
                  if (!Authorized(req, res)) return;
                  ++list_requests;
                  const size_t offset = std::stoul(req.get_param_value("offset"));
                  const size_t limit = std::stoul(req.get_param_value("limit"));
                  std::lock_guard lock(mu_);
                  if (fail_list_with != 0) {
                    res.status = fail_list_with;
                    res.set_header("Retry-After", "0");  // retried at once: a fast test
                    return;
                  }
                  if (garbage_list) {
                    res.set_content("<html>maintenance</html>", "text/html");
                    return;
                  }
                  std::string body = "[";
                  size_t i = 0, n = 0;
                  for (const auto& [id, record] : employees_) {
                    if (hidden_.count(id) != 0) continue;
                    if (i++ < offset || n >= std::min(limit, page_cap.load())) continue;
                    body += (n++ ? "," : "") + record;
                  }
                  res.set_content(body + "]", "application/json");
                });
    server_.Get(R"(/platform/api/employees/([^/]+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  if (!Authorized(req, res)) return;
                  ++fetch_requests;
                  std::lock_guard lock(mu_);
                  auto it = employees_.find(req.matches[1]);
                  if (it == employees_.end()) {
                    res.status = 404;
                    res.set_content(R"({"error":"not found"})", "application/json");
                    return;
                  }
                  res.set_content(it->second, "application/json");
                });
    server_.Get("/relay/employees", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Authorized(req, res)) return;
      ++list_requests;
      std::lock_guard lock(mu_);
      // Cursor = the last id of the previous page; two per page.
      const std::string after = req.has_param("cursor") ? req.get_param_value("cursor") : "";
      std::string body = "{\"employees\":[";
      std::string last;
      int n = 0;
      for (const auto& [id, record] : generic_) {
        if (id <= after || n >= 2) continue;
        body += (n++ ? "," : "") + record;
        last = id;
      }
      const bool more = !last.empty() && generic_.upper_bound(last) != generic_.end();
      body += "],\"next_cursor\":" + (more ? "\"" + last + "\"" : std::string("null")) + "}";
      res.set_content(body, "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    scimsync::testing::WaitFor([this] { return server_.is_running(); }, 10000, /*interval_ms=*/1);
  }
  ~FakeHris() {
    server_.stop();
    thread_.join();
  }

  // Rippling's employee record (the fields the built-in profile maps).
  void Put(const std::string& id, const std::string& first, const std::string& last,
           const std::string& title, const std::string& department, bool active) {
    std::lock_guard lock(mu_);
    const std::string login = Lower(first);
    employees_[id] = "{\"id\":\"" + id + "\",\"name\":\"" + first + " " + last +
                     "\",\"firstName\":\"" + first + "\",\"lastName\":\"" + last +
                     "\",\"workEmail\":\"" + login + "@example.com\",\"title\":\"" + title +
                     "\",\"department\":\"" + department +
                     "\",\"employmentType\":\"SALARIED_FT\",\"roleState\":\"" +
                     (active ? "ACTIVE" : "TERMINATED") + "\"}";
  }
  // Fetchable by id but left out of the list, as an HRIS does with, say, archived records.
  void Hide(const std::string& id) {
    std::lock_guard lock(mu_);
    hidden_.insert(id);
  }
  void Unhide(const std::string& id) {
    std::lock_guard lock(mu_);
    hidden_.erase(id);
  }
  // The generic profile's employee record.
  void PutGeneric(const std::string& id, const std::string& first, const std::string& title) {
    std::lock_guard lock(mu_);
    generic_[id] = "{\"id\":\"" + id + "\",\"firstName\":\"" + first +
                   "\",\"lastName\":\"Test\",\"workEmail\":\"" + Lower(first) +
                   "@example.com\",\"title\":\"" + title + "\"}";
  }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  std::atomic<int> list_requests{0};
  std::atomic<int> fetch_requests{0};
  std::atomic<size_t> page_cap{2};
  std::atomic<int> fail_list_with{0};
  std::atomic<bool> garbage_list{false};
  std::string key = kHrisKey;

 private:
  static std::string Lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  bool Authorized(const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("Authorization") == "Bearer " + key) return true;
    res.status = 401;
    return false;
  }
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::map<std::string, std::string> employees_;
  std::map<std::string, std::string> generic_;
  std::set<std::string> hidden_;
};

// ---- the SCIM side: both test servers behind one small client ------------------------------

class ScimSide {
 public:
  virtual ~ScimSide() = default;
  virtual std::string base_url() const = 0;  // http://127.0.0.1:PORT/scim/v2
  virtual int port() const = 0;
  // Writes seen by the server so far (fake: its request counters; scimmy: none observable, so
  // the state snapshot below is compared instead).
  virtual int64_t Writes() const { return -1; }

  std::string Post(const std::string& json) const {
    httplib::Client http("127.0.0.1", port());
    auto r = http.Post("/scim/v2/Users", {{"x-api-key", kScimKey}}, json, "application/scim+json");
    if (!r || r->status != 201) {
      ADD_FAILURE() << "seeding POST failed: " << (r ? r->body : "no answer");
      return "";
    }
    rapidjson::Document d;
    d.Parse(r->body.c_str());
    return d["id"].GetString();
  }
  // Every user, by id, as the server returns it.
  std::map<std::string, std::string> Snapshot() const {
    httplib::Client http("127.0.0.1", port());
    auto r = http.Get("/scim/v2/Users?startIndex=1&count=1000", {{"x-api-key", kScimKey}});
    std::map<std::string, std::string> out;
    if (!r || r->status != 200) {
      ADD_FAILURE() << "listing users failed";
      return out;
    }
    rapidjson::Document d;
    d.Parse(r->body.c_str());
    if (!d.HasMember("Resources")) return out;
    for (const auto& u : d["Resources"].GetArray()) out[u["id"].GetString()] = Compact(u);
    return out;
  }
  // The user carrying this externalId, parsed; null document when there is none.
  rapidjson::Document ByExternalId(const std::string& ext) const {
    rapidjson::Document found;
    for (const auto& [id, json] : Snapshot()) {
      rapidjson::Document u;
      u.Parse(json.c_str());
      if (u.HasMember("externalId") && u["externalId"].IsString() &&
          u["externalId"].GetString() == ext) {
        found.CopyFrom(u, found.GetAllocator());
      }
    }
    return found;
  }
};

class FakeScimSide final : public ScimSide {
 public:
  FakeScimSide() { EXPECT_TRUE(server_.Start()); }
  std::string base_url() const override { return server_.base_url(); }
  int port() const override { return server_.port(); }
  int64_t Writes() const override {
    return server_.TotalRequests("POST") + server_.TotalRequests("PATCH") +
           server_.TotalRequests("PUT") + server_.TotalRequests("DELETE");
  }

 private:
  FakeScimServer server_;
};

class ScimmySide final : public ScimSide {
 public:
  ScimmySide() : server_(kScimKey) { started_ = server_.Start(); }
  bool started() const { return started_; }
  std::string log() const { return server_.error(); }
  std::string base_url() const override { return server_.base_url(); }
  int port() const override { return server_.port(); }

 private:
  scimsync::testing::ScimmyServer server_;
  bool started_ = false;
};

// A JumpCloud user as the tests seed it. `active` false = suspended; an empty externalId is a
// user created by hand.
std::string UserJson(const std::string& ext, const std::string& user_name, const std::string& first,
                     const std::string& last, const std::string& title,
                     const std::string& department, bool active) {
  std::string json = R"({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User",)"
                     R"("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],)";
  if (!ext.empty()) json += "\"externalId\":\"" + ext + "\",";
  json += "\"userName\":\"" + user_name + "\",\"name\":{\"givenName\":\"" + first +
          "\",\"familyName\":\"" + last + "\"},\"displayName\":\"" + first + " " + last +
          "\",\"emails\":[{\"value\":\"" + user_name +
          "@example.com\",\"type\":\"work\",\"primary\":true}],\"title\":\"" + title +
          "\",\"userType\":\"SALARIED_FT\",\"active\":" + (active ? "true" : "false") +
          ",\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\":{\"department\":\"" +
          department + "\"}}";
  return json;
}

// ---- the world: Redis, HRIS, SCIM, a config file -------------------------------------------

class ReconcileWorld {
 public:
  explicit ReconcileWorld(std::unique_ptr<ScimSide> scim) : scim_(std::move(scim)) {
    EXPECT_TRUE(redis_.Start());
    setenv("TEST_RECON_JC_KEY", kScimKey, 1);
    setenv("TEST_RECON_HRIS_KEY", kHrisKey, 1);
    options_.host = "127.0.0.1";
    options_.port = redis_.port();
    options_.url = redis_.url();
  }

  // The config the CLI and the daemon read. `extra_profiles` are appended under profiles:.
  // `recon_extra`: more keys of the recon profile, indented four spaces. `guard`: workers.guard.
  std::string WriteConfig(int listen_port, const std::string& extra_profiles = "",
                          const std::string& recon_extra = "",
                          const std::string& guard = "{max_suspend_percent: 50}") {
    const std::string yaml = "listen: {address: 127.0.0.1, port: " + std::to_string(listen_port) +
                             "}\n"
                             "redis: {url: \"" +
                             redis_.url() +
                             "\", connect_timeout_ms: 500}\n"
                             "target: {base_url: \"" +
                             scim_->base_url() +
                             "\", api_key_env: TEST_RECON_JC_KEY, max_requests_per_second: 0}\n"
                             "workers: {threads: 2, guard: " +
                             guard +
                             "}\n"
                             "log: {level: warn}\n"
                             "profiles:\n"
                             "  - name: recon\n"
                             "    connector: rippling\n"
                             "    secret_env: TEST_RECON_WEBHOOK\n"
                             "    api: {base_url: \"" +
                             hris_.base_url() + "\", key_env: TEST_RECON_HRIS_KEY}\n" +
                             recon_extra + extra_profiles;
    scimsync::testing::WriteFile(config(), yaml);
    return config();
  }
  std::string config() const { return dir_.File("scimsync.yaml"); }

  struct CliResult {
    int code = -1;
    std::string out;
    std::string err;
    rapidjson::Document json;
  };
  CliResult Cli(std::vector<std::string> args) {
    CliResult r;
    std::ostringstream out, err;
    r.code = RunReconcileCommand(args, out, err);
    r.out = out.str();
    r.err = err.str();
    if (std::find(args.begin(), args.end(), "--json") != args.end()) r.json.Parse(r.out.c_str());
    return r;
  }

  std::unique_ptr<redis::Pool> Pool() const { return std::make_unique<redis::Pool>(options_, ""); }

  // Seeds drift of every kind; returns JumpCloud's id of each seeded user by externalId.
  std::map<std::string, std::string> SeedDrift() {
    hris_.Put("E1", "Ada", "Lovelace", "Analyst", "Engines", true);          // in sync
    hris_.Put("E2", "Grace", "Hopper", "Admiral", "Navy", true);             // missing in JumpCloud
    hris_.Put("E3", "Alan", "Turing", "Senior Engineer", "Research", true);  // attributes differ
    hris_.Put("E4", "Edsger", "Dijkstra", "Professor", "Science", false);    // left, still active
    hris_.Put("E5", "Barbara", "Liskov", "Fellow", "Science", true);  // back, still suspended
    hris_.Put("E6", "Hedy", "Lamarr", "Inventor", "Radio", false);    // left, never provisioned
    std::map<std::string, std::string> ids;
    ids["E1"] = scim_->Post(UserJson("E1", "ada", "Ada", "Lovelace", "Analyst", "Engines", true));
    ids["E3"] = scim_->Post(UserJson("E3", "alan", "Alan", "Turing", "Engineer", "R&D", true));
    ids["E4"] =
        scim_->Post(UserJson("E4", "edsger", "Edsger", "Dijkstra", "Professor", "Science", true));
    ids["E5"] =
        scim_->Post(UserJson("E5", "barbara", "Barbara", "Liskov", "Fellow", "Science", false));
    // An active user anchored to an employee the HRIS no longer lists; asked about him, the
    // HRIS says he left.
    hris_.Put("X9", "Bob", "Gone", "Clerk", "Archive", false);
    hris_.Hide("X9");
    ids["X9"] = scim_->Post(UserJson("X9", "bob", "Bob", "Gone", "Clerk", "Archive", true));
    // Created by hand, no anchor: not scimsync's business.
    ids["admin"] = scim_->Post(UserJson("", "itadmin", "IT", "Admin", "Admin", "IT", true));
    // E3 was linked by an earlier sync: the join finds it through the link table. That sync
    // kept a snapshot of what it applied; the admin's edits since are not in it.
    auto pool = Pool();
    auto links = scim::NewRedisLinkStore(*pool, "scimsync");
    scim::User applied;
    applied.user_name = "alan";
    applied.title = "Senior Engineer";
    applied.department = "Research";
    EXPECT_TRUE(
        links
            ->PutApplied("recon", "E3", {ids["E3"], scim::SnapshotJson(applied), 1'790'000'000'000})
            .ok());
    return ids;
  }

  // Items in the queue's streams, summed over partitions, without consuming them.
  int64_t QueuedItems() const {
    auto q = queue::NewRedisQueue(options_, "");
    int64_t total = 0;
    for (int p = 0; p < q->partitions(); ++p) total += q->Depth(p).ok() ? *q->Depth(p) : 0;
    return total;
  }
  // Dedup keys of reconciliation items: one per enqueued item, named after its run.
  std::vector<std::string> ReconcileDedupKeys() const {
    std::string keys = redis_.Cli({"--scan", "--pattern", "scimsync:*:dedup:recon:reconcile-*"});
    std::vector<std::string> out;
    std::istringstream lines(keys);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) out.push_back(line);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  RedisServer& redis() { return redis_; }
  FakeHris& hris() { return hris_; }
  ScimSide& scim() { return *scim_; }
  TempDir& dir() { return dir_; }

 private:
  TempDir dir_;
  RedisServer redis_;
  FakeHris hris_;
  std::unique_ptr<ScimSide> scim_;
  config::RedisOptions options_;
};

const rapidjson::Value* DriftOf(const rapidjson::Document& report, const std::string& key) {
  for (const auto& d : report["drift"].GetArray()) {
    if (d["employee_key"].GetString() == key) return &d;
  }
  return nullptr;
}

std::vector<std::string> KindsOf(const rapidjson::Value& drift) {
  std::vector<std::string> out;
  for (const auto& k : drift["kinds"].GetArray()) out.emplace_back(k.GetString());
  return out;
}

std::string ChangeOf(const rapidjson::Value& drift, const std::string& attribute) {
  for (const auto& c : drift["changes"].GetArray()) {
    if (c["attribute"].GetString() != attribute) continue;
    auto text = [](const rapidjson::Value& v) {
      return v.IsNull() ? std::string("null") : std::string(v.GetString());
    };
    return text(c["jumpcloud"]) + " -> " + text(c["hris"]);
  }
  return "(unchanged)";
}

// ---- the whole story, against each SCIM server ----------------------------------------------

class ReconcileEndToEnd : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "scimmy") {
      auto scimmy = std::make_unique<ScimmySide>();
      ASSERT_TRUE(scimmy->started()) << scimmy->log();
      world_ = std::make_unique<ReconcileWorld>(std::move(scimmy));
    } else {
      world_ = std::make_unique<ReconcileWorld>(std::make_unique<FakeScimSide>());
    }
  }

  // The config says listen.port 0; the daemon's "scimsyncd started" line (info, whatever the
  // config's log level) says it is up.
  bool StartDaemon() {
    std::string binary = std::string(SCIMSYNC_BINARY_DIR) + "/daemon/scimsyncd";
    return scimsync::testing::StartScimsyncd(
               daemon_, {binary, "--config", world_->config()}, world_->dir().File("daemon.log"),
               {"TEST_RECON_WEBHOOK=webhook-token", std::string("TEST_RECON_JC_KEY=") + kScimKey,
                std::string("TEST_RECON_HRIS_KEY=") + kHrisKey, "SCIMSYNC_LOG_LEVEL=info"},
               15000) != 0;
  }
  void StopDaemon() {
    if (!daemon_.running()) return;
    daemon_.Signal(SIGTERM);
    if (daemon_.Wait(15000) < 0) daemon_.Kill();
  }
  void TearDown() override { StopDaemon(); }

  std::unique_ptr<ReconcileWorld> world_;
  Process daemon_;
};

TEST_P(ReconcileEndToEnd, SeededDriftIsFoundEnqueuedAndFixedAndThenTheStateIsClean) {
  ReconcileWorld& w = *world_;
  // The admin opted in to suspending orphans (the default only reports them).
  const std::string config = w.WriteConfig(0, "", "    reconcile: {orphans: suspend}\n");
  auto ids = w.SeedDrift();

  // 1. --dry-run: every kind of drift, attribute by attribute; nothing written anywhere.
  const auto before = w.scim().Snapshot();
  const int64_t writes_before = w.scim().Writes();
  auto dry = w.Cli({"--config", config, "--profile", "recon", "--dry-run", "--json"});
  ASSERT_EQ(dry.code, kExitDrift) << dry.out << dry.err;
  ASSERT_FALSE(dry.json.HasParseError()) << dry.out;
  const auto& r = dry.json;
  EXPECT_TRUE(r["dry_run"].GetBool());
  EXPECT_EQ(r["hris_employees"].GetInt(), 6);
  EXPECT_EQ(r["jumpcloud_users"].GetInt(), 6);
  EXPECT_EQ(r["in_sync"].GetInt(), 2);  // E1 matches; E6 left and never had a user
  EXPECT_EQ(r["drifted"].GetInt(), 5);
  EXPECT_EQ(r["counts"]["missing"].GetInt(), 1);
  EXPECT_EQ(r["counts"]["attributes"].GetInt(), 1);
  EXPECT_EQ(r["counts"]["active"].GetInt(), 2);
  EXPECT_EQ(r["counts"]["orphan"].GetInt(), 1);
  EXPECT_EQ(r["problems"].Size(), 0u);
  EXPECT_EQ(r["enqueued"].GetInt(), 0);
  const rapidjson::Value* e2 = DriftOf(r, "E2");
  ASSERT_NE(e2, nullptr);
  EXPECT_EQ(KindsOf(*e2), (std::vector<std::string>{"missing"}));
  EXPECT_EQ(std::string((*e2)["user_name"].GetString()), "grace");
  EXPECT_TRUE((*e2)["jumpcloud_id"].IsNull());
  const rapidjson::Value* e3 = DriftOf(r, "E3");
  ASSERT_NE(e3, nullptr);
  EXPECT_EQ(KindsOf(*e3), (std::vector<std::string>{"attributes"}));
  EXPECT_EQ(std::string((*e3)["jumpcloud_id"].GetString()), ids["E3"]);  // found by its link
  EXPECT_EQ(ChangeOf(*e3, "title"), "Engineer -> Senior Engineer");
  EXPECT_EQ(ChangeOf(*e3, "department"), "R&D -> Research");
  EXPECT_EQ(ChangeOf(*e3, "userName"), "(unchanged)");
  const rapidjson::Value* e4 = DriftOf(r, "E4");
  ASSERT_NE(e4, nullptr);
  EXPECT_EQ(KindsOf(*e4), (std::vector<std::string>{"active"}));
  EXPECT_EQ(ChangeOf(*e4, "active"), "true -> false");
  const rapidjson::Value* e5 = DriftOf(r, "E5");
  ASSERT_NE(e5, nullptr);
  EXPECT_EQ(ChangeOf(*e5, "active"), "false -> true");
  const rapidjson::Value* x9 = DriftOf(r, "X9");
  ASSERT_NE(x9, nullptr);
  EXPECT_EQ(KindsOf(*x9), (std::vector<std::string>{"orphan"}));
  EXPECT_EQ(std::string((*x9)["jumpcloud_id"].GetString()), ids["X9"]);
  EXPECT_EQ(DriftOf(r, "E1"), nullptr);
  EXPECT_EQ(DriftOf(r, "E6"), nullptr);
  EXPECT_EQ(w.scim().Snapshot(), before);
  if (writes_before >= 0) {
    EXPECT_EQ(w.scim().Writes(), writes_before);
  }
  EXPECT_EQ(w.QueuedItems(), 0);
  // The HRIS capped its pages at two: three pages of records and the empty one that ends it.
  EXPECT_EQ(w.hris().list_requests.load(), 4);
  // The listed records were the records; the orphan X9 was asked about once, to plan its
  // suspension (the HRIS says he left).
  EXPECT_EQ(w.hris().fetch_requests.load(), 1);
  EXPECT_EQ(r["plan"]["suspensions"].GetInt(), 2);  // E4, and X9 the orphan
  EXPECT_FALSE(r["held"].GetBool());

  // The same as a table, one line per drifted employee.
  auto table = w.Cli({"--config", config, "--profile", "recon", "--dry-run"});
  EXPECT_EQ(table.code, kExitDrift);
  EXPECT_NE(table.out.find("WOULD CHANGE"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("create grace <grace@example.com>"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("title: \"Engineer\" -> \"Senior Engineer\"; department: \"R&D\" -> "
                           "\"Research\""),
            std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("active: \"true\" -> \"false\" (suspend)"), std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("no HRIS employee has externalId X9"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("Nothing was changed (--dry-run). Without --dry-run, 5 sync items"),
            std::string::npos)
      << table.out;

  // 2. For real: one ordinary sync item per drifted employee, and still no SCIM write.
  auto run = w.Cli({"--config", config, "--profile", "recon", "--json"});
  ASSERT_EQ(run.code, kExitOk) << run.out << run.err;
  EXPECT_EQ(run.json["enqueued"].GetInt(), 5);
  for (const auto& d : run.json["drift"].GetArray()) EXPECT_TRUE(d["enqueued"].GetBool());
  const std::string run_id = run.json["run_id"].GetString();
  EXPECT_EQ(w.QueuedItems(), 5);
  const std::string prefix = "reconcile-" + run_id + "-";
  std::vector<std::string> dedup = w.ReconcileDedupKeys();
  ASSERT_EQ(dedup.size(), 5u);
  std::set<std::string> employees;
  for (const std::string& k : dedup) {
    auto at = k.find(prefix);
    ASSERT_NE(at, std::string::npos) << k;
    employees.insert(k.substr(at + prefix.size()));
  }
  EXPECT_EQ(employees, (std::set<std::string>{"E2", "E3", "E4", "E5", "X9"}));
  EXPECT_EQ(w.scim().Snapshot(), before);
  // The lease is free again for the next run.
  EXPECT_EQ(w.redis().Cli({"EXISTS", "scimsync:reconcile:recon"}), "0");
  EXPECT_NE(w.redis().Cli({"GET", "scimsync:reconcile:recon:last"}), "");

  // The drifted employees' snapshots are dropped: their workers read JumpCloud, which differs
  // from what scimsync last applied, instead of trusting the snapshot and sending nothing.
  EXPECT_EQ(w.redis().Cli({"EXISTS", "scimsync:applied:recon:E3"}), "0");
  EXPECT_EQ(w.redis().Cli({"GET", "scimsync:link:recon:E3"}), ids["E3"]);

  // 3. The real daemon's workers take the items like any webhook's and fix the drift.
  ASSERT_TRUE(StartDaemon()) << scimsync::testing::ReadFile(w.dir().File("daemon.log"));
  auto fixed = [&] {
    auto grace = w.scim().ByExternalId("E2");
    auto alan = w.scim().ByExternalId("E3");
    auto edsger = w.scim().ByExternalId("E4");
    auto barbara = w.scim().ByExternalId("E5");
    auto bob = w.scim().ByExternalId("X9");
    return grace.IsObject() && alan.IsObject() && alan.HasMember("title") &&
           std::string(alan["title"].GetString()) == "Senior Engineer" && edsger.IsObject() &&
           !edsger["active"].GetBool() && barbara.IsObject() && barbara["active"].GetBool() &&
           bob.IsObject() && !bob["active"].GetBool() && w.QueuedItems() == 0;
  };
  ASSERT_TRUE(scimsync::testing::WaitFor(fixed, 40000, /*interval_ms=*/200))
      << scimsync::testing::ReadFile(w.dir().File("daemon.log"));
  auto alan = w.scim().ByExternalId("E3");
  EXPECT_EQ(std::string(alan["id"].GetString()), ids["E3"]);  // updated in place, not recreated
  EXPECT_EQ(
      std::string(alan["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"]
                      .GetString()),
      "Research");
  auto grace = w.scim().ByExternalId("E2");
  EXPECT_EQ(std::string(grace["userName"].GetString()), "grace");
  EXPECT_TRUE(w.scim().ByExternalId("E6").IsNull());  // a leaver gets no account
  StopDaemon();

  // 4. Clean: no drift, nothing enqueued, and not a single write.
  const auto settled = w.scim().Snapshot();
  const int64_t writes_settled = w.scim().Writes();
  auto clean = w.Cli({"--config", config, "--profile", "recon", "--json"});
  ASSERT_EQ(clean.code, kExitOk) << clean.out << clean.err;
  EXPECT_EQ(clean.json["drifted"].GetInt(), 0) << clean.out;
  EXPECT_EQ(clean.json["in_sync"].GetInt(), 6);
  EXPECT_EQ(clean.json["jumpcloud_users"].GetInt(), 7);
  EXPECT_EQ(clean.json["enqueued"].GetInt(), 0);
  EXPECT_EQ(w.scim().Snapshot(), settled);
  if (writes_settled >= 0) {
    EXPECT_EQ(w.scim().Writes(), writes_settled);
  }
  EXPECT_EQ(w.QueuedItems(), 0);
  auto clean_table = w.Cli({"--config", config, "--profile", "recon", "--dry-run"});
  EXPECT_EQ(clean_table.code, kExitOk);
  EXPECT_NE(clean_table.out.find("Nothing to change."), std::string::npos) << clean_table.out;
}

INSTANTIATE_TEST_SUITE_P(BothScimServers, ReconcileEndToEnd,
                         ::testing::Values("fake_scim", "scimmy"),
                         [](const auto& info) { return info.param; });

// ---- what needs a human, and what stops a run ---------------------------------------------

class ReconcileCli : public ::testing::Test {
 protected:
  ReconcileCli() : world_(std::make_unique<FakeScimSide>()) {}
  ReconcileWorld world_;
};

TEST_F(ReconcileCli, ConflictsAndRulesJumpCloudWouldRejectAreReportedNotEnqueued) {
  const std::string config = world_.WriteConfig(0);
  world_.hris().Put("E1", "Ada", "Lovelace", "Analyst", "Engines", true);
  world_.hris().Put("E2", "Grace", "Hopper", "Admiral", "Navy", true);
  // Two users claim E1; E2's mapped userName belongs to someone else's anchored user.
  world_.scim().Post(UserJson("E1", "ada", "Ada", "Lovelace", "Analyst", "Engines", true));
  world_.scim().Post(UserJson("E1", "ada2", "Ada", "Lovelace", "Analyst", "Engines", true));
  world_.scim().Post(UserJson("Z7", "grace", "Grace", "Other", "Admiral", "Navy", true));
  auto r = world_.Cli({"--config", config, "--profile", "recon", "--json"});
  EXPECT_EQ(r.code, kExitDrift) << r.out << r.err;
  ASSERT_FALSE(r.json.HasParseError()) << r.out;
  ASSERT_EQ(r.json["problems"].Size(), 2u) << r.out;
  EXPECT_EQ(std::string(r.json["problems"][0]["kind"].GetString()), "conflict");
  EXPECT_NE(std::string(r.json["problems"][0]["message"].GetString())
                .find("2 JumpCloud users carry externalId E1"),
            std::string::npos);
  EXPECT_NE(std::string(r.json["problems"][1]["message"].GetString())
                .find("userName grace belongs to JumpCloud user"),
            std::string::npos);
  // Z7 is an orphan: reported, and by default (reconcile.orphans: report) left alone.
  EXPECT_EQ(r.json["counts"]["orphan"].GetInt(), 1);
  EXPECT_EQ(r.json["enqueued"].GetInt(), 0);
  EXPECT_EQ(world_.QueuedItems(), 0);
  auto table = world_.Cli({"--config", config, "--profile", "recon", "--dry-run"});
  EXPECT_NE(table.out.find("Needs a human"), std::string::npos) << table.out;
}

TEST_F(ReconcileCli, AUserAnotherHrSourceIsLinkedToIsAConflictAsTheWorkersSayNotAFix) {
  // Two identity scopes (recon and hr): recon's externalIds are "recon:<id>". E1's mapped
  // userName "ada" is a user without an externalId that hr's link table holds for its employee
  // 7. A worker would find it by userName after its POST is refused, see hr's link and
  // dead-letter a conflict: the report must say so instead of promising a fix.
  const std::string config =
      world_.WriteConfig(0, "  - {name: hr, connector: deel, secret_env: TEST_RECON_WEBHOOK}\n");
  world_.hris().Put("E1", "Ada", "Lovelace", "Analyst", "Engines", true);
  const std::string id =
      world_.scim().Post(UserJson("", "ada", "Ada", "Lovelace", "Analyst", "Engines", true));
  auto pool = world_.Pool();
  auto links = scim::NewRedisLinkStore(*pool, "scimsync");
  ASSERT_TRUE(links->Put("hr", "hr:7", id).ok());
  auto r = world_.Cli({"--config", config, "--profile", "recon", "--json"});
  EXPECT_EQ(r.code, kExitDrift) << r.out << r.err;
  ASSERT_FALSE(r.json.HasParseError()) << r.out;
  ASSERT_EQ(r.json["problems"].Size(), 1u) << r.out;
  EXPECT_EQ(std::string(r.json["problems"][0]["kind"].GetString()), "conflict");
  EXPECT_NE(std::string(r.json["problems"][0]["message"].GetString())
                .find("belongs to employee hr:7 of hr; employee recon:E1 of recon"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.json["drifted"].GetInt(), 0) << r.out;
  EXPECT_EQ(r.json["enqueued"].GetInt(), 0);
  EXPECT_EQ(world_.QueuedItems(), 0);
}

TEST_F(ReconcileCli, AnEmptyHrisListNeverReadsAsEveryoneLeft) {
  const std::string config = world_.WriteConfig(0);
  world_.scim().Post(UserJson("E1", "ada", "Ada", "Lovelace", "Analyst", "Engines", true));
  auto r = world_.Cli({"--config", config, "--profile", "recon"});
  EXPECT_EQ(r.code, kExitRefused) << r.out << r.err;
  EXPECT_NE(r.out.find("refusing to report them all as orphans"), std::string::npos) << r.out;
  EXPECT_EQ(world_.QueuedItems(), 0);
}

TEST_F(ReconcileCli, FailuresMapToExitCodesAndEnqueueNothing) {
  const std::string config = world_.WriteConfig(0);
  world_.hris().Put("E1", "Ada", "Lovelace", "Analyst", "Engines", true);
  // The HRIS refuses the key.
  world_.hris().key = "rotated";
  auto refused = world_.Cli({"--config", config, "--profile", "recon"});
  EXPECT_EQ(refused.code, kExitNoPerm) << refused.err;
  EXPECT_NE(refused.err.find("answered 401"), std::string::npos) << refused.err;
  EXPECT_EQ(refused.err.find(kHrisKey), std::string::npos);  // never the secret
  world_.hris().key = kHrisKey;
  // The HRIS is down.
  world_.hris().fail_list_with = 503;
  const int before = world_.hris().list_requests.load();
  auto down = world_.Cli({"--config", config, "--profile", "recon", "--json"});
  EXPECT_EQ(down.code, kExitUnavailable) << down.err;
  // Retried like a SCIM page (5 attempts), and the page is named.
  EXPECT_EQ(world_.hris().list_requests.load() - before, 5);
  EXPECT_NE(down.err.find("(page 1)"), std::string::npos) << down.err;
  // --json: a failure is an object on stdout too.
  ASSERT_FALSE(down.json.HasParseError()) << down.out;
  EXPECT_EQ(down.json["exit_code"].GetInt(), kExitUnavailable);
  EXPECT_NE(std::string(down.json["error"].GetString()).find("answered 503"), std::string::npos)
      << down.out;
  world_.hris().fail_list_with = 0;
  // An answer that is not JSON cannot be read: 65, naming the request.
  world_.hris().garbage_list = true;
  auto garbage = world_.Cli({"--config", config, "--profile", "recon"});
  EXPECT_EQ(garbage.code, kExitDataErr) << garbage.err;
  EXPECT_NE(garbage.err.find("not JSON"), std::string::npos) << garbage.err;
  world_.hris().garbage_list = false;
  // JumpCloud refuses the key.
  setenv("TEST_RECON_JC_KEY", "wrong-key", 1);
  auto jc = world_.Cli({"--config", config, "--profile", "recon"});
  EXPECT_EQ(jc.code, kExitNoPerm) << jc.err;
  EXPECT_NE(jc.err.find("listing the JumpCloud users"), std::string::npos) << jc.err;
  setenv("TEST_RECON_JC_KEY", kScimKey, 1);
  EXPECT_EQ(world_.QueuedItems(), 0);
  // Another run holds the lease.
  world_.redis().Cli({"SET", "scimsync:reconcile:recon", "20261128T000000Z-beef", "PX", "60000"});
  auto busy = world_.Cli({"--config", config, "--profile", "recon"});
  EXPECT_EQ(busy.code, kExitTempFail) << busy.err;
  EXPECT_NE(busy.err.find("20261128T000000Z-beef"), std::string::npos) << busy.err;
  // A dry run reads only, so it does not need the lease.
  auto dry = world_.Cli({"--config", config, "--profile", "recon", "--dry-run"});
  EXPECT_EQ(dry.code, kExitDrift) << dry.err;
}

TEST_F(ReconcileCli, UsageAndConfigMistakesSayWhatToFix) {
  const std::string config =
      world_.WriteConfig(0, "  - {name: deel, connector: deel, secret_env: TEST_RECON_WEBHOOK}\n");
  auto no_profile = world_.Cli({"--config", config});
  EXPECT_EQ(no_profile.code, kExitUsage);
  EXPECT_NE(no_profile.err.find("--profile NAME is required"), std::string::npos);
  auto unknown = world_.Cli({"--config", config, "--profile", "nope"});
  EXPECT_EQ(unknown.code, kExitConfig);
  EXPECT_NE(unknown.err.find("configured: deel, recon"), std::string::npos) << unknown.err;
  auto no_list = world_.Cli({"--config", config, "--profile", "deel"});
  EXPECT_EQ(no_list.code, kExitConfig);
  EXPECT_NE(no_list.err.find("has no list section"), std::string::npos) << no_list.err;
  auto bad_flag = world_.Cli({"--config", config, "--profile", "recon", "--fix"});
  EXPECT_EQ(bad_flag.code, kExitUsage);
  auto help = world_.Cli({"--help"});
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_NE(help.out.find("--dry-run"), std::string::npos);
}

TEST_F(ReconcileCli, APayloadCarryingProfileReconcilesFromListedRecords) {
  // The generic profile has no fetch: the listed record is the desired state, and an orphan has
  // no record a sync could apply, so it is left to a human.
  const std::string config = world_.WriteConfig(0,
                                                "  - name: hr\n"
                                                "    connector: generic\n"
                                                "    secret_env: TEST_RECON_WEBHOOK\n"
                                                "    api: {base_url: \"" +
                                                    world_.hris().base_url() +
                                                    "/relay\", token_env: TEST_RECON_HRIS_KEY}\n");
  world_.hris().PutGeneric("G1", "Ada", "Analyst");
  world_.hris().PutGeneric("G2", "Grace", "Admiral");
  world_.hris().PutGeneric("G3", "Linus", "Maintainer");
  // Two profiles (recon and hr) are two identity scopes: hr's users carry "hr:<id>".
  world_.scim().Post(UserJson("hr:G1", "ada", "Ada", "Test", "Clerk", "X", true));
  world_.scim().Post(UserJson("hr:G9", "gone", "Gone", "Test", "Clerk", "X", true));
  auto r = world_.Cli({"--config", config, "--profile", "hr", "--json"});
  EXPECT_EQ(r.code, kExitDrift) << r.out << r.err;  // the orphan remains
  ASSERT_FALSE(r.json.HasParseError()) << r.out;
  EXPECT_EQ(r.json["hris_employees"].GetInt(), 3);  // two cursor pages
  EXPECT_EQ(r.json["counts"]["missing"].GetInt(), 2);
  EXPECT_EQ(r.json["counts"]["attributes"].GetInt(), 1);
  const rapidjson::Value* g9 = DriftOf(r.json, "G9");
  ASSERT_NE(g9, nullptr);
  EXPECT_FALSE((*g9)["fixable"].GetBool());
  EXPECT_FALSE((*g9)["enqueued"].GetBool());
  EXPECT_NE(std::string((*g9)["note"].GetString()).find("no HRIS record to sync it from"),
            std::string::npos);
  EXPECT_EQ(r.json["enqueued"].GetInt(), 3);
  // The items carry the listed record where the generic profile's webhooks carry it.
  auto q = queue::NewRedisQueue(
      [&] {
        config::RedisOptions o;
        o.host = "127.0.0.1";
        o.port = world_.redis().port();
        return o;
      }(),
      "");
  std::vector<queue::Item> items;
  for (int p = 0; p < q->partitions(); ++p) {
    auto got = q->Read(p, "test", 100, 0);
    ASSERT_TRUE(got.ok());
    items.insert(items.end(), got->begin(), got->end());
  }
  ASSERT_EQ(items.size(), 3u);
  for (const auto& item : items) {
    EXPECT_EQ(item.profile, "hr");
    EXPECT_EQ(item.event_type, "scimsync.reconcile");
    EXPECT_EQ(item.payload.rfind("{\"employee\":{\"id\":\"" + item.employee_key + "\"", 0), 0u)
        << item.payload;
  }
}

// ---- the Reconciler class, as the daemon schedules it ---------------------------------------

class ReconcileSchedule : public ::testing::Test {
 protected:
  ReconcileSchedule() : world_(std::make_unique<FakeScimSide>()) {
    world_.WriteConfig(0);
    world_.hris().Put("E1", "Ada", "Lovelace", "Analyst", "Engines", true);
    config::Config cfg;
    auto problems = config::LoadFile(world_.config(), &cfg);
    EXPECT_TRUE(problems.empty());
    config::Problems pp(world_.config());
    profile_ = connectors::LoadProfile(cfg.profiles[0], &pp);
    EXPECT_NE(profile_, nullptr);
    redis_options_.host = "127.0.0.1";
    redis_options_.port = world_.redis().port();
    pool_ = std::make_unique<redis::Pool>(redis_options_, "");
    queue_ = queue::NewRedisQueue(redis_options_, "", clock_);
    links_ = scim::NewRedisLinkStore(*pool_, "scimsync");
    fetcher_ = connectors::NewHttpFetcher();
  }

  ReconcileScheduler::Deps SchedulerDeps() {
    ReconcileScheduler::Deps d;
    d.pool = pool_.get();
    d.queue = queue_.get();
    d.links = links_.get();
    d.fetcher = fetcher_.get();
    d.clock = &clock_;
    d.random = &random_;
    d.on_run = [this](const std::string& profile, const Result<ReconcileReport>& r) {
      runs_.push_back(profile + (!r.ok()               ? ":error"
                                 : !r->refused.empty() ? ":refused"
                                 : r->held             ? ":held"
                                                       : ":" + std::to_string(r->drifted())));
    };
    return d;
  }

  ReconcileWorld world_;
  FakeClock clock_{1'800'000'000'000};
  scim::SequenceRandom random_{{0.25}};
  config::RedisOptions redis_options_;
  std::unique_ptr<redis::Pool> pool_;
  std::unique_ptr<queue::Queue> queue_;
  std::unique_ptr<scim::LinkStore> links_;
  std::unique_ptr<connectors::Fetcher> fetcher_;
  std::shared_ptr<const connectors::Profile> profile_;
  std::vector<std::string> runs_;
};

TEST_F(ReconcileSchedule, RunsOncePerPeriodAcrossInstancesAndLogsEachRun) {
  config::TargetOptions target;
  target.base_url = world_.scim().base_url();
  ReconcileScheduler a(target, "scimsync", SchedulerDeps(), 1000);
  ReconcileScheduler b(target, "scimsync", SchedulerDeps(), 1000);
  for (ReconcileScheduler* s : {&a, &b}) {
    s->SetApiKey(kScimKey);
    s->SetProfiles({{"recon", 3600, profile_, {}, {}}});
  }
  EXPECT_EQ(a.RunDue(), 1);  // first ever: due
  EXPECT_EQ(b.RunDue(), 0);  // the other instance: a ran it within the period
  EXPECT_EQ(runs_, (std::vector<std::string>{"recon:1"}));  // E1 is missing in JumpCloud
  EXPECT_EQ(world_.QueuedItems(), 1);
  clock_.AdvanceMs(3599'000);
  EXPECT_EQ(a.RunDue() + b.RunDue(), 0);
  clock_.AdvanceMs(1'000);
  EXPECT_EQ(b.RunDue(), 1);
  EXPECT_EQ(a.RunDue(), 0);
  EXPECT_EQ(runs_.size(), 2u);
}

TEST_F(ReconcileSchedule, AFailedRunIsRetriedAfterAQuarterHourNotAtEveryPoll) {
  config::TargetOptions target;
  target.base_url = world_.scim().base_url();
  ReconcileScheduler s(target, "scimsync", SchedulerDeps(), 1000);
  s.SetApiKey(kScimKey);
  s.SetProfiles({{"recon", 86400, profile_, {}, {}}});
  world_.hris().fail_list_with = 503;
  EXPECT_EQ(s.RunDue(), 1);
  EXPECT_EQ(runs_, (std::vector<std::string>{"recon:error"}));
  world_.hris().fail_list_with = 0;
  clock_.AdvanceMs(60'000);
  EXPECT_EQ(s.RunDue(), 0);
  clock_.AdvanceMs(840'000);
  EXPECT_EQ(s.RunDue(), 1);
  EXPECT_EQ(runs_.back(), "recon:1");
}

TEST_F(ReconcileSchedule, AScheduledRunRefusesAShrunkenListAndSaysSo) {
  config::TargetOptions target;
  target.base_url = world_.scim().base_url();
  ReconcileScheduler s(target, "scimsync", SchedulerDeps(), 1000);
  s.SetApiKey(kScimKey);
  s.SetProfiles({{"recon", 3600, profile_, {}, {}}});
  // The last applied run listed 10; the HRIS now lists 1.
  world_.redis().Cli({"SET", "scimsync:reconcile:recon:listed", "10"});
  EXPECT_EQ(s.RunDue(), 1);
  EXPECT_EQ(runs_, (std::vector<std::string>{"recon:refused"}));
  EXPECT_EQ(world_.QueuedItems(), 0);
}

TEST_F(ReconcileSchedule, ARunHoldsItsLeaseAndAStoppedSchedulerCancelsQuickly) {
  ReconcilerDeps deps;
  deps.profile = profile_;
  deps.fetcher = fetcher_.get();
  auto transport = scim::NewHttpTransport(scim::TransportOptions::From(
      [&] {
        config::TargetOptions t;
        t.base_url = world_.scim().base_url();
        return t;
      }(),
      kScimKey));
  ASSERT_TRUE(transport.ok());
  deps.transport = transport->get();
  deps.links = links_.get();
  deps.queue = queue_.get();
  deps.pool = pool_.get();
  deps.clock = &clock_;
  deps.random = &random_;
  std::atomic<bool> cancel{true};
  deps.cancel = &cancel;
  Reconciler cancelled(ReconcilerOptions{}, deps);
  auto r = cancelled.Run(false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("stopped"), std::string::npos);
  EXPECT_EQ(world_.redis().Cli({"EXISTS", cancelled.lease_key()}), "0");  // released
  EXPECT_EQ(world_.QueuedItems(), 0);
  EXPECT_EQ(cancelled.lease_key(), "scimsync:reconcile:recon");
}

TEST_F(ReconcileSchedule, EveryRunHasItsOwnRunIdInItsItemsAlsoWithoutALease) {
  auto transport = scim::NewHttpTransport(scim::TransportOptions::From(
      [&] {
        config::TargetOptions t;
        t.base_url = world_.scim().base_url();
        return t;
      }(),
      kScimKey));
  ASSERT_TRUE(transport.ok());
  auto memory_queue = queue::NewMemoryQueue(4, clock_);
  scim::MemoryLinkStore links;
  ReconcilerDeps deps;
  deps.profile = profile_;
  deps.fetcher = fetcher_.get();
  deps.transport = transport->get();
  deps.links = &links;
  deps.queue = memory_queue.get();
  deps.clock = &clock_;
  deps.random = &random_;
  Reconciler reconciler(ReconcilerOptions{}, deps);  // no pool: no lease, as in unit setups
  auto first = reconciler.Run(false);
  ASSERT_TRUE(first.ok()) << first.error().message;
  clock_.AdvanceMs(1000);
  auto second = reconciler.Run(false);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_NE(first->run_id, second->run_id);
  EXPECT_FALSE(first->run_id.empty());
  // E1 is still missing: the second run's item is not taken for a duplicate of the first's.
  EXPECT_EQ(first->enqueued, 1);
  EXPECT_EQ(second->enqueued, 1);
  EXPECT_EQ(second->duplicates, 0);
}

TEST(ScheduledProfiles, OnlyProfilesWithAPeriodAndAListAreScheduled) {
  config::Config cfg;
  auto problems = config::LoadString(
      "target: {api_key_env: X}\nprofiles:\n"
      "  - {name: a, connector: rippling, secret_env: X, reconcile_every_s: 3600}\n"
      "  - {name: b, connector: rippling, secret_env: X}\n"
      "  - {name: c, connector: deel, secret_env: X, reconcile_every_s: 3600}\n",
      "t.yaml", &cfg);
  ASSERT_TRUE(problems.empty()) << problems[0].ToString();
  std::map<std::string, std::shared_ptr<const connectors::Profile>> profiles;
  config::Problems pp;
  for (const auto& e : cfg.profiles) profiles[e.name] = connectors::LoadProfile(e, &pp);
  auto scheduled = ScheduledProfiles(cfg, profiles);
  ASSERT_EQ(scheduled.size(), 1u);
  EXPECT_EQ(scheduled[0].name, "a");
  EXPECT_EQ(scheduled[0].every_s, 3600);
  cfg.target.dry_run = true;  // no JumpCloud to read
  EXPECT_TRUE(ScheduledProfiles(cfg, profiles).empty());
}

// ---- what a reconciliation may do on its own ------------------------------------------------

// By default an orphan is reported and left alone, also once the workers have applied the run.
TEST_P(ReconcileEndToEnd, OrphansAreReportedNotSuspendedByDefault) {
  ReconcileWorld& w = *world_;
  const std::string config = w.WriteConfig(0);
  w.hris().Put("E1", "Ada", "Lovelace", "Analyst", "Engines", true);
  w.hris().Put("E2", "Grace", "Hopper", "Admiral", "Navy", true);
  w.scim().Post(UserJson("E1", "ada", "Ada", "Lovelace", "Analyst", "Engines", true));
  // Another tool's account, or an old HRIS's id: the HRIS answers 404 for it.
  const std::string x9 =
      w.scim().Post(UserJson("X9", "bob", "Bob", "Other", "Clerk", "Archive", true));
  auto run = w.Cli({"--config", config, "--profile", "recon", "--json"});
  EXPECT_EQ(run.code, kExitDrift) << run.out << run.err;  // an orphan needs a human
  ASSERT_FALSE(run.json.HasParseError()) << run.out;
  EXPECT_EQ(run.json["counts"]["orphan"].GetInt(), 1);
  EXPECT_EQ(run.json["plan"]["suspensions"].GetInt(), 0);
  const rapidjson::Value* orphan = DriftOf(run.json, "X9");
  ASSERT_NE(orphan, nullptr);
  EXPECT_FALSE((*orphan)["enqueued"].GetBool());
  EXPECT_NE(std::string((*orphan)["note"].GetString()).find("reconcile.orphans: report"),
            std::string::npos);
  EXPECT_EQ(run.json["enqueued"].GetInt(), 1);   // E2, missing
  EXPECT_EQ(w.hris().fetch_requests.load(), 0);  // nobody asked about X9
  ASSERT_TRUE(StartDaemon()) << scimsync::testing::ReadFile(w.dir().File("daemon.log"));
  ASSERT_TRUE(scimsync::testing::WaitFor([&] { return w.scim().ByExternalId("E2").IsObject(); },
                                         30000, /*interval_ms=*/100));
  StopDaemon();
  auto bob = w.scim().ByExternalId("X9");
  ASSERT_TRUE(bob.IsObject());
  EXPECT_EQ(std::string(bob["id"].GetString()), x9);
  EXPECT_TRUE(bob["active"].GetBool());  // still has access
}

// "Everyone left": the whole run is held with zero suspensions until the admin confirms.
TEST_P(ReconcileEndToEnd, AnEveryoneLeftFeedIsHeldWholeUntilReleased) {
  ReconcileWorld& w = *world_;
  // The defaults: max_suspends 50, max_suspend_percent 10 -- which must apply to 10 people too.
  const std::string config = w.WriteConfig(0, "", "", "{}");
  const std::vector<std::string> people = {"Ada",  "Alan", "Barbara", "Edsger",   "Grace",
                                           "Hedy", "Ken",  "Linus",   "Margaret", "Niklaus"};
  auto pool = w.Pool();
  auto links = scim::NewRedisLinkStore(*pool, "scimsync");
  for (size_t i = 0; i < people.size(); ++i) {
    const std::string id = "E" + std::to_string(10 + i);
    w.hris().Put(id, people[i], "Test", "Engineer", "R&D", true);
    const std::string jc = w.scim().Post(
        UserJson(id, LowerCase(people[i]), people[i], "Test", "Engineer", "R&D", true));
    ASSERT_TRUE(links->Put("recon", id, jc).ok());
  }
  auto clean = w.Cli({"--config", config, "--profile", "recon", "--json"});
  ASSERT_EQ(clean.code, kExitOk) << clean.out << clean.err;
  // The feed breaks: everyone reads as terminated.
  for (size_t i = 0; i < people.size(); ++i) {
    w.hris().Put("E" + std::to_string(10 + i), people[i], "Test", "Engineer", "R&D", false);
  }
  auto held = w.Cli({"--config", config, "--profile", "recon", "--json"});
  EXPECT_EQ(held.code, kExitHeld) << held.out << held.err;
  ASSERT_FALSE(held.json.HasParseError()) << held.out;
  EXPECT_TRUE(held.json["held"].GetBool());
  EXPECT_EQ(held.json["plan"]["suspensions"].GetInt(), 10);
  EXPECT_EQ(held.json["plan"]["limit"].GetInt(), 1);  // 10% of 10 users
  EXPECT_EQ(held.json["plan"]["scope_users"].GetInt(), 10);
  EXPECT_EQ(held.json["enqueued"].GetInt(), 0);
  EXPECT_EQ(held.json["drifted"].GetInt(), 10);  // the plan is reported
  EXPECT_EQ(w.QueuedItems(), 0);
  auto table = w.Cli({"--config", config, "--profile", "recon"});
  EXPECT_EQ(table.code, kExitHeld);
  EXPECT_NE(table.out.find("HELD"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("scimsyncd guard release"), std::string::npos) << table.out;
  // The daemon runs meanwhile: nobody loses access.
  ASSERT_TRUE(StartDaemon()) << scimsync::testing::ReadFile(w.dir().File("daemon.log"));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  for (size_t i = 0; i < people.size(); ++i) {
    auto u = w.scim().ByExternalId("E" + std::to_string(10 + i));
    ASSERT_TRUE(u.IsObject());
    EXPECT_TRUE(u["active"].GetBool()) << i;
  }
  // The admin checked, and they really left: `scimsyncd guard release` applies the held plan.
  config::Config cfg;
  ASSERT_TRUE(config::LoadFile(config, &cfg).empty());
  std::ostringstream out, err;
  ASSERT_EQ(RunGuardCommand(cfg, {"release"}, out, err), kExitOk) << err.str();
  EXPECT_NE(out.str().find("applied the held reconciliation of profile recon"), std::string::npos)
      << out.str();
  auto all_suspended = [&] {
    for (size_t i = 0; i < people.size(); ++i) {
      auto u = w.scim().ByExternalId("E" + std::to_string(10 + i));
      if (!u.IsObject() || u["active"].GetBool()) return false;
    }
    return true;
  };
  EXPECT_TRUE(scimsync::testing::WaitFor(all_suspended, 30000, /*interval_ms=*/100))
      << scimsync::testing::ReadFile(w.dir().File("daemon.log"));
  StopDaemon();
  EXPECT_EQ(w.redis().Cli({"EXISTS", "scimsync:reconcile:recon:held"}), "0");
}

TEST_F(ReconcileCli, ConfirmAppliesAPlanOverTheThresholdAndOpensTheGuard) {
  const std::string config = world_.WriteConfig(0, "", "", "{}");
  for (const char* id : {"E1", "E2", "E3"}) {
    world_.hris().Put(id, std::string("P") + id, "Test", "Engineer", "R&D", false);
    world_.scim().Post(UserJson(id, std::string("p") + id, std::string("P") + id, "Test",
                                "Engineer", "R&D", true));
  }
  auto held = world_.Cli({"--config", config, "--profile", "recon", "--dry-run", "--json"});
  EXPECT_EQ(held.code, kExitHeld) << held.out;  // a dry run says a real run would hold
  EXPECT_EQ(world_.redis().Cli({"EXISTS", "scimsync:reconcile:recon:held"}), "0");
  auto confirmed = world_.Cli({"--config", config, "--profile", "recon", "--confirm", "--json"});
  EXPECT_EQ(confirmed.code, kExitOk) << confirmed.out << confirmed.err;
  EXPECT_TRUE(confirmed.json["confirmed"].GetBool());
  EXPECT_EQ(confirmed.json["enqueued"].GetInt(), 3);
  EXPECT_EQ(world_.QueuedItems(), 3);
  EXPECT_EQ(world_.redis().Cli({"EXISTS", "scimsync:guard:released"}), "1");
}

TEST_P(ReconcileEndToEnd, AListThatShrankIsRefusedUnlessAllowed) {
  ReconcileWorld& w = *world_;
  const std::string config = w.WriteConfig(0);
  w.hris().page_cap = 100;
  for (int i = 0; i < 50; ++i) {
    w.hris().Put("E" + std::to_string(100 + i), "P" + std::to_string(i), "Test", "Engineer", "R&D",
                 true);
  }
  auto first = w.Cli({"--config", config, "--profile", "recon", "--json"});
  ASSERT_EQ(first.code, kExitOk) << first.out << first.err;
  EXPECT_EQ(first.json["enqueued"].GetInt(), 50);
  for (int i = 10; i < 50; ++i) w.hris().Hide("E" + std::to_string(100 + i));
  auto refused = w.Cli({"--config", config, "--profile", "recon", "--json"});
  EXPECT_EQ(refused.code, kExitRefused) << refused.out << refused.err;
  ASSERT_FALSE(refused.json.HasParseError()) << refused.out;
  EXPECT_EQ(refused.json["hris_employees"].GetInt(), 10);
  EXPECT_EQ(refused.json["last_listed"].GetInt(), 50);
  ASSERT_TRUE(refused.json["refused"].IsString()) << refused.out;
  EXPECT_NE(std::string(refused.json["refused"].GetString()).find("80% fewer than the 50"),
            std::string::npos)
      << refused.out;
  EXPECT_EQ(refused.json["enqueued"].GetInt(), 0);
  EXPECT_EQ(w.QueuedItems(), 50);  // only the first run's
  auto dry = w.Cli({"--config", config, "--profile", "recon", "--dry-run"});
  EXPECT_EQ(dry.code, kExitRefused);
  EXPECT_NE(dry.out.find("REFUSED"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("--allow-shrink"), std::string::npos) << dry.out;
  auto allowed = w.Cli({"--config", config, "--profile", "recon", "--allow-shrink", "--json"});
  EXPECT_NE(allowed.code, kExitRefused) << allowed.out;
  EXPECT_TRUE(allowed.json["refused"].IsNull());
  // Accepted: 10 is the count the next run compares with.
  EXPECT_EQ(w.redis().Cli({"GET", "scimsync:reconcile:recon:listed"}), "10");
}

TEST_P(ReconcileEndToEnd, ADuplicateAccountOfALinkedEmployeeIsAConflict) {
  ReconcileWorld& w = *world_;
  const std::string config = w.WriteConfig(0);
  w.hris().Put("E1", "Ada", "Lovelace", "Analyst", "Engines", true);
  const std::string linked =
      w.scim().Post(UserJson("E1", "ada", "Ada", "Lovelace", "Analyst", "Engines", true));
  const std::string dup =
      w.scim().Post(UserJson("E1", "ada.l", "Ada", "Lovelace", "Analyst", "Engines", true));
  auto pool = w.Pool();
  ASSERT_TRUE(scim::NewRedisLinkStore(*pool, "scimsync")->Put("recon", "E1", linked).ok());
  auto r = w.Cli({"--config", config, "--profile", "recon", "--json"});
  EXPECT_EQ(r.code, kExitDrift) << r.out << r.err;
  ASSERT_FALSE(r.json.HasParseError()) << r.out;
  EXPECT_EQ(r.json["counts"]["conflict"].GetInt(), 1);
  ASSERT_EQ(r.json["problems"].Size(), 1u) << r.out;
  const std::string message = r.json["problems"][0]["message"].GetString();
  EXPECT_EQ(std::string(r.json["problems"][0]["kind"].GetString()), "conflict");
  EXPECT_NE(message.find("duplicate account"), std::string::npos) << message;
  EXPECT_NE(message.find(dup), std::string::npos) << message;
  EXPECT_EQ(r.json["counts"]["orphan"].GetInt(), 0);
}

TEST_F(ReconcileCli, AnEmployeeWaitingInTheQueueIsEnqueuedOnlyOnce) {
  const std::string config = world_.WriteConfig(0);
  world_.hris().Put("E1", "Ada", "Lovelace", "Analyst", "Engines", true);
  auto first = world_.Cli({"--config", config, "--profile", "recon", "--json"});
  ASSERT_EQ(first.json["enqueued"].GetInt(), 1) << first.out;
  // A worker took it and the guard (or a backoff) parked it in the retry set.
  config::RedisOptions o;
  o.host = "127.0.0.1";
  o.port = world_.redis().port();
  auto q = queue::NewRedisQueue(o, "");
  int parked = 0;
  for (int p = 0; p < q->partitions(); ++p) {
    auto got = q->Read(p, "test", 10, 0);
    ASSERT_TRUE(got.ok());
    for (const auto& item : *got) {
      ASSERT_TRUE(q->RetryLater(item, 4'000'000'000'000, "held by the guard").ok());
      ++parked;
    }
  }
  ASSERT_EQ(parked, 1);
  for (int run = 0; run < 2; ++run) {
    auto again = world_.Cli({"--config", config, "--profile", "recon", "--json"});
    EXPECT_EQ(again.json["enqueued"].GetInt(), 0) << again.out;
    EXPECT_EQ(again.json["waiting"].GetInt(), 1) << again.out;
  }
  int64_t retries = 0;
  for (int p = 0; p < q->partitions(); ++p) {
    auto d = q->RetryDepth(p);
    retries += d.ok() ? *d : 0;
  }
  EXPECT_EQ(retries, 1);
  EXPECT_EQ(world_.QueuedItems(), 0);
}

TEST_F(ReconcileCli, TheGuardStopsSayingHoldingOnceItsHeldItemsResolved) {
  const std::string config = world_.WriteConfig(0);
  world_.hris().Put("E1", "Ada", "Lovelace", "Analyst", "Engines", true);
  ASSERT_EQ(world_.Cli({"--config", config, "--profile", "recon"}).code, kExitOk);
  config::Config cfg;
  ASSERT_TRUE(config::LoadFile(config, &cfg).empty());
  auto q = queue::NewRedisQueue(cfg.redis, "");
  queue::Item held;
  for (int p = 0; p < q->partitions(); ++p) {
    auto got = q->Read(p, "test", 10, 0);
    ASSERT_TRUE(got.ok());
    for (const auto& item : *got) held = item;
  }
  ASSERT_FALSE(held.entry_id.empty());
  // The guard tripped and parked the item, as a worker does.
  world_.redis().Cli({"SET", "scimsync:guard:tripped", "1800000000000"});
  ASSERT_TRUE(q->Park(held, 4'000'000'000'000, "held by the mass-suspension guard").ok());
  auto status = [&] {
    std::ostringstream out, err;
    EXPECT_EQ(RunStatusCommand(cfg, {}, out, err), kExitOk) << err.str();
    return out.str();
  };
  EXPECT_NE(status().find("guard: HOLDING 1 suspensions"), std::string::npos) << status();
  // The held item resolved (synced with no suspension): nobody is held any more.
  auto due = q->TakeDue(held.partition, 4'000'000'000'001, 10, 60000);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  ASSERT_TRUE(q->Ack((*due)[0]).ok());
  const std::string after = status();
  EXPECT_EQ(after.find("HOLDING"), std::string::npos) << after;
  EXPECT_NE(after.find("holding nobody now"), std::string::npos) << after;
}

TEST_F(ReconcileCli, RoughEdgesExitAsDocumented) {
  const std::string config = world_.WriteConfig(0);
  world_.hris().Put("E1", "Ada", "Lovelace", "Analyst", "Engines", true);
  // An unset HRIS key variable is a config problem on this host: 78, as docs/reconcile.md says.
  unsetenv("TEST_RECON_HRIS_KEY");
  auto unset = world_.Cli({"--config", config, "--profile", "recon", "--json"});
  setenv("TEST_RECON_HRIS_KEY", kHrisKey, 1);
  EXPECT_EQ(unset.code, kExitConfig) << unset.err;
  EXPECT_EQ(unset.json["exit_code"].GetInt(), kExitConfig) << unset.out;
  // A refused connection says so; no timeout was involved.
  const int closed = scimsync::testing::FreePort();
  const std::string bad = world_.WriteConfig(0, "");
  std::string yaml = scimsync::testing::ReadFile(bad);
  const std::string from = world_.hris().base_url();
  yaml.replace(yaml.find(from), from.size(), "http://127.0.0.1:" + std::to_string(closed));
  scimsync::testing::WriteFile(bad, yaml);
  auto refused = world_.Cli({"--config", bad, "--profile", "recon"});
  EXPECT_EQ(refused.code, kExitUnavailable) << refused.err;
  EXPECT_NE(refused.err.find("connection refused"), std::string::npos) << refused.err;
  EXPECT_EQ(refused.err.find("timeout"), std::string::npos) << refused.err;
  // Usage with --json: an object too.
  auto usage = world_.Cli({"--config", config, "--json"});
  EXPECT_EQ(usage.code, kExitUsage);
  ASSERT_FALSE(usage.json.HasParseError()) << usage.out;
  EXPECT_EQ(usage.json["exit_code"].GetInt(), kExitUsage);
}

TEST(ReconcileConfig, ReconcileRequirementsAreCheckedAtLoad) {
  config::Config cfg;
  auto problems = config::LoadString(
      "target: {api_key_env: X}\nprofiles:\n"
      "  - {name: a, connector: bamboohr, secret_env: X, reconcile_every_s: 3600,\n"
      "     api: {key_env: K}}\n"
      "  - {name: b, connector: bamboohr, secret_env: X, reconcile_every_s: 3600,\n"
      "     api: {tenant: acme, key_env: K}, reconcile: {orphans: suspend}}\n",
      "t.yaml", &cfg);
  ASSERT_TRUE(problems.empty()) << problems[0].ToString();
  EXPECT_EQ(cfg.profiles[1].reconcile.orphans, "suspend");
  EXPECT_EQ(cfg.profiles[0].reconcile.orphans, "report");  // the default
  config::Problems pp("t.yaml");
  EXPECT_EQ(connectors::LoadProfile(cfg.profiles[0], &pp), nullptr);
  ASSERT_EQ(pp.list().size(), 1u);
  EXPECT_NE(pp.list()[0].ToString().find("profiles[0].reconcile_every_s"), std::string::npos)
      << pp.list()[0].ToString();
  EXPECT_NE(pp.list()[0].ToString().find("set api.tenant"), std::string::npos);
  config::Problems ok("t.yaml");
  EXPECT_NE(connectors::LoadProfile(cfg.profiles[1], &ok), nullptr);
  // check-config says so, instead of "ok" and a failed run a day later.
  TempDir dir;
  scimsync::testing::WriteFile(
      dir.File("c.yaml"),
      "target: {api_key_env: X, dry_run: true}\nprofiles:\n"
      "  - {name: a, connector: bamboohr, secret_env: TEST_RECON_CHECK_SECRET,\n"
      "     reconcile_every_s: 3600, api: {key_env: K}}\n");
  Process check;
  ASSERT_TRUE(check.Start({std::string(SCIMSYNC_BINARY_DIR) + "/daemon/scimsyncd", "check-config",
                           "--config", dir.File("c.yaml")},
                          dir.File("out"), {"TEST_RECON_CHECK_SECRET=s", "K=k", "X=x"}));
  EXPECT_EQ(check.Wait(20000), kExitConfig) << scimsync::testing::ReadFile(dir.File("out"));
  EXPECT_NE(scimsync::testing::ReadFile(dir.File("out")).find("set api.tenant"), std::string::npos)
      << scimsync::testing::ReadFile(dir.File("out"));
  auto bad = config::LoadString(
      "target: {api_key_env: X}\nprofiles:\n"
      "  - {name: a, connector: rippling, secret_env: X, reconcile: {orphans: delete}}\n",
      "t.yaml", &cfg);
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_NE(bad[0].ToString().find("profiles[0].reconcile.orphans"), std::string::npos)
      << bad[0].ToString();
}

TEST(EmployeeKeyInScope, BareIdsByDefaultAndOnlyThePrefixedOnesOtherwise) {
  EXPECT_EQ(EmployeeKeyInScope("E1", ""), std::optional<std::string>("E1"));
  EXPECT_EQ(EmployeeKeyInScope("", ""), std::nullopt);
  EXPECT_EQ(EmployeeKeyInScope("acme:E1", "acme:"), std::optional<std::string>("E1"));
  EXPECT_EQ(EmployeeKeyInScope("other:E1", "acme:"), std::nullopt);
  EXPECT_EQ(EmployeeKeyInScope("E1", "acme:"), std::nullopt);
  EXPECT_EQ(EmployeeKeyInScope("acme:", "acme:"), std::nullopt);
}

}  // namespace
}  // namespace scimsync::daemon
