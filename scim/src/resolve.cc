#include "scimsync/scim/resolve.h"

#include <utility>

#include "json_util.h"

namespace scimsync::scim {
namespace {

std::string JoinIds(const std::vector<RemoteUser>& users) {
  std::string out;
  for (const auto& u : users) {
    if (!out.empty()) out += ", ";
    out += u.id;
    if (!u.external_id.empty()) out += " (externalId " + u.external_id + ")";
  }
  return out;
}

// A bare externalId where the scopes write prefixed ones was written before a second scope was
// configured: the migration claims it for its scope.
std::string MigrationHint(bool other_scopes, const std::string& found) {
  if (!other_scopes || found.find(':') != std::string::npos) return "";
  return ". A bare externalId predates the second HR source: run `scimsyncd migrate-scope "
         "--profile NAME` for the profile that created it (docs/profiles.md, \"Identity "
         "scopes\")";
}

std::string AnotherEmployee(bool other_scopes) {
  return other_scopes ? "another employee or another HR source" : "another employee";
}

// Steps 1-3: the candidate, before the other scopes' links are asked.
Result<Resolution> Candidate(const ResolveQuery& q, const ResolveLookups& lookups) {
  const std::string& ext = q.external_id;
  Resolution r;

  if (lookups.linked) {
    auto linked = lookups.linked();
    if (!linked.ok()) return linked.error();
    if (*linked) {
      const RemoteUser& u = **linked;
      if (!u.external_id.empty() && u.external_id != ext) {
        return Error::Conflict("the link table maps employee " + ext + " to JumpCloud user " +
                               u.id + ", which now carries externalId " + u.external_id + " (" +
                               AnotherEmployee(q.other_scopes) +
                               "); fix the user in JumpCloud, or delete the link so the "
                               "employee is resolved by externalId again" +
                               MigrationHint(q.other_scopes, u.external_id));
      }
      r.via = Resolution::Via::kLink;
      r.user = std::move(*linked);
      return r;
    }
  }

  auto by_ext = lookups.by_external_id(ext);
  if (!by_ext.ok()) return by_ext.error();
  std::vector<RemoteUser> exact;
  for (auto& u : *by_ext) {
    if (u.external_id == ext) exact.push_back(std::move(u));
  }
  if (exact.size() > 1) {
    return Error::Conflict(std::to_string(exact.size()) + " JumpCloud users carry externalId " +
                           ext + ": " + JoinIds(exact) +
                           "; delete or fix the duplicates in JumpCloud");
  }
  if (exact.size() == 1) {
    r.via = Resolution::Via::kExternalId;
    r.user = std::move(exact[0]);
    return r;
  }

  if (q.user_name.empty() || !q.by_user_name) return r;
  auto by_name = lookups.by_user_name(q.user_name);
  if (!by_name.ok()) return by_name.error();
  std::vector<RemoteUser> named;
  for (auto& u : *by_name) {
    if (json::EqualsIgnoreCase(u.attributes.user_name, q.user_name)) named.push_back(std::move(u));
  }
  if (named.size() > 1) {
    return Error::Conflict(std::to_string(named.size()) + " JumpCloud users match userName " +
                           q.user_name + ": " + JoinIds(named) + "; employee " + ext +
                           " was not linked to any of them");
  }
  if (named.size() == 1) {
    RemoteUser& u = named[0];
    if (!u.external_id.empty() && u.external_id != ext) {
      return Error::Conflict("userName " + q.user_name + " belongs to JumpCloud user " + u.id +
                             ", which carries externalId " + u.external_id + " (" +
                             AnotherEmployee(q.other_scopes) + "); employee " + ext +
                             " was not created or linked. Give one of them another username "
                             "in the HRIS, or fix the externalId in JumpCloud" +
                             MigrationHint(q.other_scopes, u.external_id));
    }
    r.via = Resolution::Via::kUserName;
    r.user = std::move(u);
  }
  return r;
}

}  // namespace

const char* ResolutionViaName(Resolution::Via via) {
  switch (via) {
    case Resolution::Via::kNone:
      return "none";
    case Resolution::Via::kLink:
      return "link";
    case Resolution::Via::kExternalId:
      return "externalId";
    case Resolution::Via::kUserName:
      return "userName";
  }
  return "?";
}

Result<Resolution> ResolveUser(const ResolveQuery& q, const ResolveLookups& lookups) {
  auto found = Candidate(q, lookups);
  if (!found.ok() || !found->user || !q.other_scopes || !lookups.owner_of) return found;
  // Its externalId was already compared; this catches a user whose externalId was cleared or
  // rewritten while another HR source's link still claims it.
  const RemoteUser& u = *found->user;
  auto owner = lookups.owner_of(u.id);
  if (!owner.ok()) return owner.error();
  if (*owner && (*owner)->scope != q.scope) {
    const LinkStore::Owner& o = **owner;
    return Error::Conflict(
        "JumpCloud user " + u.id + " (userName " + u.attributes.user_name +
        (u.external_id.empty() ? std::string() : ", externalId " + u.external_id) +
        ") belongs to employee " + o.employee + " of " + o.scope + "; employee " + q.external_id +
        " of " + q.scope +
        " was not linked to it and nothing was written. Two HR sources claim one account: "
        "decide whose it is in JumpCloud, then replay the employee's dead letter if there is one");
  }
  return found;
}

}  // namespace scimsync::scim
