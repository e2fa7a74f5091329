// normserve-echo-server: serves the NormService API with no compute. Normalize
// returns the input bytes as the output (same shape and dtype), so
// normserve-loadgen can measure the transport floor with the same payload and
// concurrency as a real run (docs/PERFORMANCE.md, "Service benchmarks").
//
//   normserve-echo-server [--host=127.0.0.1] [--port=0]
//
// Prints "normserve-echo-server listening on HOST:PORT" once serving, and
// stops on SIGINT or SIGTERM. Also serves grpc.health.v1.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "normserve/client/flags.h"
#include "normserve/v1/normserve.grpc.pb.h"

namespace normserve::client {
namespace {

class EchoService final : public v1::NormService::Service {
 public:
  grpc::Status Normalize(grpc::ServerContext*, const v1::NormalizeRequest* request,
                         v1::NormalizeResponse* response) override {
    Echo(*request, response);
    return grpc::Status::OK;
  }

  grpc::Status NormalizeStream(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::StreamResponse, v1::NormalizeRequest>* stream) override {
    v1::NormalizeRequest request;
    while (stream->Read(&request)) {
      v1::StreamResponse out;
      out.set_request_id(request.request_id());
      Echo(request, out.mutable_response());
      if (!stream->Write(out)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status GetServerInfo(grpc::ServerContext*, const v1::GetServerInfoRequest*,
                             v1::GetServerInfoResponse* response) override {
    response->set_version("echo");
    auto* b = response->add_backends();
    b->set_name("echo");
    b->set_device("no compute: returns the input");
    b->set_available(true);
    response->set_default_backend("echo");
    return grpc::Status::OK;
  }

 private:
  static void Echo(const v1::NormalizeRequest& request, v1::NormalizeResponse* response) {
    response->set_request_id(request.request_id());
    *response->mutable_output() = request.input();
    response->set_backend("echo");
  }
};

std::unique_ptr<grpc::Server>* g_server = nullptr;

void HandleSignal(int) {
  // Shutdown from a signal handler is not async-signal-safe; a thread does it.
  static std::atomic<bool> once{false};
  if (once.exchange(true)) return;
  std::thread([] { (*g_server)->Shutdown(); }).detach();
}

int Main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 0;
  FlagSet flags;
  flags.AddString("host", &host, "address to listen on");
  flags.AddInt("port", &port, "port (0: pick a free one)");
  auto positional = flags.Parse(argc, argv);
  if (!positional.ok()) {
    std::fprintf(stderr, "%s\n%s", std::string(positional.status().message()).c_str(), flags.Usage().c_str());
    return 2;
  }
  grpc::EnableDefaultHealthCheckService(true);
  EchoService service;
  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(absl::StrCat(host, ":", port), grpc::InsecureServerCredentials(), &selected_port);
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.SetMaxSendMessageSize(256 << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || selected_port == 0) {
    std::fprintf(stderr, "could not listen on %s:%d\n", host.c_str(), port);
    return 1;
  }
  g_server = &server;
  std::signal(SIGINT, HandleSignal);
  std::signal(SIGTERM, HandleSignal);
  std::printf("normserve-echo-server listening on %s:%d\n", host.c_str(), selected_port);
  std::fflush(stdout);
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace normserve::client

int main(int argc, char** argv) { return normserve::client::Main(argc, argv); }
