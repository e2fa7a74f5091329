#include "server/grpc/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"

namespace normserve::server {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", flag, " ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& options) {
  const bool has_cert = !options.tls_cert.empty();
  const bool has_key = !options.tls_key.empty();
  if (!has_cert && !has_key) {
    if (!options.tls_client_ca.empty()) {
      return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (has_cert != has_key)
    return absl::InvalidArgumentError("--tls_cert and --tls_key must be given together");
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  absl::StatusOr<std::string> key = ReadFile(options.tls_key, "--tls_key");
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> cert = ReadFile(options.tls_cert, "--tls_cert");
  if (!cert.ok()) return cert.status();
  pair.private_key = *std::move(key);
  pair.cert_chain = *std::move(cert);
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!options.tls_client_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadFile(options.tls_client_ca, "--tls_client_ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

NormServer::NormServer(NormCore* core, std::unique_ptr<NormServiceImpl> service,
                       std::chrono::milliseconds health_poll, std::chrono::milliseconds drain)
    : core_(core), service_(std::move(service)), health_poll_(health_poll), drain_(drain) {}

absl::StatusOr<std::unique_ptr<NormServer>> NormServer::Start(const ServerOptions& options, NormCore* core) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = Credentials(options);
  if (!credentials.ok()) return credentials.status();

  std::unique_ptr<NormServer> server(new NormServer(core,
                                                    std::make_unique<NormServiceImpl>(core, options.service),
                                                    options.health_poll, options.shutdown_drain));
  grpc::EnableDefaultHealthCheckService(true);
  if (options.enable_reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(
      options.host.find(':') != std::string::npos ? absl::StrCat("[", options.host, "]") : options.host, ":",
      options.port);
  builder.AddListeningPort(address, *credentials, &server->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(options.max_message_bytes, INT32_MAX)));
  builder.SetMaxSendMessageSize(static_cast<int>(std::min<int64_t>(options.max_message_bytes, INT32_MAX)));
  if (options.max_concurrent_streams > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
  }
  if (options.resource_quota_bytes > 0) {
    grpc::ResourceQuota quota("normserve");
    quota.Resize(static_cast<size_t>(options.resource_quota_bytes));
    builder.SetResourceQuota(quota);
  }
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options.keepalive_time.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(options.keepalive_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(options.min_client_ping_interval.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  // Both names exist before Start returns, so a probe never sees NOT_FOUND.
  server->serving_ = core->Healthy();
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus("", server->serving_);
  health->SetServingStatus(kHealthServiceName, server->serving_);
  server->health_thread_ = std::thread([s = server.get()] { s->HealthLoop(); });
  return server;
}

NormServer::~NormServer() { Shutdown(std::chrono::milliseconds(0)); }

void NormServer::HealthLoop() {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const bool healthy = core_->Healthy();
    if (healthy != serving_) {
      serving_ = healthy;
      health->SetServingStatus("", healthy);
      health->SetServingStatus(kHealthServiceName, healthy);
      std::cerr << "normserve: health is "
                << (healthy ? "SERVING" : "NOT_SERVING (a backend is unhealthy or the server is stopping)")
                << "\n";
    }
    cv_.wait_for(lock, health_poll_);
  }
}

void NormServer::Shutdown(std::chrono::milliseconds grace) {
  std::call_once(shutdown_once_, [&] {
    const Clock::time_point start = Clock::now();
    // Order matters: health first (load balancers stop sending), then the
    // core refuses new work, then gRPC drains the calls in flight, whose
    // completions need the batcher workers still running.
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (health_thread_.joinable()) health_thread_.join();
    if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) health->Shutdown();
    // 1. Keep serving for the drain window: clients that watch health (the
    // client library's round_robin does) stop picking this replica, so their
    // new calls go elsewhere.
    const auto drain = std::min<Clock::duration>(drain_, grace / 4);
    if (drain.count() > 0) std::this_thread::sleep_for(drain);
    // 2. Refuse new work with UNAVAILABLE (retryable elsewhere); open streams
    // write what they owe and end with UNAVAILABLE.
    core_->BeginShutdown();
    service_->BeginShutdown();
    // 3. Wait for quiet: no call in flight and none arriving for
    // kShutdownQuiet. grpc::Server::Shutdown cancels (bare CANCELLED, no
    // retry) every call that reaches it afterwards on an open connection
    // before a handler takes it, so it starts only once clients have
    // stopped sending here, or at half the grace at the latest.
    const Clock::time_point quiet_limit = start + grace / 2;
    while (Clock::now() < quiet_limit) {
      if (service_->active_calls() == 0 && Clock::now() - service_->last_call_arrival() >= kShutdownQuiet)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    // 4. gRPC finishes what is left until the grace ends, then cancels it.
    const Clock::duration left = std::max<Clock::duration>(start + grace - Clock::now(), Clock::duration(0));
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::duration_cast<std::chrono::system_clock::duration>(left));
    core_->Shutdown();
    server_->Wait();
  });
}

}  // namespace normserve::server
