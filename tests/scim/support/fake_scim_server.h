// An in-process SCIM 2.0 server (cpp-httplib) with an in-memory user store: the subset JumpCloud
// uses -- POST/GET/PATCH/PUT/DELETE /Users, `filter=externalId eq "..."` and
// `filter=userName eq "..."`, /ServiceProviderConfig -- plus fault injection (any status with
// Retry-After, slow answers, dropped connections). userName is unique, case-insensitively,
// as in JumpCloud (409 uniqueness).
//
// Reused by the SCIM client tests, the workers' end-to-end tests and the benchmarks
// (CMake target scimsync_fake_scim). Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace scimsync::testing {

struct FakeScimOptions {
  // Required from clients as `x-api-key: KEY` or `Authorization: Bearer KEY`; empty: no auth.
  std::string api_key = "test-key";
  // /ServiceProviderConfig's patch.supported. Without PATCH, PATCH requests are answered 501.
  bool patch_supported = true;
  // false: /ServiceProviderConfig answers 404, like servers that lack it.
  bool service_provider_config = true;
  // true: /ServiceProviderConfig answers without checking the API key, as discovery endpoints
  // may (RFC 7644 lets them be public).
  bool public_discovery = false;
  // Where the SCIM endpoints live.
  std::string base_path = "/scim/v2";
  // Added to every answer, like JumpCloud's round trip (benchmarks).
  int64_t latency_ms = 0;
  // Keep every request for requests()/CountRequests(); benchmarks turn it off to save memory
  // (TotalRequests() counts either way).
  bool record_requests = true;
  // HTTP threads: each keep-alive client connection holds one.
  int threads = 32;
  // Requests per keep-alive connection before the server closes it; 0: cpp-httplib's default
  // (5). Benchmarks use 1,000, nginx's default, as a real HTTPS front end would.
  int keep_alive_max_requests = 0;
  // Share of created users (drawn with the RandomFaults seed) whose password stays pending: like
  // JumpCloud, which reports active = !suspended && !passwordExpired, they read "active": false
  // in every answer, whatever was written. The store (GetUser, Users, FindUsers) keeps what was
  // written. 0: answers show what was written.
  double pending_password = 0;
};

// A fault applies to the next `times` requests that match `method` and `path_prefix` (relative
// to the base path, e.g. "/Users"; empty matches everything). Faults are consumed in order.
struct Fault {
  enum class Kind {
    kStatus,  // answer `status` (with `retry_after` when set) without touching the store
    kDelay,   // handle the request normally, then hold the answer for delay_ms
    kDrop,    // close the connection without an answer, without touching the store
    // Handle the request normally (the store changes), then close the connection without an
    // answer: the client cannot tell whether its write happened (a timeout after the fact).
    kApplyThenDrop,
  };
  Kind kind = Kind::kStatus;
  int status = 500;
  std::string retry_after;
  int64_t delay_ms = 0;
  std::string method;
  std::string path_prefix;
  int times = 1;

  static Fault Status(int status, std::string retry_after = "") {
    Fault f;
    f.kind = Kind::kStatus;
    f.status = status;
    f.retry_after = std::move(retry_after);
    return f;
  }
  static Fault Delay(int64_t ms) {
    Fault f;
    f.kind = Kind::kDelay;
    f.delay_ms = ms;
    return f;
  }
  static Fault Drop() {
    Fault f;
    f.kind = Kind::kDrop;
    return f;
  }
  static Fault ApplyThenDrop() {
    Fault f;
    f.kind = Kind::kApplyThenDrop;
    return f;
  }
  Fault& On(std::string m, std::string prefix = "") {
    method = std::move(m);
    path_prefix = std::move(prefix);
    return *this;
  }
  Fault& Times(int n) {
    times = n;
    return *this;
  }
};

struct RecordedRequest {
  std::string method;
  std::string path;    // below the base path, decoded: "/Users/abc"
  std::string target;  // as sent, query included and still encoded
  std::string filter;  // the decoded filter parameter, if any
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
  // What the server answered (0: dropped). A kApplyThenDrop request keeps the status it would
  // have had, with `dropped` set: its write happened though the client saw no answer.
  int status = 0;
  bool dropped = false;
  // The answer's body as the server produced it; for a successful write, the user after it
  // (a history of every state a user went through, for the model-based test's oracle).
  std::string response;
  // For a successful write: the user as stored after it (`active` as written, not as a pending
  // password makes it read).
  std::string state;
  // Steady-clock microseconds: when the request arrived and when its answer was ready. Two
  // requests about one user that overlap mean two workers handled that user at once.
  int64_t arrived_us = 0;
  int64_t answered_us = 0;
};

// Faults drawn at random for every request to /Users that no queued Fault matched: a flaky
// JumpCloud for end-to-end tests. Probabilities are per request; the seed makes a run repeatable.
struct RandomFaults {
  double status500 = 0;
  double status429 = 0;
  std::string retry_after_429 = "1";
  double drop = 0;
  // Writes (POST, PUT, PATCH) applied, then their connection closed without an answer.
  double apply_then_drop = 0;
  // Answers held for a time drawn uniformly from [delay_min_ms, delay_max_ms] (slow JumpCloud).
  double delay = 0;
  int64_t delay_min_ms = 0;
  int64_t delay_max_ms = 0;
  uint64_t seed = 1;
};

class FakeScimServer {
 public:
  explicit FakeScimServer(FakeScimOptions options = {});
  ~FakeScimServer();
  FakeScimServer(const FakeScimServer&) = delete;
  FakeScimServer& operator=(const FakeScimServer&) = delete;

  // Listens on 127.0.0.1 on a free port; returns once the server accepts connections.
  bool Start();
  void Stop();
  int port() const;
  std::string base_url() const;  // http://127.0.0.1:PORT/scim/v2

  void InjectFault(const Fault& fault);
  // Queued faults not consumed yet.
  size_t PendingFaults() const;
  void ClearFaults();
  void SetRandomFaults(const RandomFaults& faults);
  // Changes the API key the server accepts (an admin rotated it).
  void SetApiKey(const std::string& key);
  void set_patch_supported(bool on);

  // The store. Users are JSON objects as the server returns them (meta included).
  std::string AddUser(const std::string& json);  // returns the new id; no uniqueness check
  std::optional<std::string> GetUser(const std::string& id) const;
  std::vector<std::string> Users() const;
  size_t user_count() const;
  bool RemoveUser(const std::string& id);
  // Finds users whose attribute (userName, externalId) equals value (userName case-insensitive).
  std::vector<std::string> FindUsers(const std::string& attribute, const std::string& value) const;

  std::vector<RecordedRequest> requests() const;
  void ClearRequests();
  // Recorded requests with this method whose path starts with path_prefix.
  int CountRequests(const std::string& method, const std::string& path_prefix = "") const;
  // Requests answered (or dropped) since the start or ClearRequests(), by method; "" for all.
  int64_t TotalRequests(const std::string& method = "") const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace scimsync::testing
