// Warnings about settings that weaken the daemon's security, logged at every start (and reload)
// so that a setting meant for a test bench never goes unnoticed in production.
#pragma once

#include <string>
#include <vector>

#include "scimsync/config.h"

namespace scimsync::daemon {

struct SecurityWarning {
  std::string setting;  // "target.insecure_skip_verify"
  std::string message;  // what the setting exposes, and what to do instead
};

// Every warning `config` deserves, in a stable order; empty for a hardened config.
std::vector<SecurityWarning> SecurityWarnings(const config::Config& config);

// Logs each of SecurityWarnings() at warn level, one line each with a "setting" field.
void LogSecurityWarnings(const config::Config& config);

}  // namespace scimsync::daemon
