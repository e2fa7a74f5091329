// Replays every file of the seed corpus through the fuzz entry point, so the
// corpus is an ordinary test in every build (gcc included), not only under
// libFuzzer.
//
// File names state what a file must give (make_corpus.cc writes them):
//   ok_*         parses and is accepted;
//   invalid_*    parses and gets INVALID_ARGUMENT;
//   exhausted_*  parses and gets RESOURCE_EXHAUSTED;
//   garbage_*    anything, as long as no property breaks.
// Usage: normserve_fuzz_corpus_replay DIR [DIR...]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "fuzz_entry.h"

namespace {

std::string Expectation(const normserve::fuzz::FuzzVerdict& v, const std::string& name) {
  if (!v.violation.empty()) return v.violation;
  if (absl::StartsWith(name, "garbage_")) return "";
  if (!v.parsed) return "does not parse as a NormalizeRequest";
  if (absl::StartsWith(name, "ok_")) return v.status.ok() ? "" : "rejected: " + v.status.ToString();
  if (absl::StartsWith(name, "invalid_")) {
    return v.status.code() == absl::StatusCode::kInvalidArgument
               ? ""
               : "want INVALID_ARGUMENT, got " + v.status.ToString();
  }
  if (absl::StartsWith(name, "exhausted_")) {
    return v.status.code() == absl::StatusCode::kResourceExhausted
               ? ""
               : "want RESOURCE_EXHAUSTED, got " + v.status.ToString();
  }
  return "file name has no known prefix (ok_, invalid_, exhausted_, garbage_)";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [CORPUS_DIR...]\n", argv[0]);
    return 2;
  }
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(argv[i], error)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    if (error) {
      std::fprintf(stderr, "cannot list %s: %s\n", argv[i], error.message().c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());

  int failures = 0;
  int accepted = 0;
  int rejected = 0;
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const normserve::fuzz::FuzzVerdict verdict =
        normserve::fuzz::CheckRequestBytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    const std::string name = path.filename().string();
    const std::string problem = Expectation(verdict, name);
    if (!problem.empty()) {
      ++failures;
      std::fprintf(stderr, "FAIL %s: %s\n", name.c_str(), problem.c_str());
      continue;
    }
    if (verdict.parsed && verdict.status.ok()) ++accepted;
    if (verdict.parsed && !verdict.status.ok()) ++rejected;
  }
  std::printf("%zu files: %d accepted, %d rejected, %d failed\n", files.size(), accepted, rejected, failures);
  // An empty or one-sided corpus would make this test pass vacuously.
  if (accepted == 0 || rejected == 0) {
    std::fprintf(stderr, "FAIL: the corpus needs accepted and rejected requests\n");
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
