#include "scimsync/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "scimsync/strings.h"

namespace scimsync::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

void StderrSink(std::string_view line) {
  // One write(2) per line: lines from many threads never interleave (PIPE_BUF covers typical
  // lines; journald reads whole lines either way).
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(2, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

std::atomic<Sink> g_sink{&StderrSink};

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

void AppendTimestamp(std::string& out) {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  out += buf;
}

}  // namespace

bool ParseLevel(std::string_view text, Level* out) {
  if (text == "debug") {
    *out = Level::kDebug;
  } else if (text == "info") {
    *out = Level::kInfo;
  } else if (text == "warn" || text == "warning") {
    *out = Level::kWarn;
  } else if (text == "error") {
    *out = Level::kError;
  } else {
    return false;
  }
  return true;
}

void SetLevel(Level level) { g_level.store(static_cast<int>(level)); }
Level GetLevel() { return static_cast<Level>(g_level.load()); }
bool Enabled(Level level) { return static_cast<int>(level) >= g_level.load(); }
void SetSink(Sink sink) { g_sink.store(sink ? sink : &StderrSink); }

void Write(Level level, std::string_view msg, Fields fields) {
  if (!Enabled(level)) return;
  std::string line;
  line.reserve(160);
  line += "{\"ts\":\"";
  AppendTimestamp(line);
  line += "\",\"level\":\"";
  line += LevelName(level);
  line += "\",\"msg\":\"";
  AppendJsonEscaped(line, msg);
  line += '"';
  for (const Field& f : fields) {
    line += ",\"";
    AppendJsonEscaped(line, f.key);
    line += "\":";
    if (const auto* s = std::get_if<std::string_view>(&f.value)) {
      line += '"';
      AppendJsonEscaped(line, *s);
      line += '"';
    } else if (const auto* i = std::get_if<int64_t>(&f.value)) {
      line += std::to_string(*i);
    } else if (const auto* d = std::get_if<double>(&f.value)) {
      if (std::isfinite(*d)) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3f", *d);
        line += buf;
      } else {
        line += "null";
      }
    } else if (const auto* b = std::get_if<bool>(&f.value)) {
      line += *b ? "true" : "false";
    }
  }
  line += "}\n";
  g_sink.load()(line);
}

}  // namespace scimsync::log
