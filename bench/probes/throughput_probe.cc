// throughput_probe: cycles per eight independent AVX-512 instructions of the
// kinds the half-type LayerNorm loops spend their time on (conversions,
// widening, vrangeps), with a dependent integer add chain as the clock.
// Sixteenth session; not part of the build.
//
//   g++ -O2 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma -mf16c \
//       bench/probes/throughput_probe.cc -o /tmp/throughput_probe && /tmp/throughput_probe
//
// Zen 5 VM, two runs (the clock read 3.1 and 3.3 GHz), cycles per 8:
// vaddps 5.3, vcvtps2pd 6.0-6.1, vrangeps 3.8, vcvtne2ps2bf16 6.0,
// vpmovzxwd from memory 3.9-4.4, vpunpcklwd from memory 3.9-4.6, vpslld
// 3.8-3.9, vcvtph2ps 6.0-6.1, vcvtps2ph 6.1, vextractf64x4 3.8, vfmadd231pd
// (8 chains) 7.0-7.1.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
// throughput of some instructions: 8 independent chains each
template <class F>
double T(F f, int64_t n) {
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f(n);
    best = std::min(best,
                    std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
  }
  return best / n;
}
alignas(64) uint16_t buf[4096];
volatile float sinkf;
// Eight copies of an instruction whose last operand is a register numbered 1 to 8.
#define EIGHT(ins) ins "1\n" ins "2\n" ins "3\n" ins "4\n" ins "5\n" ins "6\n" ins "7\n" ins "8"
#define CLOBBERS "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8"
int main() {
  const int64_t n = 10000000;
  double clk = T(
                   [](int64_t n) {
                     uint64_t a = 1;
                     for (int64_t i = 0; i < n; ++i) {
                       asm volatile("add $1, %0\n add $1, %0\n add $1, %0\n add $1, %0" : "+r"(a));
                     }
                   },
                   n) /
               4;
  printf("1 int add latency: %.3f ns -> %.2f GHz\n", clk, 1 / clk);
#define TP(name, init, body)                                \
  {                                                         \
    double t = T(                                           \
        [&](int64_t n) {                                    \
          init;                                             \
          for (int64_t i = 0; i < n; ++i) {                 \
            body;                                           \
          }                                                 \
        },                                                  \
        n);                                                 \
    printf("%-28s %.2f cycles per 8 ops\n", name, t / clk); \
  }
  TP("vaddps zmm", __m512 a0 = _mm512_set1_ps(1); __m512 a1 = a0; __m512 a2 = a0; __m512 a3 = a0;
     __m512 a4 = a0; __m512 a5 = a0; __m512 a6 = a0;
     __m512 a7 = a0,
     asm volatile("vaddps %%zmm0,%0,%0\n vaddps %%zmm0,%1,%1\n vaddps %%zmm0,%2,%2\n vaddps %%zmm0,%3,%3\n"
                  "vaddps %%zmm0,%4,%4\n vaddps %%zmm0,%5,%5\n vaddps %%zmm0,%6,%6\n vaddps %%zmm0,%7,%7"
                  : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7)));
  TP("vcvtps2pd zmm<-ymm", (void)0, asm volatile(EIGHT("vcvtps2pd %%ymm0,%%zmm")::: CLOBBERS));
  TP("vrangeps zmm", (void)0, asm volatile(EIGHT("vrangeps $10,%%zmm0,%%zmm9,%%zmm")::: CLOBBERS));
  TP("vcvtne2ps2bf16 zmm", (void)0, asm volatile(EIGHT("vcvtne2ps2bf16 %%zmm0,%%zmm9,%%zmm")::: CLOBBERS));
  TP("vpmovzxwd zmm<-m256", const uint16_t* p = buf,
     asm volatile("vpmovzxwd (%0),%%zmm1\n vpmovzxwd 32(%0),%%zmm2\n vpmovzxwd 64(%0),%%zmm3\n"
                  "vpmovzxwd 96(%0),%%zmm4\n vpmovzxwd 128(%0),%%zmm5\n vpmovzxwd 160(%0),%%zmm6\n"
                  "vpmovzxwd 192(%0),%%zmm7\n vpmovzxwd 224(%0),%%zmm8" ::"r"(p)
                  : CLOBBERS));
  TP("vpunpcklwd zmm,m512", const uint16_t* p = buf,
     asm volatile("vpunpcklwd (%0),%%zmm0,%%zmm1\n vpunpcklwd 64(%0),%%zmm0,%%zmm2\n"
                  "vpunpcklwd 128(%0),%%zmm0,%%zmm3\n vpunpcklwd 192(%0),%%zmm0,%%zmm4\n"
                  "vpunpcklwd 256(%0),%%zmm0,%%zmm5\n vpunpcklwd 320(%0),%%zmm0,%%zmm6\n"
                  "vpunpcklwd 384(%0),%%zmm0,%%zmm7\n vpunpcklwd 448(%0),%%zmm0,%%zmm8" ::"r"(p)
                  : CLOBBERS));
  TP("vpslld zmm", (void)0, asm volatile(EIGHT("vpslld $16,%%zmm0,%%zmm")::: CLOBBERS));
  TP("vcvtph2ps zmm<-ymm", (void)0, asm volatile(EIGHT("vcvtph2ps %%ymm0,%%zmm")::: CLOBBERS));
  TP("vcvtps2ph ymm<-zmm", (void)0, asm volatile(EIGHT("vcvtps2ph $4,%%zmm0,%%ymm")::: CLOBBERS));
  TP("vextractf64x4", (void)0, asm volatile(EIGHT("vextractf64x4 $1,%%zmm0,%%ymm")::: CLOBBERS));
  TP("vfmadd231pd zmm (8 chains)", __m512d a0 = _mm512_set1_pd(1); __m512d a1 = a0; __m512d a2 = a0;
     __m512d a3 = a0; __m512d a4 = a0; __m512d a5 = a0; __m512d a6 = a0;
     __m512d a7 = a0,
     asm volatile("vfmadd231pd %%zmm0,%%zmm0,%0\n vfmadd231pd %%zmm0,%%zmm0,%1\n"
                  "vfmadd231pd %%zmm0,%%zmm0,%2\n vfmadd231pd %%zmm0,%%zmm0,%3\n"
                  "vfmadd231pd %%zmm0,%%zmm0,%4\n vfmadd231pd %%zmm0,%%zmm0,%5\n"
                  "vfmadd231pd %%zmm0,%%zmm0,%6\n vfmadd231pd %%zmm0,%%zmm0,%7"
                  : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7)));
}
