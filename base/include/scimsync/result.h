// One error type for the whole daemon. Each library (hiredis, cpp-httplib, yaml-cpp, RapidJSON)
// is translated into it at exactly one boundary, so callers branch on `kind`, never on a
// library's own codes.
#pragma once

#include <cassert>
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace scimsync {

enum class ErrorKind {
  kTransient,  // try again later: network, timeout, 408/429/5xx, Redis unreachable
  kPermanent,  // the same request will fail again: 400 and other 4xx, bad data
  kAuth,       // the credentials are wrong (401/403): not the event's fault
  kConflict,   // needs a human: two accounts claim one employee, ambiguous match
  kInvalid,    // caller input failed validation before anything was sent
  kNotFound,   // the thing asked for does not exist (404, nil reply)
};

const char* ErrorKindName(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::kPermanent;
  std::string message;  // says what went wrong and, where a user can act, what to do
  int http_status = 0;  // 0 when the error did not come from an HTTP answer
  // Set when the peer asked for a delay (HTTP Retry-After); the retry policy caps it.
  std::optional<std::chrono::milliseconds> retry_after;

  static Error Make(ErrorKind kind, std::string m, int http_status = 0) {
    Error e;
    e.kind = kind;
    e.message = std::move(m);
    e.http_status = http_status;
    return e;
  }
  static Error Transient(std::string m) { return Make(ErrorKind::kTransient, std::move(m)); }
  static Error Permanent(std::string m) { return Make(ErrorKind::kPermanent, std::move(m)); }
  static Error Auth(std::string m) { return Make(ErrorKind::kAuth, std::move(m)); }
  static Error Conflict(std::string m) { return Make(ErrorKind::kConflict, std::move(m)); }
  static Error Invalid(std::string m) { return Make(ErrorKind::kInvalid, std::move(m)); }
  static Error NotFound(std::string m) { return Make(ErrorKind::kNotFound, std::move(m)); }
};

// Result<T> holds a T or an Error. Kept deliberately small: construction from either side,
// ok(), value(), error(). Accessing the wrong side is a programming error (asserts).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error& error() {
    assert(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success carries nothing.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const {
    assert(!ok());
    return *error_;
  }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

}  // namespace scimsync
