// The gRPC adapter in process: NormServer on a loopback port with a fake
// backend, driven by the generated stub. Unary, stream, server info,
// health, deadlines and bearer-token auth.
#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.pb.h"
#include "gtest/gtest.h"
#include "normserve/v1/normserve.grpc.pb.h"
#include "server/core/norm_core.h"
#include "server/grpc/server.h"
#include "tests/server/server_test_util.h"

namespace normserve::server {
namespace {

using testing::FakeBackend;
using testing::LayerNormRequest;

class GrpcServiceTest : public ::testing::Test {
 protected:
  void StartServer(std::optional<std::string> token = std::nullopt, int max_stream_inflight = 4) {
    std::vector<std::unique_ptr<kernels::Backend>> backends;
    auto fake = std::make_unique<FakeBackend>("cpu");
    fake_ = fake.get();
    backends.push_back(std::move(fake));
    CoreOptions core_options;
    core_options.batcher.workers = 1;
    metrics_ = Metrics::CreateForTesting();
    core_ = std::make_unique<NormCore>(core_options, std::move(backends), "cpu", metrics_.get());
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.service.max_stream_inflight = max_stream_inflight;
    if (token) options.service.auth.emplace(*token);
    options.health_poll = std::chrono::milliseconds(20);
    absl::StatusOr<std::unique_ptr<NormServer>> server = NormServer::Start(options, core_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::NormService::NewStub(channel_);
  }

  void TearDown() override {
    if (fake_ != nullptr) fake_->Release();
    if (server_) server_->Shutdown(std::chrono::milliseconds(1000));
  }

  FakeBackend* fake_ = nullptr;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<NormCore> core_;
  std::unique_ptr<NormServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::NormService::Stub> stub_;
};

TEST_F(GrpcServiceTest, UnaryNormalizeAndErrors) {
  StartServer();
  grpc::ClientContext ok_context;
  v1::NormalizeResponse response;
  const v1::NormalizeRequest request = LayerNormRequest(2, 16, 3);
  grpc::Status status = stub_->Normalize(&ok_context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.request_id(), request.request_id());
  EXPECT_EQ(response.output().data().size(), request.input().data().size());
  EXPECT_EQ(response.backend(), "cpu");
  EXPECT_GT(response.timing().total_ns(), 0u);

  v1::NormalizeRequest bad = request;
  bad.mutable_input()->set_data("abc");
  grpc::ClientContext bad_context;
  status = stub_->Normalize(&bad_context, bad, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "input.data has 3 bytes; shape [2,16] FLOAT32 needs 128");

  v1::NormalizeRequest cuda = request;
  cuda.set_backend(v1::BACKEND_CUDA);
  grpc::ClientContext cuda_context;
  status = stub_->Normalize(&cuda_context, cuda, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(GrpcServiceTest, DeadlineInQueueIsNotComputed) {
  StartServer();
  fake_->Block();
  // The first call occupies the only worker.
  grpc::ClientContext first_context;
  v1::NormalizeResponse first_response;
  const v1::NormalizeRequest first = LayerNormRequest(1, 8, 1);
  std::thread first_call([&] { stub_->Normalize(&first_context, first, &first_response); });
  fake_->WaitEntered(1);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  v1::NormalizeResponse response;
  const grpc::Status status = stub_->Normalize(&context, LayerNormRequest(1, 8, 2), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The server's copy of the deadline (arrival + grpc-timeout) ends a little
  // after the client's; its expiry cancels the call, which must take the
  // request out of the queue while the worker is still busy.
  for (int i = 0; i < 500; ++i) {
    const BatcherStats s = core_->batcher("cpu")->stats();
    if (s.expired_in_queue + s.cancelled_in_queue > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  fake_->Release();
  first_call.join();
  core_->Shutdown();
  EXPECT_EQ(fake_->problems(), 1);
  const BatcherStats stats = core_->batcher("cpu")->stats();
  EXPECT_EQ(stats.expired_in_queue + stats.cancelled_in_queue, 1)
      << "submitted " << stats.submitted << " expired " << stats.expired_in_queue << " cancelled "
      << stats.cancelled_in_queue << " computed " << stats.computed_requests;
}

TEST_F(GrpcServiceTest, StreamAnswersEveryRequestIncludingBadOnes) {
  StartServer(std::nullopt, /*max_stream_inflight=*/3);
  grpc::ClientContext context;
  auto stream = stub_->NormalizeStream(&context);
  constexpr int kCount = 20;
  std::vector<v1::NormalizeRequest> sent;
  // Write from a second thread: the server reads at most 3 ahead, so
  // writing everything before reading would rely on transport buffers.
  std::thread writer([&] {
    for (int i = 0; i < kCount; ++i) {
      v1::NormalizeRequest r = LayerNormRequest(1 + i % 3, 32, 500 + i);
      r.set_request_id(i);
      if (i % 7 == 3) r.set_normalized_dims(-1);
      ASSERT_TRUE(stream->Write(r));
    }
    stream->WritesDone();
  });
  std::set<uint64_t> ids;
  v1::StreamResponse answer;
  int errors = 0;
  while (stream->Read(&answer)) {
    ids.insert(answer.request_id());
    if (answer.request_id() % 7 == 3) {
      EXPECT_EQ(answer.status_code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
      EXPECT_EQ(answer.status_message(), "normalized_dims is -1; must be >= 0 (0 means 1)");
      EXPECT_FALSE(answer.has_response());
      ++errors;
    } else {
      EXPECT_EQ(answer.status_code(), 0) << answer.status_message();
      EXPECT_EQ(answer.response().request_id(), answer.request_id());
      EXPECT_EQ(answer.response().output().data().size(), (1 + answer.request_id() % 3) * 32 * 4);
    }
  }
  writer.join();
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(ids.size(), static_cast<size_t>(kCount));
  EXPECT_EQ(errors, 3);
}

TEST_F(GrpcServiceTest, StreamReadAheadIsBounded) {
  StartServer(std::nullopt, /*max_stream_inflight=*/3);
  fake_->Block();
  grpc::ClientContext context;
  auto stream = stub_->NormalizeStream(&context);
  constexpr int kCount = 12;
  // Small messages: the transport buffers all of them, so only the server's
  // read-ahead limit keeps it from queueing every one.
  std::thread writer([&] {
    for (int i = 0; i < kCount; ++i) {
      v1::NormalizeRequest r = LayerNormRequest(1, 8, 700 + i);
      r.set_request_id(i);
      if (!stream->Write(r)) return;
    }
    stream->WritesDone();
  });
  fake_->WaitEntered(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(core_->batcher("cpu")->stats().submitted, 3);
  fake_->Release();
  int answers = 0;
  v1::StreamResponse answer;
  while (stream->Read(&answer)) {
    EXPECT_EQ(answer.status_code(), 0) << answer.status_message();
    ++answers;
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(answers, kCount);
  EXPECT_EQ(core_->batcher("cpu")->stats().submitted, kCount);
}

TEST_F(GrpcServiceTest, ServerInfo) {
  StartServer();
  grpc::ClientContext context;
  v1::GetServerInfoResponse info;
  ASSERT_TRUE(stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.default_backend(), "cpu");
  ASSERT_EQ(info.backends_size(), 1);
  EXPECT_EQ(info.backends(0).name(), "cpu");
  EXPECT_TRUE(info.backends(0).available());
  EXPECT_EQ(info.kinds_size(), 5);
  EXPECT_EQ(info.dtypes_size(), 3);
  EXPECT_EQ(info.limits().max_rank(), kernels::kMaxRank);
  EXPECT_EQ(info.limits().max_batch_rows(), 4096);
  EXPECT_FALSE(info.version().empty());
}

TEST_F(GrpcServiceTest, HealthFollowsBackendAndShutdown) {
  StartServer();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  auto check = [&](const std::string& service) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status = health->Check(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.status();
  };
  EXPECT_EQ(check(""), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(check(kHealthServiceName), grpc::health::v1::HealthCheckResponse::SERVING);
  fake_->set_healthy(false);
  auto wait_for = [&](grpc::health::v1::HealthCheckResponse::ServingStatus want) {
    for (int i = 0; i < 200 && check(kHealthServiceName) != want; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return check(kHealthServiceName);
  };
  EXPECT_EQ(wait_for(grpc::health::v1::HealthCheckResponse::NOT_SERVING),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  fake_->set_healthy(true);
  EXPECT_EQ(wait_for(grpc::health::v1::HealthCheckResponse::SERVING),
            grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(GrpcServiceTest, BearerTokenRequiredExceptForHealth) {
  StartServer(std::string("tok123"));
  v1::NormalizeResponse response;
  {
    grpc::ClientContext context;
    const grpc::Status status = stub_->Normalize(&context, LayerNormRequest(1, 8, 1), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(status.error_message(),
              "missing authorization metadata; expected 'authorization: Bearer <token>'");
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer wrong");
    v1::GetServerInfoResponse info;
    EXPECT_EQ(stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer tok123");
    EXPECT_TRUE(stub_->Normalize(&context, LayerNormRequest(1, 8, 1), &response).ok());
  }
  {
    grpc::ClientContext context;
    auto stream = stub_->NormalizeStream(&context);
    stream->WritesDone();
    v1::StreamResponse answer;
    EXPECT_FALSE(stream->Read(&answer));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    auto health = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckResponse hc;
    EXPECT_TRUE(health->Check(&context, grpc::health::v1::HealthCheckRequest(), &hc).ok());
  }
  EXPECT_NE(metrics_->Serialize().find("normserve_rejections_total{reason=\"unauthenticated\"} 3"),
            std::string::npos)
      << metrics_->Serialize();
}

TEST_F(GrpcServiceTest, ShutdownFinishesQueuedWorkThenRefuses) {
  StartServer();
  fake_->Block();
  std::vector<std::thread> callers;
  std::vector<grpc::Status> results(3);
  for (int i = 0; i < 3; ++i) {
    callers.emplace_back([&, i] {
      grpc::ClientContext context;
      v1::NormalizeResponse response;
      results[i] = stub_->Normalize(&context, LayerNormRequest(1, 8, 10 + i), &response);
    });
  }
  fake_->WaitEntered(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    fake_->Release();
  });
  server_->Shutdown(std::chrono::milliseconds(5000));
  releaser.join();
  for (auto& t : callers) t.join();
  for (const grpc::Status& s : results) EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(fake_->problems(), 3);
}

}  // namespace
}  // namespace normserve::server

namespace normserve::server {
namespace {

// TLS and mutual TLS with certificates made by the openssl CLI at test time.
class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl CLI not installed";
    char dir_template[] = "/tmp/normserve-tls-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    const std::string script =
        "cd " + dir_ +
        " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext"
        " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out "
        "ca.pem"
        "    -days 1 -subj /CN=normserve-test-ca"
        " && for who in server client; do"
        "    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $who.key -out "
        "$who.csr"
        "      -subj /CN=$who"
        "    && openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 1"
        "      -extfile san.ext || exit 1;"
        "  done >/dev/null 2>&1";
    ASSERT_EQ(std::system(script.c_str()), 0) << script;
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::milliseconds(500));
    if (!dir_.empty()) std::system(("rm -rf " + dir_).c_str());
  }

  std::string Read(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  void Start(bool mutual) {
    std::vector<std::unique_ptr<kernels::Backend>> backends;
    backends.push_back(std::make_unique<FakeBackend>("cpu"));
    core_ = std::make_unique<NormCore>(CoreOptions(), std::move(backends), "cpu", nullptr);
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.tls_cert = dir_ + "/server.pem";
    options.tls_key = dir_ + "/server.key";
    if (mutual) options.tls_client_ca = dir_ + "/ca.pem";
    absl::StatusOr<std::unique_ptr<NormServer>> server = NormServer::Start(options, core_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  grpc::Status Info(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    auto stub = v1::NormService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), std::move(credentials)));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetServerInfoResponse info;
    return stub->GetServerInfo(&context, v1::GetServerInfoRequest(), &info);
  }

  std::string dir_;
  std::unique_ptr<NormCore> core_;
  std::unique_ptr<NormServer> server_;
};

TEST_F(TlsTest, ServerTls) {
  Start(/*mutual=*/false);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = Read("ca.pem");
  EXPECT_TRUE(Info(grpc::SslCredentials(ssl)).ok());
  EXPECT_EQ(Info(grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsNeedsAClientCertificate) {
  Start(/*mutual=*/true);
  grpc::SslCredentialsOptions without;
  without.pem_root_certs = Read("ca.pem");
  EXPECT_EQ(Info(grpc::SslCredentials(without)).error_code(), grpc::StatusCode::UNAVAILABLE);
  grpc::SslCredentialsOptions with = without;
  with.pem_private_key = Read("client.key");
  with.pem_cert_chain = Read("client.pem");
  EXPECT_TRUE(Info(grpc::SslCredentials(with)).ok());
}

TEST(ServerStartTest, ReflectionListsTheService) {
  std::vector<std::unique_ptr<kernels::Backend>> backends;
  backends.push_back(std::make_unique<FakeBackend>("cpu"));
  NormCore core(CoreOptions(), std::move(backends), "cpu", nullptr);
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.enable_reflection = true;
  absl::StatusOr<std::unique_ptr<NormServer>> server = NormServer::Start(options, &core);
  ASSERT_TRUE(server.ok()) << server.status();
  namespace refl = normserve::testing::reflection;
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                     grpc::InsecureChannelCredentials());
  grpc::ClientContext context;
  // What a generated stub does, with the real method path.
  const grpc::internal::RpcMethod method("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                         grpc::internal::RpcMethod::BIDI_STREAMING, channel);
  std::unique_ptr<grpc::ClientReaderWriter<refl::ServerReflectionRequest, refl::ServerReflectionResponse>>
      stream(grpc::internal::ClientReaderWriterFactory<refl::ServerReflectionRequest,
                                                       refl::ServerReflectionResponse>::Create(channel.get(),
                                                                                               method,
                                                                                               &context));
  refl::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  refl::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> names;
  for (const auto& s : response.list_services_response().service()) names.insert(s.name());
  EXPECT_TRUE(names.count("normserve.v1.NormService")) << response.DebugString();
  EXPECT_TRUE(names.count("grpc.health.v1.Health")) << response.DebugString();
  while (stream->Read(&response)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
  (*server)->Shutdown(std::chrono::milliseconds(100));
}

TEST(ServerStartTest, BadTlsFlagsAreRejected) {
  std::vector<std::unique_ptr<kernels::Backend>> backends;
  backends.push_back(std::make_unique<FakeBackend>("cpu"));
  NormCore core(CoreOptions(), std::move(backends), "cpu", nullptr);
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.tls_cert = "/nonexistent/cert.pem";
  absl::StatusOr<std::unique_ptr<NormServer>> server = NormServer::Start(options, &core);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().message(), "--tls_cert and --tls_key must be given together");
  options.tls_key = "/nonexistent/key.pem";
  server = NormServer::Start(options, &core);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(server.status().message(), "cannot read --tls_key /nonexistent/key.pem");
}

}  // namespace
}  // namespace normserve::server
