// The benchmark sink's accounting: every request in exactly one kind, and the floor the bench's
// requests-to-floor ratio divides by (bench/sink.h).
#include "sink.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <string>

namespace scimsync::bench {
namespace {

class SinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sink_.Start());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", sink_.server().port());
  }
  void TearDown() override { sink_.Stop(); }

  int Lookup(const std::string& attribute, const std::string& value) {
    std::string filter;  // values here are letters and digits: only the space and quotes to encode
    for (char c : attribute + " eq \"" + value + "\"") {
      filter += c == ' ' ? std::string("%20") : c == '"' ? std::string("%22") : std::string(1, c);
    }
    auto res = client_->Get("/scim/v2/Users?filter=" + filter, headers_);
    return res ? res->status : 0;
  }
  // POSTs an employee's user; returns its SCIM id.
  std::string Create(const std::string& employee) {
    std::string body = R"({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":")" +
                       employee + R"(","externalId":")" + employee +
                       R"(","title":"Title 3","emails":[{"value":")" + employee +
                       R"(@example.com","primary":true}],"active":true})";
    auto res = client_->Post("/scim/v2/Users", headers_, body, "application/scim+json");
    EXPECT_TRUE(res && res->status == 201);
    if (!res) return "";
    auto at = res->body.find("\"id\":\"");
    return res->body.substr(at + 6, res->body.find('"', at + 6) - at - 6);
  }
  int Suspend(const std::string& id) {
    auto res = client_->Patch(
        "/scim/v2/Users/" + id, headers_,
        R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]})",
        "application/scim+json");
    return res ? res->status : 0;
  }

  Sink sink_{2};
  std::unique_ptr<httplib::Client> client_;
  httplib::Headers headers_ = {{"x-api-key", "bench-key"}};
};

TEST_F(SinkTest, EveryRequestHasOneKindAndTheFloorCountsLeaversNeverCreated) {
  ASSERT_EQ(client_->Get("/scim/v2/ServiceProviderConfig", headers_)->status, 200);
  // A hire: a lookup that finds nothing, then the POST (2 in the floor).
  ASSERT_EQ(Lookup("externalId", "E1"), 200);
  const std::string id = Create("E1");
  // A termination of that user: one PATCH (1 in the floor).
  ASSERT_EQ(Suspend(id), 200);
  // A leaver without an account, looked up twice (two syncs) and never created: 1 in the floor.
  ASSERT_EQ(Lookup("externalId", "E2"), 200);
  ASSERT_EQ(Lookup("externalId", "E2"), 200);
  // A leaver looked up, then rehired and created: its first lookup is beyond the floor.
  ASSERT_EQ(Lookup("externalId", "E3"), 200);
  ASSERT_EQ(Lookup("externalId", "E3"), 200);
  Create("E3");
  // A 409's fallback finds the user by userName; a GET by id; one that is not found.
  ASSERT_EQ(Lookup("userName", "E1"), 200);
  ASSERT_EQ(client_->Get("/scim/v2/Users/" + id, headers_)->status, 200);
  ASSERT_EQ(client_->Get("/scim/v2/Users/no-such-id", headers_)->status, 404);

  SinkSummary s = sink_.Summarize();
  const RequestKinds& k = s.kinds;
  EXPECT_EQ(s.requests, 12);
  EXPECT_EQ(k.lookup_none, 5);
  EXPECT_EQ(k.lookup_found, 1);
  EXPECT_EQ(k.username_lookups, 1);
  EXPECT_EQ(k.get_by_id, 1);
  EXPECT_EQ(k.post, 2);
  EXPECT_EQ(k.patch, 1);
  EXPECT_EQ(k.put + k.del, 0);
  EXPECT_EQ(k.not_2xx, 1);
  EXPECT_EQ(k.other, 1);  // /ServiceProviderConfig
  EXPECT_EQ(k.lookup_none + k.lookup_found + k.get_by_id + k.post + k.patch + k.put + k.del +
                k.not_2xx + k.other,
            s.requests);
  EXPECT_EQ(k.leavers_never_created, 1);  // E2, once though looked up twice
  EXPECT_EQ(k.leaver_lookups, 2);
  EXPECT_EQ(k.created_extra_lookups, 1);  // E3's first lookup
  EXPECT_EQ(s.write_floor(), 2 * 2 + 1);  // 2 creates + 1 other write
  EXPECT_EQ(s.floor(), 2 * 2 + 1 + 1);    // + E2, looked up and never created
}

}  // namespace
}  // namespace scimsync::bench
