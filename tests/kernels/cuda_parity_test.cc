// The CUDA backend against the float64 reference (docs/SEMANTICS.md bounds):
// the parity sweep over every kind, dtype, parameter mode, residual and
// statistics flag, the edge cases of every kind and dtype, long rows that
// take the block plans (shared-memory cache and re-read), and random cases
// whose groups hold their own mean. Exits 77 without a GPU.
#include <cstdint>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "normserve/kernels/testing/parity.h"

namespace normserve::kernels {
namespace {

using testing::CaseSpec;
using testing::ProblemCase;

constexpr NormKind kKinds[] = {NormKind::kLayerNorm, NormKind::kRmsNorm, NormKind::kBatchNorm,
                               NormKind::kGroupNorm, NormKind::kInstanceNorm};
constexpr DType kDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

int Main() {
  std::unique_ptr<Backend> backend = cuda_test::CudaBackendOrSkip("cuda_parity_test");
  if (backend == nullptr) return cuda_test::kSkipExitCode;
  cuda_test::Failures f;

  uint64_t seed = 1;
  for (const CaseSpec& spec : testing::ParitySweep(2024, 2)) {
    ProblemCase c = testing::MakeRandomCase(spec, seed++);
    f.Add("sweep", testing::CompareToReference(*backend, c));
  }
  for (NormKind kind : kKinds) {
    for (DType dtype : kDTypes) {
      for (ProblemCase& c : testing::EdgeCases(kind, dtype, 7))
        f.Add("edge", testing::CompareToReference(*backend, c));
    }
  }
  // Row lengths around every plan boundary: sub-warp, warp, block with the
  // row in shared memory, and block re-reading rows too long for it.
  const int64_t kCols[] = {1, 3, 8, 33, 255, 256, 257, 1000, 1024, 1025, 4095, 8192, 40000, 65536, 70001};
  for (NormKind kind : {NormKind::kLayerNorm, NormKind::kRmsNorm}) {
    for (DType dtype : kDTypes) {
      for (int64_t cols : kCols) {
        CaseSpec spec;
        spec.kind = kind;
        spec.dtype = dtype;
        spec.shape = {cols > 4096 ? 3 : 5, cols};
        spec.residual = cols % 2 == 0;
        spec.return_stats = true;
        spec.params = cols % 3 == 0 ? testing::ParamMode::kGammaOnly : testing::ParamMode::kAffine;
        ProblemCase c = testing::MakeRandomCase(spec, seed++);
        f.Add("long_rows " + testing::DescribeSpec(spec), testing::CompareToReference(*backend, c));
      }
    }
  }
  // Groups that hold their own mean (testing::PlantExactMeans): an element at
  // the mean must come out as exactly beta, so the mean must be the
  // reference's sum / n (CpuIsaTest.RandomWidthsWithExactMeansMatchReference
  // on the CPU). Added without a GPU to run it on (twentieth session).
  for (uint64_t s = 1; s <= 200; ++s) {
    const CaseSpec spec = testing::RandomSpec(s);
    ProblemCase c = testing::MakeRandomCase(spec, s);
    testing::PlantExactMeans(c, s);
    f.Add("exact_means " + testing::DescribeSpec(spec), testing::CompareToReference(*backend, c));
  }
  f.Expect(backend->healthy(), "healthy", "backend unhealthy after the sweep");
  return f.Finish("cuda_parity_test");
}

}  // namespace
}  // namespace normserve::kernels

int main() { return normserve::kernels::Main(); }
