// `scimsyncd map`: a dry run for humans. Decodes a webhook body with a configured profile and
// prints, as JSON, each item with its action, the SCIM user it maps to and JumpCloud's
// validation problems -- without Redis and without network (--record stands in for the HRIS
// API). --verify checks the request's auth with the configured secret and says exactly why it
// fails. The daemon's main dispatches `argv[1] == "map"` here.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace scimsync::connectors {

// Usage:
//   map --config FILE --profile NAME PAYLOAD [--header 'Name: value' ...] [--record RECORD.json]
//       [--verify] [--now UNIX_SECONDS] [--tenant TENANT] [--content-type TYPE]
// PAYLOAD is a file ('-' reads stdin). `args` are the words after "map" (a leading "map" is
// skipped). Returns 0 on success, 65 on a mapping, decoding or verification error, 64 on a usage
// error, 78 when the config or profile does not load.
int RunMapCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace scimsync::connectors
