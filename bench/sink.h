// The benchmarks' SCIM sink: the in-memory SCIM server of the tests (JumpCloud's double, with
// indexes on externalId and userName), serving the workers at full speed, plus what the harness
// needs from it: when each employee's state reached the sink, and whether the final state of
// every user matches the employee's newest event.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "fake_scim_server.h"

namespace scimsync::bench {

// One SCIM write (POST, PUT or PATCH answered 2xx) that carried an employee's title "Title N".
struct Write {
  int64_t at_us = 0;     // steady clock, when the request reached the sink
  int event_index = -1;  // N: the bench's events carry "Title <index of the event>"
};

// Every request of a phase in exactly one kind (they add up to SinkSummary::requests), counted
// after the phase from the sink's record: nothing is added to the sink's hot path.
struct RequestKinds {
  int64_t lookup_none = 0;   // GET with a filter, answered 2xx, no user found
  int64_t lookup_found = 0;  // GET with a filter, answered 2xx, one user (or more) found
  int64_t get_by_id = 0;     // GET /Users/{id} answered 2xx
  int64_t post = 0;          // answered 2xx, and the same for the next three
  int64_t patch = 0;
  int64_t put = 0;
  int64_t del = 0;
  int64_t not_2xx = 0;  // any method answered otherwise (404, 409, 412, ...) or dropped
  int64_t other = 0;    // the rest: discovery (/ServiceProviderConfig), a listing without a filter
  // Not a kind of its own (also counted above): lookups by userName (a 409's fallback).
  int64_t username_lookups = 0;
  // Employees with an `externalId eq` lookup that found nothing and no POST of their externalId
  // in the phase: a leaver whose coalesced burst ended terminated, looked up (an account may
  // exist without a link) and, rightly, never created. Counted once per employee.
  int64_t leavers_never_created = 0;
  // The same lookups counted each (more than leavers_never_created: a lookup repeated).
  int64_t leaver_lookups = 0;
  // `externalId eq` lookups that found nothing of employees POSTed in the phase, beyond one per
  // POST (e.g. a leaver's lookup before a later rehire created the account).
  int64_t created_extra_lookups = 0;
};

struct SinkSummary {
  std::map<std::string, std::vector<Write>> writes;  // by employee id (externalId)
  int64_t first_request_us = 0;                      // 0 when no request arrived
  int64_t last_write_us = 0;
  int64_t requests = 0;
  int64_t writes_total = 0;  // writes that carried an event's title (the latency analysis)
  // Every write answered 2xx (POST, PUT, PATCH, DELETE; a suspension sent alone too) and the
  // POSTs among them.
  int64_t all_writes = 0;
  int64_t creates = 0;
  // The floor of SCIM requests (issue 20): 2 per create (a lookup and the POST), 1 per other
  // write, and 1 per employee looked up and never created (kinds.leavers_never_created: a leaver
  // without a link must be looked up, as an account made by hand or by a sync whose link was lost
  // must be suspended, and then nothing is written). Before 2026-12-07 the floor counted writes
  // only (write_floor()), which put the paced runs, whose bursts coalesce into a termination
  // before any account exists, at 1.15-1.17x; bench/README.md, "Floor by kind".
  int64_t floor() const { return write_floor() + kinds.leavers_never_created; }
  int64_t write_floor() const { return all_writes + creates; }
  RequestKinds kinds;
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
  // Writes every recorded request of the phase, one tab-separated line each, prefixed with
  // `phase`: arrival (us), method, path, filter, status, users found (lookups), employee
  // (externalId), the event index its body carries. For finding where requests go by hand.
  void WriteLog(std::ostream& out, const std::string& phase) const;

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
