// The float64 reference against values worked out by hand
// (docs/SEMANTICS.md, the worked examples and the "Decisions" section).
#include "normserve/kernels/reference.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/kernels/testing/parity.h"

namespace normserve::kernels {
namespace {

using testing::OwnedTensor;
using testing::ProblemCase;

// Hand-worked values are given to 4 decimals.
constexpr double kHandTolerance = 1e-4;

OwnedTensor Tensor(DType dtype, std::vector<int64_t> shape, const std::vector<float>& values) {
  OwnedTensor t = OwnedTensor::Zeros(dtype, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) t.Set(static_cast<int64_t>(i), values[i]);
  return t;
}

ProblemCase Case(NormKind kind, const std::vector<int64_t>& shape, const std::vector<float>& x, float eps) {
  ProblemCase c;
  c.kind = kind;
  c.input = Tensor(DType::kFloat32, shape, x);
  c.epsilon = eps;
  c.output_dtype = DType::kFloat32;
  return c;
}

std::vector<float> RunReference(ProblemCase& c) {
  const NormProblem p = c.Problem();
  const KernelStatus status = ValidateProblem(p);
  EXPECT_TRUE(status.ok()) << status.message();
  ReferenceNormalize(p);
  std::vector<float> out;
  for (int64_t i = 0; i < c.input.NumElements(); ++i)
    out.push_back(LoadAsFloat(c.output.data(), c.output_dtype, i));
  return out;
}

void ExpectNear(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << "element " << i << " = " << got[i];
    } else {
      EXPECT_NEAR(got[i], want[i], kHandTolerance) << "element " << i;
    }
  }
}

const double kNaN = std::nan("");

TEST(ReferenceLayerNorm, WorkedExample) {
  ProblemCase c = Case(NormKind::kLayerNorm, {1, 4}, {2, 0, 4, 4}, 1e-5f);
  c.return_stats = true;
  ExpectNear(RunReference(c), {-0.3015, -1.5076, 0.9045, 0.9045});
  EXPECT_FLOAT_EQ(c.mean[0], 2.5f);
  EXPECT_FLOAT_EQ(c.rstd[0], static_cast<float>(1 / std::sqrt(2.75 + 1e-5f)));
}

TEST(ReferenceLayerNorm, WorkedExampleWithGammaAndBeta) {
  ProblemCase c = Case(NormKind::kLayerNorm, {1, 4}, {2, 0, 4, 4}, 1e-5f);
  c.gamma = Tensor(DType::kFloat32, {4}, {2, 0.5f, 1, 3});
  c.beta = Tensor(DType::kFloat32, {4}, {1, -1, 0, 0.5f});
  ExpectNear(RunReference(c), {0.3970, -1.7538, 0.9045, 3.2135});
}

// The batch (0,0,6),(3,3,3), eps = 0: LayerNorm normalizes each row on its
// own, so the constant row has var 0, rstd = Inf and NaN outputs.
TEST(ReferenceLayerNorm, ConstantRowWithZeroEpsilonIsNaN) {
  ProblemCase c = Case(NormKind::kLayerNorm, {2, 3}, {0, 0, 6, 3, 3, 3}, 0.0f);
  c.return_stats = true;
  ExpectNear(RunReference(c), {-0.7071, -0.7071, 1.4142, kNaN, kNaN, kNaN});
  EXPECT_FLOAT_EQ(c.mean[0], 2.0f);
  EXPECT_FLOAT_EQ(c.mean[1], 3.0f);
  EXPECT_FLOAT_EQ(c.rstd[0], static_cast<float>(1 / std::sqrt(8.0)));
  EXPECT_EQ(c.rstd[1], HUGE_VALF);
}

// The same batch read as x[N = 2, C = 3] under BatchNorm with batch
// statistics: the channels are the columns (0,3), (0,3), (6,3).
TEST(ReferenceBatchNorm, BatchStatisticsWorkedExample) {
  ProblemCase c = Case(NormKind::kBatchNorm, {2, 3}, {0, 0, 6, 3, 3, 3}, 0.0f);
  c.use_batch_stats = true;
  c.return_stats = true;
  ExpectNear(RunReference(c), {-1, -1, 1, 1, 1, -1});
  EXPECT_EQ(c.mean, (std::vector<float>{1.5f, 1.5f, 4.5f}));
  EXPECT_EQ(c.variance, (std::vector<float>{2.25f, 2.25f, 2.25f}));
  EXPECT_FLOAT_EQ(c.rstd[2], 1 / 1.5f);
}

TEST(ReferenceBatchNorm, InferenceUsesRunningStatistics) {
  ProblemCase c = Case(NormKind::kBatchNorm, {2, 2}, {3, 0, 1, -1.5f}, 0.0f);
  c.running_mean = Tensor(DType::kFloat32, {2}, {1, -1});
  c.running_var = Tensor(DType::kFloat32, {2}, {4, 0.25f});
  c.gamma = Tensor(DType::kFloat32, {2}, {2, 1});
  c.beta = Tensor(DType::kFloat32, {2}, {0, 1});
  c.return_stats = true;
  ExpectNear(RunReference(c), {2, 3, 0, 0});
  // Decision: inference reports running_mean and 1/sqrt(running_var + eps).
  EXPECT_EQ(c.mean, (std::vector<float>{1, -1}));
  EXPECT_EQ(c.rstd, (std::vector<float>{0.5f, 2}));
}

TEST(ReferenceBatchNorm, ChannelsOverSpatialPositions) {
  // x[N=2, C=2, S=2]; channel 0 sees (1,3,5,7), channel 1 (0,0,0,8).
  ProblemCase c = Case(NormKind::kBatchNorm, {2, 2, 2}, {1, 3, 0, 0, 5, 7, 0, 8}, 0.0f);
  c.use_batch_stats = true;
  const double s0 = 1 / std::sqrt(5.0);   // var of (1,3,5,7) = 5
  const double s1 = 1 / std::sqrt(12.0);  // var of (0,0,0,8) = 12
  ExpectNear(RunReference(c), {-3 * s0, -1 * s0, -2 * s1, -2 * s1, 1 * s0, 3 * s0, -2 * s1, 6 * s1});
}

TEST(ReferenceRmsNorm, ScalesByRootMeanSquare) {
  ProblemCase c = Case(NormKind::kRmsNorm, {1, 4}, {1, 2, 3, 4}, 0.0f);
  c.return_stats = true;
  const double r = 1 / std::sqrt(7.5);
  ExpectNear(RunReference(c), {r, 2 * r, 3 * r, 4 * r});
  EXPECT_FLOAT_EQ(c.rstd[0], static_cast<float>(r));
}

TEST(ReferenceRmsNorm, UnitOffsetScalesByOnePlusGamma) {
  ProblemCase c = Case(NormKind::kRmsNorm, {1, 4}, {1, 2, 3, 4}, 0.0f);
  c.gamma = Tensor(DType::kFloat32, {4}, {1, 1, 2, 0.5f});
  c.beta = Tensor(DType::kFloat32, {4}, {0, 0, 0, 1});
  c.unit_offset = true;
  const double r = 1 / std::sqrt(7.5);
  ExpectNear(RunReference(c), {2 * r, 4 * r, 9 * r, 6 * r + 1});
}

TEST(ReferenceGroupNorm, TwoGroupsWithPerChannelAffine) {
  // x[1, C=4, S=2]: group 0 = channels 0,1 = (1,2,3,4); group 1 = (10,10,10,14).
  ProblemCase c = Case(NormKind::kGroupNorm, {1, 4, 2}, {1, 2, 3, 4, 10, 10, 10, 14}, 0.0f);
  c.num_groups = 2;
  c.gamma = Tensor(DType::kFloat32, {4}, {1, 2, 1, -1});
  c.beta = Tensor(DType::kFloat32, {4}, {0, 0, 1, 0});
  c.return_stats = true;
  ExpectNear(RunReference(c), {-1.3416, -0.4472, 0.8944, 2.6833, 0.4226, 0.4226, 0.5774, -1.7321});
  EXPECT_EQ(c.mean, (std::vector<float>{2.5f, 11}));
  EXPECT_FLOAT_EQ(c.rstd[1], static_cast<float>(1 / std::sqrt(3.0)));
}

TEST(ReferenceInstanceNorm, EachChannelOnItsOwn) {
  ProblemCase c = Case(NormKind::kInstanceNorm, {1, 2, 3}, {1, 2, 3, 5, 5, 8}, 0.0f);
  c.return_stats = true;
  ExpectNear(RunReference(c), {-1.2247, 0, 1.2247, -0.7071, -0.7071, 1.4142});
  EXPECT_EQ(c.mean, (std::vector<float>{2, 6}));
}

TEST(ReferenceLayerNorm, TwoNormalizedDims) {
  // x[2, 2, 2] with k = 2: each sample's 4 values form one group.
  ProblemCase c = Case(NormKind::kLayerNorm, {2, 2, 2}, {2, 0, 4, 4, 1, 1, 1, 5}, 0.0f);
  c.normalized_dims = 2;
  ExpectNear(RunReference(c), {-0.3015, -1.5076, 0.9045, 0.9045, -0.5774, -0.5774, -0.5774, 1.7321});
}

TEST(ReferenceLayerNorm, AdaptivePerSampleGamma) {
  // x[B=2, T=2, D=2], every row (0, 2) -> xhat (-1, 1); gamma [2, 1, 2].
  ProblemCase c = Case(NormKind::kLayerNorm, {2, 2, 2}, {0, 2, 0, 2, 0, 2, 0, 2}, 0.0f);
  c.gamma = Tensor(DType::kFloat32, {2, 1, 2}, {1, 2, 3, 4});
  c.beta = Tensor(DType::kFloat32, {2}, {10, 20});
  ExpectNear(RunReference(c), {9, 22, 9, 22, 7, 24, 7, 24});
}

TEST(ReferenceLayerNorm, AdaptivePerPositionGammaAndUnitOffset) {
  ProblemCase c = Case(NormKind::kLayerNorm, {1, 2, 2}, {0, 2, 0, 2}, 0.0f);
  c.gamma = Tensor(DType::kFloat32, {1, 2, 2}, {0, 1, 2, 3});
  c.beta = Tensor(DType::kFloat32, {1, 2, 2}, {0, 0, 1, 1});
  c.unit_offset = true;
  ExpectNear(RunReference(c), {-1, 2, -2, 5});
}

// h = round_to_dtype(x + r) in the input dtype, returned as residual_out,
// and normalized instead of x.
TEST(ReferenceResidual, RoundsTheSumToTheInputDTypeFirst) {
  ProblemCase c;
  c.kind = NormKind::kLayerNorm;
  c.input = Tensor(DType::kFloat16, {1, 2}, {1, 2048});
  c.residual = Tensor(DType::kFloat16, {1, 2}, {0.5f, 1});
  c.output_dtype = DType::kFloat32;
  c.epsilon = 0;
  c.return_stats = true;
  const std::vector<float> out = RunReference(c);
  // 2048 + 1 = 2049 is a FLOAT16 tie between 2048 and 2050: even is 2048.
  EXPECT_EQ(LoadAsFloat(c.residual_out.data(), DType::kFloat16, 0), 1.5f);
  EXPECT_EQ(LoadAsFloat(c.residual_out.data(), DType::kFloat16, 1), 2048.0f);
  EXPECT_FLOAT_EQ(c.mean[0], (1.5f + 2048) / 2);
  ExpectNear(out, {-1, 1});
}

TEST(ReferenceOutput, RoundsOnceFromDoubleToFloat16) {
  // BatchNorm inference with var 1, eps 0, gamma 1: y = x - m + b exactly
  // 1 + 2^-11 + 2^-40, just above a FLOAT16 tie. One rounding gives
  // 1 + 2^-10; rounding through float first would give 1.
  ProblemCase c = Case(NormKind::kBatchNorm, {1, 1}, {1}, 0.0f);
  c.running_mean = Tensor(DType::kFloat32, {1}, {-std::ldexp(1.0f, -11)});
  c.running_var = Tensor(DType::kFloat32, {1}, {1});
  c.beta = Tensor(DType::kFloat32, {1}, {std::ldexp(1.0f, -40)});
  c.output_dtype = DType::kFloat16;
  RunReference(c);
  uint16_t bits;
  std::memcpy(&bits, c.output.data(), 2);
  EXPECT_EQ(bits, 0x3c01);
}

TEST(ReferenceOutput, OutputDTypeDiffersFromInput) {
  ProblemCase c = Case(NormKind::kLayerNorm, {1, 4}, {2, 0, 4, 4}, 1e-5f);
  c.output_dtype = DType::kBFloat16;
  const std::vector<float> out = RunReference(c);
  EXPECT_EQ(c.output.size(), 8u);
  EXPECT_EQ(out[0], RoundToDType(-0.30151f, DType::kBFloat16));
  EXPECT_EQ(out[1], RoundToDType(-1.50755f, DType::kBFloat16));
}

// NaN or Inf in a group poisons that group only, statistics included.
TEST(ReferenceNonFinite, PoisonsOnlyItsGroup) {
  ProblemCase c = Case(NormKind::kLayerNorm, {3, 2}, {1, 3, HUGE_VALF, 0, 1, 3}, 1e-5f);
  c.return_stats = true;
  ExpectNear(RunReference(c), {-1, 1, kNaN, kNaN, -1, 1});
  EXPECT_TRUE(std::isnan(c.mean[1]));
  EXPECT_TRUE(std::isnan(c.rstd[1]));
  EXPECT_EQ(c.mean[2], 2.0f);
}

// Decision: gamma / beta are plain arithmetic; a NaN gamma[j] makes column j
// NaN in every row and leaves the other columns alone.
TEST(ReferenceNonFinite, NaNGammaPoisonsItsColumnOnly) {
  ProblemCase c = Case(NormKind::kLayerNorm, {2, 2}, {1, 3, 5, 7}, 0.0f);
  c.gamma = Tensor(DType::kFloat32, {2}, {std::nanf(""), 1});
  ExpectNear(RunReference(c), {kNaN, 1, kNaN, 1});
}

// Decision: BatchNorm inference computes no statistics from x, so it is
// elementwise: Inf in gives Inf out and the rest of the channel is finite.
TEST(ReferenceNonFinite, BatchNormInferenceIsElementwise) {
  ProblemCase c = Case(NormKind::kBatchNorm, {2, 1}, {HUGE_VALF, 2}, 0.0f);
  c.running_mean = Tensor(DType::kFloat32, {1}, {1});
  c.running_var = Tensor(DType::kFloat32, {1}, {1});
  const std::vector<float> out = RunReference(c);
  EXPECT_EQ(out[0], HUGE_VALF);
  EXPECT_EQ(out[1], 1.0f);
}

TEST(ReferenceRmsNorm, NeverWritesMean) {
  ProblemCase c = Case(NormKind::kRmsNorm, {2, 3}, {1, 2, 3, 4, 5, 6}, 1e-6f);
  c.return_stats = true;
  c.Problem();
  const std::vector<float> before = c.mean;
  RunReference(c);
  ASSERT_EQ(c.mean.size(), 2u);
  EXPECT_EQ(std::memcmp(c.mean.data(), before.data(), 8), 0);
}

TEST(ReferenceBackend, RunValidatesAndComputesEveryProblem) {
  ProblemCase a = Case(NormKind::kLayerNorm, {1, 4}, {2, 0, 4, 4}, 1e-5f);
  ProblemCase b = Case(NormKind::kInstanceNorm, {1, 2, 3}, {1, 2, 3, 5, 5, 8}, 0.0f);
  NormProblem problems[] = {a.Problem(), b.Problem()};
  ReferenceBackend backend;
  EXPECT_EQ(backend.name(), "reference");
  ASSERT_TRUE(backend.Run(problems, 2).ok());
  EXPECT_NEAR(LoadAsFloat(a.output.data(), DType::kFloat32, 1), -1.5076, kHandTolerance);
  EXPECT_NEAR(LoadAsFloat(b.output.data(), DType::kFloat32, 2), 1.2247, kHandTolerance);

  problems[1].epsilon = -1;
  const KernelStatus status = backend.Run(problems, 2);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "epsilon is -1; must be finite and >= 0");
}

}  // namespace
}  // namespace normserve::kernels
