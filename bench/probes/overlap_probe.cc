// overlap_probe: how far a LayerNorm-shaped kernel can get towards a copy on
// this machine, with the arithmetic the 1-ulp BFLOAT16 contract needs and
// nothing else (no fallbacks, no edge cases). Not part of the build; it backs
// the "targets" section of docs/cpu-performance.md.
//
//   g++ -O2 -march=native -pthread bench/probes/overlap_probe.cc -o /tmp/overlap_probe && /tmp/overlap_probe
//
// Needs AVX512_BF16. 128 MiB of BFLOAT16 input and output, 4096 columns, two
// threads (one half each), after a warm-up, 9 rounds each taking turns with a
// memcpy of the same bytes:
// - stats + output: per row, the statistics of the next row (sum(x) widened
//   to double, (x - pivot)^2 in float: 9 instructions per 16 elements, as
//   HalfChunkMoments), then the output pass of this row (subtract, FMS, FMA
//   with gamma and beta, the integer cancellation gap, vcvtneps2bf16 and a
//   store: about 12), as LayerRows pipelines them. Variants: the statistics
//   prefetch the row `pf` rows ahead (one line per two vectors) or not;
//   blocks of 256 elements of the two passes interleaved; 32-byte cached,
//   32-byte streaming or paired 64-byte (vcvtne2ps2bf16) stores.
// - two-pass copy: the same two passes with trivial arithmetic (a sum, then
//   an add and a store), to show what the memory schedule alone allows.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <thread>

namespace {

constexpr size_t kBytes = size_t{128} << 20;
constexpr int kCols = 4096;
constexpr size_t kRows = kBytes / 2 / kCols;

uint16_t* g_in;
uint16_t* g_out;
float* g_gamma;
float* g_beta;
volatile double g_sink;

enum Store { kCached32, kStream32, kPaired64 };
// The variant's choices are template parameters, so that the inner loops hold
// no test of them.
template <int kPfRows, bool kInterleave, Store kStore, bool kTrivial>
struct Variant {
  static constexpr int pf_rows = kPfRows;  // 0: no software prefetch
  static constexpr bool interleave = kInterleave;
  static constexpr Store store = kStore;
  static constexpr bool trivial = kTrivial;
};

__m512 Widen(const uint16_t* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}

struct Stats {
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  __m512 q = _mm512_setzero_ps();
};

void StatsVec(Stats& s, const uint16_t* p, __m512 pivot, bool trivial) {
  const __m512 v = Widen(p);
  if (trivial) {
    s.q = _mm512_add_ps(s.q, v);
    return;
  }
  s.lo = _mm512_add_pd(s.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  s.hi =
      _mm512_add_pd(s.hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  const __m512 d = _mm512_sub_ps(v, pivot);
  s.q = _mm512_fmadd_ps(d, d, s.q);
}

__m512 OutVec(__m512i& gap, const uint16_t* x, int i, __m512 p, __m512 rs, __m512 corr, bool trivial) {
  const __m512 v = Widen(x + i);
  if (trivial) return _mm512_add_ps(v, p);
  const __m512 b = _mm512_loadu_ps(g_beta + i);
  const __m512 y =
      _mm512_fmadd_ps(_mm512_fmsub_ps(_mm512_sub_ps(v, p), rs, corr), _mm512_loadu_ps(g_gamma + i), b);
  const __m512i m = _mm512_set1_epi32(0x7fffffff);
  gap = _mm512_max_epi32(gap, _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(b), m),
                                               _mm512_and_si512(_mm512_castps_si512(y), m)));
  return y;
}

template <class V>
void OutPair(V var, __m512i& gap, const uint16_t* x, uint16_t* y, int i, __m512 p, __m512 rs, __m512 corr) {
  const __m512 a = OutVec(gap, x, i, p, rs, corr, V::trivial);
  const __m512 b = OutVec(gap, x, i + 16, p, rs, corr, V::trivial);
  switch (V::store) {
    case kCached32:
      _mm256_storeu_si256((__m256i*)(y + i), (__m256i)_mm512_cvtneps_pbh(a));
      _mm256_storeu_si256((__m256i*)(y + i + 16), (__m256i)_mm512_cvtneps_pbh(b));
      break;
    case kStream32:
      _mm256_stream_si256((__m256i*)(y + i), (__m256i)_mm512_cvtneps_pbh(a));
      _mm256_stream_si256((__m256i*)(y + i + 16), (__m256i)_mm512_cvtneps_pbh(b));
      break;
    case kPaired64:
      _mm512_stream_si512((__m512i*)(y + i), (__m512i)_mm512_cvtne2ps_pbh(b, a));
      break;
  }
}

template <class V>
void RunRows(V var, uint16_t* y, const uint16_t* x, size_t rows) {
  const __m512 pivot = _mm512_set1_ps(0.1f);
  double mean = 0;
  __m512i gap_all = _mm512_setzero_si512();
  for (size_t r = 0; r < rows; ++r) {
    const uint16_t* next = x + (r + 1) * kCols;
    const bool has_next = r + 1 < rows;
    const bool prefetch = V::pf_rows > 0 && r + 1 + V::pf_rows < rows;
    const uint16_t* xo = x + r * kCols;
    uint16_t* yo = y + r * kCols;
    const __m512 p = _mm512_set1_ps(static_cast<float>(mean)), rs = _mm512_set1_ps(1.1f),
                 corr = _mm512_set1_ps(0.01f);
    Stats s;
    __m512i gap = _mm512_set1_epi32(-0x7fffffff);
    auto stats = [&](int from, int to) {
      if (!has_next) return;
      for (int i = from; i < to; i += 16) {
        if (prefetch && i % 32 == 0) __builtin_prefetch(next + V::pf_rows * kCols + i, 0, 3);
        StatsVec(s, next + i, pivot, V::trivial);
      }
    };
    auto output = [&](int from, int to) {
      for (int i = from; i < to; i += 32) OutPair(var, gap, xo, yo, i, p, rs, corr);
    };
    if (V::interleave) {
      for (int b = 0; b < kCols; b += 256) {
        stats(b, b + 256);
        output(b, b + 256);
      }
    } else {
      stats(0, kCols);
      output(0, kCols);
    }
    gap_all = _mm512_max_epi32(gap_all, gap);
    mean = _mm512_reduce_add_pd(_mm512_add_pd(s.lo, s.hi)) / kCols + _mm512_reduce_add_ps(s.q) * 1e-30;
  }
  _mm_sfence();
  g_sink = g_sink + mean + _mm512_reduce_max_epi32(gap_all);
}

template <class F>
double Seconds(F f) {
  const auto a = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

template <class V>
double TwoThreads(const V* var) {
  const size_t half = kRows / 2;
  return Seconds([&] {
    std::thread t([&] {
      if (var)
        RunRows(*var, g_out + half * kCols, g_in + half * kCols, half);
      else
        std::memcpy(g_out + half * kCols, g_in + half * kCols, half * kCols * 2);
    });
    if (var)
      RunRows(*var, g_out, g_in, half);
    else
      std::memcpy(g_out, g_in, half * kCols * 2);
    t.join();
  });
}

using First = Variant<2, false, kCached32, false>;

template <class V>
double Time() {
  static const V variant{};
  return TwoThreads(&variant);
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx512bf16")) {
    std::fprintf(stderr, "overlap_probe: needs AVX512_BF16\n");
    return 1;
  }
  g_in = static_cast<uint16_t*>(std::aligned_alloc(4096, kBytes));
  g_out = static_cast<uint16_t*>(std::aligned_alloc(4096, kBytes));
  g_gamma = static_cast<float*>(std::aligned_alloc(64, kCols * 4));
  g_beta = static_cast<float*>(std::aligned_alloc(64, kCols * 4));
  for (size_t i = 0; i < kBytes / 2; ++i) g_in[i] = static_cast<uint16_t>(0x3f80 + (i * 7 % 127));
  std::memset(g_out, 1, kBytes);
  for (int i = 0; i < kCols; ++i) {
    g_gamma[i] = 1.0f + i * 1e-4f;
    g_beta[i] = 0.5f;
  }
  const char* names[] = {"stats+output pf2 cached32",  "stats+output pf8 cached32",
                         "stats+output nopf cached32", "stats+output pf2 interleaved",
                         "stats+output pf2 stream32",  "stats+output pf2 paired64",
                         "two-pass copy nopf cached32"};
  double (*const timers[])() = {
      Time<First>,
      Time<Variant<8, false, kCached32, false>>,
      Time<Variant<0, false, kCached32, false>>,
      Time<Variant<2, true, kCached32, false>>,
      Time<Variant<2, false, kStream32, false>>,
      Time<Variant<2, false, kPaired64, false>>,
      Time<Variant<0, false, kCached32, true>>,
  };
  constexpr int kRounds = 9;
  for (auto* timer : timers) timer();  // warm-up: page faults, frequency
  double ratio[std::size(names)][kRounds];
  for (int round = 0; round < kRounds; ++round) {
    for (size_t v = 0; v < std::size(names); ++v) {
      const double copy = TwoThreads<First>(nullptr);
      ratio[v][round] = copy / timers[v]();
    }
  }
  std::printf("4096-column BFLOAT16 rows, 2 threads, %zu MiB in + out; frac_of_copy per round, median\n",
              kBytes >> 20);
  for (size_t v = 0; v < std::size(names); ++v) {
    std::printf("%-30s", names[v]);
    for (double r : ratio[v]) std::printf(" %.2f", r);
    std::sort(ratio[v], ratio[v] + kRounds);
    std::printf("  median %.2f\n", ratio[v][kRounds / 2]);
  }
  // One thread, 16 rows in cache: the arithmetic alone.
  const size_t rows = 16;
  double best = 1e9;
  for (int k = 0; k < 2000; ++k) best = std::min(best, Seconds([&] { RunRows(First{}, g_out, g_in, rows); }));
  std::printf("in cache, 1 thread, %zux4096: %.3f us per row (%.1f GB/s)\n", rows, best / rows * 1e6,
              rows * kCols * 4.0 / best / 1e9);
  return 0;
}
