// Prometheus metrics of the server, with the exact names the dashboards and
// alert rules use (docs/monitoring.md).
//
// One Metrics object per server. It owns a prometheus::Registry and, when
// asked, a pull Exposer serving /metrics on its own HTTP port (separate from
// gRPC). Every method is thread-safe (prometheus-cpp families lock
// internally). Label values are bounded: method, kind, dtype, backend, code,
// reason, device, never shapes or request ids.
#ifndef NORMSERVE_SERVER_CORE_METRICS_H_
#define NORMSERVE_SERVER_CORE_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace normserve::server {

// Values of the `reason` label of normserve_rejections_total.
inline constexpr char kRejectQueueFull[] = "queue_full";
inline constexpr char kRejectDeadline[] = "deadline_exceeded";
inline constexpr char kRejectCancelled[] = "cancelled";
inline constexpr char kRejectInvalid[] = "invalid_argument";
inline constexpr char kRejectUnauthenticated[] = "unauthenticated";
inline constexpr char kRejectShuttingDown[] = "shutting_down";
inline constexpr char kRejectBackendUnavailable[] = "backend_unavailable";

struct MetricsOptions {
  // Address the /metrics HTTP endpoint binds to.
  std::string host = "0.0.0.0";
  // Port of /metrics; 0 picks a free port (see port()), -1 serves nothing
  // (the registry still counts, e.g. for tests).
  int port = 9464;
  // Values of normserve_build_info.
  std::string version = "0.0.0";
  std::string git_commit = "unknown";
};

class Metrics {
 public:
  // Fails (UNAVAILABLE) when the HTTP port cannot be bound.
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(const MetricsOptions& options);
  // A registry without an HTTP endpoint.
  static std::unique_ptr<Metrics> CreateForTesting();

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;
  ~Metrics();

  // The bound /metrics port, or -1 when not served.
  int port() const { return port_; }

  // One finished RPC (or stream message): method Normalize|NormalizeStream|GetServerInfo.
  void RecordRequest(std::string_view method, std::string_view kind, std::string_view dtype,
                     std::string_view backend, std::string_view code, double seconds);
  void ObserveQueueWait(std::string_view kind, std::string_view backend, double seconds);
  void ObserveCompute(std::string_view kind, std::string_view backend, double seconds);
  void ObserveBatch(std::string_view backend, double requests, double rows);
  void SetQueueDepth(std::string_view backend, double requests, double bytes);
  void AddInflight(std::string_view method, double delta);
  void AddReceivedBytes(std::string_view method, double bytes);
  void AddSentBytes(std::string_view method, double bytes);
  void CountRejection(std::string_view reason);
  void SetBackendInfo(std::string_view backend, std::string_view device);
  void SetBackendHealthy(std::string_view backend, bool healthy);

  // The Prometheus text exposition of everything registered.
  std::string Serialize() const;

 private:
  explicit Metrics(const MetricsOptions& options);

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = -1;

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Family<prometheus::Histogram>& queue_wait_;
  prometheus::Family<prometheus::Histogram>& compute_;
  prometheus::Family<prometheus::Histogram>& batch_requests_;
  prometheus::Family<prometheus::Histogram>& batch_rows_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Gauge>& queue_bytes_;
  prometheus::Family<prometheus::Gauge>& inflight_;
  prometheus::Family<prometheus::Counter>& received_bytes_;
  prometheus::Family<prometheus::Counter>& sent_bytes_;
  prometheus::Family<prometheus::Counter>& rejections_;
  prometheus::Family<prometheus::Gauge>& backend_info_;
  prometheus::Family<prometheus::Gauge>& backend_healthy_;
  prometheus::Family<prometheus::Gauge>& build_info_;
};

}  // namespace normserve::server

#endif  // NORMSERVE_SERVER_CORE_METRICS_H_
