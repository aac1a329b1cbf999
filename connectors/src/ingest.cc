#include "ingest.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>

#include "codec.h"
#include "eval.h"
#include "events.h"
#include "json.h"
#include "scimsync/strings.h"

namespace scimsync::connectors::internal {
namespace {

const char* AlgorithmName(HashAlgorithm a) {
  switch (a) {
    case HashAlgorithm::kSha1:
      return "sha1";
    case HashAlgorithm::kSha256:
      return "sha256";
    case HashAlgorithm::kSha512:
      return "sha512";
  }
  return "?";
}

const char* EncodingName(Encoding e) {
  switch (e) {
    case Encoding::kHex:
      return "hex";
    case Encoding::kBase64:
      return "base64";
    case Encoding::kBase64Url:
      return "base64url";
  }
  return "?";
}

Error AuthError(std::string message) {
  Error e = Error::Auth(std::move(message));
  e.http_status = 401;
  return e;
}

Error InvalidError(std::string message) {
  Error e = Error::Invalid(std::move(message));
  e.http_status = 400;
  return e;
}

Error TooLargeError(std::string message) {
  Error e = Error::Invalid(std::move(message));
  e.http_status = 413;
  return e;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

std::vector<std::string> Split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    std::string part = Trim(s.substr(start, pos == std::string::npos ? pos : pos - start));
    if (!part.empty()) out.push_back(part);
    if (pos == std::string::npos) break;
    start = pos + sep.size();
  }
  return out;
}

std::string SecretsPhrase(size_t n) {
  return n == 1 ? "the configured secret"
                : "any of the " + std::to_string(n) + " configured secrets";
}

Status VerifyHmac(const AuthSpec& auth, const Request& request,
                  const std::vector<std::string>& secrets, int64_t now_s) {
  const std::string recipe = DescribeAuth(auth);
  if (!auth.timestamp_header.empty() && auth.tolerance_s > 0) {
    const std::string* ts = FindHeader(request, auth.timestamp_header);
    if (ts == nullptr) {
      return AuthError("missing header " + auth.timestamp_header + " (the timestamp signed by " +
                       recipe + ")");
    }
    auto when = ParseTimeSeconds(*ts);
    if (!when) {
      return AuthError("header " + auth.timestamp_header +
                       " is not a timestamp (Unix seconds or ISO 8601)");
    }
    int64_t skew = now_s - *when;
    if (skew > auth.tolerance_s || -skew > auth.tolerance_s) {
      return AuthError("header " + auth.timestamp_header + " is " +
                       std::to_string(skew < 0 ? -skew : skew) + " s " +
                       (skew < 0 ? "in the future" : "old") + "; the window is ±" +
                       std::to_string(auth.tolerance_s) +
                       " s (a replayed request, or a clock out of step: check NTP on both sides)");
    }
  }
  const std::string* header = FindHeader(request, auth.header);
  if (header == nullptr) {
    return AuthError("missing header " + auth.header + " (expected " + recipe + ")");
  }
  std::vector<std::string> candidates;
  if (auth.separator.empty()) {
    candidates.push_back(Trim(*header));
  } else {
    candidates = Split(*header, auth.separator);
  }
  std::vector<std::string> decoded;
  size_t wrong_prefix = 0;
  for (std::string c : candidates) {
    if (!auth.prefix.empty()) {
      if (!StartsWithNoCase(c, auth.prefix)) {
        ++wrong_prefix;
        continue;
      }
      c = c.substr(auth.prefix.size());
    }
    if (auto bytes = Decode(auth.encoding, c)) decoded.push_back(std::move(*bytes));
  }
  if (decoded.empty()) {
    if (!auth.prefix.empty() && wrong_prefix == candidates.size()) {
      return AuthError("header " + auth.header + " has no signature starting with '" + auth.prefix +
                       "' (expected " + recipe + ")");
    }
    return AuthError("header " + auth.header + " is not " + EncodingName(auth.encoding) +
                     " (expected " + recipe + ")");
  }
  std::string message;
  for (const MessagePart& part : auth.message) {
    switch (part.kind) {
      case MessagePart::Kind::kBody:
        message += request.body;
        break;
      case MessagePart::Kind::kLiteral:
        message += part.text;
        break;
      case MessagePart::Kind::kMethod:
        message += request.method;
        break;
      case MessagePart::Kind::kHeader: {
        const std::string* h = FindHeader(request, part.text);
        if (h == nullptr) {
          return AuthError("missing header " + part.text + " (part of the signed message of " +
                           recipe + ")");
        }
        message += *h;
        break;
      }
    }
  }
  size_t usable = 0;
  for (const std::string& secret : secrets) {
    std::string key = secret;
    if (!auth.key_prefix.empty() && key.rfind(auth.key_prefix, 0) == 0) {
      key = key.substr(auth.key_prefix.size());
    }
    if (auth.key_decode) {
      auto bytes = Decode(auth.key_encoding, key);
      if (!bytes) continue;
      key = std::move(*bytes);
    }
    ++usable;
    const std::string mac = Hmac(auth.algorithm, key, message);
    bool match = false;
    // Every candidate is compared, so timing does not tell which position matched.
    for (const std::string& d : decoded) match |= ConstantTimeEquals(mac, d);
    if (match) return {};
  }
  if (usable == 0) {
    return AuthError(std::string("no configured secret is valid ") +
                     (auth.key_encoding == Encoding::kHex ? "hex" : "base64") +
                     " (the recipe decodes the secret before use): check the secret's value");
  }
  return AuthError("header " + auth.header + " does not match " + recipe + " with " +
                   SecretsPhrase(secrets.size()) +
                   ": check that the secret is the one the HRIS shows, and that no proxy "
                   "re-encodes the body");
}

Status VerifyToken(const AuthSpec& auth, const Request& request,
                   const std::vector<std::string>& secrets) {
  const std::string recipe = DescribeAuth(auth);
  const std::string* header = FindHeader(request, auth.header);
  if (header == nullptr)
    return AuthError("missing header " + auth.header + " (expected " + recipe + ")");
  std::string value = Trim(*header);
  if (!auth.scheme.empty()) {
    if (!StartsWithNoCase(value, auth.scheme + " ")) {
      if (auth.type != AuthType::kHeader) {
        return AuthError("header " + auth.header + " does not start with '" + auth.scheme +
                         " ' (expected " + recipe + ")");
      }
    } else {
      value = Trim(value.substr(auth.scheme.size() + 1));
    }
  }
  if (auth.type == AuthType::kBasic) {
    auto decoded = Base64Decode(value);
    if (!decoded || decoded->find(':') == std::string::npos) {
      return AuthError("header " + auth.header + " is not Basic base64(user:password)");
    }
    value = std::move(*decoded);
  }
  bool match = false;
  for (const std::string& secret : secrets) match |= ConstantTimeEquals(value, secret);
  if (match) return {};
  return AuthError("header " + auth.header + " does not match " + SecretsPhrase(secrets.size()) +
                   " (" + recipe + ")");
}

// The media type without parameters, lowercased: "application/json; charset=utf-8" ->
// "application/json".
std::string MediaType(const std::string& content_type) {
  return AsciiLower(Trim(content_type.substr(0, content_type.find(';'))));
}

bool IsJsonType(const std::string& m) {
  return m == "application/json" || m == "text/json" ||
         (m.size() > 5 && m.compare(m.size() - 5, 5, "+json") == 0);
}

std::string AcceptedTypes(const DecodeSpec& d) {
  std::string out;
  for (BodyFormat f : d.formats) {
    out += (out.empty() ? "" : " or ") + std::string(f == BodyFormat::kJson
                                                         ? "application/json"
                                                         : "application/x-www-form-urlencoded");
  }
  return out;
}

bool Accepts(const DecodeSpec& d, BodyFormat f) {
  return std::find(d.formats.begin(), d.formats.end(), f) != d.formats.end();
}

// ---- form decoding ----

struct FormNode {
  std::string value;
  bool leaf = true;
  // Boxed, so the node type need not be complete where the containers are declared.
  std::vector<std::pair<std::string, std::unique_ptr<FormNode>>> children;
  // Position of each key in `children`: a form with many fields stays linear, not quadratic.
  std::unordered_map<std::string, size_t> index;
  FormNode* Child(const std::string& key);
};

FormNode* FormNode::Child(const std::string& key) {
  leaf = false;
  const std::string name = key.empty() ? std::to_string(children.size()) : key;  // "a[]"
  auto [it, added] = index.emplace(name, children.size());
  if (added) children.emplace_back(name, std::make_unique<FormNode>());
  return children[it->second].second.get();
}

// A tenant named in a body becomes part of Redis keys and log fields, like the URL segment.
bool IsSafeTenant(const std::string& tenant) {
  if (tenant.size() > 128) return false;
  return std::all_of(tenant.begin(), tenant.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// A field's name as quoted in an error: bounded, since the name is the sender's.
std::string Shown(const std::string& name) {
  return name.size() <= 64 ? name : name.substr(0, 64) + "...";
}

bool IsIndex(const std::string& k) {
  return !k.empty() && k.size() < 10 && std::all_of(k.begin(), k.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c));
  });
}

rapidjson::Value ToJson(const FormNode& node, rapidjson::Document::AllocatorType& alloc) {
  if (node.leaf) return StringValue(node.value, alloc);
  // Only 0..n-1 (or `[]`) is a list: `employees[12345][...]` keys an object by employee id,
  // and reading it as a list would lose the id.
  bool array = std::all_of(node.children.begin(), node.children.end(),
                           [](const auto& kv) { return IsIndex(kv.first); });
  if (array) {
    std::vector<bool> seen(node.children.size(), false);
    for (const auto& kv : node.children) {
      const unsigned long i = std::stoul(kv.first);
      if (i >= seen.size() || seen[i] || (kv.first.size() > 1 && kv.first[0] == '0')) {
        array = false;
        break;
      }
      seen[i] = true;
    }
  }
  if (array) {
    std::vector<std::pair<long, const FormNode*>> sorted;
    for (const auto& [k, v] : node.children) sorted.emplace_back(std::stol(k), v.get());
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    rapidjson::Value arr(rapidjson::kArrayType);
    for (const auto& [i, v] : sorted) arr.PushBack(ToJson(*v, alloc), alloc);
    return arr;
  }
  rapidjson::Value obj(rapidjson::kObjectType);
  for (const auto& [k, v] : node.children) {
    obj.AddMember(StringValue(k, alloc), ToJson(*v, alloc), alloc);
  }
  return obj;
}

std::string FormatPointerList(const Source& s) {
  std::string out;
  for (const Source& p : s.parts) out += (out.empty() ? "" : ", ") + DescribeSource(p);
  return out;
}

}  // namespace

std::string DescribeSource(const Source& source) {
  switch (source.kind) {
    case Source::Kind::kPointer:
      return source.text.empty() ? std::string("\"\" (the whole item)") : source.text;
    case Source::Kind::kHeader:
      return "header " + source.text;
    case Source::Kind::kConstant:
      return "constant '" + source.text + "'";
    case Source::Kind::kHash:
      return "hash of " + FormatPointerList(source);
    case Source::Kind::kFirst:
      return "first of " + FormatPointerList(source);
    case Source::Kind::kTemplate:
      return "template '" + source.text + "'";
    case Source::Kind::kVariable:
      return "{" + source.text + "}";
  }
  return "?";
}

std::string DescribeAuth(const AuthSpec& auth) {
  switch (auth.type) {
    case AuthType::kNone:
      return "no auth";
    case AuthType::kBearer:
      return "header " + auth.header + ": " + auth.scheme + " <secret>";
    case AuthType::kBasic:
      return "header " + auth.header + ": Basic base64(<user:password secret>)";
    case AuthType::kHeader:
      return "header " + auth.header + ": " + (auth.scheme.empty() ? "" : auth.scheme + " ") +
             "<secret>";
    case AuthType::kHmac:
      break;
  }
  std::string parts;
  for (const MessagePart& p : auth.message) {
    std::string part;
    switch (p.kind) {
      case MessagePart::Kind::kBody:
        part = "body";
        break;
      case MessagePart::Kind::kMethod:
        part = "method";
        break;
      case MessagePart::Kind::kLiteral:
        part = "'" + p.text + "'";
        break;
      case MessagePart::Kind::kHeader:
        part = "header " + p.text;
        break;
    }
    parts += (parts.empty() ? "" : " + ") + part;
  }
  std::string key =
      auth.key_decode ? (auth.key_encoding == Encoding::kHex ? "hex" : "base64") : "utf8";
  if (!auth.key_prefix.empty()) key += ", '" + auth.key_prefix + "' stripped";
  std::string out = std::string("hmac-") + AlgorithmName(auth.algorithm) + " over " + parts +
                    " (key " + key + "), " + EncodingName(auth.encoding) + " in header " +
                    auth.header;
  if (!auth.prefix.empty()) out += " prefixed '" + auth.prefix + "'";
  if (!auth.separator.empty()) out += ", several separated by '" + auth.separator + "'";
  if (auth.tolerance_s > 0) {
    out += ", timestamp in " + auth.timestamp_header + " within ±" +
           std::to_string(auth.tolerance_s) + " s";
  }
  return out;
}

bool IsHandshake(const DecodeSpec& decode, const Request& request) {
  if (!decode.ping_text.empty() && Trim(request.body) == decode.ping_text) return true;
  if (!decode.token_pointer.empty()) {
    rapidjson::Document doc;
    if (ParseJson(request.body, &doc, nullptr) && doc.IsObject()) {
      const rapidjson::Value* token = Resolve(doc, decode.token_pointer);
      // Only a body that is nothing but the token counts: an event never rides along unsigned.
      return token != nullptr && token->IsString() && doc.MemberCount() == 1;
    }
  }
  return false;
}

Status VerifyAuth(const AuthSpec& auth, const DecodeSpec& decode, const Request& request,
                  const std::vector<std::string>& secrets, int64_t now_s) {
  if (auth.type == AuthType::kNone) return {};
  if (IsHandshake(decode, request)) return {};
  if (secrets.empty()) {
    return AuthError("no secret is configured for this profile (" + DescribeAuth(auth) +
                     "): set secret_env, secret_file or secrets in its config entry");
  }
  if (auth.type == AuthType::kHmac) return VerifyHmac(auth, request, secrets, now_s);
  return VerifyToken(auth, request, secrets);
}

bool DecodeForm(const std::string& body, rapidjson::Document* doc, std::string* error,
                int max_depth) {
  FormNode root;
  root.leaf = false;
  size_t start = 0;
  std::string text = Trim(body);
  while (start <= text.size() && !text.empty()) {
    size_t amp = text.find('&', start);
    std::string pair = text.substr(start, amp == std::string::npos ? amp : amp - start);
    start = amp == std::string::npos ? text.size() + 1 : amp + 1;
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string raw_key = pair.substr(0, eq);
    std::string raw_value = eq == std::string::npos ? "" : pair.substr(eq + 1);
    auto decoded_key = PercentDecode(raw_key, /*plus_is_space=*/true);
    auto decoded_value = PercentDecode(raw_value, /*plus_is_space=*/true);
    if (!decoded_key || !decoded_value) {
      *error = "invalid percent-encoding in form field '" + Shown(raw_key) + "'";
      return false;
    }
    std::string key = std::move(*decoded_key), value = std::move(*decoded_value);
    if (!IsUtf8(key) || !IsUtf8(value)) {
      *error =
          "form field '" + (IsUtf8(key) ? Shown(key) : std::string("?")) + "' is not UTF-8 text";
      return false;
    }
    // key = name[a][b]...
    size_t bracket = key.find('[');
    std::vector<std::string> path = {key.substr(0, bracket)};
    if (path[0].empty()) {
      *error = "form field '" + Shown(key) + "' has no name before '['";
      return false;
    }
    while (bracket != std::string::npos) {
      size_t close = key.find(']', bracket);
      if (close == std::string::npos) {
        *error = "form field '" + Shown(key) + "' has an unclosed '['";
        return false;
      }
      path.push_back(key.substr(bracket + 1, close - bracket - 1));
      if (static_cast<int>(path.size()) > max_depth) {
        *error = "form field '" + Shown(key) + "' nests deeper than " + std::to_string(max_depth) +
                 " levels (listen.max_json_depth)";
        return false;
      }
      bracket = key.find('[', close);
      if (bracket != std::string::npos && bracket != close + 1) {
        *error = "form field '" + Shown(key) + "' has text between ']' and '['";
        return false;
      }
    }
    FormNode* node = &root;
    for (size_t i = 0; i < path.size(); ++i) {
      if (node->leaf && node != &root && !node->value.empty()) {
        *error = "form field '" + Shown(key) + "' nests under a field that already has a value";
        return false;
      }
      node = node->Child(path[i]);
    }
    if (!node->leaf) {
      *error = "form field '" + Shown(key) + "' is both a value and a group";
      return false;
    }
    node->value = value;
  }
  doc->SetObject();
  rapidjson::Value v = ToJson(root, doc->GetAllocator());
  if (v.IsObject()) {
    for (auto& m : v.GetObject()) {
      doc->AddMember(m.name, m.value, doc->GetAllocator());
    }
  }
  return true;
}

Result<Decoded> DecodeRequest(const ProfileSpec& spec, const IngestOptions& options,
                              const Request& request) {
  const DecodeSpec& d = spec.decode;
  Decoded out;
  if (!d.ping_text.empty() && Trim(request.body) == d.ping_text) {
    out.handshake = true;
    out.handshake_status = d.ping_status;
    out.handshake_note =
        "answered the HRIS's test request ('" + d.ping_text + "'); nothing was enqueued";
    return out;
  }
  const std::string media = MediaType(request.content_type);
  BodyFormat format = BodyFormat::kJson;
  if (IsJsonType(media)) {
    format = BodyFormat::kJson;
  } else if (media == "application/x-www-form-urlencoded") {
    format = BodyFormat::kForm;
  } else if (media.empty() || media == "text/plain") {
    // Some senders omit the type or call JSON text/plain: decide by the body's first byte.
    std::string t = Trim(request.body);
    bool looks_json = !t.empty() && (t[0] == '{' || t[0] == '[');
    format = looks_json || !Accepts(d, BodyFormat::kForm) ? BodyFormat::kJson : BodyFormat::kForm;
  } else {
    Error e = Error::Invalid("Content-Type " + media + " is not accepted by profile " + spec.name +
                             ": send " + AcceptedTypes(d));
    e.http_status = 415;
    return e;
  }
  if (!Accepts(d, format)) {
    Error e =
        Error::Invalid("Content-Type " + (media.empty() ? std::string("(none)") : media) +
                       " is not accepted by profile " + spec.name + ": send " + AcceptedTypes(d));
    e.http_status = 415;
    return e;
  }
  const RequestLimits& limits = request.limits;
  rapidjson::Document doc;
  std::string error;
  if (format == BodyFormat::kJson) {
    if (!JsonDepthWithin(request.body, limits.max_json_depth)) {
      return InvalidError("the body nests objects and arrays deeper than " +
                          std::to_string(limits.max_json_depth) +
                          " levels (listen.max_json_depth): send the record flatter");
    }
    if (!ParseJson(request.body, &doc, &error)) {
      return InvalidError("the body is not valid JSON: " + error);
    }
  } else if (!DecodeForm(request.body, &doc, &error, limits.max_json_depth)) {
    return InvalidError("the form-encoded body is malformed: " + error);
  }
  if (auto where = FindLongString(doc, limits.max_field_bytes)) {
    return TooLargeError("the string at " + *where + " is longer than " +
                         std::to_string(limits.max_field_bytes) +
                         " bytes (listen.max_field_bytes)");
  }

  if (!d.token_pointer.empty() && doc.IsObject()) {
    const rapidjson::Value* token = Resolve(doc, d.token_pointer);
    if (token != nullptr && token->IsString() && doc.MemberCount() == 1) {
      out.handshake = true;
      out.handshake_status = 200;
      std::string stored;
      if (options.verification_token_file.empty()) {
        out.handshake_note =
            "received a verification token but verification_token_file is not set in this "
            "profile's config entry, so it was not kept: set it, restart, and ask the HRIS to "
            "send the token again. " +
            d.token_instructions;
        return out;
      }
      // O_EXCL: an unsigned request must never replace a token that is already in use.
      int fd = ::open(options.verification_token_file.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0) {
        out.handshake_note = "received a verification token but did not store it: " +
                             options.verification_token_file + ": " + ErrnoText(errno) +
                             (errno == EEXIST ? " (delete the file to accept a new token)" : "");
        return out;
      }
      std::string value(token->GetString(), token->GetStringLength());
      bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
      ::close(fd);
      out.handshake_note = ok ? "stored the verification token in " +
                                    options.verification_token_file + ". " + d.token_instructions
                              : "could not write " + options.verification_token_file;
      return out;
    }
  }

  const ItemsSpec& it = spec.items;
  std::vector<const rapidjson::Value*> items;
  // An object keyed by employee id (BambooHR's form posts: employees[12345][...]): each member
  // is an item, its name available as {var: item_key}.
  std::vector<std::string> item_keys;
  if (it.array.empty()) {
    items.push_back(&doc);
  } else {
    const rapidjson::Value* arr = Resolve(doc, it.array);
    if (arr == nullptr || arr->IsNull()) {
      if (it.array_required) {
        return InvalidError("the body has no item list at " + it.array);
      }
      items.push_back(&doc);
    } else if (arr->IsArray()) {
      for (const auto& v : arr->GetArray()) items.push_back(&v);
    } else if (arr->IsObject()) {
      for (const auto& m : arr->GetObject()) {
        items.push_back(&m.value);
        item_keys.emplace_back(m.name.GetString(), m.name.GetStringLength());
      }
    } else {
      return InvalidError(it.array + " must be an array of items (or an object of them)");
    }
  }
  if (items.size() > static_cast<size_t>(std::max(limits.max_items, 0))) {
    return TooLargeError("the request carries " + std::to_string(items.size()) +
                         " items; at most " + std::to_string(limits.max_items) +
                         " are taken at once (listen.max_items): send smaller batches");
  }
  EvalContext ctx;
  ctx.body = &doc;
  ctx.request = &request;
  ctx.default_scope = Scope::kItem;
  std::map<std::string, std::string> vars;
  ctx.variables = &vars;
  for (size_t i = 0; i < items.size(); ++i) {
    const rapidjson::Value& item = *items[i];
    const std::string where = it.array.empty() || items[i] == &doc
                                  ? std::string("the body")
                                  : "item " + std::to_string(i) + " (" + it.array + "/" +
                                        (item_keys.empty() ? std::to_string(i) : item_keys[i]) +
                                        ")";
    if (!item.IsObject()) return InvalidError(where + " is not a JSON object");
    ctx.item = &item;
    if (item_keys.empty()) {
      vars.erase("item_key");
    } else {
      vars["item_key"] = item_keys[i];
    }
    DecodedItem di;
    if (it.event_type.configured) di.event_type = Evaluate(it.event_type, ctx).value_or("");
    const size_t max_id = static_cast<size_t>(std::max(limits.max_id_bytes, 0));
    // Checked before anything quotes it: an acknowledged type is logged and labels a metric.
    if (di.event_type.size() > max_id) {
      return InvalidError(where + " has an event type of " + std::to_string(di.event_type.size()) +
                          " bytes; at most " + std::to_string(max_id) +
                          " are accepted (listen.max_id_bytes)");
    }
    // Not about an employee: acknowledged whatever else the item holds.
    if (IsOtherEvent(spec, di.event_type)) {
      out.acknowledged.push_back(
          {di.event_type, di.event_type + " is not about an employee (events.other)"});
      continue;
    }
    const bool employee_event = IsEmployeeEvent(spec, di.event_type);
    if (std::string failed = FailedShape(spec, item); !failed.empty()) {
      if (employee_event) {
        std::string message = where;
        message += " is a ";
        message += di.event_type;
        message += " event but does not have an employee's shape: expected ";
        message += failed;
        message += " (events.shape)";
        return InvalidError(message);
      }
      out.acknowledged.push_back(
          {di.event_type, "not an employee's shape: expected " + failed + " (events.shape)"});
      continue;
    }
    auto key = Evaluate(it.employee_key, ctx);
    if (!key || key->empty()) {
      if (employee_event) {
        return InvalidError(where + " is a " + di.event_type +
                            " event but has no employee key at " + DescribeSource(it.employee_key));
      }
      // A ping, a test or a notification: signed and well-formed, just not about anyone.
      out.acknowledged.push_back(
          {di.event_type,
           (di.event_type.empty() ? std::string("an item without event type") : di.event_type) +
               " has no employee key at " + DescribeSource(it.employee_key) +
               " and is not an employee event of this profile"});
      continue;
    }
    di.employee_key = std::move(*key);
    if (it.occurred_at.configured) di.occurred_at = Evaluate(it.occurred_at, ctx).value_or("");
    if (it.tenant.configured && options.tenant_from_body && request.tenant.empty()) {
      di.tenant = Evaluate(it.tenant, ctx).value_or("");
      if (!di.tenant.empty() && !IsSafeTenant(di.tenant)) {
        return InvalidError(where + " names tenant '" + Shown(di.tenant) + "' at " +
                            DescribeSource(it.tenant) +
                            ", which may contain only letters, digits, '.', '_' and '-'");
      }
    }
    di.payload = Compact(item);
    std::optional<std::string> dedup;
    if (it.dedup_id.configured) dedup = Evaluate(it.dedup_id, ctx);
    // No id from the sender: identical items are the same event, so the content is the id.
    if (!dedup || dedup->empty()) dedup = "sha256:" + HexEncode(Sha256(di.payload));
    // Ids become Redis keys and log fields: an id the size of a record is a mistake or an attack.
    for (const auto& [what, value] :
         {std::pair<const char*, const std::string*>{"employee key", &di.employee_key},
          {"dedup id", &*dedup},
          {"event type", &di.event_type},
          {"occurred_at", &di.occurred_at},
          {"tenant", &di.tenant}}) {
      if (value->size() > max_id) {
        return InvalidError(where + " has a " + what + " of " + std::to_string(value->size()) +
                            " bytes; at most " + std::to_string(max_id) +
                            " are accepted (listen.max_id_bytes)");
      }
    }
    // Ids are unique per sender; two tenants may reuse one.
    const std::string& tenant = request.tenant.empty() ? di.tenant : request.tenant;
    di.dedup_id = tenant.empty() ? *dedup : tenant + "/" + *dedup;
    out.items.push_back(std::move(di));
  }
  return out;
}

}  // namespace scimsync::connectors::internal
