// "What happened to Alice?": the one-person admin commands. Both talk to Redis (and `sync` to
// the HRIS and JumpCloud APIs the profile uses), never to a daemon's port, so they work from any
// machine that can reach Redis while the daemons run elsewhere.
//
//   scimsyncd employee --profile NAME [--tenant T] [--last N] [--json] EMPLOYEE_ID
//       the JumpCloud user the employee is linked to, what is waiting for them (stream items,
//       retries, deferred, held and paused items), their dead letters with the command to replay
//       each, and their last N outcomes (default 20) from the history (history.h). Read-only.
//       Exit 0 (also when nothing is known about the employee), 64 usage or unknown profile,
//       69 Redis unreachable, 78 config.
//
//   scimsyncd sync --profile NAME [--tenant T] [--dry-run] [--timeout S] EMPLOYEE_ID
//       provision on demand: enqueues one level-triggered sync item for the employee through the
//       normal pipeline (ordering, fencing, the guard and the rate limit apply) and waits up to S
//       seconds (default 60) for the workers' outcome, printing each recorded step. --dry-run
//       plans locally instead: fetches the record (or takes the last payload), maps it, reads
//       the JumpCloud user, and prints the requests a sync would send; nothing is enqueued or
//       written. Exit 0 applied (or planned), 64 usage, 65 the outcome was not applied (dead
//       letter, conflict, held, invalid record), 69 Redis or an API unreachable, 75 timed out
//       waiting (the item stays queued and is still worked on), 78 config.
//
// Output never contains a secret: what is printed was redacted when it was recorded, and every
// configured secret that can be resolved is masked again before printing.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "scimsync/config.h"

namespace scimsync::daemon {

// `config_file` is only shown in the commands the output suggests.
int RunEmployeeCommand(const config::Config& cfg, const std::string& config_file,
                       const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
// Loads the config and the profiles itself (like `reconcile`): args include --config.
int RunSyncCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace scimsync::daemon
