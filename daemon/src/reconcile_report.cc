// The reconciliation report: names of kinds, exit codes, the readable table and the JSON
// object scripts read (docs/reconcile.md lists its fields).
#include <algorithm>
#include <array>
#include <iomanip>
#include <sstream>

#include "reconcile_internal.h"
#include "scimsync/daemon/app.h"
#include "scimsync/daemon/reconcile.h"
#include "scimsync/strings.h"

namespace scimsync::daemon {
namespace {

std::string Quoted(const std::optional<std::string>& v) {
  if (!v) return "(none)";
  std::string out = "\"";
  for (char c : *v) {
    if (c == '"' || c == '\\') out += '\\';
    out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
  }
  return out + "\"";
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  AppendJsonEscaped(out, s);
  return out + "\"";
}

std::string JsonOpt(const std::optional<std::string>& v) { return v ? JsonString(*v) : "null"; }

std::string Who(const std::string& tenant, const std::string& key) {
  return tenant.empty() ? key : tenant + "/" + key;
}

std::string DriftText(const EmployeeDrift& d) {
  std::string out;
  for (DriftKind k : d.kinds) out += (out.empty() ? "" : ",") + std::string(DriftKindName(k));
  return out;
}

std::string ChangeText(const EmployeeDrift& d) {
  if (d.kinds == std::vector{DriftKind::kMissing}) {
    return "create " + (d.user_name.empty() ? d.external_id : d.user_name) +
           (d.email.empty() ? "" : " <" + d.email + ">");
  }
  if (d.kinds == std::vector{DriftKind::kOrphan}) {
    return "no HRIS employee has externalId " + d.external_id + ": " + d.note;
  }
  std::string out;
  for (const AttributeChange& c : d.changes) {
    if (!out.empty()) out += "; ";
    out += c.attribute + ": " + Quoted(c.jumpcloud) + " -> " + Quoted(c.hris);
    if (c.attribute == "active" && c.hris == std::optional<std::string>("false")) {
      out += " (suspend)";
    } else if (c.attribute == "active" && c.hris == std::optional<std::string>("true")) {
      out += " (reactivate)";
    } else if (c.attribute == "user") {
      out = "delete the user (the profile's action)";
    }
  }

  return out;
}

}  // namespace

const char* DriftKindName(DriftKind kind) {
  switch (kind) {
    case DriftKind::kMissing:
      return "missing";
    case DriftKind::kAttributes:
      return "attributes";
    case DriftKind::kActive:
      return "active";
    case DriftKind::kOrphan:
      return "orphan";
  }
  return "?";
}

const char* ProblemKindName(ReconcileProblem::Kind kind) {
  switch (kind) {
    case ReconcileProblem::Kind::kConflict:
      return "conflict";
    case ReconcileProblem::Kind::kInvalid:
      return "invalid";
    case ReconcileProblem::Kind::kError:
      return "error";
  }
  return "?";
}

int ExitCodeFor(const Error& error) {
  switch (error.kind) {
    case ErrorKind::kAuth:
      return kExitNoPerm;
    case ErrorKind::kTransient:
      return kExitUnavailable;
    case ErrorKind::kConflict:
      return kExitTempFail;
    case ErrorKind::kInvalid:
      return kExitConfig;
    case ErrorKind::kPermanent:
    case ErrorKind::kNotFound:
      return kExitDataErr;
  }
  return kExitSoftware;
}

int ExitCodeFor(const ReconcileReport& report) {
  if (!report.refused.empty()) return kExitRefused;
  if (report.held) return kExitHeld;
  if (!report.problems.empty()) return kExitDrift;
  for (const EmployeeDrift& d : report.drift) {
    if (report.dry_run || !d.enqueued) return kExitDrift;
  }
  return kExitOk;
}

std::string FormatReportTable(const ReconcileReport& r) {
  std::ostringstream o;
  o << "Reconciliation of profile " << r.profile << (r.dry_run ? " (dry run)" : "")
    << (r.run_id.empty() ? "" : ", run " + r.run_id) << ": " << r.hris_employees
    << " HRIS employees, " << r.jumpcloud_users << " JumpCloud users.\n";
  if (!r.refused.empty()) {
    o << "\nREFUSED: " << r.refused << "\n";
    return o.str();
  }
  o << "  " << r.in_sync << " in sync; " << r.drifted() << " drifted (" << r.missing << " missing, "
    << r.attributes << " attributes, " << r.active << " active, " << r.orphans << " orphans); "
    << r.conflicts << " conflicts, " << r.invalid << " invalid, " << r.errors << " unreadable.\n";
  if (!r.drift.empty()) {
    std::vector<std::array<std::string, 4>> rows;
    rows.push_back({"EMPLOYEE", "USERNAME", "DRIFT", r.dry_run ? "WOULD CHANGE" : "CHANGE"});
    for (const EmployeeDrift& d : r.drift) {
      std::string change = ChangeText(d);
      if (!r.dry_run && !d.enqueued) change += " (not enqueued)";
      rows.push_back({Who(d.tenant, d.employee_key), d.user_name.empty() ? "-" : d.user_name,
                      DriftText(d), change});
    }
    size_t w[3] = {0, 0, 0};
    for (const auto& row : rows) {
      for (size_t c = 0; c < 3; ++c) w[c] = std::max(w[c], row[c].size());
    }
    o << "\n";
    for (const auto& row : rows) {
      o << std::left << std::setw(static_cast<int>(w[0] + 2)) << row[0]
        << std::setw(static_cast<int>(w[1] + 2)) << row[1] << std::setw(static_cast<int>(w[2] + 2))
        << row[2] << row[3] << "\n";
    }
  }
  o << "\nPlan: " << r.suspensions << (r.suspensions == 1 ? " suspension" : " suspensions")
    << " (threshold " << r.suspend_limit << ": workers.guard max_suspends, or max_suspend_percent "
    << "of this scope's " << r.scope_users << " users).\n";
  if (r.held) {
    o << "HELD: the plan exceeds the threshold, so nothing was "
      << (r.dry_run ? "changed and a real run would enqueue nothing" : "enqueued")
      << ". Check the HRIS; if these people really left, run `scimsyncd guard release` to "
         "apply the held plan, or run again with --confirm.\n";
  } else if (r.confirmed) {
    o << "CONFIRMED: the plan exceeds the threshold and was applied (--confirm).\n";
  }
  if (!r.problems.empty()) {
    o << "\nNeeds a human (not enqueued):\n";
    for (const ReconcileProblem& p : r.problems) {
      o << "  " << Who(p.tenant, p.employee_key) << "  " << ProblemKindName(p.kind) << ": "
        << p.message << "\n";
    }
  }
  o << "\n";
  int64_t fixable = 0;
  for (const EmployeeDrift& d : r.drift) {
    if (d.fixable) ++fixable;
  }
  if (r.dry_run) {
    o << (r.drift.empty()
              ? std::string("Nothing to change.")
              : "Nothing was changed (--dry-run). Without --dry-run, " + std::to_string(fixable) +
                    " sync items would be enqueued for the workers.")
      << "\n";
  } else if (r.drift.empty()) {
    o << "Nothing to change.\n";
  } else if (r.held) {
    o << "Held " << r.drift.size() << " drifted employees; nothing enqueued.\n";
  } else {
    o << "Enqueued " << r.enqueued << " sync items (dedup ids reconcile-" << r.run_id
      << "-...); the workers apply them as they apply webhooks.\n";
  }
  return o.str();
}

std::string FormatReportJson(const ReconcileReport& r) {
  std::ostringstream o;
  o << "{\"run_id\":" << JsonString(r.run_id) << ",\"profile\":" << JsonString(r.profile)
    << ",\"dry_run\":" << (r.dry_run ? "true" : "false") << ",\"started_ms\":" << r.started_ms
    << ",\"finished_ms\":" << r.finished_ms << ",\"hris_employees\":" << r.hris_employees
    << ",\"jumpcloud_users\":" << r.jumpcloud_users << ",\"in_sync\":" << r.in_sync
    << ",\"drifted\":" << r.drifted() << ",\"counts\":{\"missing\":" << r.missing
    << ",\"attributes\":" << r.attributes << ",\"active\":" << r.active
    << ",\"orphan\":" << r.orphans << ",\"conflict\":" << r.conflicts
    << ",\"invalid\":" << r.invalid << ",\"error\":" << r.errors << "},\"enqueued\":" << r.enqueued
    << ",\"duplicates\":" << r.duplicates << ",\"scim_requests\":" << r.scim_requests
    << ",\"exit_code\":" << ExitCodeFor(r) << ",\"waiting\":" << r.waiting
    << ",\"last_listed\":" << r.last_listed
    << ",\"refused\":" << (r.refused.empty() ? "null" : JsonString(r.refused))
    << ",\"held\":" << (r.held ? "true" : "false")
    << ",\"confirmed\":" << (r.confirmed ? "true" : "false")
    << ",\"plan\":{\"suspensions\":" << r.suspensions << ",\"limit\":" << r.suspend_limit
    << ",\"scope_users\":" << r.scope_users << "},\"drift\":[";
  for (size_t i = 0; i < r.drift.size(); ++i) {
    const EmployeeDrift& d = r.drift[i];
    o << (i ? "," : "") << "{\"tenant\":" << JsonString(d.tenant)
      << ",\"employee_key\":" << JsonString(d.employee_key)
      << ",\"external_id\":" << JsonString(d.external_id)
      << ",\"user_name\":" << JsonString(d.user_name) << ",\"email\":" << JsonString(d.email)
      << ",\"jumpcloud_id\":" << (d.jumpcloud_id.empty() ? "null" : JsonString(d.jumpcloud_id))
      << ",\"kinds\":[";
    for (size_t k = 0; k < d.kinds.size(); ++k) {
      o << (k ? "," : "") << JsonString(DriftKindName(d.kinds[k]));
    }
    o << "],\"changes\":[";
    for (size_t k = 0; k < d.changes.size(); ++k) {
      const AttributeChange& c = d.changes[k];
      o << (k ? "," : "") << "{\"attribute\":" << JsonString(c.attribute)
        << ",\"jumpcloud\":" << JsonOpt(c.jumpcloud) << ",\"hris\":" << JsonOpt(c.hris) << "}";
    }
    o << "],\"fixable\":" << (d.fixable ? "true" : "false")
      << ",\"enqueued\":" << (d.enqueued ? "true" : "false") << ",\"note\":" << JsonString(d.note)
      << "}";
  }
  o << "],\"problems\":[";
  for (size_t i = 0; i < r.problems.size(); ++i) {
    const ReconcileProblem& p = r.problems[i];
    o << (i ? "," : "") << "{\"kind\":" << JsonString(ProblemKindName(p.kind))
      << ",\"tenant\":" << JsonString(p.tenant)
      << ",\"employee_key\":" << JsonString(p.employee_key)
      << ",\"message\":" << JsonString(p.message) << "}";
  }
  o << "]}\n";
  return o.str();
}

std::string FormatErrorJson(const std::string& message, int exit_code) {
  return "{\"error\":" + JsonString(message) + ",\"exit_code\":" + std::to_string(exit_code) +
         "}\n";
}

}  // namespace scimsync::daemon
