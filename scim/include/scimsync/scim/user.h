// The desired state of one employee's JumpCloud user, as connectors produce it and the SCIM
// client converges it. An unset optional means "not managed by scimsync": it is neither sent nor
// compared, so an attribute an admin set by hand in JumpCloud survives.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace scimsync::scim {

inline constexpr char kUserSchema[] = "urn:ietf:params:scim:schemas:core:2.0:User";
inline constexpr char kEnterpriseUrn[] =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

struct User {
  std::string external_id;                // the HRIS employee id: the identity anchor
  std::string user_name;                  // JumpCloud username: no special characters, not an email
  std::optional<std::string> given_name;  // name.givenName
  std::optional<std::string> family_name;   // name.familyName
  std::optional<std::string> display_name;  // displayName
  std::optional<std::string> email;         // emails[type=work, primary=true].value
  std::optional<std::string> title;         // title (JumpCloud "Job Title")
  std::optional<std::string> locale;        // locale (JumpCloud "Location")
  std::optional<std::string> user_type;     // userType (JumpCloud "Employee Type")
  // Enterprise extension attributes.
  std::optional<std::string> department;
  std::optional<std::string> cost_center;
  std::optional<std::string> organization;
  std::optional<std::string> employee_number;  // JumpCloud "Employee ID": unique, max 256
  std::optional<std::string> password;         // sent only when a profile maps one
  std::optional<bool> active;

  bool operator==(const User&) const = default;
};

// One broken JumpCloud rule: `field` is the SCIM attribute path ("userName",
// "emails[primary].value"), `rule` says what is wrong in words an admin can act on.
struct ValidationProblem {
  std::string field;
  std::string rule;
  std::string ToString() const { return field + ": " + rule; }
};

// JumpCloud's rules from its SCIM attribute table, checked before anything is sent: userName
// present, at most 1024 characters, not an email, only letters, digits, '.', '_' and '-';
// email present, valid, at most 1024; names at most 1024; employeeNumber at most 256; externalId
// present and valid UTF-8.
std::vector<ValidationProblem> Validate(const User& user);

// userName as JumpCloud accepts it, from any text (usually an email's local part): lowercase,
// diacritics folded to ASCII, characters outside [a-z0-9._-] dropped, must start with a letter.
// Returns empty when nothing usable is left.
std::string SafeUserName(const std::string& text);

}  // namespace scimsync::scim
