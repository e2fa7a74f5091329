// Sixteen-lane float vector over AVX-512 (F, BW, VL) for norm_kernels_impl.h.
// Include only from translation units compiled with the AVX-512 flags.
//
// FLOAT16 converts with vcvtph2ps / vcvtps2ph (round to nearest even, NaN
// kept). BFLOAT16 rounds by integer operations (nine instructions per
// vector) or, in Avx512Bf16Simd (CPUs with AVX512_BF16, translation units
// built for it), with one vcvtneps2bf16. That instruction treats denormal
// inputs as zero, so vectors holding a denormal still take the integer path
// (Store tests each vector, unless kNoDenormals: the output passes test a
// block at a time); for every other input, NaN payloads included, the two
// agree bit for bit with FloatToBFloat16Bits (tested). Partial vectors use
// masked loads and stores, which never touch memory beyond the row.
#ifndef NORMSERVE_KERNELS_CPU_SIMD_AVX512_H_
#define NORMSERVE_KERNELS_CPU_SIMD_AVX512_H_

#include <immintrin.h>

#include <cstdint>
#include <limits>

#include "normserve/kernels/types.h"

namespace normserve::kernels::cpu {

template <bool kNativeBf16>
struct Avx512SimdT {
  using F = __m512;
  static constexpr int kWidth = 16;

  static F Zero() { return _mm512_setzero_ps(); }
  static F Set1(float v) { return _mm512_set1_ps(v); }
  static F Add(F a, F b) { return _mm512_add_ps(a, b); }
  static F Sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F Mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F MulAdd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F MulSub(F a, F b, F c) { return _mm512_fmsub_ps(a, b, c); }
  // Fixed pairwise order (halves, then quarters, ...).
  static float ReduceAdd(F v) {
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Double precision halves of a vector, for outputs that need them.
  using D = __m512d;
  static constexpr bool kHasHighHalf = true;
  static D DSet1(double v) { return _mm512_set1_pd(v); }
  static void Widen(F v, D* lo, D* hi) {
    *lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    *hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  }
  static F Narrow(D lo, D hi) {
    const __m256 l = _mm512_cvtpd_ps(lo), h = _mm512_cvtpd_ps(hi);
    return _mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(l)), _mm256_castps_pd(h), 1));
  }
  static D DSub(D a, D b) { return _mm512_sub_pd(a, b); }
  static D DMul(D a, D b) { return _mm512_mul_pd(a, b); }
  static void DStore(double* p, D v) { _mm512_storeu_pd(p, v); }
  static D DAdd(D a, D b) { return _mm512_add_pd(a, b); }
  static D DMulAdd(D a, D b, D c) { return _mm512_fmadd_pd(a, b, c); }
  static double DReduceAdd(D v) {
    const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }

  static __mmask16 FirstLanes(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static F KeepFirst(F v, int n) { return _mm512_maskz_mov_ps(FirstLanes(n), v); }
  // Cancellation test (see Kernels::NormalizeRow): the largest, over the
  // lanes seen, of bits(|shift|) - bits(|result|). The bits of non-negative
  // floats order like their values, and k << 23 more is 2^k times larger
  // (normal floats), so GapAbove(gap, k) says whether some lane had
  // |shift| > 2^k |result|. Integer operations only, no branch per vector.
  using G = __m512i;
  static G GapInit() { return _mm512_set1_epi32(-0x7fffffff); }
  static __m512i MagnitudeBits(F v) {
    return _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff));
  }
  static G GapMax(G gap, F result, F shift) {
    return _mm512_max_epi32(gap, _mm512_sub_epi32(MagnitudeBits(shift), MagnitudeBits(result)));
  }
  // GapMax that also counts a result below the smallest normal float (zero
  // included) as above 2^log2: a block whose gap stays at or below it holds
  // no denormal result, so its full vectors may store with kNoDenormals.
  static G GapMaxOrSubnormal(G gap, F result, F shift, int log2) {
    const __m512i s = _mm512_max_epi32(MagnitudeBits(shift), _mm512_set1_epi32(0x00800000 + (log2 << 23)));
    return _mm512_max_epi32(gap, _mm512_sub_epi32(s, MagnitudeBits(result)));
  }
  // The block test of the AVX512_BF16 tier (kRangeGap) for BFLOAT16
  // outputs: per lane, the smallest |result| and the largest |shift| of the
  // block's full vectors, three operations a vector where GapMaxOrSubnormal
  // takes five. GapMaxRange(gap, g, log2) folds into `gap` a gap that
  // GapAbove(., log2) finds above wherever the lane's largest |shift| is
  // above 2^log2 times its smallest |result|, or that smallest result is
  // below the smallest normal float. It bounds each element's own gap (GapMaxOrSubnormal's) from
  // above, so a block it passes has no element that cancels or is denormal;
  // a block it fails is written again element by element, as before. It
  // fails more blocks than the element test (a lane's largest |shift| and
  // smallest |result| need not be one element's): on run_driver's data
  // (|beta| ~ 0.1, results ~ N(0, 1)), 0.7% of blocks against 0.4%
  // (bench/probes/cancel_blocks.py). FLOAT16 outputs keep GapMax: with
  // their 2^9 (kCancelLog2) the share goes from 3.8% to 8.7%, and the
  // driver saw no gain (in cache, 4096 columns, 682 against 698 ns a row).
  // - The smallest |result| is a vrangeps (imm8 0b1010: the smaller
  //   magnitude, sign cleared), which returns the other operand where one is
  //   a quiet NaN: a NaN result counts for nothing, as in GapMax (where its
  //   gap is negative). Results are never signaling NaNs.
  // - The largest |shift| is an integer max of magnitude bits, not a
  //   vrangeps: a signaling NaN shift (a caller's beta) would make that a
  //   quiet NaN, which the next vrangeps would drop together with the largest
  //   magnitude so far. As bits, a NaN is above every number, so it can
  //   only make its lane's test stricter (it fails for any |result| below
  //   about 2^116).
  static constexpr bool kRangeGap = kNativeBf16;
  // Two sets, taking turns (the swap costs nothing where the caller folds
  // two vectors an iteration), so two vectors do not wait on one chain.
  struct RangeGap {
    F min_result, other_min_result;
    __m512i max_shift, other_max_shift;
  };
  static RangeGap RangeGapInit() {
    const F inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
    return {inf, inf, _mm512_setzero_si512(), _mm512_setzero_si512()};
  }
  static void RangeGapFold(RangeGap& g, F result, F shift) {
    const F min_result = _mm512_range_ps(g.min_result, result, 0x0A);
    const __m512i max_shift = _mm512_max_epi32(g.max_shift, MagnitudeBits(shift));
    g.min_result = g.other_min_result, g.max_shift = g.other_max_shift;
    g.other_min_result = min_result, g.other_max_shift = max_shift;
  }
  static G GapMaxRange(G gap, const RangeGap& g, int log2) {
    const F min_result = _mm512_range_ps(g.min_result, g.other_min_result, 0x0A);
    const __m512i s = _mm512_max_epi32(_mm512_max_epi32(g.max_shift, g.other_max_shift),
                                       _mm512_set1_epi32(0x00800000 + (log2 << 23)));
    return _mm512_max_epi32(gap, _mm512_sub_epi32(s, _mm512_castps_si512(min_result)));
  }
  // Lanes seen to hold a denormal (Store's kNoDenormals, checked a block at a time).
  using Mask = __mmask16;
  static Mask NoLanes() { return 0; }
  // fpclass 0x20: denormal. Or'ed in a mask register (korw): written as
  // `m | mask`, GCC moved each mask to a general register (kmovw, or) in
  // the output loops. run_driver, BFLOAT16 RMSNorm, one thread, in cache,
  // 6-8 alternating runs, median of the runs' best ns a row: 128 columns
  // 18.1 -> 16.9, 512 columns 53.9 -> 51.9; 4096 columns level.
  static Mask OrDenormalLanes(Mask m, F v) { return _kor_mask16(m, _mm512_fpclass_ps_mask(v, 0x20)); }
  static bool AnyLane(Mask m) { return m != 0; }
  // A compare into a mask, not a reduction: the test ends every 256-element
  // block of the output pass, where a reduction's latency chain stalled it.
  static bool GapAbove(G gap, int log2) {
    return _mm512_cmpgt_epi32_mask(gap, _mm512_set1_epi32(log2 << 23)) != 0;
  }
  // Per lane: `above` where |shift| > 2^log2 |result| (the test of GapMax /
  // GapAbove), `below` elsewhere.
  static F SelectGapAbove(F above, F below, F result, F shift, int log2) {
    const __m512i gap = GapMax(GapInit(), result, shift);
    return _mm512_mask_mov_ps(below, _mm512_cmpgt_epi32_mask(gap, _mm512_set1_epi32(log2 << 23)), above);
  }
  static F SelectFirst(F v, F fallback, int n) { return _mm512_mask_mov_ps(fallback, FirstLanes(n), v); }

  static __m256i FloatToBFloat16x16(F v) {
    const __m512i x = _mm512_castps_si512(v);
    const __m512i abs = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f800000));
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i bits =
        _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), odd), 16);
    bits = _mm512_mask_or_epi32(bits, is_nan, _mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(bits);
  }
  static F Widen(__m256i h, DType d) {
    if (d == DType::kFloat16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }

  template <DType D>
  static F Load(const void* p, int64_t i) {
    if constexpr (D == DType::kFloat32) {
      return _mm512_loadu_ps(static_cast<const float*>(p) + i);
    } else {
      return Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)),
                   D);
    }
  }
  template <DType D>
  static F LoadPartial(const void* p, int64_t i, int n) {
    if constexpr (D == DType::kFloat32) {
      return _mm512_maskz_loadu_ps(FirstLanes(n), static_cast<const float*>(p) + i);
    } else {
      return Widen(_mm256_maskz_loadu_epi16(FirstLanes(n), static_cast<const uint16_t*>(p) + i), D);
    }
  }
  // Two vectors of BFLOAT16 values, p[i, i + 32), from one load and two
  // in-lane unpacks (a zero word below each value is its float): a holds
  // elements 0-3, 8-11, 16-19 and 24-27, b the others. Not in order, so only
  // for passes that add the elements up (kUnpackedBf16Pairs); one unpack
  // per vector instead of a widening load and a shift. Zen 5, run_driver 16
  // 4096 1 2 (BFLOAT16 LayerNorm, one thread, in cache), 3 alternating
  // rounds: 642-666 -> 573-591 ns a row.
  static constexpr bool kUnpackedBf16Pairs = true;
  static void LoadBf16Unpacked(const void* p, int64_t i, F* a, F* b) {
    const __m512i raw = _mm512_loadu_si512(static_cast<const uint16_t*>(p) + i);
    *a = _mm512_castsi512_ps(_mm512_unpacklo_epi16(_mm512_setzero_si512(), raw));
    *b = _mm512_castsi512_ps(_mm512_unpackhi_epi16(_mm512_setzero_si512(), raw));
  }
  // kNoDenormals: the caller knows v holds no denormal, so BFLOAT16 skips
  // the per-vector test (kBf16StoreTestsDenormals).
  static constexpr bool kBf16StoreTestsDenormals = kNativeBf16;
  // BFLOAT16 output loops whose vectors hold no denormal (kNoDenormals) store
  // two at a time where vcvtne2ps2bf16 exists: one conversion and one
  // 64-byte store for both (it flushes denormals, as vcvtneps2bf16 does).
  // Zen 5, run_driver 16 4096 1 2, 3 alternating rounds: 573-591 -> 554-562
  // ns a row. Others store one vector at a time (see Avx2Simd).
  static constexpr bool kPairBf16Stores = false;
  static constexpr bool kPairBf16StoresWithoutDenormals = kNativeBf16;
  // Streamed runs prefetch the next run with PREFETCHW (Kernels::PrefetchNextRun).
  static constexpr bool kPrefetchNextRun = true;
  // a then b, rounded. REQUIRES: kNativeBf16 (only that tier pairs), and no
  // lane of a or b is a denormal.
  static __m512i FloatToBFloat16x32(F a, F b) {
    static_assert(kNativeBf16, "vcvtne2ps2bf16 is AVX512_BF16");
    return (__m512i)_mm512_cvtne2ps_pbh(b, a);
  }
  // REQUIRES: as FloatToBFloat16x32.
  static void StoreBf16Pair(void* p, int64_t i, F a, F b) {
    _mm512_storeu_si512(static_cast<uint16_t*>(p) + i, FloatToBFloat16x32(a, b));
  }
  // REQUIRES: as FloatToBFloat16x32, and the address aligned to 64 bytes.
  static void StreamBf16Pair(void* p, int64_t i, F a, F b) {
    _mm512_stream_si512(reinterpret_cast<__m512i*>(static_cast<uint16_t*>(p) + i), FloatToBFloat16x32(a, b));
  }
  template <DType D, bool kNoDenormals = false>
  static __m256i Narrow(F v) {
    if constexpr (D == DType::kFloat16) {
      return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
      if constexpr (kNativeBf16) {
        if constexpr (kNoDenormals) return (__m256i)_mm512_cvtneps_pbh(v);
        // fpclass 0x20: denormal.
        if (__builtin_expect(_mm512_fpclass_ps_mask(v, 0x20) == 0, 1)) return (__m256i)_mm512_cvtneps_pbh(v);
      }
      return FloatToBFloat16x16(v);
    }
  }
  // kNoDenormals: see Narrow. REQUIRES (with it): no lane of v is a denormal.
  template <DType D, bool kNoDenormals = false>
  static void Store(void* p, int64_t i, F v) {
    if constexpr (D == DType::kFloat32) {
      _mm512_storeu_ps(static_cast<float*>(p) + i, v);
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(p) + i),
                          Narrow<D, kNoDenormals>(v));
    }
  }
  // Non-temporal store. REQUIRES: the address is aligned to the vector's bytes.
  template <DType D, bool kNoDenormals = false>
  static void StoreStream(void* p, int64_t i, F v) {
    if constexpr (D == DType::kFloat32) {
      _mm512_stream_ps(static_cast<float*>(p) + i, v);
    } else {
      _mm256_stream_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(p) + i),
                          Narrow<D, kNoDenormals>(v));
    }
  }
  template <DType D>
  static void StorePartial(void* p, int64_t i, F v, int n) {
    if constexpr (D == DType::kFloat32) {
      _mm512_mask_storeu_ps(static_cast<float*>(p) + i, FirstLanes(n), v);
    } else {
      _mm256_mask_storeu_epi16(static_cast<uint16_t*>(p) + i, FirstLanes(n), Narrow<D>(v));
    }
  }
};

using Avx512Simd = Avx512SimdT<false>;
using Avx512Bf16Simd = Avx512SimdT<true>;

}  // namespace normserve::kernels::cpu

#endif  // NORMSERVE_KERNELS_CPU_SIMD_AVX512_H_
