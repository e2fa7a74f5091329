// Small helpers of the plain-executable CUDA tests (no GoogleTest on the GPU
// machine): failure collection, the skip exit code, and backend creation.
#ifndef NORMSERVE_TESTS_KERNELS_CUDA_TEST_UTIL_H_
#define NORMSERVE_TESTS_KERNELS_CUDA_TEST_UTIL_H_

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "normserve/kernels/cuda_backend.h"

namespace normserve::kernels::cuda_test {

// CTest treats this exit code as "skipped" (SKIP_RETURN_CODE).
inline constexpr int kSkipExitCode = 77;

// Collects failures of one test executable; prints the first few of each check.
class Failures {
 public:
  // Records `messages` under `check`; returns whether there were none.
  bool Add(const std::string& check, const std::vector<std::string>& messages) {
    ++checks_;
    if (messages.empty()) return true;
    failed_ += messages.size();
    for (size_t i = 0; i < messages.size() && i < 5; ++i) {
      std::fprintf(stderr, "FAIL %s: %s\n", check.c_str(), messages[i].c_str());
    }
    if (messages.size() > 5) std::fprintf(stderr, "FAIL %s: %zu more\n", check.c_str(), messages.size() - 5);
    return false;
  }
  bool Expect(bool ok, const std::string& check, const std::string& what) {
    return Add(check, ok ? std::vector<std::string>{} : std::vector<std::string>{what});
  }
  // Process exit code: 0 when nothing failed.
  int Finish(const char* test) const {
    std::printf("%s: %zu checks, %zu failures\n", test, checks_, failed_);
    return failed_ == 0 ? 0 : 1;
  }

 private:
  size_t checks_ = 0;
  size_t failed_ = 0;
};

// The CUDA backend on device 0, or nullptr (with a message) when there is no
// GPU; tests then exit with kSkipExitCode.
inline std::unique_ptr<Backend> CudaBackendOrSkip(const char* test, const CudaBackendOptions& options = {}) {
  if (CudaDeviceCount() == 0) {
    std::printf("%s: skipped, no CUDA device (compiled in: %s)\n", test, CudaCompiledIn() ? "yes" : "no");
    return nullptr;
  }
  std::unique_ptr<Backend> backend;
  const KernelStatus s = CreateCudaBackend(options, &backend);
  if (!s.ok()) {
    std::fprintf(stderr, "%s: CreateCudaBackend failed: %s\n", test, s.message().c_str());
    std::exit(1);
  }
  std::printf("%s: %s\n", test, backend->device_description().c_str());
  return backend;
}

}  // namespace normserve::kernels::cuda_test

#endif  // NORMSERVE_TESTS_KERNELS_CUDA_TEST_UTIL_H_
