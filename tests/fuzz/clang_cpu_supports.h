// Force-included (-include) into clang builds of the fuzzer only. clang 14
// (Debian bookworm) rejects __builtin_cpu_supports("f16c"), which
// kernels/cpu/cpu_backend.cc uses; gcc accepts it. This routes the builtin
// through a function that answers "f16c" from CPUID and forwards every other
// feature the kernels ask about to the real builtin. Remove once the kernels
// build with clang 14 (docs/hardening.md, finding 4).
#ifndef NORMSERVE_TESTS_FUZZ_CLANG_CPU_SUPPORTS_H_
#define NORMSERVE_TESTS_FUZZ_CLANG_CPU_SUPPORTS_H_

#if defined(__clang__) && defined(__x86_64__)
#include <cpuid.h>

#include <cstring>

inline int NormserveFuzzCpuSupports(const char* feature) {
  if (std::strcmp(feature, "f16c") == 0) {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  }
  if (std::strcmp(feature, "avx2") == 0) return __builtin_cpu_supports("avx2");
  if (std::strcmp(feature, "fma") == 0) return __builtin_cpu_supports("fma");
  if (std::strcmp(feature, "avx512f") == 0) return __builtin_cpu_supports("avx512f");
  if (std::strcmp(feature, "avx512bw") == 0) return __builtin_cpu_supports("avx512bw");
  if (std::strcmp(feature, "avx512vl") == 0) return __builtin_cpu_supports("avx512vl");
  if (std::strcmp(feature, "avx512dq") == 0) return __builtin_cpu_supports("avx512dq");
  if (std::strcmp(feature, "avx512bf16") == 0) return __builtin_cpu_supports("avx512bf16");
  return 0;  // Unknown to this shim: take the portable path.
}
#define __builtin_cpu_supports(feature) NormserveFuzzCpuSupports(feature)
#endif

#endif  // NORMSERVE_TESTS_FUZZ_CLANG_CPU_SUPPORTS_H_
