// Structured logs: one JSON object per line on stderr, which journald stores as-is and
// `journalctl -o cat | jq` reads back. Callers pass context as fields; never a secret and never a
// whole payload at info.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace scimsync::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, int64_t v) : key(k), value(v) {}
  Field(std::string_view k, int v) : key(k), value(static_cast<int64_t>(v)) {}
  Field(std::string_view k, unsigned v) : key(k), value(static_cast<int64_t>(v)) {}
  Field(std::string_view k, size_t v) : key(k), value(static_cast<int64_t>(v)) {}
  Field(std::string_view k, double v) : key(k), value(v) {}
  Field(std::string_view k, bool v) : key(k), value(v) {}

  std::string_view key;
  std::variant<std::string_view, int64_t, double, bool> value;
};

using Fields = std::initializer_list<Field>;

// Parses "debug", "info", "warn"/"warning", "error". Returns false on anything else.
bool ParseLevel(std::string_view text, Level* out);
void SetLevel(Level level);
Level GetLevel();
bool Enabled(Level level);

// Where lines go. Default: stderr (fd 2). Tests can point it at a string sink.
using Sink = void (*)(std::string_view line);
void SetSink(Sink sink);

void Write(Level level, std::string_view msg, Fields fields = {});
inline void Debug(std::string_view msg, Fields fields = {}) { Write(Level::kDebug, msg, fields); }
inline void Info(std::string_view msg, Fields fields = {}) { Write(Level::kInfo, msg, fields); }
inline void Warn(std::string_view msg, Fields fields = {}) { Write(Level::kWarn, msg, fields); }
inline void Error(std::string_view msg, Fields fields = {}) { Write(Level::kError, msg, fields); }

}  // namespace scimsync::log
