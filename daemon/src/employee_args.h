// The arguments the per-employee commands share (`scimsyncd employee`, `scimsyncd sync`):
// --profile NAME, --tenant T and one EMPLOYEE_ID, with each command's own options beside them.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace scimsync::daemon {

struct EmployeeArgs {
  std::string profile;
  std::string tenant;
  std::string employee;
};

// Takes one of a command's own options: `option` is its name as given, `value()` takes the next
// argument as its value (nullopt when there is none). Returns "" when the option was taken, else
// what is wrong with it; std::nullopt when the command has no such option.
using OptionParser = std::function<std::optional<std::string>(
    const std::string& option, const std::function<std::optional<std::string>()>& value)>;

// Parses `args` into *out, handing options other than --profile and --tenant to `own`. Returns
// "" when they parse and name a profile and an employee, else the problem in one line (what to
// give), for the command's usage message.
std::string ParseEmployeeArgs(const std::vector<std::string>& args, const OptionParser& own,
                              EmployeeArgs* out);

}  // namespace scimsync::daemon
