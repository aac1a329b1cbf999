// What the daemon reads from its config file, at start and again on SIGHUP, and the reload
// handler. A reload swaps the profiles, their secrets and the target API key in place; the
// rest of the config (listener, Redis, workers) needs a restart. A reload that fails (the file
// has problems, a secret cannot be read) is refused as a whole: the running config stays.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "scimsync/config.h"
#include "scimsync/connectors/active_profile.h"
#include "scimsync/daemon/app.h"

namespace scimsync::daemon {

struct Settings {
  config::Config config;
  ProfileMap profiles;  // by name, one per config.profiles entry
  // Filled by ResolveSecrets:
  std::map<std::string, connectors::ActiveProfile> active;  // the profiles with their secrets
  std::string api_key;                                      // "dry-run" with target.dry_run
};

// Reads `file` and every profile it names. On problems prints them to stderr (as every command
// does) and returns false.
bool LoadSettings(const std::string& file, Settings* settings);
// Resolves every profile's secrets and the target API key into `settings`. The error names the
// profile or says "target API key", and why the secret could not be read.
Status ResolveSecrets(Settings* settings);

// SIGHUP. Runs on the thread that takes the signals.
class Reloader {
 public:
  // Swaps freshly loaded and resolved settings into the running daemon.
  using Apply = std::function<void(Settings& fresh)>;

  Reloader(std::string file, Apply apply) : file_(std::move(file)), apply_(std::move(apply)) {}

  // Tells systemd RELOADING=1, re-reads the file and resolves its secrets, then either applies
  // them (logging "reloaded profiles and secrets") or logs why the reload was refused and keeps
  // the running config; READY=1 in both cases. Returns whether the settings were applied.
  bool Reload();

 private:
  const std::string file_;
  const Apply apply_;
};

}  // namespace scimsync::daemon
