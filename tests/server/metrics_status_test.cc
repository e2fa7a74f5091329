// Metrics exposition names and labels, status helpers and the status
// mapping at the gRPC edge, and bearer-token checks.
#include <grpcpp/support/string_ref.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/core/metrics.h"
#include "server/core/norm_core.h"
#include "server/core/status_util.h"
#include "server/grpc/auth.h"
#include "server/grpc/status_map.h"
#include "tests/server/server_test_util.h"

namespace normserve::server {
namespace {

bool Contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

TEST(MetricsTest, ExpositionHasEveryNameAfterTraffic) {
  auto metrics = Metrics::CreateForTesting();
  std::vector<std::unique_ptr<kernels::Backend>> backends;
  backends.push_back(std::make_unique<testing::FakeBackend>("cpu"));
  NormCore core(CoreOptions(), std::move(backends), "cpu", metrics.get());
  ASSERT_TRUE(testing::RunSync(core, testing::LayerNormRequest(2, 8, 1)).ok());
  v1::NormalizeRequest bad = testing::LayerNormRequest(2, 8, 1);
  bad.set_normalized_dims(-1);
  ASSERT_FALSE(testing::RunSync(core, bad).ok());
  metrics->AddInflight(kMethodNormalize, 1);
  metrics->AddInflight(kMethodNormalize, -1);
  const std::string text = metrics->Serialize();
  for (const char* name :
       {"normserve_requests_total", "normserve_request_duration_seconds_bucket",
        "normserve_queue_wait_seconds_bucket", "normserve_compute_seconds_bucket",
        "normserve_batch_requests_bucket", "normserve_batch_rows_bucket", "normserve_queue_depth",
        "normserve_queue_bytes", "normserve_inflight_requests", "normserve_received_bytes_total",
        "normserve_sent_bytes_total", "normserve_rejections_total", "normserve_backend_info",
        "normserve_backend_healthy", "normserve_build_info"}) {
    EXPECT_TRUE(Contains(text, name)) << name << " missing from\n" << text;
  }
  EXPECT_TRUE(
      Contains(text,
               "normserve_requests_total{backend=\"cpu\",code=\"OK\",dtype=\"float32\",kind=\"layer_norm\","
               "method=\"Normalize\"} 1"))
      << text;
  EXPECT_TRUE(Contains(text,
                       "normserve_requests_total{backend=\"cpu\",code=\"INVALID_ARGUMENT\",dtype=\"float32\","
                       "kind=\"layer_norm\",method=\"Normalize\"} 1"))
      << text;
  EXPECT_TRUE(Contains(text, "normserve_rejections_total{reason=\"invalid_argument\"} 1")) << text;
  // Payload bytes: input 64 + gamma 32 + beta 32 received twice; output 64 sent once.
  EXPECT_TRUE(Contains(text, "normserve_received_bytes_total{method=\"Normalize\"} 256")) << text;
  EXPECT_TRUE(Contains(text, "normserve_sent_bytes_total{method=\"Normalize\"} 64")) << text;
  EXPECT_TRUE(Contains(text, "normserve_backend_healthy{backend=\"cpu\"} 1")) << text;
  EXPECT_TRUE(Contains(text, "normserve_batch_rows_bucket{backend=\"cpu\",le=\"65536\"} 1")) << text;
  EXPECT_TRUE(Contains(text, "normserve_batch_requests_bucket{backend=\"cpu\",le=\"4096\"} 1")) << text;
  EXPECT_TRUE(Contains(text, "le=\"1e-05\"")) << text;
}

TEST(MetricsTest, ServesOnAFreePort) {
  MetricsOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Create(options);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_GT((*metrics)->port(), 0);
}

TEST(MetricsTest, DisabledHasNoPort) {
  MetricsOptions options;
  options.port = -1;
  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Create(options);
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ((*metrics)->port(), -1);
}

absl::Status FailsWith(absl::Status s) { return s; }

absl::Status UsesReturnIfError(bool fail, int* reached) {
  RETURN_IF_ERROR(fail ? absl::InvalidArgumentError("boom") : absl::OkStatus());
  *reached = 1;
  return absl::OkStatus();
}

absl::StatusOr<int> Half(int v) {
  if (v % 2 != 0) return absl::InvalidArgumentError("odd");
  return v / 2;
}

absl::StatusOr<int> Quarter(int v) {
  ASSIGN_OR_RETURN(int half, Half(v));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

TEST(StatusUtilTest, Macros) {
  int reached = 0;
  EXPECT_EQ(UsesReturnIfError(true, &reached).message(), "boom");
  EXPECT_EQ(reached, 0);
  EXPECT_TRUE(UsesReturnIfError(false, &reached).ok());
  EXPECT_EQ(reached, 1);
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "odd");
}

TEST(StatusUtilTest, KernelStatusKeepsCodeAndMessage) {
  const absl::Status s = FromKernelStatus(kernels::KernelStatus::FailedPrecondition("no gpu"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "no gpu");
  EXPECT_TRUE(FromKernelStatus(kernels::KernelStatus::Ok()).ok());
  EXPECT_EQ(FromKernelStatus(kernels::KernelStatus::Internal("x")).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(FromKernelStatus(kernels::KernelStatus::Unavailable("x")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromKernelStatus(kernels::KernelStatus::ResourceExhausted("x")).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(FromKernelStatus(kernels::KernelStatus::InvalidArgument("x")).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StatusUtilTest, CodeNames) {
  EXPECT_EQ(StatusCodeName(absl::StatusCode::kOk), "OK");
  EXPECT_EQ(StatusCodeName(absl::StatusCode::kInvalidArgument), "INVALID_ARGUMENT");
  EXPECT_EQ(StatusCodeName(absl::StatusCode::kDeadlineExceeded), "DEADLINE_EXCEEDED");
  EXPECT_EQ(StatusCodeName(absl::StatusCode::kUnauthenticated), "UNAUTHENTICATED");
}

TEST(StatusMapTest, EveryCodeMapsToTheSameGrpcCode) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status s(static_cast<absl::StatusCode>(code), code == 0 ? "" : "msg");
    const grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(g.error_message(), code == 0 ? "" : "msg");
  }
}

TEST(AuthTest, BearerToken) {
  BearerTokenAuth auth("s3cret");
  std::multimap<grpc::string_ref, grpc::string_ref> md;
  absl::Status missing = auth.Check(md);
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(missing.message(), "missing authorization metadata; expected 'authorization: Bearer <token>'");
  md.emplace("authorization", "Basic abc");
  EXPECT_EQ(auth.Check(md).message(), "authorization metadata is not of the form 'Bearer <token>'");
  md.clear();
  md.emplace("authorization", "Bearer s3cre");
  EXPECT_EQ(auth.Check(md).message(), "invalid bearer token");
  md.clear();
  md.emplace("authorization", "Bearer s3cret");
  EXPECT_TRUE(auth.Check(md).ok());
}

TEST(AuthTest, MissingTokenFile) {
  absl::StatusOr<BearerTokenAuth> auth = BearerTokenAuth::FromFile("/nonexistent/normserve-token");
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(auth.status().message(), "cannot read --auth_token_file /nonexistent/normserve-token");
}

}  // namespace
}  // namespace normserve::server
