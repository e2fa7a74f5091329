// ValidateProblem: every rejected request gets the exact code and message;
// ComputeGeometry, NumStatGroups and RowBroadcast on valid ones.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/kernels/problem.h"

namespace normserve::kernels {
namespace {

// Validation never reads element values, only pointers and sizes.
alignas(16) const uint8_t kBytes[64] = {};

TensorView View(DType dtype, std::vector<int64_t> shape) {
  TensorView t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = kBytes;
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  t.byte_size = static_cast<uint64_t>(n) * DTypeSize(dtype);
  return t;
}

NormProblem LayerNorm(std::vector<int64_t> shape, DType dtype = DType::kFloat32) {
  NormProblem p;
  p.kind = NormKind::kLayerNorm;
  p.input = View(dtype, std::move(shape));
  p.output_dtype = dtype;
  return p;
}

NormProblem ChannelNorm(NormKind kind, std::vector<int64_t> shape) {
  NormProblem p = LayerNorm(std::move(shape));
  p.kind = kind;
  return p;
}

void ExpectInvalid(const NormProblem& p, const std::string& message) {
  const KernelStatus s = ValidateProblem(p);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.message();
  EXPECT_EQ(s.message(), message);
}

void ExpectOk(const NormProblem& p) {
  const KernelStatus s = ValidateProblem(p);
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST(Validate, AcceptsValidProblemsOfEveryKind) {
  NormProblem ln = LayerNorm({2, 4, 5});
  ln.gamma = View(DType::kFloat32, {5});
  ln.beta = View(DType::kFloat32, {5});
  ln.residual = View(DType::kFloat32, {2, 4, 5});
  ExpectOk(ln);
  NormProblem gn = ChannelNorm(NormKind::kGroupNorm, {2, 4, 3});
  gn.num_groups = 2;
  gn.gamma = View(DType::kFloat32, {4});
  ExpectOk(gn);
  ExpectOk(ChannelNorm(NormKind::kInstanceNorm, {1, 3}));
  NormProblem bn = ChannelNorm(NormKind::kBatchNorm, {2, 3, 2, 2});
  bn.running_mean = View(DType::kFloat32, {3});
  bn.running_var = View(DType::kFloat32, {3});
  ExpectOk(bn);
  bn.running_mean = bn.running_var = TensorView();
  bn.use_batch_stats = true;
  ExpectOk(bn);
}

TEST(Validate, InputIsRequired) {
  NormProblem p = LayerNorm({2, 3});
  p.input.data = nullptr;
  ExpectInvalid(p, "input is required");
}

TEST(Validate, InputBytesMustMatchShapeAndDType) {
  NormProblem p = LayerNorm({1, 4096}, DType::kFloat16);
  p.input.byte_size = 4094;
  ExpectInvalid(p, "input.data has 4094 bytes; shape [1,4096] FLOAT16 needs 8192");
  p.input.byte_size = 8194;
  ExpectInvalid(p, "input.data has 8194 bytes; shape [1,4096] FLOAT16 needs 8192");
}

TEST(Validate, NegativeDim) {
  ExpectInvalid(LayerNorm({2, -3}), "input.shape[1] is -3; every dim must be >= 1");
}

TEST(Validate, ZeroDim) { ExpectInvalid(LayerNorm({0, 3}), "input.shape[0] is 0; every dim must be >= 1"); }

TEST(Validate, RankZeroLayerNorm) {
  ExpectInvalid(LayerNorm({}), "input.shape has rank 0; LAYER_NORM needs rank >= 1");
}

TEST(Validate, RankBelowNormalizedDims) {
  NormProblem p = LayerNorm({4, 5});
  p.kind = NormKind::kRmsNorm;
  p.normalized_dims = 3;
  ExpectInvalid(p, "input.shape has rank 2; RMS_NORM with normalized_dims 3 needs rank >= 3");
}

TEST(Validate, NormalizedDimsBelowOne) {
  NormProblem p = LayerNorm({4, 5});
  p.normalized_dims = 0;
  ExpectInvalid(p, "normalized_dims is 0; must be >= 1");
}

TEST(Validate, RankAboveLimit) {
  ExpectInvalid(LayerNorm({1, 1, 1, 1, 1, 1, 1, 1, 2}), "input.shape has rank 9; the limit is 8");
}

TEST(Validate, ChannelKindsNeedRankTwo) {
  ExpectInvalid(ChannelNorm(NormKind::kGroupNorm, {16}),
                "input.shape has rank 1; GROUP_NORM needs rank >= 2 ([N, C, *spatial])");
  ExpectInvalid(ChannelNorm(NormKind::kBatchNorm, {16}),
                "input.shape has rank 1; BATCH_NORM needs rank >= 2 ([N, C, *spatial])");
}

TEST(Validate, NumGroupsMustDivideChannels) {
  NormProblem p = ChannelNorm(NormKind::kGroupNorm, {2, 16, 3});
  p.num_groups = 3;
  ExpectInvalid(p, "num_groups 3 does not divide C = 16 (input.shape[1])");
}

TEST(Validate, NumGroupsAtLeastOne) {
  NormProblem p = ChannelNorm(NormKind::kGroupNorm, {2, 16});
  p.num_groups = 0;
  ExpectInvalid(p, "num_groups is 0; GROUP_NORM needs num_groups >= 1");
}

TEST(Validate, InstanceNormIgnoresNumGroups) {
  NormProblem p = ChannelNorm(NormKind::kInstanceNorm, {2, 16});
  p.num_groups = 3;
  ExpectOk(p);
}

TEST(Validate, GammaMustBroadcastOverLeadingDims) {
  NormProblem p = LayerNorm({2, 4, 5});
  p.gamma = View(DType::kFloat32, {3, 5});
  ExpectInvalid(p, "gamma.shape [3,5] does not broadcast against input.shape [2,4,5] with normalized_dims 1");
}

TEST(Validate, GammaMustEndWithTheNormalizedDims) {
  NormProblem p = LayerNorm({2, 4, 5});
  p.normalized_dims = 2;
  p.gamma = View(DType::kFloat32, {5});
  ExpectInvalid(p, "gamma.shape [5] does not broadcast against input.shape [2,4,5] with normalized_dims 2");
  p.gamma = View(DType::kFloat32, {5, 4});
  ExpectInvalid(p, "gamma.shape [5,4] does not broadcast against input.shape [2,4,5] with normalized_dims 2");
}

TEST(Validate, ParamRankAboveInputRank) {
  NormProblem p = LayerNorm({4, 5});
  p.beta = View(DType::kFloat32, {1, 4, 5});
  ExpectInvalid(p, "beta.shape [1,4,5] does not broadcast against input.shape [4,5] with normalized_dims 1");
}

TEST(Validate, AdaptiveParamShapesAreAccepted) {
  NormProblem p = LayerNorm({2, 4, 5});
  for (std::vector<int64_t> shape :
       {std::vector<int64_t>{5}, {1, 5}, {4, 5}, {2, 1, 5}, {2, 4, 5}, {1, 1, 5}}) {
    p.gamma = View(DType::kFloat32, shape);
    ExpectOk(p);
  }
}

TEST(Validate, ParamRankZero) {
  NormProblem p = LayerNorm({4, 5});
  p.gamma = View(DType::kFloat32, {});
  ExpectInvalid(p, "gamma.shape has rank 0; expected at least the last 1 dim(s) of input.shape [4,5]");
}

TEST(Validate, ParamZeroDim) {
  NormProblem p = LayerNorm({4, 5});
  p.gamma = View(DType::kFloat32, {0, 5});
  ExpectInvalid(p, "gamma.shape[0] is 0; every dim must be >= 1");
}

TEST(Validate, ParamDTypeIsFloat32OrTheInputs) {
  NormProblem p = LayerNorm({4, 5}, DType::kBFloat16);
  p.gamma = View(DType::kFloat16, {5});
  ExpectInvalid(p, "gamma.dtype FLOAT16 must be FLOAT32 or input.dtype BFLOAT16");
  p.gamma = View(DType::kBFloat16, {5});
  ExpectOk(p);
  p.gamma = View(DType::kFloat32, {5});
  ExpectOk(p);
}

TEST(Validate, ParamBytes) {
  NormProblem p = LayerNorm({4, 4});
  p.gamma = View(DType::kFloat32, {4});
  p.gamma.byte_size = 8;
  ExpectInvalid(p, "gamma.data has 8 bytes; shape [4] FLOAT32 needs 16");
}

TEST(Validate, PresentParamWithNoBytes) {
  NormProblem p = LayerNorm({4, 4});
  p.beta = View(DType::kFloat32, {4});
  p.beta.byte_size = 0;
  ExpectInvalid(p, "beta.data has 0 bytes; shape [4] FLOAT32 needs 16");
}

TEST(Validate, ChannelParamsAreShapeC) {
  NormProblem p = ChannelNorm(NormKind::kGroupNorm, {2, 16, 3});
  p.num_groups = 4;
  p.beta = View(DType::kFloat32, {8});
  ExpectInvalid(p, "beta.shape [8] must be [C] = [16] (input.shape[1])");
  p.beta = View(DType::kFloat32, {16, 3});
  ExpectInvalid(p, "beta.shape [16,3] must be [C] = [16] (input.shape[1])");
}

TEST(Validate, EpsilonNaN) {
  NormProblem p = LayerNorm({4, 5});
  p.epsilon = std::numeric_limits<float>::quiet_NaN();
  ExpectInvalid(p, "epsilon is nan; must be finite and >= 0");
}

TEST(Validate, EpsilonNegative) {
  NormProblem p = LayerNorm({4, 5});
  p.epsilon = -0.5f;
  ExpectInvalid(p, "epsilon is -0.5; must be finite and >= 0");
}

TEST(Validate, EpsilonInfinite) {
  NormProblem p = LayerNorm({4, 5});
  p.epsilon = std::numeric_limits<float>::infinity();
  ExpectInvalid(p, "epsilon is inf; must be finite and >= 0");
}

TEST(Validate, EpsilonZeroIsAllowed) {
  NormProblem p = LayerNorm({4, 5});
  p.epsilon = 0;
  ExpectOk(p);
}

TEST(Validate, ResidualDType) {
  NormProblem p = LayerNorm({4, 5});
  p.residual = View(DType::kBFloat16, {4, 5});
  ExpectInvalid(p, "residual.dtype BFLOAT16 differs from input.dtype FLOAT32");
}

TEST(Validate, ResidualShape) {
  NormProblem p = LayerNorm({3, 2});
  p.residual = View(DType::kFloat32, {2, 3});
  ExpectInvalid(p, "residual.shape [2,3] differs from input.shape [3,2]");
}

TEST(Validate, ResidualBytes) {
  NormProblem p = LayerNorm({3, 2}, DType::kFloat16);
  p.residual = View(DType::kFloat16, {3, 2});
  p.residual.byte_size = 6;
  ExpectInvalid(p, "residual.data has 6 bytes; shape [3,2] FLOAT16 needs 12");
}

TEST(Validate, ResidualIsAllowedForEveryKind) {
  for (NormKind kind : {NormKind::kRmsNorm, NormKind::kGroupNorm, NormKind::kInstanceNorm}) {
    NormProblem p = ChannelNorm(kind, {2, 4});
    p.residual = View(DType::kFloat32, {2, 4});
    ExpectOk(p);
  }
}

TEST(Validate, BatchNormNeedsRunningStatistics) {
  NormProblem p = ChannelNorm(NormKind::kBatchNorm, {2, 3});
  ExpectInvalid(p, "running_mean is required for BATCH_NORM unless use_batch_stats is set");
  p.running_mean = View(DType::kFloat32, {3});
  ExpectInvalid(p, "running_var is required for BATCH_NORM unless use_batch_stats is set");
}

TEST(Validate, RunningStatisticsShapeAndDType) {
  NormProblem p = ChannelNorm(NormKind::kBatchNorm, {2, 3});
  p.running_mean = View(DType::kFloat32, {3});
  p.running_var = View(DType::kFloat32, {2});
  ExpectInvalid(p, "running_var.shape [2] must be [C] = [3] (input.shape[1])");
  p.input = View(DType::kFloat16, {2, 3});
  p.running_var = View(DType::kBFloat16, {3});
  ExpectInvalid(p, "running_var.dtype BFLOAT16 must be FLOAT32 or input.dtype FLOAT16");
}

TEST(Validate, RunningStatisticsOnlyForBatchNorm) {
  NormProblem p = LayerNorm({2, 3});
  p.running_mean = View(DType::kFloat32, {3});
  ExpectInvalid(p, "running_mean is set; only BATCH_NORM takes running statistics, not LAYER_NORM");
}

TEST(Validate, ElementCountOverflow) {
  NormProblem p = LayerNorm({1, 1});
  p.input.shape = {int64_t{1} << 32, int64_t{1} << 32};
  ExpectInvalid(p, "input.shape [4294967296,4294967296] has more elements than int64 can count");
}

TEST(Validate, ElementLimitIsResourceExhausted) {
  const NormProblem p = LayerNorm({10, 101});
  const KernelStatus s = ValidateProblem(p, 1000);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "input.shape [10,101] has 1010 elements; the limit is 1000");
  EXPECT_TRUE(ValidateProblem(p, 1010).ok());
}

TEST(Validate, UnknownEnumValues) {
  NormProblem p = LayerNorm({2, 3});
  p.input.dtype = static_cast<DType>(7);
  ExpectInvalid(p, "input.dtype has unknown value 7; expected FLOAT32, FLOAT16 or BFLOAT16");
  p = LayerNorm({2, 3});
  p.output_dtype = static_cast<DType>(-1);
  ExpectInvalid(p, "output_dtype has unknown value -1; expected FLOAT32, FLOAT16 or BFLOAT16");
  p = LayerNorm({2, 3});
  p.kind = static_cast<NormKind>(9);
  ExpectInvalid(
      p, "kind has unknown value 9; expected LAYER_NORM, RMS_NORM, BATCH_NORM, GROUP_NORM or INSTANCE_NORM");
}

TEST(Validate, OutputDTypeMayDifferFromInput) {
  NormProblem p = LayerNorm({2, 3}, DType::kBFloat16);
  p.output_dtype = DType::kFloat32;
  ExpectOk(p);
}

TEST(Geometry, LayerNormRowsAndCols) {
  NormProblem p = LayerNorm({2, 3, 4, 5});
  p.normalized_dims = 2;
  const ProblemGeometry g = ComputeGeometry(p);
  EXPECT_EQ(g.rows, 6);
  EXPECT_EQ(g.cols, 20);
  EXPECT_EQ(g.groups, 6);
  EXPECT_EQ(g.group_size, 20);
  EXPECT_EQ(NumStatGroups(p), 6);
  EXPECT_EQ(p.input.NumElements(), 120);
  p.normalized_dims = 4;
  EXPECT_EQ(ComputeGeometry(p).rows, 1);
  EXPECT_EQ(ComputeGeometry(p).cols, 120);
}

TEST(Geometry, GroupInstanceAndBatchNorm) {
  NormProblem p = ChannelNorm(NormKind::kGroupNorm, {2, 6, 3, 5});
  p.num_groups = 3;
  ProblemGeometry g = ComputeGeometry(p);
  EXPECT_EQ(g.n, 2);
  EXPECT_EQ(g.channels, 6);
  EXPECT_EQ(g.spatial, 15);
  EXPECT_EQ(g.num_groups, 3);
  EXPECT_EQ(g.groups, 6);
  EXPECT_EQ(g.group_size, 30);

  p.kind = NormKind::kInstanceNorm;
  g = ComputeGeometry(p);
  EXPECT_EQ(g.num_groups, 6);
  EXPECT_EQ(g.groups, 12);
  EXPECT_EQ(g.group_size, 15);

  p.kind = NormKind::kBatchNorm;
  g = ComputeGeometry(p);
  EXPECT_EQ(g.groups, 6);
  EXPECT_EQ(g.group_size, 30);
  EXPECT_EQ(NumStatGroups(p), 6);

  const NormProblem flat = ChannelNorm(NormKind::kInstanceNorm, {4, 3});
  EXPECT_EQ(ComputeGeometry(flat).spatial, 1);
  EXPECT_EQ(ComputeGeometry(flat).group_size, 1);
}

TEST(RowBroadcast, MapsRowsToParameterVectors) {
  const std::vector<int64_t> x = {2, 3, 4};
  const RowBroadcast plain(x, {4}, 1);
  EXPECT_TRUE(plain.uniform());
  EXPECT_TRUE(RowBroadcast(x, {1, 1, 4}, 1).uniform());
  const RowBroadcast per_position(x, {2, 3, 4}, 1);
  const RowBroadcast per_sample(x, {2, 1, 4}, 1);
  const RowBroadcast per_t(x, {3, 4}, 1);
  for (int64_t row = 0; row < 6; ++row) {
    EXPECT_EQ(plain.Offset(row), 0);
    EXPECT_EQ(per_position.Offset(row), row * 4);
    EXPECT_EQ(per_sample.Offset(row), (row / 3) * 4);
    EXPECT_EQ(per_t.Offset(row), (row % 3) * 4);
  }
  // Two normalized dims: parameter vectors of 3 * 4 elements.
  const RowBroadcast k2({5, 3, 4}, {5, 3, 4}, 2);
  EXPECT_EQ(k2.Offset(4), 48);
  EXPECT_TRUE(RowBroadcast({5, 3, 4}, {3, 4}, 2).uniform());
  EXPECT_TRUE(RowBroadcast().uniform());
}

}  // namespace
}  // namespace normserve::kernels
