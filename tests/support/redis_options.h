// Redis options for tests, filled by the real config loader from a URL, so the tests exercise the
// same host/port/unix_path/db/user fields the daemon gets. Header-only: tests that use it link
// scimsync_config.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "scimsync/config.h"

namespace scimsync::testing {

inline config::RedisOptions RedisOptionsFor(const std::string& url, int partitions = 4,
                                            const std::string& key_prefix = "scimsync") {
  config::Config cfg;
  std::string yaml = "redis: {url: \"" + url + "\", key_prefix: " + key_prefix +
                     ", partitions: " + std::to_string(partitions) +
                     ", connect_timeout_ms: 500, command_timeout_ms: 2000}\n";
  for (const auto& p : config::LoadString(yaml, "test.yaml", &cfg)) {
    // The rest of the file (profiles...) is missing on purpose; only redis.* must be clean.
    EXPECT_NE(p.path.rfind("redis", 0), 0u) << p.ToString();
  }
  return cfg.redis;
}

}  // namespace scimsync::testing
