// Random problems (testing::RandomSpec: mostly LAYER/RMS rows at and around
// the widths where the CPU paths change) against the float64 reference, on
// a random instruction set this CPU has and 1-3 threads, for a time budget:
// the CTest CpuIsaTest.RandomWidthsMatchReference runs a fixed few hundred
// of them; this runs as many as the budget allows, from any seed. A third of
// the cases go through testing::PlantExactMeans first (each group holds its
// own mean, which must come out as exactly 0), as
// CpuIsaTest.RandomWidthsWithExactMeansMatchReference does.
//
//   g++ -O2 -std=c++20 -Ikernels/include -Ikernels/testing/include \
//     bench/probes/parity_fuzz.cc build/kernels/testing/libnormserve_kernel_testing.a \
//     build/kernels/libnormserve_kernels.a -lpthread -o /tmp/parity_fuzz
//   /tmp/parity_fuzz SECONDS [SEED]
//
// Prints each failing case (at most 20 lines of it) and, at the end, how many
// cases ran and failed; exits 1 if any failed.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/testing/parity.h"

using namespace normserve::kernels;
using testing::CaseSpec;
using testing::ProblemCase;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: parity_fuzz SECONDS [SEED]\n");
    return 2;
  }
  const double budget = std::atof(argv[1]);
  const uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  std::mt19937_64 rng(seed);
  auto below = [&](uint64_t n) { return static_cast<int64_t>(rng() % n); };

  std::vector<CpuIsa> isas;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16}) {
    if (isa <= DetectCpuIsa()) isas.push_back(isa);
  }
  // Backends by (isa, threads).
  std::vector<std::vector<std::unique_ptr<CpuBackend>>> backends(isas.size());
  for (size_t k = 0; k < isas.size(); ++k) {
    for (int threads = 1; threads <= 3; ++threads) {
      CpuBackendOptions o;
      o.threads = threads;
      o.max_isa = isas[k];
      backends[k].push_back(std::make_unique<CpuBackend>(o));
    }
  }

  const auto start = std::chrono::steady_clock::now();
  int64_t cases = 0, failed = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < budget) {
    const CaseSpec s = testing::RandomSpec(rng());
    ProblemCase c = testing::MakeRandomCase(s, rng());
    // A third of the cases hold each group's own mean (PlantExactMeans).
    if (below(3) == 0) testing::PlantExactMeans(c, rng());
    const size_t isa = static_cast<size_t>(below(static_cast<int64_t>(isas.size())));
    const int64_t threads = below(3);
    std::vector<std::string> failures = testing::CompareToReference(*backends[isa][threads], c);
    ++cases;
    if (!failures.empty()) {
      ++failed;
      std::printf("FAIL on %s, %lld threads: %s\n", std::string(CpuIsaName(isas[isa])).c_str(),
                  static_cast<long long>(threads + 1), testing::SummarizeFailures(failures, 20).c_str());
    }
  }
  std::printf("%lld cases, %lld failed\n", static_cast<long long>(cases), static_cast<long long>(failed));
  return failed == 0 ? 0 : 1;
}
