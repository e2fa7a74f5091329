// Whether the width of non-temporal stores matters out of cache: FLOAT16 in,
// FLOAT16 out (x * 1.0001), 256 MiB each way, 2 threads, with the outputs
// going out as two 32-byte non-temporal stores per 32 elements (as the
// FLOAT16 output loops do), one 64-byte non-temporal store (as the BFLOAT16
// pairs do), or two 32-byte cached stores. Twentieth session: FLOAT16
// outputs gain nothing from streaming in the kernels, BFLOAT16 ones do.
//
//   g++ -O2 -std=c++17 -mavx512f -mavx512bw -mf16c bench/probes/nt_store_width.cc \
//     -lpthread -o /tmp/nt_store_width
//   /tmp/nt_store_width [ROUNDS]
//
// Prints, per round and mode, the fastest of 4 passes in GB/s (bytes read
// plus bytes written).
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

enum Mode { kStream32, kStream64, kCached32 };
constexpr const char* kModeNames[] = {"stream 2x32 B", "stream 64 B", "cached 2x32 B"};

void Pass(const uint16_t* in, uint16_t* out, size_t n, Mode mode) {
  const __m512 k = _mm512_set1_ps(1.0001f);
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  for (size_t i = 0; i < n; i += 32) {
    const __m512 a =
        _mm512_mul_ps(_mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(in + i))), k);
    const __m512 b =
        _mm512_mul_ps(_mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(in + i + 16))), k);
    const __m256i ha = _mm512_cvtps_ph(a, kRound), hb = _mm512_cvtps_ph(b, kRound);
    switch (mode) {
      case kStream32:
        _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i), ha);
        _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i + 16), hb);
        break;
      case kStream64:
        _mm512_stream_si512(reinterpret_cast<__m512i*>(out + i),
                            _mm512_inserti64x4(_mm512_castsi256_si512(ha), hb, 1));
        break;
      case kCached32:
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + i), ha);
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + i + 16), hb);
        break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 3;
  constexpr size_t kElements = size_t{128} << 20;  // 256 MiB of FLOAT16
  constexpr int kThreads = 2;
  auto* in = static_cast<uint16_t*>(std::aligned_alloc(4096, kElements * 2));
  auto* out = static_cast<uint16_t*>(std::aligned_alloc(4096, kElements * 2));
  for (size_t i = 0; i < kElements; ++i) in[i] = static_cast<uint16_t>(0x3c00 + (i & 0xff));
  std::memset(out, 0, kElements * 2);
  const size_t share = kElements / kThreads;
  for (int round = 0; round < rounds; ++round) {
    for (Mode mode : {kStream32, kStream64, kCached32}) {
      double best = 1e30;
      for (int rep = 0; rep < 4; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
          threads.emplace_back(Pass, in + share * t, out + share * t, share, mode);
        for (std::thread& t : threads) t.join();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::printf("round %d %-14s %.1f GB/s\n", round + 1, kModeNames[mode], 4.0 * kElements / best / 1e9);
    }
  }
  std::free(in);
  std::free(out);
  return 0;
}
