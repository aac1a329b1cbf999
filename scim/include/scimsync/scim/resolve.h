// Which JumpCloud user is an employee's: the identity rules, in one function shared by the
// workers (Converger, which looks the candidates up over HTTP, one employee at a time) and
// reconciliation's join (which looks them up in a listing of every user). One decision for both,
// so a reconciliation never reports as fixable what a worker would dead-letter, nor the reverse.
//
//   1. link      the link table's user is the employee's, unless it now carries another
//                employee's externalId: a conflict.
//   2. externalId  `externalId eq` (compared exactly here: a server may match without case).
//                One user is the employee's; several are a conflict.
//   3. userName  only when asked (ResolveQuery::by_user_name): `userName eq`, compared without
//                ASCII case. One user without an externalId is adopted; one carrying another
//                employee's externalId, or several users, are a conflict.
//   4. scopes    with several identity scopes, the user found must not be linked under another
//                scope (another HR source's account): a conflict.
//
// A conflict is never guessed through: both sides are named, for a human.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "scimsync/result.h"
#include "scimsync/scim/link_store.h"
#include "scimsync/scim/protocol.h"

namespace scimsync::scim {

struct ResolveQuery {
  std::string scope;        // the link-table scope of the employee (LinkStore)
  std::string external_id;  // the desired user's, as written (scope prefix included)
  std::string user_name;    // the desired userName; empty: no lookup by userName
  // Look up by userName too. The converger asks only after a 409 on create (a name taken by a
  // manual account is rare, and a lookup before every POST would make a hire cost three
  // requests); reconciliation always, since a POST would be refused and resolved that way.
  bool by_user_name = false;
  // Several identity scopes share this JumpCloud (Job::other_scopes): the user found is checked
  // against the other scopes' links (one more lookup per resolution), and messages say so.
  bool other_scopes = false;
};

// Where the candidates come from. Each is called at most once per resolution, and only when the
// steps before it found nothing; an error from one ends the resolution with that error.
struct ResolveLookups {
  // The linked user as the server has it now. nullopt: no link, or the linked user is gone
  // (the caller drops the link; resolution goes on by externalId).
  std::function<Result<std::optional<RemoteUser>>()> linked;
  // Users whose externalId equals the one given (more is fine: they are filtered here).
  std::function<Result<std::vector<RemoteUser>>(const std::string& external_id)> by_external_id;
  // Users whose userName equals the one given, ignoring case (more is fine, likewise).
  std::function<Result<std::vector<RemoteUser>>(const std::string& user_name)> by_user_name;
  // With other_scopes: whose link holds this JumpCloud id. Unset: nobody's.
  std::function<Result<std::optional<LinkStore::Owner>>(const std::string& jumpcloud_id)> owner_of;
};

struct Resolution {
  enum class Via { kNone, kLink, kExternalId, kUserName };
  Via via = Via::kNone;
  // The employee's user; nullopt (kNone): JumpCloud has none, so a sync creates it.
  std::optional<RemoteUser> user;
};
const char* ResolutionViaName(Resolution::Via via);  // "none", "link", "externalId", "userName"

// The employee's user by the rules above. kConflict: the message names what collides and what
// to do about it. Any other error is a lookup's, as it returned it.
Result<Resolution> ResolveUser(const ResolveQuery& query, const ResolveLookups& lookups);

}  // namespace scimsync::scim
