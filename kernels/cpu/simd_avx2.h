// Eight-lane float vector over AVX2 + FMA + F16C for norm_kernels_impl.h.
// Include only from translation units compiled with -mavx2 -mfma -mf16c.
//
// FLOAT16 converts with F16C (round to nearest even, NaN kept), BFLOAT16 by
// integer operations that match FloatToBFloat16Bits bit for bit for every
// value an arithmetic operation can give (BFloat16Bits). Partial vectors
// (row tails) go through a small stack buffer.
#ifndef NORMSERVE_KERNELS_CPU_SIMD_AVX2_H_
#define NORMSERVE_KERNELS_CPU_SIMD_AVX2_H_

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "normserve/kernels/types.h"

namespace normserve::kernels::cpu {

struct Avx2Simd {
  using F = __m256;
  static constexpr int kWidth = 8;

  static F Zero() { return _mm256_setzero_ps(); }
  static F Set1(float v) { return _mm256_set1_ps(v); }
  static F Add(F a, F b) { return _mm256_add_ps(a, b); }
  static F Sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F Mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F MulAdd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F MulSub(F a, F b, F c) { return _mm256_fmsub_ps(a, b, c); }
  // Fixed pairwise order, so a given vector always reduces to the same bits.
  static float ReduceAdd(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static F KeepFirst(F v, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    return _mm256_and_ps(v, _mm256_castsi256_ps(keep));
  }

  // Double precision halves of a vector, for outputs that need them.
  using D = __m256d;
  static constexpr bool kHasHighHalf = true;
  static D DSet1(double v) { return _mm256_set1_pd(v); }
  static void Widen(F v, D* lo, D* hi) {
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  }
  static F Narrow(D lo, D hi) { return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo)); }
  static D DSub(D a, D b) { return _mm256_sub_pd(a, b); }
  static D DMul(D a, D b) { return _mm256_mul_pd(a, b); }
  static void DStore(double* p, D v) { _mm256_storeu_pd(p, v); }
  static D DAdd(D a, D b) { return _mm256_add_pd(a, b); }
  static D DMulAdd(D a, D b, D c) { return _mm256_fmadd_pd(a, b, c); }
  static double DReduceAdd(D v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  // No store here tests for denormals; kNoDenormals (Avx512SimdT::Store) changes nothing.
  static constexpr bool kBf16StoreTestsDenormals = false;
  static constexpr bool kRangeGap = false;  // Avx512SimdT::RangeGapFold
  // Cancellation test (see Avx512SimdT::GapMax).
  using G = __m256i;
  static G GapInit() { return _mm256_set1_epi32(-0x7fffffff); }
  static G GapMax(G gap, F result, F shift) {
    const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
    const __m256i r = _mm256_and_si256(_mm256_castps_si256(result), magnitude);
    const __m256i s = _mm256_and_si256(_mm256_castps_si256(shift), magnitude);
    return _mm256_max_epi32(gap, _mm256_sub_epi32(s, r));
  }
  static bool GapAbove(G gap, int log2) {
    const __m256i above = _mm256_cmpgt_epi32(gap, _mm256_set1_epi32(log2 << 23));
    return _mm256_movemask_epi8(above) != 0;
  }
  static F SelectGapAbove(F above, F below, F result, F shift, int log2) {
    const __m256i gap = GapMax(GapInit(), result, shift);
    const __m256i mask = _mm256_cmpgt_epi32(gap, _mm256_set1_epi32(log2 << 23));
    return _mm256_blendv_ps(below, above, _mm256_castsi256_ps(mask));
  }
  static F SelectFirst(F v, F fallback, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    return _mm256_blendv_ps(fallback, v, _mm256_castsi256_ps(keep));
  }

  // The BFLOAT16 bits of each lane (round to nearest even) in the low half
  // of its 32 bits, as FloatToBFloat16Bits gives them for every value but a
  // signalling NaN. NaN lanes take no rounding increment, so a quiet NaN
  // (every arithmetic result, and the passes store nothing else) keeps
  // its high bits, which is FloatToBFloat16Bits' (x >> 16) | 0x40; a
  // signalling one would come out without the quiet bit (as infinity if its
  // payload lies in the low 16 bits). Masking the increment instead of
  // blending a quietened NaN in saves an operation, and two vectors share one
  // pack and permute (FloatToBFloat16x16): on Zen 3 (AVX2 only) the
  // conversion was most of a BFLOAT16 output pass.
  static __m256i BFloat16Bits(F v) {
    const __m256i x = _mm256_castps_si256(v);
    const __m256i abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    const __m256i is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    const __m256i inc = _mm256_andnot_si256(is_nan, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff)));
    return _mm256_srli_epi32(_mm256_add_epi32(x, inc), 16);
  }
  // Every lane is <= 0xffff, so the unsigned-saturating packs are exact.
  static __m128i FloatToBFloat16x8(F v) {
    const __m256i bits = BFloat16Bits(v);
    return _mm_packus_epi32(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
  }
  // Two vectors (16 elements, a's first) with one pack and one permute.
  static __m256i FloatToBFloat16x16(F a, F b) {
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(BFloat16Bits(a), BFloat16Bits(b)), 0xd8);
  }

  template <DType D>
  static F Load(const void* p, int64_t i) {
    if constexpr (D == DType::kFloat32) {
      return _mm256_loadu_ps(static_cast<const float*>(p) + i);
    } else {
      const __m128i h =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
      if constexpr (D == DType::kFloat16) {
        return _mm256_cvtph_ps(h);
      } else {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
      }
    }
  }
  template <DType D>
  static F LoadPartial(const void* p, int64_t i, int n) {
    alignas(32) uint8_t buf[32] = {};
    std::memcpy(buf, static_cast<const uint8_t*>(p) + i * DTypeSize(D),
                static_cast<size_t>(n) * DTypeSize(D));
    return Load<D>(buf, 0);
  }
  template <DType D, bool = false>
  static void Store(void* p, int64_t i, F v) {
    if constexpr (D == DType::kFloat32) {
      _mm256_storeu_ps(static_cast<float*>(p) + i, v);
    } else {
      __m128i h;
      if constexpr (D == DType::kFloat16) {
        h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      } else {
        h = FloatToBFloat16x8(v);
      }
      _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(p) + i), h);
    }
  }
  // Non-temporal store. REQUIRES: the address is aligned to the vector's bytes.
  template <DType D, bool = false>
  static void StoreStream(void* p, int64_t i, F v) {
    if constexpr (D == DType::kFloat32) {
      _mm256_stream_ps(static_cast<float*>(p) + i, v);
    } else {
      const __m128i h = D == DType::kFloat16
                            ? _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
                            : FloatToBFloat16x8(v);
      _mm_stream_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(p) + i), h);
    }
  }
  // BFLOAT16 output loops store two vectors at a time (StoreLoop), which
  // shares the pack and permute of FloatToBFloat16x16 between them.
  static constexpr bool kPairBf16Stores = true;
  static constexpr bool kPairBf16StoresWithoutDenormals = true;
  // No next-run prefetch (Kernels::PrefetchNextRun): this tier is built
  // without PREFETCHW (Haswell lacks it), and an ordinary prefetch there
  // made streamed FLOAT32 RMSNorm slower (forced on Zen 5, 65536x1024, 2
  // threads, 136-157 -> 157-184 ns a row).
  static constexpr bool kPrefetchNextRun = false;
  // Reductions load BFLOAT16 pairs with one load and two in-lane unpacks,
  // as Avx512Simd does: a holds elements 0-3 and 8-11, b the others. The
  // AVX2 path forced on Zen 5 (NORMSERVE_CPU_ISA=avx2), one thread, two
  // 4096-element BFLOAT16 rows in L1, 3 alternating rounds: LayerNorm
  // 1558-1593 -> 1448-1558 ns a row, RMSNorm 962-1062 -> 917-977.
  static constexpr bool kUnpackedBf16Pairs = true;
  static void LoadBf16Unpacked(const void* p, int64_t i, F* a, F* b) {
    const __m256i raw =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
    *a = _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), raw));
    *b = _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), raw));
  }
  static void StoreBf16Pair(void* p, int64_t i, F a, F b) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(p) + i), FloatToBFloat16x16(a, b));
  }
  // REQUIRES: the address is aligned to 32 bytes.
  static void StreamBf16Pair(void* p, int64_t i, F a, F b) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(p) + i), FloatToBFloat16x16(a, b));
  }
  template <DType D>
  static void StorePartial(void* p, int64_t i, F v, int n) {
    alignas(32) uint8_t buf[32];
    Store<D>(buf, 0, v);
    std::memcpy(static_cast<uint8_t*>(p) + i * DTypeSize(D), buf, static_cast<size_t>(n) * DTypeSize(D));
  }
};

}  // namespace normserve::kernels::cpu

#endif  // NORMSERVE_KERNELS_CPU_SIMD_AVX2_H_
