// An in-process cpp-httplib server standing in for an HRIS API on loopback: the tests register
// their handlers on server() and point a profile (or an HrisClient) at url().
#pragma once

#include <httplib.h>

#include <string>
#include <thread>

namespace scimsync::connectors::testing {

class FakeHris {
 public:
  FakeHris() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~FakeHris() {
    server_.stop();
    thread_.join();
  }
  FakeHris(const FakeHris&) = delete;
  FakeHris& operator=(const FakeHris&) = delete;

  httplib::Server& server() { return server_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace scimsync::connectors::testing
