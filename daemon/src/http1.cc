#include "http1.h"

#include <algorithm>
#include <array>
#include <string>

#include "scimsync/strings.h"

namespace scimsync::daemon::http1 {
namespace {

// Byte classes as one table, so each check on the fast path is a load, not a branch chain. ASCII
// only, so no locale can change them.
enum : uint8_t {
  kTchar = 1,       // RFC 9110 tchar
  kFieldByte = 2,   // field-value: HTAB, SP, VCHAR, obs-text (no control byte, no DEL)
  kTargetByte = 4,  // request-target: VCHAR (no space, control byte, DEL or non-ASCII)
  kQdtext = 8,      // quoted-string text: HTAB, SP, VCHAR except '"' and '\\'
};

constexpr std::array<uint8_t, 256> MakeClasses() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    uint8_t v = 0;
    const bool vchar = c > 0x20 && c < 0x7f;
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) v |= kTchar;
    for (const char x : std::string_view("!#$%&'*+-.^_`|~")) {
      if (c == static_cast<unsigned char>(x)) v |= kTchar;
    }
    if (c == '\t' || c == ' ' || vchar || c >= 0x80) v |= kFieldByte;
    if (vchar) v |= kTargetByte;
    if ((c == '\t' || c == ' ' || vchar) && c != '"' && c != '\\') v |= kQdtext;
    t[static_cast<size_t>(c)] = v;
  }
  return t;
}
constexpr std::array<uint8_t, 256> kClasses = MakeClasses();

bool Is(char c, uint8_t cls) { return (kClasses[static_cast<unsigned char>(c)] & cls) != 0; }

bool IsTchar(unsigned char c) { return (kClasses[c] & kTchar) != 0; }

bool AllOf(std::string_view s, uint8_t cls) {
  for (const char c : s) {
    if (!Is(c, cls)) return false;
  }
  return true;
}

bool IsToken(std::string_view s) { return !s.empty() && AllOf(s, kTchar); }

// The methods served. Everything else a proxy might forward (CONNECT switches to a tunnel, WebDAV
// methods carry bodies by their own rules) is 501: nothing here would act on it anyway.
bool IsServedMethod(std::string_view m) {
  switch (m.size()) {
    case 3:
      return m == "GET" || m == "PUT";
    case 4:
      return m == "POST" || m == "HEAD";
    case 5:
      return m == "PATCH" || m == "TRACE";
    case 6:
      return m == "DELETE";
    case 7:
      return m == "OPTIONS";
    default:
      return false;
  }
}

// Reads one chunk-ext (RFC 9112 7.1.1) from the front of `s`: ";" name [ "=" (token |
// quoted-string) ]. No BWS: llhttp refuses whitespace around the parts, so a proxy that accepted
// it would frame the body differently.
bool TakeChunkExtension(std::string_view* s) {
  if (s->empty() || s->front() != ';') return false;
  s->remove_prefix(1);
  size_t n = 0;
  while (n < s->size() && IsTchar(static_cast<unsigned char>((*s)[n]))) ++n;
  if (n == 0) return false;
  s->remove_prefix(n);
  if (s->empty() || s->front() != '=') return true;
  s->remove_prefix(1);
  if (!s->empty() && s->front() == '"') {
    for (size_t i = 1; i < s->size(); ++i) {
      const char c = (*s)[i];
      if (c == '"') {
        s->remove_prefix(i + 1);
        return true;
      }
      if (c == '\\') {
        // quoted-pair: HTAB, SP or VCHAR (obs-text is refused as well: llhttp does)
        if (++i == s->size() || !Is((*s)[i], kQdtext | kTargetByte)) return false;
        continue;
      }
      if (!Is(c, kQdtext)) return false;
    }
    return false;  // unterminated
  }
  n = 0;
  while (n < s->size() && IsTchar(static_cast<unsigned char>((*s)[n]))) ++n;
  if (n == 0) return false;
  s->remove_prefix(n);
  return true;
}

// Headers that must not come after the body: they would change how the request is framed, routed,
// authorized or interpreted after those decisions were made (RFC 9110 6.5.1).
bool IsForbiddenTrailer(std::string_view name) {
  for (const std::string_view f :
       {"Content-Length", "Transfer-Encoding", "Host", "Trailer", "Content-Type",
        "Content-Encoding", "Content-Range", "Connection", "Keep-Alive", "Upgrade", "TE", "Expect",
        "Authorization", "Proxy-Authorization", "Cookie", "Range", "Max-Forwards"}) {
    if (name.size() == f.size() &&
        std::equal(name.begin(), name.end(), f.begin(), [](char a, char b) {
          return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) ==
                 (b >= 'A' && b <= 'Z' ? static_cast<char>(b - 'A' + 'a') : b);
        })) {
      return true;
    }
  }
  return false;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return AsciiLower(x) == AsciiLower(y);
         });
}

bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

// Calls fn with each element of a comma-separated header list (RFC 9110 5.6.1), OWS trimmed. Empty
// elements are passed on too: Content-Length must reject them, Connection can ignore them.
template <typename Fn>
void ForEachListElement(std::string_view list, Fn fn) {
  for (;;) {
    const size_t comma = list.find(',');
    fn(TrimOws(list.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

size_t DecimalDigits(uint64_t n) {
  size_t digits = 1;
  for (; n >= 10; n /= 10) ++digits;
  return digits;
}

// Sender-controlled bytes quoted in an error detail end up in a response body and in logs: keep
// them short and printable.
std::string Printable(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out;
  for (const char c : s.substr(0, kMax)) out += c >= 0x20 && c < 0x7f ? c : '?';
  if (s.size() > kMax) out += "...";
  return out;
}

}  // namespace

const std::string* Request::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (EqualsIgnoreCase(n, name)) return &v;
  }
  return nullptr;
}

Parser::Parser(Limits limits) : limits_(limits) {}

const Error& Parser::error() const { return error_; }

void Parser::Fail(int status, std::string detail) {
  phase_ = Phase::kError;
  error_.status = status;
  error_.detail = std::move(detail);
}

void Parser::Reset() {
  request_ = Request{};
  phase_ = Phase::kRequestLine;
  line_.clear();  // keeps its capacity for the next request on this connection
  section_bytes_ = 0;
  body_left_ = 0;
  expect_continue_ = false;
  continue_sent_ = false;
  started_ = false;
  empty_lines_ = 0;
}

Request Parser::TakeRequest() {
  if (phase_ != Phase::kComplete) return Request{};
  Request out = std::move(request_);
  Reset();
  return out;
}

bool Parser::WantsContinue() const {
  if (!expect_continue_ || continue_sent_) return false;
  switch (phase_) {
    case Phase::kBody:
    case Phase::kChunkSize:
    case Phase::kChunkData:
    case Phase::kChunkDataCr:
    case Phase::kChunkDataLf:
      return true;
    default:
      return false;
  }
}

void Parser::ContinueSent() { continue_sent_ = true; }

bool Parser::OnlyEmptyLines() const {
  return phase_ == Phase::kRequestLine && started_ && (line_.empty() || line_ == "\r");
}

bool Parser::InRequest() const {
  switch (phase_) {
    case Phase::kRequestLine:
      return started_;
    case Phase::kComplete:
    case Phase::kError:
      return false;
    default:
      return true;
  }
}

Parser::State Parser::Feed(std::string_view data, size_t* consumed) {
  size_t pos = 0;
  for (;;) {
    switch (phase_) {
      case Phase::kComplete:
        *consumed = pos;
        return State::kRequest;
      case Phase::kError:
        *consumed = pos;
        return State::kError;
      case Phase::kRequestLine:
      case Phase::kHeaders:
      case Phase::kChunkSize:
      case Phase::kTrailers: {
        std::string_view line;
        const LineResult r = ReadLine(data, &pos, &line);
        if (r == LineResult::kNeedMore) {
          *consumed = pos;
          return State::kNeedMore;
        }
        if (r == LineResult::kLine) {
          OnLine(line);
          line_.clear();  // after OnLine: `line` may point into it
        }
        break;
      }
      case Phase::kBody:
      case Phase::kChunkData: {
        if (pos == data.size()) {
          *consumed = pos;
          return State::kNeedMore;
        }
        const size_t n = static_cast<size_t>(std::min<uint64_t>(body_left_, data.size() - pos));
        request_.body.append(data.substr(pos, n));
        pos += n;
        body_left_ -= n;
        if (body_left_ == 0) {
          phase_ = phase_ == Phase::kBody ? Phase::kComplete : Phase::kChunkDataCr;
        }
        break;
      }
      case Phase::kChunkDataCr:
      case Phase::kChunkDataLf: {
        if (pos == data.size()) {
          *consumed = pos;
          return State::kNeedMore;
        }
        const char c = data[pos++];
        if (c == '\n' && phase_ == Phase::kChunkDataLf) {
          phase_ = Phase::kChunkSize;
        } else if (c == '\r' && phase_ == Phase::kChunkDataCr) {
          phase_ = Phase::kChunkDataLf;
        } else {
          Fail(400, "chunk data is not followed by CRLF; check the chunk size");
        }
        break;
      }
    }
  }
}

Parser::LineResult Parser::ReadLine(std::string_view data, size_t* pos, std::string_view* line) {
  if (*pos == data.size()) return LineResult::kNeedMore;
  if (phase_ == Phase::kRequestLine) started_ = true;
  const std::string_view rest = data.substr(*pos);
  // Chunk-size lines are bounded one by one; the body limit bounds how many there can be.
  const bool in_section = phase_ != Phase::kChunkSize;
  const size_t lf = rest.find('\n');
  if (lf == std::string_view::npos) {
    // Checked before the line ends so an endless line fails as soon as it is too long. A trailing
    // CR may be the first half of the line end, so it does not count yet.
    const size_t buffered = line_.size() + rest.size();
    const size_t content = rest.back() == '\r' ? buffered - 1 : buffered;
    *pos = data.size();
    if (content > limits_.max_line_bytes) {
      LineTooLong();
      return LineResult::kError;
    }
    if (in_section && section_bytes_ + content > limits_.max_header_section_bytes) {
      SectionTooLarge();
      return LineResult::kError;
    }
    line_.append(rest);
    return LineResult::kNeedMore;
  }

  const std::string_view piece = rest.substr(0, lf);
  const size_t total = line_.size() + piece.size();
  const bool cr = piece.empty() ? !line_.empty() && line_.back() == '\r' : piece.back() == '\r';
  *pos += lf + 1;
  if (total - (cr ? 1 : 0) > limits_.max_line_bytes) {
    LineTooLong();
    return LineResult::kError;
  }
  if (in_section) {
    section_bytes_ += total + 1;
    if (section_bytes_ > limits_.max_header_section_bytes) {
      SectionTooLarge();
      return LineResult::kError;
    }
  }
  if (line_.empty()) {
    *line = piece;  // the whole line is in this buffer: no copy
  } else {
    line_.append(piece);
    *line = line_;
  }
  // llhttp refuses a bare LF; a lenient parser in front would split lines where we do not.
  if (!cr) {
    Fail(400, "a line ends with a bare LF; end lines with CRLF");
    return LineResult::kError;
  }
  line->remove_suffix(1);
  // A CR that does not end a line is a line end to some parsers and not to others.
  if (line->find('\r') != std::string_view::npos) {
    Fail(400, "a line contains a CR that is not followed by LF; end lines with CRLF");
    return LineResult::kError;
  }
  return LineResult::kLine;
}

void Parser::LineTooLong() {
  const std::string n = std::to_string(limits_.max_line_bytes);
  switch (phase_) {
    case Phase::kRequestLine:
      Fail(414, "the request line is longer than " + n + " bytes");
      break;
    case Phase::kChunkSize:
      Fail(400, "a chunk-size line is longer than " + n + " bytes");
      break;
    case Phase::kTrailers:
      Fail(431, "a trailer line is longer than " + n + " bytes");
      break;
    default:
      Fail(431, "a header line is longer than " + n + " bytes");
      break;
  }
}

void Parser::SectionTooLarge() {
  const std::string n = std::to_string(limits_.max_header_section_bytes);
  if (phase_ == Phase::kTrailers) {
    Fail(431, "the trailer section is larger than " + n + " bytes (raise listen.max_header_bytes)");
  } else {
    Fail(431, "the header section is larger than " + n + " bytes (raise listen.max_header_bytes)");
  }
}

void Parser::OnLine(std::string_view line) {
  switch (phase_) {
    case Phase::kRequestLine:
      // RFC 9112 2.2: empty lines before a request line are skipped (some clients send a CRLF
      // after a POST body), a few of them: more is a client holding the connection with junk.
      if (!line.empty()) {
        OnRequestLine(line);
      } else if (++empty_lines_ > kMaxLeadingEmptyLines) {
        Fail(400, "more than " + std::to_string(kMaxLeadingEmptyLines) +
                      " empty lines before the request line");
      }
      break;
    case Phase::kHeaders:
      if (line.empty()) {
        OnHeadersComplete();
      } else {
        OnHeaderLine(line, /*trailer=*/false);
      }
      break;
    case Phase::kChunkSize:
      OnChunkSizeLine(line);
      break;
    case Phase::kTrailers:
      if (line.empty()) {
        phase_ = Phase::kComplete;
      } else {
        OnHeaderLine(line, /*trailer=*/true);
      }
      break;
    default:
      break;
  }
}

void Parser::OnRequestLine(std::string_view line) {
  constexpr std::string_view kShape =
      "the request line must be METHOD, one space, the request-target, one space, HTTP/1.1";
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return Fail(400, std::string(kShape));
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method)) {
    return Fail(400, "the method \"" + Printable(method) + "\" is not a token");
  }
  // origin-form, absolute-form (http/https) or OPTIONS' asterisk-form; VCHARs only.
  if (target.empty()) return Fail(400, std::string(kShape));
  const bool form_ok = (target.front() == '/' || (target == "*" && method == "OPTIONS") ||
                        target.substr(0, 7) == "http://" || target.substr(0, 8) == "https://");
  if (!form_ok || !AllOf(target, kTargetByte)) {
    return Fail(400,
                "the request-target must be a path starting with \"/\" (or an absolute http URL), "
                "in printable ASCII");
  }
  if (version == "HTTP/1.1") {
    request_.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    request_.minor_version = 0;
  } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/" && IsDigit(version[5]) &&
             version[6] == '.' && IsDigit(version[7])) {
    return Fail(505, "only HTTP/1.0 and HTTP/1.1 are served");
  } else {
    return Fail(400, std::string(kShape));
  }
  if (!IsServedMethod(method)) {
    return Fail(501, "the method " + Printable(method) +
                         " is not served: webhooks are POSTed, health checks are GET");
  }
  request_.method.assign(method);
  request_.target.assign(target);
  request_.path.assign(target.substr(0, target.find('?')));
  phase_ = Phase::kHeaders;
}

void Parser::OnHeaderLine(std::string_view line, bool trailer) {
  const char* const what = trailer ? "trailer" : "header";
  // Folding was removed from HTTP because parsers disagree on it (RFC 9112 5.2).
  if (IsOws(line.front())) {
    return Fail(400, std::string("a ") + what +
                         " line starts with whitespace; obsolete line folding is not accepted");
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return Fail(400, std::string("a ") + what + " line has no colon: \"" + Printable(line) + "\"");
  }
  const std::string_view name = line.substr(0, colon);
  // "Name : value" must be rejected: other parsers would see a different field name
  // (RFC 9112 5.1).
  if (!IsToken(name)) {
    return Fail(400, std::string("the ") + what + " name \"" + Printable(name) +
                         "\" is not a token; no whitespace is allowed before the colon");
  }
  const std::string_view value = TrimOws(line.substr(colon + 1));
  // NUL, other control bytes and DEL: llhttp refuses them, and a value that holds them means
  // different things to different readers.
  if (!AllOf(value, kFieldByte)) {
    return Fail(400, std::string("the value of ") + what + " " + Printable(name) +
                         " contains a control byte");
  }
  if (trailer) {
    if (IsForbiddenTrailer(name)) {
      return Fail(400, "the trailer " + Printable(name) + " is not allowed: send it as a header");
    }
    return;
  }
  if (request_.headers.size() >= limits_.max_headers) {
    return Fail(431, "more than " + std::to_string(limits_.max_headers) +
                         " header lines (listen.max_headers)");
  }
  request_.headers.emplace_back(name, value);
}

void Parser::OnHeadersComplete() {
  bool has_te = false;
  size_t te_codings = 0;
  bool te_chunked = false;
  int cl_count = 0;
  std::string_view cl;  // canonical: no leading zeros
  bool cl_bad = false;
  int hosts = 0;
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool expect_continue = false;
  for (const auto& [name, value] : request_.headers) {
    if (EqualsIgnoreCase(name, "Transfer-Encoding")) {
      has_te = true;
      ForEachListElement(value, [&](std::string_view coding) {
        ++te_codings;
        te_chunked = EqualsIgnoreCase(coding, "chunked");
      });
    } else if (EqualsIgnoreCase(name, "Content-Length")) {
      // One value, digits only: llhttp refuses a list and a second header even when equal.
      ++cl_count;
      std::string_view v = value;
      if (v.empty() || !std::all_of(v.begin(), v.end(), IsDigit)) {
        cl_bad = true;
        continue;
      }
      const size_t nonzero = v.find_first_not_of('0');
      cl = nonzero == std::string_view::npos ? v.substr(v.size() - 1) : v.substr(nonzero);
    } else if (EqualsIgnoreCase(name, "Host")) {
      ++hosts;
    } else if (EqualsIgnoreCase(name, "Connection")) {
      ForEachListElement(value, [&](std::string_view option) {
        if (EqualsIgnoreCase(option, "close")) conn_close = true;
        if (EqualsIgnoreCase(option, "keep-alive")) conn_keep_alive = true;
      });
    } else if (EqualsIgnoreCase(name, "Expect")) {
      if (EqualsIgnoreCase(value, "100-continue")) expect_continue = true;
    }
  }
  const bool http10 = request_.minor_version == 0;
  request_.keep_alive = http10 ? conn_keep_alive && !conn_close : !conn_close;

  // Framing: a request a proxy could frame differently from us is refused, never guessed at.
  if (has_te && http10) {
    return Fail(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
  }
  const bool has_cl = cl_count > 0;
  if (has_te && has_cl) {
    return Fail(400, "the request has both Transfer-Encoding and Content-Length; send only one");
  }
  if (has_te && !(te_codings == 1 && te_chunked)) {
    std::string codings;
    for (const auto& [name, value] : request_.headers) {
      if (!EqualsIgnoreCase(name, "Transfer-Encoding")) continue;
      if (!codings.empty()) codings += ", ";
      codings += value;
    }
    return Fail(501, "Transfer-Encoding " + Printable(codings) +
                         " is not supported; send chunked or a Content-Length");
  }
  if (cl_count > 1) {
    return Fail(400, "the request has more than one Content-Length; send exactly one");
  }
  if (cl_bad) return Fail(400, "Content-Length must be a decimal number of bytes");
  // RFC 9112 3.2: a server must answer 400 to an HTTP/1.1 request without exactly one Host.
  if ((!http10 && hosts != 1) || hosts > 1) {
    return Fail(400, "an HTTP/1.1 request must carry one Host header");
  }

  const uint64_t max_body = MaxBody();
  expect_continue_ = expect_continue && !http10;
  if (has_te) {
    phase_ = Phase::kChunkSize;
    return;
  }
  uint64_t length = 0;
  // More digits than the limit has is too large without risking overflow.
  if (has_cl && cl.size() > DecimalDigits(max_body)) length = max_body + 1;
  if (has_cl && length == 0) {
    for (const char c : cl) length = length * 10 + static_cast<uint64_t>(c - '0');
  }
  if (length > max_body) return BodyTooLarge();
  if (length == 0) {
    phase_ = Phase::kComplete;
    return;
  }
  // Reserved up to 64 KiB only: a declared length is not yet data, and reserving all of it would
  // let a client hold max_body_bytes per connection by sending headers alone. Webhooks are
  // smaller than this, so for them the append is still the only copy.
  request_.body.reserve(static_cast<size_t>(std::min<uint64_t>(length, uint64_t{64} * 1024)));
  body_left_ = length;
  phase_ = Phase::kBody;
}

void Parser::OnChunkSizeLine(std::string_view line) {
  constexpr size_t kMaxHexDigits = 15;  // below 2^60: sums with the body size cannot overflow
  uint64_t size = 0;
  size_t digits = 0;
  for (; digits < line.size() && HexValue(line[digits]) >= 0; ++digits) {
    if (digits == kMaxHexDigits) {
      return Fail(400, "a chunk size has more than 15 hex digits");
    }
    size = size * 16 + static_cast<uint64_t>(HexValue(line[digits]));
  }
  std::string_view after = line.substr(digits);
  // Only chunk extensions may follow the size (RFC 9112 7.1.1); they are checked, then ignored.
  bool after_ok = digits > 0;
  while (after_ok && !after.empty()) after_ok = TakeChunkExtension(&after);
  if (!after_ok) {
    return Fail(400,
                "a chunk-size line must be a hexadecimal size, optionally followed by "
                ";name[=value] extensions");
  }
  if (size == 0) {
    phase_ = Phase::kTrailers;
    section_bytes_ = 0;
    return;
  }
  if (size > MaxBody() - std::min<uint64_t>(MaxBody(), request_.body.size())) {
    return BodyTooLarge();
  }
  body_left_ = size;
  phase_ = Phase::kChunkData;
}

uint64_t Parser::MaxBody() const {
  return limits_.max_body_bytes < 0 ? 0 : static_cast<uint64_t>(limits_.max_body_bytes);
}

void Parser::BodyTooLarge() {
  Fail(413,
       "the body is larger than listen.max_body_bytes (" + std::to_string(MaxBody()) + " bytes)");
}

}  // namespace scimsync::daemon::http1
