// What one job does to an employee's JumpCloud user. The one vocabulary of actions: a
// connector profile's rules name them (connectors::Action is this type), the converger carries
// them out, logs, metrics and the admin commands print ActionName.
#pragma once

namespace scimsync::scim {

enum class Action {
  kSync,        // create or update to the desired state
  kSuspend,     // active=false on an existing user; attributes are left alone, so a departing
                // employee whose HRIS record lost its email is still suspended. Absent: nothing.
  kReactivate,  // sync with active=true (a rehire gets the same user back, or a new one)
  kDelete,      // DELETE the user; only when a profile asks for it explicitly
  kIgnore,      // nothing to send: the event is acknowledged (a profile's `ignore`); Converge
                // returns kDone without a request
};
// "sync", "suspend", "reactivate", "delete", "ignore": the words profiles, logs, metrics and
// the admin commands use.
const char* ActionName(Action action);

}  // namespace scimsync::scim
