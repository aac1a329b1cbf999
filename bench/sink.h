// The benchmarks' SCIM sink: the in-memory SCIM server of the tests (JumpCloud's double, with
// indexes on externalId and userName), serving the workers at full speed, plus what the harness
// needs from it: when each employee's state reached the sink, and whether the final state of
// every user matches the employee's newest event.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fake_scim_server.h"

namespace scimsync::bench {

// One SCIM write (POST, PUT or PATCH answered 2xx) that carried an employee's title "Title N".
struct Write {
  int64_t at_us = 0;     // steady clock, when the request reached the sink
  int event_index = -1;  // N: the bench's events carry "Title <index of the event>"
};

struct SinkSummary {
  std::map<std::string, std::vector<Write>> writes;  // by employee id (externalId)
  int64_t first_request_us = 0;                      // 0 when no request arrived
  int64_t last_write_us = 0;
  int64_t requests = 0;
  int64_t writes_total = 0;  // writes that carried an event's title (the latency analysis)
  // Every write answered 2xx (POST, PUT, PATCH, DELETE; a suspension sent alone too) and the
  // POSTs among them: the floor of SCIM requests is 2 per create (a lookup and the POST) plus
  // 1 per other write, i.e. all_writes + creates (issue 20).
  int64_t all_writes = 0;
  int64_t creates = 0;
  int64_t floor() const { return all_writes + creates; }
};

class Sink {
 public:
  explicit Sink(int threads = 32);
  bool Start() { return server_->Start(); }
  void Stop() { server_->Stop(); }
  std::string base_url() const { return server_->base_url(); }
  testing::FakeScimServer& server() { return *server_; }

  // Forgets requests (not users): the next phase's summary starts empty.
  void ClearRequests() { server_->ClearRequests(); }
  SinkSummary Summarize() const;

  struct Expected {
    int event_index = 0;  // the newest event's index (its title is "Title <index>")
    bool active = true;
  };
  // Users whose final state differs from their newest event (or who have no user, or several;
  // an employee expected inactive may have none: no account is created for a leaver).
  std::vector<std::string> Stale(const std::map<std::string, Expected>& expected) const;

 private:
  std::unique_ptr<testing::FakeScimServer> server_;
};

}  // namespace scimsync::bench
