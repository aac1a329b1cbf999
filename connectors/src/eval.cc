#include "eval.h"

#include <algorithm>
#include <cctype>

#include "codec.h"
#include "json.h"
#include "scimsync/scim/user.h"
#include "scimsync/strings.h"

namespace scimsync::connectors::internal {
namespace {

const rapidjson::Value* ScopeRoot(Scope scope, const EvalContext& ctx) {
  if (scope == Scope::kDefault) scope = ctx.default_scope;
  switch (scope) {
    case Scope::kItem:
      return ctx.item;
    case Scope::kBody:
      return ctx.body;
    case Scope::kRecord:
      return ctx.record;
    case Scope::kPayload:
      return ctx.payload;
    case Scope::kDefault:
      break;
  }
  return nullptr;
}

bool ParseDigits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

std::string Substitute(const std::string& tmpl, const EvalContext& ctx, bool* any_value) {
  std::string out;
  *any_value = false;
  for (size_t i = 0; i < tmpl.size();) {
    std::string name;
    size_t end = 0;
    if (tmpl[i] == '{' && PlaceholderAt(tmpl, i, &name, &end)) {
      std::string pointer = name[0] == '/' ? name : "/" + name;
      const rapidjson::Value* root = ScopeRoot(Scope::kDefault, ctx);
      std::optional<std::string> v;
      if (root != nullptr) v = ScalarText(Resolve(*root, pointer));
      if (v && !v->empty()) {
        *any_value = true;
        out += *v;
      }
      i = end;
      continue;
    }
    out += tmpl[i++];
  }
  // A missing middle part must not leave a double space ("{first} {middle} {last}").
  std::string collapsed;
  for (char c : out) {
    if (c == ' ' && !collapsed.empty() && collapsed.back() == ' ') continue;
    collapsed += c;
  }
  return collapsed;
}

}  // namespace

bool PlaceholderAt(std::string_view tmpl, size_t pos, std::string* name, size_t* end) {
  if (pos >= tmpl.size() || tmpl[pos] != '{') return false;
  size_t close = tmpl.find('}', pos + 1);
  if (close == std::string_view::npos || close == pos + 1) return false;
  std::string_view inner = tmpl.substr(pos + 1, close - pos - 1);
  bool ok;
  if (inner[0] == '/') {
    ok = inner.find_first_of("{\" \t\r\n") == std::string_view::npos;
  } else {
    ok = std::all_of(inner.begin(), inner.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
  }
  if (!ok) return false;
  *name = std::string(inner);
  *end = close + 1;
  return true;
}

std::string NormalizeHeaderName(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    c = c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

const std::string* FindHeader(const Request& request, std::string_view name) {
  std::string want = NormalizeHeaderName(name);
  for (const auto& [k, v] : request.headers) {
    if (NormalizeHeaderName(k) == want) return &v;
  }
  return nullptr;
}

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::optional<int64_t> ParseTimeMillis(std::string_view text) {
  std::string s = Trim(text);
  if (s.empty()) return std::nullopt;
  if (std::all_of(s.begin(), s.end(),
                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    if (s.size() > 18) return std::nullopt;
    int64_t v = std::stoll(s);
    return v > 100'000'000'000 ? v : v * 1000;
  }
  int y = 0, mo = 0, d = 0;
  if (!ParseDigits(s, 0, 4, &y) || s.size() < 10 || s[4] != '-' || !ParseDigits(s, 5, 2, &mo) ||
      s[7] != '-' || !ParseDigits(s, 8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31) {
    return std::nullopt;
  }
  int64_t ms = DaysFromCivil(y, mo, d) * 86'400'000;
  if (s.size() == 10) return ms;
  if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return std::nullopt;
  int h = 0, mi = 0, sec = 0;
  if (!ParseDigits(s, 11, 2, &h) || s.size() < 16 || s[13] != ':' || !ParseDigits(s, 14, 2, &mi)) {
    return std::nullopt;
  }
  size_t pos = 16;
  if (pos < s.size() && s[pos] == ':') {
    if (!ParseDigits(s, pos + 1, 2, &sec)) return std::nullopt;
    pos += 3;
  }
  if (h > 23 || mi > 59 || sec > 60) return std::nullopt;
  ms += (h * 3600LL + mi * 60LL + sec) * 1000;
  if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
    ++pos;
    int64_t frac = 0;
    int digits = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      if (digits < 3) {
        frac = frac * 10 + (s[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    while (digits < 3) {
      frac *= 10;
      ++digits;
    }
    ms += frac;
  }
  if (pos == s.size()) return ms;  // no zone: HiBob's triggeredAt is UTC without a suffix
  if (s[pos] == 'Z' || s[pos] == 'z') return pos + 1 == s.size() ? std::optional(ms) : std::nullopt;
  if (s[pos] != '+' && s[pos] != '-') return std::nullopt;
  int sign = s[pos] == '-' ? -1 : 1;
  int oh = 0, om = 0;
  if (!ParseDigits(s, pos + 1, 2, &oh)) return std::nullopt;
  size_t mpos = pos + 3;
  if (mpos < s.size() && s[mpos] == ':') ++mpos;
  if (mpos < s.size()) {
    if (!ParseDigits(s, mpos, 2, &om) || mpos + 2 != s.size()) return std::nullopt;
  }
  return ms - sign * (oh * 3600LL + om * 60LL) * 1000;
}

std::optional<int64_t> ParseTimeSeconds(std::string_view text) {
  auto ms = ParseTimeMillis(text);
  if (!ms) return std::nullopt;
  return *ms >= 0 ? *ms / 1000 : -((-*ms + 999) / 1000);
}

std::optional<std::string> ApplyTransforms(const std::vector<Transform>& transforms,
                                           std::optional<std::string> value, int64_t now_s) {
  for (const Transform& t : transforms) {
    switch (t.kind) {
      case Transform::Kind::kLowercase:
        if (value) value = AsciiLower(*value);
        break;
      case Transform::Kind::kUppercase:
        if (value) {
          for (char& c : *value) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        }
        break;
      case Transform::Kind::kTrim:
        if (value) value = Trim(*value);
        break;
      case Transform::Kind::kEmailLocalPart:
        if (value) value = value->substr(0, value->find('@'));
        break;
      case Transform::Kind::kSafeUsername:
        if (value) value = scim::SafeUserName(*value);
        break;
      case Transform::Kind::kLookup: {
        auto it = value ? t.table.find(*value) : t.table.end();
        if (it != t.table.end()) {
          value = it->second;
        } else if (t.fallback) {
          value = *t.fallback;
        }
        break;
      }
      case Transform::Kind::kDateReached: {
        std::optional<int64_t> when;
        if (value && !Trim(*value).empty()) when = ParseTimeSeconds(*value);
        if (!when) {
          value = t.fallback;
        } else {
          // Compared by calendar day in UTC: a termination dated today is in effect today.
          int64_t today = now_s >= 0 ? now_s / 86400 : -((-now_s + 86399) / 86400);
          int64_t day = *when >= 0 ? *when / 86400 : -((-*when + 86399) / 86400);
          value = day <= today ? t.then_value : t.else_value;
        }
        break;
      }
      case Transform::Kind::kDefault:
        if (!value || value->empty()) value = t.fallback;
        break;
      case Transform::Kind::kPrefix:
        if (value && !value->empty()) value = t.text + *value;
        break;
    }
  }
  return value;
}

std::optional<std::string> Evaluate(const Source& source, const EvalContext& ctx) {
  std::optional<std::string> value;
  switch (source.kind) {
    case Source::Kind::kPointer: {
      const rapidjson::Value* root = ScopeRoot(source.scope, ctx);
      if (root != nullptr) {
        const rapidjson::Value* v = Resolve(*root, source.text);
        if (v != nullptr && (v->IsObject() || v->IsArray())) {
          value = Compact(*v);
        } else {
          value = ScalarText(v);
        }
      }
      break;
    }
    case Source::Kind::kHeader:
      if (ctx.request != nullptr) {
        if (const std::string* h = FindHeader(*ctx.request, source.text)) value = *h;
      }
      break;
    case Source::Kind::kConstant:
      value = source.text;
      break;
    case Source::Kind::kVariable:
      if (ctx.variables != nullptr) {
        auto it = ctx.variables->find(source.text);
        if (it != ctx.variables->end()) value = it->second;
      }
      break;
    case Source::Kind::kHash: {
      // Length-prefixed parts, so ("ab","c") and ("a","bc") hash differently.
      std::string material;
      bool any = false;
      for (const Source& part : source.parts) {
        auto v = Evaluate(part, ctx);
        if (v) any = true;
        std::string p = v.value_or("");
        material += std::to_string(p.size()) + ":" + p + ";";
      }
      if (any) value = HexEncode(Sha256(material));
      break;
    }
    case Source::Kind::kFirst:
      for (const Source& part : source.parts) {
        auto v = Evaluate(part, ctx);
        if (v && !v->empty()) {
          value = std::move(v);
          break;
        }
      }
      break;
    case Source::Kind::kTemplate: {
      bool any = false;
      std::string s = Trim(Substitute(source.text, ctx, &any));
      if (any) value = std::move(s);
      break;
    }
  }
  return ApplyTransforms(source.transforms, std::move(value), ctx.now_s);
}

}  // namespace scimsync::connectors::internal
