#include "scimsync/scim/lister.h"

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "scimsync/log.h"

namespace scimsync::scim {
namespace {

bool Is2xx(int status) { return status >= 200 && status < 300; }

class PageReader {
 public:
  PageReader(const ListOptions& options, const ListDeps& deps, ListStats* stats)
      : options_(options),
        deps_(deps),
        stats_(stats),
        policy_(options.retry, *deps.clock, *deps.random) {
    if (!deps_.sleep) {
      deps_.sleep = [](int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
    }
  }

  // One page, with its retries.
  Result<ListPage> Read(int64_t start_index) {
    const HttpRequest request{"GET", ListUsersTarget(start_index, options_.page_size), ""};
    const int64_t first_ms = deps_.clock->NowMs();
    for (int attempt = 1;; ++attempt) {
      Result<ListPage> page = Attempt(request);
      if (page.ok() || page.error().kind != ErrorKind::kTransient) return page;
      RetryDecision d = policy_.Decide(attempt, first_ms, page.error());
      if (!d.retry) {
        Error e = page.error();
        e.message = deps_.transport->Describe(request) + ": " + d.reason;
        return e;
      }
      log::Warn("listing SCIM users: retrying a page", {{"start_index", start_index},
                                                        {"attempt", attempt},
                                                        {"delay_ms", d.delay_ms},
                                                        {"error", page.error().message}});
      deps_.sleep(d.delay_ms);
    }
  }

 private:
  Result<ListPage> Attempt(const HttpRequest& request) {
    if (deps_.limiter != nullptr) {
      auto slot = deps_.limiter->Reserve(options_.max_rate_wait_ms);
      if (!slot.ok()) return slot.error();
      if (!slot->granted) {
        Error e = Error::Transient("rate limit: no SCIM request slot free within " +
                                   std::to_string(options_.max_rate_wait_ms) + " ms");
        e.retry_after = std::chrono::milliseconds(slot->wait_ms);
        return e;
      }
      if (slot->wait_ms > 0) deps_.sleep(slot->wait_ms);
    }
    if (stats_ != nullptr) ++stats_->requests;
    auto resp = deps_.transport->Send(request, options_.timeout_ms);
    if (!resp.ok()) {
      Error e = resp.error();
      e.message = deps_.transport->Describe(request) + ": " + e.message;
      return e;
    }
    if (resp->status == 429 && deps_.limiter != nullptr) {
      int64_t block = 0;
      if (auto ra = ParseRetryAfterMs(resp->retry_after, deps_.clock->NowMs())) {
        block = std::min(*ra, options_.retry.max_delay_ms);
      }
      Status s = deps_.limiter->Throttled(block);
      if (!s.ok()) {
        log::Warn("cannot record the 429 in the rate limiter", {{"error", s.error().message}});
      }
    }
    if (!Is2xx(resp->status)) {
      Error e =
          ErrorFromResponse(resp->status, resp->body, resp->retry_after, deps_.clock->NowMs());
      e.message = deps_.transport->Describe(request) + ": " + e.message;
      return e;
    }
    auto page = ParseListPage(resp->body);
    if (!page.ok()) {
      Error e = page.error();
      e.message = deps_.transport->Describe(request) + ": " + e.message;
      return e;
    }
    return page;
  }

  const ListOptions& options_;
  ListDeps deps_;
  ListStats* stats_;
  RetryPolicy policy_;
};

}  // namespace

Result<std::vector<RemoteUser>> ListAllUsers(const ListOptions& options, const ListDeps& deps,
                                             ListStats* stats) {
  PageReader reader(options, deps, stats);
  std::vector<RemoteUser> out;
  std::set<std::string> seen;
  int64_t start = 1;
  while (true) {
    auto page = reader.Read(start);
    if (!page.ok()) return page.error();
    if (page->users.empty()) break;
    if (stats != nullptr) ++stats->pages;
    size_t fresh = 0;
    for (RemoteUser& u : page->users) {
      // A user created or deleted while we list shifts later pages by one: the same user may
      // come twice, and is kept once.
      if (seen.insert(u.id).second) {
        out.push_back(std::move(u));
        ++fresh;
      }
    }
    if (fresh == 0) {
      return Error::Permanent("the SCIM server answered startIndex=" + std::to_string(start) +
                              " with users it had already listed: it does not page by "
                              "startIndex, so its users cannot be listed completely");
    }
    // Advance by what was received, not by what was asked: servers may cap `count`.
    start += static_cast<int64_t>(page->users.size());
    if (start > page->total_results) break;
    if (static_cast<int64_t>(out.size()) > options.max_users) {
      return Error::Permanent("the SCIM server listed more than " +
                              std::to_string(options.max_users) + " users; stopped");
    }
  }
  return out;
}

}  // namespace scimsync::scim
