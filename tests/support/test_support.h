// Helpers shared by integration tests: a real redis-server in a temp dir, free ports, child
// processes (the real scimsyncd binary), temp directories.
#pragma once

#include <sys/types.h>

#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace scimsync::testing {

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago. Only for what cannot listen on port 0 and
// say which port it got (and for a port where nothing listens); a server that can is started on
// port 0 (StartScimsyncd, httplib's bind_to_any_port) so no other process can take its port
// between the pick and the bind.
int FreePort();

void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);

// Runs `command` with /bin/sh and waits for it. Returns its exit status (-1 when it did not exit
// normally) and puts its stdout, and its stderr too with `with_stderr`, in *output.
int RunShell(const std::string& command, std::string* output, bool with_stderr = true);

// A child process with stdout+stderr captured into a file.
class Process {
 public:
  Process() = default;
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // argv[0] is the program (searched in PATH). env entries are "NAME=value", added to ours.
  bool Start(const std::vector<std::string>& argv, const std::string& output_file,
             const std::vector<std::string>& env = {});
  void Signal(int sig);
  // Waits for exit; returns the exit status (or 128+signal), -1 on timeout.
  int Wait(int timeout_ms);
  void Kill();  // SIGKILL and reap
  // Whether it has exited (without reaping it: Wait still returns its status).
  bool Exited() const;
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// A private redis-server: TCP on a free loopback port and a unix socket, AOF on, data in a temp
// dir that survives Stop()/Start() so a restart finds what was written. redis-server cannot
// listen on port 0 and say which port it got, so the first Start() picks a free port and picks
// again when another process took it before the bind; later starts keep the port.
class RedisServer {
 public:
  RedisServer();
  // With `requirepass password`: clients must AUTH (Cli() does).
  explicit RedisServer(std::string password);
  ~RedisServer();
  bool Start();  // waits until it is ready and answers PING
  void Stop();   // SIGTERM, wait (AOF is fsynced "always" so nothing acknowledged is lost)
  void Kill();   // SIGKILL
  int port() const { return port_; }
  std::string socket_path() const { return dir_.File("redis.sock"); }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  std::string unix_url() const { return "unix://" + socket_path(); }
  const std::string& password() const { return password_; }
  // Runs redis-cli against this server and returns its stdout (trimmed).
  std::string Cli(const std::vector<std::string>& args) const;
  // Extra redis-server arguments for the next Start(), e.g. {"--replicaof", "127.0.0.1 6379"}.
  void set_extra_args(std::vector<std::string> args) { extra_args_ = std::move(args); }
  // Starts as a replica of `primary` (same password) and waits until its link is up.
  bool StartReplicaOf(const RedisServer& primary);
  // SIGSTOP / SIGCONT: a server that is alive but answers nothing (a stuck replica).
  void Pause();
  void Resume();
  bool running() const { return proc_.running(); }

 private:
  TempDir dir_;
  int port_;
  bool started_once_ = false;
  Process proc_;
  std::string password_;
  std::vector<std::string> extra_args_;

  bool StartOnce();
};

// The independent SCIM server (tests/scim/scimmy_server, on the npm package scimmy) on a port the
// kernel picks: node listens on port 0 and prints the port it got.
class ScimmyServer {
 public:
  explicit ScimmyServer(std::string api_key) : api_key_(std::move(api_key)) {}
  // Waits until it listens. False when its packages are missing or node did not start; error()
  // then says which, and what to do.
  bool Start();
  void Kill() { proc_.Kill(); }
  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/scim/v2"; }
  const std::string& error() const { return error_; }
  std::string Log() const { return ReadFile(dir_.File("scimmy.log")); }

 private:
  std::string api_key_;
  TempDir dir_;
  Process proc_;
  int port_ = 0;
  std::string error_;
};

// A private Redis Sentinel (`redis-sentinel`, or `redis-server --sentinel`, the same program)
// monitoring one primary on 127.0.0.1 with a quorum of 1, so this one sentinel alone decides a
// failover. Its config file lives in a temp dir (Sentinel rewrites it).
class SentinelServer {
 public:
  // `down_after_ms`: how long the primary may not answer before it is failed over.
  SentinelServer(std::string master_name, int master_port, int down_after_ms = 1000);
  ~SentinelServer();
  SentinelServer(const SentinelServer&) = delete;
  SentinelServer& operator=(const SentinelServer&) = delete;

  // Empty when a sentinel can be run here; otherwise why not (for GTEST_SKIP).
  static std::string Unavailable();
  // Waits until it answers and names the primary, and knows `replicas` replicas of it.
  bool Start(int replicas = 0);
  void Kill();
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The port of the primary it names now; 0 when it names none.
  int MasterPort() const;
  // SENTINEL FAILOVER, then waits until it names another primary and that one says it is a
  // master. Returns the new primary's port (0 on timeout).
  int Failover(int timeout_ms = 20000);
  // Waits until it names a primary other than `old_port` that is a master; its port, 0 on timeout.
  int WaitForNewMaster(int old_port, int timeout_ms);
  std::string Cli(const std::vector<std::string>& args) const;
  std::string Log() const { return ReadFile(dir_.File("sentinel.log")); }

 private:
  TempDir dir_;
  std::string master_name_;
  int master_port_;
  int down_after_ms_;
  int port_;
  Process proc_;
};

// The event types of one employee's synthetic history for the generic profile, oldest first: a
// hire, then updates, with terminations (15% of events while active) and rehires (40% while
// terminated). Shared by the end-to-end tests and the benchmarks so both load the same shape.
std::vector<std::string> LifecycleEventTypes(int events, std::mt19937_64& rng);
// Whether the employee is active after that history (the newest hire/rehire/termination).
bool EndsActive(const std::vector<std::string>& types);

// Asks `done` every `interval_ms` until it says true or `timeout_ms` have passed, and returns its
// last answer (it is asked once more at the deadline). The one polling loop of the tests that
// wait on something outside their control: another process (a daemon's log line, Redis state, a
// server coming up) or another thread. Unit tests inject a clock instead of waiting.
bool WaitFor(const std::function<bool()>& done, int timeout_ms, int interval_ms = 50);

// Blocks until a TCP connect to 127.0.0.1:port succeeds or timeout_ms passes.
bool WaitForPort(int port, int timeout_ms);

// Waits until `log_file` holds `marker` followed by a port number: how a child that listens on
// port 0 says which port the kernel gave it. The port; 0 when `process` exited first or
// timeout_ms passed.
int WaitForLoggedPort(const Process& process, const std::string& log_file,
                      const std::string& marker, int timeout_ms = 20000);

// Starts scimsyncd (`argv`, output appended to `log_file`) whose config says `listen.port: 0`, and
// waits until it logs "scimsyncd started" with the port the kernel gave it. Returns that port; 0
// when the process could not start, exited first (its status stays for Wait), or did not say
// within timeout_ms. A restart appends to the same log: only what comes after the start counts.
int StartScimsyncd(Process& process, const std::vector<std::string>& argv,
                   const std::string& log_file, const std::vector<std::string>& env = {},
                   int timeout_ms = 20000);

}  // namespace scimsync::testing
