// Request conversion and validation through NormCore: valid requests produce
// outputs of the right shape and values, malformed ones get the exact code
// and message.
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/core/norm_core.h"
#include "server/core/request_conversion.h"
#include "tests/server/server_test_util.h"

namespace normserve::server {
namespace {

using testing::FakeBackend;
using testing::Float32Tensor;
using testing::Floats;
using testing::LayerNormRequest;
using testing::RunSync;

class ConversionTest : public ::testing::Test {
 protected:
  ConversionTest() {
    std::vector<std::unique_ptr<kernels::Backend>> backends;
    backends.push_back(std::make_unique<FakeBackend>("cpu"));
    CoreOptions options;
    options.max_tensor_elements = 1 << 20;
    core_ = std::make_unique<NormCore>(options, std::move(backends), "cpu", nullptr);
  }

  // The request's status code and message.
  void ExpectError(const v1::NormalizeRequest& request, absl::StatusCode code, const std::string& message) {
    absl::StatusOr<v1::NormalizeResponse> result = RunSync(*core_, request);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), code) << result.status();
    EXPECT_EQ(result.status().message(), message);
  }

  std::unique_ptr<NormCore> core_;
};

// Float64 LayerNorm of one row, for checking values end to end.
std::vector<double> LayerNormRow(const float* x, const float* gamma, const float* beta, int64_t n,
                                 double eps) {
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= static_cast<double>(n);
  double var = 0;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<double>(n);
  const double rstd = 1.0 / std::sqrt(var + eps);
  std::vector<double> y(n);
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
  return y;
}

TEST_F(ConversionTest, LayerNormValuesShapesAndTiming) {
  v1::NormalizeRequest request = LayerNormRequest(3, 37, 7);
  request.set_request_id(1234);
  request.set_return_stats(true);
  absl::StatusOr<v1::NormalizeResponse> response = RunSync(*core_, request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->request_id(), 1234u);
  EXPECT_EQ(response->backend(), "cpu");
  EXPECT_EQ(response->output().dtype(), v1::FLOAT32);
  ASSERT_EQ(response->output().shape_size(), 2);
  EXPECT_EQ(response->output().shape(0), 3);
  EXPECT_EQ(response->output().shape(1), 37);
  const std::vector<float> x = Floats(request.input());
  const std::vector<float> g = Floats(request.gamma());
  const std::vector<float> b = Floats(request.beta());
  const std::vector<float> y = Floats(response->output());
  ASSERT_EQ(y.size(), x.size());
  for (int64_t r = 0; r < 3; ++r) {
    const std::vector<double> ref = LayerNormRow(&x[r * 37], g.data(), b.data(), 37, 1e-5);
    for (int64_t c = 0; c < 37; ++c) {
      EXPECT_NEAR(y[r * 37 + c], ref[c], 1e-5 * std::max(1.0, std::abs(ref[c]))) << r << "," << c;
    }
  }
  // Statistics: [rows] FLOAT32 mean and rstd.
  EXPECT_EQ(response->mean().dtype(), v1::FLOAT32);
  ASSERT_EQ(response->mean().shape_size(), 1);
  EXPECT_EQ(response->mean().shape(0), 3);
  EXPECT_EQ(response->rstd().data().size(), 3 * sizeof(float));
  EXPECT_FALSE(response->has_residual_out());
  EXPECT_FALSE(response->has_variance());
  // Timing is filled and consistent.
  const v1::ServerTiming& t = response->timing();
  EXPECT_GT(t.compute_ns(), 0u);
  EXPECT_GE(t.total_ns(), t.queue_ns() + t.compute_ns());
  EXPECT_EQ(t.batch_requests(), 1u);
  EXPECT_EQ(t.batch_rows(), 3u);
}

TEST_F(ConversionTest, ResidualOutputDTypeAndRmsStats) {
  v1::NormalizeRequest request = LayerNormRequest(2, 8, 3);
  request.set_kind(v1::RMS_NORM);
  request.clear_beta();
  *request.mutable_residual() = Float32Tensor({2, 8}, testing::RandomValues(16, 99));
  request.set_output_dtype(v1::BFLOAT16);
  request.set_return_stats(true);
  absl::StatusOr<v1::NormalizeResponse> response = RunSync(*core_, request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->output().dtype(), v1::BFLOAT16);
  EXPECT_EQ(response->output().data().size(), 16u * 2);
  EXPECT_EQ(response->residual_out().dtype(), v1::FLOAT32);
  // h = x + r exactly in float32.
  const std::vector<float> x = Floats(request.input());
  const std::vector<float> r = Floats(request.residual());
  const std::vector<float> h = Floats(response->residual_out());
  ASSERT_EQ(h.size(), 16u);
  for (size_t i = 0; i < h.size(); ++i) EXPECT_EQ(h[i], x[i] + r[i]);
  // RMS_NORM returns rstd but no mean.
  EXPECT_FALSE(response->has_mean());
  EXPECT_EQ(response->rstd().data().size(), 2 * sizeof(float));
}

TEST_F(ConversionTest, BatchNormWithBatchStatsReturnsMeanAndVariance) {
  v1::NormalizeRequest request;
  request.set_kind(v1::BATCH_NORM);
  request.set_use_batch_stats(true);
  request.set_epsilon(0.0f);
  // x is [N=2, C=3]: channels are columns.
  *request.mutable_input() = Float32Tensor({2, 3}, {0, 0, 6, 3, 3, 3});
  absl::StatusOr<v1::NormalizeResponse> response = RunSync(*core_, request);
  ASSERT_TRUE(response.ok()) << response.status();
  const std::vector<float> y = Floats(response->output());
  const std::vector<float> expected = {-1, -1, 1, 1, 1, -1};
  ASSERT_EQ(y.size(), expected.size());
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], expected[i], 1e-5);
  EXPECT_EQ(Floats(response->mean()), (std::vector<float>{1.5f, 1.5f, 4.5f}));
  EXPECT_EQ(Floats(response->variance()), (std::vector<float>{2.25f, 2.25f, 2.25f}));
  ASSERT_EQ(response->mean().shape_size(), 1);
  EXPECT_EQ(response->mean().shape(0), 3);
}

TEST_F(ConversionTest, GroupNormStatsShape) {
  v1::NormalizeRequest request;
  request.set_kind(v1::GROUP_NORM);
  request.set_num_groups(2);
  request.set_return_stats(true);
  *request.mutable_input() = Float32Tensor({2, 4, 3}, testing::RandomValues(24, 5));
  absl::StatusOr<v1::NormalizeResponse> response = RunSync(*core_, request);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->mean().shape_size(), 2);
  EXPECT_EQ(response->mean().shape(0), 2);
  EXPECT_EQ(response->mean().shape(1), 2);
  EXPECT_EQ(response->timing().batch_rows(), 4u);
}

TEST_F(ConversionTest, KindUnset) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.clear_kind();
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "kind is unset; expected LAYER_NORM, RMS_NORM, BATCH_NORM, GROUP_NORM or INSTANCE_NORM");
}

TEST_F(ConversionTest, KindUnknown) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.set_kind(static_cast<v1::NormKind>(42));
  ExpectError(
      request, absl::StatusCode::kInvalidArgument,
      "kind has unknown value 42; expected LAYER_NORM, RMS_NORM, BATCH_NORM, GROUP_NORM or INSTANCE_NORM");
}

TEST_F(ConversionTest, BackendUnknown) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.set_backend(static_cast<v1::BackendPreference>(7));
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "backend has unknown value 7; expected BACKEND_AUTO, BACKEND_CPU or BACKEND_CUDA");
}

TEST_F(ConversionTest, InputMissing) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.clear_input();
  ExpectError(request, absl::StatusCode::kInvalidArgument, "input is required");
}

TEST_F(ConversionTest, InputDTypeUnset) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.mutable_input()->clear_dtype();
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "input.dtype is unset; expected FLOAT32, FLOAT16 or BFLOAT16");
}

TEST_F(ConversionTest, InputDTypeUnknown) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.mutable_input()->set_dtype(static_cast<v1::DType>(9));
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "input.dtype has unknown value 9; expected FLOAT32, FLOAT16 or BFLOAT16");
}

TEST_F(ConversionTest, GammaDTypeUnset) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.mutable_gamma()->clear_dtype();
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "gamma.dtype is unset; expected FLOAT32, FLOAT16 or BFLOAT16");
}

TEST_F(ConversionTest, ResidualDTypeUnset) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.mutable_residual()->add_shape(1);
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "residual.dtype is unset; expected FLOAT32, FLOAT16 or BFLOAT16");
}

TEST_F(ConversionTest, OutputDTypeUnknown) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.set_output_dtype(static_cast<v1::DType>(4));
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "output_dtype has unknown value 4; expected FLOAT32, FLOAT16 or BFLOAT16");
}

TEST_F(ConversionTest, NormalizedDimsNegative) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.set_normalized_dims(-1);
  ExpectError(request, absl::StatusCode::kInvalidArgument, "normalized_dims is -1; must be >= 0 (0 means 1)");
}

TEST_F(ConversionTest, NumGroupsZero) {
  v1::NormalizeRequest request;
  request.set_kind(v1::GROUP_NORM);
  *request.mutable_input() = Float32Tensor({1, 4}, {1, 2, 3, 4});
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "num_groups is 0; GROUP_NORM needs num_groups >= 1");
}

TEST_F(ConversionTest, InputDataTooShort) {
  v1::NormalizeRequest request;
  request.set_kind(v1::LAYER_NORM);
  request.mutable_input()->set_dtype(v1::FLOAT16);
  request.mutable_input()->add_shape(1);
  request.mutable_input()->add_shape(4096);
  request.mutable_input()->set_data(std::string(4094, '\0'));
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "input.data has 4094 bytes; shape [1,4096] FLOAT16 needs 8192");
}

TEST_F(ConversionTest, NegativeDim) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.clear_gamma();
  request.clear_beta();
  request.mutable_input()->set_shape(1, -3);
  ExpectError(request, absl::StatusCode::kInvalidArgument, "input.shape[1] is -3; every dim must be >= 1");
}

TEST_F(ConversionTest, RankZeroInput) {
  v1::NormalizeRequest request;
  request.set_kind(v1::LAYER_NORM);
  request.mutable_input()->set_dtype(v1::FLOAT32);
  request.mutable_input()->set_data(std::string(4, '\0'));
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "input.shape has rank 0; LAYER_NORM needs rank >= 1");
}

TEST_F(ConversionTest, GroupsDoNotDivideChannels) {
  v1::NormalizeRequest request;
  request.set_kind(v1::GROUP_NORM);
  request.set_num_groups(3);
  *request.mutable_input() = Float32Tensor({1, 16}, testing::RandomValues(16, 2));
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "num_groups 3 does not divide C = 16 (input.shape[1])");
}

TEST_F(ConversionTest, GammaDoesNotBroadcast) {
  v1::NormalizeRequest request;
  request.set_kind(v1::LAYER_NORM);
  *request.mutable_input() = Float32Tensor({2, 4, 5}, testing::RandomValues(40, 2));
  *request.mutable_gamma() = Float32Tensor({3, 5}, testing::RandomValues(15, 3));
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "gamma.shape [3,5] does not broadcast against input.shape [2,4,5] with normalized_dims 1");
}

TEST_F(ConversionTest, EpsilonNaN) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.set_epsilon(std::numeric_limits<float>::quiet_NaN());
  ExpectError(request, absl::StatusCode::kInvalidArgument, "epsilon is nan; must be finite and >= 0");
}

TEST_F(ConversionTest, ResidualDTypeMismatch) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.mutable_residual()->set_dtype(v1::BFLOAT16);
  request.mutable_residual()->add_shape(1);
  request.mutable_residual()->add_shape(4);
  request.mutable_residual()->set_data(std::string(8, '\0'));
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "residual.dtype BFLOAT16 differs from input.dtype FLOAT32");
}

TEST_F(ConversionTest, TooManyElements) {
  v1::NormalizeRequest request;
  request.set_kind(v1::LAYER_NORM);
  request.mutable_input()->set_dtype(v1::FLOAT32);
  request.mutable_input()->add_shape(int64_t{1} << 40);
  request.mutable_input()->add_shape(int64_t{1} << 40);
  const absl::StatusOr<v1::NormalizeResponse> result = RunSync(*core_, request);
  ASSERT_FALSE(result.ok());
  // The product overflows int64: rejected before any allocation.
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  EXPECT_NE(result.status().message().find("input.shape"), std::string::npos) << result.status();
}

TEST_F(ConversionTest, BatchNormNeedsRunningStats) {
  v1::NormalizeRequest request;
  request.set_kind(v1::BATCH_NORM);
  *request.mutable_input() = Float32Tensor({2, 3}, testing::RandomValues(6, 2));
  const absl::StatusOr<v1::NormalizeResponse> result = RunSync(*core_, request);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  EXPECT_NE(result.status().message().find("running_mean"), std::string::npos) << result.status();
}

TEST_F(ConversionTest, CudaWithoutGpuIsFailedPrecondition) {
  v1::NormalizeRequest request = LayerNormRequest(1, 4, 1);
  request.set_backend(v1::BACKEND_CUDA);
  ExpectError(request, absl::StatusCode::kFailedPrecondition,
              "backend BACKEND_CUDA is not available: this server has no CUDA device; use BACKEND_CPU or "
              "BACKEND_AUTO");
}

TEST_F(ConversionTest, UnhealthyBackendIsUnavailable) {
  std::vector<std::unique_ptr<kernels::Backend>> backends;
  auto fake = std::make_unique<FakeBackend>("cpu");
  fake->set_healthy(false);
  backends.push_back(std::move(fake));
  NormCore core(CoreOptions(), std::move(backends), "cpu", nullptr);
  const absl::StatusOr<v1::NormalizeResponse> result = RunSync(core, LayerNormRequest(1, 4, 1));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(result.status().message(), "backend cpu is unhealthy");
}

TEST_F(ConversionTest, OutputsLiveInTheResponse) {
  // The kernel must write into the response's own bytes: PrepareRequest
  // points the problem at them, and they have the final size.
  v1::NormalizeRequest request = LayerNormRequest(2, 16, 4);
  v1::NormalizeResponse response;
  PreparedRequest prepared;
  ASSERT_TRUE(PrepareRequest(request, 1 << 20, &response, &prepared).ok());
  EXPECT_EQ(prepared.problem.out.output, response.mutable_output()->mutable_data()->data());
  EXPECT_EQ(prepared.problem.input.data, request.input().data().data());
  EXPECT_EQ(response.output().data().size(), 2u * 16 * 4);
  EXPECT_EQ(prepared.rows, 2);
  EXPECT_EQ(prepared.input_bytes, (2u * 16 + 16 + 16) * 4);
}

}  // namespace
}  // namespace normserve::server
