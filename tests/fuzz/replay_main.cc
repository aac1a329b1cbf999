// Runs a libFuzzer target without libFuzzer, in the normal (g++, ASan + UBSan) build: every file
// of the seed corpus, then inputs derived from the seeds by a fixed-seed mutator. It is the suite's
// quick guard (seconds, no second compiler); scripts/fuzz does the coverage-guided search.
//   fuzz_<target>_replay [--generate N] [--seed S] [--max-len BYTES] CORPUS_DIR_OR_FILE...
// A crashing input is written to ./crash-<target>-<n> before the sanitizer's report (when built
// with a sanitizer), so it can be replayed alone and added to the corpus with the fix.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define SCIMSYNC_HAVE_DEATH_CALLBACK 1
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

const std::string* g_current = nullptr;
std::string g_crash_file;

void SaveCurrent() {
  if (g_current == nullptr) return;
  std::ofstream out(g_crash_file, std::ios::binary);
  out << *g_current;
  std::fprintf(stderr, "replay: the failing input is in %s\n", g_crash_file.c_str());
}

void Run(const std::string& input, const std::string& label) {
  g_current = &input;
  g_crash_file = "crash-" + label;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  g_current = nullptr;
}

// Tokens that move parsers into their corners: nesting, escapes, separators, numbers at the
// edges of their types, headers and dates.
const char* const kTokens[] = {
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "%",
    "%2",
    "%00",
    "&",
    "=",
    "[]",
    "[0]",
    "a[b][c]=",
    ":",
    "\n",
    "\r\n",
    "\n\n",
    "\n%%\n",
    "-",
    "0",
    "-1",
    "1e309",
    "9223372036854775808",
    "18446744073709551616",
    "null",
    "true",
    "\"\":",
    "{\"a\":",
    "[[[[[[[[",
    "]]]]]]]]",
    "\xff",
    "\xc3\xa9",
    "\xed\xa0\x80",
    "Z",
    "+00:00",
    "T",
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
    "sha256=",
    "v1,",
    "Bearer ",
    "Basic ",
    "!!",
    "&a",
    "*a",
    "- ",
    "? ",
    "<<: ",
    "|\n",
    ">\n",
    "---\n",
    "%YAML 1.2\n",
};

class Mutator {
 public:
  Mutator(uint64_t seed, size_t max_len) : rng_(seed), max_len_(max_len) {}

  std::string Mutate(const std::vector<std::string>& seeds) {
    std::string s = seeds[Below(seeds.size())];
    const size_t rounds = 1 + Below(6);
    for (size_t r = 0; r < rounds; ++r) Step(s, seeds);
    if (s.size() > max_len_) s.resize(max_len_);
    return s;
  }

 private:
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng_() % n); }

  void Step(std::string& s, const std::vector<std::string>& seeds) {
    const size_t pos = Below(s.size() + 1);
    switch (Below(9)) {
      case 0:  // flip a bit
        if (!s.empty()) s[Below(s.size())] ^= static_cast<char>(1u << Below(8));
        break;
      case 1:  // random byte
        s.insert(pos, 1, static_cast<char>(Below(256)));
        break;
      case 2:  // delete a range
        if (!s.empty()) s.erase(Below(s.size()), 1 + Below(16));
        break;
      case 3:  // duplicate a range
        if (!s.empty()) {
          size_t from = Below(s.size());
          std::string piece = s.substr(from, 1 + Below(32));
          s.insert(pos, piece);
        }
        break;
      case 4:  // a token
        s.insert(pos, kTokens[Below(std::size(kTokens))]);
        break;
      case 5: {  // a long run of one token: nesting and length limits
        std::string token = kTokens[Below(std::size(kTokens))];
        std::string run;
        const size_t n = 1 + Below(4096);
        while (run.size() < n * token.size() && run.size() < max_len_) run += token;
        s.insert(pos, run);
        break;
      }
      case 6: {  // splice with another seed
        const std::string& other = seeds[Below(seeds.size())];
        s = s.substr(0, pos) + other.substr(Below(other.size() + 1));
        break;
      }
      case 7:  // truncate
        s.resize(pos);
        break;
      default:  // overwrite a byte with an ASCII digit or letter
        if (!s.empty()) s[Below(s.size())] = "0123456789az{}[]\":,"[Below(19)];
        break;
    }
  }

  std::mt19937_64 rng_;
  size_t max_len_;
};

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  long generate = 0;
  uint64_t seed = 1;
  size_t max_len = 1 << 16;
  std::vector<std::filesystem::path> paths;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--generate" && i + 1 < argc) {
      generate = std::strtol(argv[++i], nullptr, 10);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--max-len" && i + 1 < argc) {
      max_len = std::strtoull(argv[++i], nullptr, 10);
    } else {
      paths.emplace_back(a);
    }
  }
  std::string target = std::filesystem::path(argv[0]).filename().string();
  scimsync::fuzz::g_on_failure = SaveCurrent;
#ifdef SCIMSYNC_HAVE_DEATH_CALLBACK
  __sanitizer_set_death_callback(SaveCurrent);
#endif

  std::vector<std::string> seeds;
  for (const auto& p : paths) {
    if (std::filesystem::is_directory(p)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::directory_iterator(p)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) seeds.push_back(Slurp(f));
    } else if (std::filesystem::is_regular_file(p)) {
      seeds.push_back(Slurp(p));
    } else {
      std::fprintf(stderr, "replay: %s is neither a file nor a directory\n", p.c_str());
      return 2;
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "replay: no seed inputs: give a corpus directory\n");
    return 2;
  }
  for (size_t i = 0; i < seeds.size(); ++i) Run(seeds[i], target + "-seed-" + std::to_string(i));
  Mutator mutator(seed, max_len);
  for (long i = 0; i < generate; ++i) {
    std::string input = mutator.Mutate(seeds);
    Run(input, target + "-" + std::to_string(seed) + "-" + std::to_string(i));
  }
  std::printf("%s: %zu seeds and %ld generated inputs ran cleanly\n", target.c_str(), seeds.size(),
              generate);
  return 0;
}
