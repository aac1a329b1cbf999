// The epoll listener's HTTP/1.1 request parser: what a server built on it relies on -- requests
// arriving in any split (one byte at a time, several per read), keep-alive and 100-continue
// decisions, and for every malformed or oversized request the status to answer, reported as soon
// as the bytes show it.
//
// Every piece handed to Feed is copied into a heap buffer of exactly its size, so AddressSanitizer
// reports any read past the end of `data`.
#include "http1.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace scimsync::daemon::http1 {
namespace {

using State = Parser::State;

struct Outcome {
  State state = State::kNeedMore;
  size_t consumed = 0;  // in total, over all Feed calls
  Request request;
  Error error;
};

State FeedExact(Parser& parser, std::string_view piece, size_t* consumed) {
  const std::vector<char> heap(piece.begin(), piece.end());
  return parser.Feed(std::string_view(heap.data(), heap.size()), consumed);
}

Outcome Finish(Parser& parser, State state, size_t consumed) {
  Outcome out;
  out.state = state;
  out.consumed = consumed;
  if (state == State::kRequest) out.request = parser.TakeRequest();
  if (state == State::kError) out.error = parser.error();
  return out;
}

// Feeds `input` in one call.
Outcome FeedOnce(std::string_view input, Limits limits = {}) {
  Parser parser(limits);
  size_t consumed = 0;
  const State state = FeedExact(parser, input, &consumed);
  return Finish(parser, state, consumed);
}

// Feeds one byte per call until the parser stops asking for more.
Outcome FeedBytewise(std::string_view input, Limits limits = {}) {
  Parser parser(limits);
  size_t total = 0;
  State state = State::kNeedMore;
  for (size_t i = 0; i < input.size() && state == State::kNeedMore; ++i) {
    size_t consumed = 0;
    state = FeedExact(parser, input.substr(i, 1), &consumed);
    EXPECT_EQ(consumed, 1u) << "at byte " << i;
    total += consumed;
  }
  return Finish(parser, state, total);
}

// Every request in `stream`, fed in pieces of `piece` bytes as a server loop would: after
// kRequest the rest of the piece is fed again. Stops at an error, which goes to *error.
std::vector<Request> ParseAll(std::string_view stream, size_t piece, Error* error = nullptr,
                              Limits limits = {}) {
  Parser parser(limits);
  std::vector<Request> requests;
  for (size_t off = 0; off < stream.size();) {
    std::string_view rest = stream.substr(off, piece);
    for (;;) {
      size_t consumed = 0;
      const State state = FeedExact(parser, rest, &consumed);
      EXPECT_LE(consumed, rest.size());
      rest.remove_prefix(consumed);
      off += consumed;
      if (state == State::kError) {
        if (error != nullptr) *error = parser.error();
        return requests;
      }
      if (state == State::kNeedMore) {
        EXPECT_TRUE(rest.empty()) << "kNeedMore must consume everything";
        break;
      }
      requests.push_back(parser.TakeRequest());
      if (rest.empty()) break;
    }
  }
  return requests;
}

void ExpectSameRequest(const Request& a, const Request& b) {
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.target, b.target);
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.minor_version, b.minor_version);
  EXPECT_EQ(a.headers, b.headers);
  EXPECT_EQ(a.body, b.body);
  EXPECT_EQ(a.keep_alive, b.keep_alive);
}

// `input` fails with `status`, whether it arrives at once or one byte at a time; returns the
// error's detail.
std::string ExpectError(std::string_view input, int status, Limits limits = {}) {
  SCOPED_TRACE(::testing::Message() << "input: \"" << input << "\"");
  const Outcome once = FeedOnce(input, limits);
  EXPECT_EQ(once.state, State::kError);
  EXPECT_EQ(once.error.status, status) << once.error.detail;
  EXPECT_FALSE(once.error.detail.empty());
  const Outcome bytes = FeedBytewise(input, limits);
  EXPECT_EQ(bytes.state, State::kError);
  EXPECT_EQ(bytes.error.status, status) << bytes.error.detail;
  EXPECT_EQ(bytes.error.detail, once.error.detail);
  return once.error.detail;
}

// A request that parses, at once and byte by byte, to the same result; returns it.
Request ExpectRequest(std::string_view input, Limits limits = {}) {
  SCOPED_TRACE(::testing::Message() << "input: \"" << input << "\"");
  Outcome once = FeedOnce(input, limits);
  EXPECT_EQ(once.state, State::kRequest) << once.error.detail;
  EXPECT_EQ(once.consumed, input.size());
  const Outcome bytes = FeedBytewise(input, limits);
  EXPECT_EQ(bytes.state, State::kRequest) << bytes.error.detail;
  EXPECT_EQ(bytes.consumed, input.size());
  ExpectSameRequest(once.request, bytes.request);
  return std::move(once.request);
}

std::string Get(std::string_view extra_headers = "", std::string_view version = "HTTP/1.1") {
  return "GET / " + std::string(version) + "\r\nHost: a\r\n" + std::string(extra_headers) + "\r\n";
}

std::string PostWithLength(std::string_view body, std::string_view extra_headers = "") {
  return "POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(extra_headers) + "\r\n" + std::string(body);
}

std::string ChunkedHead(std::string_view extra_headers = "") {
  return "POST /w HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" +
         std::string(extra_headers) + "\r\n";
}

const std::string kPost =
    "POST /webhooks/hr?x=1 HTTP/1.1\r\n"
    "Host: scimsync.example\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "{\"id\":\"e-42\"}";

const std::string kChunked =
    "POST /webhooks/hr HTTP/1.1\r\n"
    "Host: scimsync.example\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5;name=value\r\n"
    "hello\r\n"
    "6;a=\"b;c\";d\r\n"
    " world\r\n"
    "a\r\n"
    "0123456789\r\n"
    "1A\r\n"
    "abcdefghijklmnopqrstuvwxyz\r\n"
    "0;last\r\n"
    "X-Checksum: abc\r\n"
    "X-Other: 1\r\n"
    "\r\n";

// --- Requests that parse. ---

TEST(Http1ParserTest, SimplePostWithContentLength) {
  const Request r = ExpectRequest(kPost);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/webhooks/hr?x=1");
  EXPECT_EQ(r.path, "/webhooks/hr");
  EXPECT_EQ(r.minor_version, 1);
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"Host", "scimsync.example"}, {"Content-Type", "application/json"}, {"Content-Length", "13"}};
  EXPECT_EQ(r.headers, headers);
  EXPECT_EQ(r.body, "{\"id\":\"e-42\"}");
  EXPECT_TRUE(r.keep_alive);
}

TEST(Http1ParserTest, ByteByByteGivesSameRequest) {
  Parser parser;
  for (size_t i = 0; i + 1 < kPost.size(); ++i) {
    size_t consumed = 0;
    ASSERT_EQ(FeedExact(parser, kPost.substr(i, 1), &consumed), State::kNeedMore) << i;
    ASSERT_EQ(consumed, 1u);
    EXPECT_TRUE(parser.InRequest()) << i;
  }
  size_t consumed = 0;
  ASSERT_EQ(FeedExact(parser, kPost.substr(kPost.size() - 1), &consumed), State::kRequest);
  EXPECT_EQ(consumed, 1u);
  ExpectSameRequest(parser.TakeRequest(), FeedOnce(kPost).request);
}

TEST(Http1ParserTest, GetWithoutBodyCompletesAtEndOfHeaders) {
  const std::string get = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
  // ExpectRequest feeds byte by byte and stops at the first kRequest: it must be the last byte.
  const Request r = ExpectRequest(get);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/health");
  EXPECT_TRUE(r.body.empty());

  // Bytes after the empty line belong to the next request, not to this one.
  const Outcome with_more = FeedOnce(get + "GET /");
  EXPECT_EQ(with_more.state, State::kRequest);
  EXPECT_EQ(with_more.consumed, get.size());
}

TEST(Http1ParserTest, ContentLengthZeroCompletesAtEndOfHeaders) {
  const std::string post = PostWithLength("");
  EXPECT_EQ(FeedOnce(post + "GET").consumed, post.size());
  EXPECT_TRUE(ExpectRequest(post).body.empty());
}

TEST(Http1ParserTest, TwoPipelinedRequestsInOneBuffer) {
  const std::string second = Get();
  const std::string buffer = kPost + second;
  Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed(buffer, &consumed), State::kRequest);
  EXPECT_EQ(consumed, kPost.size());
  EXPECT_EQ(parser.TakeRequest().method, "POST");
  ASSERT_EQ(parser.Feed(std::string_view(buffer).substr(consumed), &consumed), State::kRequest);
  EXPECT_EQ(consumed, second.size());
  EXPECT_EQ(parser.TakeRequest().method, "GET");
  EXPECT_FALSE(parser.InRequest());
}

TEST(Http1ParserTest, ThreePipelinedRequestsInOneBuffer) {
  const std::string parts[] = {Get("X-N: 1\r\n"), kChunked, PostWithLength("third", "X-N: 3\r\n")};
  const std::string buffer = parts[0] + parts[1] + parts[2];
  Parser parser;
  std::string_view rest = buffer;
  std::vector<Request> requests;
  for (const std::string& part : parts) {
    size_t consumed = 0;
    ASSERT_EQ(parser.Feed(rest, &consumed), State::kRequest);
    EXPECT_EQ(consumed, part.size());
    rest.remove_prefix(consumed);
    requests.push_back(parser.TakeRequest());
  }
  EXPECT_TRUE(rest.empty());
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(*requests[0].Header("X-N"), "1");
  EXPECT_EQ(requests[1].body, "hello world0123456789abcdefghijklmnopqrstuvwxyz");
  EXPECT_EQ(*requests[2].Header("X-N"), "3");
  EXPECT_EQ(requests[2].body, "third");
}

TEST(Http1ParserTest, PipelinedRequestSplitAcrossReads) {
  const std::string second = PostWithLength("0123456789");
  const std::string buffer = kPost + second.substr(0, 20);
  Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed(buffer, &consumed), State::kRequest);
  ASSERT_EQ(consumed, kPost.size());
  parser.TakeRequest();
  ASSERT_EQ(parser.Feed(std::string_view(buffer).substr(consumed), &consumed), State::kNeedMore);
  EXPECT_EQ(consumed, 20u);
  EXPECT_TRUE(parser.InRequest());
  ASSERT_EQ(parser.Feed(std::string_view(second).substr(20), &consumed), State::kRequest);
  EXPECT_EQ(consumed, second.size() - 20);
  EXPECT_EQ(parser.TakeRequest().body, "0123456789");
}

TEST(Http1ParserTest, EverySplitGivesSameRequests) {
  const std::string stream = "\r\n" + kPost + kChunked + Get("Connection: close\r\n") +
                             PostWithLength("x") + ChunkedHead() + "0\r\n\r\n";
  const std::vector<Request> expected = ParseAll(stream, stream.size());
  ASSERT_EQ(expected.size(), 5u);
  for (size_t piece = 1; piece <= stream.size(); ++piece) {
    SCOPED_TRACE(::testing::Message() << "pieces of " << piece);
    const std::vector<Request> got = ParseAll(stream, piece);
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) ExpectSameRequest(got[i], expected[i]);
  }
  // Two reads split at every position.
  for (size_t split = 1; split < stream.size(); ++split) {
    SCOPED_TRACE(::testing::Message() << "split at " << split);
    Parser parser;
    std::vector<Request> got;
    for (std::string_view read :
         {std::string_view(stream).substr(0, split), std::string_view(stream).substr(split)}) {
      size_t consumed = 0;
      while (FeedExact(parser, read, &consumed) == State::kRequest) {
        got.push_back(parser.TakeRequest());
        read.remove_prefix(consumed);
      }
      EXPECT_EQ(consumed, read.size());
    }
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) ExpectSameRequest(got[i], expected[i]);
  }
}

TEST(Http1ParserTest, FeedWhileARequestWaitsConsumesNothing) {
  Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed(Get() + Get(), &consumed), State::kRequest);
  ASSERT_EQ(parser.Feed("GET", &consumed), State::kRequest);
  EXPECT_EQ(consumed, 0u);
  EXPECT_EQ(parser.TakeRequest().method, "GET");
  EXPECT_EQ(parser.Feed("", &consumed), State::kNeedMore);
  EXPECT_EQ(consumed, 0u);
}

TEST(Http1ParserTest, ChunkedWithExtensionsAndTrailers) {
  const Request r = ExpectRequest(kChunked);
  EXPECT_EQ(r.body, "hello world0123456789abcdefghijklmnopqrstuvwxyz");
  EXPECT_EQ(*r.Header("Transfer-Encoding"), "chunked");
  // Trailers are checked, then dropped: they never reach the headers.
  EXPECT_EQ(r.Header("X-Checksum"), nullptr);
  EXPECT_EQ(r.headers.size(), 2u);
}

TEST(Http1ParserTest, ChunkedFedByteByByte) {
  Parser parser;
  for (size_t i = 0; i + 1 < kChunked.size(); ++i) {
    size_t consumed = 0;
    ASSERT_EQ(FeedExact(parser, kChunked.substr(i, 1), &consumed), State::kNeedMore) << i;
    ASSERT_EQ(consumed, 1u);
  }
  size_t consumed = 0;
  ASSERT_EQ(FeedExact(parser, kChunked.substr(kChunked.size() - 1), &consumed), State::kRequest);
  EXPECT_EQ(parser.TakeRequest().body, "hello world0123456789abcdefghijklmnopqrstuvwxyz");
}

TEST(Http1ParserTest, ChunkedWithoutTrailers) {
  EXPECT_EQ(ExpectRequest(ChunkedHead() + "3\r\nabc\r\n0\r\n\r\n").body, "abc");
  EXPECT_EQ(ExpectRequest(ChunkedHead() + "0\r\n\r\n").body, "");
  EXPECT_EQ(ExpectRequest(ChunkedHead() + "00003\r\nabc\r\n000\r\n\r\n").body, "abc");
  EXPECT_EQ(
      ExpectRequest("POST /w HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED \r\n\r\n0\r\n\r\n")
          .body,
      "");
}

TEST(Http1ParserTest, Http10KeepsAliveOnlyWhenAsked) {
  const Request plain = ExpectRequest(Get("", "HTTP/1.0"));
  EXPECT_EQ(plain.minor_version, 0);
  EXPECT_FALSE(plain.keep_alive);
  EXPECT_TRUE(ExpectRequest(Get("Connection: keep-alive\r\n", "HTTP/1.0")).keep_alive);
  EXPECT_TRUE(ExpectRequest(Get("Connection: Keep-Alive\r\n", "HTTP/1.0")).keep_alive);
  EXPECT_TRUE(ExpectRequest(Get("Connection: foo, keep-alive\r\n", "HTTP/1.0")).keep_alive);
  EXPECT_FALSE(ExpectRequest(Get("Connection: keep-alive, close\r\n", "HTTP/1.0")).keep_alive);
  EXPECT_FALSE(ExpectRequest(Get("Connection: keep-alives\r\n", "HTTP/1.0")).keep_alive);
  // A 1.0 body can only be framed by Content-Length.
  const Request post = ExpectRequest("POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_EQ(post.body, "hi");
  EXPECT_FALSE(post.keep_alive);
}

TEST(Http1ParserTest, Http11KeepsAliveUnlessClose) {
  EXPECT_TRUE(ExpectRequest(Get()).keep_alive);
  EXPECT_FALSE(ExpectRequest(Get("Connection: close\r\n")).keep_alive);
  EXPECT_FALSE(ExpectRequest(Get("Connection: CLOSE\r\n")).keep_alive);
  EXPECT_FALSE(ExpectRequest(Get("Connection: Keep-Alive, close\r\n")).keep_alive);
  EXPECT_FALSE(ExpectRequest(Get("Connection: Keep-Alive,close,\r\n")).keep_alive);
  EXPECT_FALSE(ExpectRequest(Get("Connection: upgrade\r\nConnection: close\r\n")).keep_alive);
  EXPECT_TRUE(ExpectRequest(Get("Connection: keep-alive\r\n")).keep_alive);
  EXPECT_TRUE(ExpectRequest(Get("Connection: closed\r\n")).keep_alive);
  EXPECT_TRUE(ExpectRequest(Get("X-Connection: close\r\n")).keep_alive);
}

TEST(Http1ParserTest, HeaderIsCaseInsensitiveAndReturnsTheFirst) {
  const Request r = ExpectRequest(Get("X-Hook-Signature: first\r\nx-hook-signature: second\r\n"));
  ASSERT_NE(r.Header("x-HOOK-signature"), nullptr);
  EXPECT_EQ(*r.Header("x-HOOK-signature"), "first");
  EXPECT_EQ(*r.Header("HOST"), "a");
  EXPECT_EQ(r.Header("X-Hook"), nullptr);
  EXPECT_EQ(r.Header("X-Hook-Signature-2"), nullptr);
  // Both stay in the list, names as sent.
  EXPECT_EQ(r.headers[2].first, "x-hook-signature");
}

TEST(Http1ParserTest, HeaderValuesAreTrimmedAndMayHoldObsText) {
  const Request r =
      ExpectRequest(Get("X-Spaces: \t a  b \t \r\nX-Empty:\r\nX-Blank:   \r\nX-Tight:v\r\n"
                        "X-Bytes: \x80\xff\t\"\r\n"));
  EXPECT_EQ(*r.Header("X-Spaces"), "a  b");
  EXPECT_EQ(*r.Header("X-Empty"), "");
  EXPECT_EQ(*r.Header("X-Blank"), "");
  EXPECT_EQ(*r.Header("X-Tight"), "v");
  EXPECT_EQ(*r.Header("X-Bytes"), "\x80\xff\t\"");
  EXPECT_EQ(*ExpectRequest(Get("X-Colon: a:b: c\r\n")).Header("X-Colon"), "a:b: c");
}

TEST(Http1ParserTest, PathIsTheTargetUpToTheQuery) {
  EXPECT_EQ(ExpectRequest("GET /a/b?x=1&y=? HTTP/1.1\r\nHost: a\r\n\r\n").path, "/a/b");
  EXPECT_EQ(ExpectRequest("GET /a/b? HTTP/1.1\r\nHost: a\r\n\r\n").path, "/a/b");
  EXPECT_EQ(ExpectRequest("GET /a/%20b HTTP/1.1\r\nHost: a\r\n\r\n").path, "/a/%20b");
  const Request options = ExpectRequest("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(options.method, "OPTIONS");
  EXPECT_EQ(options.target, "*");
  EXPECT_EQ(options.path, "*");
  EXPECT_EQ(ExpectRequest("GET http://h/p?q HTTP/1.1\r\nHost: a\r\n\r\n").path, "http://h/p");
}

TEST(Http1ParserTest, LeadingEmptyLinesBeforeARequestLineAreSkipped) {
  EXPECT_EQ(ExpectRequest("\r\n\r\n" + kPost).body, "{\"id\":\"e-42\"}");
  // A client's stray CRLF after a body does not disturb the next request.
  const std::vector<Request> requests = ParseAll(kPost + "\r\n" + Get(), 7);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].method, "GET");
}

// A bare LF is a line end to some parsers and not to others (llhttp refuses it): every line ends
// with CRLF, or the request is refused.
TEST(Http1ParserTest, BareLfLineEndsAre400) {
  const std::string detail = "a line ends with a bare LF; end lines with CRLF";
  EXPECT_EQ(ExpectError("POST /w HTTP/1.1\nHost: a\r\nContent-Length: 2\r\n\r\nhi", 400), detail);
  EXPECT_EQ(ExpectError("POST /w HTTP/1.1\r\nHost: a\nContent-Length: 2\r\n\r\nhi", 400), detail);
  EXPECT_EQ(ExpectError("POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\nhi", 400), detail);
  EXPECT_EQ(ExpectError("GET / HTTP/1.1\n\n", 400), detail);
  EXPECT_EQ(ExpectError("\n" + Get(), 400), detail);
  EXPECT_EQ(ExpectError(ChunkedHead() + "3\nabc\r\n0\r\n\r\n", 400), detail);
  EXPECT_EQ(ExpectError(ChunkedHead() + "3\r\nabc\r\n0\n\r\n", 400), detail);
  EXPECT_EQ(ExpectError(ChunkedHead() + "3\r\nabc\r\n0\r\nX-T: 1\n\r\n", 400), detail);
  EXPECT_EQ(ExpectError(ChunkedHead() + "3\r\nabc\r\n0\r\n\n", 400), detail);
  // After chunk data.
  EXPECT_EQ(ExpectError(ChunkedHead() + "3\r\nabc\n0\r\n\r\n", 400),
            "chunk data is not followed by CRLF; check the chunk size");
}

// Any byte starts a request for the server's request timer, stray empty lines included: a client
// sending only CRLFs must not be treated as an idle keep-alive connection forever.
TEST(Http1ParserTest, InRequestTellsIdleFromStarted) {
  Parser parser;
  size_t consumed = 0;
  EXPECT_FALSE(parser.InRequest());
  EXPECT_FALSE(parser.OnlyEmptyLines());
  parser.Feed("\r", &consumed);
  EXPECT_TRUE(parser.InRequest()) << "a stray CR starts the request timer";
  EXPECT_TRUE(parser.OnlyEmptyLines());
  parser.Feed("\n\r", &consumed);
  EXPECT_TRUE(parser.InRequest());
  EXPECT_TRUE(parser.OnlyEmptyLines());
  parser.Feed("\nG", &consumed);
  EXPECT_TRUE(parser.InRequest());
  EXPECT_FALSE(parser.OnlyEmptyLines());
  parser.Feed("ET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab", &consumed);
  EXPECT_TRUE(parser.InRequest());
  ASSERT_EQ(parser.Feed("c", &consumed), State::kRequest);
  EXPECT_FALSE(parser.InRequest());
  parser.TakeRequest();
  EXPECT_FALSE(parser.InRequest());
}

// --- 100-continue. ---

TEST(Http1ParserTest, WantsContinueAfterHeadersUntilContinueSent) {
  const std::string head =
      "POST /w HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
  Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed(head.substr(0, head.size() - 1), &consumed), State::kNeedMore);
  EXPECT_FALSE(parser.WantsContinue()) << "headers are not complete yet";
  ASSERT_EQ(parser.Feed("\n", &consumed), State::kNeedMore);
  EXPECT_TRUE(parser.WantsContinue());
  ASSERT_EQ(parser.Feed("he", &consumed), State::kNeedMore);
  EXPECT_TRUE(parser.WantsContinue()) << "the body is not complete";
  parser.ContinueSent();
  EXPECT_FALSE(parser.WantsContinue());
  ASSERT_EQ(parser.Feed("llo", &consumed), State::kRequest);
  EXPECT_FALSE(parser.WantsContinue());
  EXPECT_EQ(parser.TakeRequest().body, "hello");

  // ContinueSent was for that request; the next one asks again.
  ASSERT_EQ(parser.Feed(head, &consumed), State::kNeedMore);
  EXPECT_TRUE(parser.WantsContinue());
}

TEST(Http1ParserTest, WantsContinueIsFalseOnceTheBodyIsComplete) {
  Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed(PostWithLength("hello", "Expect: 100-Continue\r\n"), &consumed),
            State::kRequest);
  EXPECT_FALSE(parser.WantsContinue());
  parser.TakeRequest();
  EXPECT_FALSE(parser.WantsContinue());

  // No body at all: the request is complete with its headers.
  Parser get;
  ASSERT_EQ(get.Feed(Get("Expect: 100-continue\r\n"), &consumed), State::kRequest);
  EXPECT_FALSE(get.WantsContinue());
}

TEST(Http1ParserTest, WantsContinueForChunkedBodies) {
  Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed(ChunkedHead("Expect: 100-CONTINUE\r\n"), &consumed), State::kNeedMore);
  EXPECT_TRUE(parser.WantsContinue());
  ASSERT_EQ(parser.Feed("2\r\nab\r\n0\r\n\r\n", &consumed), State::kRequest);
  EXPECT_FALSE(parser.WantsContinue());
}

TEST(Http1ParserTest, NeverWantsContinueForOtherExpectationsOrHttp10) {
  size_t consumed = 0;
  Parser http10;
  ASSERT_EQ(http10.Feed("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                        &consumed),
            State::kNeedMore);
  EXPECT_FALSE(http10.WantsContinue());

  Parser other;
  ASSERT_EQ(other.Feed("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 5\r\n\r\n",
                       &consumed),
            State::kNeedMore);
  EXPECT_FALSE(other.WantsContinue());

  Parser plain;
  ASSERT_EQ(plain.Feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", &consumed),
            State::kNeedMore);
  EXPECT_FALSE(plain.WantsContinue());

  // Too large: the answer is 413, never 100 Continue.
  Parser large(Limits{.max_body_bytes = 4});
  ASSERT_EQ(
      large.Feed("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                 &consumed),
      State::kError);
  EXPECT_FALSE(large.WantsContinue());
}

// --- Request line. ---

TEST(Http1ParserTest, MalformedRequestLineIs400) {
  for (const std::string line : {
           "GET /",
           "GET / ",
           "GET",
           "GET  / HTTP/1.1",
           "GET /  HTTP/1.1",
           "GET / HTTP/1.1 ",
           " GET / HTTP/1.1",
           "GET\t/ HTTP/1.1",
           "GET /\tHTTP/1.1",
           "G(T / HTTP/1.1",
           "GET /a\x01 HTTP/1.1",
           "GET /a\x7f HTTP/1.1",
           "GET / http/1.1",
           "GET / HTTP/1.1x",
           "GET / HTTP/11",
           "GET / HTTP/1.",
           "GET / HTTP/a.b",
           "GET / HTTP/1.1 extra",
       }) {
    ExpectError(line + "\r\n\r\n", 400);
  }
  ExpectError(std::string("GET / HTTP/1.1\0\r\n\r\n", 18), 400);
  ExpectError(std::string("GET /\0 HTTP/1.1\r\n\r\n", 19), 400);
  EXPECT_EQ(ExpectError("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            "the method \"G(T\" is not a token");
  EXPECT_EQ(ExpectError("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            "the request line must be METHOD, one space, the request-target, one space, "
            "HTTP/1.1");
}

TEST(Http1ParserTest, UnsupportedVersionIs505) {
  for (const char* version : {"HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0", "HTTP/1.9"}) {
    EXPECT_EQ(ExpectError(Get("", version), 505), "only HTTP/1.0 and HTTP/1.1 are served");
  }
}

TEST(Http1ParserTest, RequestLineAtTheLimitIsAcceptedOneMoreByteIs414) {
  const Limits limits{.max_line_bytes = 64};
  const std::string at_limit = "GET /" + std::string(50, 'a') + " HTTP/1.1";
  ASSERT_EQ(at_limit.size(), 64u);
  ExpectRequest(at_limit + "\r\nHost: a\r\n\r\n", limits);
  const std::string over = "GET /" + std::string(51, 'a') + " HTTP/1.1";
  EXPECT_EQ(ExpectError(over + "\r\n\r\n", 414, limits),
            "the request line is longer than 64 bytes");
}

TEST(Http1ParserTest, EndlessRequestLineIs414WithoutANewline) {
  Parser parser(Limits{.max_line_bytes = 64});
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed("GET /" + std::string(59, 'a'), &consumed), State::kNeedMore);
  // A CR may start the line end: not over the limit yet.
  ASSERT_EQ(parser.Feed("\r", &consumed), State::kNeedMore);
  ASSERT_EQ(parser.Feed("a", &consumed), State::kError);
  EXPECT_EQ(parser.error().status, 414);
}

// --- Headers. ---

TEST(Http1ParserTest, EndlessHeaderLineIs431WithoutANewline) {
  Parser parser;  // default limits: 8192-byte lines
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed("POST / HTTP/1.1\r\nHost: a\r\nX-Long: ", &consumed), State::kNeedMore);
  size_t line = 8;  // "X-Long: "
  const std::string piece(1000, 'a');
  while (line + piece.size() <= 8192) {
    ASSERT_EQ(parser.Feed(piece, &consumed), State::kNeedMore) << line;
    EXPECT_EQ(consumed, piece.size());
    line += piece.size();
  }
  ASSERT_EQ(parser.Feed(piece, &consumed), State::kError);
  EXPECT_EQ(parser.error().status, 431);
  EXPECT_EQ(parser.error().detail, "a header line is longer than 8192 bytes");
}

TEST(Http1ParserTest, HeaderLineAtTheLimitIsAccepted) {
  const Limits limits{.max_line_bytes = 32};
  const std::string at_limit = "X-A: " + std::string(27, 'v');
  ASSERT_EQ(at_limit.size(), 32u);
  ExpectRequest("GET / HTTP/1.1\r\nHost: a\r\n" + at_limit + "\r\n\r\n", limits);
  EXPECT_EQ(ExpectError("GET / HTTP/1.1\r\nHost: a\r\n" + at_limit + "v\r\n\r\n", 431, limits),
            "a header line is longer than 32 bytes");
}

TEST(Http1ParserTest, HeaderSectionTooLargeIs431) {
  const Limits limits{.max_header_section_bytes = 256};
  std::string headers;
  for (int i = 0; i < 30; ++i) headers += "X-H" + std::to_string(i) + ": value\r\n";
  EXPECT_EQ(ExpectError(Get(headers), 431, limits),
            "the header section is larger than 256 bytes (raise listen.max_header_bytes)");

  // Streamed without a line end: reported once the partial line takes the section past the limit.
  Parser parser(limits);
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed("GET / HTTP/1.1\r\nHost: a\r\nX-A: ", &consumed), State::kNeedMore);
  ASSERT_EQ(parser.Feed(std::string(200, 'a'), &consumed), State::kNeedMore);
  EXPECT_EQ(parser.Feed(std::string(100, 'a'), &consumed), State::kError);
  EXPECT_EQ(parser.error().status, 431);
}

TEST(Http1ParserTest, ObsFoldIs400) {
  EXPECT_EQ(ExpectError(Get("X-A: a\r\n  folded\r\n"), 400),
            "a header line starts with whitespace; obsolete line folding is not accepted");
  ExpectError(Get("X-A: a\r\n\tfolded\r\n"), 400);
  ExpectError("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
}

TEST(Http1ParserTest, WhitespaceBeforeColonIs400) {
  EXPECT_EQ(ExpectError(PostWithLength("", "Transfer-Encoding : chunked\r\n"), 400),
            "the header name \"Transfer-Encoding \" is not a token; no whitespace is allowed "
            "before the colon");
  ExpectError(Get("Content-Length\t: 0\r\n"), 400);
}

TEST(Http1ParserTest, HeaderWithoutColonOrNameIs400) {
  ExpectError(Get("NoColon\r\n"), 400);
  ExpectError(Get(": value\r\n"), 400);
  ExpectError(Get("X(A): value\r\n"), 400);
  ExpectError(Get("X\x80: value\r\n"), 400);
}

TEST(Http1ParserTest, NulInHeaderValueIs400) {
  EXPECT_EQ(ExpectError(Get(std::string("X-A: a\0b\r\n", 10)), 400),
            "the value of header X-A contains a control byte");
  ExpectError(Get(std::string("X-A: \0\r\n", 8)), 400);
}

TEST(Http1ParserTest, BareCrIs400) {
  const std::string detail = "a line contains a CR that is not followed by LF; end lines with CRLF";
  EXPECT_EQ(ExpectError("GET / HTTP/1.1\rHost: a\r\n\r\n", 400), detail);
  EXPECT_EQ(ExpectError(Get("X-A: a\rb\r\n"), 400), detail);
  EXPECT_EQ(ExpectError(Get("X-A: a\r\r\n"), 400), detail);
  EXPECT_EQ(ExpectError("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400), detail);
  EXPECT_EQ(ExpectError(ChunkedHead() + "1\r\r\na\r\n0\r\n\r\n", 400), detail);
}

// --- Body framing. ---

TEST(Http1ParserTest, ContentLengthTooLargeIs413BeforeAnyBodyByte) {
  const Limits limits{.max_body_bytes = 10};
  EXPECT_EQ(ExpectRequest(PostWithLength("0123456789"), limits).body, "0123456789");

  const std::string too_large = PostWithLength("0123456789A");
  const size_t head = too_large.size() - 11;
  EXPECT_EQ(ExpectError(too_large, 413, limits),
            "the body is larger than listen.max_body_bytes (10 bytes)");
  // Not one body byte is taken, even when they are already in the buffer.
  EXPECT_EQ(FeedOnce(too_large, limits).consumed, head);
  EXPECT_EQ(FeedBytewise(too_large, limits).consumed, head);

  ExpectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
              413);
  ExpectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551617\r\n\r\n", 413);
  EXPECT_EQ(ExpectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", 413),
            "the body is larger than listen.max_body_bytes (1048576 bytes)");
}

TEST(Http1ParserTest, ChunkedBodyPastTheLimitIs413AsSoonAsTheSizeSaysSo) {
  const Limits limits{.max_body_bytes = 10};
  EXPECT_EQ(ExpectRequest(ChunkedHead() + "6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n", limits).body,
            "abcdefghij");

  const std::string prefix = ChunkedHead() + "6\r\nabcdef\r\n5\r\n";
  EXPECT_EQ(ExpectError(prefix + "ghijk\r\n0\r\n\r\n", 413, limits),
            "the body is larger than listen.max_body_bytes (10 bytes)");
  // The chunk's data is not waited for.
  EXPECT_EQ(FeedOnce(prefix + "ghijk\r\n0\r\n\r\n", limits).consumed, prefix.size());
  EXPECT_EQ(FeedOnce(prefix, limits).state, State::kError);
  // The largest size that still fits the digit limit.
  ExpectError(ChunkedHead() + "fffffffffffffff\r\n", 413);
}

TEST(Http1ParserTest, TransferEncodingOtherThanChunkedIs501) {
  EXPECT_EQ(ExpectError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            "Transfer-Encoding gzip is not supported; send chunked or a Content-Length");
  EXPECT_EQ(
      ExpectError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
      "Transfer-Encoding gzip, chunked is not supported; send chunked or a Content-Length");
  EXPECT_EQ(
      ExpectError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n",
                  501),
      "Transfer-Encoding gzip, chunked is not supported; send chunked or a Content-Length");
  for (const char* te : {"chunked, gzip", "chunked, chunked", "identity", "xchunked", "chunked;q=1",
                         "chunked,", "\"chunked\""}) {
    ExpectError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + std::string(te) + "\r\n\r\n",
                501);
  }
}

TEST(Http1ParserTest, ContentLengthAndTransferEncodingIs400) {
  const std::string detail =
      "the request has both Transfer-Encoding and Content-Length; send only one";
  EXPECT_EQ(ExpectError(ChunkedHead("Content-Length: 5\r\n") + "5\r\nhello\r\n0\r\n\r\n", 400),
            detail);
  EXPECT_EQ(ExpectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: "
                        "chunked\r\n\r\n0\r\n\r\n",
                        400),
            detail);
  // Even with a coding we would refuse anyway.
  ExpectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: gzip\r\n\r\n",
              400);
}

TEST(Http1ParserTest, TransferEncodingInHttp10Is400) {
  EXPECT_EQ(ExpectError("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            "Transfer-Encoding is not allowed in an HTTP/1.0 request");
}

TEST(Http1ParserTest, DifferingDuplicateContentLengthIs400) {
  EXPECT_EQ(
      ExpectError(
          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
          400),
      "the request has more than one Content-Length; send exactly one");
  ExpectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", 400);
  ExpectError(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5, 0\r\n\r\nhello", 400);
}

// llhttp refuses any second Content-Length, even an equal one: so do we.
TEST(Http1ParserTest, EqualDuplicateContentLengthIs400) {
  ExpectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello",
              400);
  ExpectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5 , 5\r\n\r\nhello", 400);
  ExpectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\nContent-Length: 5\r\n\r\nhello",
              400);
  EXPECT_EQ(ExpectRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello").body,
            "hello");
  EXPECT_EQ(ExpectRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  5 \t\r\n\r\nhello").body,
            "hello");
}

TEST(Http1ParserTest, MalformedContentLengthIs400) {
  for (const char* value : {"+5", "-1", "5 5", "0x5", "", "5,", ",5", "five", "5.0", "1e3"}) {
    EXPECT_EQ(ExpectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::string(value) +
                              "\r\n\r\nhello",
                          400),
              "Content-Length must be a decimal number of bytes");
  }
}

// --- Chunked framing. ---

TEST(Http1ParserTest, BadChunkSizeIs400) {
  const std::string detail =
      "a chunk-size line must be a hexadecimal size, optionally followed by ;name[=value] "
      "extensions";
  for (const char* size : {"g", "", " 5", "5 ", "5x", "-5", "+5", "0x5", "5,", "5\t"}) {
    EXPECT_EQ(ExpectError(ChunkedHead() + size + "\r\nhello\r\n0\r\n\r\n", 400), detail);
  }
  // No whitespace before a ';' extension either: llhttp refuses it.
  ExpectError(ChunkedHead() + "5 \t;x\r\nhello\r\n0\r\n\r\n", 400);
}

TEST(Http1ParserTest, OverflowingChunkSizeIs400) {
  EXPECT_EQ(ExpectError(ChunkedHead() + "1000000000000000\r\n", 400),
            "a chunk size has more than 15 hex digits");
  ExpectError(ChunkedHead() + "ffffffffffffffffffffffff\r\n", 400);
  ExpectError(ChunkedHead() + "10000000000000001\r\nx\r\n0\r\n\r\n", 400);
}

TEST(Http1ParserTest, MissingCrlfAfterChunkDataIs400) {
  const std::string detail = "chunk data is not followed by CRLF; check the chunk size";
  EXPECT_EQ(ExpectError(ChunkedHead() + "5\r\nhelloX\r\n0\r\n\r\n", 400), detail);
  EXPECT_EQ(ExpectError(ChunkedHead() + "5\r\nhello\rX\n0\r\n\r\n", 400), detail);
  EXPECT_EQ(ExpectError(ChunkedHead() + "3\r\nhello\r\n0\r\n\r\n", 400), detail);
  EXPECT_EQ(ExpectError(ChunkedHead() + "5\r\nhello\r\r\n0\r\n\r\n", 400), detail);
}

TEST(Http1ParserTest, ChunkSizeLineTooLongIs400) {
  const Limits limits{.max_line_bytes = 32};
  EXPECT_EQ(
      ExpectRequest(ChunkedHead() + "1;" + std::string(30, 'e') + "\r\nx\r\n0\r\n\r\n", limits)
          .body,
      "x");
  EXPECT_EQ(ExpectError(ChunkedHead() + "1;" + std::string(31, 'e'), 400, limits),
            "a chunk-size line is longer than 32 bytes");
}

TEST(Http1ParserTest, TrailersAreCheckedAndBounded) {
  const std::string body = "3\r\nabc\r\n0\r\n";
  EXPECT_EQ(ExpectError(ChunkedHead() + body + "X-T: a\r\n folded\r\n\r\n", 400),
            "a trailer line starts with whitespace; obsolete line folding is not accepted");
  ExpectError(ChunkedHead() + body + "NoColon\r\n\r\n", 400);
  ExpectError(ChunkedHead() + body + "X-T : a\r\n\r\n", 400);
  ExpectError(ChunkedHead() + body + std::string("X-T: a\0\r\n\r\n", 10), 400);

  const Limits line_limit{.max_line_bytes = 32};
  ExpectRequest(ChunkedHead() + body + "X-T: " + std::string(27, 't') + "\r\n\r\n", line_limit);
  EXPECT_EQ(ExpectError(ChunkedHead() + body + "X-T: " + std::string(28, 't'), 431, line_limit),
            "a trailer line is longer than 32 bytes");

  // The trailer section has its own budget of max_header_section_bytes.
  const Limits section_limit{.max_header_section_bytes = 128};
  std::string trailers;
  for (int i = 0; i < 12; ++i) trailers += "X-T" + std::to_string(i) + ": 1\r\n";
  ASSERT_LT(trailers.size(), 128u);
  ExpectRequest(ChunkedHead() + body + trailers + "\r\n", section_limit);
  EXPECT_EQ(ExpectError(ChunkedHead() + body + trailers + trailers + "\r\n", 431, section_limit),
            "the trailer section is larger than 128 bytes (raise listen.max_header_bytes)");
}

// --- Strictness as llhttp's: what a proxy in front could read differently. ---

TEST(Http1ParserTest, MethodsOutsideTheServedSetAre501) {
  for (const char* m : {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"}) {
    EXPECT_EQ(ExpectRequest(std::string(m) + " / HTTP/1.1\r\nHost: a\r\n\r\n").method, m);
  }
  for (const char* m : {"FOO", "get", "Post", "CONNECT", "PROPFIND", "M-SEARCH", "m-SEARCH.x",
                        "PRI", "GETS", "POS"}) {
    const std::string detail = ExpectError(std::string(m) + " / HTTP/1.1\r\nHost: a\r\n\r\n", 501);
    EXPECT_NE(detail.find("is not served"), std::string::npos) << detail;
  }
}

TEST(Http1ParserTest, TargetMustBeOriginAbsoluteOrAsteriskForm) {
  EXPECT_EQ(ExpectRequest("GET http://h/p?q HTTP/1.1\r\nHost: h\r\n\r\n").path, "http://h/p");
  ExpectRequest("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
  for (const char* target : {"abc", "*", "h:80", "/a\x80", "/a\tb", "/a\x0c"}) {
    ExpectError("GET " + std::string(target) + " HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  }
}

TEST(Http1ParserTest, Http11WithoutHostIs400) {
  EXPECT_EQ(ExpectError("GET / HTTP/1.1\r\n\r\n", 400),
            "an HTTP/1.1 request must carry one Host header");
  ExpectError("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 400);
  EXPECT_EQ(ExpectError("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            "an HTTP/1.1 request must carry one Host header");
  // HTTP/1.0 predates Host.
  EXPECT_EQ(ExpectRequest("GET / HTTP/1.0\r\n\r\n").method, "GET");
}

TEST(Http1ParserTest, ControlBytesInHeaderValuesAre400) {
  for (const char c : {'\x01', '\x08', '\x0b', '\x0c', '\x1f', '\x7f'}) {
    const std::string detail = ExpectError(Get(std::string("X-A: a") + c + "b\r\n"), 400);
    EXPECT_EQ(detail, "the value of header X-A contains a control byte");
  }
  ExpectError(Get("X-A: \x7f\r\n"), 400);
  ExpectError(Get("X-\x01: a\r\n"), 400);
}

TEST(Http1ParserTest, LeadingEmptyLinesAreCapped) {
  ExpectRequest("\r\n\r\n\r\n\r\n" + Get());
  EXPECT_EQ(ExpectError("\r\n\r\n\r\n\r\n\r\n" + Get(), 400),
            "more than 4 empty lines before the request line");
  // The cap holds without any request line ever coming.
  Parser parser;
  size_t consumed = 0;
  std::string crlfs;
  for (int i = 0; i < 100; ++i) crlfs += "\r\n";
  EXPECT_EQ(parser.Feed(crlfs, &consumed), State::kError);
  EXPECT_EQ(consumed, 10u);
}

TEST(Http1ParserTest, ChunkExtensionsAreValidated) {
  for (const char* ok : {"5;a", "5;a=b", "5;a=\"b;c\"", "5;a=\"q\\\"x\";b", "5;a;b=c;d=\"\"",
                         "5;a=\"sp ace\ttab\""}) {
    EXPECT_EQ(ExpectRequest(ChunkedHead() + ok + "\r\nhello\r\n0\r\n\r\n").body, "hello") << ok;
  }
  for (const char* bad : {"5;", "5;;a", "5; a", "5 ;a", "5;a=", "5;a=\"b", "5;a=\"b\"c", "5;a\x01",
                          "5;a=\"\x01\"", "5;a=b c", "5;=b", "5;a =b", "5;a= b", "5;a=b;",
                          "5;a=\"\x7f\"", "5;a=\"\\\x01\"", "5;a=\"\x80\"", "0;"}) {
    EXPECT_EQ(ExpectError(ChunkedHead() + bad + "\r\nhello\r\n0\r\n\r\n", 400),
              "a chunk-size line must be a hexadecimal size, optionally followed by "
              ";name[=value] extensions")
        << bad;
  }
  // An LF inside a quoted value ends the line there: the quote is unterminated.
  ExpectError(ChunkedHead() + "5;a=\"b\nc\"\r\nhello\r\n0\r\n\r\n", 400);
}

TEST(Http1ParserTest, FramingHeadersInTrailersAre400) {
  const std::string body = ChunkedHead() + "3\r\nabc\r\n0\r\n";
  for (const char* name :
       {"Content-Length", "content-length", "Transfer-Encoding", "Host", "Trailer", "Content-Type",
        "Content-Encoding", "Connection", "Expect", "Authorization"}) {
    EXPECT_EQ(ExpectError(body + name + ": 1\r\n\r\n", 400),
              std::string("the trailer ") + name + " is not allowed: send it as a header")
        << name;
  }
  ExpectRequest(body + "X-Checksum: 1\r\n\r\n");
}

// listen.max_headers holds while the lines arrive: a flood of tiny header lines never piles up in
// memory waiting for the end of the section.
TEST(Http1ParserTest, MaxHeadersIsEnforcedAsTheLinesArrive) {
  const Limits limits{.max_headers = 10};
  std::string ten;
  for (int i = 0; i < 9; ++i) ten += "a:\r\n";  // + Host = 10
  ExpectRequest(Get(ten), limits);
  EXPECT_EQ(ExpectError(Get(ten + "a:\r\n"), 431, limits),
            "more than 10 header lines (listen.max_headers)");
  Parser parser(limits);
  size_t consumed = 0;
  const std::string head = "POST / HTTP/1.1\r\nHost: a\r\n" + ten;
  std::string flood = head;
  for (int i = 0; i < 19000; ++i) flood += "a:\r\n";
  EXPECT_EQ(parser.Feed(flood, &consumed), State::kError);
  EXPECT_EQ(parser.error().status, 431);
  EXPECT_EQ(consumed, head.size() + 4) << "nothing past the line that broke the limit is read";
}

// Whatever follows an error is never parsed: the connection answers once and closes.
TEST(Http1ParserTest, NothingAfterAFramingErrorIsParsed) {
  Parser parser;
  size_t consumed = 0;
  const std::string bad = "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n";
  EXPECT_EQ(parser.Feed(bad + "\r\n" + Get(), &consumed), State::kError);
  EXPECT_EQ(consumed, bad.size());
  EXPECT_EQ(parser.Feed(Get(), &consumed), State::kError);
  EXPECT_EQ(consumed, 0u);
}

// --- After an error. ---

TEST(Http1ParserTest, ErrorIsSticky) {
  Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed("GET / HTTP/9.9\r\n\r\n", &consumed), State::kError);
  const Error first = parser.error();
  EXPECT_EQ(first.status, 505);
  for (std::string_view more :
       {std::string_view(kPost), std::string_view(""), std::string_view("\r\n")}) {
    EXPECT_EQ(parser.Feed(more, &consumed), State::kError);
    EXPECT_EQ(consumed, 0u);
  }
  EXPECT_EQ(parser.error().status, first.status);
  EXPECT_EQ(parser.error().detail, first.detail);
  EXPECT_FALSE(parser.InRequest());
  EXPECT_FALSE(parser.WantsContinue());
}

}  // namespace
}  // namespace scimsync::daemon::http1
