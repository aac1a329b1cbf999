// Which items a profile acts on and which it only acknowledges (spec.h EventsSpec).
#pragma once

#include <rapidjson/document.h>

#include <string>

#include "spec.h"

namespace scimsync::connectors::internal {

// True when `type` matches the profile's employee event patterns (events.employee, or the
// patterns of its action rules other than "*" when events.employee is not given).
bool IsEmployeeEvent(const ProfileSpec& spec, const std::string& type);

// True when `type` is non-empty, not an employee event, and matches events.other. An absent
// type is never "other": such an item is classified by its shape (employee key, events.shape).
bool IsOtherEvent(const ProfileSpec& spec, const std::string& type);

// The first events.shape condition the item fails, described ("/employee_id exists"); empty
// when it meets them all.
std::string FailedShape(const ProfileSpec& spec, const rapidjson::Value& item);

bool ConditionHolds(const Condition& c, const rapidjson::Value& payload);

}  // namespace scimsync::connectors::internal
