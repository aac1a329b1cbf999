// A Transport decorator for staging races: runs `before_post` once, just before the next POST
// leaves ("someone created this user a moment ago"); `answer` may answer a request itself
// instead of sending it (a server refusing one particular write).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "scimsync/scim/transport.h"

namespace scimsync::scim {

class HookTransport final : public Transport {
 public:
  explicit HookTransport(std::unique_ptr<Transport> inner) : inner_(std::move(inner)) {}
  Result<HttpResponse> Send(const HttpRequest& r, int64_t timeout_ms) override {
    if (r.method == "POST" && before_post) {
      auto hook = std::move(before_post);
      before_post = nullptr;
      hook();
    }
    if (answer) {
      if (auto canned = answer(r)) return *canned;
    }
    return inner_->Send(r, timeout_ms);
  }
  std::string Describe(const HttpRequest& r) const override { return inner_->Describe(r); }

  std::function<void()> before_post;
  std::function<std::optional<HttpResponse>(const HttpRequest&)> answer;

 private:
  std::unique_ptr<Transport> inner_;
};

}  // namespace scimsync::scim
