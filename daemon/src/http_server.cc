#include "scimsync/daemon/http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "http1.h"
#include "scimsync/daemon/metrics.h"
#include "scimsync/log.h"
#include "scimsync/strings.h"

namespace scimsync::daemon {

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const char* Reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
  }
}

// The code in our JSON error body for a status the HTTP layer itself answers.
const char* ErrorCode(int status) {
  switch (status) {
    case 408:
      return "request_timeout";
    case 413:
      return "payload_too_large";
    case 414:
      return "uri_too_long";
    case 431:
      return "headers_too_large";
    case 501:
      return "not_implemented";
    case 505:
      return "http_version_not_supported";
    default:
      return "bad_request";
  }
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != prefix[i]) return false;
  }
  return true;
}

// /webhooks/{profile}[/{tenant}][/]: false for any other path.
bool MatchWebhookPath(std::string_view path, std::string* profile, std::string* tenant) {
  constexpr std::string_view kPrefix = "/webhooks/";
  if (path.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string_view rest = path.substr(kPrefix.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  size_t slash = rest.find('/');
  std::string_view first = rest.substr(0, slash);
  std::string_view second =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  if (first.empty()) return false;
  if (slash != std::string_view::npos &&
      (second.empty() || second.find('/') != std::string_view::npos)) {
    return false;
  }
  *profile = PercentDecode(first, false).value_or(std::string(first));
  *tenant = PercentDecode(second, false).value_or(std::string(second));
  return true;
}

http1::Limits ParserLimits(const config::ListenOptions& o) {
  http1::Limits l;
  l.max_body_bytes = o.max_body_bytes;
  l.max_headers = static_cast<size_t>(std::max(o.max_headers, 1));
  // Room beyond listen.max_header_bytes (which Ingest checks on names and values, answering with
  // the setting to change) for the request line and each line's ": " and CRLF; this bound caps
  // the memory one connection can hold before its headers are complete.
  l.max_header_section_bytes = static_cast<size_t>(std::max<int64_t>(o.max_header_bytes, 0)) +
                               l.max_line_bytes + 4 * l.max_headers;
  return l;
}

// The 503 a new connection gets when listen.max_connections are open and none can be shed.
constexpr std::string_view kFullResponse =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 90\r\n"
    "Retry-After: 1\r\nConnection: close\r\n\r\n"
    "{\"error\":\"too_many_connections\",\"detail\":\"listen.max_connections are open; retry "
    "shortly\"}";

// Buffers above this are released once empty: a burst on one connection must not stay allocated
// while it idles (1,000 hostile connections x a 256 KiB read would be 256 MB).
constexpr size_t kKeepCapacity = size_t{16} * 1024;

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};

// One client connection, owned by the loop that accepted it.
struct Conn {
  int fd = -1;
  std::unique_ptr<SSL, SslFree> ssl;
  http1::Parser parser;
  std::string in;   // read, not yet given to the parser
  std::string out;  // answers not yet written
  size_t out_pos = 0;
  int requests = 0;
  bool close_after_flush = false;          // answer what is in `out`, then close
  bool peer_closed = false;                // the client sent EOF (or TLS close_notify)
  bool dead = false;                       // closed at the end of this loop iteration
  bool tls_wants_write = false;            // an SSL_read needs the socket writable to go on
  uint32_t events = EPOLLIN | EPOLLRDHUP;  // what epoll watches for
  bool touched = false;                    // in this iteration's list already
  int64_t last_active_ms = 0;
  int64_t request_started_ms = 0;  // 0: between requests
  int64_t write_started_ms = 0;    // 0: nothing waiting to be written
  bool counted = true;             // still counted in the server's open connections

  explicit Conn(http1::Limits limits) : parser(limits) {}
  bool HasOutput() const { return out_pos < out.size(); }
};

// Marks in epoll_event.data.ptr for the two descriptors that are not connections.
char listen_mark;
char stop_mark;

}  // namespace

class HttpServer::Impl {
 public:
  Impl(const config::ListenOptions& options, HttpHandlers handlers, HttpTimeouts timeouts)
      : options_(options),
        handlers_(std::move(handlers)),
        timeouts_(timeouts),
        request_limits_(options),
        parser_limits_(ParserLimits(options)) {}

  ~Impl();

  Status Bind(int* port);
  void Serve();
  void Stop();

 private:
  class Loop;

  Status LoadTls();

  const config::ListenOptions options_;
  const HttpHandlers handlers_;
  const HttpTimeouts timeouts_;
  const connectors::RequestLimits request_limits_;
  const http1::Limits parser_limits_;
  // listen.max_connections, resolved by Bind; open_ counts connections over all loops.
  int max_connections_ = 0;
  std::atomic<int> open_{0};
  std::unique_ptr<SSL_CTX, SslCtxFree> ssl_ctx_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  // Created by Bind, so that running out of descriptors is a start-up error, not a daemon that
  // runs without a listener.
  std::vector<std::unique_ptr<Loop>> loops_;
  std::atomic<bool> stopping_{false};
  std::mutex serve_mu_;
  std::condition_variable serve_cv_;
  bool serving_ = false;
};

// One event loop: its own epoll set and connections; shares the listening socket with the
// other loops (EPOLLEXCLUSIVE wakes one of them per new connection).
class HttpServer::Impl::Loop {
 public:
  explicit Loop(Impl* server) : s_(server) {}
  ~Loop() {
    for (auto& [fd, conn] : conns_) close(fd);
    if (epoll_fd_ >= 0) close(epoll_fd_);
  }

  bool Init() {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return false;
    if (!WatchListener()) return false;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &stop_mark;
    return epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, s_->stop_fd_, &ev) == 0;
  }

  void Run() {
    std::vector<epoll_event> events(256);
    int64_t next_sweep = NowMs() + kSweepMs;
    int64_t stop_deadline = 0;
    while (true) {
      const bool stopping = s_->stopping_.load();
      if (stopping) {
        if (stop_deadline == 0) {
          stop_deadline = NowMs() + kStopFlushMs;
          StopListening();
          // From here on only answers already written are sent: nothing more is read, so a
          // level-triggered stop event or a client still sending must not wake the loop again.
          epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, s_->stop_fd_, nullptr);
          for (auto& [fd, c] : conns_) {
            if (!c->HasOutput()) {
              c->dead = true;
              continue;
            }
            epoll_event ev{};
            ev.events = EPOLLOUT;
            ev.data.ptr = c.get();
            epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
            c->events = EPOLLOUT;
          }
          Reap();
        }
        bool pending = false;
        for (auto& [fd, c] : conns_) pending = pending || c->HasOutput();
        if (!pending || NowMs() >= stop_deadline) break;
      }
      const int timeout = stopping ? 10
                                   : static_cast<int>(std::max<int64_t>(
                                         0, std::min<int64_t>(kSweepMs, next_sweep - NowMs())));
      int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
      if (n < 0 && errno != EINTR) {
        log::Error("http listener: epoll_wait failed", {{"detail", ErrnoText(errno)}});
        break;
      }
      const int64_t now = NowMs();
      touched_.clear();
      for (int i = 0; i < n; ++i) {
        void* mark = events[static_cast<size_t>(i)].data.ptr;
        if (mark == &listen_mark) {
          if (!s_->stopping_.load()) Accept(now);
          continue;
        }
        if (mark == &stop_mark) continue;
        Conn* c = static_cast<Conn*>(mark);
        if (c->dead) continue;
        if (!s_->stopping_.load() && !c->close_after_flush && !c->peer_closed) Read(c);
        Touch(c);
      }
      if (!s_->stopping_.load()) Process(now);
      for (Conn* c : touched_) {
        c->touched = false;
        Finish(c, now);
      }
      if (now >= next_sweep) {
        Sweep(now);
        next_sweep = now + kSweepMs;
        if (accept_paused_until_ != 0 && now >= accept_paused_until_) {
          accept_paused_until_ = 0;
          WatchListener();
        }
      }
      Reap();
    }
    for (auto& [fd, c] : conns_) c->dead = true;
    Reap();
  }

 private:
  static constexpr int64_t kSweepMs = 250;
  static constexpr int64_t kStopFlushMs = 1000;
  static constexpr int64_t kShedAfterMs = 1000;
  // Bytes read from one connection per loop iteration: one busy sender cannot starve the rest.
  static constexpr size_t kReadPerIteration = size_t{256} * 1024;

  bool WatchListener() {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.ptr = &listen_mark;
    listening_ = epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, s_->listen_fd_, &ev) == 0;
    return listening_;
  }

  void StopListening() {
    if (!listening_) return;
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, s_->listen_fd_, nullptr);
    listening_ = false;
  }

  void Touch(Conn* c) {
    if (c->touched) return;
    c->touched = true;
    touched_.push_back(c);
  }

  void Accept(int64_t now) {
    // A bounded number per wake-up, so a burst of connections spreads over the loops.
    for (int i = 0; i < 64; ++i) {
      int fd = accept4(s_->listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: stop watching the socket for a moment instead of spinning on
          // it; the connections wait in the kernel's backlog meanwhile.
          if (now - last_emfile_log_ms_ > 60000) {
            last_emfile_log_ms_ = now;
            log::Error(
                "http listener: cannot accept connections",
                {{"detail", ErrnoText(errno) + ": raise LimitNOFILE in the unit (or ulimit -n)"}});
          }
          StopListening();
          accept_paused_until_ = now + 100;
        }
        return;
      }
      if (!MakeRoom(now)) {
        // Best effort: the socket's send buffer is empty, so this does not block.
        if (!s_->ssl_ctx_) {
          [[maybe_unused]] ssize_t w =
              send(fd, kFullResponse.data(), kFullResponse.size(), MSG_NOSIGNAL);
          shutdown(fd, SHUT_WR);
        }
        close(fd);
        if (now - last_full_log_ms_ > 60000) {
          last_full_log_ms_ = now;
          log::Warn("http listener: listen.max_connections are open; new connections get 503",
                    {{"max_connections", s_->max_connections_}});
        }
        continue;
      }
      int one = 1;
      // Without TCP_NODELAY, Nagle plus the client's delayed ACK cap a keep-alive client near
      // 25 requests/s per connection (measured).
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto conn = std::make_unique<Conn>(s_->parser_limits_);
      conn->fd = fd;
      conn->last_active_ms = now;
      if (s_->ssl_ctx_) {
        conn->ssl.reset(SSL_new(s_->ssl_ctx_.get()));
        if (!conn->ssl || SSL_set_fd(conn->ssl.get(), fd) != 1) {
          ERR_clear_error();
          close(fd);
          continue;
        }
        SSL_set_accept_state(conn->ssl.get());
      }
      epoll_event ev{};
      ev.events = conn->events;
      ev.data.ptr = conn.get();
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        continue;
      }
      s_->open_.fetch_add(1);
      conns_.emplace(fd, std::move(conn));
    }
  }

  // At listen.max_connections: closes the oldest idle keep-alive connection of this loop, else
  // the one whose request has been arriving longest (for at least kShedAfterMs: a hostile holder,
  // or a sender too slow to matter more than a new client). False: nothing to shed.
  bool MakeRoom(int64_t now) {
    if (s_->open_.load() < s_->max_connections_) return true;
    Conn* idle = nullptr;
    Conn* slow = nullptr;
    int64_t slow_started = 0;
    for (auto& [fd, c] : conns_) {
      if (c->dead || !c->counted || c->HasOutput() || c->close_after_flush) continue;
      const bool between = c->request_started_ms == 0 && !c->parser.InRequest();
      if (between && c->requests > 0) {
        if (idle == nullptr || c->last_active_ms < idle->last_active_ms) idle = c.get();
        continue;
      }
      // A request under way, or a connection that has sent nothing yet since it was accepted.
      const int64_t started = between ? c->last_active_ms : c->request_started_ms;
      if (now - started >= kShedAfterMs && (slow == nullptr || started < slow_started)) {
        slow = c.get();
        slow_started = started;
      }
    }
    Conn* victim = idle != nullptr ? idle : slow;
    if (victim == nullptr) return false;
    victim->dead = true;
    victim->counted = false;
    s_->open_.fetch_sub(1);
    return true;
  }

  void Read(Conn* c) {
    char buf[65536];
    size_t got = 0;
    c->tls_wants_write = false;
    while (got < kReadPerIteration) {
      ssize_t n;
      if (c->ssl) {
        ERR_clear_error();
        int r = SSL_read(c->ssl.get(), buf, sizeof(buf));
        if (r <= 0) {
          int err = SSL_get_error(c->ssl.get(), r);
          if (err == SSL_ERROR_WANT_READ) break;
          if (err == SSL_ERROR_WANT_WRITE) {
            c->tls_wants_write = true;
            break;
          }
          if (err == SSL_ERROR_ZERO_RETURN) {
            c->peer_closed = true;
            break;
          }
          // A client speaking plain HTTP to the TLS port, a failed handshake, a reset.
          ERR_clear_error();
          c->dead = true;
          return;
        }
        n = r;
      } else {
        n = recv(c->fd, buf, sizeof(buf), 0);
        if (n == 0) {
          c->peer_closed = true;
          break;
        }
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          c->dead = true;
          return;
        }
      }
      // Bytes alone do not refresh the keep-alive timer: the request timer covers a request
      // under way, and only a completed request (or an answer written) counts as activity.
      c->in.append(buf, static_cast<size_t>(n));
      got += static_cast<size_t>(n);
    }
  }

  // Parses what each touched connection has read, one request per connection per round; the
  // webhooks of a round go to Ingest together (one queue write), the rest is answered at once.
  // Rounds repeat while pipelined requests remain, so answers keep each connection's order.
  void Process(int64_t now) {
    std::vector<Conn*> ready;
    for (Conn* c : touched_) {
      if (!c->dead && !c->close_after_flush && !c->in.empty()) ready.push_back(c);
    }
    std::vector<Conn*> next;
    while (!ready.empty()) {
      calls_.clear();
      owners_.clear();
      next.clear();
      for (Conn* c : ready) {
        if (ParseOne(c, now) && !c->in.empty() && !c->close_after_flush) next.push_back(c);
      }
      if (!calls_.empty()) {
        std::vector<WebhookResponse> responses = s_->handlers_.ingest->HandleBatch(calls_);
        for (size_t i = 0; i < responses.size(); ++i) {
          const WebhookResponse& r = responses[i];
          Respond(owners_[i].conn, owners_[i].request, r.status, "application/json", r.body,
                  r.headers);
        }
      }
      ready.swap(next);
    }
    for (Conn* c : touched_) {
      if (c->in.empty() && c->in.capacity() > kKeepCapacity) std::string().swap(c->in);
    }
  }

  // true: a whole request was taken (answered or added to this round's webhooks).
  bool ParseOne(Conn* c, int64_t now) {
    size_t consumed = 0;
    http1::Parser::State st = c->parser.Feed(c->in, &consumed);
    c->in.erase(0, consumed);
    if (c->parser.WantsContinue()) {
      c->out += "HTTP/1.1 100 Continue\r\n\r\n";
      c->parser.ContinueSent();
    }
    if (st == http1::Parser::State::kNeedMore) {
      if (c->parser.InRequest() && c->request_started_ms == 0) c->request_started_ms = now;
      return false;
    }
    c->request_started_ms = 0;
    if (st == http1::Parser::State::kError) {
      const http1::Error& e = c->parser.error();
      if (e.status == 413) {
        log::Warn("webhook", {{"status", 413}, {"detail", e.detail}});
      }
      RequestInfo none;
      none.keep_alive = false;
      Respond(c, none, e.status, "application/json", ErrorBody(ErrorCode(e.status), e.detail), {});
      return false;
    }
    http1::Request req = c->parser.TakeRequest();
    ++c->requests;
    c->last_active_ms = now;
    RequestInfo info;
    // Decided now, not when the answer is written: a webhook is answered after the round's queue
    // write, and nothing pipelined behind the last request may be read meanwhile (RFC 9112 9.6;
    // a client that sees the close would send it again on a new connection).
    info.keep_alive = req.keep_alive && c->requests < s_->options_.keep_alive_max_requests &&
                      !s_->stopping_.load();
    if (!info.keep_alive) c->close_after_flush = true;
    info.minor_version = req.minor_version;
    info.head = req.method == "HEAD";
    std::string profile;
    std::string tenant;
    if (MatchWebhookPath(req.path, &profile, &tenant)) {
      if (req.method != "POST") {
        Respond(c, info, 405, "application/json",
                ErrorBody("method_not_allowed",
                          req.method + " is not accepted here: webhooks are POSTed"),
                {{"Allow", "POST"}});
        return true;
      }
      const std::string* type = req.Header("Content-Type");
      if (type != nullptr && StartsWithNoCase(*type, "multipart/form-data")) {
        Respond(c, info, 415, "application/json",
                ErrorBody("unsupported_media_type",
                          "multipart bodies are not accepted: send the webhook as JSON or "
                          "application/x-www-form-urlencoded"),
                {});
        return true;
      }
      WebhookCall call;
      call.profile = std::move(profile);
      call.request.method = std::move(req.method);
      call.request.content_type = type != nullptr ? *type : std::string();
      call.request.headers = std::move(req.headers);
      call.request.body = std::move(req.body);
      call.request.tenant = std::move(tenant);
      call.request.limits = s_->request_limits_;
      calls_.push_back(std::move(call));
      owners_.push_back({c, info});
      return true;
    }
    const bool get = req.method == "GET" || req.method == "HEAD";
    if (get && req.path == "/healthz") {
      Respond(c, info, 200, "application/json", "{\"status\":\"alive\"}", {});
    } else if (get && req.path == "/metrics") {
      Respond(c, info, 200, kMetricsContentType, Metrics::Global().Render(), {});
    } else if (get && req.path == "/readyz") {
      std::string reason = s_->handlers_.not_ready_reason ? s_->handlers_.not_ready_reason() : "";
      if (reason.empty()) {
        Respond(c, info, 200, "application/json", "{\"status\":\"ready\"}", {});
      } else {
        Respond(c, info, 503, "application/json", ErrorBody("not_ready", reason), {});
      }
    } else {
      Respond(c, info, 404, "application/json",
              ErrorBody("not_found",
                        "no such path: webhooks go to POST /webhooks/{profile}[/{tenant}]"),
              {});
    }
    return true;
  }

  struct RequestInfo {
    bool keep_alive = true;
    int minor_version = 1;
    bool head = false;
  };

  void Respond(Conn* c, const RequestInfo& info, int status, std::string_view content_type,
               const std::string& body,
               const std::vector<std::pair<std::string, std::string>>& headers) {
    // A client that has half-closed still gets every answer it asked for; Finish closes after.
    const bool keep = info.keep_alive;
    std::string& out = c->out;
    out += "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    out += Reason(status);
    out += "\r\nContent-Type: ";
    out += content_type;
    out += "\r\nContent-Length: ";
    out += std::to_string(body.size());
    out += "\r\n";
    for (const auto& [name, value] : headers) {
      out += name;
      out += ": ";
      out += value;
      out += "\r\n";
    }
    if (!keep) {
      out += "Connection: close\r\n";
    } else if (info.minor_version == 0) {
      out += "Connection: keep-alive\r\n";
    }
    out += "\r\n";
    if (!info.head) out += body;
    if (!keep) c->close_after_flush = true;
  }

  // Writes what can be written now and updates the connection's interest and state.
  void Finish(Conn* c, int64_t now) {
    if (c->dead) return;
    Flush(c, now);
    if (c->dead) return;
    // Everything answered: a connection to close, or one whose client has sent EOF (between
    // requests, or half-way through one that can no longer complete), is done.
    const bool stopping = s_->stopping_.load();
    if (!c->HasOutput() && (c->close_after_flush || c->peer_closed || stopping)) {
      c->dead = true;
      return;
    }
    // Stop reading a connection that is only waiting to be closed: level-triggered readiness
    // would otherwise wake the loop for bytes it will never read.
    const bool reading = !c->close_after_flush && !c->peer_closed && !stopping;
    const bool writing = c->HasOutput() || c->tls_wants_write;
    const uint32_t events = (reading ? (EPOLLIN | EPOLLRDHUP) : 0u) | (writing ? EPOLLOUT : 0u);
    if (events != c->events) {
      epoll_event ev{};
      ev.events = events;
      ev.data.ptr = c;
      epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
      c->events = events;
    }
  }

  void Flush(Conn* c, int64_t now) {
    while (c->HasOutput()) {
      const char* data = c->out.data() + c->out_pos;
      const size_t left = c->out.size() - c->out_pos;
      ssize_t n;
      if (c->ssl) {
        ERR_clear_error();
        int r = SSL_write(c->ssl.get(), data, static_cast<int>(std::min<size_t>(left, 1 << 30)));
        if (r <= 0) {
          int err = SSL_get_error(c->ssl.get(), r);
          if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) break;
          ERR_clear_error();
          c->dead = true;
          return;
        }
        n = r;
      } else {
        n = send(c->fd, data, left, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          c->dead = true;
          return;
        }
      }
      c->out_pos += static_cast<size_t>(n);
      c->last_active_ms = now;
      c->write_started_ms = now;
    }
    if (!c->HasOutput()) {
      c->out.clear();
      if (c->out.capacity() > kKeepCapacity) std::string().swap(c->out);
      c->out_pos = 0;
      c->write_started_ms = 0;
    } else if (c->write_started_ms == 0) {
      c->write_started_ms = now;
    }
  }

  // Timeouts: a request that does not arrive whole, an answer that is not taken, an idle
  // keep-alive connection.
  void Sweep(int64_t now) {
    for (auto& [fd, c] : conns_) {
      if (c->dead) continue;
      if (c->HasOutput()) {
        if (now - c->write_started_ms > s_->timeouts_.write_ms) c->dead = true;
        continue;
      }
      if (c->request_started_ms != 0 || c->parser.InRequest()) {
        if (c->request_started_ms == 0) c->request_started_ms = now;
        if (now - c->request_started_ms > s_->timeouts_.read_ms) {
          // Nothing but stray CRLFs: not a request to answer, a connection to drop.
          if (c->parser.OnlyEmptyLines()) {
            c->dead = true;
            continue;
          }
          RequestInfo info;
          info.keep_alive = false;
          Respond(c.get(), info, 408, "application/json",
                  ErrorBody("request_timeout", "the request did not arrive whole within " +
                                                   std::to_string(s_->timeouts_.read_ms) + " ms"),
                  {});
          Touch(c.get());
        }
        continue;
      }
      if (now - c->last_active_ms > int64_t{s_->options_.keep_alive_timeout_s} * 1000) {
        c->dead = true;
      }
    }
    for (Conn* c : touched_) {
      c->touched = false;
      Finish(c, now);
    }
    touched_.clear();
  }

  void Reap() {
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (!it->second->dead) {
        ++it;
        continue;
      }
      // The kernel removes a closed descriptor from the epoll set.
      close(it->first);
      if (it->second->counted) s_->open_.fetch_sub(1);
      it = conns_.erase(it);
    }
  }

  struct Owner {
    Conn* conn;
    RequestInfo request;
  };

  Impl* s_;
  int epoll_fd_ = -1;
  bool listening_ = false;
  int64_t accept_paused_until_ = 0;
  int64_t last_emfile_log_ms_ = 0;
  int64_t last_full_log_ms_ = 0;
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> touched_;
  std::vector<WebhookCall> calls_;
  std::vector<Owner> owners_;
};

HttpServer::Impl::~Impl() {
  loops_.clear();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

Status HttpServer::Impl::LoadTls() {
  auto fail = [] {
    ERR_clear_error();
    return Error::Invalid(
        "cannot load listen.tls_cert_file / listen.tls_key_file: check both "
        "paths and that the key matches the certificate");
  };
  ssl_ctx_.reset(SSL_CTX_new(TLS_server_method()));
  if (!ssl_ctx_) return fail();
  SSL_CTX_set_min_proto_version(ssl_ctx_.get(), TLS1_2_VERSION);
  // Forward secrecy only (listen.tls_ciphers, Mozilla "intermediate" by default); DHE suites get
  // OpenSSL's built-in groups sized to the certificate's key.
  if (SSL_CTX_set_cipher_list(ssl_ctx_.get(), options_.tls_ciphers.c_str()) != 1) {
    ERR_clear_error();
    ssl_ctx_.reset();
    return Error::Invalid("listen.tls_ciphers \"" + options_.tls_ciphers +
                          "\" names no cipher OpenSSL supports: use an OpenSSL cipher list, e.g. "
                          "the default (Mozilla intermediate)");
  }
  SSL_CTX_set_dh_auto(ssl_ctx_.get(), 1);
  SSL_CTX_set_options(ssl_ctx_.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ssl_ctx_.get(),
                   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ssl_ctx_.get(), options_.tls_cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ssl_ctx_.get(), options_.tls_key_file.c_str(),
                                  SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ssl_ctx_.get()) != 1) {
    ssl_ctx_.reset();
    return fail();
  }
  return {};
}

Status HttpServer::Impl::Bind(int* port) {
  max_connections_ = options_.max_connections;
  if (max_connections_ <= 0) {
    // Descriptors kept back for Redis, the SCIM and HRIS clients, logs, the config and the loops.
    constexpr rlim_t kReserve = 128;
    rlimit nofile{};
    rlim_t limit = 1024;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
      limit = nofile.rlim_cur;
    } else if (nofile.rlim_cur == RLIM_INFINITY) {
      limit = 1 << 20;
    }
    max_connections_ = static_cast<int>(
        std::min<rlim_t>(limit > 2 * kReserve ? limit - kReserve : limit / 2, 1 << 20));
    log::Info("http listener: connections capped below the open-file limit",
              {{"max_connections", max_connections_}});
  }
  if (!options_.tls_cert_file.empty() || !options_.tls_key_file.empty()) {
    if (Status s = LoadTls(); !s.ok()) return s;
  }
  auto fail = [&](int err) {
    return Error::Invalid("cannot listen on " + options_.address + ":" +
                          std::to_string(options_.port) + ": " +
                          (err != 0 ? ErrnoText(err) : "address in use or not available") +
                          " (listen.address / listen.port)");
  };
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(options_.port);
  int rc = getaddrinfo(options_.address.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) {
    return Error::Invalid("cannot listen on " + options_.address + ":" + service + ": " +
                          gai_strerror(rc) + " (listen.address / listen.port)");
  }
  int err = 0;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
      err = errno;
      close(fd);
      continue;
    }
    listen_fd_ = fd;
    break;
  }
  freeaddrinfo(found);
  if (listen_fd_ < 0) return fail(err);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  if (getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
    *port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                        : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0)
    return Error::Permanent(std::string("cannot create the listener's stop event: ") +
                            ErrnoText(errno));
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    auto loop = std::make_unique<Loop>(this);
    if (!loop->Init()) {
      int err = errno;
      loops_.clear();
      return Error::Permanent("cannot create the listener's event loops (listen.threads " +
                              std::to_string(options_.threads) + "): " + ErrnoText(err) +
                              "; raise LimitNOFILE or lower listen.threads");
    }
    loops_.push_back(std::move(loop));
  }
  return {};
}

void HttpServer::Impl::Serve() {
  {
    std::lock_guard lock(serve_mu_);
    if (stopping_.load() || listen_fd_ < 0 || loops_.empty()) return;
    serving_ = true;
  }
  // A TLS write to a client that has gone raises SIGPIPE (OpenSSL writes with write(2)); the
  // error return is handled, the signal would end the process.
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::thread> threads;
  for (size_t i = 1; i < loops_.size(); ++i) threads.emplace_back([this, i] { loops_[i]->Run(); });
  loops_[0]->Run();
  for (auto& t : threads) t.join();
  loops_.clear();
  close(listen_fd_);
  listen_fd_ = -1;
  std::lock_guard lock(serve_mu_);
  serving_ = false;
  serve_cv_.notify_all();
}

void HttpServer::Impl::Stop() {
  std::unique_lock lock(serve_mu_);
  stopping_ = true;
  if (stop_fd_ >= 0) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t w = write(stop_fd_, &one, sizeof(one));
  }
  serve_cv_.wait(lock, [&] { return !serving_; });
}

HttpServer::HttpServer(const config::ListenOptions& options, HttpHandlers handlers,
                       HttpTimeouts timeouts)
    : impl_(std::make_unique<Impl>(options, std::move(handlers), timeouts)) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Bind() { return impl_->Bind(&port_); }

void HttpServer::Serve() { impl_->Serve(); }

void HttpServer::Stop() {
  if (impl_) impl_->Stop();
}

}  // namespace scimsync::daemon
