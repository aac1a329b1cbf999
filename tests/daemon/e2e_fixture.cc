#include "e2e_fixture.h"

#include <rapidjson/document.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "daemon_fixture.h"

namespace scimsync::testing {

std::string GenericBody(const std::string& event_id, const std::string& type,
                        const std::string& employee, const std::string& title, int64_t when_s) {
  char when[32];
  std::time_t t = static_cast<std::time_t>(when_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string lower = employee;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  return R"({"id":")" + event_id + R"(","type":")" + type + R"(","occurred_at":")" + when +
         R"(","employee":{"id":")" + employee + R"(","firstName":"First","lastName":"Last)" +
         employee + R"(","workEmail":"emp.)" + lower + R"(@example.com","title":")" + title +
         R"(","department":"Engineering"}})";
}

Workload MakeWorkload(int employees, int events_per_employee, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Workload w;
  w.bodies.resize(static_cast<size_t>(employees));
  const int64_t base = 1'790'000'000;
  for (int e = 0; e < employees; ++e) {
    std::string id = "E" + std::to_string(e);
    std::string title;
    const std::vector<std::string> types = LifecycleEventTypes(events_per_employee, rng);
    for (int k = 0; k < events_per_employee; ++k) {
      const std::string& type = types[static_cast<size_t>(k)];
      title = "Title " + std::to_string(k);
      w.bodies[static_cast<size_t>(e)].push_back(
          GenericBody(id + "-" + std::to_string(k), type, id, title, base + k * 60 + e));
      ++w.total;
    }
    w.expected[id] = ExpectedUser{title, EndsActive(types)};
  }
  return w;
}

E2E::E2E() = default;

E2E::~E2E() {
  for (auto& [i, d] : daemons_) d->process.Kill();
  if (scim_) scim_->Stop();
}

bool E2E::StartScim(FakeScimOptions options) {
  scim_ = std::make_unique<FakeScimServer>(std::move(options));
  return scim_->Start();
}

std::string E2E::Scimsyncd() const {
  return std::string(SCIMSYNC_BINARY_DIR) + "/daemon/scimsyncd";
}

std::string E2E::config_path(int index) const {
  return dir_.File("daemon" + std::to_string(index) + ".yaml");
}

std::string E2E::Log(int index) const {
  return ReadFile(dir_.File("daemon" + std::to_string(index) + ".log"));
}

void E2E::SetDaemonApiKey(int index, const std::string& key) {
  WriteFile(dir_.File("api-key-" + std::to_string(index)), key + "\n");
}

bool E2E::StartDaemon(int index, const E2EDaemonOptions& options) {
  auto& d = daemons_[index];
  if (!d) d = std::make_unique<Daemon>();
  d->options = options;
  SetDaemonApiKey(index, options.api_key);
  std::string base_url = options.base_url.empty() ? scim_->base_url() : options.base_url;
  char rate[32];
  std::snprintf(rate, sizeof rate, "%g", options.rate);
  std::string yaml =
      // The first start takes a port from the kernel; a restart keeps it, as a real
      // deployment's HRIS keeps sending to one address.
      "listen: {address: 127.0.0.1, port: " + std::to_string(d->port) + "}\n" + "redis: {url: \"" +
      redis_.url() + "\", connect_timeout_ms: 300, partitions: 8" + options.extra_redis_keys +
      "}\n" + "target:\n  base_url: \"" + base_url +
      "\"\n  api_key_file: " + dir_.File("api-key-" + std::to_string(index)) +
      "\n  timeout_ms: " + std::to_string(options.target_timeout_ms) +
      "\n  max_requests_per_second: " + rate + "\n" + options.extra_target_keys +
      "workers:\n  threads: " + std::to_string(options.workers) +
      "\n  drain_timeout_s: 5\n  retry: {base_delay_ms: 20, max_delay_ms: 500, max_attempts: 100}\n"
      "  guard: {max_suspends: " +
      std::to_string(options.guard_max_suspends) + ", max_suspend_percent: 0, window_s: 3600}\n" +
      options.extra_worker_keys + "profiles:\n  - name: hr\n    connector: " + options.connector +
      "\n    secret_env: TEST_HR_SECRET\n" + options.extra_profile_keys + options.extra_profiles;
  WriteFile(config_path(index), yaml);
  std::vector<std::string> env = options.env;
  env.push_back(std::string("TEST_HR_SECRET=") + kWebhookSecret);
  const std::string log = dir_.File("daemon" + std::to_string(index) + ".log");
  const size_t offset = ReadFile(log).size();
  int port = StartScimsyncd(d->process, {Scimsyncd(), "--config", config_path(index)}, log, env);
  const std::string kept = "port: " + std::to_string(d->port) + "}";
  if (port == 0 && d->port != 0 &&
      ReadFile(log).find("Address already in use", offset) != std::string::npos &&
      yaml.find(kept) != std::string::npos) {
    // The port this instance had was taken while it was down (another process's connection got
    // it as its ephemeral port; seen with many seeds run at once). A deployment gets its port
    // back; here the instance takes a new one, and the senders follow it.
    d->process.Wait(5000);
    yaml.replace(yaml.find(kept), kept.size(), "port: 0}");
    WriteFile(config_path(index), yaml);
    port = StartScimsyncd(d->process, {Scimsyncd(), "--config", config_path(index)}, log, env);
    if (port != 0) d->port = port;
  }
  if (d->port == 0) d->port = port;
  return port != 0 && port == d->port;
}

std::string E2E::Command(int index, std::vector<std::string> args, int* status, std::string* err,
                         int timeout_ms) {
  static int counter = 0;
  const std::string n = std::to_string(++counter);
  const std::string out_file = dir_.File("cmd-" + n + ".out");
  const std::string err_file = dir_.File("cmd-" + n + ".err");
  std::string line = Scimsyncd();
  for (const auto& a : args) line += " '" + a + "'";
  line += " --config '" + config_path(index) + "' >'" + out_file + "' 2>'" + err_file + "'";
  std::vector<std::string> env =
      daemons_.count(index) ? daemons_.at(index)->options.env : std::vector<std::string>{};
  env.push_back(std::string("TEST_HR_SECRET=") + kWebhookSecret);
  Process p;
  int rc = -1;
  if (p.Start({"sh", "-c", line}, dir_.File("cmd-" + n + ".sh.log"), env)) rc = p.Wait(timeout_ms);
  if (rc < 0) p.Kill();
  if (status != nullptr) *status = rc;
  if (err != nullptr) *err = ReadFile(err_file);
  return ReadFile(out_file);
}

void E2E::KillDaemon(int index) { daemons_.at(index)->process.Kill(); }

int E2E::StopDaemon(int index) {
  auto& p = daemons_.at(index)->process;
  p.Signal(SIGTERM);
  int rc = p.Wait(30000);
  if (rc < 0) p.Kill();
  return rc;
}

void E2E::ReloadDaemon(int index) { daemons_.at(index)->process.Signal(SIGHUP); }

void E2E::SendSignalToDaemon(int index, int sig) { daemons_.at(index)->process.Signal(sig); }

void E2E::FreezeDaemon(int index) { daemons_.at(index)->process.Signal(SIGSTOP); }

void E2E::ThawDaemon(int index) { daemons_.at(index)->process.Signal(SIGCONT); }

std::pair<int, std::string> E2E::RunCommand(int index, const std::vector<std::string>& args) {
  int rc = -1;
  std::string err;
  std::string out = Command(index, args, &rc, &err, 30000);
  return {rc, out + err};
}

int E2E::PostUntilAccepted(int index, const std::string& body, int timeout_ms,
                           const std::string& path) {
  int status = 0;
  httplib::Headers headers = {
      {"X-Scimsync-Signature", "sha256=" + HmacSha256Hex(kWebhookSecret, body)}};
  // No answer or 503: the HRIS retries. Anything else is final (a client error: retrying will
  // not help).
  WaitFor(
      [&] {
        auto it = daemons_.find(index);
        if (it == daemons_.end()) {
          status = 0;
          return true;
        }
        httplib::Client c("127.0.0.1", it->second->port);
        c.set_connection_timeout(2, 0);
        c.set_read_timeout(5, 0);
        auto res = c.Post(path, headers, body, "application/json");
        status = res ? res->status : 0;
        return status != 0 && status != 503;
      },
      timeout_ms);
  return status;
}

int E2E::PostOnce(int index, const std::string& body, const std::string& path) {
  httplib::Client c("127.0.0.1", daemons_.at(index)->port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(5, 0);
  auto res =
      c.Post(path, {{"X-Scimsync-Signature", "sha256=" + HmacSha256Hex(kWebhookSecret, body)}},
             body, "application/json");
  return res ? res->status : 0;
}

int E2E::SendWorkload(const Workload& w, int threads) {
  std::atomic<int> accepted{0};
  std::vector<int> indexes;
  for (const auto& [i, d] : daemons_) {
    if (d->process.running()) indexes.push_back(i);
  }
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t) {
    senders.emplace_back([&, t] {
      // Each sender owns some employees and sends each one's events in order, interleaving
      // employees, as an HRIS with several workers would.
      std::vector<size_t> mine;
      for (size_t e = static_cast<size_t>(t); e < w.bodies.size();
           e += static_cast<size_t>(threads)) {
        mine.push_back(e);
      }
      size_t longest = 0;
      for (size_t e : mine) longest = std::max(longest, w.bodies[e].size());
      for (size_t k = 0; k < longest; ++k) {
        for (size_t e : mine) {
          if (k >= w.bodies[e].size()) continue;
          int target = indexes.empty() ? 0 : indexes[(e + k) % indexes.size()];
          if (PostUntilAccepted(target, w.bodies[e][k]) == 202) ++accepted;
        }
      }
    });
  }
  for (auto& s : senders) s.join();
  return accepted.load();
}

int64_t E2E::Pending() const {
  int64_t total = 0;
  for (int p = 0; p < 8; ++p) {
    std::string n = redis_.Cli({"XLEN", "scimsync:{p" + std::to_string(p) + "}:stream"});
    std::string r = redis_.Cli({"ZCARD", "scimsync:{p" + std::to_string(p) + "}:retry"});
    total += std::atoll(n.c_str()) + std::atoll(r.c_str());
  }
  return total;
}

bool E2E::WaitIdle(int timeout_ms) {
  // Stable: empty at three looks in a row, so nothing was in flight between two of them.
  int idle_rounds = 0;
  return WaitFor(
      [&] {
        idle_rounds = Pending() == 0 ? idle_rounds + 1 : 0;
        return idle_rounds >= 3;
      },
      timeout_ms, /*interval_ms=*/200);
}

std::vector<std::string> E2E::CheckUsers(
    const std::map<std::string, ExpectedUser>& expected) const {
  std::vector<std::string> problems;
  size_t present = 0;
  for (const auto& [id, want] : expected) {
    auto users = scim_->FindUsers("externalId", id);  // their JSON
    // A leaver whose events all coalesced into one sync never had an account: none is created
    // for an employee whose newest state is terminated.
    if (users.empty() && !want.active) continue;
    ++present;
    if (users.size() != 1) {
      problems.push_back(id + ": " + std::to_string(users.size()) + " users");
      continue;
    }
    rapidjson::Document doc;
    doc.Parse(users[0].c_str());
    std::string title =
        doc.HasMember("title") && doc["title"].IsString() ? doc["title"].GetString() : "";
    bool active = !doc.HasMember("active") || !doc["active"].IsBool() || doc["active"].GetBool();
    if (title != want.title || active != want.active) {
      std::string history;
      std::string uid = doc.HasMember("id") && doc["id"].IsString() ? doc["id"].GetString() : "?";
      for (const auto& r : scim_->requests()) {
        bool about = r.path == "/Users/" + uid ||
                     (r.method == "POST" && r.body.find("\"" + id + "\"") != std::string::npos);
        if (about && r.method != "GET") {
          history += "\n    " + r.method + " " + std::to_string(r.status) + " " + r.body;
        }
      }
      problems.push_back(id + ": title '" + title + "' active " + (active ? "true" : "false") +
                         ", want '" + want.title + "' " + (want.active ? "true" : "false") +
                         history);
    }
  }
  if (scim_->user_count() != present) {
    problems.push_back("store holds " + std::to_string(scim_->user_count()) + " users, want " +
                       std::to_string(present));
  }
  return problems;
}

std::vector<std::string> E2E::ConcurrentWork() const {
  // Which employee a request is about: its filter value, its POST body's externalId, or the
  // externalId of the user its path names.
  std::map<std::string, std::string> id_to_employee;
  for (const auto& json : scim_->Users()) {
    rapidjson::Document doc;
    doc.Parse(json.c_str());
    if (doc.IsObject() && doc.HasMember("id") && doc.HasMember("externalId") &&
        doc["externalId"].IsString()) {
      id_to_employee[doc["id"].GetString()] = doc["externalId"].GetString();
    }
  }
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> by_employee;
  for (const auto& r : scim_->requests()) {
    std::string who;
    auto q = r.filter.find('"');
    if (r.filter.rfind("externalId", 0) == 0 && q != std::string::npos) {
      who = r.filter.substr(q + 1, r.filter.size() - q - 2);
    } else if (r.path.rfind("/Users/", 0) == 0) {
      auto it = id_to_employee.find(r.path.substr(7));
      if (it != id_to_employee.end()) who = it->second;
    } else if (r.method == "POST") {
      rapidjson::Document doc;
      doc.Parse(r.body.c_str());
      if (doc.IsObject() && doc.HasMember("externalId") && doc["externalId"].IsString()) {
        who = doc["externalId"].GetString();
      }
    }
    if (!who.empty()) by_employee[who].emplace_back(r.arrived_us, r.answered_us);
  }
  std::vector<std::string> out;
  for (auto& [who, spans] : by_employee) {
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) {
      // Sequential work: the next request leaves the worker after the previous answer arrived.
      // Dropped connections have no answer time worth comparing.
      if (spans[i - 1].second > 0 && spans[i].first + 1000 < spans[i - 1].second) {
        out.push_back(who);
        break;
      }
    }
  }
  return out;
}

int E2E::MaxRequestsPerSecond() const {
  std::vector<int64_t> times;
  for (const auto& r : scim_->requests()) {
    if (r.path.rfind("/Users", 0) == 0) times.push_back(r.arrived_us);
  }
  std::sort(times.begin(), times.end());
  int best = 0;
  size_t lo = 0;
  for (size_t hi = 0; hi < times.size(); ++hi) {
    while (times[hi] - times[lo] >= 1'000'000) ++lo;
    best = std::max(best, static_cast<int>(hi - lo + 1));
  }
  return best;
}

}  // namespace scimsync::testing
