// Byte-level helpers the auth recipes and dedup ids are built from: HMAC, SHA-256, hex and
// base64 in both alphabets, constant-time comparison. OpenSSL is used only here.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace scimsync::connectors::internal {

enum class HashAlgorithm { kSha1, kSha256, kSha512 };
enum class Encoding { kHex, kBase64, kBase64Url };

std::string Hmac(HashAlgorithm algorithm, std::string_view key, std::string_view message);
std::string Sha256(std::string_view data);

std::string HexEncode(std::string_view bytes);
std::string Base64Encode(std::string_view bytes, bool url_alphabet = false, bool pad = true);
// Lenient where senders differ in harmless ways: base64 with or without padding, either
// alphabet (hex in either case: scimsync::HexDecode). nullopt on anything else.
std::optional<std::string> Base64Decode(std::string_view text);

std::string Encode(Encoding encoding, std::string_view bytes);
std::optional<std::string> Decode(Encoding encoding, std::string_view text);

// Compares without an early exit, so the time taken does not reveal how many leading bytes of a
// forged signature were right. Different lengths compare unequal (length is not secret).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace scimsync::connectors::internal
