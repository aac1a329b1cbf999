// scimsyncd's command line: run the daemon, check a config, and the admin subcommands.
#pragma once

#include <iosfwd>
#include <map>
#include <memory>
#include <string>

#include "scimsync/config.h"
#include "scimsync/connectors/profile.h"

namespace scimsync::daemon {

// Exit codes follow sysexits.h so scripts and systemd can tell a config mistake from a crash.
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;        // EX_USAGE: bad command line
inline constexpr int kExitDataErr = 65;      // EX_DATAERR: input failed mapping or verification
inline constexpr int kExitUnavailable = 69;  // EX_UNAVAILABLE: a needed service is down
inline constexpr int kExitSoftware = 70;     // EX_SOFTWARE: internal error
inline constexpr int kExitConfig = 78;       // EX_CONFIG: the configuration is wrong

int Main(int argc, char** argv);

using ProfileMap = std::map<std::string, std::shared_ptr<const connectors::Profile>>;
// Loads `file` and every profile it names (and, with `check_secrets`, resolves every secret).
// On problems prints them all to `err` under "FILE: N problems:" and returns false: every
// command that reads the config reports a broken one the same way.
bool LoadConfigAndProfiles(const std::string& file, config::Config* cfg, ProfileMap* profiles,
                           bool check_secrets, std::ostream& err);

}  // namespace scimsync::daemon
