// NormServiceImpl: normserve.v1.NormService on gRPC's callback API, a thin
// adapter over NormCore.
//
// gRPC threads never wait on a kernel: a handler validates and queues the
// request, returns its reactor, and a batcher worker finishes the call when
// the result is ready. Request and response messages stay owned by gRPC
// (unary) or by the stream reactor until the call is finished, and the
// kernels read from and write into them directly.
//
// Copies of tensor bytes that remain, and why:
// - gRPC/protobuf parse each request's bytes fields out of the wire buffer
//   into std::string (one copy; protobuf 3.21 has no zero-copy bytes).
// - The response is serialized into gRPC's send buffer (one copy).
// - The output strings are zero-filled once by resize() before the kernel
//   writes them (std::string has no uninitialized resize in C++20).
// Nothing else: the kernels read the parsed request in place and write the
// response's fields in place.
//
// Thread-safe: one instance serves all calls.
#ifndef NORMSERVE_SERVER_GRPC_NORM_SERVICE_H_
#define NORMSERVE_SERVER_GRPC_NORM_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "normserve/v1/normserve.grpc.pb.h"
#include "server/core/norm_core.h"
#include "server/grpc/auth.h"

namespace normserve::server {

struct NormServiceOptions {
  // Requests of one NormalizeStream read ahead and not yet answered; at the
  // limit the server stops reading that stream (back-pressure).
  int max_stream_inflight = 64;
  // When set, every NormService call needs this bearer token.
  std::optional<BearerTokenAuth> auth;
};

class StreamReactor;

class NormServiceImpl final : public v1::NormService::CallbackService {
 public:
  // `core` must outlive the service.
  NormServiceImpl(NormCore* core, NormServiceOptions options);

  grpc::ServerUnaryReactor* Normalize(grpc::CallbackServerContext* context,
                                      const v1::NormalizeRequest* request,
                                      v1::NormalizeResponse* response) override;
  grpc::ServerBidiReactor<v1::NormalizeRequest, v1::StreamResponse>* NormalizeStream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::GetServerInfoResponse* response) override;

  NormCore* core() const { return core_; }
  const NormServiceOptions& options() const { return options_; }
  // OK, or UNAUTHENTICATED when auth is on and the call lacks the token.
  absl::Status Authenticate(const grpc::CallbackServerContext* context) const;

  // Shutdown, after NormCore::BeginShutdown: every open NormalizeStream stops
  // reading, writes the answers it owes, then finishes with UNAVAILABLE (OK
  // if its client had already half-closed); an idle stream finishes at once.
  // Streams opened afterwards finish with UNAVAILABLE straight away.
  void BeginShutdown();
  // Calls (of any method) that reached a handler and have not finished.
  int active_calls() const { return active_calls_.load(std::memory_order_acquire); }
  // When the latest call reached a handler (steady clock).
  Clock::time_point last_call_arrival() const {
    return Clock::time_point(Clock::duration(last_arrival_.load(std::memory_order_acquire)));
  }

  // Bookkeeping used by the reactors (CallStarted on arrival, CallEnded in
  // OnDone); public only for them.
  void CallStarted();
  void CallEnded() { active_calls_.fetch_sub(1, std::memory_order_acq_rel); }
  // Registers an open stream; false once BeginShutdown has run.
  bool AddStream(StreamReactor* stream);
  void RemoveStream(StreamReactor* stream);

 private:
  NormCore* const core_;
  const NormServiceOptions options_;
  std::atomic<int> active_calls_{0};
  std::atomic<Clock::rep> last_arrival_{0};
  std::mutex streams_mu_;
  std::unordered_set<StreamReactor*> streams_;
  bool shutting_down_ = false;
};

// The call's deadline on the steady clock (max() when it has none).
Clock::time_point SteadyDeadline(const grpc::CallbackServerContext* context);

}  // namespace normserve::server

#endif  // NORMSERVE_SERVER_GRPC_NORM_SERVICE_H_
