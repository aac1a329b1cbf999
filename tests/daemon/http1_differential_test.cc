// Differential test of the listener's HTTP/1.1 framing against llhttp, the parser of Node's http
// server (the strictest widely deployed one): a corpus of raw requests -- request-smuggling
// classics, leniencies llhttp refuses, valid edge cases -- each sent alone and with a second
// request pipelined behind it, to
//   - a small Node server (http1_differential/llhttp_echo.js) that echoes each request it parsed,
//   - the http1::Parser in process (method, target and body of each request), and
//   - the real scimsyncd binary over TCP (how many requests it answered, and whether it refused).
// The rules: scimsyncd never accepts a request llhttp rejects, and every request both accept is
// the same request (same method, target and body: they agree where it ends). Being stricter than
// llhttp is allowed. Exceptions are listed in kExceptions with the reason.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "daemon_fixture.h"
#include "http1.h"

namespace scimsync::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Case {
  std::string name;
  std::string bytes;
};

// What one side made of a case: the requests it parsed, in order, and whether it refused one.
struct Parsed {
  struct Req {
    std::string method;
    std::string target;
    std::string body;
  };
  std::vector<Req> requests;
  bool refused = false;
};

// Cases where scimsyncd may accept what llhttp refuses, with the reason. Empty: none needed.
const std::map<std::string, std::string> kExceptions = {};

std::vector<Case> Corpus() {
  std::vector<Case> base;
  auto add = [&](std::string name, std::string bytes) {
    base.push_back({std::move(name), std::move(bytes)});
  };
  const std::string get = "GET /d HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string post = "POST /d HTTP/1.1\r\nHost: a\r\n";
  const std::string chunked = post + "Transfer-Encoding: chunked\r\n\r\n";

  // --- Valid edge cases.
  add("get", get);
  add("post-cl", post + "Content-Length: 5\r\n\r\nhello");
  add("post-cl0", post + "Content-Length: 0\r\n\r\n");
  add("post-no-body", post + "\r\n");
  add("post-cl-leading-zeros", post + "Content-Length: 005\r\n\r\nhello");
  add("post-cl-ows", post + "Content-Length: \t5 \r\n\r\nhello");
  add("chunked", chunked + "5\r\nhello\r\n0\r\n\r\n");
  add("chunked-multi", chunked + "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n");
  add("chunked-hex-upper", chunked + "A\r\n0123456789\r\n0\r\n\r\n");
  add("chunked-hex-lower", chunked + "a\r\n0123456789\r\n0\r\n\r\n");
  add("chunked-leading-zeros", chunked + "0005\r\nhello\r\n000\r\n\r\n");
  add("chunked-ext", chunked + "5;a=b\r\nhello\r\n0\r\n\r\n");
  add("chunked-ext-flag", chunked + "5;a\r\nhello\r\n0\r\n\r\n");
  add("chunked-ext-quoted", chunked + "5;a=\"b;c\"\r\nhello\r\n0\r\n\r\n");
  add("chunked-ext-quoted-escape", chunked + "5;a=\"q\\\"x\"\r\nhello\r\n0\r\n\r\n");
  add("chunked-ext-several", chunked + "5;a=b;c;d=\"\"\r\nhello\r\n0;z\r\n\r\n");
  add("chunked-trailer", chunked + "5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n");
  add("chunked-te-case", post + "Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  add("http10", "GET /d HTTP/1.0\r\n\r\n");
  add("http10-keepalive", "GET /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  add("http10-cl", "POST /d HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi");
  add("query", "GET /d?x=1&y=%20 HTTP/1.1\r\nHost: a\r\n\r\n");
  add("absolute-form", "GET http://a/d?q HTTP/1.1\r\nHost: a\r\n\r\n");
  add("options-asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
  add("methods-put", "PUT /d HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx");
  add("methods-delete", "DELETE /d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("methods-patch", "PATCH /d HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx");
  add("methods-options", "OPTIONS /d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("methods-trace", "TRACE /d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("header-empty-value", "GET /d HTTP/1.1\r\nHost: a\r\nX-E:\r\n\r\n");
  add("header-ows", "GET /d HTTP/1.1\r\nHost: a\r\nX-E: \t v \t\r\n\r\n");
  add("header-obs-text", "GET /d HTTP/1.1\r\nHost: a\r\nX-E: \x80\xff\r\n\r\n");
  add("header-colon-in-value", "GET /d HTTP/1.1\r\nHost: a\r\nX-E: a:b\r\n\r\n");
  add("header-tchar-name", "GET /d HTTP/1.1\r\nHost: a\r\nX!#$%&'*+-.^_`|~: 1\r\n\r\n");
  add("leading-crlf", "\r\n" + get);
  add("leading-crlf-4", "\r\n\r\n\r\n\r\n" + get);
  add("expect-continue", post + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi");
  add("connection-keepalive", "GET /d HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
  add("pipelined-3", get + get + get);
  add("host-empty", "GET /d HTTP/1.1\r\nHost:\r\n\r\n");
  add("many-headers", [] {
    std::string r = "GET /d HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 90; ++i) r += "X-" + std::to_string(i) + ": v\r\n";
    return r + "\r\n";
  }());

  // --- Request smuggling classics.
  add("cl-te", post + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG");
  add("te-cl", post + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1\r\nZ\r\n0\r\n\r\n");
  add("te-te-xchunked",
      post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n");
  add("te-space-before-colon", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n");
  add("te-tab-value", post + "Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n");
  add("te-vtab-value", post +
                           "Transfer-Encoding:\x0b"
                           "chunked\r\n\r\n0\r\n\r\n");
  add("te-leading-space-name", post + " Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  add("te-obs-fold", post + "X: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  add("te-obs-fold-value", post + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n");
  add("te-chunked-gzip", post + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n");
  add("te-gzip-chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
  add("te-identity", post + "Transfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nx");
  add("te-xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n");
  add("te-chunked-x", post + "Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n");
  add("te-quoted", post + "Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n");
  add("te-chunked-twice", post +
                              "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "0\r\n\r\n");
  add("te-http10", "POST /d HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  add("te-nul", post + std::string("Transfer-Encoding: chunked\0\r\n\r\n0\r\n\r\n", 34));
  add("cl-twice-equal", post + "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx");
  add("cl-twice-differ", post + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nxy");
  add("cl-list", post + "Content-Length: 1, 1\r\n\r\nx");
  add("cl-plus", post + "Content-Length: +1\r\n\r\nx");
  add("cl-minus", post + "Content-Length: -1\r\n\r\nx");
  add("cl-hex", post + "Content-Length: 0x1\r\n\r\nx");
  add("cl-space-inside", post + "Content-Length: 1 1\r\n\r\nxxxxxxxxxxx");
  add("cl-empty", post + "Content-Length:\r\n\r\n");
  add("cl-space-before-colon", post + "Content-Length : 1\r\n\r\nx");
  add("cl-overflow", post + "Content-Length: 99999999999999999999999\r\n\r\nx");
  add("cl-short-body-leftover",
      post + "Content-Length: 2\r\n\r\nhiGET /d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("cl-long-claim", post + "Content-Length: 20\r\n\r\nGET /d HTTP/1.1\r\n\r\n");
  add("get-with-body", "GET /d HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
  add("chunk-size-overflow", chunked + "ffffffffffffffffff\r\nx\r\n0\r\n\r\n");
  add("chunk-size-negative", chunked + "-1\r\nx\r\n0\r\n\r\n");
  add("chunk-size-0x", chunked + "0x5\r\nhello\r\n0\r\n\r\n");
  add("chunk-size-space", chunked + "5 \r\nhello\r\n0\r\n\r\n");
  add("chunk-size-leading-space", chunked + " 5\r\nhello\r\n0\r\n\r\n");
  add("chunk-size-empty", chunked + "\r\nhello\r\n0\r\n\r\n");
  add("chunk-data-too-long", chunked + "3\r\nhello\r\n0\r\n\r\n");
  add("chunk-data-too-short", chunked + "7\r\nhello\r\n0\r\n\r\n");
  add("chunk-missing-last", chunked + "5\r\nhello\r\n" + get);

  // --- Leniencies llhttp refuses.
  add("bare-lf-request-line", "GET /d HTTP/1.1\nHost: a\r\n\r\n");
  add("bare-lf-header", "GET /d HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n");
  add("bare-lf-end", "GET /d HTTP/1.1\r\nHost: a\r\n\n");
  add("bare-lf-all", "GET /d HTTP/1.1\nHost: a\n\n");
  add("bare-lf-leading", "\n" + get);
  add("bare-lf-chunk-size", chunked + "5\nhello\r\n0\r\n\r\n");
  add("bare-lf-after-chunk", chunked + "5\r\nhello\n0\r\n\r\n");
  add("bare-lf-last-chunk", chunked + "5\r\nhello\r\n0\n\r\n");
  add("bare-lf-trailer", chunked + "5\r\nhello\r\n0\r\nX: 1\n\r\n");
  add("bare-lf-trailer-end", chunked + "5\r\nhello\r\n0\r\n\n");
  add("bare-cr-request-line", "GET /d HTTP/1.1\rHost: a\r\n\r\n");
  add("bare-cr-header", "GET /d HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n");
  add("bare-cr-value", "GET /d HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n");
  add("bare-cr-after-chunk", chunked + "5\r\nhello\r0\r\n\r\n");
  add("chunk-ext-bare-semicolon", chunked + "5;\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-double-semicolon", chunked + "5;;a\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-space", chunked + "5 ;a\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-space-after", chunked + "5; a\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-ctl", chunked + "5;a\x01\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-ctl-value", chunked + "5;a=\x01\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-ctl-quoted", chunked + "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-lf-quoted", chunked + "5;a=\"b\nc\"\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-unterminated", chunked + "5;a=\"b\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-empty-value", chunked + "5;a=\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-no-name", chunked + "5;=b\r\nhello\r\n0\r\n\r\n");
  add("chunk-ext-del", chunked + "5;a=b\x7f\r\nhello\r\n0\r\n\r\n");
  add("header-value-ctl-01", "GET /d HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n");
  add("header-value-ctl-1f", "GET /d HTTP/1.1\r\nHost: a\r\nX: a\x1f\r\n\r\n");
  add("header-value-del", "GET /d HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n");
  add("header-value-nul", std::string("GET /d HTTP/1.1\r\nHost: a\r\nX: a\0\r\n\r\n", 32));
  add("header-value-vtab",
      "GET /d HTTP/1.1\r\nHost: a\r\nX: a\x0b"
      "b\r\n\r\n");
  add("header-value-ff",
      "GET /d HTTP/1.1\r\nHost: a\r\nX: a\x0c"
      "b\r\n\r\n");
  add("header-name-ctl", "GET /d HTTP/1.1\r\nHost: a\r\nX\x01: 1\r\n\r\n");
  add("header-name-space", "GET /d HTTP/1.1\r\nHost: a\r\nX Y: 1\r\n\r\n");
  add("header-name-empty", "GET /d HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n");
  add("header-no-colon", "GET /d HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n");
  add("header-name-non-ascii", "GET /d HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: 1\r\n\r\n");
  add("method-unknown", "FOO /d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("method-lowercase", "get /d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("method-connect", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n");
  add("method-propfind", "PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("method-msearch", "M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n");
  add("method-pri", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  add("method-not-token", "G(T /d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("no-host", "GET /d HTTP/1.1\r\n\r\n");
  add("no-host-post", "POST /d HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
  add("two-hosts", "GET /d HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  add("trailer-cl", chunked + "5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n");
  add("trailer-te", chunked + "5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n");
  add("trailer-host", chunked + "5\r\nhello\r\n0\r\nHost: b\r\n\r\n");
  add("trailer-fold", chunked + "5\r\nhello\r\n0\r\nX: 1\r\n 2\r\n\r\n");
  add("trailer-ctl", chunked + "5\r\nhello\r\n0\r\nX: \x01\r\n\r\n");
  add("leading-crlf-many", "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n" + get);
  add("leading-space", " " + get);

  // --- Request line shapes.
  add("rl-double-space", "GET  /d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("rl-tab", "GET\t/d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("rl-trailing-space", "GET /d HTTP/1.1 \r\nHost: a\r\n\r\n");
  add("rl-no-version", "GET /d\r\nHost: a\r\n\r\n");
  add("rl-lower-version", "GET /d http/1.1\r\nHost: a\r\n\r\n");
  add("rl-http09", "GET /d HTTP/0.9\r\nHost: a\r\n\r\n");
  add("rl-http12", "GET /d HTTP/1.2\r\nHost: a\r\n\r\n");
  add("rl-http20", "GET /d HTTP/2.0\r\nHost: a\r\n\r\n");
  add("rl-version-garbage", "GET /d HTTP/1.1x\r\nHost: a\r\n\r\n");
  add("target-relative", "GET d HTTP/1.1\r\nHost: a\r\n\r\n");
  add("target-asterisk-get", "GET * HTTP/1.1\r\nHost: a\r\n\r\n");
  add("target-ctl", "GET /d\x01 HTTP/1.1\r\nHost: a\r\n\r\n");
  add("target-del", "GET /d\x7f HTTP/1.1\r\nHost: a\r\n\r\n");
  add("target-non-ascii", "GET /d\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n");
  add("target-tab", "GET /d\tx HTTP/1.1\r\nHost: a\r\n\r\n");
  add("target-fragment", "GET /d#f HTTP/1.1\r\nHost: a\r\n\r\n");
  add("target-quote", "GET /d\"x HTTP/1.1\r\nHost: a\r\n\r\n");
  add("target-authority", "GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n");

  // Each alone, and with a valid request pipelined behind it: where the first one ends decides
  // what the second one is.
  std::vector<Case> out;
  for (const Case& c : base) {
    out.push_back(c);
    out.push_back({c.name + "+pipelined", c.bytes + get});
  }
  return out;
}

Parsed ParseOurs(std::string_view bytes) {
  Parsed out;
  daemon::http1::Parser parser;
  while (true) {
    size_t consumed = 0;
    const auto state = parser.Feed(bytes, &consumed);
    bytes.remove_prefix(consumed);
    if (state == daemon::http1::Parser::State::kError) {
      out.refused = true;
      return out;
    }
    if (state == daemon::http1::Parser::State::kNeedMore) return out;
    daemon::http1::Request r = parser.TakeRequest();
    out.requests.push_back({r.method, r.target, r.body});
    if (!r.keep_alive) return out;
  }
}

// Sends `bytes`, half-closes, and returns everything the server sent until it closed.
std::string Exchange(int port, const std::string& bytes) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    [[maybe_unused]] ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    const auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[65536];
      const ssize_t r = recv(fd, buf, sizeof(buf), 0);
      if (r <= 0) break;
      got.append(buf, static_cast<size_t>(r));
    }
  }
  close(fd);
  return got;
}

struct Response {
  int status = 0;
  std::string body;
};

// Responses in `raw` (Content-Length framed, or up to EOF without one); 1xx answers skipped.
std::vector<Response> SplitResponses(std::string raw) {
  std::vector<Response> out;
  while (true) {
    const size_t end = raw.find("\r\n\r\n");
    if (end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0) return out;
    Response r;
    std::from_chars(raw.data() + 9, raw.data() + 12, r.status);
    size_t length = 0;
    bool has_length = false;
    const std::string head = raw.substr(0, end);
    for (const char* name : {"\r\nContent-Length: ", "\r\ncontent-length: "}) {
      const size_t at = head.find(name);
      if (at != std::string::npos) {
        has_length = true;
        std::from_chars(head.data() + at + 18, head.data() + head.size(), length);
      }
    }
    if (!has_length && r.status >= 200) length = raw.size() - end - 4;
    r.body = raw.substr(end + 4, length);
    raw.erase(0, std::min(raw.size(), end + 4 + length));
    if (r.status >= 200) out.push_back(std::move(r));
  }
}

std::string Base64Decode(std::string_view in) {
  std::string out;
  int bits = 0;
  uint32_t acc = 0;
  for (const char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+')
      v = 62;
    else if (c == '/')
      v = 63;
    else
      continue;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

Parsed FromNode(const std::string& raw) {
  Parsed out;
  for (const Response& r : SplitResponses(raw)) {
    if (r.status != 200) {
      out.refused = true;
      break;
    }
    rapidjson::Document d;
    d.Parse(r.body.data(), r.body.size());
    if (d.HasParseError() || !d.IsObject()) {
      out.refused = true;
      break;
    }
    out.requests.push_back(
        {d["m"].GetString(), d["u"].GetString(),
         Base64Decode(std::string_view(d["b"].GetString(), d["b"].GetStringLength()))});
  }
  return out;
}

class Http1DifferentialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string script =
        std::string(SCIMSYNC_SOURCE_DIR) + "/tests/daemon/http1_differential/llhttp_echo.js";
    ASSERT_TRUE(node_.Start({"node", script, "0"}, fx_.dir().File("node.log")));
    ASSERT_TRUE(fx_.StartRedis());
    const std::string yaml =
        "listen: {address: 127.0.0.1, port: 0}\nredis: {url: \"" + fx_.redis().url() +
        "\"}\ntarget: {dry_run: true, dry_run_file: " + fx_.dir().File("dry-run.jsonl") +
        "}\nprofiles:\n  - {name: hr, connector: generic, secret_env: S}\n";
    WriteFile(fx_.config_path(), yaml);
    ASSERT_TRUE(fx_.Launch({fx_.Binary(), "--config", fx_.config_path()}, {"S=secret"}))
        << fx_.log();
    node_port_ = WaitForLoggedPort(node_, fx_.dir().File("node.log"),
                                   "llhttp_echo: listening on 127.0.0.1:", 15000);
    ASSERT_GT(node_port_, 0) << ReadFile(fx_.dir().File("node.log"));
  }
  void TearDown() override { node_.Kill(); }

  DaemonFixture fx_;
  Process node_;
  int node_port_ = 0;
};

TEST_F(Http1DifferentialTest, NeverAcceptsWhatLlhttpRejectsAndAgreesWhereRequestsEnd) {
  const std::vector<Case> corpus = Corpus();
  ASSERT_GE(corpus.size(), 200u);
  int both_accept = 0;
  int stricter = 0;
  for (const Case& c : corpus) {
    SCOPED_TRACE(c.name);
    const Parsed ours = ParseOurs(c.bytes);
    const Parsed node = FromNode(Exchange(node_port_, c.bytes));
    const bool excepted = kExceptions.count(c.name) != 0;
    // 1. Every request we parsed, llhttp parsed too, and as the same request.
    if (!excepted) {
      EXPECT_LE(ours.requests.size(), node.requests.size())
          << "scimsyncd accepted a request llhttp refused";
      for (size_t i = 0; i < ours.requests.size() && i < node.requests.size(); ++i) {
        EXPECT_EQ(ours.requests[i].method, node.requests[i].method) << "request " << i;
        EXPECT_EQ(ours.requests[i].target, node.requests[i].target) << "request " << i;
        EXPECT_EQ(ours.requests[i].body, node.requests[i].body) << "request " << i;
      }
    }
    if (ours.requests.size() < node.requests.size()) ++stricter;
    both_accept += static_cast<int>(std::min(ours.requests.size(), node.requests.size()));
    // 2. The listener does what its parser says: one answer per request, and one refusal.
    const std::vector<Response> live = SplitResponses(Exchange(fx_.port(), c.bytes));
    size_t answered = 0;
    while (answered < live.size() &&
           live[answered].body.find("\"not_found\"") != std::string::npos) {
      ++answered;
    }
    EXPECT_EQ(answered, ours.requests.size()) << "scimsyncd answered differently from its parser";
    if (ours.refused) {
      ASSERT_EQ(live.size(), answered + 1) << "one refusal, then the connection closes";
      EXPECT_GE(live.back().status, 400);
    } else {
      EXPECT_EQ(live.size(), answered);
    }
  }
  std::cerr << corpus.size() << " cases: " << both_accept << " requests parsed alike, " << stricter
            << " cases refused by scimsyncd but not by llhttp\n";
}

}  // namespace
}  // namespace scimsync::testing
