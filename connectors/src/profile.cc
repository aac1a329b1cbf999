#include "scimsync/connectors/profile.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "builtin.h"
#include "loader.h"
#include "profile_impl.h"

namespace scimsync::connectors {

namespace internal {
namespace {

bool IsPath(const std::string& connector) {
  auto ends_with = [&](const char* suffix) {
    std::string s(suffix);
    return connector.size() >= s.size() &&
           connector.compare(connector.size() - s.size(), s.size(), s) == 0;
  };
  return connector.find('/') != std::string::npos || ends_with(".yaml") || ends_with(".yml");
}

std::string BuiltinNames() {
  std::string out;
  for (const auto& b : BuiltinProfiles()) out += (out.empty() ? "" : ", ") + std::string(b.name);
  return out;
}

}  // namespace

Status SpecProfile::Verify(const Request& request, const std::vector<std::string>& secrets,
                           int64_t now_s) const {
  return VerifyAuth(spec_->auth, spec_->decode, request, secrets, now_s);
}

Result<Decoded> SpecProfile::Decode(const Request& request) const {
  auto decoded = DecodeRequest(*spec_, ingest_, request);
  if (!decoded.ok() || !ingest_.tenant_from_body) return decoded;
  // A tenant named in the body (items.tenant) must be one this entry configures, as a URL
  // segment must: its credentials are what the worker would use.
  for (const DecodedItem& item : decoded->items) {
    if (item.tenant.empty() || settings_.tenants.count(item.tenant) != 0) continue;
    Error e = Error::Invalid("the body names tenant '" + item.tenant + "' (" +
                             DescribeSource(spec_->items.tenant) +
                             "), which this profile's config entry does not configure: add it "
                             "under tenants with its api credentials");
    e.http_status = 404;
    return e;
  }
  return decoded;
}

std::shared_ptr<const ProfileSpec> LoadSpec(const std::string& connector,
                                            const std::string& config_file,
                                            config::Problems* problems) {
  std::string text;
  std::string file;
  if (!IsPath(connector)) {
    for (const auto& b : BuiltinProfiles()) {
      if (b.name == connector) {
        text = std::string(b.text);
        file = "connectors/profiles/" + connector + ".yaml";
      }
    }
    if (file.empty()) {
      problems->Add("connector", 0,
                    "'" + connector + "' is not a built-in profile (" + BuiltinNames() +
                        ") nor a path to a profile file (a path contains '/' or ends in .yaml)");
      return nullptr;
    }
  } else {
    file = connector;
    if (file[0] != '/') {
      // Relative to the config file, so a config and its profiles can move together.
      auto slash = config_file.rfind('/');
      if (slash != std::string::npos) file = config_file.substr(0, slash + 1) + file;
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      problems->Add("connector", 0, "cannot read profile file " + file);
      return nullptr;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  auto spec = std::make_shared<ProfileSpec>();
  config::Problems own(file);
  if (!ParseProfile(text, file, &own, spec.get())) {
    for (const config::Problem& p : own.list()) {
      problems->Add(file + ": " + (p.path.empty() ? std::string("(top level)") : p.path), p.line,
                    p.message);
    }
    return nullptr;
  }
  return spec;
}

}  // namespace internal

Status CheckTenant(const Profile& profile, const std::string& tenant) {
  const std::vector<std::string> tenants = profile.list_tenants();
  if (std::find(tenants.begin(), tenants.end(), tenant) != tenants.end()) return {};
  // The segment is caller-controlled: it is not repeated back.
  if (tenants.size() == 1 && tenants[0].empty()) {
    return Error::NotFound("profile '" + profile.name() +
                           "' configures no tenants and takes no tenant segment: post to "
                           "/webhooks/" +
                           profile.name() + ", or add the tenant under its `tenants`");
  }
  std::string list;
  for (const std::string& t : tenants) list += (list.empty() ? "" : ", ") + t;
  return Error::NotFound(std::string(tenant.empty() ? "a tenant segment is required: "
                                                    : "this tenant is not configured: ") +
                         "profile '" + profile.name() + "' serves the tenants " + list +
                         " (post to /webhooks/" + profile.name() +
                         "/{tenant}); add a new one under its `tenants`");
}

std::shared_ptr<const Profile> LoadProfile(const config::ProfileConfig& entry,
                                           config::Problems* problems) {
  size_t before = problems->list().size();
  config::Problems spec_problems(problems->file());
  auto spec = internal::LoadSpec(entry.connector, problems->file(), &spec_problems);
  for (const config::Problem& p : spec_problems.list()) {
    // Problems inside a profile file already name it; the rest belong to this entry's key.
    std::string path = p.path == "connector" ? entry.path + ".connector" : p.path;
    int line = p.path == "connector" ? config::LineOf(entry.node["connector"]) : p.line;
    problems->Add(path, line, p.message);
  }
  internal::IngestOptions ingest;
  internal::EntrySettings settings;
  config::MapReader r(entry.node, entry.path, problems);
  for (const std::string& k : config::CommonProfileKeys()) r.Ignore(k);
  r.String("verification_token_file", &ingest.verification_token_file);
  if (spec) {
    if (spec->decode.token_pointer.empty() && r.Has("verification_token_file")) {
      r.Error("verification_token_file",
              "profile '" + entry.connector + "' has no verification-token handshake");
    }
    if (spec->auth.type != internal::AuthType::kNone && entry.secrets.empty()) {
      r.Error("connector", "profile '" + entry.connector + "' authenticates webhooks (" +
                               internal::DescribeAuth(spec->auth) +
                               "): set secret_env, secret_file or secrets");
    }
    internal::ReadApiSettings(r.Child("api"), r.PathOf("api"), *spec, problems, &settings.api);
    internal::ReadFieldOverrides(r.Child("fields"), r.PathOf("fields"), problems, &settings.fields);
    YAML::Node tenants = r.Child("tenants");
    if (!tenants.IsDefined() || tenants.IsNull()) {
    } else if (tenants.IsMap()) {
      for (const auto& kv : tenants) {
        const std::string t = kv.first.Scalar();
        const std::string tpath = r.PathOf("tenants") + "." + t;
        internal::TenantSettings ts;
        config::MapReader tr(kv.second, tpath, problems);
        internal::ReadApiSettings(tr.Child("api"), tr.PathOf("api"), *spec, problems, &ts.api);
        internal::ReadFieldOverrides(tr.Child("fields"), tr.PathOf("fields"), problems, &ts.fields);
        settings.tenants[t] = std::move(ts);
      }
    } else {
      r.Error("tenants",
              "must be a map from tenant (the /webhooks/{profile}/{tenant} segment) "
              "to {api: ..., fields: ...}");
    }
    // A scheduled reconciliation must be able to build its list URL; say so at load
    // (check-config) rather than in a failed run a day later. Tenants supply {tenant} themselves.
    if (entry.reconcile_every_s > 0 && spec->list.enabled && settings.tenants.empty() &&
        !settings.api.base_url) {
      const std::string& base =
          spec->list.base_url.empty() ? spec->fetch.base_url : spec->list.base_url;
      if (base.empty()) {
        r.Error("reconcile_every_s", "a reconciliation lists the HRIS, and profile '" +
                                         entry.connector +
                                         "' has no list base URL: set api.base_url in this entry");
      } else if (!settings.api.tenant && (base.find("{tenant}") != std::string::npos ||
                                          spec->list.path.find("{tenant}") != std::string::npos)) {
        r.Error("reconcile_every_s",
                "a reconciliation lists the HRIS, and the list URL of profile '" + entry.connector +
                    "' needs {tenant}: set api.tenant (or api.base_url) in this entry");
      }
    }
  } else {
    // The profile did not load: its own keys cannot be checked against it.
    for (const char* k : {"api", "fields", "tenants"}) r.Ignore(k);
  }
  r.Finish();
  if (!spec || problems->list().size() != before) return nullptr;
  ingest.tenant_from_body = spec->items.tenant.configured && !settings.tenants.empty();
  // The profile's own window stands unless the admin chose one for this entry.
  int64_t window = entry.dedup_window_s;
  if (spec->items.dedup_window_s > 0 && !entry.node["dedup_window_s"].IsDefined()) {
    window = spec->items.dedup_window_s;
  }
  return std::make_shared<internal::SpecProfile>(entry.name, window, spec, std::move(ingest),
                                                 std::move(settings));
}

}  // namespace scimsync::connectors
