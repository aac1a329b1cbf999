// scimsync/strings.h: the one version of each small string and date helper.
#include "scimsync/strings.h"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <string>

namespace scimsync {
namespace {

TEST(Hex, DecodesEitherCaseAndRefusesOddLengthsAndNonHex) {
  EXPECT_EQ(HexDecode("4a6F"), std::optional<std::string>("Jo"));
  EXPECT_EQ(HexDecode(""), std::optional<std::string>(""));
  EXPECT_EQ(HexDecode("00ff"), std::optional<std::string>(std::string("\0\xff", 2)));
  EXPECT_FALSE(HexDecode("4a6"));
  EXPECT_FALSE(HexDecode("4g"));
  EXPECT_FALSE(HexDecode(" 4a"));
  EXPECT_EQ(HexValue('a'), 10);
  EXPECT_EQ(HexValue('F'), 15);
  EXPECT_EQ(HexValue('/'), -1);
  EXPECT_EQ(HexValue(':'), -1);
}

TEST(PercentDecode, FormsTurnPlusIntoSpacePathsDoNot) {
  EXPECT_EQ(PercentDecode("a+b%20c%2B", true), std::optional<std::string>("a b c+"));
  EXPECT_EQ(PercentDecode("a+b%20c%2B", false), std::optional<std::string>("a+b c+"));
  EXPECT_EQ(PercentDecode("%e2%82%ac", false), std::optional<std::string>("\xe2\x82\xac"));
}

TEST(PercentDecode, AMalformedEscapeIsRefused) {
  for (const char* bad : {"%", "%4", "a%zz", "%%41", "abc%2"}) {
    EXPECT_FALSE(PercentDecode(bad, true)) << bad;
    EXPECT_FALSE(PercentDecode(bad, false)) << bad;
  }
}

TEST(UrlEncode, KeepsOnlyUnreservedAndRoundTrips) {
  EXPECT_EQ(UrlEncode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(UrlEncode("a b/c?d=e&f+g%"), "a%20b%2Fc%3Fd%3De%26f%2Bg%25");
  EXPECT_EQ(UrlEncode("Zo\xc3\xab"), "Zo%C3%AB");
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  EXPECT_EQ(PercentDecode(UrlEncode(all), false), std::optional<std::string>(all));
  EXPECT_EQ(PercentDecode(UrlEncode(all), true), std::optional<std::string>(all));
}

TEST(AsciiLower, LowersAsciiOnlyAndLeavesUtf8Alone) {
  EXPECT_EQ(AsciiLower("Retry-After"), "retry-after");
  EXPECT_EQ(AsciiLower("\xc3\x89T\xc3\x89"), "\xc3\x89t\xc3\x89");  // ÉTÉ: only the T
  EXPECT_EQ(AsciiLower('Q'), 'q');
  EXPECT_EQ(AsciiLower('@'), '@');
  EXPECT_EQ(AsciiLower('['), '[');
}

TEST(IsUtf8, StrictLikeTheJsonParser) {
  EXPECT_TRUE(IsUtf8("plain"));
  EXPECT_TRUE(IsUtf8("Zo\xc3\xab \xe6\x97\xa5 \xf0\x9f\x99\x82"));
  EXPECT_FALSE(IsUtf8("\xff"));
  EXPECT_FALSE(IsUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(IsUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(IsUtf8("\xe2\x82"));          // cut short
}

TEST(ScrubUtf8, ReplacesEachByteThatStartsNoSequence) {
  EXPECT_EQ(ScrubUtf8("Zo\xc3\xab"), "Zo\xc3\xab");
  EXPECT_EQ(ScrubUtf8("a\xff\xc0\xaf"
                      "b"),
            "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
            "b");
  EXPECT_TRUE(IsUtf8(ScrubUtf8("\xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80")));
}

TEST(AppendJsonEscaped, EscapesQuotesControlsAndInvalidUtf8) {
  std::string out;
  AppendJsonEscaped(out, std::string("a\"b\\c\n\x01 \xc3\xa9 \xff", 12));
  EXPECT_EQ(out, "a\\\"b\\\\c\\n\\u0001 \xc3\xa9 \xef\xbf\xbd");
  out.clear();
  AppendJsonEscaped(out, std::string("\b\f\r\t\0", 5));
  EXPECT_EQ(out, "\\b\\f\\r\\t\\u0000");
  out.clear();
  AppendJsonEscaped(out, "\xc0\xaf\xed\xa0\x80");  // an overlong '/', a surrogate
  EXPECT_TRUE(IsUtf8(out));
  EXPECT_EQ(out.find('/'), std::string::npos);
}

TEST(AppendJsonEscaped, EveryValidStringParsesBackToItself) {
  std::string all;
  for (int c = 0; c < 0x80; ++c) all += static_cast<char>(c);
  all += "\xc3\xa9\xe2\x82\xac\xf0\x9f\x99\x82";
  std::string quoted = "\"";
  AppendJsonEscaped(quoted, all);
  quoted += '"';
  rapidjson::Document d;
  d.Parse<rapidjson::kParseValidateEncodingFlag>(quoted.data(), quoted.size());
  ASSERT_FALSE(d.HasParseError());
  EXPECT_EQ(std::string(d.GetString(), d.GetStringLength()), all);
}

TEST(DaysFromCivil, CountsFromTheEpochAcrossLeapYearsAndBefore) {
  EXPECT_EQ(DaysFromCivil(1970, 1, 1), 0);
  EXPECT_EQ(DaysFromCivil(1969, 12, 31), -1);
  EXPECT_EQ(DaysFromCivil(2000, 3, 1), 11017);  // 2000 is a leap year: Feb 29 came before
  EXPECT_EQ(DaysFromCivil(2000, 2, 29) + 1, DaysFromCivil(2000, 3, 1));
  EXPECT_EQ(DaysFromCivil(1900, 3, 1) - DaysFromCivil(1900, 2, 28), 1);  // 1900 is not
  EXPECT_EQ(DaysFromCivil(2026, 12, 6), 20793);
  EXPECT_EQ(DaysFromCivil(1601, 1, 1), -134774);
}

}  // namespace
}  // namespace scimsync
