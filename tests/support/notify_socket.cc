#include "notify_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace scimsync::testing {
namespace {

// Splits a datagram into its "NAME=value" lines.
std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty()) out.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

bool Matches(const NotifySocket::Message& m, std::string_view assignment) {
  bool name_only = !assignment.empty() && assignment.back() == '=';
  for (std::string_view line : Lines(m.text)) {
    if (name_only ? line.starts_with(assignment) : line == assignment) return true;
  }
  return false;
}

}  // namespace

bool NotifySocket::Message::has(std::string_view name) const {
  for (std::string_view line : Lines(text)) {
    if (line.size() > name.size() && line.starts_with(name) && line[name.size()] == '=') {
      return true;
    }
  }
  return false;
}

std::string NotifySocket::Message::value(std::string_view name) const {
  std::string out;
  for (std::string_view line : Lines(text)) {
    if (line.size() > name.size() && line.starts_with(name) && line[name.size()] == '=') {
      out = std::string(line.substr(name.size() + 1));
    }
  }
  return out;
}

NotifySocket::NotifySocket() : path_(dir_.File("notify.sock")) {
  fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (fd_ < 0 || path_.size() >= sizeof addr.sun_path) {
    std::fprintf(stderr, "NotifySocket: cannot create a socket at %s\n", path_.c_str());
    std::abort();
  }
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  int on = 1;
  // systemd reads the sender's pid from the credentials; so can tests.
  setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "NotifySocket: bind %s: %s\n", path_.c_str(), std::strerror(errno));
    std::abort();
  }
}

NotifySocket::~NotifySocket() {
  if (fd_ >= 0) close(fd_);
}

bool NotifySocket::Receive(Message* out, int timeout_ms) {
  pollfd pfd{fd_, POLLIN, 0};
  if (poll(&pfd, 1, timeout_ms) <= 0) return false;
  char buf[4096];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = recvmsg(fd_, &msg, MSG_DONTWAIT);
  if (n < 0) return false;
  Message m;
  m.text.assign(buf, static_cast<size_t>(n));
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      ucred cred{};
      std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
      m.sender = cred.pid;
    }
  }
  messages_.push_back(m);
  if (out != nullptr) *out = std::move(m);
  return true;
}

bool NotifySocket::WaitFor(std::string_view assignment, int timeout_ms) {
  for (const auto& m : messages_) {
    if (Matches(m, assignment)) return true;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    Message m;
    if (!Receive(&m, left > 0 ? static_cast<int>(left) : 0)) return false;
    if (Matches(m, assignment)) return true;
  }
}

}  // namespace scimsync::testing
