// fused_stats_probe: a stand-alone model of a BFLOAT16 LayerNorm row loop
// (double sums of x and x^2, a float output pass with the cancellation gap
// and vcvtne2ps2bf16), timed two ways on 256 MiB of input: "separate" (a
// row's statistics, then its output pass, as LayerRows does) and "fused"
// (the statistics of row r + 1 added up inside the output loop of row r),
// with cached or non-temporal stores, against memcpy on the same threads.
// Sixteenth session; not part of the build, timing only (the arithmetic is
// not the kernels' and is not checked).
//
//   g++ -O2 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma -pthread \
//       bench/probes/fused_stats_probe.cc -o /tmp/fused_stats_probe
//   /tmp/fused_stats_probe COLS THREADS NONTEMPORAL(0|1) [WORKING_SET_KIB]
//
// On the Zen 5 VM, 2 threads, cached stores, GB/s separate / fused / copy:
// 1024 columns 32-43 / 42-48 / 52-62, 4096 columns 42 / 50-51 / 62-64. The
// same schedule in the kernels (LayerRows adding the next row's sums from
// NormalizeRowT) did not carry that over: docs/cpu-performance.md,
// "Sixteenth session".
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
struct St {
  __m512d s[4], q[4];
};
static inline void Zero(St& a) {
  for (int k = 0; k < 4; ++k) a.s[k] = a.q[k] = _mm512_setzero_pd();
}
static inline void Acc(St& a, const uint16_t* p) {
  const __m512i z = _mm512_setzero_si512();
  __m512i raw = _mm512_loadu_si512(p);
  __m512 lo = _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, raw));
  __m512 hi = _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, raw));
  __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(lo));
  __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(lo), 1)));
  __m512d d2 = _mm512_cvtps_pd(_mm512_castps512_ps256(hi));
  __m512d d3 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(hi), 1)));
  a.s[0] = _mm512_add_pd(a.s[0], d0);
  a.q[0] = _mm512_fmadd_pd(d0, d0, a.q[0]);
  a.s[1] = _mm512_add_pd(a.s[1], d1);
  a.q[1] = _mm512_fmadd_pd(d1, d1, a.q[1]);
  a.s[2] = _mm512_add_pd(a.s[2], d2);
  a.q[2] = _mm512_fmadd_pd(d2, d2, a.q[2]);
  a.s[3] = _mm512_add_pd(a.s[3], d3);
  a.q[3] = _mm512_fmadd_pd(d3, d3, a.q[3]);
}
static inline void Finish(St& a, int64_t n, float* mean, float* rstd) {
  double s =
      _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a.s[0], a.s[1]), _mm512_add_pd(a.s[2], a.s[3])));
  double q =
      _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a.q[0], a.q[1]), _mm512_add_pd(a.q[2], a.q[3])));
  double m = s / n, v = q / n - m * m;
  *mean = (float)m;
  *rstd = (float)(1.0 / __builtin_sqrt(v + 1e-5));
}
static inline void Out(const uint16_t* x, uint16_t* y, const float* g, const float* b, float mean, float rstd,
                       __m512i& gap, bool nt) {
  __m512 v = _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)x)), 16));
  __m512 o =
      _mm512_fmsub_ps(_mm512_sub_ps(v, _mm512_set1_ps(mean)), _mm512_set1_ps(rstd), _mm512_setzero_ps());
  __m512 bb = _mm512_loadu_ps(b);
  __m512 r = _mm512_fmadd_ps(o, _mm512_loadu_ps(g), bb);
  const __m512i m = _mm512_set1_epi32(0x7fffffff);
  gap = _mm512_max_epi32(gap, _mm512_sub_epi32(_mm512_max_epi32(_mm512_and_si512(_mm512_castps_si512(bb), m),
                                                                _mm512_set1_epi32(0x00800000)),
                                               _mm512_and_si512(_mm512_castps_si512(r), m)));
  __m256i h = (__m256i)_mm512_cvtneps_pbh(r);
  if (nt)
    _mm256_stream_si256((__m256i*)y, h);
  else
    _mm256_storeu_si256((__m256i*)y, h);
}
int64_t R, C;
std::vector<float> G, B;
volatile int sink;
void Separate(const uint16_t* x, uint16_t* y, int64_t r0, int64_t r1, bool nt) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint16_t* xr = x + r * C;
    uint16_t* yr = y + r * C;
    const char* pf = (const char*)(xr + 2 * C);
    St a;
    Zero(a);
    for (int64_t i = 0; i < C; i += 32) {
      if (r + 2 < r1) _mm_prefetch(pf + i * 2, _MM_HINT_T0);
      Acc(a, xr + i);
    }
    float mean, rstd;
    Finish(a, C, &mean, &rstd);
    __m512i gap = _mm512_set1_epi32(-0x7fffffff);
    for (int64_t i = 0; i < C; i += 16) Out(xr + i, yr + i, &G[i], &B[i], mean, rstd, gap, nt);
    if (_mm512_cmpgt_epi32_mask(gap, _mm512_set1_epi32(12 << 23))) sink = 1;
  }
}
void Fused(const uint16_t* x, uint16_t* y, int64_t r0, int64_t r1, bool nt) {
  St a;
  Zero(a);
  for (int64_t i = 0; i < C; i += 32) Acc(a, x + r0 * C + i);
  float mean, rstd;
  Finish(a, C, &mean, &rstd);
  for (int64_t r = r0; r < r1; ++r) {
    const uint16_t* xr = x + r * C;
    uint16_t* yr = y + r * C;
    const bool more = r + 1 < r1;
    const uint16_t* xn = xr + C;
    const char* pf = (const char*)(xr + 2 * C);
    St na;
    Zero(na);
    __m512i gap = _mm512_set1_epi32(-0x7fffffff);
    if (more) {
      for (int64_t i = 0; i < C; i += 32) {
        if (r + 2 < r1) _mm_prefetch(pf + i * 2, _MM_HINT_T0);
        Acc(na, xn + i);
        Out(xr + i, yr + i, &G[i], &B[i], mean, rstd, gap, nt);
        Out(xr + i + 16, yr + i + 16, &G[i + 16], &B[i + 16], mean, rstd, gap, nt);
      }
    } else {
      for (int64_t i = 0; i < C; i += 16) Out(xr + i, yr + i, &G[i], &B[i], mean, rstd, gap, nt);
    }
    if (_mm512_cmpgt_epi32_mask(gap, _mm512_set1_epi32(12 << 23))) sink = 1;
    Finish(na, C, &mean, &rstd);
  }
}
int main(int argc, char** argv) {
  C = atoll(argv[1]);
  int threads = atoi(argv[2]);
  bool nt = atoi(argv[3]);
  R = (argc > 4 ? atoll(argv[4]) << 10 : 256ll << 20) / (C * 2);
  std::vector<uint16_t> xv(R * C + 64), yv(R * C + 64);
  struct P {
    uint16_t* p;
    uint16_t* data() { return p; }
  } x{(uint16_t*)(((uintptr_t)xv.data() + 63) / 64 * 64)},
      y{(uint16_t*)(((uintptr_t)yv.data() + 63) / 64 * 64)};
  for (auto& v : xv) v = 0x3e80 + (rand() & 0xff);
  G.assign(C, 1.0f);
  B.assign(C, 0.1f);
  std::vector<char> s1(R * C * 2), s2(R * C * 2);
  auto run = [&](auto f) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> th;
    for (int t = 0; t < threads; ++t)
      th.emplace_back([&, t] { f(x.data(), y.data(), R * t / threads, R * (t + 1) / threads, nt); });
    for (auto& t : th) t.join();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto copy = [&] {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> th;
    for (int t = 0; t < threads; ++t)
      th.emplace_back([&, t] {
        size_t a = s1.size() * t / threads, b = s1.size() * (t + 1) / threads;
        memcpy(s2.data() + a, s1.data() + a, b - a);
      });
    for (auto& t : th) t.join();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  double bytes = 2.0 * R * C * 2;
  for (int round = 0; round < 3; ++round) {
    double a = 1e9, b = 1e9, c = 1e9;
    for (int k = 0; k < (R < 1000 ? 3000 : 3); ++k) {
      a = std::min(a, run(Separate));
      b = std::min(b, run(Fused));
      c = std::min(c, copy());
    }
    printf("C=%lld t=%d nt=%d: separate %.1f GB/s, fused %.1f GB/s, copy %.1f GB/s\n", (long long)C, threads,
           nt, bytes / a / 1e9, bytes / b / 1e9, bytes / c / 1e9);
  }
}
