// The client library against the real server: numerics against the float64
// reference, async and streaming calls, server info, health and errors.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <future>
#include <mutex>
#include <random>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "normserve/client/client.h"
#include "normserve/client/tensor_util.h"
#include "reference_check.h"
#include "shared_server.h"

namespace normserve::testing {
namespace {

using client::Client;
using client::MakeTensor;

std::vector<float> Random(std::mt19937* rng, size_t n, float mean, float stddev) {
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(*rng);
  return v;
}

std::unique_ptr<Client> Connect() {
  client::ClientOptions o;
  o.target = Server()->target();
  auto c = Client::Create(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(*c);
}

v1::NormalizeRequest NormRequest(v1::NormKind kind, v1::DType dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<int64_t> shape = {4, 1024}, param = {1024};
  v1::NormalizeRequest req;
  req.set_request_id(seed);
  req.set_kind(kind);
  *req.mutable_input() = MakeTensor(Random(&rng, 4096, 0.3f, 2.0f), shape, dtype);
  *req.mutable_gamma() = MakeTensor(Random(&rng, 1024, 1.0f, 0.3f), param, dtype);
  *req.mutable_beta() = MakeTensor(Random(&rng, 1024, 0.0f, 0.3f), param, dtype);
  return req;
}

class ClientE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(Server(), nullptr);
    client_ = Connect();
  }
  std::unique_ptr<Client> client_;
};

TEST_F(ClientE2eTest, LayerNormAndRmsNormBFloat16MatchTheReference) {
  for (v1::NormKind kind : {v1::LAYER_NORM, v1::RMS_NORM}) {
    const v1::NormalizeRequest req = NormRequest(kind, v1::BFLOAT16, 11 + kind);
    auto resp = client_->Normalize(req);
    ASSERT_TRUE(resp.ok()) << resp.status();
    EXPECT_EQ(resp->request_id(), req.request_id());
    EXPECT_EQ(resp->backend(), "cpu");
    EXPECT_EQ(resp->output().dtype(), v1::BFLOAT16);
    EXPECT_EQ(std::vector<int64_t>(resp->output().shape().begin(), resp->output().shape().end()),
              (std::vector<int64_t>{4, 1024}));
    EXPECT_TRUE(WithinBounds(resp->output().data(), ReferenceOutput(req), v1::BFLOAT16))
        << client::WireKindName(kind);
    EXPECT_GT(resp->timing().total_ns(), 0u);
  }
}

TEST_F(ClientE2eTest, FutureAndCallbackFormsAgreeWithTheBlockingOne) {
  const v1::NormalizeRequest req = NormRequest(v1::LAYER_NORM, v1::FLOAT16, 5);
  auto blocking = client_->Normalize(req);
  ASSERT_TRUE(blocking.ok()) << blocking.status();
  auto future = client_->NormalizeFuture(req);
  std::promise<absl::StatusOr<v1::NormalizeResponse>> promise;
  client_->NormalizeAsync(
      req, [&promise](absl::StatusOr<v1::NormalizeResponse> r) { promise.set_value(std::move(r)); });
  auto from_future = future.get();
  auto from_callback = promise.get_future().get();
  ASSERT_TRUE(from_future.ok() && from_callback.ok());
  // Batch invariance: the same request gives the same bits every time.
  EXPECT_EQ(from_future->output().data(), blocking->output().data());
  EXPECT_EQ(from_callback->output().data(), blocking->output().data());
  EXPECT_TRUE(WithinBounds(blocking->output().data(), ReferenceOutput(req), v1::FLOAT16));
}

TEST_F(ClientE2eTest, StreamSessionMatchesResponsesById) {
  auto session = client_->OpenSession();
  constexpr int kRequests = 32;
  std::vector<v1::NormalizeRequest> reqs;
  std::vector<std::promise<absl::StatusOr<v1::NormalizeResponse>>> promises(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    reqs.push_back(NormRequest(i % 2 ? v1::RMS_NORM : v1::LAYER_NORM, v1::BFLOAT16, 100 + i));
    reqs.back().set_request_id(1000 + i);
  }
  // One bad request in the middle fails alone; the stream stays open.
  reqs[7].mutable_input()->mutable_data()->resize(100);
  for (int i = 0; i < kRequests; ++i) {
    session->Send(reqs[i], [&promises, i](absl::StatusOr<v1::NormalizeResponse> r) {
      promises[i].set_value(std::move(r));
    });
  }
  for (int i = 0; i < kRequests; ++i) {
    auto r = promises[i].get_future().get();
    if (i == 7) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
      continue;
    }
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    EXPECT_EQ(r->request_id(), 1000u + i);
    EXPECT_TRUE(WithinBounds(r->output().data(), ReferenceOutput(reqs[i]), v1::BFLOAT16)) << i;
  }
  EXPECT_TRUE(session->Finish().ok());
}

// A second request with the id of one still in flight is refused at once on
// the client (the answer could not be told apart); the first is still answered.
TEST_F(ClientE2eTest, StreamSessionRefusesAnIdAlreadyInFlight) {
  auto session = client_->OpenSession();
  std::promise<absl::StatusOr<v1::NormalizeResponse>> first, second;
  v1::NormalizeRequest req = NormRequest(v1::LAYER_NORM, v1::FLOAT32, 7);
  req.set_request_id(42);
  session->Send(req, [&first](absl::StatusOr<v1::NormalizeResponse> r) { first.set_value(std::move(r)); });
  session->Send(req, [&second](absl::StatusOr<v1::NormalizeResponse> r) { second.set_value(std::move(r)); });
  auto refused = second.get_future().get();
  auto answered = first.get_future().get();
  // The duplicate may also arrive after the first was answered (then both
  // are computed); what must never happen is a lost or doubled callback.
  if (!refused.ok()) {
    EXPECT_EQ(refused.status(),
              absl::InvalidArgumentError("request_id 42 is already in flight on this stream"));
  }
  ASSERT_TRUE(answered.ok()) << answered.status();
  EXPECT_EQ(answered->request_id(), 42u);
  EXPECT_TRUE(session->Finish().ok());
}

// 10,000 requests in flight on one stream (the server reads ahead a bounded
// number and answers as they finish, in any order). Each request's beta is its
// own id, so the mean of its LayerNorm output is that id: a response matched to
// the wrong request would show it.
TEST_F(ClientE2eTest, TenThousandStreamedRequestsAreEachAnsweredOnce) {
  auto session = client_->OpenSession();
  constexpr int kRequests = 10000;
  constexpr int64_t kCols = 64;
  std::mt19937 rng(7);
  const std::vector<float> x = Random(&rng, kCols, 0.0f, 1.0f);
  std::mutex mu;
  std::vector<int> answers(kRequests, 0);
  std::vector<std::string> problems;
  std::atomic<int> done{0};
  for (int i = 0; i < kRequests; ++i) {
    v1::NormalizeRequest req;
    req.set_request_id(500000 + i);
    req.set_kind(v1::LAYER_NORM);
    *req.mutable_input() = MakeTensor(x, {1, kCols}, v1::FLOAT32);
    *req.mutable_beta() = MakeTensor(std::vector<float>(kCols, static_cast<float>(i)), {kCols}, v1::FLOAT32);
    session->Send(std::move(req), [&, i](absl::StatusOr<v1::NormalizeResponse> r) {
      std::lock_guard<std::mutex> lock(mu);
      ++answers[i];
      if (!r.ok()) {
        problems.push_back(absl::StrCat(i, ": ", r.status().ToString()));
      } else {
        const std::vector<float> y = client::TensorToFloats(r->output()).value();
        double mean = 0;
        for (float v : y) mean += v;
        mean /= static_cast<double>(y.size());
        if (r->request_id() != 500000u + i || std::abs(mean - i) > 1e-3 * std::max(1, i)) {
          problems.push_back(absl::StrCat(i, ": request_id ", r->request_id(), " output mean ", mean));
        }
      }
      done.fetch_add(1);
    });
  }
  EXPECT_TRUE(session->Finish().ok());
  EXPECT_EQ(done.load(), kRequests);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(problems.empty()) << problems.size() << " bad responses, first: " << problems.front();
  for (int i = 0; i < kRequests; ++i) ASSERT_EQ(answers[i], 1) << "request " << i;
}

TEST_F(ClientE2eTest, GetServerInfoDescribesTheCpuBackend) {
  auto info = client_->GetServerInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->version().empty());
  EXPECT_EQ(info->default_backend(), "cpu");
  bool has_cpu = false;
  for (const auto& b : info->backends()) has_cpu |= b.name() == "cpu" && b.available();
  EXPECT_TRUE(has_cpu);
  EXPECT_EQ(info->kinds_size(), 5);
  EXPECT_EQ(info->dtypes_size(), 3);
  EXPECT_GT(info->limits().max_message_bytes(), 0);
}

TEST_F(ClientE2eTest, HealthIsServing) {
  auto h = client_->CheckHealth();
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(*h, client::HealthState::kServing);
}

TEST_F(ClientE2eTest, BadInputIsInvalidArgumentNamingTheField) {
  v1::NormalizeRequest req;
  req.set_kind(v1::LAYER_NORM);
  *req.mutable_input() =
      client::MakeTensorFromBytes(std::string(4094, '\0'), std::vector<int64_t>{1, 4096}, v1::FLOAT16);
  auto r = client_->Normalize(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "input.data has 4094 bytes; shape [1,4096] FLOAT16 needs 8192");
}

TEST(ClientRoutingTest, StaticListTargetRoundRobinsOverTwoServers) {
  // Two echo servers behind one ipv4: target; round_robin spreads calls.
  auto a = ServerProcess::Start(EnvOrEmpty("NORMSERVE_ECHO"), {"--port=0"});
  auto b = ServerProcess::Start(EnvOrEmpty("NORMSERVE_ECHO"), {"--port=0"});
  ASSERT_TRUE(a.ok() && b.ok());
  client::ClientOptions o;
  o.target = "ipv4:" + (*a)->target() + "," + (*b)->target();
  auto c = Client::Create(o);
  ASSERT_TRUE(c.ok());
  v1::NormalizeRequest req = NormRequest(v1::LAYER_NORM, v1::FLOAT32, 3);
  for (int i = 0; i < 8; ++i) {
    auto r = (*c)->Normalize(req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->output().data(), req.input().data());
  }
  // With one of them gone, calls keep succeeding on the other.
  a->reset();
  for (int i = 0; i < 8; ++i) {
    auto r = (*c)->Normalize(req);
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
  }
}

TEST(ClientAuthTest, BearerTokenIsSent) {
  // A server started with --auth_token_file rejects a wrong token with
  // UNAUTHENTICATED and accepts the right one.
  const std::string token_file = ::testing::TempDir() + "/normserve_token";
  std::FILE* f = std::fopen(token_file.c_str(), "w");
  std::fputs("s3cret\n", f);
  std::fclose(f);
  auto s = ServerProcess::Start(EnvOrEmpty("NORMSERVE_BIN"),
                                {"--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--backend=cpu",
                                 "--shutdown_grace_s=1", "--auth_token_file=" + token_file});
  ASSERT_TRUE(s.ok()) << s.status();
  client::ClientOptions o;
  o.target = (*s)->target();
  o.bearer_token = "wrong";
  auto bad = Client::Create(o).value()->GetServerInfo();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnauthenticated);
  o.bearer_token = "s3cret";
  auto good = Client::Create(o).value()->GetServerInfo();
  EXPECT_TRUE(good.ok()) << good.status();
}

}  // namespace
}  // namespace normserve::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new normserve::testing::SharedServerEnvironment);
  return RUN_ALL_TESTS();
}
