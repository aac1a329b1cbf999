// End-to-end harness for the workers: a real redis-server (AOF on), the in-process fake SCIM
// server (JumpCloud's double, with fault injection), and one or more real scimsyncd processes.
#pragma once

#include <httplib.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fake_scim_server.h"
#include "test_support.h"

namespace scimsync::testing {

struct E2EDaemonOptions {
  int workers = 4;
  double rate = 0;                   // target.max_requests_per_second; 0 = off
  std::string api_key = "test-key";  // written to a file the config names (api_key_file)
  std::string base_url;              // default: the fake SCIM server
  int guard_max_suspends = 100000;
  std::string extra_profile_keys;  // appended inside the profile entry
  std::string extra_redis_keys;    // appended inside the redis map: ", wait_replicas: 1"
  std::vector<std::string> env;    // extra "NAME=value" for the process
  // The profile entry's connector: a built-in name or a profile file's path.
  std::string connector = "generic";
  std::string extra_worker_keys;  // lines appended inside workers: "  lease_ms: 2000\n"
  std::string extra_target_keys;  // lines appended inside target: "  snapshot_max_age_s: 0\n"
  int64_t target_timeout_ms = 2000;
  // Further entries after the "hr" profile ("  - {name: hr2, connector: generic, secret_env:
  // TEST_HR_SECRET}\n"); they may sign with the same secret.
  std::string extra_profiles;
};

// One employee's expected final state, from the newest event sent for them.
struct ExpectedUser {
  std::string title;
  bool active = true;
};

// Generates `events_per_employee` generic-profile events for each of `employees` employees:
// a hire, then updates, terminations and rehires. Returns bodies per employee in send order.
struct Workload {
  std::vector<std::vector<std::string>> bodies;  // [employee][event]
  std::map<std::string, ExpectedUser> expected;  // by employee id
  int total = 0;
};
Workload MakeWorkload(int employees, int events_per_employee, uint64_t seed);
// The plain hire / update / terminate / rehire of one employee, newest last.
std::string GenericBody(const std::string& event_id, const std::string& type,
                        const std::string& employee, const std::string& title, int64_t when_s);

class E2E {
 public:
  E2E();
  ~E2E();

  bool StartRedis() { return redis_.Start(); }
  bool StartScim(FakeScimOptions options = {});
  // Starts daemon `index` (0, 1, ...) with its own port and log.
  bool StartDaemon(int index, const E2EDaemonOptions& options = {});
  void KillDaemon(int index);  // SIGKILL
  int StopDaemon(int index);   // SIGTERM; exit status
  void SetDaemonApiKey(int index, const std::string& key);
  void ReloadDaemon(int index);  // SIGHUP
  // Any signal to daemon `index` (the model-based test: SIGSTOP / SIGCONT past the lease).
  void SendSignalToDaemon(int index, int sig);
  // SIGSTOP / SIGCONT: a frozen instance (a GC-like pause, a hung host) that comes back.
  void FreezeDaemon(int index);
  void ThawDaemon(int index);

  // POSTs a signed webhook, retrying (like an HRIS) on 503 and connection errors for up to
  // `timeout_ms`. Returns the final status (202 when accepted).
  int PostUntilAccepted(int index, const std::string& body, int timeout_ms = 60000,
                        const std::string& path = "/webhooks/hr");
  // POSTs a signed webhook once. Returns the status, 0 when there was no answer.
  int PostOnce(int index, const std::string& body, const std::string& path = "/webhooks/hr");
  // Command, with the exit status and stdout followed by stderr in one string.
  std::pair<int, std::string> RunCommand(int index, const std::vector<std::string>& args);
  // Sends every employee's events in order, from `threads` concurrent senders, spread over the
  // running daemons. Returns how many were acknowledged 202.
  int SendWorkload(const Workload& w, int threads = 8);

  // Waits until every partition's stream and retry set are empty.
  bool WaitIdle(int timeout_ms);
  int64_t Pending() const;

  // Checks the SCIM store against the expected states: exactly one user per employee with the
  // expected title and active flag (or none for an employee expected inactive: no account is
  // created for a leaver), and no other users. Returns the problems, empty when all match.
  std::vector<std::string> CheckUsers(const std::map<std::string, ExpectedUser>& expected) const;
  // Pairs of overlapping requests about one employee (two workers at once); empty when none.
  std::vector<std::string> ConcurrentWork() const;
  // The highest number of /Users requests that arrived within any one second.
  int MaxRequestsPerSecond() const;

  RedisServer& redis() { return redis_; }
  FakeScimServer& scim() { return *scim_; }
  std::string Log(int index) const;
  int port(int index) const { return daemons_.at(index)->port; }
  std::string config_path(int index) const;
  // Runs `scimsyncd ARGS --config <daemon index's config>` with the daemon's environment and
  // waits for it; returns its stdout (stderr in *err when given) and the exit status in *status.
  std::string Command(int index, std::vector<std::string> args, int* status = nullptr,
                      std::string* err = nullptr, int timeout_ms = 60000);
  std::string Scimsyncd() const;
  TempDir& dir() { return dir_; }

 private:
  struct Daemon {
    int port = 0;
    Process process;
    E2EDaemonOptions options;
  };
  TempDir dir_;
  RedisServer redis_;
  std::unique_ptr<FakeScimServer> scim_;
  std::map<int, std::unique_ptr<Daemon>> daemons_;
};

}  // namespace scimsync::testing
