// The identity rules shared by the workers and reconciliation's join, decided from given
// candidates: link, then externalId, then (when asked) userName, then the other scopes' links.
// Each case is one the converger or the join handled on its own before they shared this.
#include "scimsync/scim/resolve.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace scimsync::scim {
namespace {

RemoteUser U(const std::string& id, const std::string& user_name,
             const std::string& external_id = "") {
  RemoteUser u;
  u.id = id;
  u.external_id = external_id;
  u.attributes.user_name = user_name;
  u.attributes.external_id = external_id;
  return u;
}

// A directory the lookups answer from, counting what was asked.
struct Directory {
  std::optional<RemoteUser> linked;
  std::vector<RemoteUser> by_ext;   // answered as the server would, unfiltered
  std::vector<RemoteUser> by_name;  // likewise
  std::map<std::string, LinkStore::Owner> owners;
  Error fail = Error::Transient("");  // message set: the lookup named in fail_step fails
  std::string fail_step;
  std::vector<std::string> asked;

  ResolveLookups Lookups() {
    ResolveLookups l;
    l.linked = [this]() -> Result<std::optional<RemoteUser>> {
      asked.push_back("link");
      if (fail_step == "link") return fail;
      return linked;
    };
    l.by_external_id = [this](const std::string& v) -> Result<std::vector<RemoteUser>> {
      asked.push_back("externalId " + v);
      if (fail_step == "externalId") return fail;
      return by_ext;
    };
    l.by_user_name = [this](const std::string& v) -> Result<std::vector<RemoteUser>> {
      asked.push_back("userName " + v);
      if (fail_step == "userName") return fail;
      return by_name;
    };
    l.owner_of = [this](const std::string& id) -> Result<std::optional<LinkStore::Owner>> {
      asked.push_back("owner " + id);
      if (fail_step == "owner") return fail;
      auto it = owners.find(id);
      if (it == owners.end()) return std::optional<LinkStore::Owner>();
      return std::optional<LinkStore::Owner>(it->second);
    };
    return l;
  }
};

ResolveQuery Q(bool by_user_name = false, bool other_scopes = false) {
  ResolveQuery q;
  q.scope = "rippling";
  q.external_id = "E1";
  q.user_name = "ada";
  q.by_user_name = by_user_name;
  q.other_scopes = other_scopes;
  return q;
}

TEST(ResolveUser, TheLinkedUserWinsWithoutAnyOtherLookup) {
  Directory d;
  d.linked = U("u1", "ada.lovelace", "E1");
  d.by_ext = {U("u2", "ada", "E1")};
  auto r = ResolveUser(Q(true), d.Lookups());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->via, Resolution::Via::kLink);
  ASSERT_TRUE(r->user);
  EXPECT_EQ(r->user->id, "u1");
  EXPECT_EQ(d.asked, std::vector<std::string>{"link"});
}

TEST(ResolveUser, ALinkedUserWithoutAnExternalIdIsStillTheEmployees) {
  Directory d;
  d.linked = U("u1", "ada");
  auto r = ResolveUser(Q(), d.Lookups());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->via, Resolution::Via::kLink);
  EXPECT_EQ(r->user->id, "u1");
}

TEST(ResolveUser, ALinkedUserCarryingAnotherEmployeesExternalIdIsAConflict) {
  Directory d;
  d.linked = U("u1", "bob", "E2");
  auto r = ResolveUser(Q(), d.Lookups());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kConflict);
  EXPECT_NE(r.error().message.find("the link table maps employee E1 to JumpCloud user u1, which "
                                   "now carries externalId E2"),
            std::string::npos)
      << r.error().message;
  EXPECT_EQ(d.asked, std::vector<std::string>{"link"});  // nothing guessed past it
}

TEST(ResolveUser, NoLinkFindsTheOneUserCarryingTheExternalIdExactly) {
  Directory d;
  // A server that matches externalId without case answers e1 too: not this employee's.
  d.by_ext = {U("u9", "eve", "e1"), U("u1", "ada", "E1")};
  auto r = ResolveUser(Q(), d.Lookups());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->via, Resolution::Via::kExternalId);
  EXPECT_EQ(r->user->id, "u1");
  EXPECT_EQ(d.asked, (std::vector<std::string>{"link", "externalId E1"}));
}

TEST(ResolveUser, TwoUsersCarryingTheExternalIdAreAConflictNamingBoth) {
  Directory d;
  d.by_ext = {U("u1", "ada", "E1"), U("u2", "ada2", "E1")};
  d.by_name = {U("u1", "ada", "E1")};
  auto r = ResolveUser(Q(true), d.Lookups());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kConflict);
  EXPECT_NE(r.error().message.find("2 JumpCloud users carry externalId E1: u1 (externalId E1), "
                                   "u2 (externalId E1)"),
            std::string::npos)
      << r.error().message;
  EXPECT_EQ(d.asked.size(), 2u);  // no userName lookup after a conflict
}

TEST(ResolveUser, NothingFoundMeansCreateAndTheUserNameIsAskedOnlyWhenWanted) {
  Directory d;
  d.by_name = {U("u5", "ada")};
  auto r = ResolveUser(Q(/*by_user_name=*/false), d.Lookups());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->via, Resolution::Via::kNone);
  EXPECT_FALSE(r->user);
  EXPECT_EQ(d.asked, (std::vector<std::string>{"link", "externalId E1"}));

  // An empty desired userName is never looked up, even when asked to.
  Directory e;
  ResolveQuery q = Q(true);
  q.user_name.clear();
  r = ResolveUser(q, e.Lookups());
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->user);
  EXPECT_EQ(e.asked, (std::vector<std::string>{"link", "externalId E1"}));
}

TEST(ResolveUser, AUserWithTheUserNameAndNoExternalIdIsAdoptedIgnoringCase) {
  Directory d;
  d.by_name = {U("u7", "alan"), U("u5", "ADA")};  // a server may answer more: filtered
  auto r = ResolveUser(Q(true), d.Lookups());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->via, Resolution::Via::kUserName);
  EXPECT_EQ(r->user->id, "u5");
  EXPECT_EQ(d.asked, (std::vector<std::string>{"link", "externalId E1", "userName ada"}));
}

TEST(ResolveUser, AUserNameHeldByAnotherEmployeesUserIsAConflict) {
  Directory d;
  d.by_name = {U("u5", "ada", "E2")};
  auto r = ResolveUser(Q(true), d.Lookups());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kConflict);
  EXPECT_NE(r.error().message.find(
                "userName ada belongs to JumpCloud user u5, which carries externalId E2 (another "
                "employee)"),
            std::string::npos)
      << r.error().message;
  EXPECT_EQ(r.error().message.find("migrate-scope"), std::string::npos);

  // With several scopes, a bare externalId predates the second one: the message says how to
  // claim it.
  Directory s;
  s.by_name = {U("u5", "ada", "E2")};
  ResolveQuery q = Q(true, /*other_scopes=*/true);
  q.external_id = "rippling:E1";
  r = ResolveUser(q, s.Lookups());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("another employee or another HR source"), std::string::npos);
  EXPECT_NE(r.error().message.find("scimsyncd migrate-scope"), std::string::npos);
}

TEST(ResolveUser, SeveralUsersWithTheUserNameAreAConflict) {
  Directory d;
  d.by_name = {U("u5", "ada"), U("u6", "Ada")};
  auto r = ResolveUser(Q(true), d.Lookups());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kConflict);
  EXPECT_NE(r.error().message.find("2 JumpCloud users match userName ada: u5, u6"),
            std::string::npos)
      << r.error().message;
}

TEST(ResolveUser, WithSeveralScopesAUserAnotherScopesLinkHoldsIsAConflict) {
  for (const auto& [step, via] : std::vector<std::pair<std::string, Resolution::Via>>{
           {"link", Resolution::Via::kLink},
           {"externalId", Resolution::Via::kExternalId},
           {"userName", Resolution::Via::kUserName}}) {
    SCOPED_TRACE(step);
    Directory d;
    RemoteUser u = U("u3", "ada", step == "userName" ? "" : "rippling:E1");
    if (step == "link") d.linked = u;
    if (step == "externalId") d.by_ext = {u};
    if (step == "userName") d.by_name = {u};
    d.owners["u3"] = {"hibob", "hibob:7"};
    ResolveQuery q = Q(true, /*other_scopes=*/true);
    q.external_id = "rippling:E1";
    auto r = ResolveUser(q, d.Lookups());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, ErrorKind::kConflict);
    EXPECT_NE(r.error().message.find("belongs to employee hibob:7 of hibob; employee rippling:E1 "
                                     "of rippling was not linked to it"),
              std::string::npos)
        << r.error().message;

    // Its own scope's link, or nobody's: the user is the employee's.
    d.owners["u3"] = {"rippling", "rippling:E1"};
    d.asked.clear();
    r = ResolveUser(q, d.Lookups());
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->via, via);
    EXPECT_EQ(d.asked.back(), "owner u3");
    d.owners.clear();
    EXPECT_TRUE(ResolveUser(q, d.Lookups()).ok());
  }
}

TEST(ResolveUser, OneScopeNeverAsksWhoseLinkAUserIs) {
  Directory d;
  d.by_ext = {U("u1", "ada", "E1")};
  d.owners["u1"] = {"hibob", "7"};
  auto r = ResolveUser(Q(), d.Lookups());
  ASSERT_TRUE(r.ok());
  for (const std::string& a : d.asked) EXPECT_EQ(a.rfind("owner", 0), std::string::npos);
}

TEST(ResolveUser, ALookupErrorEndsTheResolutionAsItWas) {
  for (const std::string step : {"link", "externalId", "userName", "owner"}) {
    SCOPED_TRACE(step);
    Directory d;
    d.by_name = {U("u5", "ada")};
    d.fail = Error::Transient("GET /Users answered 503");
    d.fail_step = step;
    auto r = ResolveUser(Q(true, true), d.Lookups());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
    EXPECT_EQ(r.error().message, "GET /Users answered 503");
  }
}

TEST(ResolveUser, ViaNames) {
  EXPECT_STREQ(ResolutionViaName(Resolution::Via::kNone), "none");
  EXPECT_STREQ(ResolutionViaName(Resolution::Via::kLink), "link");
  EXPECT_STREQ(ResolutionViaName(Resolution::Via::kExternalId), "externalId");
  EXPECT_STREQ(ResolutionViaName(Resolution::Via::kUserName), "userName");
}

}  // namespace
}  // namespace scimsync::scim
