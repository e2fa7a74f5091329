// The normalization kernels, written once over a SIMD traits type S
// (ScalarSimd, Avx2Simd, Avx512Simd) and compiled once per instruction set:
// kernels_scalar.cc, kernels_avx2.cc and kernels_avx512.cc each include this
// file after their traits header, with their own compiler flags.
//
// Everything here has internal linkage (anonymous namespace), so the three
// copies never merge at link time and an AVX-512 instantiation cannot end up
// behind the scalar table.
//
// Numerics (docs/SEMANTICS.md):
// - Statistics go chunk by chunk (kStatsChunk elements), in one pass over
//   the chunk (the one read from memory), and merge in order with Chan's
//   formula in double. FLOAT32: sum(x - pivot) and sum((x - pivot)^2) in
//   double vector accumulators, the pivot being the chunk's first value;
//   the shifted sums stay exact to far below the variance unless the pivot
//   is ~10^6 standard deviations off the mean. FLOAT16 / BFLOAT16:
//   sum(x) and sum(x^2), unshifted, in double (CenteredPass): exact or
//   nearly, for their short significands. RMS: sum(x^2) in float blocks
//   (SquaresPass).
//   No E[x^2]-E[x]^2 in float anywhere.
// - The output is ((x - pivot) * rstd - correction) * gamma + beta, where
//   pivot is the mean rounded to float and correction = (mean - pivot) * rstd
//   carries the part of the double mean that float cannot hold. This keeps
//   rows with a large offset (40000 + i) accurate to the FLOAT32 bound.
// - When beta cancels most of (x - mean) * rstd * gamma, 1 ulp of the tiny
//   FLOAT16 / BFLOAT16 result is beyond float arithmetic on the terms: such
//   elements are detected and recomputed in double (Cancels below). FLOAT32
//   outputs have an absolute bound near zero and never need it.
// - A group with NaN or Inf gets NaN statistics and outputs.
// - The reduction order depends only on the group length, never on the rows
//   around it or the thread that runs it.
#ifndef NORMSERVE_KERNELS_CPU_NORM_KERNELS_IMPL_H_
#define NORMSERVE_KERNELS_CPU_NORM_KERNELS_IMPL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernel_table.h"
#include "normserve/kernels/problem.h"
#include "normserve/kernels/types.h"

// The hot loops are written with small helpers and lambdas; GCC does not
// always inline them on its own, and a call per vector costs more than the
// vector's work.
#define NORMSERVE_INLINE __attribute__((always_inline)) inline
#define NORMSERVE_LAMBDA_INLINE __attribute__((always_inline))

namespace normserve::kernels::cpu {
namespace {

constexpr float kFloatNaN = std::numeric_limits<float>::quiet_NaN();

// Asks for the first bytes of the next unit while this one is computed: the
// statistics and output passes of a row leave the memory system idle, and
// one row ahead keeps it busy. The hardware prefetcher takes over within
// rows longer than this.
constexpr int64_t kPrefetchBytes = 16 << 10;

// LAYER/RMS rows prefetch instead while the output pass runs, one cache line
// per vector, this far ahead of the element being normalized (at least one
// row): the reads of the next row then overlap this row's arithmetic rather
// than arriving in one burst that stalls the core. Measured on the 2-core
// dev VM, out of cache, 2 threads, 4096 columns: float32 LayerNorm about
// 75 -> 60 ms, bfloat16 110 -> 93 ms for the whole problem (a burst of 16
// KiB at the start of each row, the previous scheme, against this).
constexpr int64_t kRowPrefetchMinBytes = 4 << 10;

// LayerNorm rows move (some of) that prefetch into the statistics pass
// (kSplitPrefetch), so the memory system also has requests while the
// (double) statistics run, which the output pass alone left idle: the
// statistics of a row ask for the row two groups on, at one cache line per
// loop iteration (kStatsPrefetchDivisor).
// - FLOAT32: an iteration reads two cache lines, so the statistics prefetch
//   the first half of the row ahead and the output pass the second half.
//   Bench A/B, out of cache, 2 threads, 4 alternating rounds (GB/s): 1024
//   columns 30.8-47.6 -> 36.8-48.2, 4096 31.9-34.3 -> 39.3-47.1, 16384
//   26.0-34.6 -> 39.9-44.7. A whole row from the statistics, one line per
//   iteration (every other line), was far slower (4096 columns 6.3-7.3 ->
//   8.0-8.8 ms).
// - FLOAT16 / BFLOAT16: an iteration reads one cache line, so the
//   statistics prefetch the whole row ahead and the output pass nothing
//   (its vectors are half a line: it had issued two prefetches per line).
//   Driver, 128 MiB of input, 2 threads, 3 alternating rounds, min (median)
//   ms: BFLOAT16 512 columns 9.6-9.9 -> 9.1-9.4, 1024 9.2-9.5 -> 8.8-9.0,
//   4096 9.5-9.7 (10.0-10.2) -> 8.9-9.1 (9.1-9.5), 16384 8.7-9.1 ->
//   8.6-8.9; FLOAT16 4096 10.3-11.1 -> 8.9-10.2. Half a row from each
//   pass, as FLOAT32 does, had gained nothing there.
// RMSNorm keeps the output-pass prefetch alone (FLOAT32 4096 columns lost
// with the split, 49.7-67.7 -> 41.4-50.8 GB/s: its statistics are short, so
// the requests come in a burst), as does the residual stream.
template <bool kRms>
inline constexpr bool kSplitPrefetch = !kRms;
template <DType D>
inline constexpr int64_t kStatsPrefetchDivisor = D == DType::kFloat32 ? 2 : 1;

// FLOAT32 LayerNorm rows ask for at most this far ahead: at 65536 columns
// two rows on is 512 KiB, and with the rows in between (the one normalized,
// the one whose statistics are done) it no longer fits the 1 MiB L2 of Zen 5.
// run_driver, 2 threads, 256 MiB in, 16 bytes past a line, 4 alternating
// runs, us a row: 65536 columns 11.8-12.7 -> 9.8-10.7 (64 KiB: 9.8-12.1,
// 32 KiB: 10.1-12.7); the benchmark, 7 alternating rounds, frac_of_copy
// 0.77-0.92 (median 0.85) -> 0.82-1.00 (0.88). Rows up to 16384 columns
// keep two rows ahead: 32 or 64 KiB there was within the noise of it. RMSNorm's
// and the half types' whole-row schemes lost with less (BFLOAT16 RMSNorm
// 65536 columns 5.1-6.0 -> 6.7-7.5 us a row), so they keep two rows.
constexpr int64_t kHalfRowPrefetchMaxBytes = 128 << 10;

// LAYER/RMS rows of at most this many input bytes go through the statistics
// kShortRowGroup at a time (Kernels::LayerRows).
constexpr int64_t kShortRowBytes = 2 << 10;
constexpr int64_t kShortRowGroup = 4;

NORMSERVE_INLINE void PrefetchSpan(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = 0; off < std::min(bytes, kPrefetchBytes); off += 64) __builtin_prefetch(c + off, 0, 2);
}

// Count, mean, sum of squared deviations and sum of a run of elements.
struct Moments {
  double count = 0;
  double mean = 0;
  double m2 = 0;
  double sum = 0;
};

// Chan et al.'s pairwise update of M2; `a` becomes the moments of a followed
// by b. The mean is the merged sum over the count, as the reference takes it,
// not Chan's a + (b - a) * nb / n: that one rounds, and an element equal to
// the mean, whose output is exactly 0, came out as about 1e-16 (BFLOAT16
// LayerNorm rows of 6151 and 12289 columns, GroupNorm groups over 4096
// elements, BatchNorm channels over several samples:
// CpuIsaTest.MergedMeanOfAGroupIsExact). FLOAT16 / BFLOAT16 sums are exact
// (unshifted, CenteredPass), so the merged mean is the reference's.
inline void MergeMoments(Moments& a, const Moments& b) {
  if (a.count == 0) {
    a = b;
    return;
  }
  const double n = a.count + b.count;
  const double delta = b.mean - a.mean;
  a.m2 += b.m2 + delta * delta * (a.count * b.count / n);
  a.sum += b.sum;
  a.mean = a.sum / n;
  a.count = n;
}

// What the output pass of one group needs: y = ((x - pivot) * rstd - correction) * g + b.
struct GroupTransform {
  float pivot = 0;
  float rstd = 0;
  float correction = 0;
  // The statistics outputs (double values rounded once to float).
  float mean_out = 0;
  float rstd_out = 0;
  float variance_out = 0;
  // Mean and rstd in double for the double-precision output pass.
  double mean_wide = 0;
  double rstd_wide = 0;
};

// 1 / sqrt(var + epsilon), var clamped at 0.
inline double RstdOf(double var, float epsilon) {
  return 1.0 / std::sqrt(std::max(0.0, var) + static_cast<double>(epsilon));
}

// With rstd = RstdOf(var, epsilon), computed by the caller (LayerRows does
// several rows' at once; IEEE division and square root give the same bits).
inline GroupTransform MakeTransformWithRstd(double mean, double var, double rstd, bool finite) {
  GroupTransform t;
  if (!finite) {
    t.pivot = t.rstd = t.correction = t.mean_out = t.rstd_out = t.variance_out = kFloatNaN;
    t.mean_wide = t.rstd_wide = std::numeric_limits<double>::quiet_NaN();
    return t;
  }
  var = std::max(0.0, var);
  t.pivot = static_cast<float>(mean);
  t.rstd = static_cast<float>(rstd);
  t.correction = static_cast<float>((mean - static_cast<double>(t.pivot)) * rstd);
  t.mean_out = static_cast<float>(mean);
  t.rstd_out = t.rstd;
  t.variance_out = static_cast<float>(var);
  t.mean_wide = mean;
  t.rstd_wide = rstd;
  return t;
}

inline GroupTransform MakeTransform(double mean, double var, bool finite, float epsilon) {
  return MakeTransformWithRstd(mean, var, finite ? RstdOf(var, epsilon) : 0.0, finite);
}

// gamma[i], plus 1 with unit_offset (exact in double).
inline double LoadParamScalar(const TensorView& t, int64_t i, bool unit_offset) {
  const double v = LoadAsFloat(t.data, t.dtype, i);
  return unit_offset ? 1.0 + v : v;
}

// Half-type outputs with beta take the double-precision output pass.
template <DType DOut>
inline constexpr bool kWideOutput = DOut != DType::kFloat32;

template <class S>
struct Kernels {
  using F = typename S::F;
  static constexpr int W = S::kWidth;

  // One element source: x, or h = round(x + r) written to h_out and read back.
  template <DType D, bool kResidual>
  NORMSERVE_INLINE static F LoadInput(const void* x, const void* r, void* h, int64_t i) {
    if constexpr (!kResidual) {
      return S::template Load<D>(x, i);
    } else {
      const F v = S::Add(S::template Load<D>(x, i), S::template Load<D>(r, i));
      S::template Store<D>(h, i, v);
      // Reading back gives the value rounded to D, which is what gets normalized.
      if constexpr (D == DType::kFloat32) return v;
      return S::template Load<D>(h, i);
    }
  }
  template <DType D, bool kResidual>
  NORMSERVE_INLINE static F LoadInputPartial(const void* x, const void* r, void* h, int64_t i, int n) {
    if constexpr (!kResidual) {
      return S::template LoadPartial<D>(x, i, n);
    } else {
      const F v = S::Add(S::template LoadPartial<D>(x, i, n), S::template LoadPartial<D>(r, i, n));
      S::template StorePartial<D>(h, i, v, n);
      if constexpr (D == DType::kFloat32) return v;
      return S::template LoadPartial<D>(h, i, n);
    }
  }

  // The vectors at i and i + W for a pass that only adds them up: in some
  // fixed order of their 2W elements (the traits' kUnpackedBf16Pairs: fewer
  // operations), else in order. The order depends on nothing but i, so a
  // row's sums stay the same bits wherever the row sits.
  // kUnpacked = false: in order always (SquaresBlock on AVX-512).
  template <DType D, bool kResidual, bool kUnpacked = true>
  NORMSERVE_INLINE static void LoadInputPair(const void* x, const void* r, void* h, int64_t i, F* a, F* b) {
    if constexpr (D == DType::kBFloat16 && !kResidual && kUnpacked && S::kUnpackedBf16Pairs) {
      S::LoadBf16Unpacked(x, i, a, b);
    } else {
      *a = LoadInput<D, kResidual>(x, r, h, i);
      *b = LoadInput<D, kResidual>(x, r, h, i + W);
    }
  }

  // The statistics passes' share of the row prefetch (kSplitPrefetch): at
  // element i of a pass, the bytes at pf + i * size / kStatsPrefetchDivisor,
  // so a pass over a row prefetches half a row (FLOAT32) or a whole one.
  // Only passes with kPrefetch call it, and they always get a pointer
  // (LayerRows' ahead_of).
  template <DType D>
  NORMSERVE_INLINE static void PrefetchStatsShare(const char* pf, int64_t i) {
    __builtin_prefetch(pf + i * static_cast<int64_t>(DTypeSize(D)) / kStatsPrefetchDivisor<D>, 0, 3);
  }
  // pf for the pass starting i elements on (nullptr stays nullptr: passes
  // without kPrefetch get none).
  template <DType D>
  static const char* AdvanceStatsShare(const char* pf, int64_t i) {
    return pf == nullptr ? nullptr : pf + i * static_cast<int64_t>(DTypeSize(D)) / kStatsPrefetchDivisor<D>;
  }

  // sum(x - pivot) and sum((x - pivot)^2) over x[i0, i0 + n) (or over h =
  // round(x + r), written to h), in double: x - pivot is exact there and the
  // sums keep the mean accurate far below the spread, which outputs near zero
  // in FLOAT16 / BFLOAT16 need. In double the pivot only has to be near the
  // data (shifted-data algorithm); the caller uses the chunk's first value.
  //
  // FLOAT16 / BFLOAT16 chunks (n <= kStatsChunk = 4096) are not shifted:
  // the pivot is 0 and sum(x), sum(x^2) are what is added (two double
  // operations a vector fewer; Zen 5, one thread in cache, 3 alternating
  // rounds: BFLOAT16 LayerNorm 512 columns 83-85 -> 78-80 ns a row, FLOAT16
  // 1024 columns 182-184 -> 164-166, BFLOAT16 128 columns 36.1-36.2 ->
  // 35.6-35.8; rows longer than 1024 took HalfChunkMoments, float squares
  // around the first vector's mean in blocks, which this matched: 16 rows of
  // 4096, BFLOAT16 582-599 -> 573-580 ns, FLOAT16 673-676 -> 655-661). sum(x)
  // is exact: FLOAT16 values are multiples of 2^-24 below 2^16, so a chunk's
  // sum (below 2^28) is; BFLOAT16 sums are while the chunk's values span
  // fewer than 2^33 binades, and within 2^-41 of the largest value
  // otherwise. Every x^2 is exact in double (at most 22 significant bits),
  // and M2 = sum(x^2) - sum(x)^2 / n (ChunkMoments) stays close to M2 = n
  // sigma^2:
  // - mu^2 <= 4 n sigma^2: each term is rounded at most n / 2 + 2 times (the
  //   scalar path's two accumulators; the vector paths far fewer), so
  //   sum(x^2) = M2 + n mu^2 <= (1 + 4n) M2 is within 2^-42 of itself and
  //   sum(x)^2 / n (at most sum(x^2)) within 2^-52; so M2 is within 2^-41
  //   (1 + 4n) <= 2^-26.9 of itself (rstd within 2^-27.9).
  // - mu^2 > 4 n sigma^2: every x then lies within |mu| / 2 of mu (one that
  //   did not would alone put mu^2 / 4 into M2), so the x^2 span less than 4
  //   binades and their sum (under 39 bits from its top to the last bit of
  //   the smallest x^2) is exact, as are sum(x) (under 26 bits) and its
  //   square; ChunkMoments' exact remainder then leaves M2 within 2^-52 of
  //   itself.
  template <DType D>
  static constexpr bool kUnshiftedSums = D != DType::kFloat32;
  static_assert(kStatsChunk <= 4096, "CenteredPass' bounds for half types take n <= 4096");
  template <DType D, bool kResidual, bool kPrefetch = false>
  static void CenteredPass(const void* x, const void* r, void* h, int64_t i0, int64_t n, float pivot,
                           double* sum_d, double* sum_d2, const char* pf) {
    constexpr bool kShift = !kUnshiftedSums<D>;
    using DV = typename S::D;
    const DV p = S::DSet1(pivot);
    const DV zero = S::DSet1(0.0);
    // Two sets of accumulators (even and odd vectors) halve the add latency chain.
    DV s_lo[2] = {zero, zero}, s_hi[2] = {zero, zero}, q_lo[2] = {zero, zero}, q_hi[2] = {zero, zero};
    auto add = [&](int k, F v) NORMSERVE_LAMBDA_INLINE {
      DV lo, hi;
      S::Widen(v, &lo, &hi);
      if constexpr (kShift) lo = S::DSub(lo, p);
      s_lo[k] = S::DAdd(s_lo[k], lo);
      q_lo[k] = S::DMulAdd(lo, lo, q_lo[k]);
      if constexpr (S::kHasHighHalf) {
        if constexpr (kShift) hi = S::DSub(hi, p);
        s_hi[k] = S::DAdd(s_hi[k], hi);
        q_hi[k] = S::DMulAdd(hi, hi, q_hi[k]);
      }
    };
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
      if constexpr (kPrefetch) PrefetchStatsShare<D>(pf, i);
      F v0, v1;
      LoadInputPair<D, kResidual>(x, r, h, i0 + i, &v0, &v1);
      add(0, v0);
      add(1, v1);
    }
    if (i + W <= n) {
      add(0, LoadInput<D, kResidual>(x, r, h, i0 + i));
      i += W;
    }
    if (i < n) {
      // Lanes past the end hold the pivot, so they add exactly zero.
      const int rest = static_cast<int>(n - i);
      add(1, S::SelectFirst(LoadInputPartial<D, kResidual>(x, r, h, i0 + i, rest), S::Set1(pivot), rest));
    }
    const DV s = S::DAdd(S::DAdd(s_lo[0], s_hi[0]), S::DAdd(s_lo[1], s_hi[1]));
    const DV q = S::DAdd(S::DAdd(q_lo[0], q_hi[0]), S::DAdd(q_lo[1], q_hi[1]));
    *sum_d = S::DReduceAdd(s);
    *sum_d2 = S::DReduceAdd(q);
  }

  // Sum of x^2 over x[i0, i0 + n) (or over h, written with kResidual) in
  // double, where every square is exact.
  template <DType D, bool kResidual>
  static double SquaresBlockWide(const void* x, const void* r, void* h, int64_t i0, int64_t n) {
    using DV = typename S::D;
    DV q_lo = S::DSet1(0.0), q_hi = S::DSet1(0.0);
    auto add = [&](F v) NORMSERVE_LAMBDA_INLINE {
      DV lo, hi;
      S::Widen(v, &lo, &hi);
      q_lo = S::DMulAdd(lo, lo, q_lo);
      if constexpr (S::kHasHighHalf) q_hi = S::DMulAdd(hi, hi, q_hi);
    };
    int64_t i = 0;
    for (; i + W <= n; i += W) add(LoadInput<D, kResidual>(x, r, h, i0 + i));
    // Lanes past the end load 0.
    if (i < n) add(LoadInputPartial<D, kResidual>(x, r, h, i0 + i, static_cast<int>(n - i)));
    return S::DReduceAdd(S::DAdd(q_lo, q_hi));
  }

  // The same in float, for one block of at most kSquaresBlock elements: two
  // accumulators, so each lane adds at most 16 squares, and the float sum is
  // within 2^-19 of the exact one (all terms are positive: no cancellation).
  static constexpr int64_t kSquaresBlock = 32 * W;
  template <DType D, bool kResidual>
  NORMSERVE_INLINE static float SquaresBlock(const void* x, const void* r, void* h, int64_t i0, int64_t n) {
    // Whether a BFLOAT16 pair's one load (2W elements) is shorter than a cache line.
    constexpr bool kLinePairLoadsShort = 4 * W < 64;
    F a0 = S::Zero(), a1 = S::Zero();
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
      // On AVX-512 in order, not LoadInputPair's unpacked BFLOAT16 pairs
      // (64-byte loads, which at the server's 16-byte offset each span two
      // lines): with those, BFLOAT16 RMSNorm rows past ShortHalfRows ran
      // slower out of cache. The benchmark, 2 threads, offset 16, 5 alternating rounds,
      // frac_of_copy: 4096 columns 0.74-0.79 -> 0.85-0.92, 8192 0.74-0.89
      // -> 0.87-1.00, 16384 0.83-0.97 -> 0.90-1.00, 1024 and 65536 level,
      // 2048 0.78-0.89 -> 0.77-0.86 (FLOAT16, the same code both times,
      // moved as much). Short rows (ShortRowSum) and LayerNorm
      // (CenteredPass) keep the pairs: there the in-order loads were slower
      // (LayerNorm 4096 columns, median 0.83 -> 0.72; RMSNorm 128-768
      // columns 0.02-0.06 lower).
      // The AVX2 tier's pairs are 32-byte loads and keep them: forced on
      // Zen 5, in order was level out of cache (2 threads, 4096 columns,
      // 485-572 against 466-528 ns a row) and slower in L1 (726-796 ->
      // 772-867).
      F v0, v1;
      LoadInputPair<D, kResidual, kLinePairLoadsShort>(x, r, h, i0 + i, &v0, &v1);
      a0 = S::MulAdd(v0, v0, a0);
      a1 = S::MulAdd(v1, v1, a1);
    }
    for (; i + W <= n; i += W) {
      const F v = LoadInput<D, kResidual>(x, r, h, i0 + i);
      a0 = S::MulAdd(v, v, a0);
    }
    if (i < n) {
      const F v = LoadInputPartial<D, kResidual>(x, r, h, i0 + i, static_cast<int>(n - i));
      a1 = S::MulAdd(v, v, a1);
    }
    return S::ReduceAdd(S::Add(a0, a1));
  }

  // Whether a float sum of squares is a normal number comfortably away from
  // underflow (below 2^-90, squares lost to float denormals could matter
  // relative to the sum) and not overflowed or NaN; otherwise the block is
  // summed again in double.
  static constexpr float kFloatSquaresMin = 0x1p-90f;
  static bool FloatSquaresUsable(float sum) {
    return sum >= kFloatSquaresMin && sum <= std::numeric_limits<float>::max();
  }

  // Sum of squares of x[i0, i0 + n) (or of h, written with kResidual), block
  // by block in float, the blocks added in double. RMSNorm's only statistic
  // has no cancellation, so 2^-19 relative error (rstd within 2^-20) is far
  // inside every bound, including the FLOAT32 one (1e-5), unless beta
  // cancels the term (RunSumSquares' `wide`). A block that
  // FloatSquaresUsable rejects is summed again in double; that is also the
  // path of all-zero blocks. Writing h twice writes the same values.
  // With `wide`, every block is summed in double (RunSumSquares).
  template <DType D, bool kResidual>
  static double SquaresPass(const void* x, const void* r, void* h, int64_t i0, int64_t n, bool wide) {
    double total = 0;
    for (int64_t b0 = 0; b0 < n; b0 += kSquaresBlock) {
      const int64_t len = std::min(kSquaresBlock, n - b0);
      if (wide) {
        total += SquaresBlockWide<D, kResidual>(x, r, h, i0 + b0, len);
        continue;
      }
      const float block = SquaresBlock<D, kResidual>(x, r, h, i0 + b0, len);
      total += FloatSquaresUsable(block) ? static_cast<double>(block)
                                         : SquaresBlockWide<D, kResidual>(x, r, h, i0 + b0, len);
    }
    return total;
  }

  // One chunk's shifted sums (CenteredPass) and the pivot they are around:
  // the chunk's first value (x + r with a residual); 0 for FLOAT16 /
  // BFLOAT16 (kUnshiftedSums). In double the shifted
  // sums only need it near the data, and a scalar load costs less than
  // reducing a vector (short rows feel that). Values near FLT_MAX cannot
  // overflow it; x + r can, but then h is infinite too and the group's
  // outputs are NaN anyway.
  struct ChunkSums {
    double pivot, sum_d, sum_d2;
  };
  template <DType D, bool kResidual, bool kPrefetch>
  NORMSERVE_INLINE static ChunkSums CenteredSums(const void* x, const void* r, void* h, int64_t i0, int64_t n,
                                                 const char* pf) {
    float pivot = 0.0f;  // FLOAT16 / BFLOAT16: no shift (CenteredPass)
    if constexpr (!kUnshiftedSums<D>) {
      pivot = LoadAsFloat(x, D, i0);
      if constexpr (kResidual) pivot += LoadAsFloat(r, D, i0);
    }
    ChunkSums c{static_cast<double>(pivot), 0, 0};
    CenteredPass<D, kResidual, kPrefetch>(x, r, h, i0, n, pivot, &c.sum_d, &c.sum_d2, pf);
    return c;
  }
  // Their chunk's mean and M2 (count = n).
  NORMSERVE_INLINE static Moments ChunkMoments(const ChunkSums& c, int64_t n) {
    const double dn = static_cast<double>(n);
    Moments m;
    m.count = dn;
    m.mean = c.pivot + c.sum_d / dn;
    m.sum = c.pivot * dn + c.sum_d;  // pivot * dn is exact (24 bits times a count below 2^29)
    // sum_d^2 / n as q + rem / n: rem, the remainder of the rounded quotient
    // q, is a double, and the FMA gives it exactly. Where sum_d2 and q are
    // close (unshifted half-type sums of a row far from zero, CenteredPass)
    // their difference is exact, so M2 keeps nearly all its bits.
    const double t = c.sum_d * c.sum_d, q = t / dn, rem = std::fma(-q, dn, t);
    m.m2 = std::max(0.0, (c.sum_d2 - q) - rem / dn);
    return m;
  }

  // FLOAT32 LayerNorm statistics in float, where PreparedProblem::
  // float_stats allows them (a FLOAT32 output, whose bound is 1e-5 max(1,
  // |ref|); no mean requested; |gamma| <= 4 and |beta| <= 2, not adaptive).
  // CenteredSums widens every element to double; this does three float
  // operations per vector instead (in cache, 16 rows of 4096: about 23% less
  // time for the whole LayerNorm). The pivot p is the mean of up to
  // kPivotSamples vectors spread over the chunk; then d = x - p, and per lane
  // sum(d) and sum(d^2) in float over blocks of kFloatSumBlock elements (four
  // accumulators of at most 8 terms, added pairwise), widened to double after
  // each block. With u = 2^-24 that leaves sum(d) within 10u sum|x - p| and
  // sum(d^2) = Q within 12u Q. The sums are kept only when n (mean - p)^2 <=
  // Q / 5 (|mean - p| <= sigma / 2) and 2^-90 <= Q < inf; otherwise
  // (constant rows, NaN, Inf, a pivot far from the mean) the chunk takes the
  // double CenteredSums from cache. Kept, since mean|x - p| <= sqrt(Q / n)
  // <= 1.12 sigma, the mean is within 11.2u sigma and M2 within 26.2u M2;
  // merging chunks in double keeps the mean within 11.2u sigma and adds
  // 11.2u M2 at most. So rstd is within 18.7u, and an output (x - mean) rstd
  // g + b errs by at most |g| 11.2u (rstd <= 1 / sigma) plus (18.7u + 4u)
  // |(x - mean) rstd g| (4u: the float output pass), where |(x - mean) rstd
  // g| <= |y| + |b|: with |g| <= 4 and |b| <= 2, under 0.27 + 0.41 of 1e-5
  // max(1, |y|) (docs/cpu-performance.md has the derivation). Returns false
  // when the chunk must take the double sums; h is written either way.
  static constexpr int64_t kFloatSumBlock = 32 * W;
  static constexpr int kPivotSamples = 8;
  // The float statistics' lanes: four accumulators each of sum(x - p) and
  // sum((x - p)^2), added pairwise at the end.
  struct CenteredLanes {
    F s[4], q[4];
    // Not default member initializers: GCC compiles the implicit constructor
    // without this file's target options (-Wpsabi).
    NORMSERVE_INLINE CenteredLanes() {
      for (int k = 0; k < 4; ++k) s[k] = q[k] = S::Zero();
    }
    NORMSERVE_INLINE void Add(int k, F v, F p) {
      const F d = S::Sub(v, p);
      s[k] = S::Add(s[k], d);
      q[k] = S::MulAdd(d, d, q[k]);
    }
    // Only the sums, or only the squares (the other half is then left unused).
    NORMSERVE_INLINE void AddSum(int k, F v, F p) { s[k] = S::Add(s[k], S::Sub(v, p)); }
    NORMSERVE_INLINE void AddSquare(int k, F v, F p) {
      const F d = S::Sub(v, p);
      q[k] = S::MulAdd(d, d, q[k]);
    }
    NORMSERVE_INLINE F Sum() const { return S::Add(S::Add(s[0], s[1]), S::Add(s[2], s[3])); }
    NORMSERVE_INLINE F Squares() const { return S::Add(S::Add(q[0], q[1]), S::Add(q[2], q[3])); }
  };
  // Whether float sums of n elements around a pivot are kept (the bound
  // above); NaN fails every comparison, an infinite sum_d the last.
  static bool FloatSumsKept(double sum_d, double sum_d2, double n) {
    return sum_d2 >= static_cast<double>(kFloatSquaresMin) && sum_d2 <= std::numeric_limits<double>::max() &&
           5.0 * sum_d * sum_d <= n * sum_d2;
  }
  template <bool kResidual, bool kPrefetch>
  static bool FloatCenteredSums(const void* x, const void* r, void* h, int64_t i0, int64_t n, const char* pf,
                                ChunkSums* out) {
    constexpr DType D = DType::kFloat32;
    // The pivot: the mean of kPivotSamples vectors spread over the chunk
    // (the row was prefetched, so these are cache hits).
    const int64_t vectors = n / W;
    const int samples = static_cast<int>(std::min<int64_t>(kPivotSamples, vectors));
    F a = S::Zero();
    for (int k = 0; k < samples; ++k) {
      const int64_t at = i0 + (k * vectors / samples) * W;
      F v = S::template Load<D>(x, at);
      if constexpr (kResidual) v = S::Add(v, S::template Load<D>(r, at));
      a = S::Add(a, v);
    }
    const float pivot = S::ReduceAdd(a) / static_cast<float>(samples * W);

    using DV = typename S::D;
    const F p = S::Set1(pivot);
    DV s_wide[2] = {S::DSet1(0.0), S::DSet1(0.0)}, q_wide[2] = {S::DSet1(0.0), S::DSet1(0.0)};
    for (int64_t b0 = 0; b0 < n; b0 += kFloatSumBlock) {
      const int64_t len = std::min(kFloatSumBlock, n - b0);
      const char* pfb = AdvanceStatsShare<D>(pf, b0);
      CenteredLanes lanes;
      auto add = [&](int k, F v) NORMSERVE_LAMBDA_INLINE { lanes.Add(k, v, p); };
      int64_t j = 0;
      for (; j + 4 * W <= len; j += 4 * W) {
        if constexpr (kPrefetch) {
          PrefetchStatsShare<D>(pfb, j);
          PrefetchStatsShare<D>(pfb, j + 2 * W);
        }
        for (int k = 0; k < 4; ++k) add(k, LoadInput<D, kResidual>(x, r, h, i0 + b0 + j + k * W));
      }
      for (; j + W <= len; j += W) add(0, LoadInput<D, kResidual>(x, r, h, i0 + b0 + j));
      if (j < len) {
        // Lanes past the end hold the pivot, so they add exactly zero.
        const int rest = static_cast<int>(len - j);
        add(1, S::SelectFirst(LoadInputPartial<D, kResidual>(x, r, h, i0 + b0 + j, rest), p, rest));
      }
      DV lo, hi;
      S::Widen(lanes.Sum(), &lo, &hi);
      s_wide[0] = S::DAdd(s_wide[0], lo);
      if constexpr (S::kHasHighHalf) s_wide[1] = S::DAdd(s_wide[1], hi);
      S::Widen(lanes.Squares(), &lo, &hi);
      q_wide[0] = S::DAdd(q_wide[0], lo);
      if constexpr (S::kHasHighHalf) q_wide[1] = S::DAdd(q_wide[1], hi);
    }
    const double sum_d = S::DReduceAdd(S::DAdd(s_wide[0], s_wide[1]));
    const double sum_d2 = S::DReduceAdd(S::DAdd(q_wide[0], q_wide[1]));
    if (!FloatSumsKept(sum_d, sum_d2, static_cast<double>(n))) return false;
    *out = ChunkSums{static_cast<double>(pivot), sum_d, sum_d2};
    return true;
  }

  // Short FLOAT32 LayerNorm rows where float_stats allows float sums: at
  // most kShortFloatVectors vectors a row (512 columns with AVX-512, 256 with
  // AVX2: a short row's 2 KiB; the scalar path keeps the double sums). There
  // the per-row costs of the double sums (widening, two horizontal
  // reductions in double, the division and square root chain) were most of
  // the row's time: 128 columns took about 36 ns a row in cache against
  // oneDNN's 29. Per row (ShortFloatRows): the pivot is the mean of the row
  // in float (ShortRowSum; any pivot is valid, a good one passes the check
  // below); then sum(x - p) and sum((x - p)^2) in four float accumulators
  // (ShortRowCentered), added pairwise, then across the lanes: rows of at
  // most kShortFloatLaneVectors vectors (at most 4 terms a lane) in float
  // (ReduceAdd, log2 W <= 4 levels), longer ones (at most 8 terms a lane) in
  // double, as FloatCenteredSums does. Either way at most 9 roundings per
  // term, the count FloatCenteredSums' bound assumes (10u for the sum with
  // the rounding of x - p, 12u for Q), and the same check decides whether
  // the sums are kept: rows that fail it (constant rows, NaN, Inf, a mean far
  // from zero against the spread) take the double CenteredSums from cache
  // (ShortRowTransform). Most rows skip sum(x - p): where |mean| is about
  // sigma or less (MeanPivotKept), the float mean is close enough to the
  // mean to stand for it, and Q = sum((x - p)^2) for M2; only the rows that
  // fail that check add sum(x - p), in a second pass from L1.
  static constexpr int64_t kShortFloatVectors = 32;
  static constexpr int64_t kShortFloatLaneVectors = 16;
  // FLOAT16 / BFLOAT16 RMSNorm rows go through ShortHalfRows up to this many
  // vectors (768 columns with AVX-512), half again the other short rows:
  // there ShortRowSum adds at most 12 terms an accumulator, two float adds
  // join the four, and the lanes add in double: still at most 14 float
  // roundings a term (ShortRmsTransform's 14u).
  // 768 columns had run at half the speed per byte of 512 through
  // LayerRows. run_driver, 2 threads, 128 MiB in, offset 16, 4-5
  // alternating runs, ns a row: BFLOAT16 63-77 -> 56-66, FLOAT16 57-68 ->
  // 51-62; in cache, one thread: BFLOAT16 74-77 -> 65-69. The benchmark, 4
  // alternating rounds, offset 16, frac_of_copy: BFLOAT16 0.62-0.70 ->
  // 0.70-0.93, FLOAT16 0.73-0.78 -> 0.74-0.86. At 1024 columns (64 vectors)
  // it was faster in cache (BFLOAT16 91-93 -> 83-85 ns, FLOAT16 75-76 ->
  // 66-68) but slower out of cache (FLOAT16 54-60 -> 61-82), level with the
  // input prefetched two rows ahead: LayerRows keeps those rows. The AVX2
  // tier (384 columns, run_driver with NORMSERVE_CPU_ISA=avx2) gained too:
  // out of cache FLOAT16 38-48 -> 32-38 ns a row, BFLOAT16 47-62 -> 38-39
  // (one run 68); BFLOAT16 in cache 89-110 -> 83-87.
  static constexpr int64_t kShortHalfRmsVectors = 48;
  static constexpr bool kShortFloatRows = W >= 8;
  // Short FLOAT32 rows prefetch the input kShortFloatPrefetchBytes on, one
  // cache line per vector of the output pass, where a vector is a line
  // (AVX-512): the hardware prefetcher alone left the memory system idle
  // through each row's arithmetic. run_driver, 2 threads, 256 MiB in,
  // input and output 16 bytes past a line, 4-5 alternating runs, ns a row:
  // LayerNorm 512 columns 94-118 -> 59-67 (4 KiB on: 61-74; prefetching in
  // the sum pass instead: 71-90), on a line 58-61 -> 46-53; RMSNorm 512
  // columns 57-82 -> 45-49; 128 and 256 columns level within the noise. On
  // the AVX2 tier (two vectors a line, 256 columns, same machine) it was
  // level, so that tier keeps the hardware prefetcher alone. Rows with a
  // residual (two inputs, not measured) keep it too, and so do outputs that
  // are not streamed (StreamsOutput): in cache the prefetches only cost
  // (LayerNorm 512 columns, one thread, 128 rows: 57-59 -> 66-72 ns a row).
  static constexpr bool kShortFloatPrefetch = W * 4 == 64;
  static constexpr int64_t kShortFloatPrefetchBytes = 8 << 10;
  // Lanes of the vector at element e of a short row (e < cols).
  NORMSERVE_INLINE static int ShortLanes(int64_t cols, int64_t e) {
    return static_cast<int>(std::min<int64_t>(cols - e, W));
  }
  // The row's vectors (kSquares: their squares) added in four accumulators,
  // then pairwise (lanes past the end load 0); with a residual, h = x + r is
  // written on the way, and its values rounded to D are what is added.
  template <bool kResidual, DType D = DType::kFloat32, bool kSquares = false>
  NORMSERVE_INLINE static F ShortRowSum(const void* x, const void* r, void* h, int64_t i0, int64_t cols) {
    F a[4] = {S::Zero(), S::Zero(), S::Zero(), S::Zero()};
    auto add = [&](int k, F v)
                   NORMSERVE_LAMBDA_INLINE { a[k] = kSquares ? S::MulAdd(v, v, a[k]) : S::Add(a[k], v); };
    int64_t e = 0;
    for (; e + 4 * W <= cols; e += 4 * W) {
      for (int k = 0; k < 4; k += 2) {
        F v0, v1;
        LoadInputPair<D, kResidual>(x, r, h, i0 + e + k * W, &v0, &v1);
        add(k, v0);
        add(k + 1, v1);
      }
    }
    for (int k = 0; k < 4 && e + k * W < cols; ++k) {
      add(k, LoadInputPartial<D, kResidual>(x, r, h, i0 + e + k * W, ShortLanes(cols, e + k * W)));
    }
    return S::Add(S::Add(a[0], a[1]), S::Add(a[2], a[3]));
  }
  // The row's sum((x - p)^2) lanes (kSquares) or sum(x - p) lanes, from
  // CenteredLanes added up (lanes past the end hold the pivot, so they add
  // exactly zero).
  template <bool kSquares>
  NORMSERVE_INLINE static F ShortRowCentered(const void* values, int64_t i0, int64_t cols, F p) {
    constexpr DType D = DType::kFloat32;
    CenteredLanes lanes;
    auto add = [&](int k, F v) NORMSERVE_LAMBDA_INLINE {
      if constexpr (kSquares) {
        lanes.AddSquare(k, v, p);
      } else {
        lanes.AddSum(k, v, p);
      }
    };
    int64_t e = 0;
    for (; e + 4 * W <= cols; e += 4 * W) {
      for (int k = 0; k < 4; ++k) add(k, S::template Load<D>(values, i0 + e + k * W));
    }
    for (int k = 0; k < 4 && e + k * W < cols; ++k) {
      const int n = ShortLanes(cols, e + k * W);
      add(k, S::SelectFirst(S::template LoadPartial<D>(values, i0 + e + k * W, n), p, n));
    }
    if constexpr (kSquares) return lanes.Squares();
    return lanes.Sum();
  }
  // A short row's lanes added up: rows of more than kShortFloatLaneVectors
  // vectors add them in double.
  NORMSERVE_INLINE static double ShortLaneSum(F v, int64_t cols) {
    if (cols <= kShortFloatLaneVectors * W) return static_cast<double>(S::ReduceAdd(v));
    typename S::D lo, hi;
    S::Widen(v, &lo, &hi);
    return S::DReduceAdd(S::kHasHighHalf ? S::DAdd(lo, hi) : lo);
  }
  // A short RMSNorm row's transform: sum(x^2) by ShortRowSum<kSquares>,
  // added up by ShortLaneSum: at most 14 roundings a term and no
  // cancellation, so within 14u. A sum that is not a normal float above
  // 2^-90 (NaN, Inf, overflow, underflow) is taken again by RunSumSquares,
  // from cache.
  template <DType D, bool kResidual>
  NORMSERVE_INLINE static GroupTransform ShortRmsTransform(const void* x, const void* r, void* h, int64_t i0,
                                                           int64_t cols, double inv_dn, float epsilon) {
    double q = ShortLaneSum(ShortRowSum<kResidual, D, true>(x, r, h, i0, cols), cols);
    if (__builtin_expect(
            !(q >= static_cast<double>(kFloatSquaresMin) && q <= std::numeric_limits<float>::max()), 0)) {
      const void* values = kResidual ? static_cast<const void*>(h) : x;
      q = RunSumSquares<D, false>(values, nullptr, nullptr, i0, cols);
    }
    const double ms = q * inv_dn;
    const bool finite = std::isfinite(q);
    return MakeTransformWithRstd(0.0, ms, finite ? RstdOf(ms, epsilon) : 0.0, finite);
  }
  // Whether a short row's float mean p can stand for its mean, with Q =
  // sum((x - p)^2) (ShortRowCentered<true>) for its M2: when n p^2 <= Q
  // (|mean| about sigma or less) and 2^-90 <= Q < inf. The bound is in
  // docs/cpu-performance.md; NaN fails every comparison.
  NORMSERVE_INLINE static bool MeanPivotKept(float p, double q, double n) {
    const double pd = static_cast<double>(p);
    return q >= static_cast<double>(kFloatSquaresMin) && q <= std::numeric_limits<double>::max() &&
           n * pd * pd <= q;
  }
  // A short row's transform (as MakeTransformWithRstd makes it) from its
  // float pivot, its sum(x - p) lanes (ShortRowCentered<false>) and its
  // sum((x - p)^2) (ShortRowCentered<true>, added up), or from the double
  // CenteredSums, from cache, where FloatSumsKept rejects those. In double:
  // ChunkMoments' mean and M2, with the division by the row length a
  // multiply by its inverse.
  NORMSERVE_INLINE static GroupTransform ShortRowTransform(const void* values, int64_t i0, int64_t cols,
                                                           float pivot, F sum_part, double sum_d2,
                                                           double inv_dn, float epsilon) {
    ChunkSums c{static_cast<double>(pivot), ShortLaneSum(sum_part, cols), sum_d2};
    if (__builtin_expect(!FloatSumsKept(c.sum_d, c.sum_d2, static_cast<double>(cols)), 0)) {
      c = CenteredSums<DType::kFloat32, false, false>(values, nullptr, nullptr, i0, cols, nullptr);
    }
    const double mean = c.pivot + c.sum_d * inv_dn;
    const double m2 = std::max(0.0, c.sum_d2 - c.sum_d * c.sum_d * inv_dn);
    const double var = m2 * inv_dn;
    const bool finite = std::isfinite(mean) && std::isfinite(m2);
    return MakeTransformWithRstd(mean, var, finite ? RstdOf(var, epsilon) : 0.0, finite);
  }

  // Mean and M2 of x[i0, i0 + n) (or of h = x + r, written to h).
  // kPrefetch: prefetches from pf along the way (PrefetchStatsShare).
  // float_stats: FLOAT32 chunks longer than a short row may take
  // FloatCenteredSums (short rows, batched in LayerRows, never do).
  template <DType D, bool kResidual, bool kPrefetch = false>
  static Moments RunMoments(const void* x, const void* r, void* h, int64_t i0, int64_t n,
                            const char* pf = nullptr, bool float_stats = false) {
    Moments total;
    for (int64_t c = 0; c < n; c += kStatsChunk) {
      const int64_t len = std::min(kStatsChunk, n - c);
      const char* chunk_pf = AdvanceStatsShare<D>(pf, c);
      // FLOAT32 chunks of a short row's size or less keep the double sums:
      // FloatCenteredSums' pivot samples are most of such a chunk (512 rows
      // of 128 FLOAT32 columns in cache took 24.0 us with them against
      // 17.7-17.9). FLOAT16 / BFLOAT16 always take the (unshifted) double
      // sums, CenteredPass.
      if constexpr (D == DType::kFloat32) {
        if (float_stats && len * static_cast<int64_t>(DTypeSize(D)) > kShortRowBytes) {
          ChunkSums sums;
          if (!FloatCenteredSums<kResidual, kPrefetch>(x, r, h, i0 + c, len, chunk_pf, &sums)) {
            // From cache; h, if any, is written and holds the values.
            const void* values = kResidual ? static_cast<const void*>(h) : x;
            sums = CenteredSums<D, false, false>(values, nullptr, nullptr, i0 + c, len, nullptr);
          }
          MergeMoments(total, ChunkMoments(sums, len));
          continue;
        }
      }
      MergeMoments(total,
                   ChunkMoments(CenteredSums<D, kResidual, kPrefetch>(x, r, h, i0 + c, len, chunk_pf), len));
    }
    return total;
  }

  // Sum of squares of x[i0, i0 + n) (or of h), chunk by chunk.
  // `wide` (PreparedProblem::wide_squares): with a FLOAT32 output, beta can
  // cancel most of the term (x * rstd) * gamma, whose error then counts
  // against 1e-5 max(1, |y|) with |term| up to |y| + |beta|. The float
  // blocks' 2^-19 (rstd within 2^-20) leaves room for that only while |beta|
  // <= 2 (2^-20 * 3 + 2.2e-6 for the output pass); beyond, even the double
  // recompute of cancelling elements (|beta| > 8) is only as good as rstd (a
  // term of 100 was 1.05e-5 off: ShortRmsRowsInFloatStayWithinBound's
  // cancelling rows). So there the blocks are summed in double.
  template <DType D, bool kResidual>
  static double RunSumSquares(const void* x, const void* r, void* h, int64_t i0, int64_t n,
                              bool wide = false) {
    double total = 0;
    for (int64_t c = 0; c < n; c += kStatsChunk) {
      total += SquaresPass<D, kResidual>(x, r, h, i0 + c, std::min(kStatsChunk, n - c), wide);
    }
    return total;
  }

  // Parameters come as FLOAT32 or as the input's dtype.
  template <DType D>
  NORMSERVE_INLINE static F LoadParam(const void* p, bool is_f32, int64_t i) {
    return is_f32 ? S::template Load<DType::kFloat32>(p, i) : S::template Load<D>(p, i);
  }
  template <DType D>
  NORMSERVE_INLINE static F LoadParamPartial(const void* p, bool is_f32, int64_t i, int n) {
    return is_f32 ? S::template LoadPartial<DType::kFloat32>(p, i, n) : S::template LoadPartial<D>(p, i, n);
  }

  // Per-element gamma / beta of a LAYER/RMS row; data == nullptr when absent.
  struct RowParams {
    const void* gamma = nullptr;
    bool gamma_f32 = true;
    int64_t gamma_offset = 0;
    const void* beta = nullptr;
    bool beta_f32 = true;
    int64_t beta_offset = 0;
    bool unit_offset = false;
    // PreparedProblem::float_beta_large.
    bool float_beta_large = false;
  };

  // A LAYER/RMS problem's parameters for NormalizeRow (offsets 0: the first row's).
  static RowParams ProblemRowParams(const PreparedProblem& pp) {
    const NormProblem& p = *pp.problem;
    RowParams prm;
    prm.gamma = p.gamma.data;
    prm.gamma_f32 = p.gamma.dtype == DType::kFloat32;
    prm.beta = p.beta.data;
    prm.beta_f32 = p.beta.dtype == DType::kFloat32;
    prm.unit_offset = p.unit_offset;
    prm.float_beta_large = pp.float_beta_large;
    return prm;
  }

  // Loads element vector [i, i + rest) of a buffer: a full vector when rest == W.
  template <DType D>
  NORMSERVE_INLINE static F LoadSome(const void* p, int64_t i, int rest) {
    return rest == W ? S::template Load<D>(p, i) : S::template LoadPartial<D>(p, i, rest);
  }
  template <DType D>
  NORMSERVE_INLINE static F LoadParamSome(const void* p, bool is_f32, int64_t i, int rest) {
    return rest == W ? LoadParam<D>(p, is_f32, i) : LoadParamPartial<D>(p, is_f32, i, rest);
  }

  // Where StoreLoop's whole vectors start, in runs of at least
  // kAlignedRunBytes and in every run it streams: at a multiple of
  // kStoreAlign bytes (their own width, both halves of a pair for BFLOAT16,
  // at most a cache line), so that none of them straddles two cache lines.
  // The server's outputs start 16 bytes past a line (protobuf strings).
  // BFLOAT16 LayerNorm out of cache, 2 threads, 64 MiB in, run_driver with
  // the output 16 bytes past a line and on one, fastest of 4 alternating
  // runs, ns a row: 4096 columns 430.6 unaligned -> 372.0 with the head
  // stored first (354.0 on a line); 1024 columns 100.1 -> 95.2 (90.9); 512
  // columns 53.8 -> 53.1 (49.7); 128 columns 18.7 -> 21.8 (18.6), so
  // shorter runs store where they start.
  static constexpr int64_t kAlignedRunBytes = 2 << 10;
  template <DType DOut>
  static constexpr int64_t kStoreAlign = std::min<int64_t>(64, static_cast<int64_t>(DTypeSize(DOut)) * W *
                                                                   (DOut == DType::kBFloat16 ? 2 : 1));
  // The elements of y[i0, i0 + n) before the first that starts at such a
  // boundary (0 where none does: a short run not streamed, or an address not
  // a multiple of the element size; always 0 for the scalar traits).
  template <DType DOut>
  NORMSERVE_INLINE static int64_t HeadElements(const void* y, int64_t i0, int64_t n, bool stream) {
    if constexpr (W == 1) return 0;
    constexpr uintptr_t kElem = DTypeSize(DOut);
    if (!stream && n * static_cast<int64_t>(kElem) < kAlignedRunBytes) return 0;
    const uintptr_t misaligned = (reinterpret_cast<uintptr_t>(y) + static_cast<uintptr_t>(i0) * kElem) %
                                 static_cast<uintptr_t>(kStoreAlign<DOut>);
    if (misaligned % kElem != 0 || misaligned == 0) return 0;
    return std::min<int64_t>(n, static_cast<int64_t>((kStoreAlign<DOut> - misaligned) / kElem));
  }

  // A streamed run first asks for the next run of the same length (the
  // next row, or channel segment, of the output) to be written: one cache
  // line in each 4 KiB of it, from its last line back. Out of cache the
  // non-temporal stores of a run otherwise wait on address translation at
  // each new page (the input's prefetches already walk its pages ahead of
  // the loads), and where runs do not end on a cache line (the server's
  // outputs start 16 bytes past one) the line two runs share, which their
  // partial vectors write with ordinary stores, would miss with the stores
  // behind it waiting. A prefetch never faults, so past the end of the
  // output it is merely wasted. AVX-512 tiers only (S::kPrefetchNextRun).
  // Measured with run_driver, out of cache, 2 threads, output 16 bytes past
  // a line, ns a row, alternating runs: FLOAT32 LayerNorm 512 columns 97-129
  // -> 95-120 (median of 6 runs 123 -> 102; on a line 100 -> 84), RMSNorm
  // 1024 columns 197-205 -> 123-125 (streaming and cached taking turns call
  // by call; cached 179-195), and with the page-by-page requests, LayerNorm
  // 4096 columns 682-708 -> 655-667 where the last line alone had been
  // slower (739-759).
  template <DType DOut>
  NORMSERVE_INLINE static void PrefetchNextRun(void* y, int64_t i0, int64_t n, bool stream) {
    if (!S::kPrefetchNextRun || !stream) return;
    constexpr uintptr_t kPage = 4096;
    const uintptr_t bytes = static_cast<uintptr_t>(n) * static_cast<uintptr_t>(DTypeSize(DOut));
    // Integer arithmetic: the address may lie past the end of the buffer.
    const uintptr_t last =
        reinterpret_cast<uintptr_t>(y) + static_cast<uintptr_t>(i0) * DTypeSize(DOut) + 2 * bytes - 1;
    for (uintptr_t back = 0; back < bytes; back += kPage)
      __builtin_prefetch(reinterpret_cast<const void*>(last - back), 1, 3);
  }

  // Writes y[i0, i0 + n) from compute(i, rest), which returns the values of
  // elements [i, i + rest) of the run. The first HeadElements go out as
  // partial vectors, so that the full vectors after them are aligned
  // (kStoreAlign); with `stream`, those full vectors are non-temporal
  // stores, so a large output does not first read its cache lines. The
  // output pass is elementwise, so where the vectors start never changes a
  // value. kNoDenormals: the full vectors hold no denormal (S::Store's
  // kNoDenormals); partial vectors always take the tested store. Where the
  // traits ask for it (kPairBf16Stores), BFLOAT16 vectors go out in pairs.
  // kAlignHead = false: the caller has stored the head (CheckedStoreLoop),
  // so the run starts aligned or not at all.
  template <DType DOut, bool kNoDenormals = false, bool kAlignHead = true, typename Compute>
  NORMSERVE_INLINE static void StoreLoop(void* y, int64_t i0, int64_t n, bool stream, Compute compute) {
    // AVX2 pairs any vectors (kNoDenormals changes nothing there); AVX512_BF16
    // only those known to hold no denormal.
    constexpr bool kPairs = DOut == DType::kBFloat16 &&
                            (S::kPairBf16Stores || (kNoDenormals && S::kPairBf16StoresWithoutDenormals));
    int64_t i = 0;
    if constexpr (kAlignHead) {
      PrefetchNextRun<DOut>(y, i0, n, stream);
      const int64_t head = HeadElements<DOut>(y, i0, n, stream);
      while (i < head) {
        const int rest = static_cast<int>(std::min<int64_t>(W, head - i));
        S::template StorePartial<DOut>(y, i0 + i, compute(i, rest), rest);
        i += rest;
      }
    }
    // Non-temporal stores need the alignment (never reached from an address
    // that is not a multiple of the element size).
    if (stream && (reinterpret_cast<uintptr_t>(y) + static_cast<uintptr_t>(i0 + i) * DTypeSize(DOut)) %
                          static_cast<uintptr_t>(kStoreAlign<DOut>) ==
                      0) {
      if constexpr (kPairs) {
        for (; i + 2 * W <= n; i += 2 * W) {
          const F a = compute(i, W);
          S::StreamBf16Pair(y, i0 + i, a, compute(i + W, W));
        }
      }
      for (; i + W <= n; i += W) S::template StoreStream<DOut, kNoDenormals>(y, i0 + i, compute(i, W));
    }
    if constexpr (kPairs) {
      for (; i + 2 * W <= n; i += 2 * W) {
        const F a = compute(i, W);
        S::StoreBf16Pair(y, i0 + i, a, compute(i + W, W));
      }
    }
    // FLOAT16 outputs (one vcvtps2ph and a 32-byte store a vector) unrolled
    // by two. Driver, in cache, one thread, ns a row: LayerNorm 4096
    // columns 712-739 -> 644-666, 512 columns 100-103 -> 96-97, RMSNorm
    // 4096 columns 332-336 -> 322-331. Every output type unrolled, FLOAT32
    // lost (LayerNorm 128 columns 23.3 -> 26.4, 512 columns 65.4 -> 72.1).
    if constexpr (DOut == DType::kFloat16) {
#pragma GCC unroll 2
      for (; i + W <= n; i += W) S::template Store<DOut, kNoDenormals>(y, i0 + i, compute(i, W));
    }
    for (; i + W <= n; i += W) S::template Store<DOut, kNoDenormals>(y, i0 + i, compute(i, W));
    if (i < n) {
      const int rest = static_cast<int>(n - i);
      S::template StorePartial<DOut>(y, i0 + i, compute(i, rest), rest);
    }
  }

  // y = ((v - mean) * rstd) * g + b in double, g = 1 + gamma with unit_offset.
  __attribute__((noinline)) static F WideAffine(F v, const GroupTransform& t, bool has_gamma, F gamma,
                                                bool unit_offset, F beta) {
    using D = typename S::D;
    const D mean = S::DSet1(t.mean_wide), rs = S::DSet1(t.rstd_wide), one = S::DSet1(1.0);
    D v_lo, v_hi, g_lo, g_hi, b_lo, b_hi;
    S::Widen(v, &v_lo, &v_hi);
    S::Widen(beta, &b_lo, &b_hi);
    if (has_gamma) {
      S::Widen(gamma, &g_lo, &g_hi);
      if (unit_offset) {
        g_lo = S::DAdd(g_lo, one);
        g_hi = S::DAdd(g_hi, one);
      }
    } else {
      g_lo = g_hi = one;
    }
    const D lo = S::DMulAdd(S::DMul(S::DSub(v_lo, mean), rs), g_lo, b_lo);
    const D hi = S::DMulAdd(S::DMul(S::DSub(v_hi, mean), rs), g_hi, b_hi);
    return S::Narrow(lo, hi);
  }

  // With epsilon 0 and a variance below about 1e-77 (denormal inputs), rstd
  // exceeds the float range while the outputs do not: such groups take the
  // double output pass throughout.
  static bool RstdBeyondFloat(const GroupTransform& t) {
    return !std::isfinite(t.rstd) && std::isfinite(t.rstd_wide);
  }

  // The float output pass is accurate to a few float ulps of its largest
  // term, ((x - mean) * rstd) * g: the error is below 2^-22 of it (three
  // roundings before the last FMA). When beta cancels that term, the result
  // can be so much smaller that this exceeds 1 ulp of a FLOAT16 or BFLOAT16
  // result; such elements are recomputed in double. The test is on beta,
  // which needs no extra multiply: where |beta| <= 2^k |result|, |term| <=
  // (2^k + 1) |result|, so the error stays below 2^(k-22) of the result.
  // One ulp is at least 2^-8 (BFLOAT16) or 2^-11 (FLOAT16) of the result, so
  // k = 12 and k = 9 keep a factor of 4 in hand (subnormal FLOAT16 results
  // have a larger ulp, which only adds margin). A FLOAT32 result may be off
  // by 1e-5 max(1, |ref|): with k = 3, |term| <= 17 |result| (the test is on
  // exponent bits, so within 2^(k+1)), an error below 4.1e-6 |result|; with
  // |beta| <= kFloatBetaUnchecked everywhere, below 2^-22 (|result| + 8) <
  // 2.2e-6 max(1, |result|), so such problems skip the test (their output
  // passes run unchecked, as without beta).
  template <DType DOut>
  static constexpr int kCancelLog2 = DOut == DType::kBFloat16  ? 12
                                     : DOut == DType::kFloat16 ? 9
                                                               : 3;
  template <DType DOut>
  NORMSERVE_INLINE static bool Cancels(F result, F beta) {
    return S::GapAbove(S::GapMax(S::GapInit(), result, beta), kCancelLog2<DOut>);
  }
  // The lanes of `result` that cancel replaced by those of wide(): the
  // choice is per element, so which elements share a vector (it depends on
  // the output's alignment with non-temporal stores) never changes a value.
  template <DType DOut, typename Wide>
  NORMSERVE_INLINE static F FixCancelling(F result, F beta, Wide wide) {
    if (!Cancels<DOut>(result, beta)) return result;
    return S::SelectGapAbove(wide(), result, result, beta, kCancelLog2<DOut>);
  }

  // One output vector as an output pass computes it in float: the result,
  // and the input, gamma and beta it came from (each double pass takes what
  // it needs). Lanes past a partial vector's end hold y = b = 0 or b = 0, so
  // they never count as cancelling.
  struct Lanes {
    F y, v, gamma, beta;
  };

  // StoreLoop for the output passes, with the double fallback. A test and
  // branch per vector cost about a third of the output pass, so the pass goes
  // block by block: each vector is computed in float (`compute(i, rest)`,
  // returning Lanes) and only its |beta| / |y| gap is folded in; a block where
  // some vector cancelled (a few percent of 256-element blocks on normal data)
  // is written again, each cancelling element now from `wide(lanes, i, rest)`
  // (the double pass; FixCancelling). The pass is elementwise, so rewriting a
  // block changes only the elements that needed it. Passes without beta,
  // and FLOAT32 outputs whose beta stays within kFloatBetaUnchecked, never
  // need the fallback (NeedsCancelTest). With `all_careful`
  // (RstdBeyondFloat) every vector takes the double pass.
  static constexpr int64_t kCheckBlock = 256;
  struct NoRangeGap {};
  NORMSERVE_INLINE static auto RangeGapInit() {
    if constexpr (S::kRangeGap) {
      return S::RangeGapInit();
    } else {
      return NoRangeGap{};
    }
  }
  template <DType DOut>
  static bool NeedsCancelTest(bool has_beta, bool float_beta_large) {
    return has_beta && (kWideOutput<DOut> || float_beta_large);
  }
  template <DType DOut, typename Compute, typename Wide>
  NORMSERVE_INLINE static void CheckedStoreLoop(void* y, int64_t i0, int64_t n, bool stream, bool test_cancel,
                                                bool all_careful, Compute compute, Wide wide) {
    // Where the BFLOAT16 store tests every vector for denormals (which
    // vcvtneps2bf16 would flush), the passes test a block at a time instead:
    // the cancellation gap also counts denormal results of full vectors as
    // cancelling (without beta, a mask of them is kept), so a block that
    // passes has none and its full vectors store untested; a block that does
    // not is written again with tested stores.
    constexpr bool kFoldDenormals = DOut == DType::kBFloat16 && S::kBf16StoreTestsDenormals;
    if (all_careful) {
      StoreLoop<DOut>(y, i0, n, stream, [&](int64_t i, int rest) NORMSERVE_LAMBDA_INLINE {
        return wide(compute(i, rest), i, rest);
      });
      return;
    }
    // The elements before the first aligned store (HeadElements) go out
    // first, as partial vectors (always tested for denormals), each
    // cancelling element from wide(); then the blocks, in fixed steps from
    // there (a variable block length, or the head as a block of its own,
    // was 5-8% slower in cache).
    PrefetchNextRun<DOut>(y, i0, n, stream);
    const int64_t head = HeadElements<DOut>(y, i0, n, stream);
    for (int64_t i = 0; i < head;) {
      const int rest = static_cast<int>(std::min<int64_t>(W, head - i));
      const Lanes l = compute(i, rest);
      const F v = test_cancel ? FixCancelling<DOut>(
                                    l.y, l.beta, [&]() NORMSERVE_LAMBDA_INLINE { return wide(l, i, rest); })
                              : l.y;
      S::template StorePartial<DOut>(y, i0 + i, v, rest);
      i += rest;
    }
    if (!test_cancel) {
      if constexpr (kFoldDenormals) {
        for (int64_t b0 = head; b0 < n; b0 += kCheckBlock) {
          const int64_t len = std::min(kCheckBlock, n - b0);
          typename S::Mask denormal = S::NoLanes();
          StoreLoop<DOut, true, false>(y, i0 + b0, len, stream,
                                       [&](int64_t i, int rest) NORMSERVE_LAMBDA_INLINE {
                                         const F v = compute(b0 + i, rest).y;
                                         if (rest == W) denormal = S::OrDenormalLanes(denormal, v);
                                         return v;
                                       });
          if (S::AnyLane(denormal)) {
            StoreLoop<DOut, false, false>(y, i0 + b0, len, stream,
                                          [&](int64_t i, int rest)
                                              NORMSERVE_LAMBDA_INLINE { return compute(b0 + i, rest).y; });
          }
        }
      } else {
        StoreLoop<DOut, false, false>(y, i0 + head, n - head, stream,
                                      [&](int64_t i, int rest)
                                          NORMSERVE_LAMBDA_INLINE { return compute(head + i, rest).y; });
      }
      return;
    }
    // kRangeGap: the block's full vectors are tested together
    // (RangeGapFold), a superset of their own tests.
    constexpr bool kRangeGap = kFoldDenormals && S::kRangeGap;
    for (int64_t b0 = head; b0 < n; b0 += kCheckBlock) {
      const int64_t len = std::min(kCheckBlock, n - b0);
      typename S::G gap = S::GapInit();
      [[maybe_unused]] auto range_gap = RangeGapInit();
      StoreLoop<DOut, kFoldDenormals, false>(
          y, i0 + b0, len, stream, [&](int64_t i, int rest) NORMSERVE_LAMBDA_INLINE {
            const Lanes l = compute(b0 + i, rest);
            if constexpr (kRangeGap) {
              if (rest == W) {
                S::RangeGapFold(range_gap, l.y, l.beta);
              } else {
                gap = S::GapMax(gap, l.y, l.beta);
              }
            } else if constexpr (kFoldDenormals) {
              gap = rest == W ? S::GapMaxOrSubnormal(gap, l.y, l.beta, kCancelLog2<DOut>)
                              : S::GapMax(gap, l.y, l.beta);
            } else {
              gap = S::GapMax(gap, l.y, l.beta);
            }
            return l.y;
          });
      if constexpr (kRangeGap) gap = S::GapMaxRange(gap, range_gap, kCancelLog2<DOut>);
      if (S::GapAbove(gap, kCancelLog2<DOut>)) {
        StoreLoop<DOut, false, false>(
            y, i0 + b0, len, stream, [&](int64_t i, int rest) NORMSERVE_LAMBDA_INLINE {
              const Lanes l = compute(b0 + i, rest);
              return FixCancelling<DOut>(l.y, l.beta,
                                         [&]() NORMSERVE_LAMBDA_INLINE { return wide(l, b0 + i, rest); });
            });
      }
    }
  }

  // What the output pass prefetches of the input at element i: ahead + i *
  // size (kWholeRow), ahead + i * size / 2 (kHalfRow: FLOAT32 with
  // kSplitPrefetch) or nothing (kNoRow: half types with kSplitPrefetch).
  // ahead_residual, where not nullptr, is prefetched as with kWholeRow.
  enum OutputPrefetch { kWholeRow, kHalfRow, kNoRow };
  template <DType DIn, bool kRms>
  static constexpr OutputPrefetch kOutputPrefetch = !kSplitPrefetch<kRms>             ? kWholeRow
                                                    : kStatsPrefetchDivisor<DIn> == 2 ? kHalfRow
                                                                                      : kNoRow;
  // The shapes models use (FLOAT32 gamma, FLOAT32 beta or none, no unit
  // offset) get output loops with those choices fixed at compile time
  // (NormalizeRowT, ShortHalfRows): tested in the loop, they cost a quarter
  // of the pass.
  enum ParamShape { kAnyParams, kGammaF32, kGammaBetaF32 };
  static ParamShape ShapeOf(const RowParams& prm) {
    if (prm.gamma == nullptr || !prm.gamma_f32 || prm.unit_offset) return kAnyParams;
    if (prm.beta == nullptr) return kGammaF32;
    return prm.beta_f32 ? kGammaBetaF32 : kAnyParams;
  }

  // The output passes' first step, (v - pivot) * rstd - correction.
  // kUncentered (RMSNorm: pivot and correction 0, or NaN only together with
  // rstd): v * rstd, the same bits in two fewer operations a vector pair.
  template <bool kUncentered = false>
  NORMSERVE_INLINE static F Standardize(F v, [[maybe_unused]] F pivot, F rstd,
                                        [[maybe_unused]] F correction) {
    if constexpr (kUncentered) return S::Mul(v, rstd);
    return S::MulSub(S::Sub(v, pivot), rstd, correction);
  }

  // kUncentered: Standardize's, for RMSNorm rows.
  template <DType DIn, DType DOut, OutputPrefetch kPrefetch = kWholeRow, bool kUncentered = false>
  static void NormalizeRow(const void* x, void* y, int64_t i0, int64_t n, const GroupTransform& t,
                           const RowParams& prm, bool stream, const char* ahead, const char* ahead_residual) {
    switch (ShapeOf(prm)) {
      case kGammaBetaF32:
        return NormalizeRowT<DIn, DOut, kGammaBetaF32, kPrefetch, kUncentered>(x, y, i0, n, t, prm, stream,
                                                                               ahead, ahead_residual);
      case kGammaF32:
        return NormalizeRowT<DIn, DOut, kGammaF32, kPrefetch, kUncentered>(x, y, i0, n, t, prm, stream, ahead,
                                                                           ahead_residual);
      case kAnyParams:
        break;
    }
    NormalizeRowT<DIn, DOut, kAnyParams, kPrefetch, kUncentered>(x, y, i0, n, t, prm, stream, ahead,
                                                                 ahead_residual);
  }

  template <DType DIn, DType DOut, ParamShape kShape, OutputPrefetch kPrefetch, bool kUncentered>
  static void NormalizeRowT(const void* x, void* y, int64_t i0, int64_t n, const GroupTransform& t,
                            const RowParams& prm, bool stream, const char* ahead,
                            const char* ahead_residual) {
    const F p = S::Set1(t.pivot), rs = S::Set1(t.rstd), corr = S::Set1(t.correction), one = S::Set1(1.0f);
    // Locals, not prm's fields: the output stores could alias prm, which
    // would make the compiler reload every field in every iteration.
    constexpr bool kFixed = kShape != kAnyParams;
    const bool has_gamma = kFixed || prm.gamma != nullptr;
    const bool has_beta = kShape == kGammaBetaF32 || (!kFixed && prm.beta != nullptr);
    const bool unit_offset = !kFixed && prm.unit_offset;
    const bool gamma_f32 = kFixed || prm.gamma_f32, beta_f32 = kFixed || prm.beta_f32;
    const void* const gamma_data = prm.gamma;
    const void* const beta_data = prm.beta;
    const int64_t gamma_offset = prm.gamma_offset, beta_offset = prm.beta_offset;
    constexpr int64_t kElem = static_cast<int64_t>(DTypeSize(DIn));
    // Vector [i, i + rest) in float; it also prefetches the row ahead.
    auto compute = [&](int64_t i, int rest) NORMSERVE_LAMBDA_INLINE {
      if constexpr (kPrefetch != kNoRow)
        __builtin_prefetch(ahead + i * kElem / (kPrefetch == kHalfRow ? 2 : 1), 0, 3);
      if (ahead_residual != nullptr) __builtin_prefetch(ahead_residual + i * kElem, 0, 3);
      Lanes l;
      l.v = LoadSome<DIn>(x, i0 + i, rest);
      const F out = Standardize<kUncentered>(l.v, p, rs, corr);
      l.gamma = has_gamma ? LoadParamSome<DIn>(gamma_data, gamma_f32, gamma_offset + i, rest) : one;
      const F g = has_gamma && unit_offset ? S::Add(l.gamma, one) : l.gamma;
      if (!has_beta) {
        l.beta = S::Zero();
        l.y = has_gamma ? S::Mul(out, g) : out;
        return l;
      }
      // A partial vector's lanes past the end load b = 0 and never count as cancelling.
      l.beta = LoadParamSome<DIn>(beta_data, beta_f32, beta_offset + i, rest);
      l.y = has_gamma ? S::MulAdd(out, g, l.beta) : S::Add(out, l.beta);
      return l;
    };
    CheckedStoreLoop<DOut>(
        y, i0, n, stream, NeedsCancelTest<DOut>(has_beta, prm.float_beta_large), RstdBeyondFloat(t), compute,
        [&](const Lanes& l, int64_t, int)
            NORMSERVE_LAMBDA_INLINE { return WideAffine(l.v, t, has_gamma, l.gamma, unit_offset, l.beta); });
  }

  // One channel's run of elements with scalar gamma / beta (GROUP, INSTANCE,
  // BATCH). `gamma` already includes the unit offset (exactly, in double).
  template <DType DIn, DType DOut>
  static void NormalizeSegment(const void* x, void* y, int64_t i0, int64_t n, const GroupTransform& t,
                               bool has_gamma, double gamma, bool has_beta, double beta, bool stream) {
    const F p = S::Set1(t.pivot), rs = S::Set1(t.rstd), corr = S::Set1(t.correction);
    const F g = S::Set1(static_cast<float>(gamma)), b = S::Set1(static_cast<float>(beta));
    // b is the same in every lane; past a partial vector's end, whose lanes
    // are not stored and must not count as cancelling, y and b become 0.
    auto compute = [&](int64_t i, int rest) NORMSERVE_LAMBDA_INLINE {
      Lanes l;
      l.v = LoadSome<DIn>(x, i0 + i, rest);
      l.gamma = g;
      const F out = Standardize(l.v, p, rs, corr);
      const F y_vec = !has_beta ? (has_gamma ? S::Mul(out, g) : out)
                                : (has_gamma ? S::MulAdd(out, g, b) : S::Add(out, b));
      l.y = rest == W ? y_vec : S::KeepFirst(y_vec, rest);
      l.beta = rest == W ? b : S::KeepFirst(b, rest);
      return l;
    };
    const bool beta_large = !(std::fabs(beta) <= static_cast<double>(kFloatBetaUnchecked));
    CheckedStoreLoop<DOut>(y, i0, n, stream, NeedsCancelTest<DOut>(has_beta, beta_large), RstdBeyondFloat(t),
                           compute, [&](const Lanes& l, int64_t, int) NORMSERVE_LAMBDA_INLINE {
                             return WideSegment(l.v, t, has_gamma, gamma, has_beta ? beta : 0.0);
                           });
  }

  __attribute__((noinline)) static F WideSegment(F v, const GroupTransform& t, bool has_gamma, double gamma,
                                                 double beta) {
    using D = typename S::D;
    const D mean = S::DSet1(t.mean_wide), rs = S::DSet1(t.rstd_wide);
    const D g = S::DSet1(has_gamma ? gamma : 1.0), b = S::DSet1(beta);
    D lo, hi;
    S::Widen(v, &lo, &hi);
    return S::Narrow(S::DMulAdd(S::DMul(S::DSub(lo, mean), rs), g, b),
                     S::DMulAdd(S::DMul(S::DSub(hi, mean), rs), g, b));
  }

  // h = round(x + r) over [i0, i0 + n), written to h.
  template <DType D>
  static void ResidualPass(const void* x, const void* r, void* h, int64_t i0, int64_t n) {
    int64_t i = 0;
    for (; i + W <= n; i += W) {
      S::template Store<D>(h, i0 + i, S::Add(S::template Load<D>(x, i0 + i), S::template Load<D>(r, i0 + i)));
    }
    if (i < n) {
      const int rest = static_cast<int>(n - i);
      const F v =
          S::Add(S::template LoadPartial<D>(x, i0 + i, rest), S::template LoadPartial<D>(r, i0 + i, rest));
      S::template StorePartial<D>(h, i0 + i, v, rest);
    }
  }

  // FLOAT32 LayerNorm rows of at most kShortFloatVectors vectors where
  // float_stats allows float sums (see ShortRowSum), one row at a time, each
  // with its own reductions and double arithmetic: rows are independent, so
  // the core overlaps a few of them, and their reads from memory come at an
  // even pace. Tried and dropped, on 128 and 256 columns: W rows at a time
  // with their reductions done together (a transpose) was as fast in cache
  // but half a copy's speed out of cache, its reads in bursts with the
  // memory idle in between (pipelining three such groups row by row did no
  // better), and rows held in registers (a width fixed at compile time) were
  // no faster than these loops. The output pass is NormalizeRowT's
  // arithmetic (absent gamma is 1, absent beta leaves a multiply: the same
  // bits) with gamma and beta from one buffer: calling NormalizeRow for each
  // row instead cost 10-12% (driver, in cache, 128 columns 28.4 -> 31.7 ns a
  // row, 512 columns 77 -> 85). Rows whose rstd is beyond float
  // (RstdBeyondFloat) go through NormalizeRow.
  // RMSNorm rows (kRms, eleventh session) take the same row loop with one
  // statistics pass (ShortRmsTransform: within 14u, where SquaresPass allows
  // 2^-19). The output pass is NormalizeRow's arithmetic with pivot and
  // correction 0. kPrefetch: the output pass prefetches the rows ahead
  // (kShortFloatPrefetch).
  template <bool kRms, bool kResidual, bool kHasBeta, bool kPrefetch>
  static void ShortFloatRows(const PreparedProblem& pp, int64_t begin, int64_t end) {
    constexpr DType D = DType::kFloat32;
    const NormProblem& p = *pp.problem;
    const int64_t cols = pp.unit_length;
    const void* x = p.input.data;
    const void* r = p.residual.data;
    void* h = p.out.residual_out;
    const void* values = kResidual ? static_cast<const void*>(h) : x;
    float* const y = static_cast<float*>(p.out.output);
    float* const rstd_out = p.out.rstd;
    const bool stream = pp.stream_output;
    const float epsilon = p.epsilon;
    const double inv_dn = 1.0 / static_cast<double>(cols);
    const float inv_cols = 1.0f / static_cast<float>(cols);
    // One row's gamma (1 where absent, 1 + gamma added in float with
    // unit_offset) and beta: float_stats rules out per-row parameters, and
    // FLOAT32 input means FLOAT32 parameters.
    alignas(64) float gamma[(kShortFloatVectors + 1) * W], beta[(kShortFloatVectors + 1) * W];
    int64_t e = 0;
    for (; e < cols; e += W) {
      const int rest = ShortLanes(cols, e);
      F g = p.gamma.present() ? LoadSome<D>(p.gamma.data, e, rest) : S::Set1(1.0f);
      if (p.gamma.present() && p.unit_offset) g = S::Add(g, S::Set1(1.0f));
      S::template Store<D>(gamma, e, g);
      if constexpr (kHasBeta) S::template Store<D>(beta, e, LoadSome<D>(p.beta.data, e, rest));
    }
    // With streaming stores the output pass's vectors can start anywhere in
    // the row (StoreLoop), so a vector's load can reach W - 1 elements past
    // it: one more vector, of zeros.
    S::template Store<D>(gamma, e, S::Zero());
    S::template Store<D>(beta, e, S::Zero());
    const RowParams prm = ProblemRowParams(pp);  // for the rows that take NormalizeRow
    // Rows starting before this byte prefetch kShortFloatPrefetchBytes on.
    const int64_t prefetch_ends = (end * cols) * 4 - kShortFloatPrefetchBytes - cols * 4;
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i0 = row * cols;
      GroupTransform t;
      if constexpr (kRms) {
        t = ShortRmsTransform<D, kResidual>(x, r, h, i0, cols, inv_dn, epsilon);
      } else {
        const float pivot = S::ReduceAdd(ShortRowSum<kResidual>(x, r, h, i0, cols)) * inv_cols;
        const F pivot_v = S::Set1(pivot);
        const double q = ShortLaneSum(ShortRowCentered<true>(values, i0, cols, pivot_v), cols);
        if (__builtin_expect(MeanPivotKept(pivot, q, static_cast<double>(cols)), 1)) {
          const double var = q * inv_dn;
          t = MakeTransformWithRstd(pivot, var, RstdOf(var, epsilon), true);
        } else {
          const F sum_part = ShortRowCentered<false>(values, i0, cols, pivot_v);
          t = ShortRowTransform(values, i0, cols, pivot, sum_part, q, inv_dn, epsilon);
        }
      }
      if (rstd_out != nullptr) rstd_out[row] = t.rstd;
      if (__builtin_expect(RstdBeyondFloat(t), 0)) {
        NormalizeRow<D, D>(values, y, i0, cols, t, prm, stream, nullptr, nullptr);
        continue;
      }
      const F pv = S::Set1(t.pivot), rs = S::Set1(t.rstd), corr = S::Set1(t.correction);
      // Near the end of the range the row itself, which is in L1 by now
      // (never running past the range saves the bandwidth).
      const char* ahead =
          static_cast<const char*>(x) + i0 * 4 + (i0 * 4 <= prefetch_ends ? kShortFloatPrefetchBytes : 0);
      StoreLoop<D>(y, i0, cols, stream, [&](int64_t i, int rest) NORMSERVE_LAMBDA_INLINE {
        if constexpr (kPrefetch) __builtin_prefetch(ahead + i * 4, 0, 3);
        const F out = Standardize<kRms>(LoadSome<D>(values, i0 + i, rest), pv, rs, corr);
        const F gv = S::template Load<D>(gamma, i);
        if constexpr (kHasBeta) return S::MulAdd(out, gv, S::template Load<D>(beta, i));
        return S::Mul(out, gv);
      });
    }
  }

  // Short FLOAT16 / BFLOAT16 rows, at most kShortFloatVectors vectors
  // (RMSNorm: kShortHalfRmsVectors), with the output in the input's dtype,
  // one at a time as ShortFloatRows does them:
  // - RMSNorm (eleventh session) where float_stats allows (gamma and beta
  //   one row's worth), with ShortRmsTransform's statistics.
  // - LayerNorm (twelfth session, where kShortHalfLayerRows) with any
  //   parameters, with the statistics the grouped path gives a short row
  //   (CenteredSums, ChunkMoments: the same bits).
  // The output pass is NormalizeRowT's (its double fallback where beta
  // cancels and its denormal tests). Before, such rows went four at a time
  // through the general pass, slower than LayerNorm's rows out of cache.
  // Gamma and beta are loaded where they are, as NormalizeRowT does: copying
  // them to float buffers first (as ShortFloatRows does) was no faster out of
  // cache and slower for one row (BFLOAT16 RMSNorm, 512 columns: 156-244 ns
  // against 119-128); calling NormalizeRow for the output pass was slower at
  // 128 columns out of cache (28.0-36.2 GB/s against 37.3-43.7, BFLOAT16
  // RMSNorm, 2 threads).
  // The parameter shapes are fixed at compile time where NormalizeRow fixes
  // them (kShape; ShortHalfRowsAnyShape picks): tested in the loop, the
  // compiler kept the tests and reloaded gamma's address there. run_driver,
  // BFLOAT16 RMSNorm with FLOAT32 gamma, 3-4 alternating runs, ns a row: in
  // cache, one thread, 512 columns 58.9-60.1 -> 50.4-50.6, 128 columns
  // 19.8-20.5 -> 17.2-17.8; out of cache, 2 threads, 512 columns 34-48 ->
  // 31-38, 128 columns 11.0-11.9 -> 9.4-10.2. FLOAT16 was level (512
  // columns, 51.2-52.3 -> 51.0-51.1 in cache).
  template <DType DIn, DType DOut, bool kRms, bool kResidual, ParamShape kShape>
  static void ShortHalfRows(const PreparedProblem& pp, int64_t begin, int64_t end) {
    const NormProblem& p = *pp.problem;
    const int64_t cols = pp.unit_length;
    const void* x = p.input.data;
    const void* r = p.residual.data;
    void* h = p.out.residual_out;
    const void* values = kResidual ? static_cast<const void*>(h) : x;
    void* const y = p.out.output;
    const bool stream = pp.stream_output;
    const double inv_dn = 1.0 / static_cast<double>(cols);
    constexpr bool kFixed = kShape != kAnyParams;
    const bool has_gamma = kFixed || p.gamma.present();
    const bool has_beta = kShape == kGammaBetaF32 || (!kFixed && p.beta.present());
    const bool unit_offset = !kFixed && p.unit_offset;
    RowParams prm = ProblemRowParams(pp);
    const bool test_cancel = NeedsCancelTest<DOut>(has_beta, pp.float_beta_large);
    const void* const gamma_data = prm.gamma;
    const void* const beta_data = prm.beta;
    const bool gamma_f32 = kFixed || prm.gamma_f32, beta_f32 = kFixed || prm.beta_f32;
    const F one = S::Set1(1.0f);
    auto transform = [&](int64_t row) NORMSERVE_LAMBDA_INLINE {
      const int64_t i0 = row * cols;
      GroupTransform t;
      if constexpr (kRms) {
        t = ShortRmsTransform<DIn, kResidual>(x, r, h, i0, cols, inv_dn, p.epsilon);
      } else {
        const Moments mo =
            ChunkMoments(CenteredSums<DIn, kResidual, false>(x, r, h, i0, cols, nullptr), cols);
        const double var = mo.m2 / mo.count;
        t = MakeTransformWithRstd(mo.mean, var, RstdOf(var, p.epsilon),
                                  std::isfinite(mo.mean) && std::isfinite(mo.m2));
        if (p.out.mean != nullptr) p.out.mean[row] = t.mean_out;
      }
      if (p.out.rstd != nullptr) p.out.rstd[row] = t.rstd_out;
      return t;
    };
    // Software-pipelined by a row, as LayerRows is: the next row's
    // statistics (its reductions, square root and division) before this
    // row's output pass, whose vector work then hides their latency.
    // run_driver, RMSNorm with FLOAT32 gamma, in cache, one thread, ns a row:
    // BFLOAT16 512 columns 58.6-60.4 -> 44.1-44.5 (one run of three 57),
    // FLOAT16 512 columns 51.2-51.7 -> 33.5-34.0 (one 47), FLOAT16 128
    // columns 16.7-21.7 -> 14.0-14.1 (one 19.7), BFLOAT16 128 level. Out of
    // cache, 2 threads, 6 alternating runs, level: BFLOAT16 512 columns
    // 30.2-35.1 -> 30.6-38.9, FLOAT16 30.1-34.2 -> 31.2-38.8. The benchmark
    // (3 rounds, offset 16) frac_of_copy: BFLOAT16 128 columns 0.66-0.76 ->
    // 0.78-0.80, 512 columns 0.72-0.85 -> 0.78-0.85, FLOAT16 128 columns
    // 0.76-0.89 -> 0.82-0.96, 512 columns 0.88-0.98 -> 0.81-0.96.
    if (begin >= end) return;
    GroupTransform next = transform(begin);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i0 = row * cols;
      const GroupTransform t = next;
      if (row + 1 < end) next = transform(row + 1);
      // RMSNorm: float_stats, so gamma and beta are one row's worth.
      const int64_t gamma_offset = kRms || !has_gamma ? 0 : pp.gamma_rows.Offset(row);
      const int64_t beta_offset = kRms || !has_beta ? 0 : pp.beta_rows.Offset(row);
      if (__builtin_expect(RstdBeyondFloat(t), 0)) {
        prm.gamma_offset = gamma_offset;
        prm.beta_offset = beta_offset;
        NormalizeRow<DIn, DOut>(values, y, i0, cols, t, prm, stream, nullptr, nullptr);
        continue;
      }
      const F pv = S::Set1(t.pivot), rs = S::Set1(t.rstd), corr = S::Set1(t.correction);
      auto compute = [&](int64_t i, int rest) NORMSERVE_LAMBDA_INLINE {
        Lanes l;
        l.v = LoadSome<DIn>(values, i0 + i, rest);
        const F out = Standardize<kRms>(l.v, pv, rs, corr);
        l.gamma = has_gamma ? LoadParamSome<DIn>(gamma_data, gamma_f32, gamma_offset + i, rest) : one;
        const F g = has_gamma && unit_offset ? S::Add(l.gamma, one) : l.gamma;
        l.beta = has_beta ? LoadParamSome<DIn>(beta_data, beta_f32, beta_offset + i, rest) : S::Zero();
        l.y = has_beta ? S::MulAdd(out, g, l.beta) : S::Mul(out, g);
        return l;
      };
      CheckedStoreLoop<DOut>(y, i0, cols, stream, test_cancel, /*all_careful=*/false, compute,
                             [&](const Lanes& l, int64_t, int) NORMSERVE_LAMBDA_INLINE {
                               return WideAffine(l.v, t, has_gamma, l.gamma, unit_offset, l.beta);
                             });
    }
  }
  template <DType DIn, DType DOut, bool kRms, bool kResidual>
  static void ShortHalfRowsAnyShape(const PreparedProblem& pp, int64_t begin, int64_t end) {
    switch (ShapeOf(ProblemRowParams(pp))) {
      case kGammaBetaF32:
        return ShortHalfRows<DIn, DOut, kRms, kResidual, kGammaBetaF32>(pp, begin, end);
      case kGammaF32:
        return ShortHalfRows<DIn, DOut, kRms, kResidual, kGammaF32>(pp, begin, end);
      case kAnyParams:
        break;
    }
    ShortHalfRows<DIn, DOut, kRms, kResidual, kAnyParams>(pp, begin, end);
  }
  // Whether short half-type LayerNorm rows take ShortHalfRows: measured
  // faster on Zen 3 (AVX2, twelfth session). On AVX-512 (Zen 5, seventeenth
  // session, ShortHalfRows pipelined, 3 alternating runs, ns a row) it was
  // slower in cache, one thread: BFLOAT16 128 columns 41.6-42.3 -> 49.6-50.8,
  // FLOAT16 512 columns 77-98 -> 87-107 (BFLOAT16 512 columns 70-99 ->
  // 82-99, 1024 level); out of cache, 2 threads, level (BFLOAT16 128 columns
  // 18.4-22.0 -> 17.4-20.8, 512 columns 48.7-55.4 -> 44.4-57.3). So AVX-512
  // keeps the grouped path.
  static constexpr bool kShortHalfLayerRows = W == 8;

  template <DType DIn, DType DOut, bool kRms, bool kResidual>
  static void LayerRows(const PreparedProblem& pp, int64_t begin, int64_t end) {
    const NormProblem& p = *pp.problem;
    const int64_t cols = pp.unit_length;
    if constexpr (kShortFloatRows && DIn == DType::kFloat32 && DOut == DType::kFloat32) {
      if (pp.float_stats && cols <= kShortFloatVectors * W) {
        constexpr bool kCanPrefetch = kShortFloatPrefetch && !kResidual;
        if (kCanPrefetch && pp.stream_output) {
          return p.beta.present() ? ShortFloatRows<kRms, kResidual, true, kCanPrefetch>(pp, begin, end)
                                  : ShortFloatRows<kRms, kResidual, false, kCanPrefetch>(pp, begin, end);
        }
        return p.beta.present() ? ShortFloatRows<kRms, kResidual, true, false>(pp, begin, end)
                                : ShortFloatRows<kRms, kResidual, false, false>(pp, begin, end);
      }
    }
    if constexpr (kShortFloatRows && DIn != DType::kFloat32 && DOut == DIn) {
      if constexpr (kRms) {
        if (pp.float_stats && cols <= kShortHalfRmsVectors * W)
          return ShortHalfRowsAnyShape<DIn, DOut, true, kResidual>(pp, begin, end);
      } else if constexpr (kShortHalfLayerRows) {
        if (cols <= kShortFloatVectors * W)
          return ShortHalfRowsAnyShape<DIn, DOut, false, kResidual>(pp, begin, end);
      }
    }
    const void* x = p.input.data;
    const void* r = p.residual.data;
    void* h = p.out.residual_out;
    const void* normalized = kResidual ? static_cast<const void*>(h) : x;
    RowParams prm = ProblemRowParams(pp);
    const bool float_stats = pp.float_stats;
    constexpr int64_t kElem = static_cast<int64_t>(DTypeSize(DIn));
    // Mean and variance of a row (RMS: 0 and the mean square), and whether they are finite.
    struct RowMoments {
      double mean = 0, var = 0;
      bool finite = false;
    };
    const int64_t group = cols * kElem <= kShortRowBytes ? kShortRowGroup : 1;
    constexpr OutputPrefetch kOutPrefetch = kOutputPrefetch<DIn, kRms>;
    const int64_t ahead_bytes =
        std::max(kOutPrefetch == kHalfRow ? std::min(2 * group * cols * kElem, kHalfRowPrefetchMaxBytes)
                                          : 2 * group * cols * kElem,
                 kRowPrefetchMinBytes);
    constexpr bool kSplit = kSplitPrefetch<kRms>;
    // The input `bytes` on from the row at i0 while a row's worth from there
    // stays in the range; past that the row itself, which prefetches then
    // re-touch (never running past the range saves the bandwidth).
    auto ahead_of = [&](int64_t i0, int64_t bytes) NORMSERVE_LAMBDA_INLINE {
      const bool fits = (i0 + cols) * kElem + bytes <= end * cols * kElem;
      return static_cast<const char*>(x) + i0 * kElem + (fits ? bytes : 0);
    };
    // kSplitPrefetch: what the statistics of a row prefetch, the row
    // ahead_bytes on (its first half for FLOAT32: kStatsPrefetchDivisor).
    auto stats_prefetch = [&](int64_t i0) NORMSERVE_LAMBDA_INLINE { return ahead_of(i0, ahead_bytes); };
    auto moments = [&](int64_t row) NORMSERVE_LAMBDA_INLINE {
      const int64_t i0 = row * cols;
      RowMoments m;
      if constexpr (kRms) {
        const double sum_squares = RunSumSquares<DIn, kResidual>(x, r, h, i0, cols, pp.wide_squares);
        m.var = sum_squares / static_cast<double>(cols);
        m.finite = std::isfinite(sum_squares);
      } else {
        const Moments mo =
            RunMoments<DIn, kResidual, kSplit>(x, r, h, i0, cols, stats_prefetch(i0), float_stats);
        m.mean = mo.mean;
        m.var = mo.m2 / mo.count;
        m.finite = std::isfinite(mo.mean) && std::isfinite(mo.m2);
      }
      return m;
    };
    // Software-pipelined by a group of rows: the statistics of the next
    // group are computed before the output passes of this one, so the
    // latency of a row's reductions, divisions and square root overlaps other
    // rows' vector work rather than stalling it. Short rows, where that chain
    // costs as much as the vector work, go four to a group: their chains are
    // independent and run side by side. Each row is still computed exactly as
    // alone; the group size depends only on the row length. The output
    // passes prefetch the group after next.
    GroupTransform transforms[2][kShortRowGroup];
    GroupTransform* cur = transforms[0];
    GroupTransform* next = transforms[1];
    // The rows' moments first, then their square roots and divisions all at
    // once (a fixed trip count, so the compiler uses vector instructions).
    // Short LayerNorm rows are a single chunk: their sums first, then their
    // means and variances (ChunkMoments, as RunMoments does for one chunk)
    // in one fixed-trip loop, so the bits are those of a row alone.
    static_assert(kShortRowBytes / 2 <= kStatsChunk, "a short row is one chunk");
    auto short_moments = [&](int64_t first, int64_t count, RowMoments* m) NORMSERVE_LAMBDA_INLINE {
      ChunkSums sums[kShortRowGroup] = {};
      for (int64_t j = 0; j < count; ++j) {
        const int64_t i0 = (first + j) * cols;
        sums[j] = CenteredSums<DIn, kResidual, kSplit>(x, r, h, i0, cols, stats_prefetch(i0));
      }
      Moments mo[kShortRowGroup];
      for (int64_t j = 0; j < kShortRowGroup; ++j) mo[j] = ChunkMoments(sums[j], cols);
      for (int64_t j = 0; j < count; ++j) {
        m[j].mean = mo[j].mean;
        m[j].var = mo[j].m2 / mo[j].count;
        m[j].finite = std::isfinite(mo[j].mean) && std::isfinite(mo[j].m2);
      }
    };
    auto group_stats = [&](int64_t first, GroupTransform* out) NORMSERVE_LAMBDA_INLINE {
      const int64_t count = std::min(end, first + group) - first;
      RowMoments m[kShortRowGroup];
      double var[kShortRowGroup] = {}, rstd[kShortRowGroup];
      if (!kRms && group == kShortRowGroup) {
        short_moments(first, count, m);
      } else {
        for (int64_t j = 0; j < count; ++j) m[j] = moments(first + j);
      }
      for (int64_t j = 0; j < count; ++j) var[j] = m[j].var;
      for (int64_t j = 0; j < kShortRowGroup; ++j) rstd[j] = RstdOf(var[j], p.epsilon);
      for (int64_t j = 0; j < count; ++j) {
        out[j] = MakeTransformWithRstd(m[j].mean, m[j].var, rstd[j], m[j].finite);
        // RMS does not center (with rstd infinite, 0 * rstd would make the correction NaN).
        if (kRms && m[j].finite) out[j].pivot = out[j].correction = 0.0f;
      }
    };
    group_stats(begin, cur);
    for (int64_t first = begin; first < end; first += group) {
      if (first + group < end) group_stats(first + group, next);
      const int64_t last = std::min(end, first + group);
      for (int64_t row = first; row < last; ++row) {
        const int64_t i0 = row * cols;
        const GroupTransform& t = cur[row - first];
        // Prefetches never fault, so running past the last row would be
        // harmless; the last groups of the range re-touch themselves
        // instead, to save the bandwidth.
        // kHalfRow: the half row that follows what the statistics of the
        // next group prefetch (the second half of the row they ask for, or
        // under kHalfRowPrefetchMaxBytes the first half of the row after).
        const bool more = first + 2 * group < end;
        const char* ahead =
            kOutPrefetch == kHalfRow    ? ahead_of(i0, ahead_bytes + (group * cols + cols / 2) * kElem)
            : kOutPrefetch == kWholeRow ? static_cast<const char*>(x) + i0 * kElem + (more ? ahead_bytes : 0)
                                        : nullptr;
        const char* ahead_residual =
            kResidual && more ? static_cast<const char*>(r) + i0 * kElem + ahead_bytes : nullptr;
        if (prm.gamma != nullptr) prm.gamma_offset = pp.gamma_rows.Offset(row);
        if (prm.beta != nullptr) prm.beta_offset = pp.beta_rows.Offset(row);
        NormalizeRow<DIn, DOut, kOutPrefetch, kRms>(normalized, p.out.output, i0, cols, t, prm,
                                                    pp.stream_output, ahead, ahead_residual);
        if (!kRms && p.out.mean != nullptr) p.out.mean[row] = t.mean_out;
        if (p.out.rstd != nullptr) p.out.rstd[row] = t.rstd_out;
      }
      std::swap(cur, next);
    }
  }

  template <DType DIn, DType DOut, bool kResidual>
  static void GroupUnits(const PreparedProblem& pp, int64_t begin, int64_t end) {
    const NormProblem& p = *pp.problem;
    const ProblemGeometry& geo = pp.geometry;
    const int64_t channels_per_group = geo.channels / geo.num_groups;
    const void* x = p.input.data;
    void* h = p.out.residual_out;
    const void* normalized = kResidual ? static_cast<const void*>(h) : x;
    const int64_t group_bytes = geo.group_size * static_cast<int64_t>(DTypeSize(DIn));
    // Short channel runs ([N, C] or [N, C, S] with small S): a group is a row
    // with per-element gamma and beta (the parameters themselves for S = 1,
    // spread over the [C, S] row otherwise), which the row pass does in
    // vectors: elementwise the same arithmetic as the segments.
    const bool as_row = geo.spatial <= kShortSpatial;
    const bool spread = geo.spatial > 1;
    RowParams prm;
    prm.gamma = spread && p.gamma.present() ? pp.spread_gamma.data() : p.gamma.data;
    prm.gamma_f32 = spread || p.gamma.dtype == DType::kFloat32;
    prm.beta = spread && p.beta.present() ? pp.spread_beta.data() : p.beta.data;
    prm.beta_f32 = spread || p.beta.dtype == DType::kFloat32;
    prm.unit_offset = p.unit_offset;
    prm.float_beta_large = pp.float_beta_large;
    for (int64_t group = begin; group < end; ++group) {
      const int64_t i0 = group * geo.group_size;
      if (group + 1 < end)
        PrefetchSpan(static_cast<const char*>(x) + i0 * static_cast<int64_t>(DTypeSize(DIn)) + group_bytes,
                     group_bytes);
      const Moments m = RunMoments<DIn, kResidual>(x, p.residual.data, h, i0, geo.group_size);
      const GroupTransform t =
          MakeTransform(m.mean, m.m2 / m.count, std::isfinite(m.mean) && std::isfinite(m.m2), p.epsilon);
      const int64_t first_channel = (group % geo.num_groups) * channels_per_group;
      if (as_row) {
        prm.gamma_offset = prm.beta_offset = first_channel * geo.spatial;
        // The next group was prefetched above; the row's own prefetches re-touch it.
        const char* own = static_cast<const char*>(normalized) + i0 * static_cast<int64_t>(DTypeSize(DIn));
        NormalizeRow<DIn, DOut>(normalized, p.out.output, i0, geo.group_size, t, prm, pp.stream_output, own,
                                nullptr);
      } else {
        for (int64_t j = 0; j < channels_per_group; ++j) {
          const int64_t c = first_channel + j;
          const double g = p.gamma.present() ? LoadParamScalar(p.gamma, c, p.unit_offset) : 1.0;
          const double b = p.beta.present() ? LoadAsFloat(p.beta.data, p.beta.dtype, c) : 0.0;
          NormalizeSegment<DIn, DOut>(normalized, p.out.output, i0 + j * geo.spatial, geo.spatial, t,
                                      p.gamma.present(), g, p.beta.present(), b, pp.stream_output);
        }
      }
      if (p.out.mean != nullptr) p.out.mean[group] = t.mean_out;
      if (p.out.rstd != nullptr) p.out.rstd[group] = t.rstd_out;
    }
  }

  // BATCH_NORM segments (n, c): the channel transform is already prepared.
  // BATCH_NORM with short channel runs ([N, C] or [N, C, S], S <=
  // kShortSpatial): segments [begin, end) are normalized in vectors, run by
  // run along each [C, S] row, with the channels' transforms (and gamma and
  // beta) loaded as vectors: the per-channel arrays for S = 1, their spread
  // copies otherwise. Elementwise the same arithmetic as NormalizeSegment
  // (its double fallback per lane, with a fused last step).
  template <DType DIn, DType DOut>
  static void BatchElements(const PreparedProblem& pp, int64_t begin, int64_t end) {
    const NormProblem& p = *pp.problem;
    const int64_t spatial = pp.geometry.spatial;
    const int64_t row = pp.geometry.channels * spatial;
    const bool spread = spatial > 1;
    const bool residual = p.residual.present();
    const void* normalized = residual ? static_cast<const void*>(p.out.residual_out) : p.input.data;
    const bool has_gamma = p.gamma.present(), has_beta = p.beta.present(), unit_offset = p.unit_offset;
    const void* gamma_data = spread && has_gamma ? pp.spread_gamma.data() : p.gamma.data;
    const void* beta_data = spread && has_beta ? pp.spread_beta.data() : p.beta.data;
    const bool gamma_f32 = spread || p.gamma.dtype == DType::kFloat32;
    const bool beta_f32 = spread || p.beta.dtype == DType::kFloat32;
    const float* pivots = spread ? pp.spread_pivot.data() : pp.channel_pivot.data();
    const float* rstds = spread ? pp.spread_rstd.data() : pp.channel_rstd.data();
    const float* corrs = spread ? pp.spread_correction.data() : pp.channel_correction.data();
    const F one = S::Set1(1.0f);
    for (int64_t i0 = begin * spatial; i0 < end * spatial;) {
      // c0: the position in the [C, S] row (the channel when S = 1).
      const int64_t c0 = i0 % row;
      const int64_t n = std::min(end * spatial - i0, row - c0);
      if (residual && !pp.input_is_residual_out) {
        ResidualPass<DIn>(p.input.data, p.residual.data, p.out.residual_out, i0, n);
      }
      const float* pivot = pivots + c0;
      const float* rstd = rstds + c0;
      const float* corr = corrs + c0;
      auto compute = [&](int64_t i, int rest) NORMSERVE_LAMBDA_INLINE {
        Lanes l;
        l.v = LoadSome<DIn>(normalized, i0 + i, rest);
        const F out =
            Standardize(l.v, LoadSome<DType::kFloat32>(pivot, i, rest),
                        LoadSome<DType::kFloat32>(rstd, i, rest), LoadSome<DType::kFloat32>(corr, i, rest));
        F g = one;
        if (has_gamma) {
          g = LoadParamSome<DIn>(gamma_data, gamma_f32, c0 + i, rest);
          if (unit_offset) g = S::Add(g, one);
        }
        l.gamma = g;
        // Lanes past a partial vector's end load beta = 0: they never count as cancelling.
        l.beta = has_beta ? LoadParamSome<DIn>(beta_data, beta_f32, c0 + i, rest) : S::Zero();
        if (!has_beta) {
          l.y = has_gamma ? S::Mul(out, g) : out;
        } else {
          l.y = has_gamma ? S::MulAdd(out, g, l.beta) : S::Add(out, l.beta);
        }
        return l;
      };
      CheckedStoreLoop<DOut>(p.out.output, i0, n, pp.stream_output,
                             NeedsCancelTest<DOut>(has_beta, pp.float_beta_large), /*all_careful=*/false,
                             compute, [&](const Lanes& l, int64_t i, int rest) NORMSERVE_LAMBDA_INLINE {
                               return WideChannels(pp, l.v, l.beta, c0 + i, rest);
                             });
      i0 += n;
    }
  }

  // BatchElements' double fallback: per lane, the expression of WideSegment,
  // ((v - mean) * rstd) * g + b in double with the last step fused (as DMulAdd
  // is where FMA exists), for the `rest` elements at [C, S]-row position
  // `first` on. Vectors by value and float arrays only: no over-aligned
  // object has its address taken (AddressSanitizer's fake stack does not
  // keep 64-byte alignment).
  __attribute__((noinline)) static F WideChannels(const PreparedProblem& pp, F v, F b, int64_t first,
                                                  int rest) {
    const NormProblem& p = *pp.problem;
    float vs[W], bs[W], ws[W] = {};
    S::template Store<DType::kFloat32>(vs, 0, v);
    S::template Store<DType::kFloat32>(bs, 0, b);
    for (int j = 0; j < rest; ++j) {
      const size_t c = static_cast<size_t>((first + j) / pp.geometry.spatial);
      const double g =
          p.gamma.present() ? LoadParamScalar(p.gamma, static_cast<int64_t>(c), p.unit_offset) : 1.0;
      const double scaled = (static_cast<double>(vs[j]) - pp.channel_mean_wide[c]) * pp.channel_rstd_wide[c];
      ws[j] = static_cast<float>(std::fma(scaled, g, static_cast<double>(bs[j])));
    }
    return S::template Load<DType::kFloat32>(ws, 0);
  }

  // Whether some channel's rstd exceeds float (RstdBeyondFloat): such
  // problems keep the per-segment pass, which handles them.
  static bool AnyChannelBeyondFloat(const PreparedProblem& pp) {
    for (size_t c = 0; c < pp.channel_rstd.size(); ++c) {
      if (!std::isfinite(pp.channel_rstd[c]) && std::isfinite(pp.channel_rstd_wide[c])) return true;
    }
    return false;
  }

  template <DType DIn, DType DOut>
  static void BatchUnits(const PreparedProblem& pp, int64_t begin, int64_t end) {
    const NormProblem& p = *pp.problem;
    const ProblemGeometry& geo = pp.geometry;
    if (geo.spatial <= kShortSpatial && !AnyChannelBeyondFloat(pp))
      return BatchElements<DIn, DOut>(pp, begin, end);
    const bool residual = p.residual.present();
    const void* normalized = residual ? static_cast<const void*>(p.out.residual_out) : p.input.data;
    for (int64_t seg = begin; seg < end; ++seg) {
      const int64_t c = seg % geo.channels;
      const int64_t i0 = seg * geo.spatial;
      if (residual && !pp.input_is_residual_out) {
        ResidualPass<DIn>(p.input.data, p.residual.data, p.out.residual_out, i0, geo.spatial);
      }
      GroupTransform t;
      t.pivot = pp.channel_pivot[c];
      t.rstd = pp.channel_rstd[c];
      t.correction = pp.channel_correction[c];
      t.mean_wide = pp.channel_mean_wide[c];
      t.rstd_wide = pp.channel_rstd_wide[c];
      const double g = p.gamma.present() ? LoadParamScalar(p.gamma, c, p.unit_offset) : 1.0;
      const double b = p.beta.present() ? LoadAsFloat(p.beta.data, p.beta.dtype, c) : 0.0;
      NormalizeSegment<DIn, DOut>(normalized, p.out.output, i0, geo.spatial, t, p.gamma.present(), g,
                                  p.beta.present(), b, pp.stream_output);
    }
  }

  // Moments of the columns [begin, end) of the [N, C * S] view: a vector of
  // columns at a time, each lane taking the rows in order with Welford's
  // update in double (one element merged per row, the factors shared by all
  // lanes). A lane's arithmetic does not depend on the lanes beside it, so the
  // result does not depend on how channels are split between threads.
  // The mean is the lane's plain sum in double over the count, as the
  // reference takes it (exact for FLOAT16 / BFLOAT16 sums), not Welford's
  // running mean: that one rounds at each step (d * (1 / count)), and an
  // element equal to the mean, whose output is exactly 0, came out as 3e-18
  // (BFLOAT16 channel -5.875, 5.375, 0.3125, -0.0625). M2 stays Welford's,
  // taken around its own mean: the two means differ by far less than the
  // spread, which changes M2 only in the second order.
  template <DType DIn, bool kResidual>
  static void ColumnMoments(const PreparedProblem& pp, int64_t begin, int64_t end, Moments* out) {
    using DV = typename S::D;
    constexpr int kHalf = S::kHasHighHalf ? W / 2 : W;
    const NormProblem& p = *pp.problem;
    const int64_t channels = pp.geometry.channels * pp.geometry.spatial;
    for (int64_t c0 = begin; c0 < end; c0 += W) {
      const int rest = static_cast<int>(std::min<int64_t>(W, end - c0));
      DV mean_lo = S::DSet1(0.0), mean_hi = S::DSet1(0.0), m2_lo = S::DSet1(0.0), m2_hi = S::DSet1(0.0);
      DV sum_lo = S::DSet1(0.0), sum_hi = S::DSet1(0.0);
      double count = 0;
      for (int64_t n = 0; n < pp.geometry.n; ++n) {
        const int64_t i0 = n * channels + c0;
        const F v = rest == W
                        ? LoadInput<DIn, kResidual>(p.input.data, p.residual.data, p.out.residual_out, i0)
                        : LoadInputPartial<DIn, kResidual>(p.input.data, p.residual.data, p.out.residual_out,
                                                           i0, rest);
        DV lo, hi;
        S::Widen(v, &lo, &hi);
        sum_lo = S::DAdd(sum_lo, lo);
        if constexpr (S::kHasHighHalf) sum_hi = S::DAdd(sum_hi, hi);
        if (n == 0) {
          mean_lo = lo;
          mean_hi = hi;
          count = 1;
          continue;
        }
        const double total = count + 1.0;
        const DV new_share = S::DSet1(1.0 / total), old_share = S::DSet1(count / total);
        const DV d_lo = S::DSub(lo, mean_lo);
        mean_lo = S::DMulAdd(d_lo, new_share, mean_lo);
        m2_lo = S::DMulAdd(S::DMul(d_lo, d_lo), old_share, m2_lo);
        if constexpr (S::kHasHighHalf) {
          const DV d_hi = S::DSub(hi, mean_hi);
          mean_hi = S::DMulAdd(d_hi, new_share, mean_hi);
          m2_hi = S::DMulAdd(S::DMul(d_hi, d_hi), old_share, m2_hi);
        }
        count = total;
      }
      double sums[W], m2s[W];
      S::DStore(sums, sum_lo);
      S::DStore(m2s, m2_lo);
      if constexpr (S::kHasHighHalf) {
        S::DStore(sums + kHalf, sum_hi);
        S::DStore(m2s + kHalf, m2_hi);
      }
      // m2 is a sum of non-negative terms (or NaN, which must stay NaN).
      for (int j = 0; j < rest; ++j) out[c0 - begin + j] = Moments{count, sums[j] / count, m2s[j], sums[j]};
    }
  }

  template <DType DIn, bool kResidual>
  static void BatchChannelStatsT(PreparedProblem& pp, int64_t begin, int64_t end) {
    const NormProblem& p = *pp.problem;
    const ProblemGeometry& geo = pp.geometry;
    constexpr int64_t kBlock = 64;
    Moments block[kBlock * kShortSpatial];
    const int64_t sp = geo.spatial;
    for (int64_t c = begin; c < end; ++c) {
      Moments m;
      if (sp <= kShortSpatial) {
        // Short channel runs: the moments of each column of the [N, C * S]
        // view (channels in blocks, so that rows are read in vectors), then
        // a channel's S columns merged in order.
        const int64_t b0 = begin + (c - begin) / kBlock * kBlock;
        if (c == b0) ColumnMoments<DIn, kResidual>(pp, b0 * sp, std::min(end, b0 + kBlock) * sp, block);
        for (int64_t j = 0; j < sp; ++j) MergeMoments(m, block[(c - b0) * sp + j]);
      } else {
        for (int64_t n = 0; n < geo.n; ++n) {
          const int64_t i0 = (n * geo.channels + c) * geo.spatial;
          MergeMoments(m, RunMoments<DIn, kResidual>(p.input.data, p.residual.data, p.out.residual_out, i0,
                                                     geo.spatial));
        }
      }
      const GroupTransform t =
          MakeTransform(m.mean, m.m2 / m.count, std::isfinite(m.mean) && std::isfinite(m.m2), p.epsilon);
      pp.channel_pivot[c] = t.pivot;
      pp.channel_rstd[c] = t.rstd;
      pp.channel_correction[c] = t.correction;
      pp.channel_mean_wide[c] = t.mean_wide;
      pp.channel_rstd_wide[c] = t.rstd_wide;
      if (p.out.mean != nullptr) p.out.mean[c] = t.mean_out;
      if (p.out.rstd != nullptr) p.out.rstd[c] = t.rstd_out;
      if (p.out.variance != nullptr) p.out.variance[c] = t.variance_out;
    }
  }

  template <DType DIn, DType DOut>
  static void RunUnitsT(const PreparedProblem& pp, int64_t begin, int64_t end) {
    const bool residual = pp.problem->residual.present();
    switch (pp.problem->kind) {
      case NormKind::kLayerNorm:
        return residual ? LayerRows<DIn, DOut, false, true>(pp, begin, end)
                        : LayerRows<DIn, DOut, false, false>(pp, begin, end);
      case NormKind::kRmsNorm:
        return residual ? LayerRows<DIn, DOut, true, true>(pp, begin, end)
                        : LayerRows<DIn, DOut, true, false>(pp, begin, end);
      case NormKind::kGroupNorm:
      case NormKind::kInstanceNorm:
        return residual ? GroupUnits<DIn, DOut, true>(pp, begin, end)
                        : GroupUnits<DIn, DOut, false>(pp, begin, end);
      case NormKind::kBatchNorm:
        return BatchUnits<DIn, DOut>(pp, begin, end);
    }
  }

  template <DType DIn>
  static void RunUnitsIn(const PreparedProblem& pp, int64_t begin, int64_t end) {
    switch (pp.problem->output_dtype) {
      case DType::kFloat32:
        return RunUnitsT<DIn, DType::kFloat32>(pp, begin, end);
      case DType::kFloat16:
        return RunUnitsT<DIn, DType::kFloat16>(pp, begin, end);
      case DType::kBFloat16:
        return RunUnitsT<DIn, DType::kBFloat16>(pp, begin, end);
    }
  }

  static void RunUnits(const PreparedProblem& pp, int64_t begin, int64_t end) {
    switch (pp.problem->input.dtype) {
      case DType::kFloat32:
        return RunUnitsIn<DType::kFloat32>(pp, begin, end);
      case DType::kFloat16:
        return RunUnitsIn<DType::kFloat16>(pp, begin, end);
      case DType::kBFloat16:
        return RunUnitsIn<DType::kBFloat16>(pp, begin, end);
    }
  }

  template <DType DIn>
  static void BatchChannelStatsIn(PreparedProblem& pp, int64_t begin, int64_t end) {
    if (pp.problem->residual.present()) {
      BatchChannelStatsT<DIn, true>(pp, begin, end);
    } else {
      BatchChannelStatsT<DIn, false>(pp, begin, end);
    }
  }

  static void BatchChannelStats(PreparedProblem& pp, int64_t begin, int64_t end) {
    switch (pp.problem->input.dtype) {
      case DType::kFloat32:
        return BatchChannelStatsIn<DType::kFloat32>(pp, begin, end);
      case DType::kFloat16:
        return BatchChannelStatsIn<DType::kFloat16>(pp, begin, end);
      case DType::kBFloat16:
        return BatchChannelStatsIn<DType::kBFloat16>(pp, begin, end);
    }
  }

  // Whether some |v| of the n values at `data` exceeds 2^log2, by the
  // cancellation test's own measure against 1 (GapMax: one load, mask,
  // subtract and max per vector; the bits of 2^log2 are those of 1 plus
  // log2 << 23). Infinities count as above; a NaN need not (it makes the
  // outputs it touches NaN on every path).
  template <DType D>
  static bool AnyMagnitudeAboveIn(const void* data, int64_t n, int log2) {
    typename S::G gap0 = S::GapInit(), gap1 = S::GapInit();
    const F one = S::Set1(1.0f);
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
      gap0 = S::GapMax(gap0, one, S::template Load<D>(data, i));
      gap1 = S::GapMax(gap1, one, S::template Load<D>(data, i + W));
    }
    for (; i < n; i += W) {
      // Lanes past the end load 0: never above.
      gap0 = S::GapMax(gap0, one, LoadSome<D>(data, i, static_cast<int>(std::min<int64_t>(W, n - i))));
    }
    return S::GapAbove(gap0, log2) || S::GapAbove(gap1, log2);
  }
  static bool AnyMagnitudeAbove(const void* data, DType dtype, int64_t n, int log2) {
    switch (dtype) {
      case DType::kFloat32:
        return AnyMagnitudeAboveIn<DType::kFloat32>(data, n, log2);
      case DType::kFloat16:
        return AnyMagnitudeAboveIn<DType::kFloat16>(data, n, log2);
      case DType::kBFloat16:
        return AnyMagnitudeAboveIn<DType::kBFloat16>(data, n, log2);
    }
    return true;
  }

  static KernelTable Table() { return KernelTable{&RunUnits, &BatchChannelStats, &AnyMagnitudeAbove}; }
};

}  // namespace
}  // namespace normserve::kernels::cpu

#undef NORMSERVE_LAMBDA_INLINE
#undef NORMSERVE_INLINE

#endif  // NORMSERVE_KERNELS_CPU_NORM_KERNELS_IMPL_H_
