// Scalar "vector" of one float for the generic kernels in norm_kernels_impl.h.
// Portable C++; used where the CPU has no AVX2 or NORMSERVE_CPU_ISA=scalar.
#ifndef NORMSERVE_KERNELS_CPU_SIMD_SCALAR_H_
#define NORMSERVE_KERNELS_CPU_SIMD_SCALAR_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "normserve/kernels/types.h"

namespace normserve::kernels::cpu {

struct ScalarSimd {
  using F = float;
  static constexpr int kWidth = 1;

  static F Zero() { return 0.0f; }
  static F Set1(float v) { return v; }
  static F Add(F a, F b) { return a + b; }
  static F Sub(F a, F b) { return a - b; }
  static F Mul(F a, F b) { return a * b; }
  // a * b + c, rounded twice: the scalar build has no guaranteed FMA.
  static F MulAdd(F a, F b, F c) { return a * b + c; }
  // a * b - c.
  static F MulSub(F a, F b, F c) { return a * b - c; }
  static float ReduceAdd(F v) { return v; }
  // Lanes at and beyond n become zero; with one lane n is always 1 here.
  static F KeepFirst(F v, int n) { return n > 0 ? v : 0.0f; }

  // Double precision halves of a vector (here: the one value and an unused zero).
  using D = double;
  static constexpr bool kHasHighHalf = false;
  static D DSet1(double v) { return v; }
  static void Widen(F v, D* lo, D* hi) {
    *lo = v;
    *hi = 0.0;
  }
  static F Narrow(D lo, D /*hi*/) { return static_cast<float>(lo); }
  static D DSub(D a, D b) { return a - b; }
  static D DMul(D a, D b) { return a * b; }
  static void DStore(double* p, D v) { *p = v; }
  static D DAdd(D a, D b) { return a + b; }
  static D DMulAdd(D a, D b, D c) { return a * b + c; }
  static double DReduceAdd(D v) { return v; }
  // No store here tests for denormals; kNoDenormals (Avx512SimdT::Store) changes nothing.
  static constexpr bool kBf16StoreTestsDenormals = false;
  static constexpr bool kRangeGap = false;  // Avx512SimdT::RangeGapFold
  // BFLOAT16 output loops store one vector at a time (see Avx2Simd).
  static constexpr bool kPairBf16Stores = false;
  static constexpr bool kPairBf16StoresWithoutDenormals = false;
  // No next-run prefetch (see Avx2Simd).
  static constexpr bool kPrefetchNextRun = false;
  // Reductions load BFLOAT16 in order (see Avx512Simd).
  static constexpr bool kUnpackedBf16Pairs = false;
  // Cancellation test (see Avx512SimdT::GapMax): here the largest
  // |shift| / |result| seen (infinite where result is 0 and shift is not).
  using G = float;
  static G GapInit() { return 0.0f; }
  static G GapMax(G gap, F result, F shift) {
    const float r = std::fabs(result), s = std::fabs(shift);
    if (s == 0.0f) return gap;
    return std::max(gap, r == 0.0f ? std::numeric_limits<float>::infinity() : s / r);
  }
  static bool GapAbove(G gap, int log2) { return gap > std::ldexp(1.0f, log2); }
  static F SelectGapAbove(F above, F below, F result, F shift, int log2) {
    return GapAbove(GapMax(GapInit(), result, shift), log2) ? above : below;
  }
  // Lanes below n from v, the rest from fallback.
  static F SelectFirst(F v, F fallback, int n) { return n > 0 ? v : fallback; }

  template <DType D>
  static F Load(const void* p, int64_t i) {
    return LoadAsFloat(p, D, i);
  }
  template <DType D>
  static F LoadPartial(const void* p, int64_t i, int n) {
    return n > 0 ? LoadAsFloat(p, D, i) : 0.0f;
  }
  template <DType D, bool = false>
  static void Store(void* p, int64_t i, F v) {
    StoreFromFloat(p, D, i, v);
  }
  template <DType D, bool = false>
  static void StoreStream(void* p, int64_t i, F v) {
    StoreFromFloat(p, D, i, v);
  }
  template <DType D>
  static void StorePartial(void* p, int64_t i, F v, int n) {
    if (n > 0) StoreFromFloat(p, D, i, v);
  }
};

}  // namespace normserve::kernels::cpu

#endif  // NORMSERVE_KERNELS_CPU_SIMD_SCALAR_H_
