// The HTTP listener: event loops over non-blocking sockets (epoll), HTTP/1.1 with keep-alive,
// pipelining and optional TLS, routing webhooks to Ingest in batches.
//
// Why not a thread per connection (cpp-httplib's server, used before): each webhook then cost
// several context switches and a poll per read, and waiting for its own share of a Redis write
// held a thread. Measured in bench/README.md, the listener spent more time switching than
// working. A loop answers every webhook it has read in one go with one queue write.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "scimsync/config.h"
#include "scimsync/daemon/ingest.h"
#include "scimsync/result.h"

namespace scimsync::daemon {

struct HttpHandlers {
  Ingest* ingest = nullptr;
  // Readiness: config loaded and Redis reachable. Empty reason = ready.
  std::function<std::string()> not_ready_reason;
};

// How long the listener waits on a sender. A request must arrive whole, and an answer must be
// taken, within these: a stalled or trickling sender would otherwise hold memory forever.
struct HttpTimeouts {
  int read_ms = 10000;
  int write_ms = 10000;
};

class HttpServer {
 public:
  HttpServer(const config::ListenOptions& options, HttpHandlers handlers,
             HttpTimeouts timeouts = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the socket (and loads the TLS certificate); errors say which setting and why (port in
  // use, permission, a key that does not match).
  Status Bind();
  // Serves until Stop(); call after Bind(). Runs listen.threads event loops, one on this thread.
  void Serve();
  // Stops accepting and reading, gives answers already written up to a second to leave, closes
  // every connection and returns once Serve() has returned.
  void Stop();
  // The bound port (the chosen one when listen.port is 0).
  int port() const { return port_; }

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace scimsync::daemon
