// Small string and date helpers shared by every folder: one version each of what used to be
// written again where it was needed. Pure functions, independent of locale and time zone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace scimsync {

// The value of one hex digit (either case), or -1 for any other character.
int HexValue(char c);
// "4a6f" -> "Jo". nullopt for an odd length or a non-hex character.
std::optional<std::string> HexDecode(std::string_view text);

// Decodes %XX escapes; with `plus_is_space` also '+' (application/x-www-form-urlencoded).
// nullopt for a '%' not followed by two hex digits: a malformed escape is the sender's error,
// never guessed at. The result may hold any byte (check IsUtf8 where text is expected).
std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space);

// Percent-encodes every byte but RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~), so the
// result is safe as a path segment, a query key or a query value.
std::string UrlEncode(std::string_view text);

// ASCII lower-casing: header names, media types, vendor words. Bytes >= 0x80 are left as they
// are (no locale, so UTF-8 is never damaged).
char AsciiLower(char c);
std::string AsciiLower(std::string_view text);

// Strict UTF-8: no overlong forms, surrogates or code points past U+10FFFF (what RapidJSON's
// validating parser accepts).
bool IsUtf8(std::string_view text);
// `text` with each byte that starts no valid UTF-8 sequence replaced by U+FFFD: bytes from
// outside (an HTTP answer, a payload) made safe for a JSON writer, which copies bytes as they are.
std::string ScrubUtf8(std::string_view text);

// Appends `text` to `out` as the body of a JSON string: quotes, backslashes and control
// characters escaped (\n \r \t \b \f, others \u00XX); invalid UTF-8 bytes become U+FFFD (as in
// ScrubUtf8), so the result is always valid JSON.
void AppendJsonEscaped(std::string& out, std::string_view text);

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil):
// dates without the process's time zone. m is 1-12, d is 1-31 (not checked).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d);

// errno's text. strerror is not thread-safe and the listener, workers and ingest all run on
// several threads; this uses GNU strerror_r.
std::string ErrnoText(int err);

}  // namespace scimsync
