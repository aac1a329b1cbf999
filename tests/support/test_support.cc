#include "test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

namespace scimsync::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe)
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/scimsync-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) std::abort();
  path_ = buf.data();
}

TempDir::~TempDir() {
  // SCIMSYNC_KEEP_TEST_DIRS=1 keeps logs and data of a failing run for a look.
  const char* keep = std::getenv("SCIMSYNC_KEEP_TEST_DIRS");  // NOLINT(concurrency-mt-unsafe)
  if (keep != nullptr && *keep == '1') return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Process::~Process() { Kill(); }

bool Process::Start(const std::vector<std::string>& argv, const std::string& output_file,
                    const std::vector<std::string>& env) {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    int fd = open(output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    setpgid(0, 0);
    for (const auto& e : env) putenv(strdup(e.c_str()));  // NOLINT
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  pid_ = pid;
  return true;
}

bool Process::Exited() const {
  if (pid_ <= 0) return true;
  siginfo_t info{};
  return waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == pid_;
}

void Process::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

int Process::Wait(int timeout_ms) {
  if (pid_ <= 0) return -1;
  int status = 0;
  const bool exited = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout_ms,
                              /*interval_ms=*/10);
  if (!exited) return -1;
  pid_ = -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

void Process::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::vector<std::string> LifecycleEventTypes(int events, std::mt19937_64& rng) {
  std::vector<std::string> out;
  bool active = true;
  for (int k = 0; k < events; ++k) {
    std::string type = "employee.updated";
    if (k == 0) {
      type = "employee.created";
    } else {
      int roll = static_cast<int>(rng() % 100);
      if (active && roll < 15) type = "employee.terminated";
      if (!active && roll < 40) type = "employee.rehired";
    }
    if (type == "employee.terminated") active = false;
    if (type == "employee.rehired" || type == "employee.created") active = true;
    out.push_back(type);
  }
  return out;
}

bool EndsActive(const std::vector<std::string>& types) {
  bool active = true;
  for (const auto& type : types) {
    if (type == "employee.terminated") active = false;
    if (type == "employee.rehired" || type == "employee.created") active = true;
  }
  return active;
}

bool WaitFor(const std::function<bool()>& done, int timeout_ms, int interval_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  return done();
}

int StartScimsyncd(Process& process, const std::vector<std::string>& argv,
                   const std::string& log_file, const std::vector<std::string>& env,
                   int timeout_ms) {
  const size_t offset = ReadFile(log_file).size();
  if (!process.Start(argv, log_file, env)) return 0;
  int port = 0;
  WaitFor(
      [&] {
        const std::string log = ReadFile(log_file);
        const size_t at = log.find("\"msg\":\"scimsyncd started\"", offset);
        if (at != std::string::npos) {
          const size_t end = log.find('\n', at);
          const size_t key = log.find("\"port\":", at);
          if (key != std::string::npos && key < end) port = std::atoi(log.c_str() + key + 7);
        }
        return port != 0 || process.Exited();
      },
      timeout_ms);
  return port;
}

int WaitForLoggedPort(const Process& process, const std::string& log_file,
                      const std::string& marker, int timeout_ms) {
  int port = 0;
  WaitFor(
      [&] {
        const std::string text = ReadFile(log_file);
        const size_t at = text.find(marker);
        if (at != std::string::npos) port = std::atoi(text.c_str() + at + marker.size());
        return port > 0 || process.Exited();
      },
      timeout_ms);
  return port;
}

bool WaitForPort(int port, int timeout_ms) {
  return WaitFor(
      [port] {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<uint16_t>(port));
        int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        close(fd);
        return rc == 0;
      },
      timeout_ms, /*interval_ms=*/20);
}

RedisServer::RedisServer() : port_(FreePort()) {}
RedisServer::RedisServer(std::string password)
    : port_(FreePort()), password_(std::move(password)) {}
RedisServer::~RedisServer() { Kill(); }

bool RedisServer::Start() {
  for (int attempt = 1;; ++attempt) {
    const std::string log = dir_.File("redis.log");
    const size_t offset = ReadFile(log).size();
    if (!StartOnce()) return false;
    // Ready by its own log, not by a PING alone: when the bind failed, a PING to the port may
    // be answered by whoever took it.
    const bool ready = WaitFor(
        [&] {
          return proc_.Exited() ||
                 ReadFile(log).find("Ready to accept connections", offset) != std::string::npos;
        },
        10000, /*interval_ms=*/20);
    if (ready && !proc_.Exited() && Cli({"PING"}) == "PONG") {
      started_once_ = true;
      return true;
    }
    const bool port_taken =
        ReadFile(log).find("Address already in use", offset) != std::string::npos;
    proc_.Kill();
    if (!port_taken || started_once_ || attempt == 5) return false;
    port_ = FreePort();
  }
}

bool RedisServer::StartOnce() {
  std::vector<std::string> argv = {"redis-server",
                                   "--port",
                                   std::to_string(port_),
                                   "--bind",
                                   "127.0.0.1",
                                   "--unixsocket",
                                   socket_path(),
                                   "--unixsocketperm",
                                   "700",
                                   "--dir",
                                   dir_.path(),
                                   "--appendonly",
                                   "yes",
                                   "--appendfsync",
                                   "always",
                                   "--save",
                                   "",
                                   "--daemonize",
                                   "no",
                                   "--logfile",
                                   dir_.File("redis.log")};
  if (!password_.empty()) argv.insert(argv.end(), {"--requirepass", password_});
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  return proc_.Start(argv, dir_.File("redis.out"));
}

void RedisServer::Stop() {
  proc_.Signal(SIGTERM);
  if (proc_.Wait(10000) < 0) proc_.Kill();
}

void RedisServer::Kill() { proc_.Kill(); }

namespace {
std::string Capture(const std::string& cmd);
}  // namespace

bool RedisServer::StartReplicaOf(const RedisServer& primary) {
  // The primary would otherwise wait 5 s for more replicas before it sends the first sync.
  primary.Cli({"CONFIG", "SET", "repl-diskless-sync-delay", "0"});
  extra_args_ = {"--replicaof", "127.0.0.1 " + std::to_string(primary.port())};
  if (!primary.password().empty()) {
    extra_args_.insert(extra_args_.end(), {"--masterauth", primary.password()});
  }
  if (!Start()) return false;
  // Up means synced, not yet acknowledging: the primary streams writes to a new replica only
  // after its first REPLCONF ACK (up to a second later), and WAIT counts nobody until then.
  std::string cli = "redis-cli -p " + std::to_string(primary.port());
  if (!primary.password().empty()) cli += " --no-auth-warning -a '" + primary.password() + "'";
  return WaitFor(
      [&cli] {
        std::string out = Capture(
            "printf 'SET scimsync-test:replica-ready 1\\r\\nWAIT 1 100\\r\\n"
            "DEL scimsync-test:replica-ready\\r\\n' | " +
            cli + " 2>/dev/null");
        return out.find("\n1\n") != std::string::npos;
      },
      10000, /*interval_ms=*/20);
}

void RedisServer::Pause() { proc_.Signal(SIGSTOP); }
void RedisServer::Resume() { proc_.Signal(SIGCONT); }

namespace {

// Runs a shell command and returns its stdout with trailing newlines trimmed.
std::string Capture(const std::string& cmd) {
  std::string out;
  RunShell(cmd, &out, /*with_stderr=*/false);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string Quoted(const std::vector<std::string>& args) {
  std::string cmd;
  for (const auto& a : args) {
    cmd += " '";
    for (char c : a) {
      if (c == '\'') {
        cmd += "'\\''";
      } else {
        cmd += c;
      }
    }
    cmd += "'";
  }
  return cmd;
}

bool OnPath(const std::string& program) {
  return Capture("command -v " + program + " 2>/dev/null").find(program) != std::string::npos;
}

}  // namespace

SentinelServer::SentinelServer(std::string master_name, int master_port, int down_after_ms)
    : master_name_(std::move(master_name)),
      master_port_(master_port),
      down_after_ms_(down_after_ms),
      port_(FreePort()) {}

SentinelServer::~SentinelServer() { Kill(); }

std::string SentinelServer::Unavailable() {
  if (OnPath("redis-sentinel") || OnPath("redis-server")) return {};
  return "neither redis-sentinel nor redis-server is installed (Debian: apt-get install "
         "redis-server redis-sentinel)";
}

bool SentinelServer::Start(int replicas) {
  const std::string conf = dir_.File("sentinel.conf");
  // failover-timeout also spaces two failovers of one primary (twice its value): short, so a
  // test can fail over more than once.
  WriteFile(conf, "port " + std::to_string(port_) + "\nbind 127.0.0.1\ndaemonize no\ndir " +
                      dir_.path() + "\nlogfile " + dir_.File("sentinel.log") +
                      "\nsentinel monitor " + master_name_ + " 127.0.0.1 " +
                      std::to_string(master_port_) + " 1\nsentinel down-after-milliseconds " +
                      master_name_ + " " + std::to_string(down_after_ms_) +
                      "\nsentinel failover-timeout " + master_name_ +
                      " 3000\nsentinel parallel-syncs " + master_name_ + " 1\n");
  std::vector<std::string> argv = {"redis-sentinel", conf};
  if (!OnPath("redis-sentinel")) argv = {"redis-server", conf, "--sentinel"};
  if (!proc_.Start(argv, dir_.File("sentinel.out"))) return false;
  return WaitFor(
      [&] {
        if (MasterPort() != master_port_) return false;
        std::string known = Cli({"SENTINEL", "replicas", master_name_});
        int count = 0;
        for (size_t at = known.find("\nflags\nslave\n"); at != std::string::npos;
             at = known.find("\nflags\nslave\n", at + 1)) {
          ++count;
        }
        return count >= replicas;
      },
      20000);
}

void SentinelServer::Kill() { proc_.Kill(); }

std::string SentinelServer::Cli(const std::vector<std::string>& args) const {
  return Capture("redis-cli -p " + std::to_string(port_) + Quoted(args) + " 2>/dev/null");
}

int SentinelServer::MasterPort() const {
  std::string out = Cli({"SENTINEL", "get-master-addr-by-name", master_name_});
  auto nl = out.find('\n');
  if (nl == std::string::npos) return 0;
  return std::atoi(out.c_str() + nl + 1);
}

int SentinelServer::WaitForNewMaster(int old_port, int timeout_ms) {
  int now = 0;
  const bool found = WaitFor(
      [&] {
        now = MasterPort();
        if (now == 0 || now == old_port) return false;
        std::string role = Capture("redis-cli -p " + std::to_string(now) + " ROLE 2>/dev/null");
        return role.rfind("master", 0) == 0;
      },
      timeout_ms);
  return found ? now : 0;
}

int SentinelServer::Failover(int timeout_ms) {
  int old_port = MasterPort();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  // "NOGOODSLAVE" while the sentinel has not yet seen the replica in sync: ask again.
  if (!WaitFor(
          [&] {
            return Cli({"SENTINEL", "failover", master_name_}) == "OK";
          },
          timeout_ms,
          /*interval_ms=*/100)) {
    return 0;
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return WaitForNewMaster(old_port, static_cast<int>(std::max<int64_t>(left.count(), 1)));
}

std::string RedisServer::Cli(const std::vector<std::string>& args) const {
  std::string cmd = "redis-cli -p " + std::to_string(port_);
  if (!password_.empty()) cmd += " --no-auth-warning -a" + Quoted({password_});
  return Capture(cmd + Quoted(args) + " 2>/dev/null");
}

int RunShell(const std::string& command, std::string* output, bool with_stderr) {
  output->clear();
  FILE* pipe = popen((with_stderr ? command + " 2>&1" : command).c_str(), "r");
  if (pipe == nullptr) return -1;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) output->append(buf.data(), n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool ScimmyServer::Start() {
  const std::string dir = std::string(SCIMSYNC_SOURCE_DIR) + "/tests/scim/scimmy_server";
  if (access((dir + "/node_modules/scimmy").c_str(), F_OK) != 0) {
    error_ = "the scimmy test server's packages are missing in " + dir +
             "/node_modules: run scripts/install-deps";
    return false;
  }
  const std::string log = dir_.File("scimmy.log");
  if (!proc_.Start({"node", dir + "/server.js", "--port", "0", "--api-key", api_key_}, log)) {
    error_ = "cannot start node (is nodejs installed? scripts/install-deps installs it)";
    return false;
  }
  port_ = WaitForLoggedPort(proc_, log, "listening on http://127.0.0.1:");
  if (port_ <= 0) {
    error_ = "node " + dir + "/server.js did not start listening; its output:\n" + ReadFile(log);
    return false;
  }
  return true;
}

}  // namespace scimsync::testing
