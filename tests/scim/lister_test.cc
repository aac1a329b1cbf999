// Listing every SCIM user page by page, against a scripted in-memory server: servers that cap
// the page size, ignore paging, or page wrongly; retries, 429 and auth failures. Time and
// randomness are injected, so waits are exact and nothing sleeps.
#include "scimsync/scim/lister.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "scimsync/clock.h"

namespace scimsync::scim {
namespace {

std::string UserJson(int n) {
  return "{\"id\":\"u" + std::to_string(n) + "\",\"userName\":\"user" + std::to_string(n) +
         "\",\"externalId\":\"E" + std::to_string(n) + "\"}";
}

// Users u1..uN; answers GET /Users?startIndex=S&count=C the way `style` says.
class PagingTransport final : public Transport {
 public:
  enum class Style { kHonest, kCapsAtTwo, kIgnoresPaging, kIgnoresStartIndex };
  PagingTransport(int users, Style style) : users_(users), style_(style) {}

  Result<HttpResponse> Send(const HttpRequest& r, int64_t /*timeout_ms*/) override {
    targets.push_back(r.target);
    if (!scripted.empty()) {
      auto next = scripted.front();
      scripted.erase(scripted.begin());
      if (next) return next();
    }
    int64_t start = Param(r.target, "startIndex");
    int64_t count = Param(r.target, "count");
    if (style_ == Style::kCapsAtTwo) count = std::min<int64_t>(count, 2);
    if (style_ == Style::kIgnoresPaging) {
      start = 1;
      count = users_;
    }
    if (style_ == Style::kIgnoresStartIndex) start = 1;
    std::string body = "{\"schemas\":[\"" + std::string(kListResponseSchema) +
                       "\"],\"totalResults\":" + std::to_string(users_) +
                       ",\"startIndex\":" + std::to_string(start) + ",\"Resources\":[";
    for (int64_t i = start; i < start + count && i <= users_; ++i) {
      body += (i == start ? "" : ",") + UserJson(static_cast<int>(i));
    }
    body += "]}";
    return HttpResponse{200, body, "", ""};
  }
  std::string Describe(const HttpRequest& r) const override { return r.method + " " + r.target; }

  std::vector<std::string> targets;
  // Answers given before the normal ones, in order; an empty function means "answer normally".
  std::vector<std::function<Result<HttpResponse>()>> scripted;

 private:
  static int64_t Param(const std::string& target, const std::string& name) {
    auto at = target.find(name + "=");
    return at == std::string::npos ? 0 : std::stoll(target.substr(at + name.size() + 1));
  }
  int users_;
  Style style_;
};

class ListerTest : public ::testing::Test {
 protected:
  Result<std::vector<RemoteUser>> List(Transport& transport, RateLimiter* limiter = nullptr) {
    ListOptions options;
    options.page_size = 3;
    ListDeps deps;
    deps.transport = &transport;
    deps.limiter = limiter;
    deps.clock = &clock_;
    deps.random = &random_;
    deps.sleep = [this](int64_t ms) {
      slept_.push_back(ms);
      clock_.AdvanceMs(ms);
    };
    return ListAllUsers(options, deps, &stats_);
  }
  static std::vector<std::string> Ids(const std::vector<RemoteUser>& users) {
    std::vector<std::string> out;
    for (const auto& u : users) out.push_back(u.id);
    return out;
  }

  FakeClock clock_;
  SequenceRandom random_{{0.5}};
  std::vector<int64_t> slept_;
  ListStats stats_;
};

TEST_F(ListerTest, PagesByStartIndexUntilTotalResultsIsCovered) {
  PagingTransport t(7, PagingTransport::Style::kHonest);
  auto users = List(t);
  ASSERT_TRUE(users.ok()) << users.error().message;
  EXPECT_EQ(Ids(*users), (std::vector<std::string>{"u1", "u2", "u3", "u4", "u5", "u6", "u7"}));
  EXPECT_EQ(t.targets,
            (std::vector<std::string>{"/Users?startIndex=1&count=3", "/Users?startIndex=4&count=3",
                                      "/Users?startIndex=7&count=3"}));
  EXPECT_EQ((*users)[2].external_id, "E3");
  EXPECT_EQ(stats_.pages, 3);
}

TEST_F(ListerTest, AServerThatCapsThePageSizeIsStillReadToTheEnd) {
  PagingTransport t(5, PagingTransport::Style::kCapsAtTwo);
  auto users = List(t);
  ASSERT_TRUE(users.ok()) << users.error().message;
  EXPECT_EQ(users->size(), 5u);
  EXPECT_EQ(t.targets,
            (std::vector<std::string>{"/Users?startIndex=1&count=3", "/Users?startIndex=3&count=3",
                                      "/Users?startIndex=5&count=3"}));
}

TEST_F(ListerTest, AServerThatAnswersEverythingAtOnceTakesOneRequest) {
  PagingTransport t(8, PagingTransport::Style::kIgnoresPaging);
  auto users = List(t);
  ASSERT_TRUE(users.ok()) << users.error().message;
  EXPECT_EQ(users->size(), 8u);
  EXPECT_EQ(t.targets.size(), 1u);
}

TEST_F(ListerTest, AServerThatRepeatsTheFirstPageIsAnErrorNotALoop) {
  PagingTransport t(8, PagingTransport::Style::kIgnoresStartIndex);
  auto users = List(t);
  ASSERT_FALSE(users.ok());
  EXPECT_EQ(users.error().kind, ErrorKind::kPermanent);
  EXPECT_NE(users.error().message.find("does not page by startIndex"), std::string::npos);
  EXPECT_EQ(t.targets.size(), 2u);
}

TEST_F(ListerTest, AnEmptyDirectoryIsOneRequestAndNoUsers) {
  PagingTransport t(0, PagingTransport::Style::kHonest);
  auto users = List(t);
  ASSERT_TRUE(users.ok());
  EXPECT_TRUE(users->empty());
  EXPECT_EQ(t.targets.size(), 1u);
}

TEST_F(ListerTest, TransientFailuresOfAPageAreRetriedWithBackoffAndRetryAfter) {
  PagingTransport t(4, PagingTransport::Style::kHonest);
  t.scripted.push_back([] { return Result<HttpResponse>(Error::Transient("connection reset")); });
  t.scripted.push_back([] { return HttpResponse{503, "", "7", ""}; });
  auto users = List(t);
  ASSERT_TRUE(users.ok()) << users.error().message;
  EXPECT_EQ(users->size(), 4u);
  // Full jitter with random 0.5 over a 1 s cap, then the server's Retry-After of 7 s.
  EXPECT_EQ(slept_, (std::vector<int64_t>{500, 7000}));
  EXPECT_EQ(stats_.requests, 4);  // two failures, then two pages
}

// Records what the lister tells the shared rate limit; every slot is free.
class RecordingLimiter final : public RateLimiter {
 public:
  Result<Reservation> Reserve(int64_t /*max_wait_ms*/) override {
    ++reservations;
    return Reservation{true, 0};
  }
  Status Throttled(int64_t block_ms) override {
    blocks.push_back(block_ms);
    return {};
  }
  int reservations = 0;
  std::vector<int64_t> blocks;
};

TEST_F(ListerTest, EveryPageTakesARateSlotAndA429SlowsEveryoneSharingIt) {
  RecordingLimiter limiter;
  PagingTransport t(5, PagingTransport::Style::kHonest);
  t.scripted.push_back([] { return HttpResponse{429, "", "3", ""}; });
  auto users = List(t, &limiter);
  ASSERT_TRUE(users.ok()) << users.error().message;
  EXPECT_EQ(limiter.blocks, (std::vector<int64_t>{3000}));  // the other workers wait too
  EXPECT_EQ(slept_, (std::vector<int64_t>{3000}));          // and so did the listing
  EXPECT_EQ(limiter.reservations, 3);                       // the 429 and two pages
}

TEST_F(ListerTest, ARefusedKeyIsAnAuthErrorWithoutRetries) {
  PagingTransport t(4, PagingTransport::Style::kHonest);
  t.scripted.push_back([] { return HttpResponse{401, "{\"detail\":\"bad key\"}", "", ""}; });
  auto users = List(t);
  ASSERT_FALSE(users.ok());
  EXPECT_EQ(users.error().kind, ErrorKind::kAuth);
  EXPECT_NE(users.error().message.find("GET /Users?startIndex=1&count=3"), std::string::npos);
  EXPECT_EQ(t.targets.size(), 1u);
}

TEST_F(ListerTest, GivesUpOnAPageAfterItsAttempts) {
  PagingTransport t(4, PagingTransport::Style::kHonest);
  for (int i = 0; i < 5; ++i) {
    t.scripted.push_back([] { return HttpResponse{502, "", "", ""}; });
  }
  auto users = List(t);
  ASSERT_FALSE(users.ok());
  EXPECT_EQ(users.error().kind, ErrorKind::kTransient);
  EXPECT_EQ(t.targets.size(), 5u);
}

TEST(ParseListPage, ReadsTotalsAndToleratesServersThatLeaveThemOut) {
  auto page = ParseListPage(
      R"({"totalResults":12,"startIndex":4,"itemsPerPage":1,"Resources":[{"id":"a"}]})");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->total_results, 12);
  EXPECT_EQ(page->start_index, 4);
  ASSERT_EQ(page->users.size(), 1u);
  auto bare = ParseListPage(R"({"Resources":[{"id":"a"},{"id":"b"}]})");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->total_results, 2);
  EXPECT_EQ(bare->start_index, 1);
  EXPECT_FALSE(ParseListPage("[]").ok());
  EXPECT_EQ(ListUsersTarget(101, 100), "/Users?startIndex=101&count=100");
}

}  // namespace
}  // namespace scimsync::scim
