#include "normserve/client/tensor_util.h"

#include <cmath>
#include <future>
#include <limits>

#include "gtest/gtest.h"
#include "normserve/client/client.h"

namespace normserve::client {
namespace {

TEST(TensorUtilTest, RoundsOnceToTheWireType) {
  const std::vector<float> values = {1.0f,     1.00390625f, -3.14159f,
                                     65504.0f, 1e-8f,       std::numeric_limits<float>::quiet_NaN()};
  const std::vector<int64_t> shape = {2, 3};
  for (v1::DType t : {v1::FLOAT32, v1::FLOAT16, v1::BFLOAT16}) {
    v1::Tensor tensor = MakeTensor(values, shape, t);
    EXPECT_EQ(tensor.dtype(), t);
    EXPECT_EQ(tensor.data().size(), values.size() * (t == v1::FLOAT32 ? 4 : 2));
    auto back = TensorToFloats(tensor);
    ASSERT_TRUE(back.ok());
    const kernels::DType kt = ToKernelDType(t).value();
    for (size_t i = 0; i < values.size(); ++i) {
      const float want = kernels::RoundToDType(values[i], kt);
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan((*back)[i]));
      } else {
        EXPECT_EQ((*back)[i], want) << i;
      }
    }
  }
  // 1 + 2^-8 is a tie in bfloat16 and rounds to even (1.0).
  EXPECT_EQ(TensorToFloats(MakeTensor(values, shape, v1::BFLOAT16)).value()[1], 1.0f);
}

TEST(TensorUtilTest, RejectsMismatchedBytes) {
  v1::Tensor t = MakeTensorFromBytes(std::string(6, '\0'), std::vector<int64_t>{1, 4}, v1::FLOAT16);
  auto r = TensorToFloats(t);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "tensor data has 6 bytes; shape [1,4] float16 needs 8");
  v1::Tensor u;
  EXPECT_EQ(TensorToFloats(u).status().message(), "unsupported dtype 0");
}

TEST(TensorUtilTest, NamesAndEnums) {
  EXPECT_EQ(ParseWireDType("bfloat16").value(), v1::BFLOAT16);
  EXPECT_EQ(ParseWireKind("group_norm").value(), v1::GROUP_NORM);
  EXPECT_EQ(ParseWireDType("float64").status().message(),
            "unknown dtype 'float64': expected float32, float16 or bfloat16");
  EXPECT_EQ(
      ParseWireKind("weight_norm").status().message(),
      "unknown kind 'weight_norm': expected layer_norm, rms_norm, batch_norm, group_norm or instance_norm");
  for (v1::NormKind k : {v1::LAYER_NORM, v1::RMS_NORM, v1::BATCH_NORM, v1::GROUP_NORM, v1::INSTANCE_NORM}) {
    EXPECT_EQ(ToWireKind(ToKernelKind(k).value()), k);
    EXPECT_EQ(ParseWireKind(WireKindName(k)).value(), k);
  }
  EXPECT_EQ(WireDTypeName(v1::DTYPE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(ShapeString(std::vector<int64_t>{2, 3}), "[2,3]");
}

TEST(ClientOptionsTest, ServiceConfigHasRoundRobinHealthCheckingAndRetries) {
  ClientOptions o;
  EXPECT_EQ(ServiceConfigJson(o),
            R"({"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":""},)"
            R"("methodConfig":[{"name":[{"service":)"
            R"("normserve.v1.NormService"}],"retryPolicy":{"maxAttempts":3,"initialBackoff":"0.050s",)"
            R"("maxBackoff":"1.000s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]})");
  o.retry_max_attempts = 1;
  o.load_balancing_policy = "pick_first";
  EXPECT_EQ(ServiceConfigJson(o), R"({"loadBalancingConfig":[{"pick_first":{}}]})");
}

TEST(ClientOptionsTest, RejectsInconsistentOptions) {
  ClientOptions o;
  o.tls_cert_file = "cert.pem";
  auto c = Client::Create(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(), "tls_cert_file and tls_key_file must be given together");
  ClientOptions p;
  p.tls_root_ca_file = "/nonexistent/ca.pem";
  c = Client::Create(p);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c.status().message(), "cannot read root CA file '/nonexistent/ca.pem'");
  ClientOptions q;
  q.load_balancing_policy = "random";
  EXPECT_EQ(Client::Create(q).status().message(),
            "load_balancing_policy 'random': expected round_robin or pick_first");
}

TEST(ClientTest, UnreachableServerIsUnavailable) {
  ClientOptions o;
  // Port 1 on loopback refuses connections.
  o.target = "127.0.0.1:1";
  o.retry_max_attempts = 1;
  o.default_deadline = absl::Seconds(5);
  auto c = Client::Create(o);
  ASSERT_TRUE(c.ok());
  auto r = (*c)->GetServerInfo();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  auto h = (*c)->CheckHealth();
  EXPECT_EQ(h.status().code(), absl::StatusCode::kUnavailable);
  auto s = (*c)->OpenSession();
  v1::NormalizeRequest req;
  req.set_request_id(5);
  std::promise<absl::Status> done;
  s->Send(req, [&done](absl::StatusOr<v1::NormalizeResponse> r) { done.set_value(r.status()); });
  EXPECT_EQ(done.get_future().get().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s->Finish().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace normserve::client
