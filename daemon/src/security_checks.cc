#include "scimsync/daemon/security_checks.h"

#include "scimsync/log.h"

namespace scimsync::daemon {

std::vector<SecurityWarning> SecurityWarnings(const config::Config& config) {
  std::vector<SecurityWarning> out;
  const config::TargetOptions& target = config.target;
  if (target.insecure_skip_verify) {
    out.push_back({"target.insecure_skip_verify",
                   "TLS certificates and host names of the SCIM server are not verified: anyone "
                   "on the network path can read the JumpCloud API key and change users. Remove "
                   "the setting; for a private CA set target.ca_file instead"});
  }
  config::UrlParts url;
  if (config::ParseUrl(target.base_url, &url) && url.scheme == "http") {
    out.push_back({"target.base_url",
                   "the SCIM server is reached over plain http (allowed for loopback only): the "
                   "API key travels unencrypted to " +
                       url.host});
  }
  const bool tls = !config.listen.tls_cert_file.empty();
  if (!tls && !config::IsLoopbackHost(config.listen.address)) {
    out.push_back(
        {"listen.address", "webhooks are accepted over plain http on " + config.listen.address +
                               ": terminate TLS in a reverse proxy in front of it, or set "
                               "listen.tls_cert_file and listen.tls_key_file (docs/security.md)"});
  }
  if (!config.redis.url_password.empty()) {
    out.push_back({"redis.url",
                   "the Redis password is written in redis.url, so it is in the config file "
                   "for anyone who can read it: use redis.password_env or redis.password_file"});
  }
  for (const config::ProfileConfig& p : config.profiles) {
    if (p.secrets.size() > 1) {
      out.push_back({p.path + ".secrets",
                     "profile '" + p.name + "' accepts " + std::to_string(p.secrets.size()) +
                         " webhook secrets: fine during a rotation, but remove the old one once "
                         "the HRIS signs with the new one"});
    }
  }
  return out;
}

void LogSecurityWarnings(const config::Config& config) {
  for (const SecurityWarning& w : SecurityWarnings(config)) {
    log::Warn("security", {{"setting", w.setting}, {"detail", w.message}});
  }
}

}  // namespace scimsync::daemon
