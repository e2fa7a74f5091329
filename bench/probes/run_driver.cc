// run_driver: times CpuBackend::Run() on one LayerNorm or RMSNorm
// problem, the way the eleventh and twelfth sessions measured the store modes and the
// short-row paths (docs/cpu-performance.md). Not part of the build.
//
//   cmake -S kernels -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release
//   cmake --build build-bench --target normserve_kernels
//   g++ -O2 -std=c++17 -Ikernels/include bench/probes/run_driver.cc build-bench/libnormserve_kernels.a
//   -lpthread -o /tmp/run_driver NORMSERVE_CPU_STORES=cached /tmp/run_driver ROWS COLS THREADS KIND CALLS
//   [OFFSET]
//
// KIND 0: LayerNorm with gamma and beta; 1: RMSNorm with gamma (FLOAT32
// input and output); 2 / 3: the same in BFLOAT16, 4 / 5 in FLOAT16 (gamma
// and beta stay FLOAT32). Input
// N(0.3, 1). Prints, for three rounds, the fastest of CALLS calls (ns a row
// and us a call) and the median. With NORMSERVE_AB_STORES=cached,streaming
// (any list of store modes) one backend per mode takes turns call by call,
// and each mode's figures are printed (the thirteenth session's store-mode
// comparison). OFFSET: the output's byte offset from a 64-byte boundary;
// without it, the output is where std::vector puts it (16 bytes past a
// boundary for large buffers, as the server's protobuf strings are). A list
// (0,16) takes turns call by call in the same way (fifteenth session), and
// NORMSERVE_INPUT_OFFSET places the input likewise. NORMSERVE_DUMP=FILE
// writes the last call's output there, so that two builds' bits can be
// compared with cmp (eighteenth session). Nineteenth session:
// NORMSERVE_PAGE_OFFSETS=1 takes the offsets from a page boundary,
// NORMSERVE_BENCH_DATA=1 uses normserve-kernel-bench's values, and
// NORMSERVE_OUTPUT_DTYPE another output dtype.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/problem.h"
using namespace normserve::kernels;

// The items of a comma-separated list ("0,16", "cached,streaming").
static std::vector<std::string> SplitCommas(const std::string& list) {
  std::vector<std::string> items;
  for (size_t start = 0; start <= list.size();) {
    const size_t end = std::min(list.find(',', start), list.size());
    items.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

// `offset` bytes past the first 64-byte boundary at or after `base`.
static float* AtOffset(float* base, int offset) {
  // NORMSERVE_PAGE_OFFSETS=1: offsets from a 4096-byte boundary instead (the
  // input and output then sit at the same page offset when both are given
  // the same one, as in normserve-kernel-bench's buffers).
  const char* pages = getenv("NORMSERVE_PAGE_OFFSETS");
  const uintptr_t align = pages != nullptr && atoi(pages) != 0 ? 4096 : 64;
  return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(base) + align - 1) / align * align + offset);
}
int main(int argc, char** argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: run_driver ROWS COLS THREADS KIND CALLS [OFFSET]\n");
    return 2;
  }
  int64_t rows = atoll(argv[1]), cols = atoll(argv[2]);
  int threads = atoi(argv[3]), kind = atoi(argv[4]), calls = atoi(argv[5]);
  const DType dt = kind < 2 ? DType::kFloat32 : kind < 4 ? DType::kBFloat16 : DType::kFloat16;
  const bool rms = kind % 2 == 1;
  std::vector<float> xv(rows * cols + 2048), yv(rows * cols + 2048), g(cols), b(cols);
  // NORMSERVE_INPUT_OFFSET: the input's byte offset from a 64-byte boundary
  // (default: as malloc gives it, 16 past one for large buffers).
  float* x = xv.data();
  if (const char* in_off = getenv("NORMSERVE_INPUT_OFFSET")) x = AtOffset(xv.data(), atoi(in_off));
  fprintf(stderr, "input address mod 64 = %d\n", static_cast<int>(reinterpret_cast<uintptr_t>(x) % 64));
  // argv[6]: byte offset of the output from a 64-byte boundary (default: as
  // malloc gives it); a comma list (0,16) takes turns call by call, as
  // NORMSERVE_AB_STORES does, each offset's figures printed.
  std::vector<float*> outs;
  std::vector<int> offsets;
  if (argc > 6) {
    for (const std::string& item : SplitCommas(argv[6])) {
      offsets.push_back(atoi(item.c_str()));
      outs.push_back(AtOffset(yv.data(), offsets.back()));
    }
  } else {
    outs.push_back(yv.data());
  }
  for (float* y : outs)
    fprintf(stderr, "output address mod 64 = %d\n", static_cast<int>(reinterpret_cast<uintptr_t>(y) % 64));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.3f, 1.0f);
  for (int64_t i = 0; i < rows * cols; ++i) x[i] = nd(rng);
  for (auto& v : g) v = 1.0f + 0.1f * nd(rng);
  for (auto& v : b) v = 0.1f * nd(rng);
  // NORMSERVE_BENCH_DATA=1: normserve-kernel-bench's values instead (uniform
  // in [-1.5, 2.5), gamma 0.5 + (j % 7) / 8, beta 0).
  if (const char* bd = getenv("NORMSERVE_BENCH_DATA"); bd != nullptr && atoi(bd) != 0) {
    std::uniform_real_distribution<float> ud(-1.5f, 2.5f);
    for (int64_t i = 0; i < rows * cols; ++i) x[i] = ud(rng);
    for (int64_t j = 0; j < cols; ++j) g[j] = 0.5f + static_cast<float>(j % 7) * 0.125f;
    for (auto& v : b) v = 0.0f;
  }
  if (dt != DType::kFloat32) {  // the half values, packed into the front of x
    auto* h = reinterpret_cast<uint16_t*>(x);
    for (int64_t i = 0; i < rows * cols; ++i) {
      h[i] = dt == DType::kBFloat16 ? FloatToBFloat16Bits(x[i]) : FloatToHalfBits(x[i]);
    }
  }
  const uint64_t bytes = static_cast<uint64_t>(rows * cols) * DTypeSize(dt);
  CpuBackendOptions o;
  o.threads = threads;
  // NORMSERVE_AB_STORES=cached,streaming: one backend per store mode, their
  // calls taking turns within each round (so a slow spell of the VM hits
  // both), each mode's fastest and median call printed.
  std::vector<CpuStores> modes;
  if (const char* ab = getenv("NORMSERVE_AB_STORES")) {
    for (const std::string& item : SplitCommas(ab)) {
      CpuStores m;
      if (!ParseCpuStores(item, &m)) {
        fprintf(stderr, "bad NORMSERVE_AB_STORES\n");
        return 2;
      }
      modes.push_back(m);
    }
  }
  std::vector<std::unique_ptr<CpuBackend>> backends;
  for (CpuStores m : modes) {
    CpuBackendOptions om = o;
    om.stores = m;
    backends.push_back(std::make_unique<CpuBackend>(om));
  }
  if (backends.empty()) backends.push_back(std::make_unique<CpuBackend>(o));
  if (backends.size() > 1 && outs.size() > 1) {
    fprintf(stderr, "either several store modes or several offsets\n");
    return 2;
  }
  NormProblem p;
  p.kind = rms ? NormKind::kRmsNorm : NormKind::kLayerNorm;
  p.input = {dt, {rows, cols}, x, bytes};
  p.gamma = {DType::kFloat32, {cols}, g.data(), (uint64_t)(cols * 4)};
  if (!rms) p.beta = {DType::kFloat32, {cols}, b.data(), (uint64_t)(cols * 4)};
  p.output_dtype = dt;
  // NORMSERVE_OUTPUT_DTYPE=float32|float16|bfloat16: another output dtype.
  if (const char* od = getenv("NORMSERVE_OUTPUT_DTYPE"); od != nullptr && !ParseDType(od, &p.output_dtype)) {
    fprintf(stderr, "bad NORMSERVE_OUTPUT_DTYPE\n");
    return 2;
  }
  for (int round = 0; round < 3; ++round) {
    const size_t ways = std::max(backends.size(), outs.size());
    std::vector<std::vector<double>> times(ways);
    for (int c = 0; c < calls; ++c) {
      for (size_t k = 0; k < ways; ++k) {
        p.out.output = outs[outs.size() > 1 ? k : 0];
        auto t0 = std::chrono::steady_clock::now();
        auto st = backends[backends.size() > 1 ? k : 0]->Run(&p, 1);
        auto t1 = std::chrono::steady_clock::now();
        if (!st.ok()) {
          printf("fail\n");
          return 1;
        }
        times[k].push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
      }
    }
    for (size_t k = 0; k < ways; ++k) {
      std::sort(times[k].begin(), times[k].end());
      const double best = times[k].front(), median = times[k][times[k].size() / 2];
      const std::string mode = modes.size() > 1     ? " " + std::string(CpuStoresName(modes[k]))
                               : offsets.size() > 1 ? " offset " + std::to_string(offsets[k])
                                                    : "";
      printf("%lld x %lld%s: %.1f ns/row (%.1f us), median %.1f ns/row\n", (long long)rows, (long long)cols,
             mode.c_str(), best / rows, best / 1000, median / rows);
    }
  }
  // NORMSERVE_DUMP=FILE: the output of the last call, as bytes (to check
  // that a change keeps the bits: cmp the files of two builds).
  if (const char* dump = getenv("NORMSERVE_DUMP")) {
    FILE* f = fopen(dump, "wb");
    const size_t out_bytes = static_cast<size_t>(rows * cols) * DTypeSize(p.output_dtype);
    if (f == nullptr || fwrite(outs.back(), 1, out_bytes, f) != out_bytes || fclose(f) != 0) {
      fprintf(stderr, "cannot write %s\n", dump);
      return 1;
    }
  }
}
