// The CPU backend (default options: every core, best instruction set)
// against the float64 reference: the parity sweep over every kind, dtype,
// parameter mode, residual and statistics flag; batch invariance; and the
// edge cases of every kind.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/testing/parity.h"

namespace normserve::kernels {
namespace {

using testing::CaseSpec;
using testing::ProblemCase;

constexpr NormKind kKinds[] = {NormKind::kLayerNorm, NormKind::kRmsNorm, NormKind::kBatchNorm,
                               NormKind::kGroupNorm, NormKind::kInstanceNorm};
constexpr DType kDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

// Failures shown per test before the rest are only counted.
constexpr size_t kShownFailures = 30;

void Report(const std::vector<std::string>& failures) {
  EXPECT_TRUE(failures.empty()) << testing::SummarizeFailures(failures, kShownFailures);
}

class CpuParity : public ::testing::TestWithParam<NormKind> {
 protected:
  CpuBackend backend_;
};

TEST_P(CpuParity, RandomSweepMatchesReference) {
  std::vector<std::string> failures;
  const std::vector<CaseSpec> specs = testing::ParitySweep(2024, 2);
  uint64_t seed = 0;
  for (const CaseSpec& spec : specs) {
    ++seed;
    if (spec.kind != GetParam()) continue;
    ProblemCase c = testing::MakeRandomCase(spec, seed);
    for (std::string& f : testing::CompareToReference(backend_, c)) failures.push_back(std::move(f));
  }
  Report(failures);
}

TEST_P(CpuParity, EdgeCasesMatchReference) {
  std::vector<std::string> failures;
  for (DType dtype : kDTypes) {
    for (ProblemCase& c : testing::EdgeCases(GetParam(), dtype, 5)) {
      for (std::string& f : testing::CompareToReference(backend_, c)) failures.push_back(std::move(f));
    }
  }
  Report(failures);
}

// The first value of every innermost run far from the rest: the half-type
// statistics take their pivot from the first vector (one value on the scalar
// path), which then lies far from the mean, and float sums of squares around
// it would lose the variance (without the second pass around the mean, the
// scalar BATCH_NORM variances miss the FLOAT32 bound). Rows of 4101 elements
// also give a second statistics chunk whose first vector is not outlying.
TEST_P(CpuParity, OutlyingFirstValuesMatchReference) {
  std::vector<std::string> failures;
  for (DType dtype : kDTypes) {
    CaseSpec spec;
    spec.kind = GetParam();
    spec.dtype = dtype;
    spec.return_stats = true;
    spec.use_batch_stats = true;
    spec.shape = spec.kind == NormKind::kLayerNorm || spec.kind == NormKind::kRmsNorm
                     ? std::vector<int64_t>{3, 4101}
                     : std::vector<int64_t>{2, 4, 1030};
    spec.num_groups = 2;
    ProblemCase c = testing::MakeRandomCase(spec, 91);
    const int64_t run = spec.shape.back();
    for (int64_t i = 0; i < c.input.NumElements(); ++i) {
      c.input.Set(i, i % run == 0 ? 30000.0f : c.input.Get(i) - std::nearbyint(c.input.Get(i)));
    }
    for (std::string& f : testing::CompareToReference(backend_, c)) failures.push_back(std::move(f));
  }
  Report(failures);
}

// Large enough that the backend splits the work over its threads.
CaseSpec LargeSpec(NormKind kind, DType dtype) {
  CaseSpec s;
  s.kind = kind;
  s.dtype = dtype;
  s.return_stats = true;
  s.residual = true;
  switch (kind) {
    case NormKind::kLayerNorm:
      s.shape = {8, 40, 515};
      s.params = testing::ParamMode::kAdaptivePerSample;
      break;
    case NormKind::kRmsNorm:
      s.shape = {301, 1031};
      s.unit_offset = true;
      break;
    case NormKind::kBatchNorm:
      s.shape = {33, 5, 41};
      break;
    case NormKind::kGroupNorm:
      s.shape = {12, 8, 131};
      s.num_groups = 4;
      break;
    case NormKind::kInstanceNorm:
      s.shape = {12, 6, 7, 11};
      break;
  }
  return s;
}

TEST_P(CpuParity, BatchInvariant) {
  std::vector<std::string> failures;
  for (DType dtype : kDTypes) {
    const ProblemCase c = testing::MakeRandomCase(LargeSpec(GetParam(), dtype), 77);
    for (std::string& f : testing::CheckBatchInvariance(backend_, c, 77)) failures.push_back(std::move(f));
  }
  Report(failures);
}

TEST_P(CpuParity, LargeCasesMatchReference) {
  std::vector<std::string> failures;
  for (DType dtype : kDTypes) {
    ProblemCase c = testing::MakeRandomCase(LargeSpec(GetParam(), dtype), 78);
    for (std::string& f : testing::CompareToReference(backend_, c)) failures.push_back(std::move(f));
  }
  Report(failures);
}

INSTANTIATE_TEST_SUITE_P(AllKinds, CpuParity, ::testing::ValuesIn(kKinds),
                         [](const ::testing::TestParamInfo<NormKind>& param_info) {
                           return std::string(NormKindName(param_info.param));
                         });

}  // namespace
}  // namespace normserve::kernels
