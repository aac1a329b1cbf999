// A connector profile teaches scimsync one HRIS: how its webhooks are authenticated and shaped
// (ingest side), and how an employee's record maps to a JumpCloud user (worker side). Profiles
// are YAML files (built-ins under connectors/profiles/); docs/profiles.md is the format.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "scimsync/config.h"
#include "scimsync/result.h"
#include "scimsync/scim/user.h"

namespace scimsync::connectors {

// A webhook request as received, before any parsing.
struct Request {
  std::string method = "POST";
  std::string content_type;  // the Content-Type header, as sent
  // Header names as sent; lookups are case-insensitive and treat '_' and '-' alike.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;    // raw bytes: signatures are checked on exactly these
  std::string tenant;  // optional /webhooks/{profile}/{tenant} segment
};

// One event split out of a request.
struct DecodedItem {
  std::string employee_key;
  std::string dedup_id;
  std::string event_type;
  std::string occurred_at;  // or a version; empty when the HRIS sends neither
  std::string payload;      // the item's JSON, compact
};

struct Decoded {
  std::vector<DecodedItem> items;
  // A handshake (HiBob's "Ping test", Gusto's verification token) is answered with
  // handshake_status and enqueues nothing.
  bool handshake = false;
  int handshake_status = 200;
  std::string handshake_note;  // logged: what the admin must do, never a secret
};

enum class Action { kSync, kSuspend, kReactivate, kDelete, kIgnore };
const char* ActionName(Action action);

class Profile {
 public:
  virtual ~Profile() = default;
  virtual const std::string& name() const = 0;
  virtual int64_t dedup_window_s() const = 0;

  // Checks the request's auth on the raw bytes with the active secrets (several during a
  // rotation). Error kind kAuth with a message naming the header and the recipe; never a
  // secret or the expected signature.
  virtual Status Verify(const Request& request, const std::vector<std::string>& secrets,
                        int64_t now_s) const = 0;

  // Decodes and fans out. Errors: kInvalid (400, malformed or an item without employee key),
  // or an Error with http_status 415 for a content type the profile does not accept. Each
  // message says what to fix.
  virtual Result<Decoded> Decode(const Request& request) const = 0;
};

// Builds the profile named by a config entry (built-in name or file path), reading its
// connector-specific keys strictly. Problems name file, line and key; nullptr when any.
std::shared_ptr<const Profile> LoadProfile(const config::ProfileConfig& entry,
                                           config::Problems* problems);

}  // namespace scimsync::connectors
