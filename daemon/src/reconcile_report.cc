// The reconciliation report: names of kinds, exit codes, the readable table and the JSON
// object scripts read (docs/reconcile.md lists its fields).
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <iomanip>
#include <sstream>

#include "json_out.h"
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

using json_out::Bool;
using json_out::Int;
using json_out::JsonWriter;
using json_out::NonEmpty;
using json_out::Opt;
using json_out::Str;

void WriteDrift(JsonWriter& w, const EmployeeDrift& d) {
  w.StartObject();
  Str(w, "tenant", d.tenant);
  Str(w, "employee_key", d.employee_key);
  Str(w, "external_id", d.external_id);
  Str(w, "user_name", d.user_name);
  Str(w, "email", d.email);
  NonEmpty(w, "jumpcloud_id", d.jumpcloud_id);
  w.Key("kinds");
  w.StartArray();
  for (DriftKind k : d.kinds) w.String(DriftKindName(k));
  w.EndArray();
  w.Key("changes");
  w.StartArray();
  for (const AttributeChange& c : d.changes) {
    w.StartObject();
    Str(w, "attribute", c.attribute);
    Opt(w, "jumpcloud", c.jumpcloud);
    Opt(w, "hris", c.hris);
    w.EndObject();
  }
  w.EndArray();
  Bool(w, "fixable", d.fixable);
  Bool(w, "enqueued", d.enqueued);
  Str(w, "note", d.note);
  w.EndObject();
}

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
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.StartObject();
  Str(w, "run_id", r.run_id);
  Str(w, "profile", r.profile);
  Bool(w, "dry_run", r.dry_run);
  Int(w, "started_ms", r.started_ms);
  Int(w, "finished_ms", r.finished_ms);
  Int(w, "hris_employees", r.hris_employees);
  Int(w, "jumpcloud_users", r.jumpcloud_users);
  Int(w, "in_sync", r.in_sync);
  Int(w, "drifted", r.drifted());
  w.Key("counts");
  w.StartObject();
  Int(w, "missing", r.missing);
  Int(w, "attributes", r.attributes);
  Int(w, "active", r.active);
  Int(w, "orphan", r.orphans);
  Int(w, "conflict", r.conflicts);
  Int(w, "invalid", r.invalid);
  Int(w, "error", r.errors);
  w.EndObject();
  Int(w, "enqueued", r.enqueued);
  Int(w, "duplicates", r.duplicates);
  Int(w, "scim_requests", r.scim_requests);
  Int(w, "exit_code", ExitCodeFor(r));
  Int(w, "waiting", r.waiting);
  Int(w, "last_listed", r.last_listed);
  NonEmpty(w, "refused", r.refused);
  Bool(w, "held", r.held);
  Bool(w, "confirmed", r.confirmed);
  w.Key("plan");
  w.StartObject();
  Int(w, "suspensions", r.suspensions);
  Int(w, "limit", r.suspend_limit);
  Int(w, "scope_users", r.scope_users);
  w.EndObject();
  w.Key("drift");
  w.StartArray();
  for (const EmployeeDrift& d : r.drift) WriteDrift(w, d);
  w.EndArray();
  w.Key("problems");
  w.StartArray();
  for (const ReconcileProblem& p : r.problems) {
    w.StartObject();
    Str(w, "kind", ProblemKindName(p.kind));
    Str(w, "tenant", p.tenant);
    Str(w, "employee_key", p.employee_key);
    Str(w, "message", p.message);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize()) + "\n";
}

std::string FormatErrorJson(const std::string& message, int exit_code) {
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.StartObject();
  Str(w, "error", message);
  Int(w, "exit_code", exit_code);
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize()) + "\n";
}

}  // namespace scimsync::daemon
