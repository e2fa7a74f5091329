// The parity harness itself: it passes the reference and catches backends
// that are wrong by a little (2 ulp, one skipped value, a stray write, one
// flipped bit, batch-dependent results).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/kernels/reference.h"
#include "normserve/kernels/testing/parity.h"

namespace normserve::kernels {
namespace {

using testing::CaseSpec;
using testing::CheckBatchInvariance;
using testing::CompareToReference;
using testing::MakeRandomCase;
using testing::ParamMode;
using testing::ProblemCase;

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& m : v) s += m + "\n";
  return s;
}

// The reference with a deliberate fault applied to each problem afterwards.
class FaultyBackend final : public Backend {
 public:
  explicit FaultyBackend(std::function<void(const NormProblem&, size_t index, size_t count)> fault)
      : fault_(std::move(fault)) {}
  std::string_view name() const override { return "faulty"; }
  std::string device_description() const override { return "test double"; }
  KernelStatus Run(const NormProblem* problems, size_t count) override {
    NORMSERVE_KERNEL_RETURN_IF_ERROR(reference_.Run(problems, count));
    for (size_t i = 0; i < count; ++i) fault_(problems[i], i, count);
    return KernelStatus::Ok();
  }

 private:
  ReferenceBackend reference_;
  std::function<void(const NormProblem&, size_t, size_t)> fault_;
};

// Moves element i of a 16-bit output by `ulps` units in the last place.
void Nudge16(const NormProblem& p, int64_t i, int ulps) {
  uint16_t bits;
  std::memcpy(&bits, static_cast<uint8_t*>(p.out.output) + 2 * i, 2);
  bits = static_cast<uint16_t>((bits & 0x8000) ? bits - ulps : bits + ulps);
  std::memcpy(static_cast<uint8_t*>(p.out.output) + 2 * i, &bits, 2);
}

CaseSpec Spec(NormKind kind, DType dtype) {
  CaseSpec s;
  s.kind = kind;
  s.dtype = dtype;
  s.shape = kind == NormKind::kLayerNorm || kind == NormKind::kRmsNorm ? std::vector<int64_t>{5, 37}
                                                                       : std::vector<int64_t>{3, 4, 5};
  if (kind == NormKind::kGroupNorm) s.num_groups = 2;
  s.return_stats = true;
  s.residual = true;
  return s;
}

TEST(Harness, ReferenceAgreesWithItselfOnTheSweep) {
  ReferenceBackend reference;
  const std::vector<CaseSpec> specs = testing::ParitySweep(7, 1);
  for (size_t i = 0; i < specs.size(); ++i) {
    ProblemCase c = MakeRandomCase(specs[i], i);
    const std::vector<std::string> failures = CompareToReference(reference, c);
    ASSERT_TRUE(failures.empty()) << Join(failures);
  }
}

TEST(Harness, SweepCoversEveryCombinationWithValidCases) {
  const std::vector<CaseSpec> specs = testing::ParitySweep(11, 1);
  // LAYER and RMS: 3 dtypes x 6 modes x 2 x 2; BATCH: 3 x 4 x 2 x 2 x 2;
  // GROUP and INSTANCE: 3 x 4 x 2 x 2.
  EXPECT_EQ(specs.size(), 2u * 72 + 96 + 2 * 48);
  EXPECT_EQ(testing::ParitySweep(11, 2).size(), 2 * specs.size());
  std::set<int64_t> cols;
  std::set<std::string> kinds_modes;
  bool float32_params_for_half = false;
  bool other_output_dtype = false;
  for (size_t i = 0; i < specs.size(); ++i) {
    const CaseSpec& s = specs[i];
    ProblemCase c = MakeRandomCase(s, i);
    const KernelStatus status = ValidateProblem(c.Problem());
    ASSERT_TRUE(status.ok()) << testing::DescribeSpec(s) << ": " << status.message();
    cols.insert(s.shape.back());
    kinds_modes.insert(std::string(NormKindName(s.kind)) + std::string(testing::ParamModeName(s.params)));
    float32_params_for_half |= s.dtype != DType::kFloat32 && s.param_dtype == DType::kFloat32;
    other_output_dtype |= s.output_dtype.has_value() && *s.output_dtype != s.dtype;
  }
  EXPECT_TRUE(cols.count(1));
  EXPECT_TRUE(std::any_of(cols.begin(), cols.end(), [](int64_t c) { return c > 16 && c % 8 != 0; }));
  EXPECT_EQ(kinds_modes.size(), 2u * 6 + 3 * 4);
  EXPECT_TRUE(float32_params_for_half);
  EXPECT_TRUE(other_output_dtype);
  // Deterministic in the seed.
  EXPECT_EQ(testing::DescribeSpec(testing::ParitySweep(11, 1)[100]), testing::DescribeSpec(specs[100]));
}

// Moves the largest-magnitude value of the first row by 2 ulp (where the
// float32 floor for cancelling terms is far below 1 ulp).
TEST(Harness, CatchesTwoUlpInOneHalfOutput) {
  int64_t nudged = -1;
  FaultyBackend faulty([&nudged](const NormProblem& p, size_t, size_t) {
    nudged = 0;
    for (int64_t i = 1; i < 37; ++i) {
      if (std::fabs(LoadAsFloat(p.out.output, p.output_dtype, i)) >
          std::fabs(LoadAsFloat(p.out.output, p.output_dtype, nudged))) {
        nudged = i;
      }
    }
    Nudge16(p, nudged, 2);
  });
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    ProblemCase c = MakeRandomCase(Spec(NormKind::kLayerNorm, dtype), 1);
    const std::vector<std::string> failures = CompareToReference(faulty, c);
    ASSERT_EQ(failures.size(), 1u) << Join(failures);
    EXPECT_NE(failures[0].find("output[" + std::to_string(nudged) + "] got"), std::string::npos)
        << failures[0];
    EXPECT_NE(failures[0].find("2 ulp apart"), std::string::npos) << failures[0];
  }
}

// Near zero, where y = xhat * scale + shift cancels, a float32 kernel may be
// several FLOAT16 ulps off; the harness allows 1e-5 * (|xhat * scale| + |shift|).
TEST(Harness, AllowsTheFloat32FloorWhereTermsCancel) {
  ProblemCase c;
  c.kind = NormKind::kLayerNorm;
  c.input = testing::OwnedTensor::Zeros(DType::kFloat32, {1, 2});
  c.input.Set(0, -1);
  c.input.Set(1, 1);
  c.epsilon = 0;
  c.beta = testing::OwnedTensor::Zeros(DType::kFloat32, {2});
  c.beta.Set(1, -1.0f + 0x1p-20f);  // y[1] = 1 - 1 + 2^-20, a FLOAT16 subnormal
  c.output_dtype = DType::kFloat16;
  for (int ulps : {4, 40}) {
    FaultyBackend faulty([ulps](const NormProblem& p, size_t, size_t) { Nudge16(p, 1, ulps); });
    const std::vector<std::string> failures = CompareToReference(faulty, c);
    // The terms are 1 and -1, so the floor is 2e-5, about 335 ulps of 2^-24 here.
    EXPECT_TRUE(failures.empty()) << Join(failures);
  }
  FaultyBackend far([](const NormProblem& p, size_t, size_t) { Nudge16(p, 1, 400); });
  EXPECT_EQ(CompareToReference(far, c).size(), 1u);
}

TEST(Harness, AllowsOneUlp) {
  FaultyBackend faulty([](const NormProblem& p, size_t, size_t) { Nudge16(p, 3, 1); });
  ProblemCase c = MakeRandomCase(Spec(NormKind::kRmsNorm, DType::kBFloat16), 2);
  EXPECT_TRUE(CompareToReference(faulty, c).empty());
}

TEST(Harness, CatchesFloat32ErrorAboveTheBound) {
  FaultyBackend faulty([](const NormProblem& p, size_t, size_t) {
    float* out = static_cast<float*>(p.out.output);
    out[5] += 2e-5f * std::max(1.0f, std::fabs(out[5]));
  });
  ProblemCase c = MakeRandomCase(Spec(NormKind::kGroupNorm, DType::kFloat32), 3);
  const std::vector<std::string> failures = CompareToReference(faulty, c);
  ASSERT_EQ(failures.size(), 1u) << Join(failures);
  EXPECT_NE(failures[0].find("output[5]"), std::string::npos) << failures[0];
}

TEST(Harness, CatchesAnUnwrittenOutput) {
  // Rewriting the sentinel over one value looks like a backend that skipped it.
  FaultyBackend faulty([](const NormProblem& p, size_t, size_t) {
    std::memset(static_cast<uint8_t*>(p.out.output) + 4 * 9, 0xA5, 4);
  });
  ProblemCase c = MakeRandomCase(Spec(NormKind::kInstanceNorm, DType::kFloat32), 4);
  EXPECT_EQ(CompareToReference(faulty, c).size(), 1u);
}

TEST(Harness, CatchesANaNWhereTheReferenceIsFinite) {
  FaultyBackend faulty(
      [](const NormProblem& p, size_t, size_t) { static_cast<float*>(p.out.output)[0] = std::nanf(""); });
  ProblemCase c = MakeRandomCase(Spec(NormKind::kBatchNorm, DType::kFloat32), 5);
  const std::vector<std::string> failures = CompareToReference(faulty, c);
  ASSERT_EQ(failures.size(), 1u) << Join(failures);
  EXPECT_NE(failures[0].find("got nan"), std::string::npos) << failures[0];
}

TEST(Harness, CatchesOneFlippedBitInResidualOut) {
  FaultyBackend faulty(
      [](const NormProblem& p, size_t, size_t) { static_cast<uint8_t*>(p.out.residual_out)[6] ^= 1; });
  ProblemCase c = MakeRandomCase(Spec(NormKind::kLayerNorm, DType::kFloat16), 6);
  const std::vector<std::string> failures = CompareToReference(faulty, c);
  ASSERT_EQ(failures.size(), 1u) << Join(failures);
  EXPECT_NE(failures[0].find("residual_out[3] bits differ"), std::string::npos) << failures[0];
}

TEST(Harness, CatchesAStatisticOffByMoreThanTheBound) {
  FaultyBackend faulty([](const NormProblem& p, size_t, size_t) { p.out.rstd[1] *= 1.001f; });
  ProblemCase c = MakeRandomCase(Spec(NormKind::kLayerNorm, DType::kBFloat16), 7);
  const std::vector<std::string> failures = CompareToReference(faulty, c);
  ASSERT_EQ(failures.size(), 1u) << Join(failures);
  EXPECT_NE(failures[0].find("rstd[1]"), std::string::npos) << failures[0];
}

TEST(Harness, CatchesAMeanWrittenForRmsNorm) {
  FaultyBackend faulty([](const NormProblem& p, size_t, size_t) { p.out.mean[0] = 0.0f; });
  ProblemCase c = MakeRandomCase(Spec(NormKind::kRmsNorm, DType::kFloat32), 8);
  const std::vector<std::string> failures = CompareToReference(faulty, c);
  ASSERT_EQ(failures.size(), 1u) << Join(failures);
  EXPECT_NE(failures[0].find("RMS_NORM must not write it"), std::string::npos) << failures[0];
}

TEST(Harness, ReportsABackendError) {
  class Failing final : public Backend {
   public:
    std::string_view name() const override { return "failing"; }
    std::string device_description() const override { return ""; }
    KernelStatus Run(const NormProblem*, size_t) override {
      return KernelStatus::Internal("cudaLaunch failed");
    }
  } failing;
  ProblemCase c = MakeRandomCase(Spec(NormKind::kLayerNorm, DType::kFloat32), 9);
  const std::vector<std::string> failures = CompareToReference(failing, c);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures[0].find("failing Run failed with code 13: cudaLaunch failed"), std::string::npos);
}

TEST(Harness, ReferenceIsBatchInvariant) {
  ReferenceBackend reference;
  for (NormKind kind : {NormKind::kLayerNorm, NormKind::kRmsNorm, NormKind::kBatchNorm, NormKind::kGroupNorm,
                        NormKind::kInstanceNorm}) {
    CaseSpec s = Spec(kind, DType::kBFloat16);
    s.params = kind == NormKind::kLayerNorm ? ParamMode::kAdaptivePerSample : ParamMode::kAffine;
    s.shape = kind == NormKind::kLayerNorm ? std::vector<int64_t>{3, 5, 19} : s.shape;
    const ProblemCase c = MakeRandomCase(s, 10);
    const std::vector<std::string> failures = CheckBatchInvariance(reference, c, 10);
    EXPECT_TRUE(failures.empty()) << Join(failures);
  }
}

TEST(Harness, CatchesResultsThatDependOnTheBatch) {
  // Changes the last bit of the first value of every problem but the first
  // in a batch: invisible to CompareToReference, caught by the invariance check.
  FaultyBackend faulty([](const NormProblem& p, size_t index, size_t) {
    if (index > 0) static_cast<uint8_t*>(p.out.output)[0] ^= 1;
  });
  ProblemCase c = MakeRandomCase(Spec(NormKind::kLayerNorm, DType::kFloat32), 11);
  EXPECT_TRUE(CompareToReference(faulty, c).empty());
  const std::vector<std::string> failures = CheckBatchInvariance(faulty, c, 11);
  EXPECT_FALSE(failures.empty());
  EXPECT_NE(Join(failures).find("in a batch: output"), std::string::npos) << Join(failures);
}

TEST(Harness, CatchesResultsThatDependOnTheRowCount) {
  FaultyBackend faulty([](const NormProblem& p, size_t, size_t) {
    if (ComputeGeometry(p).rows > 1) static_cast<uint8_t*>(p.out.output)[0] ^= 1;
  });
  ProblemCase c = MakeRandomCase(Spec(NormKind::kRmsNorm, DType::kFloat16), 12);
  const std::vector<std::string> failures = CheckBatchInvariance(faulty, c, 12);
  EXPECT_NE(Join(failures).find("unit 0 alone: output"), std::string::npos) << Join(failures);
}

TEST(Harness, EdgeCasesAreValidForEveryKindAndDType) {
  for (NormKind kind : {NormKind::kLayerNorm, NormKind::kRmsNorm, NormKind::kBatchNorm, NormKind::kGroupNorm,
                        NormKind::kInstanceNorm}) {
    for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      std::vector<ProblemCase> cases = testing::EdgeCases(kind, dtype, 1);
      EXPECT_EQ(cases.size(), kind == NormKind::kBatchNorm ? 16u : 8u);
      for (ProblemCase& c : cases) {
        const KernelStatus status = ValidateProblem(c.Problem());
        EXPECT_TRUE(status.ok()) << c.name << ": " << status.message();
      }
    }
  }
}

TEST(Harness, HalfUlpDistance) {
  EXPECT_EQ(testing::HalfUlpDistance(0x0000, 0x8000), 0);
  EXPECT_EQ(testing::HalfUlpDistance(0x0001, 0x8001), 2);
  EXPECT_EQ(testing::HalfUlpDistance(0x3c00, 0x3bff), 1);
  EXPECT_EQ(testing::HalfUlpDistance(0xbc00, 0xbc02), 2);
}

}  // namespace
}  // namespace normserve::kernels
