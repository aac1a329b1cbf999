#include "reload.h"

#include <iostream>
#include <utility>

#include "scimsync/daemon/notify.h"
#include "scimsync/daemon/security_checks.h"
#include "scimsync/log.h"

namespace scimsync::daemon {

bool LoadSettings(const std::string& file, Settings* settings) {
  return LoadConfigAndProfiles(file, &settings->config, &settings->profiles,
                               /*check_secrets=*/false, std::cerr);
}

Status ResolveSecrets(Settings* settings) {
  const config::Config& cfg = settings->config;
  std::map<std::string, connectors::ActiveProfile> active;
  for (const auto& entry : cfg.profiles) {
    connectors::ActiveProfile a;
    a.profile = settings->profiles.at(entry.name);
    a.follow_user_name = entry.follow_user_name;
    a.multi_scope = cfg.multi_scope;
    a.scope_prefix = entry.scope_prefix;
    for (const auto& ref : entry.secrets) {
      auto secret = config::ResolveSecret(ref);
      if (!secret.ok()) {
        return Error::Invalid("profile '" + entry.name + "': " + secret.error().message);
      }
      a.secrets.push_back(std::move(secret.value()));
    }
    active[entry.name] = std::move(a);
  }
  std::string api_key = "dry-run";
  if (!cfg.target.dry_run) {
    auto key = config::ResolveSecret(cfg.target.api_key);
    if (!key) return Error::Invalid("target API key: " + key.error().message);
    api_key = std::move(key.value());
  }
  settings->active = std::move(active);
  settings->api_key = std::move(api_key);
  return {};
}

bool Reloader::Reload() {
  notify::Reloading();
  Settings fresh;
  if (!LoadSettings(file_, &fresh)) {
    log::Error("reload failed: the config has problems; keeping the running config");
    notify::Ready();
    return false;
  }
  Status resolved = ResolveSecrets(&fresh);
  if (!resolved.ok()) {
    log::Error("reload failed; keeping the running config", {{"detail", resolved.error().message}});
    notify::Ready();
    return false;
  }
  LogSecurityWarnings(fresh.config);
  const size_t profiles = fresh.config.profiles.size();
  apply_(fresh);
  log::Info("reloaded profiles and secrets", {{"profiles", profiles}});
  notify::Ready();
  return true;
}

}  // namespace scimsync::daemon
