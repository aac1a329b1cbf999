#include "employee_args.h"

namespace scimsync::daemon {

std::string ParseEmployeeArgs(const std::vector<std::string>& args, const OptionParser& own,
                              EmployeeArgs* out) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    if (a == "--profile") {
      auto v = value();
      if (!v) return "--profile needs a profile name";
      out->profile = *v;
    } else if (a == "--tenant") {
      auto v = value();
      if (!v) return "--tenant needs a tenant";
      out->tenant = *v;
    } else if (a.rfind("--", 0) == 0 || (a.size() == 2 && a[0] == '-')) {
      std::optional<std::string> problem = own ? own(a, value) : std::nullopt;
      if (!problem) return "unexpected option '" + a + "'";
      if (!problem->empty()) return *problem;
    } else if (out->employee.empty()) {
      out->employee = a;
    } else {
      return "one EMPLOYEE_ID only (got '" + out->employee + "' and '" + a + "')";
    }
  }
  if (out->profile.empty()) return "--profile NAME is required";
  if (out->employee.empty()) return "EMPLOYEE_ID is required";
  return "";
}

}  // namespace scimsync::daemon
