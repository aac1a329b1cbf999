// An incremental HTTP/1.1 request parser (RFC 9112) for the epoll listener: bytes go in as a
// non-blocking socket delivers them, complete requests come out one at a time. Framing is strict
// wherever leniency would let a proxy in front of us and this parser disagree about where a request
// ends (request smuggling), at least as strict as llhttp (Node's parser) in strict mode: lines end
// with CRLF only (no bare LF or CR), no obs-fold, no whitespace before a header colon, no control
// bytes in names or values, methods from a fixed set, Host required on HTTP/1.1, one exact
// Content-Length, Transfer-Encoding only as "chunked" and never together with a length, chunk
// extensions checked against their grammar, and no framing or routing headers in trailers.
// tests/daemon/http1_differential_test.cc compares it request by request with llhttp.
//
// Memory per connection is bounded as bytes arrive, not after the header section: header lines
// are counted (max_headers) and the section's bytes summed line by line.
//
// Partial lines are buffered inside the parser, so Feed consumes every byte it is given up to the
// end of one request and the caller can drop consumed bytes at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace scimsync::daemon::http1 {

struct Limits {
  size_t max_line_bytes = 8192;             // request line or any one header/trailer line
  size_t max_header_section_bytes = 65536;  // request line + all header lines together
  int64_t max_body_bytes = 1 << 20;         // decoded body (Content-Length or sum of chunks)
  // Header lines (not trailers, which are dropped): 431 at the first line over. listen.max_headers.
  size_t max_headers = 100;
};

struct Request {
  std::string method;     // as sent, e.g. "POST"
  std::string target;     // request-target as sent, e.g. "/webhooks/hr?x=1"
  std::string path;       // target up to (not including) '?'
  int minor_version = 1;  // HTTP/1.<minor>, 0 or 1
  // In order; name as sent; value with leading/trailing SP/HTAB trimmed. Trailers are checked,
  // then dropped: merged in after the body they could change a header a check had already read.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;        // decoded (de-chunked)
  bool keep_alive = true;  // HTTP/1.1: unless a Connection header lists "close";
                           // HTTP/1.0: only if a Connection header lists "keep-alive"
  // First header with this name, compared case-insensitively; nullptr if absent.
  const std::string* Header(std::string_view name) const;
};

struct Error {
  int status = 400;    // the HTTP status to answer with
  std::string detail;  // one sentence a sender can act on
};

class Parser {
 public:
  // RFC 9112 2.2 asks a server to skip at least one empty line before a request line.
  static constexpr int kMaxLeadingEmptyLines = 4;
  explicit Parser(Limits limits = {});
  enum class State { kNeedMore, kRequest, kError };
  // Consumes bytes from the front of `data`, stores how many in *consumed, and stops right after
  // the end of one complete request (so pipelined requests are returned one per call: the caller
  // calls Feed again with the rest). kRequest: take it with TakeRequest(); the parser is then
  // ready for the next request. kError: error() says why; the connection must be closed after
  // answering, the parser stays in kError.
  //
  // kNeedMore always consumes all of `data` (partial lines are kept inside). While a request
  // waits for TakeRequest, Feed returns kRequest and consumes nothing. At kError, *consumed never
  // goes past the line (or byte) that showed the error -- for a too-large Content-Length it is
  // exactly the header section, for a too-large chunk exactly through its size line, so no body
  // byte is taken -- and later calls consume nothing.
  State Feed(std::string_view data, size_t* consumed);
  // Only after kRequest; otherwise returns an empty Request and changes nothing.
  Request TakeRequest();
  const Error& error() const;
  // True once the headers of the current request are complete, it carries
  // "Expect: 100-continue" (case-insensitive value), its body is not yet complete, and
  // ContinueSent() was not called for it: the server should then write
  // "HTTP/1.1 100 Continue\r\n\r\n". Never true for HTTP/1.0 requests.
  bool WantsContinue() const;
  void ContinueSent();
  // True when some bytes of a request have been consumed but the request is not complete (the
  // server uses it to tell an idle keep-alive connection from a slow request and to start the
  // request timer). Empty lines before a request line count: some clients send a stray CRLF
  // after a body, but a client sending only CRLFs must not hold a connection as if it were idle.
  // At most kMaxLeadingEmptyLines are skipped. False at kError.
  bool InRequest() const;
  // InRequest(), and nothing but (part of) empty lines so far: a stray CRLF, not a request. The
  // server closes such a connection at the request timeout without answering.
  bool OnlyEmptyLines() const;

 private:
  enum class Phase {
    kRequestLine,
    kHeaders,
    kBody,         // Content-Length bytes left in body_left_
    kChunkSize,    // a chunk-size line, or the last chunk's "0"
    kChunkData,    // body_left_ bytes of chunk data
    kChunkDataCr,  // the CRLF after chunk data, before its CR
    kChunkDataLf,  // ... after its CR
    kTrailers,     // trailer lines up to the empty line
    kComplete,     // waiting for TakeRequest
    kError,
  };
  enum class LineResult { kLine, kNeedMore, kError };

  LineResult ReadLine(std::string_view data, size_t* pos, std::string_view* line);
  void OnLine(std::string_view line);
  void OnRequestLine(std::string_view line);
  void OnHeaderLine(std::string_view line, bool trailer);
  void OnHeadersComplete();
  void OnChunkSizeLine(std::string_view line);
  uint64_t MaxBody() const;
  void LineTooLong();
  void SectionTooLarge();
  void BodyTooLarge();
  void Fail(int status, std::string detail);
  void Reset();

  Limits limits_;
  Phase phase_ = Phase::kRequestLine;
  Request request_;
  Error error_;
  // The current line's bytes when it spans Feed calls (never holds a '\n': the line-end search
  // only has to look at new bytes). Its capacity is kept from request to request.
  std::string line_;
  // Bytes of the header section (or of the trailer section, while in kTrailers) so far, line ends
  // included.
  size_t section_bytes_ = 0;
  uint64_t body_left_ = 0;
  bool expect_continue_ = false;
  bool started_ = false;  // a byte of the current request was consumed
  int empty_lines_ = 0;   // skipped before the request line
  bool continue_sent_ = false;
};

}  // namespace scimsync::daemon::http1
