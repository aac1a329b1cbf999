#include "loader.h"

#include <algorithm>

#include "eval.h"
#include "json.h"

namespace scimsync::connectors::internal {
namespace {

using config::MapReader;
using config::Problems;

std::string Index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::vector<std::string> TemplateNames(const std::string& tmpl) {
  std::vector<std::string> out;
  for (size_t i = tmpl.find('{'); i != std::string::npos; i = tmpl.find('{', i + 1)) {
    std::string name;
    size_t end = 0;
    if (PlaceholderAt(tmpl, i, &name, &end)) out.push_back(name);
  }
  return out;
}

bool ReadPointer(MapReader& r, const std::string& key, std::string* out, bool required = false) {
  if (!r.String(key, out, required)) return false;
  if (!IsValidPointer(*out)) {
    r.Error(key, "must be a JSON Pointer such as /employee/id (\"\" is the whole document)");
    return false;
  }
  return true;
}

template <typename E>
bool ReadEnum(MapReader& r, const std::string& key,
              const std::vector<std::pair<std::string, E>>& names, E* out, bool required = false) {
  std::string text;
  if (!r.String(key, &text, required)) return false;
  for (const auto& [n, v] : names) {
    if (n == text) {
      *out = v;
      return true;
    }
  }
  std::string list;
  for (const auto& [n, v] : names) list += (list.empty() ? "" : ", ") + n;
  r.Error(key, "must be one of " + list + " (got '" + text + "')");
  return false;
}

const std::vector<std::pair<std::string, Scope>> kScopes = {{"item", Scope::kItem},
                                                            {"body", Scope::kBody},
                                                            {"record", Scope::kRecord},
                                                            {"payload", Scope::kPayload}};

bool ReadOneTransform(const YAML::Node& node, const std::string& path, Problems* p, Transform* t) {
  static const std::vector<std::pair<std::string, Transform::Kind>> kSimple = {
      {"lowercase", Transform::Kind::kLowercase},
      {"uppercase", Transform::Kind::kUppercase},
      {"trim", Transform::Kind::kTrim},
      {"email_local_part", Transform::Kind::kEmailLocalPart},
      {"safe_username", Transform::Kind::kSafeUsername}};
  const std::string kKnown =
      "lowercase, uppercase, trim, email_local_part, safe_username, {lookup: ...}, "
      "{date_reached: ...}, {default: VALUE}, {prefix: TEXT}";
  if (node.IsScalar()) {
    for (const auto& [n, k] : kSimple) {
      if (node.Scalar() == n) {
        t->kind = k;
        return true;
      }
    }
    p->Add(path, node, "unknown transform '" + node.Scalar() + "' (known: " + kKnown + ")");
    return false;
  }
  if (!node.IsMap() || node.size() != 1) {
    p->Add(path, node, "a transform is a name or a one-key map (known: " + kKnown + ")");
    return false;
  }
  const std::string key = node.begin()->first.Scalar();
  const YAML::Node value = node.begin()->second;
  const std::string sub = path + "." + key;
  if (key == "default" || key == "prefix") {
    if (!value.IsScalar()) {
      p->Add(sub, value, "must be a string");
      return false;
    }
    t->kind = key == "default" ? Transform::Kind::kDefault : Transform::Kind::kPrefix;
    if (key == "default")
      t->fallback = value.Scalar();
    else
      t->text = value.Scalar();
    return true;
  }
  if (key == "lookup") {
    t->kind = Transform::Kind::kLookup;
    size_t before = p->list().size();
    MapReader r(value, sub, p);
    YAML::Node table = r.Child("table");
    if (!table.IsDefined() || !table.IsMap()) {
      r.Error("table", "is required: a map from the HRIS value to the value to send");
    } else {
      for (const auto& kv : table) {
        if (!kv.second.IsScalar()) {
          p->Add(sub + ".table." + kv.first.Scalar(), kv.second, "must be a string");
          continue;
        }
        t->table[kv.first.Scalar()] = kv.second.Scalar();
      }
    }
    std::string def;
    if (r.String("default", &def)) t->fallback = def;
    r.Finish();
    return p->list().size() == before;
  }
  if (key == "date_reached") {
    t->kind = Transform::Kind::kDateReached;
    size_t before = p->list().size();
    MapReader r(value, sub, p);
    r.String("then", &t->then_value, true);
    r.String("else", &t->else_value, true);
    std::string missing;
    if (r.String("missing", &missing)) t->fallback = missing;
    r.Finish();
    return p->list().size() == before;
  }
  p->Add(path, node, "unknown transform '" + key + "' (known: " + kKnown + ")");
  return false;
}

}  // namespace

bool ReadTransforms(const YAML::Node& node, const std::string& path, Problems* problems,
                    std::vector<Transform>* out) {
  if (!node.IsDefined() || node.IsNull()) return true;
  bool ok = true;
  if (node.IsSequence()) {
    size_t i = 0;
    for (const auto& it : node) {
      Transform t;
      if (ReadOneTransform(it, Index(path, i++), problems, &t))
        out->push_back(std::move(t));
      else
        ok = false;
    }
    return ok;
  }
  Transform t;
  if (!ReadOneTransform(node, path, problems, &t)) return false;
  out->push_back(std::move(t));
  return true;
}

bool ReadSource(const YAML::Node& node, const std::string& path, const SourceRules& rules,
                Problems* problems, Source* out) {
  out->configured = true;
  if (!node.IsDefined() || node.IsNull()) {
    problems->Add(path, node, "must not be empty");
    return false;
  }
  if (node.IsScalar()) {
    out->kind = Source::Kind::kPointer;
    out->text = node.Scalar();
    if (!IsValidPointer(out->text)) {
      problems->Add(path, node,
                    "'" + out->text +
                        "' is not a JSON Pointer (it starts with '/', e.g. /employee/id); for a "
                        "fixed value write {constant: ...}");
      return false;
    }
    return true;
  }
  if (node.IsSequence()) {
    out->kind = Source::Kind::kFirst;
    bool ok = true;
    size_t i = 0;
    for (const auto& it : node) {
      Source part;
      if (ReadSource(it, Index(path, i++), rules, problems, &part))
        out->parts.push_back(part);
      else
        ok = false;
    }
    if (out->parts.empty() && ok) {
      problems->Add(path, node, "an empty list gives no value: list at least one path");
      return false;
    }
    return ok;
  }
  size_t before = problems->list().size();
  MapReader r(node, path, problems);
  std::vector<std::string> kinds;
  for (const char* k : {"pointer", "header", "constant", "hash", "first", "template", "var"}) {
    if (r.Has(k)) kinds.emplace_back(k);
  }
  if (kinds.size() != 1) {
    std::string where = kinds.empty() ? path : r.PathOf(kinds[1]);
    problems->Add(where, kinds.empty() ? config::LineOf(node) : r.LineOf(kinds[1]),
                  "give exactly one of pointer, constant, first, template" +
                      std::string(rules.allow_header ? ", header" : "") +
                      (rules.allow_hash ? ", hash" : "") + (rules.allow_variable ? ", var" : ""));
    for (const char* k : {"pointer", "header", "constant", "hash", "first", "template", "var",
                          "from", "transform"}) {
      r.Ignore(k);
    }
    return false;
  }
  const std::string& kind = kinds[0];
  if (kind == "pointer") {
    out->kind = Source::Kind::kPointer;
    ReadPointer(r, "pointer", &out->text);
  } else if (kind == "header") {
    out->kind = Source::Kind::kHeader;
    r.String("header", &out->text);
    if (!rules.allow_header) r.Error("header", "request headers are only available in items");
  } else if (kind == "constant") {
    out->kind = Source::Kind::kConstant;
    r.String("constant", &out->text);
  } else if (kind == "var") {
    out->kind = Source::Kind::kVariable;
    r.String("var", &out->text);
    if (!rules.allow_variable)
      r.Error("var", "variables are not available here");
    else if (rules.item_variables) {
      if (out->text != "item_key") {
        r.Error("var", "must be item_key (an object-keyed batch's member name)");
      }
    } else if (out->text != "employee_key" && out->text != "tenant" && out->text != "event_type") {
      r.Error("var", "must be employee_key, tenant or event_type");
    }
  } else if (kind == "template") {
    out->kind = Source::Kind::kTemplate;
    r.String("template", &out->text);
    if (TemplateNames(out->text).empty()) {
      r.Error("template", "has no {field} placeholder; for a fixed value write {constant: ...}");
    }
  } else if (kind == "hash" || kind == "first") {
    out->kind = kind == "hash" ? Source::Kind::kHash : Source::Kind::kFirst;
    YAML::Node list = r.Child(kind);
    if (kind == "hash" && !rules.allow_hash) r.Error("hash", "hash is only available in items");
    if (!list.IsSequence() || list.size() == 0) {
      r.Error(kind, "must be a non-empty list of values");
    } else {
      size_t i = 0;
      for (const auto& it : list) {
        Source part;
        if (ReadSource(it, Index(r.PathOf(kind), i++), rules, problems, &part)) {
          out->parts.push_back(part);
        }
      }
    }
  }
  if (r.Has("from")) {
    ReadEnum(r, "from", kScopes, &out->scope);
    if (out->kind != Source::Kind::kPointer && out->kind != Source::Kind::kTemplate) {
      r.Error("from", "applies only to pointer and template");
    }
  }
  if (r.Has("transform")) {
    if (!rules.allow_transforms) {
      r.Error("transform", "transforms are not available here");
    } else {
      ReadTransforms(r.Child("transform"), r.PathOf("transform"), problems, &out->transforms);
    }
  }
  r.Finish();
  return problems->list().size() == before;
}

namespace {

void ReadAuth(const YAML::Node& node, Problems* p, AuthSpec* a) {
  MapReader r(node, "auth", p);
  if (!node.IsDefined() || node.IsNull()) {
    p->Add("auth", 0,
           "is required: an hmac recipe, bearer, basic, header, or `type: none` written "
           "explicitly");
    return;
  }
  ReadEnum<AuthType>(r, "type",
                     {{"hmac", AuthType::kHmac},
                      {"bearer", AuthType::kBearer},
                      {"basic", AuthType::kBasic},
                      {"header", AuthType::kHeader},
                      {"none", AuthType::kNone}},
                     &a->type, true);
  if (a->type == AuthType::kNone) return;
  if (a->type == AuthType::kHmac) {
    ReadEnum<HashAlgorithm>(r, "algorithm",
                            {{"sha256", HashAlgorithm::kSha256},
                             {"sha512", HashAlgorithm::kSha512},
                             {"sha1", HashAlgorithm::kSha1}},
                            &a->algorithm, true);
    std::string key = "utf8";
    r.String("key", &key);
    if (key == "utf8") {
      a->key_decode = false;
    } else if (key == "base64" || key == "hex") {
      a->key_decode = true;
      a->key_encoding = key == "hex" ? Encoding::kHex : Encoding::kBase64;
    } else {
      r.Error("key", "must be utf8, base64 or hex (how the secret's text becomes key bytes)");
    }
    r.String("key_prefix", &a->key_prefix);
    ReadEnum<Encoding>(r, "encoding",
                       {{"hex", Encoding::kHex},
                        {"base64", Encoding::kBase64},
                        {"base64url", Encoding::kBase64Url}},
                       &a->encoding, true);
    r.String("header", &a->header, true);
    r.String("prefix", &a->prefix);
    r.String("separator", &a->separator);
    YAML::Node msg = r.Child("message");
    if (!msg.IsDefined() || msg.IsNull()) {
      a->message = {MessagePart{}};
    } else if (!msg.IsSequence() || msg.size() == 0) {
      r.Error("message", "must be a list of parts: body, method, {literal: TEXT}, {header: NAME}");
    } else {
      size_t i = 0;
      for (const auto& it : msg) {
        const std::string ipath = Index(r.PathOf("message"), i++);
        MessagePart part;
        if (it.IsScalar() && (it.Scalar() == "body" || it.Scalar() == "method")) {
          part.kind = it.Scalar() == "body" ? MessagePart::Kind::kBody : MessagePart::Kind::kMethod;
        } else if (it.IsMap() && it.size() == 1 &&
                   (it.begin()->first.Scalar() == "literal" ||
                    it.begin()->first.Scalar() == "header") &&
                   it.begin()->second.IsScalar()) {
          part.kind = it.begin()->first.Scalar() == "literal" ? MessagePart::Kind::kLiteral
                                                              : MessagePart::Kind::kHeader;
          part.text = it.begin()->second.Scalar();
        } else {
          p->Add(ipath, it, "a message part is body, method, {literal: TEXT} or {header: NAME}");
          continue;
        }
        a->message.push_back(part);
      }
    }
    r.String("timestamp_header", &a->timestamp_header);
    r.Int("tolerance_s", &a->tolerance_s, 0, int64_t{7} * 86400);
    if (a->tolerance_s > 0 && a->timestamp_header.empty()) {
      r.Error("tolerance_s", "needs timestamp_header: the header that carries the timestamp");
    }
    return;
  }
  // bearer, basic, header
  if (a->type == AuthType::kHeader) {
    r.String("header", &a->header, true);
    r.String("scheme", &a->scheme);
  } else {
    a->header = "Authorization";
    a->scheme = a->type == AuthType::kBearer ? "Bearer" : "Basic";
    r.String("header", &a->header);
    if (a->type == AuthType::kBearer) r.String("scheme", &a->scheme);
  }
}

void ReadDecode(const YAML::Node& node, Problems* p, DecodeSpec* d) {
  MapReader r(node, "decode", p);
  std::vector<std::string> formats;
  if (r.StringList("formats", &formats)) {
    d->formats.clear();
    for (const auto& f : formats) {
      if (f == "json")
        d->formats.push_back(BodyFormat::kJson);
      else if (f == "form")
        d->formats.push_back(BodyFormat::kForm);
      else
        r.Error("formats", "each format is json or form (got '" + f + "')");
    }
    if (d->formats.empty()) r.Error("formats", "list at least one of json, form");
  }
  r.String("ping", &d->ping_text);
  r.Int("ping_status", &d->ping_status, 200, 299);
  if (r.Has("verification_token")) {
    ReadPointer(r, "verification_token", &d->token_pointer);
    if (d->token_pointer.empty()) {
      r.Error("verification_token",
              "must point at the token inside the body, e.g. "
              "/verification_token");
    }
  }
  r.String("verification_instructions", &d->token_instructions);
}

void ReadItems(const YAML::Node& node, Problems* p, ItemsSpec* it) {
  MapReader r(node, "items", p);
  if (!node.IsDefined() || node.IsNull()) {
    p->Add("items", 0, "is required: at least items.employee_key");
    return;
  }
  ReadPointer(r, "array", &it->array);
  r.Bool("array_required", &it->array_required);
  r.Int("dedup_window_s", &it->dedup_window_s, 60, int64_t{90} * 86400);
  SourceRules rules;
  rules.allow_header = true;
  rules.allow_hash = true;
  rules.allow_variable = true;  // {var: item_key}: the member name of an object-keyed batch
  rules.item_variables = true;
  struct Field {
    const char* key;
    Source* out;
    bool required;
  };
  if (r.Has("occurred_at") && r.Has("version")) {
    r.Error("version", "give occurred_at or version, not both (either orders the items)");
  }
  const char* order_key = r.Has("version") ? "version" : "occurred_at";
  r.Ignore("version");
  for (const Field& f :
       {Field{"employee_key", &it->employee_key, true}, Field{"dedup_id", &it->dedup_id, false},
        Field{"event_type", &it->event_type, false}, Field{order_key, &it->occurred_at, false},
        Field{"tenant", &it->tenant, false}}) {
    YAML::Node n = r.Child(f.key);
    if (!n.IsDefined() || n.IsNull()) {
      if (f.required) r.Error(f.key, "is required");
      continue;
    }
    ReadSource(n, r.PathOf(f.key), rules, p, f.out);
  }
}

const std::vector<std::pair<std::string, Action>> kActions = {{"sync", Action::kSync},
                                                              {"suspend", Action::kSuspend},
                                                              {"reactivate", Action::kReactivate},
                                                              {"delete", Action::kDelete},
                                                              {"ignore", Action::kIgnore}};

void ReadCondition(const YAML::Node& node, const std::string& path, Problems* p, Condition* c) {
  MapReader r(node, path, p);
  if (!node.IsMap()) {
    p->Add(path, node, "a condition is a map: {pointer: /status, equals: Terminated}");
    return;
  }
  std::string pointer;
  if (ReadPointer(r, "pointer", &pointer, true)) {
    c->value.kind = Source::Kind::kPointer;
    c->value.text = pointer;
    c->value.configured = true;
  }
  static const char* const kOps[] = {"equals", "not_equals", "in", "not_in", "exists"};
  std::vector<std::string> ops;
  for (const char* k : kOps) {
    if (r.Has(k)) ops.emplace_back(k);
  }
  if (ops.size() != 1) {
    p->Add(path, node, "give exactly one of equals, not_equals, in, not_in, exists");
    for (const char* k : kOps) r.Ignore(k);
    return;
  }
  const std::string& op = ops[0];
  if (op == "equals" || op == "not_equals") {
    c->op = op == "equals" ? Condition::Op::kEquals : Condition::Op::kNotEquals;
    std::string v;
    if (r.String(op, &v)) c->values = {v};
  } else if (op == "in" || op == "not_in") {
    c->op = op == "in" ? Condition::Op::kIn : Condition::Op::kNotIn;
    r.StringList(op, &c->values);
  } else {
    bool exists = true;
    r.Bool("exists", &exists);
    c->op = exists ? Condition::Op::kExists : Condition::Op::kMissing;
  }
}

void ReadEvents(const YAML::Node& node, Problems* p, EventsSpec* out) {
  if (!node.IsDefined() || node.IsNull()) return;
  MapReader r(node, "events", p);
  if (!node.IsMap()) {
    p->Add("events", node,
           "must be a map: {employee: [employee.*], other: [payroll.*], shape: [conditions]}");
    return;
  }
  for (const char* key : {"employee", "other"}) {
    auto* list = std::string(key) == "employee" ? &out->employee : &out->other;
    YAML::Node n = r.Child(key);
    if (!n.IsDefined() || n.IsNull()) continue;
    if (n.IsScalar()) {
      list->push_back(n.Scalar());
    } else if (n.IsSequence()) {
      r.StringList(key, list);
    } else {
      r.Error(key, "must be an event type pattern or a list of them ('*' matches any text)");
    }
  }
  YAML::Node shape = r.Child("shape");
  if (!shape.IsDefined() || shape.IsNull()) {
  } else if (shape.IsSequence()) {
    size_t k = 0;
    for (const auto& cn : shape) {
      Condition c;
      ReadCondition(cn, Index(r.PathOf("shape"), k++), p, &c);
      out->shape.push_back(c);
    }
  } else {
    r.Error("shape", "must be a list of conditions: [{pointer: /employee_id, exists: false}]");
  }
  r.Finish();
}

void ReadActions(const YAML::Node& node, Problems* p, std::vector<ActionRule>* out) {
  if (!node.IsDefined() || node.IsNull()) return;
  if (!node.IsSequence()) {
    p->Add("actions", node, "must be a list of rules: {event: employee.updated, action: sync}");
    return;
  }
  size_t i = 0;
  for (const auto& it : node) {
    ActionRule rule;
    rule.index = i;
    const std::string path = Index("actions", i++);
    MapReader r(it, path, p);
    if (!it.IsMap()) continue;
    YAML::Node ev = r.Child("event");
    if (!ev.IsDefined() || ev.IsNull()) {
    } else if (ev.IsScalar()) {
      rule.events = {ev.Scalar()};
    } else if (ev.IsSequence()) {
      r.StringList("event", &rule.events);
    } else {
      r.Error("event", "must be an event type or a list of them ('*' matches any text)");
    }
    if (!ReadEnum(r, "action", kActions, &rule.action, true)) {
      r.Ignore("when");
      r.Ignore("effective_at");
      continue;
    }
    YAML::Node when = r.Child("when");
    if (!when.IsDefined() || when.IsNull()) {
    } else if (when.IsMap()) {
      Condition c;
      ReadCondition(when, r.PathOf("when"), p, &c);
      rule.when.push_back(c);
    } else if (when.IsSequence()) {
      size_t k = 0;
      for (const auto& cn : when) {
        Condition c;
        ReadCondition(cn, Index(r.PathOf("when"), k++), p, &c);
        rule.when.push_back(c);
      }
    } else {
      r.Error("when", "must be a condition {pointer: /status, equals: Terminated} or a list");
    }
    YAML::Node eff = r.Child("effective_at");
    if (eff.IsDefined() && !eff.IsNull()) {
      ReadSource(eff, r.PathOf("effective_at"), SourceRules{}, p, &rule.effective_at);
    }
    out->push_back(std::move(rule));
  }
}

// Every {name} in a fetch template must be a declared credential, tenant, employee_key, or a
// payload pointer ({/data/companyId}).
void CheckTemplate(MapReader& r, const std::string& key, const std::string& tmpl,
                   const std::vector<std::string>& credentials) {
  for (const std::string& name : TemplateNames(tmpl)) {
    if (name == "tenant" || name == "employee_key" || (!name.empty() && name[0] == '/')) continue;
    if (std::find(credentials.begin(), credentials.end(), name) != credentials.end()) continue;
    r.Error(key, "{" + name +
                     "} is not known here: use {tenant}, {employee_key}, {/pointer/into/payload} "
                     "or a name listed in fetch.credentials");
  }
}

void ReadFetchRequest(MapReader& r, const FetchSpec& f, FetchRequestSpec* q) {
  std::string method = q->method;
  if (r.String("method", &method)) {
    if (method != "GET" && method != "POST") r.Error("method", "must be GET or POST");
    q->method = method;
  }
  if (r.String("path", &q->path, true)) {
    if (q->path.empty() || (q->path[0] != '/' && q->path[0] != '?')) {
      r.Error("path", "must start with '/' (it is appended to base_url)");
    }
    CheckTemplate(r, "path", q->path, f.credentials);
  }
  if (r.String("body", &q->body)) {
    CheckTemplate(r, "body", q->body, f.credentials);
    if (q->method != "POST") r.Error("body", "a body needs method: POST");
  }
  r.String("content_type", &q->content_type);
  ReadPointer(r, "record", &q->record);
}

void ReadFetchAuth(MapReader& r, Problems* p, FetchSpec* f) {
  FetchAuthSpec& a = f->auth;
  MapReader ar(r.Child("auth"), r.PathOf("auth"), p);
  ReadEnum<FetchAuthSpec::Type>(ar, "type",
                                {{"none", FetchAuthSpec::Type::kNone},
                                 {"basic", FetchAuthSpec::Type::kBasic},
                                 {"bearer", FetchAuthSpec::Type::kBearer},
                                 {"header", FetchAuthSpec::Type::kHeader},
                                 {"oauth2_client_credentials", FetchAuthSpec::Type::kOAuth2}},
                                &a.type, r.Has("auth"));
  switch (a.type) {
    case FetchAuthSpec::Type::kNone:
      break;
    case FetchAuthSpec::Type::kBasic:
      ar.String("username", &a.username, true);
      ar.String("password", &a.password);
      break;
    case FetchAuthSpec::Type::kBearer:
      ar.String("token", &a.token, true);
      break;
    case FetchAuthSpec::Type::kHeader:
      ar.String("header", &a.header, true);
      ar.String("token", &a.token, true);
      ar.String("scheme", &a.scheme);
      break;
    case FetchAuthSpec::Type::kOAuth2: {
      ar.String("token_url", &a.token_url, true);
      ar.String("client_id", &a.client_id, true);
      ar.String("client_secret", &a.client_secret, true);
      ar.String("scope", &a.scope);
      std::string style = "body";
      ar.String("client_auth", &style);
      if (style != "body" && style != "basic") {
        ar.Error("client_auth", "must be body (form fields) or basic (HTTP Basic)");
      }
      a.client_auth_basic = style == "basic";
      break;
    }
  }
  const std::pair<const char*, const std::string*> templates[] = {
      {"username", &a.username},   {"password", &a.password},   {"token", &a.token},
      {"token_url", &a.token_url}, {"client_id", &a.client_id}, {"client_secret", &a.client_secret},
      {"scope", &a.scope}};
  for (const auto& [key, value] : templates) CheckTemplate(ar, key, *value, f->credentials);
}

void ReadFetch(const YAML::Node& node, Problems* p, FetchSpec* f) {
  if (!node.IsDefined() || node.IsNull()) return;
  MapReader r(node, "fetch", p);
  if (!node.IsMap()) return;
  f->enabled = true;
  r.StringList("credentials", &f->credentials);
  for (const std::string& c : f->credentials) {
    if (c.empty() || c == "tenant" || c == "employee_key" ||
        c.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos) {
      r.Error("credentials", "'" + c +
                                 "' must be lowercase letters, digits and '_' (and not tenant "
                                 "or employee_key)");
    }
  }
  if (r.String("base_url", &f->base_url, true)) {
    if (f->base_url.rfind("https://", 0) != 0 && f->base_url.rfind("http://", 0) != 0) {
      r.Error("base_url", "must start with https://");
    }
    CheckTemplate(r, "base_url", f->base_url, f->credentials);
  }
  ReadEnum(r, "not_found", kActions, &f->not_found);
  r.Int("timeout_ms", &f->timeout_ms, 100, 120000);
  if (ReadPointer(r, "recheck_at", &f->recheck_at) && f->recheck_at.empty()) {
    r.Error("recheck_at", "must point at a date in the fetched record, e.g. /terminated_on");
  }
  YAML::Node headers = r.Child("headers");
  if (!headers.IsDefined() || headers.IsNull()) {
  } else if (headers.IsMap()) {
    for (const auto& kv : headers) {
      if (!kv.second.IsScalar()) {
        p->Add(r.PathOf("headers") + "." + kv.first.Scalar(), kv.second, "must be a string");
        continue;
      }
      f->headers.emplace_back(kv.first.Scalar(), kv.second.Scalar());
      CheckTemplate(r, "headers", kv.second.Scalar(), f->credentials);
    }
  } else {
    r.Error("headers", "must be a map of header name to value template");
  }
  ReadFetchAuth(r, p, f);
  YAML::Node reqs = r.Child("requests");
  if (reqs.IsDefined() && !reqs.IsNull()) {
    if (r.Has("path")) r.Error("path", "give path (one request) or requests (several), not both");
    for (const char* k : {"method", "body", "content_type", "record"}) {
      if (r.Has(k)) r.Error(k, "belongs inside each of requests[]");
    }
    if (!reqs.IsSequence() || reqs.size() == 0) {
      r.Error("requests", "must be a non-empty list of {name, path, record}");
      return;
    }
    size_t i = 0;
    for (const auto& it : reqs) {
      FetchRequestSpec q;
      MapReader qr(it, Index(r.PathOf("requests"), i++), p);
      qr.String("name", &q.name, true);
      qr.Bool("optional", &q.optional);
      ReadFetchRequest(qr, *f, &q);
      for (const auto& other : f->requests) {
        if (other.name == q.name) qr.Error("name", "'" + q.name + "' is used twice");
      }
      f->requests.push_back(std::move(q));
    }
  } else {
    FetchRequestSpec q;
    ReadFetchRequest(r, *f, &q);
    f->requests.push_back(std::move(q));
  }
}

// Templates of a list request know no employee and no payload: only {tenant} and credentials.
void CheckListTemplate(MapReader& r, const std::string& key, const std::string& tmpl,
                       const std::vector<std::string>& credentials) {
  for (const std::string& name : TemplateNames(tmpl)) {
    if (name == "tenant") continue;
    if (std::find(credentials.begin(), credentials.end(), name) != credentials.end()) continue;
    r.Error(key, "{" + name +
                     "} is not known in a list request: use {tenant} or a name listed in "
                     "fetch.credentials or list.credentials");
  }
}

void ReadPagination(const YAML::Node& node, const std::string& path, Problems* p,
                    PaginationSpec* g) {
  if (!node.IsDefined() || node.IsNull()) return;
  MapReader r(node, path, p);
  if (!node.IsMap()) {
    r.Error("style", "pagination is a map: {style: page|offset|cursor|none, ...}");
    return;
  }
  ReadEnum<PaginationSpec::Style>(r, "style",
                                  {{"none", PaginationSpec::Style::kNone},
                                   {"page", PaginationSpec::Style::kPage},
                                   {"offset", PaginationSpec::Style::kOffset},
                                   {"cursor", PaginationSpec::Style::kCursor}},
                                  &g->style, true);
  r.String("param", &g->param);
  r.String("size_param", &g->size_param);
  r.Int("size", &g->size, 1, 10000);
  r.Int("max_pages", &g->max_pages, 1, 1000000);
  ReadPointer(r, "has_more", &g->has_more);
  switch (g->style) {
    case PaginationSpec::Style::kNone:
      for (const char* k :
           {"param", "size_param", "size", "start", "cursor", "next_url", "total"}) {
        if (r.Has(k)) r.Error(k, "style none reads one answer: remove " + std::string(k));
      }
      break;
    case PaginationSpec::Style::kPage:
    case PaginationSpec::Style::kOffset: {
      const bool page = g->style == PaginationSpec::Style::kPage;
      if (g->param.empty()) g->param = page ? "page" : "offset";
      g->start = page ? 1 : 0;
      r.Int("start", &g->start, 0, 1000000);
      ReadPointer(r, "total", &g->total);
      for (const char* k : {"cursor", "next_url"}) {
        if (r.Has(k)) r.Error(k, "belongs to style cursor");
      }
      break;
    }
    case PaginationSpec::Style::kCursor:
      ReadPointer(r, "cursor", &g->cursor);
      ReadPointer(r, "next_url", &g->next_url);
      if (g->cursor.empty() == g->next_url.empty()) {
        r.Error("cursor",
                "give cursor (a pointer to the next cursor, sent back in `param`) or next_url "
                "(a pointer to the next page's URL), one of them");
      }
      if (!g->cursor.empty() && g->param.empty()) {
        r.Error("param", "is required with cursor: the query parameter that carries it");
      }
      for (const char* k : {"start", "total"}) {
        if (r.Has(k)) r.Error(k, "belongs to styles page and offset");
      }
      break;
  }
}

void ReadList(const YAML::Node& node, const FetchSpec& fetch, Problems* p, ListSpec* l) {
  if (!node.IsDefined() || node.IsNull()) return;
  MapReader r(node, "list", p);
  if (!node.IsMap()) {
    p->Add("list", node, "must be a map: {path: /employees, records: /employees, ...}");
    return;
  }
  l->enabled = true;
  r.StringList("credentials", &l->credentials);
  std::vector<std::string> credentials = fetch.credentials;
  for (const std::string& c : l->credentials) {
    if (c.empty() || c == "tenant" || c == "employee_key" ||
        c.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos) {
      r.Error("credentials", "'" + c +
                                 "' must be lowercase letters, digits and '_' (and not tenant "
                                 "or employee_key)");
    }
    if (std::find(credentials.begin(), credentials.end(), c) == credentials.end()) {
      credentials.push_back(c);
    }
  }
  if (r.String("base_url", &l->base_url)) {
    if (l->base_url.rfind("https://", 0) != 0 && l->base_url.rfind("http://", 0) != 0) {
      r.Error("base_url", "must start with https://");
    }
    CheckListTemplate(r, "base_url", l->base_url, credentials);
  }
  int timeout = 0;
  if (r.Int("timeout_ms", &timeout, 100, 120000)) l->timeout_ms = timeout;
  YAML::Node headers = r.Child("headers");
  if (!headers.IsDefined() || headers.IsNull()) {
  } else if (headers.IsMap()) {
    l->headers.emplace();
    for (const auto& kv : headers) {
      if (!kv.second.IsScalar()) {
        p->Add(r.PathOf("headers") + "." + kv.first.Scalar(), kv.second, "must be a string");
        continue;
      }
      l->headers->emplace_back(kv.first.Scalar(), kv.second.Scalar());
      CheckListTemplate(r, "headers", kv.second.Scalar(), credentials);
    }
  } else {
    r.Error("headers", "must be a map of header name to value template");
  }
  if (r.Has("auth")) {
    FetchSpec scratch;
    scratch.credentials = credentials;
    ReadFetchAuth(r, p, &scratch);
    if (scratch.auth.type == FetchAuthSpec::Type::kOAuth2) {
      r.Error("auth",
              "oauth2_client_credentials is available to a list only through fetch.auth: put it "
              "there and leave list.auth out");
    }
    l->auth = scratch.auth;
  }
  std::string method = l->method;
  if (r.String("method", &method)) {
    if (method != "GET" && method != "POST") r.Error("method", "must be GET or POST");
    l->method = method;
  }
  if (r.String("path", &l->path, true)) {
    if (l->path.empty() || (l->path[0] != '/' && l->path[0] != '?')) {
      r.Error("path", "must start with '/' (it is appended to the base URL)");
    }
    CheckListTemplate(r, "path", l->path, credentials);
  }
  if (r.String("body", &l->body)) {
    CheckListTemplate(r, "body", l->body, credentials);
    if (l->method != "POST") r.Error("body", "a body needs method: POST");
  }
  r.String("content_type", &l->content_type);
  if (!r.Has("records")) {
    r.Error("records",
            "is required: a pointer to the array of records in each answer (\"\" "
            "when the answer is the array)");
  }
  ReadPointer(r, "records", &l->records);
  ReadPointer(r, "employee_key", &l->employee_key);
  std::string yields = fetch.enabled ? "keys" : "records";
  r.String("yields", &yields);
  if (yields == "records") {
    l->yields_records = true;
  } else if (yields != "keys") {
    r.Error("yields",
            "must be keys (the worker fetches each record) or records (each listed "
            "record is the employee's record)");
  }
  if (!fetch.enabled && !l->yields_records) {
    r.Error("yields", "a profile without fetch cannot read a record per key: use records");
  }
  if (fetch.enabled && l->yields_records && fetch.requests.size() > 1) {
    r.Error("yields",
            "the fetch section assembles each record from several requests; a listed "
            "record cannot stand in for it: use keys");
  }
  ReadPointer(r, "record_at", &l->record_at);
  ReadPointer(r, "version", &l->version);
  for (const char* k : {"record_at", "version"}) {
    if (fetch.enabled && r.Has(k)) {
      r.Error(k, "applies only to profiles whose payload carries the record (no fetch section)");
    }
  }
  ReadPagination(r.Child("pagination"), r.PathOf("pagination"), p, &l->pagination);
}

void ReadFields(MapReader& r, Problems* p, std::map<std::string, Source>* out) {
  SourceRules rules;
  rules.allow_variable = true;
  for (const std::string& attr : MappingAttributes()) {
    YAML::Node n = r.Child(attr);
    if (!n.IsDefined()) continue;
    Source s;
    if (ReadSource(n, r.PathOf(attr), rules, p, &s)) (*out)[attr] = std::move(s);
  }
}

void ReadMapping(const YAML::Node& node, Problems* p, MappingSpec* m) {
  MapReader r(node, "mapping", p);
  if (!node.IsDefined() || node.IsNull()) {
    p->Add("mapping", 0, "is required: at least userName (or a work email) and email");
    return;
  }
  if (r.Has("from")) {
    ReadEnum<Scope>(r, "from", {{"record", Scope::kRecord}, {"payload", Scope::kPayload}},
                    &m->from);
  }
  ReadFields(r, p, &m->fields);
  if (node.IsMap() && m->fields.count("email") == 0) {
    p->Add("mapping.email", node, "is required: JumpCloud needs every user's email");
  }
}

}  // namespace

void ReadFieldOverrides(const YAML::Node& node, const std::string& path, Problems* problems,
                        std::map<std::string, Source>* out) {
  MapReader r(node, path, problems);
  ReadFields(r, problems, out);
}

void ReadApiSettings(const YAML::Node& node, const std::string& path, const ProfileSpec& spec,
                     Problems* problems, ApiSettings* out) {
  if (!node.IsDefined() || node.IsNull()) return;
  MapReader r(node, path, problems);
  if (!spec.fetch.enabled && !spec.list.enabled) {
    problems->Add(path, node,
                  "profile '" + spec.name + "' does not fetch from an HRIS API; remove api");
    for (const auto& kv : node) r.Ignore(kv.first.Scalar());
    return;
  }
  std::string base_url;
  if (r.String("base_url", &base_url)) {
    config::UrlParts url;
    if (!config::ParseUrl(base_url, &url) ||
        (url.scheme != "https" && !(url.scheme == "http" && config::IsLoopbackHost(url.host)))) {
      r.Error("base_url", "must be an https:// URL (http:// only for loopback)");
    } else {
      out->base_url = base_url;
    }
  }
  std::string tenant;
  if (r.String("tenant", &tenant)) out->tenant = tenant;
  int timeout = 0;
  if (r.Int("timeout_ms", &timeout, 100, 120000)) out->timeout_ms = timeout;
  std::vector<std::string> credentials = spec.fetch.credentials;
  for (const std::string& c : spec.list.credentials) {
    if (std::find(credentials.begin(), credentials.end(), c) == credentials.end()) {
      credentials.push_back(c);
    }
  }
  for (const std::string& c : credentials) {
    std::string env, file;
    bool has_env = r.String(c + "_env", &env);
    bool has_file = r.String(c + "_file", &file);
    if (has_env && has_file) {
      std::string message = "give either ";
      message.append(c).append("_env or ").append(c).append("_file, not both");
      r.Error(c + "_file", message);
    } else if (has_env || has_file) {
      out->credentials[c] = config::SecretRef{env, file};
    }
    if (r.Has(c)) {
      std::string message = "credentials are never written in the config file: use ";
      message.append(c)
          .append("_env (an environment variable's name) or ")
          .append(c)
          .append("_file (a file's path)");
      r.Error(c, message);
    }
    r.Ignore(c);
  }
}

const std::vector<std::string>& MappingAttributes() {
  static const std::vector<std::string> kAttrs = {
      "externalId", "userName",     "givenName",      "familyName", "displayName",
      "email",      "title",        "locale",         "userType",   "department",
      "costCenter", "organization", "employeeNumber", "password",   "active"};
  return kAttrs;
}

bool ParseProfile(const std::string& text, const std::string& file, Problems* problems,
                  ProfileSpec* out) {
  size_t before = problems->list().size();
  out->file = file;
  YAML::Node root;
  if (!config::ParseYaml(text, &root, problems)) return false;
  if (!root.IsMap()) {
    problems->Add("", root,
                  "a profile is a mapping with name, auth, decode, items, actions, "
                  "mapping (see docs/profiles.md)");
    return false;
  }
  MapReader r(root, "", problems);
  r.String("name", &out->name, true);
  std::string description;
  r.String("description", &description);
  ReadAuth(r.Child("auth"), problems, &out->auth);
  ReadDecode(r.Child("decode"), problems, &out->decode);
  ReadItems(r.Child("items"), problems, &out->items);
  ReadEvents(r.Child("events"), problems, &out->events);
  ReadActions(r.Child("actions"), problems, &out->actions);
  out->default_action_set = r.Has("default_action");
  ReadEnum(r, "default_action", kActions, &out->default_action);
  ReadFetch(r.Child("fetch"), problems, &out->fetch);
  if (out->fetch.enabled) {
    // Level-triggered: the worker fetches the current record, so an employee item whose event
    // type no rule names is synced, never silently dropped. Irrelevant types are named instead.
    if (!out->default_action_set) {
      out->default_action = Action::kSync;
    } else if (out->default_action == Action::kIgnore) {
      problems->Add("default_action", r.LineOf("default_action"),
                    "ignore would drop employee events no rule names, and this profile fetches "
                    "the current record (a sync is safe): remove it, and list the event types "
                    "that are not about an employee under events.other (or in a rule with "
                    "action: ignore)");
    }
  }
  ReadList(r.Child("list"), out->fetch, problems, &out->list);
  ReadMapping(r.Child("mapping"), problems, &out->mapping);
  if (out->mapping.from == Scope::kDefault) {
    out->mapping.from = out->fetch.enabled ? Scope::kRecord : Scope::kPayload;
  } else if (out->mapping.from == Scope::kRecord && !out->fetch.enabled) {
    problems->Add("mapping.from", r.LineOf("mapping"),
                  "record needs a fetch section (how to get the record from the HRIS API)");
  }
  r.Finish();
  return problems->list().size() == before;
}

}  // namespace scimsync::connectors::internal
