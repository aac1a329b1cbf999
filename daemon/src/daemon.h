// The running daemon, `scimsyncd [--config FILE]`: builds every component from the loaded
// settings, starts them in dependency order, serves until SIGTERM or SIGINT (SIGHUP reloads the
// profiles and secrets), then stops them in reverse. The order and why it is that order are in
// daemon.cc (Daemon::Parts::AddComponents) and docs/architecture.md.
#pragma once

#include <memory>
#include <string>

#include "reload.h"

namespace scimsync::daemon {

class Daemon {
 public:
  // Blocks SIGTERM, SIGINT and SIGHUP (taken by Run) and builds the components; nothing runs
  // and nothing is contacted yet. `settings` have their secrets resolved.
  Daemon(std::string config_file, Settings settings, const std::string& redis_password);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Returns the exit code: kExitOk after a clean stop (in-flight syncs finished, or left pending
  // in Redis after workers.drain_timeout_s), kExitConfig when a component cannot start.
  int Run();

 private:
  struct Parts;
  std::unique_ptr<Parts> parts_;
};

}  // namespace scimsync::daemon
