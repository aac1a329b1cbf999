#include "scimsync/scim/user.h"

#include <cctype>
#include <string_view>

namespace scimsync::scim {
namespace {

constexpr size_t kMaxLength = 1024;
constexpr size_t kMaxEmployeeNumber = 256;

// Folds one Latin-1 Supplement / Latin Extended-A code point to ASCII letters; empty when the
// character has no sensible ASCII form (it is then dropped).
std::string_view FoldCodePoint(char32_t cp) {
  if (cp >= 0xC0 && cp <= 0xC5) return "a";
  if (cp == 0xC6) return "ae";
  if (cp == 0xC7) return "c";
  if (cp >= 0xC8 && cp <= 0xCB) return "e";
  if (cp >= 0xCC && cp <= 0xCF) return "i";
  if (cp == 0xD0) return "d";
  if (cp == 0xD1) return "n";
  if ((cp >= 0xD2 && cp <= 0xD6) || cp == 0xD8) return "o";
  if (cp >= 0xD9 && cp <= 0xDC) return "u";
  if (cp == 0xDD) return "y";
  if (cp == 0xDE) return "th";
  if (cp == 0xDF) return "ss";
  if (cp >= 0xE0 && cp <= 0xE5) return "a";
  if (cp == 0xE6) return "ae";
  if (cp == 0xE7) return "c";
  if (cp >= 0xE8 && cp <= 0xEB) return "e";
  if (cp >= 0xEC && cp <= 0xEF) return "i";
  if (cp == 0xF0) return "d";
  if (cp == 0xF1) return "n";
  if ((cp >= 0xF2 && cp <= 0xF6) || cp == 0xF8) return "o";
  if (cp >= 0xF9 && cp <= 0xFC) return "u";
  if (cp == 0xFD || cp == 0xFF) return "y";
  if (cp == 0xFE) return "th";
  if (cp >= 0x100 && cp <= 0x17F) {
    // Latin Extended-A: pairs of upper/lower case, grouped by base letter.
    // clang-format off
    static const char* const kBase[] = {
        "a", "a", "a", "a", "a", "a", "c", "c", "c", "c", "c", "c", "c", "c", "d", "d",  // 100
        "d", "d", "e", "e", "e", "e", "e", "e", "e", "e", "e", "e", "g", "g", "g", "g",  // 110
        "g", "g", "g", "g", "h", "h", "h", "h", "i", "i", "i", "i", "i", "i", "i", "i",  // 120
        "i", "i", "ij", "ij", "j", "j", "k", "k", "k", "l", "l", "l", "l", "l", "l",     // 130
        "l", "l", "l", "l", "n", "n", "n", "n", "n", "n", "n", "n", "n", "o", "o", "o",  // 13f
        "o", "o", "o", "oe", "oe", "r", "r", "r", "r", "r", "r", "s", "s", "s", "s", "s",  // 14f
        "s", "s", "s", "t", "t", "t", "t", "t", "t", "u", "u", "u", "u", "u", "u", "u",  // 15f
        "u", "u", "u", "u", "u", "w", "w", "y", "y", "y", "z", "z", "z", "z", "z", "z",  // 16f
        "s"};                                                                            // 17f
    // clang-format on
    return kBase[cp - 0x100];
  }
  return {};
}

// Decodes one UTF-8 code point at s[i]; advances i. Invalid bytes yield U+FFFD.
char32_t NextCodePoint(const std::string& s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    ++i;
    return 0xFFFD;
  }
  char32_t cp = len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
  for (size_t k = 1; k < len; ++k) {
    auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (cc & 0x3f);
  }
  i += len;
  return cp;
}

size_t CodePointCount(const std::string& s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    NextCodePoint(s, i);
    ++n;
  }
  return n;
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. JSON (and so SCIM)
// carries only valid UTF-8, and an HRIS id is matched byte for byte.
bool IsValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    char32_t cp = len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

bool IsUserNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

// A pragmatic address check (RFC 5322 is far wider than what directories accept): one '@',
// a non-empty local part without spaces, a domain with a dot, no empty labels.
bool LooksLikeEmail(const std::string& s) {
  auto at = s.find('@');
  if (at == std::string::npos || at == 0 || s.find('@', at + 1) != std::string::npos) return false;
  std::string domain = s.substr(at + 1);
  if (domain.empty() || domain.find('.') == std::string::npos) return false;
  if (domain.front() == '.' || domain.back() == '.' || domain.find("..") != std::string::npos) {
    return false;
  }
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || c == '<' || c == '>' || c == ',' || c == ';' || c == '"' || c == '\\') {
      return false;
    }
  }
  return true;
}

void CheckLength(std::vector<ValidationProblem>& out, const char* field,
                 const std::optional<std::string>& v, size_t max) {
  if (v && CodePointCount(*v) > max) {
    out.push_back({field, "is longer than " + std::to_string(max) + " characters"});
  }
}

}  // namespace

std::string SafeUserName(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    char32_t cp = NextCodePoint(text, i);
    if (cp < 0x80) {
      char c = static_cast<char>(std::tolower(static_cast<int>(cp)));
      if (IsUserNameChar(c)) out += c;
    } else {
      out += FoldCodePoint(cp);
    }
  }
  // JumpCloud usernames start with a letter: drop leading digits and punctuation.
  size_t start = 0;
  while (start < out.size() && !std::isalpha(static_cast<unsigned char>(out[start]))) ++start;
  out = out.substr(start);
  if (out.size() > kMaxLength) out.resize(kMaxLength);
  return out;
}

std::vector<ValidationProblem> Validate(const User& user) {
  std::vector<ValidationProblem> out;
  if (user.user_name.empty()) {
    out.push_back({"userName", "is required (map a username, or a work email to derive it from)"});
  } else {
    if (user.user_name.find('@') != std::string::npos) {
      out.push_back({"userName",
                     "must not be an email address (JumpCloud rejects it); use the "
                     "email's local part (transform: email_local_part)"});
    } else {
      for (char c : user.user_name) {
        if (!IsUserNameChar(c)) {
          out.push_back({"userName", "may contain only letters, digits, '.', '_' and '-' (found '" +
                                         std::string(1, c) + "'); use transform: safe_username"});
          break;
        }
      }
    }
    if (user.user_name.size() > kMaxLength) {
      out.push_back({"userName", "is longer than 1024 characters"});
    }
  }
  if (!user.email || user.email->empty()) {
    out.push_back({"emails[primary].value", "is required: map the employee's work email"});
  } else {
    if (!LooksLikeEmail(*user.email)) {
      out.push_back({"emails[primary].value", "is not a valid email address"});
    }
    CheckLength(out, "emails[primary].value", user.email, kMaxLength);
  }
  CheckLength(out, "name.givenName", user.given_name, kMaxLength);
  CheckLength(out, "name.familyName", user.family_name, kMaxLength);
  CheckLength(out, "displayName", user.display_name, kMaxLength);
  CheckLength(out, "employeeNumber", user.employee_number, kMaxEmployeeNumber);
  if (user.external_id.empty()) {
    out.push_back({"externalId", "is required: it is the HRIS employee id that anchors the user"});
  } else if (!IsValidUtf8(user.external_id)) {
    out.push_back({"externalId",
                   "is not valid UTF-8: check the HRIS field mapped to the employee "
                   "id"});
  }
  return out;
}

}  // namespace scimsync::scim
