// run_driver_channels: times CpuBackend::Run() on one FLOAT32 BatchNorm or
// GroupNorm problem (docs/cpu-performance.md, eleventh session: the store
// modes). Not part of the build; built as run_driver.cc is.
//
//   NORMSERVE_CPU_STORES=cached /tmp/run_driver_channels KIND N C S GROUPS THREADS CALLS
//
// KIND 0: BatchNorm with running statistics; 1: BatchNorm with batch
// statistics; 2: GroupNorm with GROUPS groups. Shape [N, C] when S is 1,
// [N, C, S] otherwise; gamma and beta per channel. Prints the fastest call
// in microseconds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/problem.h"
using namespace normserve::kernels;
int main(int argc, char** argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: run_driver_channels KIND N C S GROUPS THREADS CALLS\n");
    return 2;
  }
  int kind = atoi(argv[1]);
  int64_t n = atoll(argv[2]), c = atoll(argv[3]), s = atoll(argv[4]), groups = atoll(argv[5]);
  int threads = atoi(argv[6]), calls = atoi(argv[7]);
  std::vector<float> x(n * c * s), y(n * c * s), g(c), b(c), rm(c), rv(c);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.3f, 1.0f);
  for (auto& v : x) v = nd(rng);
  for (int64_t i = 0; i < c; ++i) {
    g[i] = 1 + 0.1f * nd(rng);
    b[i] = 0.1f * nd(rng);
    rm[i] = 0.3f;
    rv[i] = 1.1f;
  }
  CpuBackendOptions o;
  o.threads = threads;
  CpuBackend be(o);
  NormProblem p;
  std::vector<int64_t> shape = s > 1 ? std::vector<int64_t>{n, c, s} : std::vector<int64_t>{n, c};
  p.kind = kind == 2 ? NormKind::kGroupNorm : NormKind::kBatchNorm;
  p.input = {DType::kFloat32, shape, x.data(), (uint64_t)(x.size() * 4)};
  p.gamma = {DType::kFloat32, {c}, g.data(), (uint64_t)(c * 4)};
  p.beta = {DType::kFloat32, {c}, b.data(), (uint64_t)(c * 4)};
  if (kind == 0) {
    p.running_mean = {DType::kFloat32, {c}, rm.data(), (uint64_t)(c * 4)};
    p.running_var = {DType::kFloat32, {c}, rv.data(), (uint64_t)(c * 4)};
  }
  p.use_batch_stats = kind == 1;
  p.num_groups = (int)groups;
  p.out.output = y.data();
  double best = 1e30;
  for (int k = 0; k < calls; ++k) {
    auto t0 = std::chrono::steady_clock::now();
    auto st = be.Run(&p, 1);
    auto t1 = std::chrono::steady_clock::now();
    if (!st.ok()) {
      printf("fail %s\n", st.message().c_str());
      return 1;
    }
    best = std::min(best, std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  printf("%.0f\n", best);
}
