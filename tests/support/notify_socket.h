// A stand-in for systemd's notification socket: binds a unix datagram socket in a temp dir and
// collects what sd_notify(3) sends to it. Point NOTIFY_SOCKET at path() -- with setenv() for
// in-process code, or in the env of a child Process (the real scimsyncd) -- then wait for the
// assignments the service should send (READY=1, STATUS=..., WATCHDOG=1).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "test_support.h"

namespace scimsync::testing {

class NotifySocket {
 public:
  struct Message {
    std::string text;   // the whole datagram: one or more "NAME=value" lines
    pid_t sender = -1;  // from SCM_CREDENTIALS, as systemd checks it; -1 when not passed

    // Whether the message assigns `name` ("STATUS"), and the value it assigns (empty when it
    // does not; has() tells an empty value from a missing one). The last assignment wins.
    bool has(std::string_view name) const;
    std::string value(std::string_view name) const;
  };

  NotifySocket();  // aborts the test binary when the socket cannot be bound
  ~NotifySocket();
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }
  // "NOTIFY_SOCKET=<path>", for Process::Start's env.
  std::string env() const { return "NOTIFY_SOCKET=" + path_; }

  // The next datagram, waiting up to timeout_ms (0: only what is already there). False on
  // timeout. Every received message is also kept in messages().
  bool Receive(Message* out, int timeout_ms);
  // True once a message carries the assignment `assignment` ("READY=1") or, given just a name
  // and '=' ("STATUS="), any value for it. Messages received earlier count too (Clear() forgets
  // them); otherwise receives until timeout_ms passes.
  bool WaitFor(std::string_view assignment, int timeout_ms);
  // Everything received so far (since the last Clear()), in arrival order.
  const std::vector<Message>& messages() const { return messages_; }
  void Clear() { messages_.clear(); }

 private:
  TempDir dir_;
  std::string path_;
  int fd_ = -1;
  std::vector<Message> messages_;
};

}  // namespace scimsync::testing
