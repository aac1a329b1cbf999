#include "events.h"

#include <algorithm>

#include "eval.h"
#include "ingest.h"
#include "profile_impl.h"

namespace scimsync::connectors::internal {
namespace {

bool MatchesAny(const std::vector<std::string>& patterns, const std::string& type) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return GlobMatch(p, type); });
}

}  // namespace

bool IsEmployeeEvent(const ProfileSpec& spec, const std::string& type) {
  if (type.empty()) return false;
  if (!spec.events.employee.empty()) return MatchesAny(spec.events.employee, type);
  for (const ActionRule& rule : spec.actions) {
    if (rule.action == Action::kIgnore) continue;
    for (const std::string& p : rule.events) {
      if (p != "*" && p != kReconcileEventType && GlobMatch(p, type)) return true;
    }
  }
  return false;
}

bool IsOtherEvent(const ProfileSpec& spec, const std::string& type) {
  return !type.empty() && !IsEmployeeEvent(spec, type) && MatchesAny(spec.events.other, type);
}

bool ConditionHolds(const Condition& c, const rapidjson::Value& payload) {
  EvalContext ctx;
  ctx.payload = &payload;
  ctx.item = &payload;
  ctx.default_scope = Scope::kPayload;
  std::optional<std::string> v = Evaluate(c.value, ctx);
  switch (c.op) {
    case Condition::Op::kExists:
      return v.has_value() && !v->empty();
    case Condition::Op::kMissing:
      return !v.has_value() || v->empty();
    case Condition::Op::kEquals:
      return v && !c.values.empty() && *v == c.values[0];
    case Condition::Op::kNotEquals:
      return !v || c.values.empty() || *v != c.values[0];
    case Condition::Op::kIn:
      return v && std::find(c.values.begin(), c.values.end(), *v) != c.values.end();
    case Condition::Op::kNotIn:
      return !v || std::find(c.values.begin(), c.values.end(), *v) == c.values.end();
  }
  return false;
}

std::string FailedShape(const ProfileSpec& spec, const rapidjson::Value& item) {
  for (const Condition& c : spec.events.shape) {
    if (ConditionHolds(c, item)) continue;
    std::string what = DescribeSource(c.value);
    switch (c.op) {
      case Condition::Op::kExists:
        return what + " is present";
      case Condition::Op::kMissing:
        return what + " is absent";
      case Condition::Op::kEquals:
        return what + " equals '" + (c.values.empty() ? "" : c.values[0]) + "'";
      case Condition::Op::kNotEquals:
        return what + " is not '" + (c.values.empty() ? "" : c.values[0]) + "'";
      case Condition::Op::kIn:
        return what + " is one of the listed values";
      case Condition::Op::kNotIn:
        return what + " is none of the listed values";
    }
  }
  return {};
}

}  // namespace scimsync::connectors::internal
