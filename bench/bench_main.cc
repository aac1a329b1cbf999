// scimsync_bench: the benchmark driver behind bench/run. It starts a private
// redis-server (AOF, fsync every second), the in-memory SCIM sink and scimsyncd, drives them with
// wrk and its own senders, and prints one results table: ingest against a bare cpp-httplib
// ceiling, ack latency at a fixed rate, end to end, memory and cost growth with the backlog --
// each the median of --runs runs, every ratio taken within one run.
#include <hiredis/hiredis.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sink.h"
#include "test_support.h"

namespace scimsync::bench {
namespace {

using testing::Process;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

constexpr char kSecret[] = "whsec-bench-3d9e7a21";
constexpr char kApiKey[] = "bench-key";
constexpr int kPartitions = 8;

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

void SleepMs(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

struct Options {
  std::string scimsyncd;
  std::string bare;
  std::string lua;
  std::string wrk = "wrk";
  std::string out;  // also write the table here
  bool smoke = false;
  int runs = 3;
  int employees = 2000;
  int events_per_employee = 10;
  int wrk_seconds = 5;
  int wrk_threads = 2;
  int wrk_connections = 64;
  int wrk_bodies = 200000;
  int ack_rate = 1000;
  int ack_seconds = 5;
  int senders = 32;
  int64_t backlog_big = 1000000;
  std::vector<int64_t> growth = {1000, 10000, 100000};
  int workers = 4;
  // scimsyncd's event loops (listen.threads).
  int listen_threads = 2;
  // The ceiling's thread pool: cpp-httplib holds a thread per keep-alive connection, so it needs
  // one per wrk connection to serve them all at once.
  int bare_threads = 64;
  // Which phases to run (profiling one phase): ingest, ack, e2e, paced, load, growth, backlog.
  std::string phases = "ingest,ack,e2e,paced,load,growth,backlog";
  // paced: the workload under target.max_requests_per_second 10 and 100, run with the limiter
  // at pace_scale times that rate; the time to converge is the measured time / pace_scale.
  int pace_scale = 20;
  // paced: only this rate (10 or 100); 0: both. With --pace-scale 1, a rate's real pacing: the
  // workers' read-ahead waits a real second, which a scaled limiter cuts short.
  int paced_only = 0;
  // Appends every SCIM request of the e2e and paced phases to this file, one tab-separated line
  // each (Sink::WriteLog); empty: none.
  std::string requests_log;
  // load: an initial load of this many hires (one employee.created each) into an empty sink.
  int load_employees = 10000;
  bool Has(const std::string& phase) const {
    return ("," + phases + ",").find("," + phase + ",") != std::string::npos;
  }
};

std::string HmacHex(const std::string& data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kSecret, static_cast<int>(sizeof(kSecret) - 1),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[mac[i] >> 4];
    out += hex[mac[i] & 15];
  }
  return out;
}

// A full-record generic-profile event. Event k of an employee carries title "Title k", so the
// sink can tell which event a SCIM write reflects.
std::string EventJson(const std::string& event_id, const std::string& type,
                      const std::string& employee, int k) {
  char when[32];
  std::time_t t = static_cast<std::time_t>(1'790'000'000 + int64_t{k} * 60);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string lower = employee;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  return R"({"id":")" + event_id + R"(","type":")" + type + R"(","occurred_at":")" + when +
         R"(","employee":{"id":")" + employee + R"(","firstName":"First","lastName":"Last)" +
         employee + R"(","workEmail":"emp.)" + lower + R"(@example.com","title":"Title )" +
         std::to_string(k) + R"(","department":"Engineering"}})";
}

// Hires, updates, terminations and rehires of `employees` employees, `per` events each; each
// employee's events in order. expected: the newest event's state.
struct Workload {
  std::vector<std::vector<std::string>> events;  // [employee][k]: event JSON
  std::vector<std::vector<std::string>> types;   // [employee][k]: its type (employee.created...)
  std::string prefix;                            // employee e's id is prefix + e
  std::map<std::string, Sink::Expected> expected;
  int64_t total = 0;
};

Workload MakeWorkload(const std::string& prefix, int64_t employees, int per, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Workload w;
  w.prefix = prefix;
  w.events.resize(static_cast<size_t>(employees));
  for (int64_t e = 0; e < employees; ++e) {
    std::string id = prefix + std::to_string(e);
    const std::vector<std::string> types = scimsync::testing::LifecycleEventTypes(per, rng);
    w.types.push_back(types);
    for (int k = 0; k < per; ++k) {
      const std::string& type = types[static_cast<size_t>(k)];
      w.events[static_cast<size_t>(e)].push_back(
          EventJson(id + "-" + std::to_string(k), type, id, k));
      ++w.total;
    }
    w.expected[id] = Sink::Expected{per - 1, scimsync::testing::EndsActive(types)};
  }
  return w;
}

// /proc/PID/status fields in kB.
int64_t ProcStatusKb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atoll(line.c_str() + field.size() + 1);
  }
  return -1;
}

// CPU time (user + system) a process has used so far, in seconds; its own threads included,
// forked children (Redis's AOF rewrites) not.
double ProcCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');  // the command name may contain spaces
  if (close == std::string::npos) return -1;
  std::istringstream fields(text.substr(close + 2));
  std::string f;
  int64_t utime = 0, stime = 0;
  // After the name: state(3) ... utime is field 14, stime 15 (1-based, counting pid and name).
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::atoll(f.c_str());
    if (i == 15) stime = std::atoll(f.c_str());
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// This process's CPU time (the driver: senders, the sink), in seconds.
double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

struct RedisReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
struct RedisContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};

// The private redis-server: AOF on, fsync every second (the durability most deployments run).
class Redis {
 public:
  bool Start() {
    port_ = testing::FreePort();
    if (!proc_.Start({"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                      "--dir", dir_.path(), "--appendonly", "yes", "--appendfsync", "everysec",
                      "--save", "", "--daemonize", "no"},
                     dir_.File("redis.log"))) {
      return false;
    }
    if (!testing::WaitForPort(port_, 10000)) return false;
    timeval tv{30, 0};
    ctx_.reset(redisConnectWithTimeout("127.0.0.1", port_, tv));
    return ctx_ && ctx_->err == 0;
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  pid_t pid() const { return proc_.pid(); }
  int64_t Integer(const std::string& cmd, const std::string& key) {
    std::unique_ptr<redisReply, RedisReplyDeleter> r(
        static_cast<redisReply*>(redisCommand(ctx_.get(), "%s %s", cmd.c_str(), key.c_str())));
    return r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  }
  void FlushAll() {
    std::unique_ptr<redisReply, RedisReplyDeleter> r(
        static_cast<redisReply*>(redisCommand(ctx_.get(), "FLUSHALL")));
  }
  // Items waiting in streams and retry sets: 0 when the workers are done.
  int64_t Pending() {
    int64_t total = 0;
    for (int p = 0; p < kPartitions; ++p) {
      std::string tag = "scimsync:{p" + std::to_string(p) + "}:";
      total += std::max<int64_t>(0, Integer("XLEN", tag + "stream"));
      total += std::max<int64_t>(0, Integer("ZCARD", tag + "retry"));
    }
    return total;
  }
  // INFO commandstats as "command=calls/usec" (usec: Redis's time in the command, including the
  // commands a script runs), and the total of calls.
  int64_t CommandCalls(std::string* detail) {
    std::unique_ptr<redisReply, RedisReplyDeleter> r(
        static_cast<redisReply*>(redisCommand(ctx_.get(), "INFO commandstats")));
    if (!r || r->type != REDIS_REPLY_STRING) return -1;
    std::istringstream in(std::string(r->str, r->len));
    std::string line;
    int64_t total = 0;
    while (std::getline(in, line)) {
      auto colon = line.find(":calls=");
      if (line.rfind("cmdstat_", 0) != 0 || colon == std::string::npos) continue;
      int64_t calls = std::atoll(line.c_str() + colon + 7);
      total += calls;
      auto usec = line.find(",usec=");
      if (detail != nullptr) {
        *detail +=
            line.substr(8, colon - 8) + "=" + std::to_string(calls) + "/" +
            (usec == std::string::npos ? "?"
                                       : std::to_string(std::atoll(line.c_str() + usec + 6))) +
            " ";
      }
    }
    return total;
  }
  // An integer field of an INFO section (e.g. "persistence", "aof_rewrites"); -1 if missing.
  int64_t InfoInteger(const std::string& section, const std::string& field) {
    std::unique_ptr<redisReply, RedisReplyDeleter> r(
        static_cast<redisReply*>(redisCommand(ctx_.get(), "INFO %s", section.c_str())));
    if (!r || r->type != REDIS_REPLY_STRING) return -1;
    std::string text(r->str, r->len);
    auto at = text.find("\n" + field + ":");
    return at == std::string::npos ? -1 : std::atoll(text.c_str() + at + field.size() + 2);
  }
  // AOF rewrites since Redis started (Redis forks and writes the whole dataset for each).
  int64_t AofRewrites() { return InfoInteger("persistence", "aof_rewrites"); }
  void ResetStats() {
    std::unique_ptr<redisReply, RedisReplyDeleter> r(
        static_cast<redisReply*>(redisCommand(ctx_.get(), "CONFIG RESETSTAT")));
  }
  int64_t UsedMemoryMb() {
    int64_t bytes = InfoInteger("memory", "used_memory");
    return bytes < 0 ? -1 : bytes / (1024 * 1024);
  }

 private:
  TempDir dir_;
  Process proc_;
  int port_ = 0;
  std::unique_ptr<redisContext, RedisContextDeleter> ctx_;
};

class Daemon {
 public:
  Daemon(const Options& o, Redis& redis, TempDir& dir) : o_(o), redis_(redis), dir_(dir) {}
  ~Daemon() { Stop(); }
  // workers = 0: ingest only, to build a backlog.
  bool Start(int workers, const std::string& sink_url, double rate = 0) {
    port_ = testing::FreePort();
    testing::WriteFile(dir_.File("api-key"), std::string(kApiKey) + "\n");
    std::string yaml =
        "listen: {address: 127.0.0.1, port: " + std::to_string(port_) +
        ", threads: " + std::to_string(o_.listen_threads) + "}\n" + "redis: {url: \"" +
        redis_.url() + "\", partitions: " + std::to_string(kPartitions) + "}\n" +
        "target:\n  base_url: \"" + sink_url + "\"\n  api_key_file: " + dir_.File("api-key") +
        "\n  timeout_ms: 5000\n  max_requests_per_second: " + std::to_string(rate) + "\n" +
        "workers:\n  threads: " + std::to_string(workers) +
        "\n  drain_timeout_s: 5\n  retry: {base_delay_ms: 50, max_delay_ms: 1000, "
        "max_attempts: 100}\n"
        // Terminations are part of the workload: the mass-suspension guard must not pause it.
        "  guard: {max_suspends: 1000000, max_suspend_percent: 0, window_s: 3600}\n"
        "log: {level: warn}\n"
        "profiles:\n  - name: hr\n    connector: generic\n    secret_env: BENCH_HR_SECRET\n";
    std::string config = dir_.File("scimsyncd.yaml");
    testing::WriteFile(config, yaml);
    if (!proc_.Start({o_.scimsyncd, "--config", config}, dir_.File("scimsyncd.log"),
                     {std::string("BENCH_HR_SECRET=") + kSecret})) {
      return false;
    }
    if (testing::WaitForPort(port_, 30000)) return true;
    std::cerr << "scimsyncd did not listen; its log:\n"
              << testing::ReadFile(dir_.File("scimsyncd.log"));
    return false;
  }
  void Stop() {
    if (!proc_.running()) return;
    proc_.Signal(SIGTERM);
    if (proc_.Wait(20000) < 0) proc_.Kill();
  }
  int port() const { return port_; }
  pid_t pid() const { return proc_.pid(); }
  int64_t RssKb() const { return ProcStatusKb(proc_.pid(), "VmRSS"); }
  int64_t PeakKb() const { return ProcStatusKb(proc_.pid(), "VmHWM"); }

 private:
  const Options& o_;
  Redis& redis_;
  TempDir& dir_;
  Process proc_;
  int port_ = 0;
};

std::unique_ptr<httplib::Client> NewClient(int port) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_keep_alive(true);
  c->set_tcp_nodelay(true);
  c->set_connection_timeout(5, 0);
  c->set_read_timeout(30, 0);
  return c;
}

// POSTs one webhook until it is accepted (an HRIS retries 503 and connection errors).
bool PostAccepted(httplib::Client& c, const std::string& body) {
  httplib::Headers headers = {{"X-Scimsync-Signature", "sha256=" + HmacHex(body)}};
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto res = c.Post("/webhooks/hr", headers, body, "application/json");
    if (res && res->status == 202) return true;
    if (res && res->status != 503) {
      std::cerr << "webhook answered " << res->status << ": " << res->body << "\n";
      return false;
    }
    SleepMs(20);
  }
  return false;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

double Median(std::vector<double> v) { return Percentile(std::move(v), 0.5); }

struct WrkResult {
  double rps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int64_t non2xx = 0;
  bool ok = false;
};

double ToMs(double value, const std::string& unit) {
  if (unit == "us") return value / 1000;
  if (unit == "s") return value * 1000;
  if (unit == "m") return value * 60000;
  return value;
}

WrkResult RunWrk(const Options& o, int port, const std::string& bodies, TempDir& dir) {
  WrkResult r;
  static int invocation = 0;
  std::string out = dir.File("wrk-" + std::to_string(++invocation) + ".out");
  Process p;
  if (!p.Start(
          {o.wrk, "-t" + std::to_string(o.wrk_threads), "-c" + std::to_string(o.wrk_connections),
           "-d" + std::to_string(o.wrk_seconds) + "s", "--latency", "-s", o.lua,
           "http://127.0.0.1:" + std::to_string(port)},
          out, {"BENCH_BODIES=" + bodies, "BENCH_THREADS=" + std::to_string(o.wrk_threads)})) {
    return r;
  }
  if (p.Wait((o.wrk_seconds + 60) * 1000) != 0) {
    std::cerr << "wrk failed:\n" << testing::ReadFile(out);
    return r;
  }
  std::string text = testing::ReadFile(out);
  std::smatch m;
  if (std::regex_search(text, m, std::regex(R"(Requests/sec:\s+([0-9.]+))"))) {
    r.rps = std::stod(m[1]);
    r.ok = true;
  }
  if (std::regex_search(text, m, std::regex(R"(\n\s+50%\s+([0-9.]+)(us|ms|s|m))"))) {
    r.p50_ms = ToMs(std::stod(m[1]), m[2]);
  }
  if (std::regex_search(text, m, std::regex(R"(\n\s+99%\s+([0-9.]+)(us|ms|s|m))"))) {
    r.p99_ms = ToMs(std::stod(m[1]), m[2]);
  }
  if (std::regex_search(text, m, std::regex(R"(Non-2xx or 3xx responses:\s+([0-9]+))"))) {
    r.non2xx = std::stoll(m[1]);
  }
  if (!r.ok) std::cerr << "cannot read wrk's output:\n" << text;
  return r;
}

struct RunResult {
  double bare_rps = 0, ingest_rps = 0, ingest_p50 = 0, ingest_p99 = 0;
  int64_t ingest_non2xx = 0;
  // An ingest-only instance (workers.threads 0): the ingest path alone against the ceiling.
  double ingest_only_rps = 0, ingest_only_p99 = 0;
  int64_t ingest_only_non2xx = 0;
  double ack_p50 = 0, ack_p99 = 0, ack_rate = 0;
  double e2e_eps = 0, e2e_p50 = 0, e2e_p99 = 0, e2e_send_s = 0;
  int64_t e2e_writes = 0, e2e_requests = 0, e2e_unmatched = 0, e2e_redis_calls = 0;
  int64_t e2e_aof_rewrites = 0;  // Redis's automatic AOF rewrites that ran during the phase
  // CPU seconds spent during the phase by scimsyncd, Redis and the driver (senders and sink).
  double e2e_cpu_daemon = 0, e2e_cpu_redis = 0, e2e_cpu_driver = 0;
  // Requests against the floor (2 per create, 1 per other write, 1 per employee looked up and
  // never created; the sink counts them: SinkSummary::floor()).
  int64_t e2e_floor = 0;
  // paced: [0] at 10 req/s, [1] at 100 req/s (scaled; see Options::pace_scale).
  double paced_s[2] = {0, 0};
  int64_t paced_requests[2] = {0, 0}, paced_floor[2] = {0, 0};
  // The requests of the end-to-end phase and of the paced runs by kind (sink.h).
  RequestKinds e2e_kinds, paced_kinds[2];
  // load: SCIM requests for the initial load, unpaced, and the users it created.
  int64_t load_requests = 0, load_floor = 0, load_users = 0;
  int64_t stale = 0;
  double idle_mb = 0, peak_mb = 0, backlog_mb = 0, backlog_peak_mb = 0;
  int64_t backlog_items = 0, backlog_redis_mb = 0;
  std::vector<double> growth_eps;
  bool ok = true;
};

// Sends each employee's events in order from `senders` threads, interleaving employees; records
// each event's send time.
bool SendWorkload(const Options& o, int port, const Workload& w,
                  std::vector<std::vector<int64_t>>* sent_us) {
  sent_us->assign(w.events.size(), {});
  for (size_t e = 0; e < w.events.size(); ++e) (*sent_us)[e].resize(w.events[e].size());
  std::atomic<bool> ok{true};
  std::vector<std::thread> threads;
  int n = std::max(1, std::min<int>(o.senders, static_cast<int>(w.events.size())));
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      auto c = NewClient(port);
      size_t longest = 0;
      for (size_t e = static_cast<size_t>(t); e < w.events.size(); e += static_cast<size_t>(n)) {
        longest = std::max(longest, w.events[e].size());
      }
      for (size_t k = 0; k < longest; ++k) {
        for (size_t e = static_cast<size_t>(t); e < w.events.size(); e += static_cast<size_t>(n)) {
          if (k >= w.events[e].size()) continue;
          (*sent_us)[e][k] = NowUs();
          if (!PostAccepted(*c, w.events[e][k])) ok = false;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  return ok;
}

// Enqueues a workload through an ingest-only daemon, `batch` events per webhook ({"events":[..]}),
// each employee's events within one webhook.
bool Preload(const Options& o, int port, const Workload& w) {
  const size_t per_request = 500;
  std::vector<std::string> bodies;
  std::string cur;
  size_t in_cur = 0;
  for (const auto& events : w.events) {
    for (const auto& ev : events) {
      cur += (in_cur == 0 ? "{\"events\":[" : ",") + ev;
      ++in_cur;
    }
    if (in_cur + events.size() > per_request) {
      bodies.push_back(cur + "]}");
      cur.clear();
      in_cur = 0;
    }
  }
  if (in_cur > 0) bodies.push_back(cur + "]}");
  std::atomic<size_t> next{0};
  std::atomic<bool> ok{true};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      auto c = NewClient(port);
      for (size_t i = next++; i < bodies.size(); i = next++) {
        if (!PostAccepted(*c, bodies[i])) ok = false;
      }
    });
  }
  for (auto& th : threads) th.join();
  (void)o;
  return ok;
}

bool WaitDrained(Redis& redis, int timeout_s) {
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  int zero = 0;
  while (Clock::now() < deadline) {
    if (redis.Pending() == 0) {
      if (++zero >= 3) return true;
    } else {
      zero = 0;
    }
    SleepMs(50);
  }
  return false;
}

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}

  bool Prepare() {
    // Signed bodies for wrk: one event per request, distinct event ids and employees.
    bodies_ = dir_.File("bodies.txt");
    std::ofstream f(bodies_);
    for (int i = 0; i < o_.wrk_bodies; ++i) {
      std::string id = "W" + std::to_string(i);
      std::string body = EventJson(id + "-0", "employee.created", id, 0);
      f << "sha256=" << HmacHex(body) << "\n" << body << "\n";
    }
    return static_cast<bool>(f);
  }

  RunResult Run(int run) {
    RunResult r;
    Redis redis;
    if (!redis.Start()) return Fail(r, "redis-server did not start");
    TempDir ddir;

    // 1. The ceiling, then scimsyncd's ingest with the same wrk settings.
    if (o_.Has("ingest")) {
      Process bare;
      bare.Start({o_.bare, "0", std::to_string(o_.bare_threads), "100"}, ddir.File("bare.log"));
      const int port =
          testing::WaitForLoggedPort(bare, ddir.File("bare.log"), "listening on 127.0.0.1:", 10000);
      if (port <= 0) return Fail(r, "the bare server did not start");
      WrkResult w = RunWrk(o_, port, bodies_, ddir);
      bare.Signal(SIGTERM);
      if (bare.Wait(5000) < 0) bare.Kill();
      if (!w.ok) return Fail(r, "wrk against the bare server failed");
      r.bare_rps = w.rps;
    }
    if (o_.Has("ingest")) {
      Sink sink;
      if (!sink.Start()) return Fail(r, "the sink did not start");
      Daemon d(o_, redis, ddir);
      if (!d.Start(o_.workers, sink.base_url())) return Fail(r, "scimsyncd did not start");
      SleepMs(1000);
      r.idle_mb = static_cast<double>(d.RssKb()) / 1024;
      WrkResult w = RunWrk(o_, d.port(), bodies_, ddir);
      if (!w.ok) return Fail(r, "wrk against scimsyncd failed");
      r.ingest_rps = w.rps;
      r.ingest_p50 = w.p50_ms;
      r.ingest_p99 = w.p99_ms;
      r.ingest_non2xx = w.non2xx;
      WaitDrained(redis, 300);
      r.peak_mb = static_cast<double>(d.PeakKb()) / 1024;
      d.Stop();
      sink.Stop();
      redis.FlushAll();

      // The same load on an ingest-only instance: what the ingest path costs by itself, without
      // the workers converging (and their Redis and SCIM traffic) on the same two cores.
      Daemon only(o_, redis, ddir);
      if (!only.Start(0, "http://127.0.0.1:1")) return Fail(r, "scimsyncd did not start");
      WrkResult wo = RunWrk(o_, only.port(), bodies_, ddir);
      if (!wo.ok) return Fail(r, "wrk against the ingest-only scimsyncd failed");
      r.ingest_only_rps = wo.rps;
      r.ingest_only_p99 = wo.p99_ms;
      r.ingest_only_non2xx = wo.non2xx;
      r.peak_mb = std::max(r.peak_mb, static_cast<double>(only.PeakKb()) / 1024);
      only.Stop();
      redis.FlushAll();
    }

    // 2. Ack latency at a fixed rate (open loop: requests leave on schedule).
    if (o_.Has("ack")) {
      Sink sink;
      sink.Start();
      Daemon d(o_, redis, ddir);
      if (!d.Start(o_.workers, sink.base_url())) return Fail(r, "scimsyncd did not start");
      const int threads = 4;
      const int64_t total = int64_t{o_.ack_rate} * o_.ack_seconds;
      std::vector<std::vector<double>> lat(threads);
      std::atomic<int64_t> failed{0};
      int64_t start = NowUs() + 100000;
      std::vector<std::thread> ts;
      for (int t = 0; t < threads; ++t) {
        ts.emplace_back([&, t] {
          auto c = NewClient(d.port());
          for (int64_t i = t; i < total; i += threads) {
            std::string id = "L" + std::to_string(i);
            std::string body = EventJson(id + "-0", "employee.created", id, 0);
            httplib::Headers h = {{"X-Scimsync-Signature", "sha256=" + HmacHex(body)}};
            int64_t due = start + i * 1000000 / o_.ack_rate;
            int64_t wait = due - NowUs();
            if (wait > 0) std::this_thread::sleep_for(std::chrono::microseconds(wait));
            int64_t t0 = NowUs();
            auto res = c->Post("/webhooks/hr", h, body, "application/json");
            int64_t t1 = NowUs();
            if (!res || res->status != 202) ++failed;
            lat[static_cast<size_t>(t)].push_back(static_cast<double>(t1 - t0) / 1000);
          }
        });
      }
      for (auto& t : ts) t.join();
      double secs = static_cast<double>(NowUs() - start) / 1e6;
      std::vector<double> all;
      for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
      r.ack_p50 = Percentile(all, 0.5);
      r.ack_p99 = Percentile(all, 0.99);
      r.ack_rate = static_cast<double>(total) / secs;
      if (failed > 0) std::cerr << failed << " webhooks not answered 202 at the fixed rate\n";
      WaitDrained(redis, 300);
      r.peak_mb = std::max(r.peak_mb, static_cast<double>(d.PeakKb()) / 1024);
      d.Stop();
      redis.FlushAll();
    }

    // 3. End to end: the workload through to the sink, then every user's final state.
    if (o_.Has("e2e")) {
      Sink sink;
      sink.Start();
      Daemon d(o_, redis, ddir);
      if (!d.Start(o_.workers, sink.base_url())) return Fail(r, "scimsyncd did not start");
      Workload w = MakeWorkload("E", o_.employees, o_.events_per_employee, 42 + run);
      redis.ResetStats();
      const int64_t rewrites_before = redis.AofRewrites();
      const double cpu_daemon = ProcCpuSeconds(d.pid());
      const double cpu_redis = ProcCpuSeconds(redis.pid());
      const double cpu_driver = SelfCpuSeconds();
      std::vector<std::vector<int64_t>> sent;
      int64_t t0 = NowUs();
      if (!SendWorkload(o_, d.port(), w, &sent)) return Fail(r, "the workload was not accepted");
      r.e2e_send_s = static_cast<double>(NowUs() - t0) / 1e6;
      if (!WaitDrained(redis, 600)) return Fail(r, "the workers did not drain the workload");
      std::string commands;
      r.e2e_redis_calls = redis.CommandCalls(&commands);
      r.e2e_aof_rewrites = redis.AofRewrites() - rewrites_before;
      r.e2e_cpu_daemon = ProcCpuSeconds(d.pid()) - cpu_daemon;
      r.e2e_cpu_redis = ProcCpuSeconds(redis.pid()) - cpu_redis;
      r.e2e_cpu_driver = SelfCpuSeconds() - cpu_driver;
      std::cerr << "bench: Redis commands during end to end: " << commands << "\n";
      SinkSummary s = sink.Summarize();
      int64_t first_send = INT64_MAX;
      for (const auto& v : sent) {
        for (int64_t x : v) first_send = std::min(first_send, x);
      }
      r.e2e_eps = static_cast<double>(w.total) * 1e6 /
                  static_cast<double>(std::max<int64_t>(1, s.last_write_us - first_send));
      std::vector<double> lat;
      for (size_t e = 0; e < w.events.size(); ++e) {
        auto it = s.writes.find("E" + std::to_string(e));
        for (size_t k = 0; k < w.events[e].size(); ++k) {
          // The first write that shows this event's state or a newer one: coalesced events
          // reach JumpCloud with the write that carries their successor.
          std::optional<int64_t> at;
          if (it != s.writes.end()) {
            for (const auto& wr : it->second) {
              if (wr.event_index >= static_cast<int>(k)) {
                at = wr.at_us;
                break;
              }
            }
          }
          if (!at) {
            ++r.e2e_unmatched;
            continue;
          }
          lat.push_back(static_cast<double>(*at - sent[e][k]) / 1000);
        }
      }
      r.e2e_p50 = Percentile(lat, 0.5);
      r.e2e_p99 = Percentile(lat, 0.99);
      r.e2e_writes = s.writes_total;
      r.e2e_requests = s.requests;
      r.e2e_floor = s.floor();
      r.e2e_kinds = s.kinds;
      PrintKinds("end to end", s);
      LogRequests(sink, w, "e2e", run);
      auto stale = sink.Stale(w.expected);
      r.stale = static_cast<int64_t>(stale.size());
      for (size_t i = 0; i < stale.size() && i < 5; ++i) std::cerr << "stale: " << stale[i] << "\n";
      r.peak_mb = std::max(r.peak_mb, static_cast<double>(d.PeakKb()) / 1024);
      d.Stop();
      redis.FlushAll();
    }

    // 3b. The same workload against a rate-limited target (10 and 100 requests/s): what a
    // customer waits for. The limiter runs at pace_scale times the rate and the time is divided
    // by it (the workload is sent in about a second either way, far below either rate's time).
    for (int i = 0; o_.Has("paced") && i < 2; ++i) {
      const double rate = i == 0 ? 10 : 100;
      if (o_.paced_only != 0 && o_.paced_only != static_cast<int>(rate)) continue;
      Sink sink;
      sink.Start();
      Daemon d(o_, redis, ddir);
      if (!d.Start(o_.workers, sink.base_url(), rate * o_.pace_scale)) {
        return Fail(r, "scimsyncd did not start");
      }
      Workload w = MakeWorkload("E", o_.employees, o_.events_per_employee, 42 + run);
      std::vector<std::vector<int64_t>> sent;
      int64_t t0 = NowUs();
      if (!SendWorkload(o_, d.port(), w, &sent)) return Fail(r, "the workload was not accepted");
      if (!WaitDrained(redis, 1800)) return Fail(r, "the workers did not drain the workload");
      SinkSummary s = sink.Summarize();
      r.paced_s[i] =
          static_cast<double>(std::max<int64_t>(s.last_write_us, t0) - t0) / 1e6 * o_.pace_scale;
      r.paced_requests[i] = s.requests;
      r.paced_floor[i] = s.floor();
      r.paced_kinds[i] = s.kinds;
      const std::string phase = "paced" + std::to_string(static_cast<int>(rate));
      PrintKinds(phase, s);
      LogRequests(sink, w, phase, run);
      auto stale = sink.Stale(w.expected);
      r.stale += static_cast<int64_t>(stale.size());
      for (size_t k = 0; k < stale.size() && k < 5; ++k) std::cerr << "stale: " << stale[k] << "\n";
      d.Stop();
      redis.FlushAll();
    }

    // 3c. Initial load: load_employees hires into an empty JumpCloud, unpaced; the time at a
    // rate is requests / rate (every request waits for its slot; the daemon's own time per
    // request is ~0.1 ms against 10-100 ms per slot).
    if (o_.Has("load")) {
      Sink sink;
      sink.Start();
      Daemon d(o_, redis, ddir);
      if (!d.Start(o_.workers, sink.base_url())) return Fail(r, "scimsyncd did not start");
      Workload w = MakeWorkload("L", o_.load_employees, 1, 7 + run);
      std::vector<std::vector<int64_t>> sent;
      if (!SendWorkload(o_, d.port(), w, &sent)) return Fail(r, "the load was not accepted");
      if (!WaitDrained(redis, 600)) return Fail(r, "the workers did not drain the load");
      SinkSummary s = sink.Summarize();
      r.load_requests = s.requests;
      r.load_floor = s.floor();
      r.load_users = static_cast<int64_t>(sink.server().user_count());
      auto stale = sink.Stale(w.expected);
      r.stale += static_cast<int64_t>(stale.size());
      d.Stop();
      redis.FlushAll();
    }

    // 4. Cost growth: drain a backlog of N items (N/10 employees) built while no worker ran.
    for (int64_t n : o_.Has("growth") ? o_.growth : std::vector<int64_t>{}) {
      double eps = Drain(redis, ddir, n, run, &r, nullptr);
      if (eps <= 0) return Fail(r, "draining a backlog of " + std::to_string(n) + " failed");
      r.growth_eps.push_back(eps);
    }

    // 5. Memory with a large backlog waiting: the workers must not load it.
    { Drain(redis, ddir, o_.backlog_big, run, &r, &r.backlog_mb); }
    return r;
  }

 private:
  RunResult& Fail(RunResult& r, const std::string& why) {
    std::cerr << "bench: " << why << "\n";
    r.ok = false;
    return r;
  }

  // Builds a backlog of n items with an ingest-only daemon, then starts the workers. With
  // rss_mb: measures the working daemon's RSS after a few seconds and stops (no full drain).
  // Otherwise drains it all and returns events/s from the sink's first request to its last write.
  double Drain(Redis& redis, TempDir& ddir, int64_t n, int run, RunResult* r, double* rss_mb) {
    Workload w = MakeWorkload("B", std::max<int64_t>(1, n / 10), 10, 1000 + run);
    Sink sink;
    sink.Start();
    {
      Daemon ingest(o_, redis, ddir);
      if (!ingest.Start(0, sink.base_url()) || !Preload(o_, ingest.port(), w)) {
        std::cerr << "bench: building the backlog failed\n";
        return -1;
      }
      ingest.Stop();
    }
    Daemon d(o_, redis, ddir);
    if (!d.Start(o_.workers, sink.base_url())) return -1;
    if (rss_mb != nullptr) {
      r->backlog_items = redis.Pending();
      r->backlog_redis_mb = redis.UsedMemoryMb();
      SleepMs(o_.smoke ? 1000 : 5000);
      *rss_mb = static_cast<double>(d.RssKb()) / 1024;
      r->backlog_peak_mb = static_cast<double>(d.PeakKb()) / 1024;
      d.Stop();
      sink.Stop();
      redis.FlushAll();
      return 0;
    }
    if (!WaitDrained(redis, 900)) return -1;
    SinkSummary s = sink.Summarize();
    auto stale = sink.Stale(w.expected);
    r->stale += static_cast<int64_t>(stale.size());
    for (size_t i = 0; i < stale.size() && i < 5; ++i) std::cerr << "stale: " << stale[i] << "\n";
    d.Stop();
    sink.Stop();
    redis.FlushAll();
    return static_cast<double>(w.total) * 1e6 /
           static_cast<double>(std::max<int64_t>(1, s.last_write_us - s.first_request_us));
  }

  static void PrintKinds(const std::string& phase, const SinkSummary& s) {
    const RequestKinds& k = s.kinds;
    std::cerr << "bench: " << phase << ": " << s.requests << " SCIM requests, floor " << s.floor()
              << " (" << s.creates << " creates, " << s.all_writes << " writes, "
              << k.leavers_never_created << " leavers never created; writes only "
              << s.write_floor() << "): lookups found 0 " << k.lookup_none << ", found 1+ "
              << k.lookup_found << " (" << k.username_lookups << " by userName), GET by id "
              << k.get_by_id << ", POST " << k.post << ", PATCH " << k.patch << ", PUT " << k.put
              << ", DELETE " << k.del << ", not 2xx " << k.not_2xx << ", other " << k.other
              << "; lookups of leavers never created " << k.leaver_lookups
              << ", lookups of created employees beyond one per POST " << k.created_extra_lookups
              << "\n";
  }

  // --requests-log: appends the phase's requests, one line each (Sink::WriteLog), then each
  // employee's event types ("PHASE<TAB>workload<TAB>EMPLOYEE<TAB>type,type,...").
  void LogRequests(const Sink& sink, const Workload& w, const std::string& phase, int run) const {
    if (o_.requests_log.empty()) return;
    std::ofstream out(o_.requests_log, std::ios::app);
    const std::string tag = phase + "/" + std::to_string(run + 1);
    sink.WriteLog(out, tag);
    for (size_t e = 0; e < w.types.size(); ++e) {
      out << tag << "\tworkload\t" << w.prefix << e << '\t';
      for (size_t k = 0; k < w.types[e].size(); ++k) out << (k ? "," : "") << w.types[e][k];
      out << '\n';
    }
    if (!out) std::cerr << "bench: cannot write " << o_.requests_log << "\n";
  }

  Options o_;
  TempDir dir_;
  std::string bodies_;
};

std::string Fmt(double v, int decimals = 0) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string Table(const Options& o, const std::vector<RunResult>& runs) {
  auto col = [&](const std::function<double(const RunResult&)>& f) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(f(r));
    return v;
  };
  auto cells = [&](const std::function<double(const RunResult&)>& f, int dec) {
    std::string s;
    for (double x : col(f)) s += (s.empty() ? "" : " / ") + Fmt(x, dec);
    return s;
  };
  std::ostringstream t;
  char date[32];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm);
  t << "scimsync bench, " << date << ", " << runs.size() << " run(s), "
    << std::thread::hardware_concurrency() << " cores; workers " << o.workers << ", partitions "
    << kPartitions << ", listen threads " << o.listen_threads << " (bare server " << o.bare_threads
    << "), wrk -t" << o.wrk_threads << " -c" << o.wrk_connections << " -d" << o.wrk_seconds
    << "s\n\n";
  t << "| figure | median | runs | target |\n|---|---|---|---|\n";
  auto row = [&](const std::string& name, const std::function<double(const RunResult&)>& f, int dec,
                 const std::string& target) {
    t << "| " << name << " | " << Fmt(Median(col(f)), dec) << " | " << cells(f, dec) << " | "
      << target << " |\n";
  };
  row(
      "bare cpp-httplib 202 (req/s)", [](const RunResult& r) { return r.bare_rps; }, 0, "ceiling");
  row(
      "ingest, signed generic webhooks (req/s)", [](const RunResult& r) { return r.ingest_rps; }, 0,
      "");
  row(
      "ingest answers other than 2xx", [](const RunResult& r) { return double(r.ingest_non2xx); },
      0, "0");
  row(
      "ingest / ceiling (%)",
      [](const RunResult& r) { return r.bare_rps > 0 ? 100 * r.ingest_rps / r.bare_rps : 0; }, 1,
      ">= 60");
  row(
      "ingest ack p50 under wrk (ms)", [](const RunResult& r) { return r.ingest_p50; }, 2, "");
  row(
      "ingest ack p99 under wrk (ms)", [](const RunResult& r) { return r.ingest_p99; }, 2, "");
  row(
      "ingest-only instance, workers.threads 0 (req/s)",
      [](const RunResult& r) { return r.ingest_only_rps; }, 0, "");
  row(
      "  its answers other than 2xx",
      [](const RunResult& r) { return double(r.ingest_only_non2xx); }, 0, "0");
  row(
      "  ingest-only / ceiling (%)",
      [](const RunResult& r) { return r.bare_rps > 0 ? 100 * r.ingest_only_rps / r.bare_rps : 0; },
      1, "");
  row(
      "  its ack p99 under wrk (ms)", [](const RunResult& r) { return r.ingest_only_p99; }, 2, "");
  row(
      "ack p50 at " + std::to_string(o.ack_rate) + " req/s (ms)",
      [](const RunResult& r) { return r.ack_p50; }, 2, "");
  row(
      "ack p99 at " + std::to_string(o.ack_rate) + " req/s (ms)",
      [](const RunResult& r) { return r.ack_p99; }, 2, "<= 5");
  row(
      "end to end, " + std::to_string(o.employees * o.events_per_employee) + " events / " +
          std::to_string(o.employees) + " employees (events/s)",
      [](const RunResult& r) { return r.e2e_eps; }, 0, ">= 10000");
  row(
      "end to end latency p50 (ms)", [](const RunResult& r) { return r.e2e_p50; }, 1, "");
  row(
      "end to end latency p99 (ms)", [](const RunResult& r) { return r.e2e_p99; }, 1, "");
  row(
      "SCIM writes for the workload", [](const RunResult& r) { return double(r.e2e_writes); }, 0,
      "");
  row(
      "SCIM requests for the workload", [](const RunResult& r) { return double(r.e2e_requests); },
      0, "");
  row(
      "  its floor: 2 per create + 1 per other write + 1 per leaver looked up, never created "
      "(sink)",
      [](const RunResult& r) { return double(r.e2e_floor); }, 0, "");
  row(
      "  requests / floor",
      [](const RunResult& r) {
        return r.e2e_floor > 0 ? double(r.e2e_requests) / double(r.e2e_floor) : 0;
      },
      2, "<= 1.1");
  for (int i = 0; i < 2; ++i) {
    const std::string rate = i == 0 ? "10" : "100";
    row(
        "converge the workload at " + rate + " req/s (s, limiter at " +
            std::to_string(o.pace_scale) + "x, time / " + std::to_string(o.pace_scale) + ")",
        [i](const RunResult& r) { return r.paced_s[i]; }, 0, "");
    row(
        "  its lower bound: requests / " + rate + " (s)",
        [i](const RunResult& r) { return double(r.paced_requests[i]) / (i == 0 ? 10 : 100); }, 0,
        "");
    row(
        "  SCIM requests at " + rate + " req/s (bursts coalesce)",
        [i](const RunResult& r) { return double(r.paced_requests[i]); }, 0, "");
    row(
        "  requests / floor at " + rate + " req/s",
        [i](const RunResult& r) {
          return r.paced_floor[i] > 0 ? double(r.paced_requests[i]) / double(r.paced_floor[i]) : 0;
        },
        2, "<= 1.1");
  }
  row(
      "initial load, " + std::to_string(o.load_employees) + " hires: SCIM requests",
      [](const RunResult& r) { return double(r.load_requests); }, 0,
      std::to_string(2 * o.load_employees) + " + probes");
  row(
      "  users created", [](const RunResult& r) { return double(r.load_users); }, 0,
      std::to_string(o.load_employees));
  row(
      "  time at 10 req/s (s, requests / 10)",
      [](const RunResult& r) { return double(r.load_requests) / 10; }, 0, "");
  row(
      "  time at 100 req/s (s, requests / 100)",
      [](const RunResult& r) { return double(r.load_requests) / 100; }, 0, "");
  row(
      "Redis commands for the workload",
      [](const RunResult& r) { return double(r.e2e_redis_calls); }, 0, "");
  row(
      "  AOF rewrites by Redis during it",
      [](const RunResult& r) { return double(r.e2e_aof_rewrites); }, 0, "");
  row(
      "CPU during end to end (s): scimsyncd", [](const RunResult& r) { return r.e2e_cpu_daemon; },
      2, "");
  row(
      "  Redis", [](const RunResult& r) { return r.e2e_cpu_redis; }, 2, "");
  row(
      "  the driver (senders, sink)", [](const RunResult& r) { return r.e2e_cpu_driver; }, 2, "");
  row(
      "time to send the workload (s)", [](const RunResult& r) { return r.e2e_send_s; }, 2, "");
  row(
      "events without a matching write (latency)",
      [](const RunResult& r) { return double(r.e2e_unmatched); }, 0, "0");
  row(
      "stale users (all phases)", [](const RunResult& r) { return double(r.stale); }, 0, "0");
  row(
      "RSS idle (MB)", [](const RunResult& r) { return r.idle_mb; }, 1, "<= 30");
  row(
      "RSS peak under load (MB)", [](const RunResult& r) { return r.peak_mb; }, 1, "<= 64");
  row(
      "RSS with " + std::to_string(o.backlog_big) + " items of backlog (MB)",
      [](const RunResult& r) { return r.backlog_mb; }, 1, "flat (~ idle)");
  row(
      "  peak RSS of that daemon (MB)", [](const RunResult& r) { return r.backlog_peak_mb; }, 1,
      "");
  row(
      "  items waiting in Redis", [](const RunResult& r) { return double(r.backlog_items); }, 0,
      "");
  row(
      "  Redis used memory with that backlog (MB)",
      [](const RunResult& r) { return double(r.backlog_redis_mb); }, 0, "");
  for (size_t i = 0; i < o.growth.size(); ++i) {
    row(
        "drain " + std::to_string(o.growth[i]) + "-item backlog (events/s)",
        [i](const RunResult& r) { return i < r.growth_eps.size() ? r.growth_eps[i] : 0; }, 0,
        "flat");
  }
  // Where the requests go: one row per phase that ran, medians of the runs (sink.h, RequestKinds).
  struct Phase {
    std::string name;
    std::function<const RequestKinds&(const RunResult&)> kinds;
    std::function<double(const RunResult&)> requests, floor;
  };
  const std::vector<Phase> phases = {
      {"end to end", [](const RunResult& r) -> const RequestKinds& { return r.e2e_kinds; },
       [](const RunResult& r) { return double(r.e2e_requests); },
       [](const RunResult& r) { return double(r.e2e_floor); }},
      {"paced, 10 req/s",
       [](const RunResult& r) -> const RequestKinds& { return r.paced_kinds[0]; },
       [](const RunResult& r) { return double(r.paced_requests[0]); },
       [](const RunResult& r) { return double(r.paced_floor[0]); }},
      {"paced, 100 req/s",
       [](const RunResult& r) -> const RequestKinds& { return r.paced_kinds[1]; },
       [](const RunResult& r) { return double(r.paced_requests[1]); },
       [](const RunResult& r) { return double(r.paced_floor[1]); }},
  };
  using Field = int64_t RequestKinds::*;
  const std::vector<Field> fields = {
      &RequestKinds::lookup_none, &RequestKinds::lookup_found,
      &RequestKinds::get_by_id,   &RequestKinds::post,
      &RequestKinds::patch,       &RequestKinds::put,
      &RequestKinds::del,         &RequestKinds::not_2xx,
      &RequestKinds::other,       &RequestKinds::leavers_never_created};
  bool header = false;
  for (const auto& p : phases) {
    if (Median(col(p.requests)) <= 0) continue;
    if (!header) {
      t << "\nSCIM requests by kind (medians of the runs; sink.h RequestKinds)\n\n"
        << "| phase | requests | floor | floor of writes only | lookups found 0 | found 1+ | GET "
           "by id | POST | PATCH "
           "| PUT | DELETE | not 2xx | other | leavers never created |\n"
        << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
      header = true;
    }
    t << "| " << p.name << " | " << Fmt(Median(col(p.requests))) << " | "
      << Fmt(Median(col(p.floor))) << " | " << Fmt(Median(col([&](const RunResult& r) {
           return p.floor(r) - double(p.kinds(r).leavers_never_created);
         })));
    for (Field f : fields) {
      t << " | " << Fmt(Median(col([&](const RunResult& r) { return double(p.kinds(r).*f); })));
    }
    t << " |\n";
  }
  return t.str();
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--scimsyncd")
      o.scimsyncd = next();
    else if (a == "--bare")
      o.bare = next();
    else if (a == "--lua")
      o.lua = next();
    else if (a == "--wrk")
      o.wrk = next();
    else if (a == "--out")
      o.out = next();
    else if (a == "--runs")
      o.runs = std::atoi(next().c_str());
    else if (a == "--workers")
      o.workers = std::atoi(next().c_str());
    else if (a == "--listen-threads")
      o.listen_threads = std::atoi(next().c_str());
    else if (a == "--backlog")
      o.backlog_big = std::atoll(next().c_str());
    else if (a == "--phases")
      o.phases = next();
    else if (a == "--smoke") {
      o.smoke = true;
      o.runs = 1;
      o.employees = 20;
      o.events_per_employee = 5;
      o.wrk_seconds = 1;
      o.wrk_connections = 8;
      o.wrk_bodies = 500;
      o.ack_rate = 100;
      o.ack_seconds = 1;
      o.senders = 4;
      o.backlog_big = 1000;
      o.growth = {100, 500};
      o.pace_scale = 100;
      o.load_employees = 50;
    } else if (a == "--paced-only") {
      o.paced_only = std::atoi(next().c_str());
    } else if (a == "--pace-scale") {
      o.pace_scale = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--requests-log") {
      o.requests_log = next();
    } else if (a == "--load") {
      o.load_employees = std::max(1, std::atoi(next().c_str()));
    } else {
      std::cerr << "unknown argument " << a
                << "\nusage: scimsync_bench --scimsyncd PATH --bare PATH --lua PATH [--wrk PATH] "
                   "[--runs N] [--workers N] [--listen-threads N] [--backlog N] [--phases "
                   "ingest,ack,e2e,paced,load,growth,backlog] [--pace-scale K] [--paced-only "
                   "10|100] [--load N] [--requests-log FILE] "
                   "[--out FILE] [--smoke]\n";
      return 2;
    }
  }
  if (o.scimsyncd.empty() || o.bare.empty() || o.lua.empty()) {
    std::cerr << "--scimsyncd, --bare and --lua are required\n";
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  Bench bench(o);
  if (!bench.Prepare()) return 1;
  std::vector<RunResult> runs;
  for (int i = 0; i < o.runs; ++i) {
    std::cerr << "bench: run " << i + 1 << " of " << o.runs << "\n";
    RunResult r = bench.Run(i);
    if (!r.ok) return 1;
    runs.push_back(r);
    std::cerr << Table(o, runs);
  }
  std::string table = Table(o, runs);
  std::cout << table;
  if (!o.out.empty()) testing::WriteFile(o.out, table);
  int64_t stale = 0;
  for (const auto& r : runs) stale += r.stale;
  return stale == 0 ? 0 : 3;
}

}  // namespace
}  // namespace scimsync::bench

int main(int argc, char** argv) { return scimsync::bench::Main(argc, argv); }
