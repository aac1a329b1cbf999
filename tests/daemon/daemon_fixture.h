// Runs the real scimsyncd binary against a real redis-server, for integration tests.
#pragma once

#include <httplib.h>

#include <memory>
#include <string>
#include <vector>

#include "scimsync/config.h"
#include "scimsync/queue/queue.h"
#include "test_support.h"

namespace scimsync::testing {

inline constexpr char kWebhookSecret[] = "whsec-test-6f1b2c9a";

// hex HMAC-SHA256(key, data)
std::string HmacSha256Hex(const std::string& key, const std::string& data);

// A generic-profile event body.
std::string GenericEvent(const std::string& event_id, const std::string& employee_id,
                         const std::string& type = "employee.updated");

class DaemonFixture {
 public:
  // extra_yaml is appended to the config (top-level keys not otherwise set by the fixture).
  explicit DaemonFixture(std::string extra_yaml = "");
  ~DaemonFixture();

  bool StartRedis() { return redis_.Start(); }
  // Writes the fixture's config (listen.port 0) and Launch()es the daemon with it.
  bool StartDaemon();
  // Starts scimsyncd with `argv` (a config with listen.port 0) and TEST_HR_SECRET set, and waits
  // until it says which port it listens on (port()). False when it exits first (Wait() on
  // daemon() has its status) or does not start within 15 s.
  bool Launch(const std::vector<std::string>& argv, std::vector<std::string> env = {});
  void StopDaemon();
  RedisServer& redis() { return redis_; }
  Process& daemon() { return daemon_; }
  // The daemon's port once Launch() succeeded; 0 before.
  int port() const { return port_; }
  std::string config_path() const { return dir_.File("scimsync.yaml"); }
  std::string log() const { return ReadFile(dir_.File("daemon.log")); }
  std::string Binary() const;
  TempDir& dir() { return dir_; }

  std::unique_ptr<httplib::Client> Client() const;
  // POSTs a signed generic webhook.
  httplib::Result PostSigned(httplib::Client& client, const std::string& body,
                             const std::string& path = "/webhooks/hr") const;

  // A queue on the same Redis, to look at what was stored.
  std::unique_ptr<queue::Queue> Queue() const;
  // Items in all partitions (stream lengths summed).
  int64_t TotalDepth() const;
  // Every stored item, read once through a fresh consumer group member.
  std::vector<queue::Item> ReadAll() const;

 private:
  TempDir dir_;
  RedisServer redis_;
  Process daemon_;
  int port_ = 0;
  std::string extra_yaml_;
  config::RedisOptions redis_options_;
};

}  // namespace scimsync::testing
