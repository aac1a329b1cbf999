#include "scimsync/daemon/app.h"

#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "scimsync/config.h"
#include "scimsync/connectors/profile.h"
#include "scimsync/daemon/http_server.h"
#include "scimsync/daemon/ingest.h"
#include "scimsync/log.h"
#include "scimsync/queue/queue.h"

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

void PrintProblems(const std::string& file, const std::vector<config::Problem>& problems) {
  std::cerr << file << ": " << problems.size()
            << (problems.size() == 1 ? " problem" : " problems") << ":\n";
  for (const auto& p : problems) {
    std::cerr << "  " << (p.file.empty() || p.file == file ? "" : p.file + ": ") << p.ToString()
              << "\n";
  }
}

// Loads config and profiles; on problems prints them and returns false.
bool LoadAll(const std::string& file, config::Config* cfg,
             std::map<std::string, std::shared_ptr<const connectors::Profile>>* profiles,
             bool check_secrets) {
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
    PrintProblems(file, problems);
    return false;
  }
  return true;
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

// Resolves every profile's secrets. Errors name the profile and the secret's source.
Result<std::map<std::string, ActiveProfile>> Activate(
    const config::Config& cfg,
    const std::map<std::string, std::shared_ptr<const connectors::Profile>>& profiles) {
  std::map<std::string, ActiveProfile> out;
  for (const auto& entry : cfg.profiles) {
    ActiveProfile active;
    active.profile = profiles.at(entry.name);
    for (const auto& ref : entry.secrets) {
      auto secret = config::ResolveSecret(ref);
      if (!secret.ok()) {
        return Error::Invalid("profile '" + entry.name + "': " + secret.error().message);
      }
      active.secrets.push_back(std::move(secret.value()));
    }
    out[entry.name] = std::move(active);
  }
  return out;
}

int RunDaemon(const std::string& file) {
  config::Config cfg;
  std::map<std::string, std::shared_ptr<const connectors::Profile>> profiles;
  if (!LoadAll(file, &cfg, &profiles, /*check_secrets=*/false)) return kExitConfig;
  ApplyLogLevel(cfg);

  auto active = Activate(cfg, profiles);
  if (!active.ok()) {
    log::Error("cannot start", {{"detail", active.error().message}});
    return kExitConfig;
  }
  std::string redis_password;
  if (!cfg.redis.password.empty()) {
    auto pw = config::ResolveSecret(cfg.redis.password);
    if (pw.ok()) {
      redis_password = pw.value();
    } else if (!cfg.redis.password.file.empty()) {
      log::Error("cannot start", {{"detail", "redis password: " + pw.error().message}});
      return kExitConfig;
    }
  }

  // Block the signals we handle in every thread; one thread takes them with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ProfileSet profile_set;
  profile_set.Replace(std::move(active.value()));
  // Thread-safe: it keeps a pool of connections, one per concurrent call.
  std::unique_ptr<queue::Queue> queue = queue::NewRedisQueue(cfg.redis, redis_password);
  auto enqueue = [&queue](const std::vector<queue::Item>& items, int64_t window) {
    return queue->EnqueueBatch(items, window);
  };
  Ingest ingest(&profile_set, enqueue, &SystemClock::Instance());

  HttpHandlers handlers;
  handlers.ingest = &ingest;
  handlers.not_ready_reason = [&queue]() -> std::string {
    Status ping = queue->Ping();
    return ping.ok() ? std::string() : "redis: " + ping.error().message;
  };
  HttpServer server(cfg.listen, handlers);
  Status bound = server.Bind();
  if (!bound.ok()) {
    log::Error("cannot start", {{"detail", bound.error().message}});
    return kExitConfig;
  }

  Status redis_up = queue->Ping();
  if (!redis_up.ok()) {
    // Start anyway: webhooks are answered 503 (the HRIS retries) until Redis answers.
    log::Error("redis is not reachable; webhooks are answered 503 until it is",
               {{"detail", redis_up.error().message}});
  }
  log::Info("scimsyncd started", {{"version", SCIMSYNC_VERSION},
                                  {"address", cfg.listen.address},
                                  {"port", cfg.listen.port},
                                  {"profiles", cfg.profiles.size()},
                                  {"dry_run", cfg.target.dry_run}});

  std::thread signal_thread([&] {
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGHUP) {
        config::Config fresh;
        std::map<std::string, std::shared_ptr<const connectors::Profile>> fresh_profiles;
        if (!LoadAll(file, &fresh, &fresh_profiles, false)) {
          log::Error("reload failed: the config has problems; keeping the running config");
          continue;
        }
        auto next = Activate(fresh, fresh_profiles);
        if (!next.ok()) {
          log::Error("reload failed; keeping the running config",
                     {{"detail", next.error().message}});
          continue;
        }
        profile_set.Replace(std::move(next.value()));
        log::Info("reloaded profiles and secrets", {{"profiles", fresh.profiles.size()}});
        continue;
      }
      log::Info("stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
      ingest.SetDraining(true);
      server.Stop();
      return;
    }
  });
  server.Serve();
  signal_thread.join();
  log::Info("scimsyncd stopped");
  return kExitOk;
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

  std::string file = kDefaultConfig;
  std::vector<std::string> rest;
  std::string error;
  if (!TakeConfigFlag(args, &file, &rest, &error)) {
    std::cerr << "scimsyncd: " << error << "\n" << kUsage;
    return kExitUsage;
  }
  if (!rest.empty()) {
    std::cerr << "scimsyncd: unexpected argument '" << rest[0] << "'\n" << kUsage;
    return kExitUsage;
  }
  if (command == "run") return RunDaemon(file);
  if (command == "check-config") return CheckConfig(file);
  std::cerr << "scimsyncd: unknown command '" << command << "'\n" << kUsage;
  return kExitUsage;
}

}  // namespace scimsync::daemon
