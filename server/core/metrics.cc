#include "server/core/metrics.h"

#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/counter.h"
#include "prometheus/text_serializer.h"

namespace normserve::server {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Latency buckets, seconds: 10 us to 10 s.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      1e-5,   2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
      2.5e-2, 5e-2,   0.1,  0.25, 0.5,    1,    2.5,  5,      10};
  return *buckets;
}

// Powers of two from 1 to `max`.
prometheus::Histogram::BucketBoundaries PowersOfTwo(double max) {
  prometheus::Histogram::BucketBoundaries b;
  for (double v = 1; v <= max; v *= 2) b.push_back(v);
  return b;
}

const prometheus::Histogram::BucketBoundaries& BatchRequestBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries(PowersOfTwo(4096));
  return *buckets;
}

const prometheus::Histogram::BucketBoundaries& BatchRowBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries(PowersOfTwo(65536));
  return *buckets;
}

std::string S(std::string_view v) { return std::string(v); }

}  // namespace

Metrics::Metrics(const MetricsOptions& options)
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(BuildCounter()
                    .Name("normserve_requests_total")
                    .Help("Finished requests by method, kind, dtype, backend and gRPC status code.")
                    .Register(*registry_)),
      request_duration_(BuildHistogram()
                            .Name("normserve_request_duration_seconds")
                            .Help("Server-side request latency, from arrival to the response being ready.")
                            .Register(*registry_)),
      queue_wait_(BuildHistogram()
                      .Name("normserve_queue_wait_seconds")
                      .Help("Time a request waited in the batcher before its backend call started.")
                      .Register(*registry_)),
      compute_(BuildHistogram()
                   .Name("normserve_compute_seconds")
                   .Help("Duration of the backend call that computed a request.")
                   .Register(*registry_)),
      batch_requests_(BuildHistogram()
                          .Name("normserve_batch_requests")
                          .Help("Requests per backend call.")
                          .Register(*registry_)),
      batch_rows_(BuildHistogram()
                      .Name("normserve_batch_rows")
                      .Help("Normalized groups (rows) per backend call.")
                      .Register(*registry_)),
      queue_depth_(BuildGauge()
                       .Name("normserve_queue_depth")
                       .Help("Requests waiting in the batcher.")
                       .Register(*registry_)),
      queue_bytes_(BuildGauge()
                       .Name("normserve_queue_bytes")
                       .Help("Input tensor bytes waiting in the batcher.")
                       .Register(*registry_)),
      inflight_(BuildGauge()
                    .Name("normserve_inflight_requests")
                    .Help("Requests being handled, by method.")
                    .Register(*registry_)),
      received_bytes_(BuildCounter()
                          .Name("normserve_received_bytes_total")
                          .Help("Tensor payload bytes received.")
                          .Register(*registry_)),
      sent_bytes_(BuildCounter()
                      .Name("normserve_sent_bytes_total")
                      .Help("Tensor payload bytes sent.")
                      .Register(*registry_)),
      rejections_(BuildCounter()
                      .Name("normserve_rejections_total")
                      .Help("Requests refused or dropped before compute, by reason.")
                      .Register(*registry_)),
      backend_info_(BuildGauge()
                        .Name("normserve_backend_info")
                        .Help("Backends in use and their devices (value 1).")
                        .Register(*registry_)),
      backend_healthy_(BuildGauge()
                           .Name("normserve_backend_healthy")
                           .Help("1 while the backend can take requests, else 0.")
                           .Register(*registry_)),
      build_info_(BuildGauge()
                      .Name("normserve_build_info")
                      .Help("Version and git commit of the running server (value 1).")
                      .Register(*registry_)) {
  build_info_.Add({{"version", options.version}, {"git_commit", options.git_commit}}).Set(1);
  // Every rejection reason exists from the start, so rate() and alerts see 0
  // rather than no series.
  for (const char* reason : {kRejectQueueFull, kRejectDeadline, kRejectCancelled, kRejectInvalid,
                             kRejectUnauthenticated, kRejectShuttingDown, kRejectBackendUnavailable}) {
    rejections_.Add({{"reason", reason}});
  }
}

Metrics::~Metrics() = default;

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(const MetricsOptions& options) {
  std::unique_ptr<Metrics> metrics(new Metrics(options));
  if (options.port < 0) return metrics;
  const std::string address = absl::StrCat(options.host, ":", options.port);
  // The Exposer (CivetWeb) reports a failed bind by throwing; the server is
  // built without relying on exceptions elsewhere, so this is the one catch.
  try {
    metrics->exposer_ = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  metrics->exposer_->RegisterCollectable(metrics->registry_);
  const std::vector<int> ports = metrics->exposer_->GetListeningPorts();
  metrics->port_ = ports.empty() ? options.port : ports.front();
  return metrics;
}

std::unique_ptr<Metrics> Metrics::CreateForTesting() { return std::unique_ptr<Metrics>(new Metrics({})); }

void Metrics::RecordRequest(std::string_view method, std::string_view kind, std::string_view dtype,
                            std::string_view backend, std::string_view code, double seconds) {
  requests_
      .Add({{"method", S(method)},
            {"kind", S(kind)},
            {"dtype", S(dtype)},
            {"backend", S(backend)},
            {"code", S(code)}})
      .Increment();
  request_duration_.Add({{"method", S(method)}, {"kind", S(kind)}, {"backend", S(backend)}}, LatencyBuckets())
      .Observe(seconds);
}

void Metrics::ObserveQueueWait(std::string_view kind, std::string_view backend, double seconds) {
  queue_wait_.Add({{"kind", S(kind)}, {"backend", S(backend)}}, LatencyBuckets()).Observe(seconds);
}

void Metrics::ObserveCompute(std::string_view kind, std::string_view backend, double seconds) {
  compute_.Add({{"kind", S(kind)}, {"backend", S(backend)}}, LatencyBuckets()).Observe(seconds);
}

void Metrics::ObserveBatch(std::string_view backend, double requests, double rows) {
  batch_requests_.Add({{"backend", S(backend)}}, BatchRequestBuckets()).Observe(requests);
  batch_rows_.Add({{"backend", S(backend)}}, BatchRowBuckets()).Observe(rows);
}

void Metrics::SetQueueDepth(std::string_view backend, double requests, double bytes) {
  queue_depth_.Add({{"backend", S(backend)}}).Set(requests);
  queue_bytes_.Add({{"backend", S(backend)}}).Set(bytes);
}

void Metrics::AddInflight(std::string_view method, double delta) {
  inflight_.Add({{"method", S(method)}}).Increment(delta);
}

void Metrics::AddReceivedBytes(std::string_view method, double bytes) {
  received_bytes_.Add({{"method", S(method)}}).Increment(bytes);
}

void Metrics::AddSentBytes(std::string_view method, double bytes) {
  sent_bytes_.Add({{"method", S(method)}}).Increment(bytes);
}

void Metrics::CountRejection(std::string_view reason) {
  rejections_.Add({{"reason", S(reason)}}).Increment();
}

void Metrics::SetBackendInfo(std::string_view backend, std::string_view device) {
  backend_info_.Add({{"backend", S(backend)}, {"device", S(device)}}).Set(1);
}

void Metrics::SetBackendHealthy(std::string_view backend, bool healthy) {
  backend_healthy_.Add({{"backend", S(backend)}}).Set(healthy ? 1 : 0);
}

std::string Metrics::Serialize() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace normserve::server
