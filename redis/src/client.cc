#include "scimsync/redis/client.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>
#include <utility>

namespace scimsync::redis {
namespace {

struct ReplyDeleter {
  void operator()(void* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

timeval ToTimeval(int ms) {
  if (ms <= 0) ms = 1;
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

Reply Convert(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      return Reply::Integer(r->integer);
    case REDIS_REPLY_STRING:
      return Reply::String(std::string(r->str, r->len));
    case REDIS_REPLY_STATUS:
      return Reply::Status(std::string(r->str, r->len));
    case REDIS_REPLY_ERROR:
      return Reply::Error(std::string(r->str, r->len));
    case REDIS_REPLY_ARRAY: {
      std::vector<Reply> elements;
      elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) elements.push_back(Convert(r->element[i]));
      return Reply::Array(std::move(elements));
    }
    default:
      return Reply::Nil();
  }
}

Result<Reply> TopLevel(const redisReply* r) {
  if (r->type == REDIS_REPLY_ERROR) return ErrorFromReply(std::string(r->str, r->len));
  return Convert(r);
}

// True when `message` starts with the error code `code` ("BUSY" must not match "BUSYGROUP").
bool HasCode(const std::string& message, std::string_view code) {
  return message.compare(0, code.size(), code) == 0 &&
         (message.size() == code.size() || message[code.size()] == ' ');
}

// True when the server has closed its end (restart, client timeout) or sent something we did not
// ask for; either way the socket cannot be used for a request/reply exchange any more.
bool SocketUnusable(int fd) {
  pollfd p{};
  p.fd = fd;
  p.events = POLLIN;
  int rc = poll(&p, 1, 0);
  if (rc == 0) return false;
  if (rc < 0) return errno != EINTR;
  if ((p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) return true;
  char byte = 0;
  ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
  return true;
}

std::vector<const char*> ArgvPointers(const std::vector<std::string>& argv,
                                      std::vector<size_t>* lens) {
  std::vector<const char*> ptrs;
  ptrs.reserve(argv.size());
  lens->clear();
  lens->reserve(argv.size());
  for (const auto& a : argv) {
    ptrs.push_back(a.data());
    lens->push_back(a.size());
  }
  return ptrs;
}

// Sends `argv` on a fresh context and reads one reply; null on a connection problem.
ReplyPtr RoundTrip(redisContext* ctx, const std::vector<std::string>& argv) {
  std::vector<size_t> lens;
  auto ptrs = ArgvPointers(argv, &lens);
  return ReplyPtr(static_cast<redisReply*>(
      redisCommandArgv(ctx, static_cast<int>(ptrs.size()), ptrs.data(), lens.data())));
}

}  // namespace

Reply Reply::Integer(int64_t v) {
  Reply r;
  r.type_ = Type::kInteger;
  r.integer_ = v;
  return r;
}
Reply Reply::String(std::string s) {
  Reply r;
  r.type_ = Type::kString;
  r.text_ = std::move(s);
  return r;
}
Reply Reply::Status(std::string s) {
  Reply r;
  r.type_ = Type::kStatus;
  r.text_ = std::move(s);
  return r;
}
Reply Reply::Error(std::string s) {
  Reply r;
  r.type_ = Type::kError;
  r.text_ = std::move(s);
  return r;
}
Reply Reply::Array(std::vector<Reply> elements) {
  Reply r;
  r.type_ = Type::kArray;
  r.elements_ = std::move(elements);
  return r;
}

std::optional<std::string> Reply::AsString() const {
  if (type_ == Type::kString || type_ == Type::kStatus) return text_;
  return std::nullopt;
}

std::optional<int64_t> Reply::AsInteger() const {
  if (type_ == Type::kInteger) return integer_;
  if (type_ != Type::kString || text_.empty()) return std::nullopt;
  int64_t v = 0;
  const char* end = text_.data() + text_.size();
  auto [p, ec] = std::from_chars(text_.data(), end, v);
  if (ec != std::errc() || p != end) return std::nullopt;
  return v;
}

Error ErrorFromReply(const std::string& message) {
  // Codes that mean "not now": loading after a restart, a long script, failover, out of memory.
  static constexpr std::array<std::string_view, 7> kTransientCodes = {
      "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "OOM"};
  for (std::string_view code : kTransientCodes) {
    if (HasCode(message, code)) return Error::Transient("Redis cannot serve this now: " + message);
  }
  if (HasCode(message, "NOAUTH") || HasCode(message, "WRONGPASS")) {
    return Error::Auth("Redis rejected the connection's credentials (" + message +
                       "): check redis.password_env / redis.password_file and the URL's user");
  }
  return Error::Permanent("Redis: " + message);
}

Script::Script(std::string source) : source_(std::move(source)) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_Digest(source_.data(), source_.size(), md.data(), &len, EVP_sha1(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  sha1_.reserve(static_cast<size_t>(len) * 2);
  for (unsigned int i = 0; i < len; ++i) {
    sha1_.push_back(kHex[md[i] >> 4]);
    sha1_.push_back(kHex[md[i] & 0xf]);
  }
}

void Connection::ContextDeleter::operator()(redisContext* c) const {
  if (c != nullptr) redisFree(c);
}

Connection::Connection(config::RedisOptions options, std::string password)
    : options_(std::move(options)), password_(std::move(password)) {
  if (password_.empty()) password_ = options_.url_password;
  if (!options_.sentinels.empty()) {
    endpoint_ = "the primary of '" + options_.master_name + "' (not yet asked the sentinels)";
  } else if (!options_.unix_path.empty()) {
    endpoint_ = "unix:" + options_.unix_path;
  } else {
    std::string host = options_.host.empty() ? "127.0.0.1" : options_.host;
    endpoint_ = host + ":" + std::to_string(options_.port);
  }
}

Connection::~Connection() = default;

void Connection::Disconnect() { ctx_.reset(); }

Error Connection::ConnectionError(const char* what) {
  const int saved_errno = errno;
  std::string detail;
  if (ctx_ != nullptr) {
    detail = ctx_->errstr;
    // hiredis reports a socket timeout as EAGAIN's text, which reads like a bug to an operator.
    if (ctx_->err == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
      detail = "no reply within redis.command_timeout_ms (" +
               std::to_string(options_.command_timeout_ms) + " ms)";
    }
  }
  ctx_.reset();
  return Error::Transient(std::string("Redis at ") + endpoint_ + ": " + what + ": " + detail +
                          (options_.sentinels.empty()
                               ? "; is redis-server running and redis.url right?"
                               : "; the sentinels will be asked for the primary again"));
}

Result<std::pair<std::string, int>> Connection::AskSentinels() {
  std::string sentinel_password;
  if (!options_.sentinel_password.empty()) {
    auto pw = config::ResolveSecret(options_.sentinel_password);
    if (!pw.ok()) {
      return Error::Auth("cannot read the sentinels' password: " + pw.error().message);
    }
    sentinel_password = *pw;
  }
  const timeval tv = ToTimeval(options_.connect_timeout_ms);
  std::string tried;
  for (const std::string& address : options_.sentinels) {
    std::string host;
    int port = 0;
    if (!config::ParseHostPort(address, &host, &port)) {
      tried += "; " + address + ": not host:port";
      continue;
    }
    std::unique_ptr<redisContext, ContextDeleter> s(
        redisConnectWithTimeout(host.c_str(), port, tv));
    if (s == nullptr) return Error::Transient("out of memory while asking the sentinels");
    // A sentinel that accepts but never answers must not hold the caller for command_timeout_ms.
    if (s->err != 0 || redisSetTimeout(s.get(), tv) != REDIS_OK) {
      tried += "; " + address + ": " + s->errstr;
      continue;
    }
    if (!sentinel_password.empty()) {
      ReplyPtr auth = RoundTrip(s.get(), {"AUTH", sentinel_password});
      if (auth == nullptr) {
        tried += "; " + address + ": " + s->errstr;
        continue;
      }
      if (auth->type == REDIS_REPLY_ERROR) {
        tried += "; " + address + " refused AUTH (" + std::string(auth->str, auth->len) +
                 "): check redis.sentinel_password_env / _file";
        continue;
      }
    }
    ReplyPtr r = RoundTrip(s.get(), {"SENTINEL", "get-master-addr-by-name", options_.master_name});
    if (r == nullptr) {
      tried += "; " + address + ": " + s->errstr;
      continue;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      tried += "; " + address + ": " + std::string(r->str, r->len) +
               " (is it a sentinel, and does it need redis.sentinel_password_env?)";
      continue;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
      tried += "; " + address + " does not monitor '" + options_.master_name +
               "' (check redis.master_name)";
      continue;
    }
    std::string master_host(r->element[0]->str, r->element[0]->len);
    std::string port_text(r->element[1]->str, r->element[1]->len);
    int master_port = 0;
    auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), master_port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || master_port <= 0 ||
        master_port > 65535) {
      tried += "; ";
      tried += address;
      tried += " answered a bad port '";
      tried += port_text;
      tried += "'";
      continue;
    }
    return std::make_pair(std::move(master_host), master_port);
  }
  return Error::Transient("no sentinel named the primary of '" + options_.master_name +
                          "' (asked " + tried.substr(2) +
                          "); check redis.sentinels and redis.master_name");
}

Status Connection::Connect() { return EnsureConnected(); }

Status Connection::EnsureConnected() {
  if (ctx_ != nullptr) {
    if (!SocketUnusable(ctx_->fd)) return {};
    ctx_.reset();
  }
  const timeval connect_tv = ToTimeval(options_.connect_timeout_ms);
  const bool sentinel = !options_.sentinels.empty();
  if (sentinel) {
    // Asked before every new connection: a reconnect follows a failover because it is one.
    auto primary = AskSentinels();
    if (!primary.ok()) return primary.error();
    endpoint_ = primary->first + ":" + std::to_string(primary->second);
    ctx_.reset(redisConnectWithTimeout(primary->first.c_str(), primary->second, connect_tv));
  } else if (!options_.unix_path.empty()) {
    ctx_.reset(redisConnectUnixWithTimeout(options_.unix_path.c_str(), connect_tv));
  } else {
    std::string host = options_.host.empty() ? "127.0.0.1" : options_.host;
    ctx_.reset(redisConnectWithTimeout(host.c_str(), options_.port, connect_tv));
  }
  if (ctx_ == nullptr) {
    return Error::Transient("Redis at " + endpoint_ + ": out of memory while connecting");
  }
  if (ctx_->err != 0) return ConnectionError("cannot connect");
  if (redisSetTimeout(ctx_.get(), ToTimeval(options_.command_timeout_ms)) != REDIS_OK) {
    return ConnectionError("cannot set the socket timeout");
  }
  if (options_.unix_path.empty()) redisEnableKeepAlive(ctx_.get());

  std::vector<std::vector<std::string>> setup;
  if (!password_.empty()) {
    if (options_.url_user.empty()) {
      setup.push_back({"AUTH", password_});
    } else {
      setup.push_back({"AUTH", options_.url_user, password_});
    }
  }
  if (options_.db != 0) setup.push_back({"SELECT", std::to_string(options_.db)});
  // A sentinel's answer can be stale (it has not noticed the failover yet, or a demoted primary
  // came back): refuse to write to a replica rather than collect READONLY errors.
  if (sentinel) setup.push_back({"ROLE"});
  if (setup.empty()) return {};

  std::vector<size_t> lens;
  for (const auto& cmd : setup) {
    auto ptrs = ArgvPointers(cmd, &lens);
    if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(ptrs.size()), ptrs.data(),
                               lens.data()) != REDIS_OK) {
      return ConnectionError("cannot send AUTH/SELECT");
    }
  }
  for (size_t i = 0; i < setup.size(); ++i) {
    void* raw = nullptr;
    int rc = redisGetReply(ctx_.get(), &raw);
    ReplyPtr reply(static_cast<redisReply*>(raw));
    if (rc != REDIS_OK || reply == nullptr) return ConnectionError("no answer to AUTH/SELECT");
    if (setup[i][0] == "ROLE") {
      if (reply->type == REDIS_REPLY_ERROR) {
        // An ACL user without ROLE: READONLY replies still send us back to the sentinels.
        if (HasCode(std::string(reply->str, reply->len), "NOPERM")) continue;
        const std::string message(reply->str, reply->len);
        ctx_.reset();
        return ErrorFromReply(message);
      }
      const bool master =
          reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
          reply->element[0]->type == REDIS_REPLY_STRING &&
          std::string_view(reply->element[0]->str, reply->element[0]->len) == "master";
      if (!master) {
        ctx_.reset();
        return Error::Transient("Redis at " + endpoint_ + " is not the primary of '" +
                                options_.master_name +
                                "' although a sentinel named it (a failover is under way); "
                                "the sentinels will be asked again");
      }
      continue;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      std::string message(reply->str, reply->len);
      // Drain the remaining setup replies by dropping the socket: it is unusable anyway.
      ctx_.reset();
      if (setup[i][0] == "SELECT") {
        return Error::Permanent("Redis at " + endpoint_ + " refused SELECT " +
                                std::to_string(options_.db) + ": " + message +
                                "; check the database number in redis.url");
      }
      Error e = ErrorFromReply(message);
      if (e.kind == ErrorKind::kPermanent) {
        // "ERR AUTH <password> called without any password configured" and friends.
        e = Error::Auth("Redis at " + endpoint_ + " refused AUTH: " + message +
                        "; check redis.password_env / redis.password_file");
      }
      return e;
    }
  }
  return {};
}

Result<Reply> Connection::Command(const std::vector<std::string>& argv) {
  if (argv.empty()) return Error::Invalid("empty Redis command");
  if (Status s = EnsureConnected(); !s) return s.error();
  std::vector<size_t> lens;
  auto ptrs = ArgvPointers(argv, &lens);
  ReplyPtr reply(static_cast<redisReply*>(
      redisCommandArgv(ctx_.get(), static_cast<int>(ptrs.size()), ptrs.data(), lens.data())));
  if (reply == nullptr) return ConnectionError(argv[0].c_str());
  Result<Reply> out = TopLevel(reply.get());
  DropIfDemoted(reply.get());
  return out;
}

void Connection::DropIfDemoted(const redisReply* reply) {
  // READONLY: this server was a primary when we connected and is a replica now. Reconnecting
  // (and, with sentinels, asking them again) is the only way to reach the new primary.
  if (reply->type == REDIS_REPLY_ERROR &&
      HasCode(std::string(reply->str, reply->len), "READONLY")) {
    ctx_.reset();
  }
}

Result<std::vector<Result<Reply>>> Connection::Commands(
    const std::vector<std::vector<std::string>>& cmds) {
  std::vector<Result<Reply>> out;
  if (cmds.empty()) return out;
  for (const auto& c : cmds) {
    if (c.empty()) return Error::Invalid("empty Redis command in a pipeline");
  }
  if (Status s = EnsureConnected(); !s) return s.error();
  std::vector<size_t> lens;
  for (const auto& cmd : cmds) {
    auto ptrs = ArgvPointers(cmd, &lens);
    if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(ptrs.size()), ptrs.data(),
                               lens.data()) != REDIS_OK) {
      return ConnectionError("pipeline");
    }
  }
  out.reserve(cmds.size());
  std::vector<ReplyPtr> errors;
  for (size_t i = 0; i < cmds.size(); ++i) {
    void* raw = nullptr;
    int rc = redisGetReply(ctx_.get(), &raw);
    ReplyPtr reply(static_cast<redisReply*>(raw));
    if (rc != REDIS_OK || reply == nullptr) return ConnectionError("pipeline");
    out.push_back(TopLevel(reply.get()));
    if (reply->type == REDIS_REPLY_ERROR) errors.push_back(std::move(reply));
  }
  // Every reply is read before the socket is dropped, so none is left behind on it.
  for (const auto& r : errors) {
    if (ctx_ != nullptr) DropIfDemoted(r.get());
  }
  return out;
}

Result<Reply> Connection::Eval(const Script& script, const std::vector<std::string>& keys,
                               const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.emplace_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(std::to_string(keys.size()));
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  Result<Reply> r = Command(argv);
  if (r.ok() || r.error().message.rfind("Redis: NOSCRIPT ", 0) != 0) return r;
  // The server lost its script cache (restart, SCRIPT FLUSH): EVAL sends the source once and
  // caches it again, so the next EVALSHA hits.
  argv[0] = "EVAL";
  argv[1] = script.source();
  return Command(argv);
}

Pool::Pool(config::RedisOptions options, std::string password, size_t max_idle)
    : options_(std::move(options)), password_(std::move(password)), max_idle_(max_idle) {}

Pool::~Pool() = default;

Pool::Lease::Lease(Lease&& other) noexcept : pool_(other.pool_), conn_(std::move(other.conn_)) {}

Pool::Lease::~Lease() {
  if (conn_ != nullptr) pool_->Release(std::move(conn_));
}

Pool::Lease Pool::Acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      std::unique_ptr<Connection> c = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(c));
    }
  }
  return Lease(this, std::make_unique<Connection>(options_, password_));
}

void Pool::Release(std::unique_ptr<Connection> conn) {
  std::lock_guard lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(conn));
}

}  // namespace scimsync::redis
