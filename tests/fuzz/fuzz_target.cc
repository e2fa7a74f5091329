// libFuzzer target over CheckRequestBytes (see fuzz_entry.h). A violated
// property prints what broke and aborts, which libFuzzer records as a crash.
#include <cstdio>
#include <cstdlib>

#include "fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const normserve::fuzz::FuzzVerdict verdict = normserve::fuzz::CheckRequestBytes(data, size);
  if (!verdict.violation.empty()) {
    std::fprintf(stderr, "normserve fuzz: %s (status: %s)\n", verdict.violation.c_str(),
                 verdict.status.ToString().c_str());
    std::abort();
  }
  return 0;
}
