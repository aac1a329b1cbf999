// Queue test helpers: items and the dedup window; RedisOptionsFor comes from redis_options.h.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "redis_options.h"
#include "scimsync/config.h"
#include "scimsync/queue/queue.h"

namespace scimsync::testing {

constexpr int64_t kWeek = int64_t{7} * 24 * 3600;

// A minimal item of profile "hr" for the Redis-only queue tests.
inline queue::Item MinimalItem(const std::string& employee, const std::string& dedup_id) {
  queue::Item item;
  item.profile = "hr";
  item.employee_key = employee;
  item.dedup_id = dedup_id;
  item.event_type = "employee.created";
  item.payload = "{}";
  item.received_at_ms = 1;
  return item;
}

}  // namespace scimsync::testing
