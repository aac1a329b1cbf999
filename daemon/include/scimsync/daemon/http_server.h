// The HTTP listener: routes, limits and the translation between cpp-httplib and Ingest.
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

class HttpServer {
 public:
  HttpServer(const config::ListenOptions& options, HttpHandlers handlers);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the socket; errors say which address and why (port in use, permission).
  Status Bind();
  // Serves until Stop(); call after Bind().
  void Serve();
  // Stops accepting and returns once in-flight requests are answered.
  void Stop();
  int port() const { return port_; }

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  config::ListenOptions options_;
  int port_ = 0;
};

}  // namespace scimsync::daemon
