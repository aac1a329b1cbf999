// The epoll HTTP/1.1 listener as a client sees it over raw TCP: each route's status and body,
// keep-alive and pipelining framing, webhooks read together sharing one queue write, body limits,
// 100-continue, read and idle timeouts, many idle connections, and Stop(). Responses are read from
// the socket byte for byte (status line, headers, Content-Length body, EOF), so framing is asserted
// exactly; no HTTP client library sits in between.
#include "scimsync/daemon/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "fake_profile.h"
#include "scimsync/clock.h"
#include "scimsync/config.h"
#include "scimsync/daemon/ingest.h"
#include "scimsync/log.h"
#include "test_support.h"

namespace scimsync::daemon {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool Contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

struct HttpResponse {
  std::string version;
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header with this name (case-insensitive), or nullopt.
  std::optional<std::string> Header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (EqualsNoCase(n, name)) return v;
    }
    return std::nullopt;
  }
};

// Takes one complete response off the front of `buf`; false while it is incomplete. The listener
// always frames bodies with Content-Length; 1xx answers have no body.
bool ParseResponse(std::string* buf, HttpResponse* out) {
  const size_t head_end = buf->find("\r\n\r\n");
  if (head_end == std::string::npos) return false;
  const std::string_view head(buf->data(), head_end);
  size_t line_end = head.find("\r\n");
  const std::string_view status_line = head.substr(0, line_end);
  HttpResponse r;
  const size_t sp1 = status_line.find(' ');
  const size_t sp2 = status_line.find(' ', sp1 + 1);
  r.version = std::string(status_line.substr(0, sp1));
  const std::string_view code = status_line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::from_chars(code.data(), code.data() + code.size(), r.status);
  r.reason = sp2 == std::string_view::npos ? "" : std::string(status_line.substr(sp2 + 1));
  while (line_end != std::string_view::npos) {
    const size_t start = line_end + 2;
    line_end = head.find("\r\n", start);
    const std::string_view line = head.substr(start, line_end - start);
    const size_t colon = line.find(':');
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  size_t length = 0;
  if (r.status >= 200) {
    const std::string cl = r.Header("Content-Length").value_or("0");
    std::from_chars(cl.data(), cl.data() + cl.size(), length);
  }
  const size_t body_start = head_end + 4;
  if (buf->size() < body_start + length) return false;
  r.body = buf->substr(body_start, length);
  buf->erase(0, body_start + length);
  *out = std::move(r);
  return true;
}

// A blocking TCP client whose reads all have deadlines.
class RawClient {
 public:
  explicit RawClient(int port, bool nodelay = false) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    if (nodelay) {
      int one = 1;
      setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawClient() {
    if (fd_ >= 0) close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  // The server closed its side (EOF) or reset the connection.
  bool closed() const { return closed_; }
  bool reset() const { return reset_; }
  // Bytes received but not (yet) parsed as a complete response.
  const std::string& pending() const { return buf_; }
  // Every byte received, for failure messages.
  const std::string& raw() const { return raw_; }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }

  // Reads until `n` complete responses (a 1xx counts as one), EOF, or `timeout`; returns the
  // complete ones in order.
  std::vector<HttpResponse> Read(size_t n, milliseconds timeout = 5000ms) {
    const auto deadline = SteadyClock::now() + timeout;
    std::vector<HttpResponse> out;
    while (out.size() < n) {
      HttpResponse r;
      if (ParseResponse(&buf_, &r)) {
        out.push_back(std::move(r));
        continue;
      }
      if (closed_ || !Fill(deadline)) break;
    }
    return out;
  }

  HttpResponse ReadOne(milliseconds timeout = 5000ms) {
    std::vector<HttpResponse> r = Read(1, timeout);
    return r.empty() ? HttpResponse{} : std::move(r[0]);
  }

  // True once the server closed within `timeout`. Bytes arriving meanwhile stay in pending().
  bool WaitClosed(milliseconds timeout = 5000ms) {
    const auto deadline = SteadyClock::now() + timeout;
    while (!closed_) {
      if (!Fill(deadline)) return false;
    }
    return true;
  }

  // True if nothing arrived and the connection was not closed for `wait`.
  bool QuietAndOpenFor(milliseconds wait) {
    const auto deadline = SteadyClock::now() + wait;
    while (!closed_ && buf_.empty()) {
      if (!Fill(deadline)) break;
    }
    return !closed_ && buf_.empty();
  }

 private:
  // One poll + recv within the deadline; false when the deadline passed with nothing new.
  bool Fill(SteadyClock::time_point deadline) {
    for (;;) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int rc = poll(&p, 1, static_cast<int>(left));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return false;
      char chunk[65536];
      const ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n > 0) {
        buf_.append(chunk, static_cast<size_t>(n));
        raw_.append(chunk, static_cast<size_t>(n));
        return true;
      }
      if (n == 0) {
        closed_ = true;
        return true;
      }
      if (errno == EINTR || errno == EAGAIN) continue;
      closed_ = true;
      reset_ = errno == ECONNRESET;
      return true;
    }
  }

  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  bool reset_ = false;
  std::string buf_;
  std::string raw_;
};

std::string Webhook(std::string_view body, std::string_view key = "k",
                    std::string_view extra_headers = "", std::string_view path = "/webhooks/hr") {
  std::string r =
      "POST " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n";
  if (!key.empty()) r += "X-Key: " + std::string(key) + "\r\n";
  r += extra_headers;
  r += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  r += body;
  return r;
}

std::string Get(std::string_view path, std::string_view extra_headers = "",
                std::string_view version = "HTTP/1.1") {
  return "GET " + std::string(path) + " " + std::string(version) + "\r\nHost: 127.0.0.1\r\n" +
         std::string(extra_headers) + "\r\n";
}

constexpr std::string_view kAccepted1 =
    "{\"accepted\":1,\"duplicates\":0,\"ignored\":0,\"trace_id\":\"";

class HttpServerTest : public ::testing::Test {
 protected:
  HttpServerTest()
      : ingest_(
            &profiles_,
            [this](const std::vector<queue::Queue::Batch>& batches) { return Enqueue(batches); },
            &clock_) {
    std::map<std::string, ActiveProfile> m;
    m["hr"] = ActiveProfile{std::make_shared<FakeProfile>(), {"k"}};
    profiles_.Replace(std::move(m));
    log::SetLevel(log::Level::kError);
  }

  ~HttpServerTest() override {
    ReleaseEnqueue();
    StopServer();
    log::SetLevel(log::Level::kInfo);
  }

  static config::ListenOptions Options(int threads = 2) {
    config::ListenOptions o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.threads = threads;
    // Long enough that no test's connection is closed for idleness unless it asks for it.
    o.keep_alive_timeout_s = 30;
    return o;
  }

  void Start(const config::ListenOptions& options = Options(), HttpTimeouts timeouts = {}) {
    HttpHandlers handlers;
    handlers.ingest = &ingest_;
    handlers.not_ready_reason = [this] {
      std::lock_guard lock(mu_);
      return not_ready_;
    };
    server_ = std::make_unique<HttpServer>(options, std::move(handlers), timeouts);
    const Status bound = server_->Bind();
    ASSERT_TRUE(bound.ok()) << bound.error().message;
    port_ = server_->port();
    ASSERT_GT(port_, 0);
    serve_thread_ = std::thread([this] {
      server_->Serve();
      serve_returned_ = true;
    });
  }

  void StopServer() {
    if (server_) server_->Stop();
    if (serve_thread_.joinable()) serve_thread_.join();
  }

  std::unique_ptr<RawClient> Connect(bool nodelay = false) {
    return std::make_unique<RawClient>(port_, nodelay);
  }

  // One request on a fresh connection.
  HttpResponse Exchange(std::string_view request) {
    RawClient c(port_);
    EXPECT_TRUE(c.connected());
    EXPECT_TRUE(c.Send(request));
    return c.ReadOne();
  }

  std::vector<Result<queue::EnqueueOutcome>> Enqueue(
      const std::vector<queue::Queue::Batch>& batches) {
    {
      // The loop thread stops here while a test holds the gate: it reads nothing meanwhile.
      std::unique_lock lock(gate_mu_);
      if (block_next_enqueue_) {
        block_next_enqueue_ = false;
        enqueue_blocked_ = true;
        gate_cv_.notify_all();
        gate_cv_.wait(lock, [this] { return !enqueue_blocked_; });
      }
    }
    std::lock_guard lock(mu_);
    ++enqueue_calls_;
    std::vector<Result<queue::EnqueueOutcome>> out;
    for (const auto& b : batches) {
      queue::EnqueueOutcome o;
      for (const auto& item : *b.items) {
        if (seen_.insert(item.dedup_id).second) {
          stored_.push_back(item);
          ++o.accepted;
        } else {
          ++o.duplicates;
        }
      }
      out.emplace_back(o);
    }
    return out;
  }

  void BlockNextEnqueue() {
    std::lock_guard lock(gate_mu_);
    block_next_enqueue_ = true;
  }
  bool WaitEnqueueBlocked(milliseconds timeout) {
    std::unique_lock lock(gate_mu_);
    return gate_cv_.wait_for(lock, timeout, [this] { return enqueue_blocked_; });
  }
  void ReleaseEnqueue() {
    std::lock_guard lock(gate_mu_);
    block_next_enqueue_ = false;
    enqueue_blocked_ = false;
    gate_cv_.notify_all();
  }

  int EnqueueCalls() {
    std::lock_guard lock(mu_);
    return enqueue_calls_;
  }
  std::vector<queue::Item> Stored() {
    std::lock_guard lock(mu_);
    return stored_;
  }
  void SetNotReady(std::string reason) {
    std::lock_guard lock(mu_);
    not_ready_ = std::move(reason);
  }

  FakeClock clock_;
  ProfileSet profiles_;
  Ingest ingest_;
  std::unique_ptr<HttpServer> server_;
  std::thread serve_thread_;
  std::atomic<bool> serve_returned_{false};
  int port_ = 0;

  std::mutex mu_;
  int enqueue_calls_ = 0;
  std::set<std::string> seen_;
  std::vector<queue::Item> stored_;
  std::string not_ready_;

  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool block_next_enqueue_ = false;
  bool enqueue_blocked_ = false;
};

// ---------------------------------------------------------------------------------------------
// 1. Routes

TEST_F(HttpServerTest, SignedWebhookIsAccepted202) {
  ASSERT_NO_FATAL_FAILURE(Start());
  HttpResponse r = Exchange(Webhook("E1,d1"));
  EXPECT_EQ(r.version, "HTTP/1.1");
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(r.reason, "Accepted");
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_TRUE(StartsWith(r.body, kAccepted1)) << r.body;
  std::vector<queue::Item> stored = Stored();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].profile, "hr");
  EXPECT_EQ(stored[0].employee_key, "E1");
  EXPECT_EQ(stored[0].dedup_id, "d1");
}

TEST_F(HttpServerTest, WebhookWithTenantSegmentIsStoredWithTheTenant) {
  ASSERT_NO_FATAL_FAILURE(Start());
  HttpResponse r = Exchange(Webhook("E1,d1", "k", "", "/webhooks/hr/acme"));
  EXPECT_EQ(r.status, 202) << r.body;
  std::vector<queue::Item> stored = Stored();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].tenant, "acme");
}

TEST_F(HttpServerTest, WrongKeyIs401) {
  ASSERT_NO_FATAL_FAILURE(Start());
  HttpResponse r = Exchange(Webhook("E1,d1", "wrong"));
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.body,
            "{\"error\":\"unauthorized\",\"detail\":\"X-Key does not match any active secret\"}");
  EXPECT_TRUE(Stored().empty());
}

TEST_F(HttpServerTest, UnknownProfileIs404WithJsonError) {
  ASSERT_NO_FATAL_FAILURE(Start());
  HttpResponse r = Exchange(Webhook("E1,d1", "k", "", "/webhooks/payroll"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_EQ(r.body,
            "{\"error\":\"unknown_profile\",\"detail\":\"no profile named 'payroll' is "
            "configured: check the webhook URL against profiles[].name\"}");
}

TEST_F(HttpServerTest, GetOnWebhookPathIs405WithAllowPost) {
  ASSERT_NO_FATAL_FAILURE(Start());
  HttpResponse r = Exchange(Get("/webhooks/hr"));
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.Header("Allow"), "POST");
  EXPECT_TRUE(StartsWith(r.body, "{\"error\":\"method_not_allowed\"")) << r.body;
}

TEST_F(HttpServerTest, UnknownPathIs404Json) {
  ASSERT_NO_FATAL_FAILURE(Start());
  HttpResponse r = Exchange(Get("/nope"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_TRUE(StartsWith(r.body, "{\"error\":\"not_found\",\"detail\":\"")) << r.body;
}

TEST_F(HttpServerTest, HealthzIs200) {
  ASSERT_NO_FATAL_FAILURE(Start());
  HttpResponse r = Exchange(Get("/healthz"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"status\":\"alive\"}");
}

TEST_F(HttpServerTest, ReadyzIs200WhenReadyAnd503WithTheReasonWhenNot) {
  ASSERT_NO_FATAL_FAILURE(Start());
  HttpResponse ready = Exchange(Get("/readyz"));
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "{\"status\":\"ready\"}");

  SetNotReady("redis is unreachable");
  HttpResponse not_ready = Exchange(Get("/readyz"));
  EXPECT_EQ(not_ready.status, 503);
  EXPECT_EQ(not_ready.Header("Content-Type"), "application/json");
  EXPECT_EQ(not_ready.body, "{\"error\":\"not_ready\",\"detail\":\"redis is unreachable\"}");
}

TEST_F(HttpServerTest, MetricsIs200) {
  ASSERT_NO_FATAL_FAILURE(Start());
  HttpResponse r = Exchange(Get("/metrics"));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(StartsWith(r.Header("Content-Type").value_or(""), "text/plain"));
}

// ---------------------------------------------------------------------------------------------
// 2. Keep-alive

TEST_F(HttpServerTest, KeepAliveServesSequentialRequestsOnOneConnection) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(c.connected());
  const std::vector<std::pair<std::string, int>> steps = {
      {Get("/healthz"), 200}, {Webhook("E1,d1"), 202}, {Get("/readyz"), 200}};
  for (const auto& [request, status] : steps) {
    ASSERT_TRUE(c.Send(request));
    HttpResponse r = c.ReadOne();
    EXPECT_EQ(r.status, status);
    // HTTP/1.1 keeps the connection by default: no Connection header needed.
    EXPECT_FALSE(r.Header("Connection").has_value()) << r.Header("Connection").value_or("");
  }
  EXPECT_TRUE(c.QuietAndOpenFor(200ms));
  ASSERT_TRUE(c.Send(Get("/healthz")));
  EXPECT_EQ(c.ReadOne().status, 200);
}

TEST_F(HttpServerTest, ConnectionCloseRequestIsAnsweredWithCloseThenEof) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(c.Send(Get("/healthz", "Connection: close\r\n")));
  HttpResponse r = c.ReadOne();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Connection"), "close");
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(c.pending(), "");
}

TEST_F(HttpServerTest, Http10WithoutKeepAliveGetsEofAfterTheAnswer) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(c.Send(Get("/healthz", "", "HTTP/1.0")));
  HttpResponse r = c.ReadOne();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"status\":\"alive\"}");
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(c.pending(), "");
}

TEST_F(HttpServerTest, Http10WithKeepAliveStaysOpenAndSaysKeepAlive) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(c.Send(Get("/healthz", "Connection: keep-alive\r\n", "HTTP/1.0")));
    HttpResponse r = c.ReadOne();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.Header("Connection"), "keep-alive");
  }
  EXPECT_TRUE(c.QuietAndOpenFor(200ms));
}

// ---------------------------------------------------------------------------------------------
// 3. Pipelining

TEST_F(HttpServerTest, PipelinedRequestsInOneSendAreAnsweredInOrder) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(c.Send(Webhook("E1,d1") + Get("/healthz") + Webhook("E2,d2", "wrong") + Get("/nope") +
                     Webhook("E3,d3")));
  std::vector<HttpResponse> r = c.Read(5);
  ASSERT_EQ(r.size(), 5u) << "pending: " << c.pending();
  EXPECT_EQ(r[0].status, 202);
  EXPECT_TRUE(StartsWith(r[0].body, kAccepted1)) << r[0].body;
  EXPECT_EQ(r[1].status, 200);
  EXPECT_EQ(r[1].body, "{\"status\":\"alive\"}");
  EXPECT_EQ(r[2].status, 401);
  EXPECT_EQ(r[3].status, 404);
  EXPECT_TRUE(StartsWith(r[3].body, "{\"error\":\"not_found\"")) << r[3].body;
  EXPECT_EQ(r[4].status, 202);
  EXPECT_TRUE(StartsWith(r[4].body, kAccepted1)) << r[4].body;
  for (const HttpResponse& x : r) EXPECT_FALSE(x.Header("Connection").has_value());
  std::vector<queue::Item> stored = Stored();
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0].dedup_id, "d1");
  EXPECT_EQ(stored[1].dedup_id, "d3");
  EXPECT_TRUE(c.QuietAndOpenFor(100ms));
}

// RFC 9112 9.6: a server that receives "Connection: close" MUST NOT process further requests on
// that connection. The answer says "Connection: close", so a client that pipelined more assumes
// they were not processed and retries them elsewhere.
TEST_F(HttpServerTest, RequestPipelinedAfterAConnectionCloseWebhookIsNotProcessed) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(c.Send(Webhook("E1,d1", "k", "Connection: close\r\n") + Webhook("E2,d2")));
  std::vector<HttpResponse> r = c.Read(2);
  ASSERT_GE(r.size(), 1u);
  EXPECT_EQ(r[0].status, 202);
  EXPECT_EQ(r[0].Header("Connection"), "close");
  EXPECT_EQ(r.size(), 1u) << "a second answer followed the Connection: close answer; received:\n"
                          << c.raw();
  EXPECT_TRUE(c.WaitClosed());
  std::vector<queue::Item> stored = Stored();
  EXPECT_EQ(stored.size(), 1u) << "the webhook pipelined after Connection: close was enqueued";
}

TEST_F(HttpServerTest, RequestPipelinedAfterAConnectionCloseGetIsNotProcessed) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(c.Send(Get("/healthz", "Connection: close\r\n") + Webhook("E2,d2")));
  std::vector<HttpResponse> r = c.Read(2);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].Header("Connection"), "close");
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_TRUE(Stored().empty());
}

// ---------------------------------------------------------------------------------------------
// 4. Batching

TEST_F(HttpServerTest, WebhooksReadTogetherShareAQueueWrite) {
  ASSERT_NO_FATAL_FAILURE(Start(Options(/*threads=*/1)));
  constexpr int kClients = 50;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect());
    ASSERT_TRUE(clients.back()->connected());
  }
  for (int i = 0; i < kClients; ++i) {
    const std::string n = std::to_string(i);
    std::string body = "E";
    body += n;
    body += ",d";
    body += n;
    ASSERT_TRUE(clients[static_cast<size_t>(i)]->Send(Webhook(body)));
  }
  for (int i = 0; i < kClients; ++i) {
    HttpResponse r = clients[static_cast<size_t>(i)]->ReadOne();
    EXPECT_EQ(r.status, 202) << "client " << i;
    EXPECT_TRUE(StartsWith(r.body, kAccepted1)) << "client " << i << ": " << r.body;
  }
  std::vector<queue::Item> stored = Stored();
  EXPECT_EQ(stored.size(), static_cast<size_t>(kClients));
  std::set<std::string> dedup_ids;
  for (const auto& item : stored) dedup_ids.insert(item.dedup_id);
  EXPECT_EQ(dedup_ids.size(), static_cast<size_t>(kClients));
  const int calls = EnqueueCalls();
  EXPECT_GE(calls, 1);
  EXPECT_LT(calls, kClients) << "every webhook had a queue write of its own";
}

// ---------------------------------------------------------------------------------------------
// 5. Byte by byte

TEST_F(HttpServerTest, WebhookSentOneByteAtATimeIsAccepted) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_, /*nodelay=*/true);
  const std::string request = Webhook("E1,d1\nE2,d2");
  for (char byte : request) ASSERT_TRUE(c.Send(std::string_view(&byte, 1)));
  HttpResponse r = c.ReadOne();
  EXPECT_EQ(r.status, 202);
  EXPECT_TRUE(StartsWith(r.body, "{\"accepted\":2,")) << r.body;
  EXPECT_EQ(Stored().size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// 6. Bodies: chunked, too large

TEST_F(HttpServerTest, ChunkedWebhookBodyIsAccepted) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(
      c.Send("POST /webhooks/hr HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Key: k\r\n"
             "Transfer-Encoding: chunked\r\n\r\n"
             "4\r\nE1,d\r\n7\r\n1\nE2,d2\r\n0\r\n\r\n"));
  HttpResponse r = c.ReadOne();
  EXPECT_EQ(r.status, 202);
  EXPECT_TRUE(StartsWith(r.body, "{\"accepted\":2,")) << r.body;
  std::vector<queue::Item> stored = Stored();
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0].dedup_id, "d1");
  EXPECT_EQ(stored[1].dedup_id, "d2");
  // The connection stays usable after a chunked body.
  ASSERT_TRUE(c.Send(Get("/healthz")));
  EXPECT_EQ(c.ReadOne().status, 200);
}

TEST_F(HttpServerTest, ContentLengthOverMaxBodyBytesIs413BeforeTheBodyIsSent) {
  config::ListenOptions o = Options();
  o.max_body_bytes = 1000;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  RawClient c(port_);
  ASSERT_TRUE(
      c.Send("POST /webhooks/hr HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Key: k\r\n"
             "Content-Length: 1001\r\n\r\n"));
  HttpResponse r = c.ReadOne();
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_EQ(r.Header("Connection"), "close");
  EXPECT_EQ(r.body,
            "{\"error\":\"payload_too_large\",\"detail\":\"the body is larger than "
            "listen.max_body_bytes (1000 bytes)\"}");
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_TRUE(Stored().empty());
}

TEST_F(HttpServerTest, ContentLengthAtMaxBodyBytesIsAccepted) {
  config::ListenOptions o = Options();
  o.max_body_bytes = 1000;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  std::string body = "E1,";
  body += std::string(1000 - body.size(), 'x');
  HttpResponse r = Exchange(Webhook(body));
  EXPECT_EQ(r.status, 202) << r.body;
}

TEST_F(HttpServerTest, ChunkedBodyOverMaxBodyBytesIs413) {
  config::ListenOptions o = Options();
  o.max_body_bytes = 1000;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  RawClient c(port_);
  // Two chunks of 600 bytes: the second size line already takes the body past the limit.
  ASSERT_TRUE(
      c.Send("POST /webhooks/hr HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Key: k\r\n"
             "Transfer-Encoding: chunked\r\n\r\n"
             "258\r\n" +
             std::string(600, 'a') + "\r\n258\r\n"));
  HttpResponse r = c.ReadOne();
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.Header("Connection"), "close");
  EXPECT_TRUE(Contains(r.body, "\"error\":\"payload_too_large\"")) << r.body;
  EXPECT_TRUE(Contains(r.body, "listen.max_body_bytes")) << r.body;
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_TRUE(Stored().empty());
}

// ---------------------------------------------------------------------------------------------
// 7. 100-continue

TEST_F(HttpServerTest, ExpectContinueGets100BeforeTheBodyThen202) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(
      c.Send("POST /webhooks/hr HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Key: k\r\n"
             "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
  HttpResponse interim = c.ReadOne();
  EXPECT_EQ(interim.status, 100);
  EXPECT_EQ(interim.version, "HTTP/1.1");
  EXPECT_EQ(interim.reason, "Continue");
  EXPECT_TRUE(interim.headers.empty());
  EXPECT_TRUE(c.QuietAndOpenFor(50ms)) << "only the 100 before the body: " << c.pending();
  ASSERT_TRUE(c.Send("E1,d1"));
  HttpResponse r = c.ReadOne();
  EXPECT_EQ(r.status, 202);
  EXPECT_TRUE(StartsWith(r.body, kAccepted1)) << r.body;
  EXPECT_EQ(Stored().size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// 8. Timeouts

TEST_F(HttpServerTest, HeadersStoppingHalfWayAre408AfterReadTimeoutThenClosed) {
  ASSERT_NO_FATAL_FAILURE(Start(Options(), HttpTimeouts{300, 300}));
  RawClient c(port_);
  const auto start = SteadyClock::now();
  ASSERT_TRUE(c.Send("POST /webhooks/hr HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Ke"));
  HttpResponse r = c.ReadOne();
  const auto elapsed = SteadyClock::now() - start;
  EXPECT_EQ(r.status, 408);
  EXPECT_EQ(r.reason, "Request Timeout");
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_EQ(r.Header("Connection"), "close");
  EXPECT_TRUE(StartsWith(r.body, "{\"error\":\"request_timeout\",\"detail\":\"")) << r.body;
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 5000ms);
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosedAfterKeepAliveTimeout) {
  config::ListenOptions o = Options();
  o.keep_alive_timeout_s = 1;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  RawClient c(port_);
  ASSERT_TRUE(c.Send(Get("/healthz")));
  EXPECT_EQ(c.ReadOne().status, 200);
  const auto start = SteadyClock::now();
  EXPECT_TRUE(c.WaitClosed(5000ms));
  const auto elapsed = SteadyClock::now() - start;
  EXPECT_EQ(c.pending(), "");
  EXPECT_GE(elapsed, 700ms);
  EXPECT_LT(elapsed, 5000ms);
}

// A client sending only CRLFs used to look idle and refresh the keep-alive timer with each one,
// holding a connection for hours. The request timer starts at its first byte; at the
// timeout a connection that sent nothing but empty lines is closed without an answer.
TEST_F(HttpServerTest, StrayCrlfHolderIsClosedWithinTheReadTimeout) {
  ASSERT_NO_FATAL_FAILURE(Start(Options(), HttpTimeouts{500, 500}));
  RawClient c(port_);
  const auto start = SteadyClock::now();
  ASSERT_TRUE(c.Send("\r\n"));
  std::this_thread::sleep_for(250ms);
  ASSERT_TRUE(c.Send("\r\n"));
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(c.Send("\r"));
  EXPECT_TRUE(c.WaitClosed(3000ms));
  EXPECT_LT(SteadyClock::now() - start, 1500ms);
  EXPECT_EQ(c.raw(), "") << "no answer to a request that never began";
}

// More stray empty lines than a client could plausibly send: 400 at once.
TEST_F(HttpServerTest, ManyLeadingEmptyLinesAre400AndClose) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(c.Send("\r\n\r\n\r\n\r\n\r\n\r\n" + Get("/healthz")));
  EXPECT_EQ(c.ReadOne().status, 400);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(c.pending(), "");
}

// ---------------------------------------------------------------------------------------------
// 8b. The connection cap (listen.max_connections)

// Full of idle keep-alive connections: the oldest one makes room for a new client.
TEST_F(HttpServerTest, AtTheCapTheOldestIdleKeepAliveConnectionIsShed) {
  config::ListenOptions o = Options(1);
  o.max_connections = 4;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(Connect());
    ASSERT_TRUE(idle.back()->Send(Get("/healthz")));
    ASSERT_EQ(idle.back()->ReadOne().status, 200) << i;
    std::this_thread::sleep_for(20ms);  // distinct last-activity times
  }
  RawClient fresh(port_);
  ASSERT_TRUE(fresh.Send(Get("/healthz")));
  EXPECT_EQ(fresh.ReadOne().status, 200);
  EXPECT_TRUE(idle[0]->WaitClosed(2000ms)) << "the oldest idle connection is closed";
  for (size_t i = 1; i < idle.size(); ++i) {
    ASSERT_TRUE(idle[i]->Send(Get("/healthz")));
    EXPECT_EQ(idle[i]->ReadOne().status, 200) << i;
  }
}

// Full of connections whose requests never finish (stray CRLFs, half-sent headers): /healthz and
// /readyz are still answered for a fresh client, by shedding the oldest of the slow senders.
TEST_F(HttpServerTest, HealthChecksAreAnsweredWhileTheCapIsFullOfHostileConnections) {
  config::ListenOptions o = Options(1);
  o.max_connections = 16;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  std::vector<std::unique_ptr<RawClient>> hostile;
  for (int i = 0; i < 16; ++i) {
    hostile.push_back(Connect());
    ASSERT_TRUE(hostile.back()->connected());
    ASSERT_TRUE(hostile.back()->Send(i % 2 == 0 ? std::string("\r\n")
                                                : std::string("POST /webhooks/hr HTTP/1.1\r\nX-")));
  }
  // Freshly started requests are not shed: the cap answers 503 and closes.
  {
    RawClient early(port_);
    HttpResponse r = early.ReadOne(2000ms);
    EXPECT_EQ(r.status, 503) << early.raw();
    EXPECT_EQ(r.Header("Connection"), "close");
    EXPECT_EQ(r.body,
              "{\"error\":\"too_many_connections\",\"detail\":\"listen.max_connections are open; "
              "retry shortly\"}");
    EXPECT_TRUE(early.WaitClosed());
  }
  std::this_thread::sleep_for(1200ms);
  for (const char* path : {"/healthz", "/readyz", "/healthz"}) {
    RawClient c(port_);
    ASSERT_TRUE(c.Send(Get(path)));
    EXPECT_EQ(c.ReadOne(2000ms).status, 200) << path << ": " << c.raw();
  }
  int closed = 0;
  for (auto& h : hostile) closed += h->WaitClosed(100ms) ? 1 : 0;
  // The first check's slot is freed when its client leaves; a later one may find it taken still.
  EXPECT_GE(closed, 1) << "the oldest slow sender is shed for a new client";
  EXPECT_LE(closed, 3);
}

// ---------------------------------------------------------------------------------------------
// 9. Malformed requests

TEST_F(HttpServerTest, MalformedRequestLineIs400ThenEofAndTheServerGoesOn) {
  ASSERT_NO_FATAL_FAILURE(Start());
  {
    RawClient c(port_);
    ASSERT_TRUE(c.Send("this is not http\r\nHost: x\r\n\r\n"));
    HttpResponse r = c.ReadOne();
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.Header("Connection"), "close");
    EXPECT_TRUE(StartsWith(r.body, "{\"error\":\"bad_request\",\"detail\":\"")) << r.body;
    EXPECT_TRUE(c.WaitClosed());
  }
  EXPECT_EQ(Exchange(Get("/healthz")).status, 200);
  EXPECT_EQ(Exchange(Webhook("E1,d1")).status, 202);
}

// After a framing error the connection answers once and closes: what was pipelined behind the
// bad request is never parsed as a request of its own.
TEST_F(HttpServerTest, NothingPipelinedAfterAFramingErrorIsParsed) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n" + Webhook("E1,d1")));
  std::vector<HttpResponse> r = c.Read(2, 2000ms);
  ASSERT_EQ(r.size(), 1u) << c.raw();
  EXPECT_EQ(r[0].status, 400);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_TRUE(Stored().empty());
}

TEST_F(HttpServerTest, UnservedMethodIs501AndHostlessHttp11Is400) {
  ASSERT_NO_FATAL_FAILURE(Start());
  HttpResponse r = Exchange("PROPFIND /webhooks/hr HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(r.status, 501);
  EXPECT_TRUE(StartsWith(r.body, "{\"error\":\"not_implemented\"")) << r.body;
  r = Exchange("GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(Contains(r.body, "Host")) << r.body;
}

// ---------------------------------------------------------------------------------------------
// 10. keep_alive_max_requests

TEST_F(HttpServerTest, KeepAliveMaxRequestsClosesAfterTheLastAllowedAnswer) {
  config::ListenOptions o = Options();
  o.keep_alive_max_requests = 3;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  RawClient c(port_);
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(c.Send(i == 2 ? Webhook("E1,d1") : Get("/healthz")));
    HttpResponse r = c.ReadOne();
    EXPECT_EQ(r.status, i == 2 ? 202 : 200);
    if (i < 3) {
      EXPECT_FALSE(r.Header("Connection").has_value()) << "answer " << i;
    } else {
      EXPECT_EQ(r.Header("Connection"), "close");
    }
  }
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(c.pending(), "");
}

// The limit counted on pipelined webhooks: the third answer says close, so the fourth must not be
// processed (its sender will retry it on a new connection).
TEST_F(HttpServerTest, KeepAliveMaxRequestsAlsoStopsPipelinedWebhooks) {
  config::ListenOptions o = Options();
  o.keep_alive_max_requests = 3;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  RawClient c(port_);
  ASSERT_TRUE(c.Send(Webhook("E1,d1") + Webhook("E2,d2") + Webhook("E3,d3") + Webhook("E4,d4")));
  std::vector<HttpResponse> r = c.Read(4);
  ASSERT_GE(r.size(), 3u);
  EXPECT_FALSE(r[0].Header("Connection").has_value());
  EXPECT_FALSE(r[1].Header("Connection").has_value());
  EXPECT_EQ(r[2].Header("Connection"), "close");
  EXPECT_EQ(r.size(), 3u) << "an answer followed the Connection: close answer; received:\n"
                          << c.raw();
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(Stored().size(), 3u) << "the webhook after the last allowed request was enqueued";
}

// ---------------------------------------------------------------------------------------------
// 11. Many connections

TEST_F(HttpServerTest, ManyIdleKeepAliveConnectionsDoNotDelayANewOne) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr int kIdle = 300;
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < kIdle; ++i) {
    idle.push_back(Connect());
    ASSERT_TRUE(idle.back()->connected()) << i;
    ASSERT_TRUE(idle.back()->Send(Get("/healthz")));
    ASSERT_EQ(idle.back()->ReadOne().status, 200) << i;
  }
  const auto start = SteadyClock::now();
  RawClient fresh(port_);
  ASSERT_TRUE(fresh.Send(Webhook("E1,d1")));
  HttpResponse r = fresh.ReadOne(2000ms);
  EXPECT_EQ(r.status, 202);
  EXPECT_LT(SteadyClock::now() - start, 2000ms);
  // ... and the idle ones are all still served.
  for (int i = 0; i < kIdle; ++i) {
    RawClient& c = *idle[static_cast<size_t>(i)];
    ASSERT_TRUE(c.Send(Get("/healthz")));
    ASSERT_EQ(c.ReadOne().status, 200) << i;
  }
}

// Not enough descriptors for the event loops at start: Bind fails and says what to change,
// rather than a daemon that runs without a listener.
TEST_F(HttpServerTest, TooFewDescriptorsForTheLoopsFailBindNamingTheSettings) {
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  int open_fds = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++open_fds;
  }
  HttpHandlers handlers;
  handlers.ingest = &ingest_;
  HttpServer server(Options(64), std::move(handlers));
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(open_fds + 8);  // the socket, the stop event, a few loops
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  const Status bound = server.Bind();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  ASSERT_FALSE(bound.ok());
  EXPECT_NE(bound.error().message.find("listen.threads 64"), std::string::npos)
      << bound.error().message;
  EXPECT_NE(bound.error().message.find("LimitNOFILE"), std::string::npos);
}

// Out of descriptors (EMFILE): the listener stops accepting for a moment instead of spinning on
// the listening socket, and the connections that waited in the kernel's backlog meanwhile are
// served once descriptors are free again.
TEST_F(HttpServerTest, OutOfDescriptorsPausesAcceptingWithoutSpinningAndRecovers) {
  // One loop, and serving before the limit drops: every thread is running by then (the
  // sanitizers need descriptors of their own when a thread starts).
  ASSERT_NO_FATAL_FAILURE(Start(Options(1)));
  ASSERT_EQ(Exchange(Get("/healthz")).status, 200);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  int open_fds = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++open_fds;
  }
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(open_fds + 8);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  // Clients and the connections the server accepts share this process's descriptors: the server
  // runs out while clients still wait in its backlog.
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 16; ++i) {
    auto c = Connect();
    if (!c->connected()) break;
    clients.push_back(std::move(c));
  }
  ASSERT_FALSE(clients.empty());
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  std::this_thread::sleep_for(300ms);
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  auto cpu_ms = [](const rusage& u) {
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000 +
           (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1000;
  };
  // A loop spinning on the readable listening socket would burn the whole 300 ms.
  EXPECT_LT(cpu_ms(after) - cpu_ms(before), 150);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  for (size_t i = 0; i < clients.size(); ++i) {
    ASSERT_TRUE(clients[i]->Send(Get("/healthz"))) << i;
    EXPECT_EQ(clients[i]->ReadOne(5000ms).status, 200) << "client " << i;
  }
}

// ---------------------------------------------------------------------------------------------
// 12. Stop

TEST_F(HttpServerTest, StopReturnsWithIdleConnectionsOpenAndClientsSeeEof) {
  ASSERT_NO_FATAL_FAILURE(Start());
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(Connect());
    ASSERT_TRUE(clients.back()->Send(Get("/healthz")));
    ASSERT_EQ(clients.back()->ReadOne().status, 200);
  }
  clients.push_back(Connect());  // connected, never sent anything
  ASSERT_TRUE(clients.back()->connected());
  // Make sure the silent one has been accepted: a later connection served implies it.
  EXPECT_EQ(Exchange(Get("/healthz")).status, 200);

  const auto start = SteadyClock::now();
  server_->Stop();
  const auto stop_took = SteadyClock::now() - start;
  EXPECT_LT(stop_took, 5000ms);
  // Serve()'s thread ends (it sets the flag right after Serve() returns).
  ASSERT_TRUE(scimsync::testing::WaitFor([this] { return serve_returned_.load(); }, 5000,
                                         /*interval_ms=*/5))
      << "Serve() did not return after Stop()";
  serve_thread_.join();
  for (size_t i = 0; i < clients.size(); ++i) {
    EXPECT_TRUE(clients[i]->WaitClosed(2000ms)) << "client " << i;
    EXPECT_EQ(clients[i]->pending(), "") << "client " << i;
  }
  RawClient late(port_);
  EXPECT_FALSE(late.connected()) << "the port still accepts connections after Stop()";
}

// A client half-way through a request, and one that keeps sending, do not hold Stop(): nothing
// more is read once it is called, and their connections are closed at once.
TEST_F(HttpServerTest, StopClosesConnectionsInTheMiddleOfARequestAtOnce) {
  ASSERT_NO_FATAL_FAILURE(Start(Options(1)));
  RawClient half(port_);
  ASSERT_TRUE(half.Send("POST /webhooks/hr HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"));
  RawClient chatty(port_);
  ASSERT_TRUE(chatty.Send("POST /webhooks/hr HTTP/1.1\r\nHost: x\r\nX-Filler: "));
  ASSERT_EQ(Exchange(Get("/healthz")).status, 200);  // both have been read by now
  std::atomic<bool> sending{true};
  std::thread feeder([&] {
    while (sending.load() && chatty.Send("a")) std::this_thread::sleep_for(1ms);
  });
  const auto start = SteadyClock::now();
  server_->Stop();
  EXPECT_LT(SteadyClock::now() - start, 1500ms);
  sending = false;
  feeder.join();
  EXPECT_TRUE(half.WaitClosed(2000ms));
  serve_thread_.join();
}

// ---------------------------------------------------------------------------------------------
// 13. Half-close

TEST_F(HttpServerTest, ClientThatShutsDownWriteAfterItsRequestStillGetsTheAnswer) {
  ASSERT_NO_FATAL_FAILURE(Start());
  RawClient c(port_);
  ASSERT_TRUE(c.Send(Webhook("E1,d1")));
  c.ShutdownWrite();
  HttpResponse r = c.ReadOne();
  EXPECT_EQ(r.status, 202);
  EXPECT_TRUE(StartsWith(r.body, kAccepted1)) << r.body;
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(Stored().size(), 1u);
}

// Two complete requests and then EOF (e.g. `printf 'GET ...GET ...' | nc -N`): both are answered.
// The single loop is held inside a queue write while the client sends, so the listener reads the
// two requests and the EOF in one go, deterministically.
TEST_F(HttpServerTest, ClientThatShutsDownWriteAfterPipelinedRequestsGetsEveryAnswer) {
  ASSERT_NO_FATAL_FAILURE(Start(Options(/*threads=*/1)));
  RawClient c(port_);
  ASSERT_TRUE(c.Send(Get("/healthz")));  // accepted and served once
  ASSERT_EQ(c.ReadOne().status, 200);

  BlockNextEnqueue();
  RawClient holder(port_);
  ASSERT_TRUE(holder.Send(Webhook("E0,d0")));
  ASSERT_TRUE(WaitEnqueueBlocked(5000ms));
  ASSERT_TRUE(c.Send(Get("/healthz") + Get("/readyz")));
  c.ShutdownWrite();
  ReleaseEnqueue();
  EXPECT_EQ(holder.ReadOne().status, 202);

  std::vector<HttpResponse> r = c.Read(2);
  ASSERT_GE(r.size(), 1u);
  EXPECT_EQ(r[0].status, 200);
  EXPECT_EQ(r[0].body, "{\"status\":\"alive\"}");
  ASSERT_EQ(r.size(), 2u) << "the second pipelined request was dropped without an answer; "
                             "received:\n"
                          << c.raw();
  EXPECT_EQ(r[1].status, 200);
  EXPECT_EQ(r[1].body, "{\"status\":\"ready\"}");
  EXPECT_TRUE(c.WaitClosed());
}

// ---------------------------------------------------------------------------------------------
// 14. Draining

TEST_F(HttpServerTest, WebhookWhileIngestDrainsIs503WithRetryAfter) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ingest_.SetDraining(true);
  HttpResponse r = Exchange(Webhook("E1,d1"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.Header("Retry-After"), "5");
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_TRUE(StartsWith(r.body, "{\"error\":\"shutting_down\"")) << r.body;
  EXPECT_TRUE(Stored().empty());
  // Health is not affected by draining.
  EXPECT_EQ(Exchange(Get("/healthz")).status, 200);
}

}  // namespace
}  // namespace scimsync::daemon
