#include "scimsync/scim/protocol.h"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "json_util.h"
#include "scimsync/scim/retry.h"
#include "scimsync/strings.h"

namespace scimsync::scim {
namespace {

using rapidjson::Document;
using rapidjson::StringBuffer;
using rapidjson::Value;
using rapidjson::Writer;

// The optional string attributes scimsync manages, with their SCIM paths. userName, externalId,
// emails, active and password need their own handling.
struct StringAttr {
  const char* path;
  std::optional<std::string> User::*field;
};

constexpr char kEnterprisePrefix[] = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:";

const StringAttr kCoreAttrs[] = {
    {"name.givenName", &User::given_name},
    {"name.familyName", &User::family_name},
    {"displayName", &User::display_name},
    {"title", &User::title},
    {"locale", &User::locale},
    {"userType", &User::user_type},
};

struct EnterpriseAttr {
  const char* name;
  std::optional<std::string> User::*field;
};

const EnterpriseAttr kEnterpriseAttrs[] = {
    {"employeeNumber", &User::employee_number},
    {"department", &User::department},
    {"costCenter", &User::cost_center},
    {"organization", &User::organization},
};

std::string EnterprisePath(const char* name) { return std::string(kEnterprisePrefix) + name; }

// The primary email entry of a resource's "emails" (the first entry when none is primary).
const Value* PrimaryEmail(const Value& resource) {
  const Value* emails = json::Member(resource, "emails");
  if (emails == nullptr || !emails->IsArray() || emails->Empty()) return nullptr;
  for (const auto& e : emails->GetArray()) {
    const Value* primary = json::Member(e, "primary");
    if (primary != nullptr && primary->IsBool() && primary->GetBool()) return &e;
  }
  return &(*emails)[0];
}

Result<RemoteUser> UserFromValue(const Value& v) {
  if (!v.IsObject()) return Error::Permanent("the SCIM server sent a user that is not an object");
  RemoteUser u;
  auto id = json::StringMember(v, "id");
  if (!id || id->empty()) {
    return Error::Permanent("the SCIM server sent a user without an \"id\"");
  }
  u.id = *id;
  u.external_id = json::StringMember(v, "externalId").value_or("");
  User& a = u.attributes;
  a.external_id = u.external_id;
  a.user_name = json::StringMember(v, "userName").value_or("");
  if (const Value* name = json::Member(v, "name")) {
    a.given_name = json::StringMember(*name, "givenName");
    a.family_name = json::StringMember(*name, "familyName");
  }
  a.display_name = json::StringMember(v, "displayName");
  a.title = json::StringMember(v, "title");
  a.locale = json::StringMember(v, "locale");
  a.user_type = json::StringMember(v, "userType");
  if (const Value* e = PrimaryEmail(v)) a.email = json::StringMember(*e, "value");
  if (const Value* active = json::Member(v, "active")) {
    if (active->IsBool()) {
      a.active = active->GetBool();
    } else if (active->IsString()) {
      // Some servers send booleans as strings; accept the two spellings that mean something.
      std::string s(active->GetString(), active->GetStringLength());
      if (json::EqualsIgnoreCase(s, "true")) a.active = true;
      if (json::EqualsIgnoreCase(s, "false")) a.active = false;
    }
  }
  if (const Value* ent = json::Member(
          v, std::string_view(kEnterprisePrefix, std::strlen(kEnterprisePrefix) - 1))) {
    for (const auto& attr : kEnterpriseAttrs) a.*attr.field = json::StringMember(*ent, attr.name);
  }
  u.json = json::Compact(v);
  return u;
}

void AppendOp(std::vector<PatchOp>& ops, std::string path, const std::string& desired,
              const std::optional<std::string>& remote) {
  if (desired.empty()) {
    if (remote && !remote->empty()) ops.push_back({PatchOp::Kind::kRemove, std::move(path), ""});
    return;
  }
  if (!remote || *remote != desired) {
    ops.push_back({PatchOp::Kind::kReplace, std::move(path), json::Quote(desired)});
  }
}

// The remote's emails with the primary address replaced by `email` (or a new primary work
// address when the remote has none): other addresses an admin added survive.
std::string MergedEmails(const RemoteUser& remote, const std::string& email) {
  Document doc;
  Document out;
  out.SetArray();
  auto& a = out.GetAllocator();
  bool replaced = false;
  if (json::Parse(remote.json, &doc)) {
    const Value* emails = json::Member(doc, "emails");
    const Value* primary = PrimaryEmail(doc);
    if (emails != nullptr && emails->IsArray()) {
      for (const auto& e : emails->GetArray()) {
        Value copy(e, a);
        if (&e == primary && copy.IsObject()) {
          if (Value* value = json::MutableMember(copy, "value")) {
            *value = json::StringValue(email, a);
          } else {
            copy.AddMember("value", json::StringValue(email, a), a);
          }
          replaced = true;
        }
        out.PushBack(copy, a);
      }
    }
  }
  if (!replaced) {
    Value entry(rapidjson::kObjectType);
    entry.AddMember("value", json::StringValue(email, a), a);
    entry.AddMember("type", "work", a);
    entry.AddMember("primary", true, a);
    out.PushBack(entry, a);
  }
  return json::Compact(out);
}

// Replaces every "password" member (and a PATCH operation's value whose path is password).
void Redact(Value& v, Document::AllocatorType& a) {
  if (v.IsObject()) {
    bool password_op = false;
    if (const Value* path = json::Member(v, "path")) {
      password_op = path->IsString() && json::EqualsIgnoreCase(path->GetString(), "password");
    }
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      std::string_view name =
          it->name.IsString() ? std::string_view(it->name.GetString(), it->name.GetStringLength())
                              : std::string_view();
      if (json::EqualsIgnoreCase(name, "password") ||
          (password_op && json::EqualsIgnoreCase(name, "value"))) {
        it->value.SetString("[redacted]", a);
      } else {
        Redact(it->value, a);
      }
    }
  } else if (v.IsArray()) {
    for (auto& e : v.GetArray()) Redact(e, a);
  }
}

// Text from an answer body that is safe and short enough to put into a one-line message.
std::string Snippet(std::string_view body) {
  std::string out;
  for (char c : body.substr(0, 200)) {
    out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  }
  if (body.size() > 200) out += "...";
  return out;
}

// Splits a PATCH path into (container, attribute): "" for top level, "name" for "name.x", the
// enterprise URN for "<urn>:attr".
std::pair<std::string, std::string> SplitPath(const std::string& path) {
  std::string_view prefix(kEnterprisePrefix);
  if (path.size() > prefix.size() &&
      json::EqualsIgnoreCase(path.substr(0, prefix.size()), prefix)) {
    return {std::string(prefix.substr(0, prefix.size() - 1)), path.substr(prefix.size())};
  }
  auto dot = path.find('.');
  if (dot == std::string::npos) return {"", path};
  return {path.substr(0, dot), path.substr(dot + 1)};
}

void SetMember(Value& object, const std::string& name, Value value, Document::AllocatorType& a) {
  if (Value* existing = json::MutableMember(object, name)) {
    *existing = std::move(value);
  } else {
    object.AddMember(json::StringValue(name, a), std::move(value), a);
  }
}

void RemoveMember(Value& object, const std::string& name) {
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (it->name.IsString() && json::EqualsIgnoreCase(it->name.GetString(), name)) {
      object.EraseMember(it);
      return;
    }
  }
}

}  // namespace

std::string EscapeFilterValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  AppendJsonEscaped(out, value);
  return out;
}

std::string EqFilterQuery(std::string_view attribute, std::string_view value) {
  std::string filter(attribute);
  filter += " eq \"";
  filter += EscapeFilterValue(value);
  filter += '"';
  return UrlEncode(filter);
}

Result<RemoteUser> ParseUser(std::string_view text) {
  Document doc;
  if (!json::Parse(text, &doc)) {
    return Error::Permanent("the SCIM server answered with a user that is not valid JSON: " +
                            Snippet(text));
  }
  return UserFromValue(doc);
}

Result<std::vector<RemoteUser>> ParseListResponse(std::string_view text) {
  Document doc;
  if (!json::Parse(text, &doc) || !doc.IsObject()) {
    return Error::Permanent(
        "the SCIM server answered a search with something that is not a "
        "JSON object: " +
        Snippet(text));
  }
  std::vector<RemoteUser> out;
  const Value* resources = json::Member(doc, "Resources");
  if (resources == nullptr) {
    const Value* total = json::Member(doc, "totalResults");
    if (total != nullptr && total->IsNumber() && total->GetDouble() > 0) {
      return Error::Permanent(
          "the SCIM server's search answer has totalResults > 0 but no "
          "\"Resources\"");
    }
    return out;
  }
  if (!resources->IsArray()) {
    return Error::Permanent("the SCIM server's search answer has \"Resources\" that is not a list");
  }
  for (const auto& r : resources->GetArray()) {
    auto user = UserFromValue(r);
    if (!user.ok()) return user.error();
    out.push_back(std::move(*user));
  }
  return out;
}

Result<ListPage> ParseListPage(std::string_view text) {
  auto users = ParseListResponse(text);
  if (!users.ok()) return users.error();
  ListPage page;
  page.users = std::move(users.value());
  page.total_results = static_cast<int64_t>(page.users.size());
  Document doc;
  if (!json::Parse(text, &doc)) return page;  // ParseListResponse accepted it: cannot happen
  // Numbers are read as doubles: some servers send 10.0, and any JSON number is a double.
  auto number = [&doc](const char* name) -> std::optional<int64_t> {
    const Value* v = json::Member(doc, name);
    if (v == nullptr || !v->IsNumber() || v->GetDouble() < 0 || v->GetDouble() > 1e15) {
      return std::nullopt;
    }
    return static_cast<int64_t>(v->GetDouble());
  };
  if (auto total = number("totalResults")) page.total_results = *total;
  if (auto start = number("startIndex"); start && *start >= 1) page.start_index = *start;
  return page;
}

std::string ListUsersTarget(int64_t start_index, int count) {
  return "/Users?startIndex=" + std::to_string(start_index) + "&count=" + std::to_string(count);
}

std::vector<PatchOp> Diff(const User& desired, const RemoteUser& remote) {
  std::vector<PatchOp> ops;
  const User& r = remote.attributes;
  if (!desired.user_name.empty() && !json::EqualsIgnoreCase(desired.user_name, r.user_name)) {
    ops.push_back({PatchOp::Kind::kReplace, "userName", json::Quote(desired.user_name)});
  }
  if (!desired.external_id.empty() && desired.external_id != remote.external_id) {
    ops.push_back({PatchOp::Kind::kReplace, "externalId", json::Quote(desired.external_id)});
  }
  for (const auto& attr : kCoreAttrs) {
    if (const auto& d = desired.*attr.field) AppendOp(ops, attr.path, *d, r.*attr.field);
  }
  if (desired.email && !desired.email->empty() &&
      !(r.email && json::EqualsIgnoreCase(*desired.email, *r.email))) {
    ops.push_back({PatchOp::Kind::kReplace, "emails", MergedEmails(remote, *desired.email)});
  }
  for (const auto& attr : kEnterpriseAttrs) {
    if (const auto& d = desired.*attr.field) {
      AppendOp(ops, EnterprisePath(attr.name), *d, r.*attr.field);
    }
  }
  if (desired.active && r.active != desired.active) {
    ops.push_back({PatchOp::Kind::kReplace, "active", *desired.active ? "true" : "false"});
  }
  return ops;
}

std::vector<PatchOp> ReplaceAll(const User& desired) {
  std::vector<PatchOp> ops;
  auto put = [&ops](std::string path, const std::string& value) {
    if (value.empty()) {
      ops.push_back({PatchOp::Kind::kRemove, std::move(path), ""});
    } else {
      ops.push_back({PatchOp::Kind::kReplace, std::move(path), json::Quote(value)});
    }
  };
  if (!desired.user_name.empty()) {
    ops.push_back({PatchOp::Kind::kReplace, "userName", json::Quote(desired.user_name)});
  }
  if (!desired.external_id.empty()) {
    ops.push_back({PatchOp::Kind::kReplace, "externalId", json::Quote(desired.external_id)});
  }
  for (const auto& attr : kCoreAttrs) {
    if (const auto& d = desired.*attr.field) put(attr.path, *d);
  }
  if (desired.email && !desired.email->empty()) {
    ops.push_back({PatchOp::Kind::kReplace, "emails", MergedEmails(RemoteUser{}, *desired.email)});
  }
  for (const auto& attr : kEnterpriseAttrs) {
    if (const auto& d = desired.*attr.field) put(EnterprisePath(attr.name), *d);
  }
  if (desired.active) {
    ops.push_back({PatchOp::Kind::kReplace, "active", *desired.active ? "true" : "false"});
  }
  return ops;
}

namespace {

// The snapshot's keys: flat, short, stable (they are stored in Redis for every employee).
struct SnapshotField {
  const char* key;
  std::optional<std::string> User::*field;
};
const SnapshotField kSnapshotFields[] = {
    {"givenName", &User::given_name},
    {"familyName", &User::family_name},
    {"displayName", &User::display_name},
    {"email", &User::email},
    {"title", &User::title},
    {"locale", &User::locale},
    {"userType", &User::user_type},
    {"department", &User::department},
    {"costCenter", &User::cost_center},
    {"organization", &User::organization},
    {"employeeNumber", &User::employee_number},
};

}  // namespace

std::string SnapshotJson(const User& user) {
  StringBuffer buf;
  Writer<StringBuffer> w(buf);
  auto str = [&w](const std::string& s) {
    w.String(s.c_str(), static_cast<rapidjson::SizeType>(s.size()));
  };
  w.StartObject();
  if (!user.user_name.empty()) {
    w.Key("userName");
    str(user.user_name);
  }
  for (const auto& f : kSnapshotFields) {
    if (const auto& v = user.*f.field) {
      w.Key(f.key);
      str(*v);
    }
  }
  if (user.active) {
    w.Key("active");
    w.Bool(*user.active);
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

Result<User> ParseSnapshot(std::string_view text) {
  Document doc;
  if (!json::Parse(text, &doc) || !doc.IsObject()) {
    return Error::Permanent("the link's snapshot is not a JSON object");
  }
  User u;
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    std::string_view key(it->name.GetString(), it->name.GetStringLength());
    const Value& v = it->value;
    if (key == "active") {
      if (!v.IsBool()) return Error::Permanent("the link's snapshot has a non-boolean active");
      u.active = v.GetBool();
      continue;
    }
    if (!v.IsString()) {
      return Error::Permanent("the link's snapshot has a non-string " + std::string(key));
    }
    std::string value(v.GetString(), v.GetStringLength());
    if (key == "userName") {
      u.user_name = std::move(value);
      continue;
    }
    bool known = false;
    for (const auto& f : kSnapshotFields) {
      if (key == f.key) {
        u.*f.field = std::move(value);
        known = true;
        break;
      }
    }
    // An unknown key comes from a newer scimsync: the snapshot cannot be trusted to be
    // complete, so it is refused and the user read instead.
    if (!known)
      return Error::Permanent("the link's snapshot has an unknown key " + std::string(key));
  }
  return u;
}

std::string PatchBody(const std::vector<PatchOp>& ops) {
  StringBuffer buf;
  Writer<StringBuffer> w(buf);
  w.StartObject();
  w.Key("schemas");
  w.StartArray();
  w.String(kPatchOpSchema);
  w.EndArray();
  w.Key("Operations");
  w.StartArray();
  for (const auto& op : ops) {
    w.StartObject();
    w.Key("op");
    w.String(op.kind == PatchOp::Kind::kReplace ? "replace" : "remove");
    w.Key("path");
    w.String(op.path.c_str(), static_cast<rapidjson::SizeType>(op.path.size()));
    if (op.kind == PatchOp::Kind::kReplace) {
      w.Key("value");
      w.RawValue(op.value_json.c_str(), op.value_json.size(), rapidjson::kObjectType);
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

std::string CreateBody(const User& d) {
  StringBuffer buf;
  Writer<StringBuffer> w(buf);
  auto str = [&w](const std::string& s) {
    w.String(s.c_str(), static_cast<rapidjson::SizeType>(s.size()));
  };
  auto opt = [&](const char* key, const std::optional<std::string>& v) {
    if (v && !v->empty()) {
      w.Key(key);
      str(*v);
    }
  };
  w.StartObject();
  w.Key("schemas");
  w.StartArray();
  w.String(kUserSchema);
  w.String(kEnterpriseUrn);
  w.EndArray();
  w.Key("externalId");
  str(d.external_id);
  w.Key("userName");
  str(d.user_name);
  if ((d.given_name && !d.given_name->empty()) || (d.family_name && !d.family_name->empty())) {
    w.Key("name");
    w.StartObject();
    opt("givenName", d.given_name);
    opt("familyName", d.family_name);
    w.EndObject();
  }
  opt("displayName", d.display_name);
  if (d.email && !d.email->empty()) {
    w.Key("emails");
    w.StartArray();
    w.StartObject();
    w.Key("value");
    str(*d.email);
    w.Key("type");
    w.String("work");
    w.Key("primary");
    w.Bool(true);
    w.EndObject();
    w.EndArray();
  }
  opt("title", d.title);
  opt("locale", d.locale);
  opt("userType", d.user_type);
  // Always explicit: a server's default for a missing `active` is its own choice (JumpCloud's
  // is active), and a create must never depend on it.
  w.Key("active");
  w.Bool(d.active.value_or(true));
  opt("password", d.password);
  w.Key(kEnterpriseUrn);
  w.StartObject();
  w.Key("employeeNumber");
  str(d.employee_number && !d.employee_number->empty() ? *d.employee_number : d.external_id);
  opt("department", d.department);
  opt("costCenter", d.cost_center);
  opt("organization", d.organization);
  w.EndObject();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

Result<std::string> MergeForPut(const RemoteUser& remote, const std::vector<PatchOp>& ops) {
  Document doc;
  if (!json::Parse(remote.json, &doc) || !doc.IsObject()) {
    return Error::Permanent("cannot build a PUT for user " + remote.id +
                            ": the server's copy is not a JSON object");
  }
  auto& a = doc.GetAllocator();
  RemoveMember(doc, "meta");
  for (const auto& op : ops) {
    auto [container, attr] = SplitPath(op.path);
    Value* target = &doc;
    if (!container.empty()) {
      target = json::MutableMember(doc, container);
      if (target == nullptr || !target->IsObject()) {
        if (op.kind == PatchOp::Kind::kRemove) continue;
        RemoveMember(doc, container);
        doc.AddMember(json::StringValue(container, a), Value(rapidjson::kObjectType), a);
        target = json::MutableMember(doc, container);
      }
      if (container.rfind("urn:", 0) == 0) {
        // An extension's attributes are only read when its URN is listed in "schemas".
        Value* schemas = json::MutableMember(doc, "schemas");
        if (schemas == nullptr || !schemas->IsArray()) {
          RemoveMember(doc, "schemas");
          Value list(rapidjson::kArrayType);
          list.PushBack(Value(kUserSchema, a), a);
          doc.AddMember("schemas", list, a);
          schemas = json::MutableMember(doc, "schemas");
          target = json::MutableMember(doc, container);
        }
        bool listed = false;
        for (const auto& s : schemas->GetArray()) {
          listed = listed || (s.IsString() && json::EqualsIgnoreCase(s.GetString(), container));
        }
        if (!listed) schemas->PushBack(json::StringValue(container, a), a);
      }
    }
    if (op.kind == PatchOp::Kind::kRemove) {
      RemoveMember(*target, attr);
      continue;
    }
    Document value(&a);
    if (!json::Parse(op.value_json, &value)) {
      return Error::Permanent("internal: PATCH value for " + op.path + " is not JSON");
    }
    SetMember(*target, attr, Value(value, a), a);
  }
  return json::Compact(doc);
}

Result<ServiceProviderConfig> ParseServiceProviderConfig(std::string_view text) {
  Document doc;
  if (!json::Parse(text, &doc) || !doc.IsObject()) {
    return Error::Permanent("/ServiceProviderConfig is not a JSON object");
  }
  ServiceProviderConfig c;
  auto supported = [&doc](const char* name, bool fallback) {
    const Value* section = json::Member(doc, name);
    if (section == nullptr) return fallback;
    const Value* s = json::Member(*section, "supported");
    return s != nullptr && s->IsBool() ? s->GetBool() : fallback;
  };
  c.patch = supported("patch", true);
  c.filter = supported("filter", true);
  return c;
}

Error ErrorFromResponse(int status, std::string_view body, std::string_view retry_after,
                        int64_t now_ms) {
  std::string detail;
  std::string scim_type;
  int body_status = 0;
  Document doc;
  if (json::Parse(body, &doc) && doc.IsObject()) {
    detail = json::StringMember(doc, "detail").value_or("");
    scim_type = json::StringMember(doc, "scimType").value_or("");
    if (const Value* s = json::Member(doc, "status")) {
      // RFC 7644 says a string; many servers send a number.
      if (s->IsInt()) {
        body_status = s->GetInt();
      } else if (s->IsString()) {
        const char* text = s->GetString();
        std::from_chars(text, text + s->GetStringLength(), body_status);  // not a number: 0
      }
    }
  } else if (!body.empty()) {
    detail = Snippet(body);
  }

  ErrorKind kind = ErrorKind::kPermanent;
  std::string what;
  switch (status) {
    case 408:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      kind = ErrorKind::kTransient;
      what = status == 429 ? "rate limited; if this repeats, lower target.max_requests_per_second"
                           : "temporarily failed; will retry";
      break;
    case 401:
    case 403:
      kind = ErrorKind::kAuth;
      what =
          "refused the API key; check target.api_key_env/api_key_file, target.auth_header and "
          "target.org_id";
      break;
    case 404:
      kind = ErrorKind::kNotFound;
      what = "has no such resource";
      break;
    case 409:
      kind = ErrorKind::kConflict;
      what = "reported a conflict";
      break;
    default:
      what = status >= 300 && status < 400 ? "redirected the request; check target.base_url"
                                           : "rejected the request";
  }
  std::string message = "SCIM server " + what + " (HTTP " + std::to_string(status);
  if (!scim_type.empty()) message += ", scimType " + scim_type;
  if (body_status != 0 && body_status != status) {
    message += ", body status " + std::to_string(body_status);
  }
  message += ")";
  if (!detail.empty()) message += ": " + detail;

  Error e = Error::Make(kind, std::move(message), status);
  if (!retry_after.empty()) {
    if (auto ms = ParseRetryAfterMs(retry_after, now_ms)) {
      e.retry_after = std::chrono::milliseconds(*ms);
    }
  }
  return e;
}

std::string RedactBody(std::string_view body) {
  Document doc;
  if (body.empty() || !json::Parse(body, &doc)) return std::string(body);
  Redact(doc, doc.GetAllocator());
  return json::Compact(doc);
}

}  // namespace scimsync::scim
