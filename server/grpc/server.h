// NormServer: assembles the gRPC server (NormService, grpc.health.v1,
// optional reflection, TLS / mutual TLS, message limits) around a NormCore,
// watches backend health, and shuts down gracefully.
//
// Start() returns a running server; Shutdown() may be called from any thread
// once. The core must outlive the server.
#ifndef NORMSERVE_SERVER_GRPC_SERVER_H_
#define NORMSERVE_SERVER_GRPC_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/core/norm_core.h"
#include "server/grpc/norm_service.h"

namespace normserve::server {

// How long no call may have arrived before shutdown hands over to
// grpc::Server::Shutdown (see NormServer::Shutdown).
inline constexpr std::chrono::milliseconds kShutdownQuiet{100};

// The names grpc.health.v1 reports on: "" (the whole server) and the service.
inline constexpr char kHealthServiceName[] = "normserve.v1.NormService";

struct ServerOptions {
  // Listening address; port 0 picks a free port (see NormServer::port()).
  std::string host = "0.0.0.0";
  int port = 50051;
  // Largest message received or sent.
  int64_t max_message_bytes = int64_t{64} << 20;
  // Registers grpc.reflection.v1alpha.ServerReflection.
  bool enable_reflection = false;
  // PEM file paths. cert + key turn on TLS; client_ca also requires and
  // verifies client certificates (mutual TLS).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // Stream read-ahead and authentication.
  NormServiceOptions service;
  // How often backend health is polled for the health service.
  std::chrono::milliseconds health_poll{1000};
  // Transport limits. Concurrent streams (calls) per HTTP/2 connection; 0
  // keeps gRPC's default. Together with the resource quota this bounds what a
  // few clients can pile up in memory before the core's queue limits apply.
  int max_concurrent_streams = 256;
  // Memory the gRPC transport may use for buffers, bytes; 0 = unlimited.
  int64_t resource_quota_bytes = int64_t{2} << 30;
  // Server-side keepalive pings on idle connections, and the shortest ping
  // interval a client may use before it is told to go away.
  std::chrono::milliseconds keepalive_time{60000};
  std::chrono::milliseconds keepalive_timeout{20000};
  std::chrono::milliseconds min_client_ping_interval{10000};
  // On Shutdown, how long the server keeps serving after health turns
  // NOT_SERVING, so that health-checking clients move to other replicas
  // before new calls are refused. Capped at a quarter of the shutdown grace.
  std::chrono::milliseconds shutdown_drain{500};
};

class NormServer {
 public:
  static absl::StatusOr<std::unique_ptr<NormServer>> Start(const ServerOptions& options, NormCore* core);
  ~NormServer();
  NormServer(const NormServer&) = delete;
  NormServer& operator=(const NormServer&) = delete;

  // The bound port.
  int port() const { return port_; }

  // Health NOT_SERVING; after the drain window (ServerOptions::shutdown_drain)
  // new requests get UNAVAILABLE, queued and running ones finish, and open
  // streams end with UNAVAILABLE once they have written their answers. Once
  // no call has arrived for kShutdownQuiet (or half the grace has passed)
  // gRPC stops taking calls; at `grace` after the call, whatever is left is
  // cancelled. Returns when the server and the core's workers have stopped.
  // Idempotent.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  NormServer(NormCore* core, std::unique_ptr<NormServiceImpl> service, std::chrono::milliseconds health_poll,
             std::chrono::milliseconds drain);
  void HealthLoop();

  NormCore* const core_;
  std::unique_ptr<NormServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  const std::chrono::milliseconds health_poll_;
  const std::chrono::milliseconds drain_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool serving_ = false;
  std::thread health_thread_;
  std::once_flag shutdown_once_;
};

}  // namespace normserve::server

#endif  // NORMSERVE_SERVER_GRPC_SERVER_H_
