// The ingest side of a profile: auth check on the raw bytes, body decoding, fan-out.
#pragma once

#include <rapidjson/document.h>

#include <cstdint>
#include <string>
#include <vector>

#include "json.h"
#include "scimsync/connectors/profile.h"
#include "scimsync/result.h"
#include "spec.h"

namespace scimsync::connectors::internal {

// "hmac-sha256 over body + header X-BambooHR-Timestamp (key utf8), hex in X-BambooHR-Signature"
std::string DescribeAuth(const AuthSpec& auth);

// True for a body that is a handshake of this profile (a ping, or a verification token). Such a
// request enqueues nothing, and its sender cannot sign it yet, so auth is not asked of it.
bool IsHandshake(const DecodeSpec& decode, const Request& request);

Status VerifyAuth(const AuthSpec& auth, const DecodeSpec& decode, const Request& request,
                  const std::vector<std::string>& secrets, int64_t now_s);

// Parses `a=1&b[c]=2&list[0][id]=3` into a JSON tree: brackets nest objects, keys 0..n-1
// (or `[]`) make arrays; other numeric keys (`employees[12345]`) stay object member names. Values
// stay strings. A name with more than max_depth bracket groups is an error: the tree is built and
// walked recursively.
bool DecodeForm(const std::string& body, rapidjson::Document* doc, std::string* error,
                int max_depth = kMaxJsonDepth);

struct IngestOptions {
  std::string verification_token_file;  // where a verification-token handshake stores the token
  // items.tenant is read only when the config entry configures tenants: with none, the entry's
  // own api settings serve whatever connection the body names.
  bool tenant_from_body = false;
};

Result<Decoded> DecodeRequest(const ProfileSpec& spec, const IngestOptions& options,
                              const Request& request);

std::string DescribeSource(const Source& source);

}  // namespace scimsync::connectors::internal
