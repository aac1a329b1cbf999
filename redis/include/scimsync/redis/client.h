// A small synchronous Redis client over hiredis 0.14, shared by the queue, the SCIM rate limiter
// and the link table. It is the one place where hiredis errors become scimsync::Error:
//
//   * a nil reply is a Reply whose AsString()/AsInteger() are empty optionals, not an error;
//   * a Redis error reply ("-ERR ...") is kPermanent with Redis's own message, except the ones
//     that mean "not now" -- LOADING, BUSY, MASTERDOWN, TRYAGAIN, CLUSTERDOWN, READONLY, OOM --
//     which are kTransient, and NOAUTH/WRONGPASS, which are kAuth;
//   * a connection problem (refused, reset, timed out, closed) is kTransient, and the connection
//     is dropped so that the next call connects again. The daemon therefore survives Redis
//     restarts without any action from its callers.
//
// With `sentinels` configured, each new connection first asks the sentinels, in order, for
// `master_name`'s primary (the first that answers wins), connects there, and checks with ROLE
// that it really is the primary (a sentinel's answer can lag a failover). A connection error or
// a READONLY reply (the primary was demoted; Sentinel also closes its clients when it does that)
// drops the connection, so the next call asks the sentinels again: callers see kTransient errors
// for the seconds a failover takes, and then the new primary, without a restart. READONLY drops
// the connection without sentinels too, for a primary behind a moving DNS name or address.
//
// Before each call the client checks, without blocking, whether the server has closed the socket
// (a restart does so). If it has, it reconnects first, so the first call after Redis is back
// succeeds instead of failing on a dead socket. A command is never re-sent after it may have
// reached Redis: replaying a non-idempotent write is the caller's decision.
//
// Threads: a Connection is used by one thread at a time (it holds no lock). Share a Pool between
// threads and take a Connection from it for the duration of a call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scimsync/config.h"
#include "scimsync/result.h"

struct redisContext;
struct redisReply;

namespace scimsync::redis {

// An owned copy of one Redis reply (RESP2): nothing points into hiredis memory.
class Reply {
 public:
  // kError appears only as an element of an array (EXEC, or a script returning error tables);
  // a top-level error reply is returned as an Error instead.
  enum class Type { kNil, kInteger, kString, kStatus, kArray, kError };

  Reply() = default;  // nil
  static Reply Nil() { return Reply(); }
  static Reply Integer(int64_t v);
  static Reply String(std::string s);
  static Reply Status(std::string s);
  static Reply Error(std::string s);
  static Reply Array(std::vector<Reply> elements);

  Type type() const { return type_; }
  bool is_nil() const { return type_ == Type::kNil; }
  bool is_array() const { return type_ == Type::kArray; }

  // The text of a string or status reply; empty for nil and for every other type.
  std::optional<std::string> AsString() const;
  // An integer reply, or a string reply holding a base-10 integer (Redis returns counters both
  // ways); empty otherwise.
  std::optional<int64_t> AsInteger() const;
  // The elements of an array reply; empty for every other type (including a nil array).
  const std::vector<Reply>& elements() const { return elements_; }
  // Raw text of a string, status or error reply ("" otherwise).
  const std::string& text() const { return text_; }

 private:
  Type type_ = Type::kNil;
  int64_t integer_ = 0;
  std::string text_;
  std::vector<Reply> elements_;
};

// A Lua script run by EVALSHA, falling back to EVAL when the server answers NOSCRIPT (its script
// cache is empty after every restart). The SHA-1 is computed locally once, so the common path is
// one round trip.
class Script {
 public:
  explicit Script(std::string source);
  const std::string& source() const { return source_; }
  const std::string& sha1() const { return sha1_; }

 private:
  std::string source_;
  std::string sha1_;
};

// One connection, opened lazily on the first call and re-opened after a failure.
//
// Options come from config::RedisOptions as the config loader fills them: `unix_path` (when set)
// or `host`/`port`, `db` (SELECT when not 0), `url_user`, `connect_timeout_ms`, and
// `command_timeout_ms`, which is the socket timeout for every reply and must exceed the longest
// blocking command (XREADGROUP BLOCK). `password` is the resolved secret; when empty, the
// password from the URL (`url_password`) is used; when both are empty, no AUTH is sent. With
// `sentinels`, the primary's address comes from them (`master_name`), `sentinel_password` is
// read each time they are asked, and the sentinels get `connect_timeout_ms` to answer.
class Connection {
 public:
  Connection(config::RedisOptions options, std::string password);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects now if not connected (also re-checks a connection the server has closed). Calls
  // below do this themselves; this is for a start-up check.
  Status Connect();
  bool connected() const { return ctx_ != nullptr; }
  // Closes the socket; the next call connects again.
  void Disconnect();

  // One command, argv[0] being its name. Binary-safe.
  Result<Reply> Command(const std::vector<std::string>& argv);

  // Several commands in one round trip (pipelined, not atomic: use MULTI/EXEC inside the list or
  // a Script for that). The outer Result fails on a connection problem; each inner Result is that
  // command's reply or its Redis error.
  Result<std::vector<Result<Reply>>> Commands(const std::vector<std::vector<std::string>>& cmds);

  // EVALSHA script.sha1 numkeys keys... args..., and EVAL on NOSCRIPT.
  Result<Reply> Eval(const Script& script, const std::vector<std::string>& keys,
                     const std::vector<std::string>& args);

  // "127.0.0.1:6379" or "unix:/run/redis.sock" -- for messages; never includes the password.
  // With sentinels, the primary they named last.
  const std::string& endpoint() const { return endpoint_; }

 private:
  struct ContextDeleter {
    void operator()(redisContext* c) const;
  };
  Status EnsureConnected();
  Error ConnectionError(const char* what);
  // The primary's host and port, from the first sentinel that knows `master_name`.
  Result<std::pair<std::string, int>> AskSentinels();
  void DropIfDemoted(const redisReply* reply);

  config::RedisOptions options_;
  std::string password_;
  std::string endpoint_;
  std::unique_ptr<redisContext, ContextDeleter> ctx_;
};

// Connections shared by threads. Acquire() hands out an idle connection or opens a new one, so a
// pool never makes a caller wait for another thread; at most `max_idle` connections are kept
// open between calls, the rest are closed when returned.
class Pool {
 public:
  Pool(config::RedisOptions options, std::string password, size_t max_idle = 32);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // A connection borrowed from the pool; returned when the Lease is destroyed.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();
    Connection* operator->() const { return conn_.get(); }
    Connection& operator*() const { return *conn_; }

   private:
    friend class Pool;
    Lease(Pool* pool, std::unique_ptr<Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
    Pool* pool_;
    std::unique_ptr<Connection> conn_;
  };

  Lease Acquire();

  const config::RedisOptions& options() const { return options_; }

 private:
  void Release(std::unique_ptr<Connection> conn);

  const config::RedisOptions options_;
  const std::string password_;
  const size_t max_idle_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;
};

// Classifies a Redis error reply's text (e.g. "NOSCRIPT No matching script") as an Error.
Error ErrorFromReply(const std::string& message);

}  // namespace scimsync::redis
