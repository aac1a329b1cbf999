// Admin subcommands that talk to Redis directly (no running daemon needed):
//   scimsyncd status [--json]     queue, retries, dead letters, leases, pause, guard
//   scimsyncd dlq list | show ID | replay ID | replay --all | drop ID
//   scimsyncd guard release
// Each takes --config FILE. Exit 0, 64 usage, 69 Redis unreachable, 78 config, 65 unknown id.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "scimsync/config.h"
#include "scimsync/queue/queue.h"
#include "scimsync/redis/client.h"

namespace scimsync::daemon {

int RunStatusCommand(const config::Config& cfg, const std::vector<std::string>& args,
                     std::ostream& out, std::ostream& err);
int RunDlqCommand(const config::Config& cfg, const std::vector<std::string>& args,
                  std::ostream& out, std::ostream& err);
int RunGuardCommand(const config::Config& cfg, const std::vector<std::string>& args,
                    std::ostream& out, std::ostream& err);

// `scimsyncd migrate-scope --profile NAME [--tenant T] [--include-unlinked] [--apply]`: for an
// install that adds a second identity scope (docs/profiles.md, "Identity scopes"). Rewrites the
// bare externalIds that NAME created while it was the only scope to "<scope_prefix>:<id>" and
// moves their links. A user with a bare externalId is NAME's when NAME's link points at it
// (or, with --include-unlinked, when no other scope's link claims it). Without --apply it only
// prints what it would do. Run it with the new config before scimsyncd starts with it.
int RunMigrateScopeCommand(const config::Config& cfg, const std::vector<std::string>& args,
                           std::ostream& out, std::ostream& err);

// The resolved Redis password (empty: none), or an error naming the secret's source.
Result<std::string> RedisPassword(const config::Config& cfg);

// The preamble every admin command shares once its flags and config are read: the Redis
// password resolved, a pool of `pool_size` connections and the queue opened, and with `ping`
// Redis answering. Returns kExitOk and fills *out, or writes why to `err` and returns the exit
// code: kExitConfig for the password (the line starts with `context`: "scimsyncd", "scimsyncd
// sync: redis password"), kExitUnavailable when Redis does not answer (RedisDown's message).
struct AdminRedis {
  std::unique_ptr<redis::Pool> pool;
  std::unique_ptr<queue::Queue> queue;
};
int OpenAdminRedis(const config::Config& cfg, int pool_size, bool ping, const std::string& context,
                   std::ostream& err, AdminRedis* out);

// "scimsyncd: Redis is not reachable: ..." with what to check; returns kExitUnavailable.
int RedisDown(std::ostream& err, const Error& e);

}  // namespace scimsync::daemon
