// A profile for listener and ingest tests, with no HRIS format behind it: auth is "header X-Key
// equals a secret", the body is one item per line "employee,dedup" ("bad" is malformed;
// "ack:<event type>" is an item acknowledged as not about an employee; "employee,dedup,tenant"
// names its tenant in the body), body
// "ping" is a handshake (answered 200), and content type text/csv is refused with 415. It serves
// no tenant, and tenants "acme" and "conn-1".
#pragma once

#include <string>
#include <vector>

#include "scimsync/connectors/profile.h"

namespace scimsync::daemon {

class FakeProfile : public connectors::Profile {
 public:
  const std::string& name() const override { return name_; }
  int64_t dedup_window_s() const override { return 3600; }
  // Takes webhooks without a tenant and for tenants "acme" and "conn-1" (named in the body).
  std::vector<std::string> list_tenants() const override { return {"", "acme", "conn-1"}; }
  Status Verify(const connectors::Request& r, const std::vector<std::string>& secrets,
                int64_t) const override {
    for (const auto& [k, v] : r.headers) {
      if (k == "X-Key") {
        for (const auto& s : secrets) {
          if (v == s) return {};
        }
        return Error::Auth("X-Key does not match any active secret");
      }
    }
    return Error::Auth("missing header X-Key");
  }
  Result<connectors::Decoded> Decode(const connectors::Request& r) const override {
    if (r.content_type == "text/csv") {
      return Error::Make(ErrorKind::kInvalid, "text/csv is not accepted", 415);
    }
    connectors::Decoded d;
    if (r.body == "ping") {
      d.handshake = true;
      d.handshake_note = "answered a ping";
      return d;
    }
    size_t start = 0;
    while (start < r.body.size()) {
      size_t end = r.body.find('\n', start);
      if (end == std::string::npos) end = r.body.size();
      std::string line = r.body.substr(start, end - start);
      start = end + 1;
      if (line.rfind("ack:", 0) == 0) {
        d.acknowledged.push_back({line.substr(4), "not about an employee"});
        continue;
      }
      auto comma = line.find(',');
      if (comma == std::string::npos) return Error::Invalid("item is malformed: " + line);
      // "employee,dedup,tenant": a tenant named in the body (Finch's connection_id).
      std::string rest = line.substr(comma + 1);
      const auto second = rest.find(',');
      std::string tenant = second == std::string::npos ? "" : rest.substr(second + 1);
      if (second != std::string::npos) rest.resize(second);
      d.items.push_back({line.substr(0, comma), rest, "employee.updated", "", "{}", tenant});
    }
    return d;
  }

 private:
  std::string name_ = "hr";
};

}  // namespace scimsync::daemon
