// NormCore: the transport-independent heart of the server.
//
// It owns the backends and one Batcher per backend, turns a NormalizeRequest
// into a validated problem whose outputs live in the NormalizeResponse,
// routes it (BACKEND_AUTO/CPU/CUDA), queues it, fills ServerTiming when it
// completes, and records request metrics. It knows protobuf messages but no
// gRPC types; server/grpc/ adapts it to the wire.
//
// Thread-safe: every method may be called from any thread. Completion
// callbacks run on batcher worker threads (or on the thread that cancels).
#ifndef NORMSERVE_SERVER_CORE_NORM_CORE_H_
#define NORMSERVE_SERVER_CORE_NORM_CORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "normserve/kernels/backend.h"
#include "normserve/v1/normserve.pb.h"
#include "server/core/batcher.h"
#include "server/core/metrics.h"

namespace normserve::server {

inline constexpr char kMethodNormalize[] = "Normalize";
inline constexpr char kMethodNormalizeStream[] = "NormalizeStream";
inline constexpr char kMethodGetServerInfo[] = "GetServerInfo";

struct CoreOptions {
  // Largest number of elements in one tensor (checked by ValidateProblem).
  int64_t max_tensor_elements = int64_t{1} << 28;
  // Largest gRPC message, reported in GetServerInfo (gRPC enforces it).
  int64_t max_message_bytes = int64_t{64} << 20;
  // Batching and queue limits, the same for every backend.
  BatcherOptions batcher;
  // Reported in GetServerInfo and normserve_build_info.
  std::string version = "0.1.0";
  std::string git_commit = "unknown";
};

// One request as the transport hands it over.
struct CallInfo {
  // Metrics label: kMethodNormalize or kMethodNormalizeStream.
  std::string_view method = kMethodNormalize;
  // When the request reached the server.
  Clock::time_point arrival = Clock::now();
  // The call's deadline; max() when none.
  Clock::time_point deadline = Clock::time_point::max();
};

class NormCore {
 public:
  // Called once per accepted request with its outcome. On OK the response
  // holds the outputs, backend name and timing.
  using DoneCallback = std::function<void(const absl::Status&)>;
  using Ticket = Batcher::Ticket;

  // `backends` must contain `default_backend` by name(). `metrics` may be
  // null (no metrics) and must outlive the core.
  NormCore(const CoreOptions& options, std::vector<std::unique_ptr<kernels::Backend>> backends,
           std::string default_backend, Metrics* metrics);
  ~NormCore();
  NormCore(const NormCore&) = delete;
  NormCore& operator=(const NormCore&) = delete;

  // Validates and queues `request`, whose outputs will be written into
  // `response`. Returns the error at once (and never calls `done`) for a bad
  // request, an unavailable backend, a full queue or shutdown; the error is
  // already counted in the metrics. Otherwise `done` runs exactly once,
  // later, and `request` and `response` must stay alive until it has run.
  absl::StatusOr<Ticket> Submit(const v1::NormalizeRequest& request, v1::NormalizeResponse* response,
                                const CallInfo& call, DoneCallback done);

  // Removes a queued request (see Batcher::Cancel); `reason` is CANCELLED or
  // DEADLINE_EXCEEDED. Its `done` then runs on this thread with `reason`.
  bool Cancel(const Ticket& ticket, const absl::Status& reason);

  // Counts a request refused before it reached the core (e.g. by
  // authentication), as a finished request of `method` with `status`.
  void RecordRefused(std::string_view method, const absl::Status& status, double seconds);

  void FillServerInfo(v1::GetServerInfoResponse* info) const;

  // New requests get UNAVAILABLE from now on; queued ones still run.
  void BeginShutdown();
  // BeginShutdown, then computes everything queued and stops the workers.
  void Shutdown();
  bool shutting_down() const { return shutting_down_.load(); }

  // True while not shutting down and every backend reports healthy.
  bool Healthy() const;

  const std::string& default_backend() const { return default_backend_; }
  // nullptr when there is no such backend.
  Batcher* batcher(std::string_view backend) const;
  Metrics* metrics() const { return metrics_; }
  const CoreOptions& options() const { return options_; }

 private:
  struct Route {
    std::unique_ptr<kernels::Backend> backend;
    std::unique_ptr<Batcher> batcher;
  };
  absl::StatusOr<Route*> Resolve(int wire_backend);

  const CoreOptions options_;
  Metrics* const metrics_;
  std::string default_backend_;
  std::map<std::string, Route, std::less<>> routes_;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace normserve::server

#endif  // NORMSERVE_SERVER_CORE_NORM_CORE_H_
