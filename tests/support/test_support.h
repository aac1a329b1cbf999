// Helpers shared by integration tests: a real redis-server in a temp dir, free ports, child
// processes (the real scimsyncd binary), temp directories.
#pragma once

#include <sys/types.h>

#include <string>
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

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);

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
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// A private redis-server: TCP on a free loopback port and a unix socket, AOF on, data in a temp
// dir that survives Stop()/Start() so a restart finds what was written.
class RedisServer {
 public:
  RedisServer();
  // With `requirepass password`: clients must AUTH (Cli() does).
  explicit RedisServer(std::string password);
  ~RedisServer();
  bool Start();  // waits until it answers PING
  void Stop();   // SIGTERM, wait (AOF is fsynced "always" so nothing acknowledged is lost)
  void Kill();   // SIGKILL
  int port() const { return port_; }
  std::string socket_path() const { return dir_.File("redis.sock"); }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  std::string unix_url() const { return "unix://" + socket_path(); }
  const std::string& password() const { return password_; }
  // Runs redis-cli against this server and returns its stdout (trimmed).
  std::string Cli(const std::vector<std::string>& args) const;

 private:
  TempDir dir_;
  int port_;
  Process proc_;
  std::string password_;
};

// Blocks until a TCP connect to 127.0.0.1:port succeeds or timeout_ms passes.
bool WaitForPort(int port, int timeout_ms);

}  // namespace scimsync::testing
