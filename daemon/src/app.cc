#include "scimsync/daemon/app.h"

#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "daemon.h"
#include "reload.h"
#include "scimsync/config.h"
#include "scimsync/connectors/map_command.h"
#include "scimsync/connectors/profile.h"
#include "scimsync/daemon/admin.h"
#include "scimsync/daemon/employee.h"
#include "scimsync/daemon/reconcile.h"
#include "scimsync/daemon/security_checks.h"
#include "scimsync/log.h"

#ifndef SCIMSYNC_VERSION
#define SCIMSYNC_VERSION "0.0.0"
#endif

namespace scimsync::daemon {

namespace {

constexpr char kDefaultConfig[] = "/etc/scimsync/scimsync.yaml";

constexpr char kUsage[] = R"(Usage:
  scimsyncd [--config FILE]              run the daemon (default config: /etc/scimsync/scimsync.yaml)
  scimsyncd check-config [--config FILE] validate the config, its profiles and secrets; exit 0 or 78
  scimsyncd map --config FILE --profile NAME PAYLOAD [--header 'Name: value' ...]
                [--record RECORD.json] [--verify] [--now UNIX_SECONDS]
                                         show how a webhook maps, without Redis or network
  scimsyncd status [--json] [--config FILE] queue depth and age, retries, dead letters, leases,
                                         pause and guard state
  scimsyncd dlq list | show ID | replay ID | replay --all | drop ID [--config FILE]
                                         inspect and manage dead letters
  scimsyncd guard release [--config FILE] let suspensions held by the mass-suspension guard go on,
                                         and apply held reconciliation plans
  scimsyncd employee --config FILE --profile NAME [--tenant T] [--last N] [--json] EMPLOYEE_ID
                                         one person: link, what is waiting, dead letters and
                                         the last outcomes
  scimsyncd sync --config FILE --profile NAME [--tenant T] [--dry-run] [--timeout S] EMPLOYEE_ID
                                         provision one person now through the workers and show
                                         each step; --dry-run plans without writing
  scimsyncd reconcile --config FILE --profile NAME [--dry-run] [--json] [--confirm] [--allow-shrink]
                                         find drift between the HRIS and JumpCloud; without
                                         --dry-run, queue a sync for each drifted employee
  scimsyncd migrate-scope --profile NAME [--tenant T] [--include-unlinked] [--apply]
                [--config FILE]         namespace the bare externalIds a profile created while it
                                         was the only scope (before adding a second HR source)
  scimsyncd --version
  scimsyncd --help

Environment:
  SCIMSYNC_LOG_LEVEL   debug|info|warn|error; overrides log.level
  CREDENTIALS_DIRECTORY where relative *_file secrets are read (systemd LoadCredential=)
)";

// Parses "--config FILE" / "--config=FILE" out of args; the rest is left in *rest.
bool TakeConfigFlag(const std::vector<std::string>& args, std::string* config,
                    std::vector<std::string>* rest, std::string* error) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--config" || a == "-c") {
      if (i + 1 >= args.size()) {
        *error = a + " needs a file path";
        return false;
      }
      *config = args[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      *config = a.substr(9);
    } else {
      rest->push_back(a);
    }
  }
  return true;
}

void PrintProblems(const std::string& file, const std::vector<config::Problem>& problems,
                   std::ostream& err = std::cerr) {
  err << file << ": " << problems.size() << (problems.size() == 1 ? " problem" : " problems")
      << ":\n";
  for (const auto& p : problems) {
    err << "  " << (p.file.empty() || p.file == file ? "" : p.file + ": ") << p.ToString() << "\n";
  }
}

bool LoadAll(const std::string& file, config::Config* cfg, ProfileMap* profiles,
             bool check_secrets) {
  return LoadConfigAndProfiles(file, cfg, profiles, check_secrets, std::cerr);
}

void ApplyLogLevel(const config::Config& cfg) {
  log::Level level = log::Level::kInfo;
  log::ParseLevel(cfg.log.level, &level);
  const char* env = std::getenv("SCIMSYNC_LOG_LEVEL");  // NOLINT(concurrency-mt-unsafe)
  if (env != nullptr && *env != '\0' && !log::ParseLevel(env, &level)) {
    log::Warn("SCIMSYNC_LOG_LEVEL is not one of debug, info, warn, error; ignoring it",
              {{"value", env}});
  }
  log::SetLevel(level);
}

// The daemon: what it needs that can be wrong (the config, its secrets) is checked before
// anything is built, and says what to fix (exit 78); then Daemon runs it (daemon.h).
int RunDaemon(const std::string& file) {
  Settings settings;
  if (!LoadSettings(file, &settings)) return kExitConfig;
  ApplyLogLevel(settings.config);
  Status secrets = ResolveSecrets(&settings);
  if (!secrets.ok()) {
    log::Error("cannot start", {{"detail", secrets.error().message}});
    return kExitConfig;
  }
  auto redis_password = RedisPassword(settings.config);
  if (!redis_password.ok()) {
    log::Error("cannot start", {{"detail", "redis password: " + redis_password.error().message}});
    return kExitConfig;
  }
  LogSecurityWarnings(settings.config);
  Daemon daemon(file, std::move(settings), std::move(redis_password.value()));
  return daemon.Run();
}

int CheckConfig(const std::string& file) {
  config::Config cfg;
  std::map<std::string, std::shared_ptr<const connectors::Profile>> profiles;
  if (!LoadAll(file, &cfg, &profiles, /*check_secrets=*/true)) return kExitConfig;
  std::cout << file << ": ok (" << cfg.profiles.size()
            << (cfg.profiles.size() == 1 ? " profile" : " profiles") << ")\n";
  return kExitOk;
}

}  // namespace

bool LoadConfigAndProfiles(const std::string& file, config::Config* cfg, ProfileMap* profiles,
                           bool check_secrets, std::ostream& err) {
  std::vector<config::Problem> problems = config::LoadFile(file, cfg);
  if (problems.empty()) {
    config::Problems profile_problems(file);
    for (const auto& entry : cfg->profiles) {
      auto profile = connectors::LoadProfile(entry, &profile_problems);
      if (profile) (*profiles)[entry.name] = std::move(profile);
    }
    problems = profile_problems.list();
  }
  if (problems.empty() && check_secrets) problems = config::CheckSecrets(*cfg);
  if (!problems.empty()) {
    PrintProblems(file, problems, err);
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h" || args[0] == "help")) {
    std::cout << kUsage;
    return kExitOk;
  }
  if (!args.empty() && (args[0] == "--version" || args[0] == "-V")) {
    std::cout << "scimsyncd " << SCIMSYNC_VERSION << "\n";
    return kExitOk;
  }
  std::string command = "run";
  if (!args.empty() && args[0].rfind('-', 0) != 0) {
    command = args[0];
    args.erase(args.begin());
  }
  if (command == "map") return connectors::RunMapCommand(args, std::cout, std::cerr);
  if (command == "reconcile") return RunReconcileCommand(args, std::cout, std::cerr);
  if (command == "sync") return RunSyncCommand(args, std::cout, std::cerr);

  std::string file = kDefaultConfig;
  std::vector<std::string> rest;
  std::string error;
  if (!TakeConfigFlag(args, &file, &rest, &error)) {
    std::cerr << "scimsyncd: " << error << "\n" << kUsage;
    return kExitUsage;
  }
  const bool takes_args = command == "status" || command == "dlq" || command == "guard" ||
                          command == "employee" || command == "migrate-scope";
  if (!rest.empty() && !takes_args) {
    std::cerr << "scimsyncd: unexpected argument '" << rest[0] << "'\n" << kUsage;
    return kExitUsage;
  }
  if (command == "run") return RunDaemon(file);
  if (command == "check-config") return CheckConfig(file);
  if (takes_args) {
    config::Config cfg;
    std::vector<config::Problem> problems = config::LoadFile(file, &cfg);
    if (!problems.empty()) {
      PrintProblems(file, problems);
      return kExitConfig;
    }
    if (command == "status") return RunStatusCommand(cfg, rest, std::cout, std::cerr);
    if (command == "dlq") return RunDlqCommand(cfg, rest, std::cout, std::cerr);
    if (command == "employee") return RunEmployeeCommand(cfg, file, rest, std::cout, std::cerr);
    if (command == "migrate-scope") return RunMigrateScopeCommand(cfg, rest, std::cout, std::cerr);
    return RunGuardCommand(cfg, rest, std::cout, std::cerr);
  }
  std::cerr << "scimsyncd: unknown command '" << command << "'\n" << kUsage;
  return kExitUsage;
}

}  // namespace scimsync::daemon
