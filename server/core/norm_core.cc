#include "server/core/norm_core.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "normserve/kernels/problem.h"
#include "normserve/kernels/types.h"
#include "server/core/request_conversion.h"
#include "server/core/status_util.h"

namespace normserve::server {
namespace {

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

uint64_t NanosSince(Clock::time_point start) {
  const auto d = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
  return d < 0 ? 0 : static_cast<uint64_t>(d);
}

// Bounded label values: the kernels' names, or "unknown" for bad enums.
std::string KindLabel(int wire_kind) {
  kernels::NormKind k;
  return KernelNormKind(wire_kind, &k) ? std::string(kernels::NormKindName(k)) : "unknown";
}

std::string DTypeLabel(const v1::NormalizeRequest& r) {
  kernels::DType t;
  return KernelDType(static_cast<int>(r.input().dtype()), &t) ? std::string(kernels::DTypeName(t))
                                                              : "unknown";
}

uint64_t PayloadBytes(const v1::NormalizeRequest& r) {
  return r.input().data().size() + r.gamma().data().size() + r.beta().data().size() +
         r.residual().data().size() + r.running_mean().data().size() + r.running_var().data().size();
}

uint64_t PayloadBytes(const v1::NormalizeResponse& r) {
  return r.output().data().size() + r.residual_out().data().size() + r.mean().data().size() +
         r.rstd().data().size() + r.variance().data().size();
}

const char* RejectionReason(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kResourceExhausted:
      return kRejectInvalid;
    case absl::StatusCode::kDeadlineExceeded:
      return kRejectDeadline;
    case absl::StatusCode::kCancelled:
      return kRejectCancelled;
    case absl::StatusCode::kUnauthenticated:
      return kRejectUnauthenticated;
    default:
      return nullptr;
  }
}

}  // namespace

NormCore::NormCore(const CoreOptions& options, std::vector<std::unique_ptr<kernels::Backend>> backends,
                   std::string default_backend, Metrics* metrics)
    : options_(options), metrics_(metrics), default_backend_(std::move(default_backend)) {
  for (auto& backend : backends) {
    const std::string name(backend->name());
    Route route;
    route.batcher = std::make_unique<Batcher>(backend.get(), options_.batcher, metrics_);
    route.backend = std::move(backend);
    if (metrics_ != nullptr) {
      metrics_->SetBackendInfo(name, route.backend->device_description());
      metrics_->SetBackendHealthy(name, route.backend->healthy());
    }
    routes_.emplace(name, std::move(route));
  }
}

NormCore::~NormCore() { Shutdown(); }

absl::StatusOr<NormCore::Route*> NormCore::Resolve(int wire_backend) {
  std::string_view name;
  switch (wire_backend) {
    case v1::BACKEND_CPU:
      name = "cpu";
      break;
    case v1::BACKEND_CUDA:
      name = "cuda";
      break;
    default:
      name = default_backend_;
      break;
  }
  auto it = routes_.find(name);
  if (it == routes_.end()) {
    if (wire_backend == v1::BACKEND_CUDA) {
      return absl::FailedPreconditionError(
          "backend BACKEND_CUDA is not available: this server has no CUDA device; use BACKEND_CPU or "
          "BACKEND_AUTO");
    }
    return absl::FailedPreconditionError(
        absl::StrCat("backend ", std::string(name),
                     " is not enabled on this server (started with --backend=", default_backend_, ")"));
  }
  Route* route = &it->second;
  if (!route->backend->healthy()) {
    if (metrics_ != nullptr) metrics_->SetBackendHealthy(it->first, false);
    return absl::UnavailableError(absl::StrCat("backend ", it->first, " is unhealthy"));
  }
  return route;
}

absl::StatusOr<NormCore::Ticket> NormCore::Submit(const v1::NormalizeRequest& request,
                                                  v1::NormalizeResponse* response, const CallInfo& call,
                                                  DoneCallback done) {
  const std::string kind = KindLabel(static_cast<int>(request.kind()));
  const std::string dtype = DTypeLabel(request);
  std::string backend_label = request.backend() == v1::BACKEND_CPU    ? "cpu"
                              : request.backend() == v1::BACKEND_CUDA ? "cuda"
                                                                      : default_backend_;
  if (metrics_ != nullptr)
    metrics_->AddReceivedBytes(call.method, static_cast<double>(PayloadBytes(request)));

  auto refuse = [&](absl::Status status, const char* reason) -> absl::Status {
    if (metrics_ != nullptr) {
      if (reason != nullptr) metrics_->CountRejection(reason);
      metrics_->RecordRequest(call.method, kind, dtype, backend_label, StatusCodeName(status.code()),
                              SecondsSince(call.arrival));
    }
    return status;
  };

  if (shutting_down_.load()) {
    return refuse(absl::UnavailableError("server is shutting down"), kRejectShuttingDown);
  }
  if (call.deadline <= Clock::now()) {
    return refuse(
        absl::DeadlineExceededError("deadline exceeded before the request was queued; not computed"),
        kRejectDeadline);
  }
  PreparedRequest prepared;
  absl::Status status = PrepareRequest(request, options_.max_tensor_elements, response, &prepared);
  if (!status.ok()) return refuse(status, RejectionReason(status.code()));
  absl::StatusOr<Route*> route = Resolve(static_cast<int>(request.backend()));
  if (!route.ok()) return refuse(route.status(), kRejectBackendUnavailable);
  backend_label = std::string((*route)->backend->name());

  BatchRequest batch_request;
  batch_request.problem = std::move(prepared.problem);
  batch_request.rows = prepared.rows;
  batch_request.bytes = static_cast<int64_t>(prepared.input_bytes);
  batch_request.arrival = call.arrival;
  batch_request.deadline = call.deadline;
  batch_request.kind_label = kind;
  batch_request.done = [this, response, method = std::string(call.method), kind, dtype, backend_label,
                        arrival = call.arrival,
                        done = std::move(done)](const absl::Status& result, const BatchTiming& timing) {
    if (result.ok()) {
      response->set_backend(backend_label);
      v1::ServerTiming* t = response->mutable_timing();
      t->set_queue_ns(timing.queue_ns);
      t->set_compute_ns(timing.compute_ns);
      t->set_batch_requests(timing.batch_requests);
      t->set_batch_rows(timing.batch_rows);
      t->set_total_ns(NanosSince(arrival));
    }
    if (metrics_ != nullptr) {
      if (result.ok()) metrics_->AddSentBytes(method, static_cast<double>(PayloadBytes(*response)));
      metrics_->RecordRequest(method, kind, dtype, backend_label, StatusCodeName(result.code()),
                              SecondsSince(arrival));
    }
    done(result);
  };
  // Rejections inside the batcher (queue full, shutdown) count themselves.
  absl::StatusOr<Ticket> ticket = (*route)->batcher->Submit(std::move(batch_request));
  if (!ticket.ok()) return refuse(ticket.status(), nullptr);
  return ticket;
}

bool NormCore::Cancel(const Ticket& ticket, const absl::Status& reason) {
  return Batcher::OwnerOf(ticket)->Cancel(ticket, reason);
}

void NormCore::RecordRefused(std::string_view method, const absl::Status& status, double seconds) {
  if (metrics_ == nullptr) return;
  if (const char* reason = RejectionReason(status.code())) metrics_->CountRejection(reason);
  metrics_->RecordRequest(method, "unknown", "unknown", "none", StatusCodeName(status.code()), seconds);
}

void NormCore::FillServerInfo(v1::GetServerInfoResponse* info) const {
  info->set_version(options_.version);
  info->set_git_commit(options_.git_commit);
  info->set_default_backend(default_backend_);
  for (const auto& [name, route] : routes_) {
    v1::BackendInfo* b = info->add_backends();
    b->set_name(name);
    b->set_device(route.backend->device_description());
    b->set_available(route.backend->healthy() && !shutting_down_.load());
  }
  v1::ServerLimits* limits = info->mutable_limits();
  limits->set_max_message_bytes(options_.max_message_bytes);
  limits->set_max_tensor_elements(options_.max_tensor_elements);
  limits->set_max_rank(kernels::kMaxRank);
  limits->set_max_batch_rows(options_.batcher.max_batch_rows);
  limits->set_max_queue_delay_us(options_.batcher.max_queue_delay.count());
  limits->set_max_queue_requests(options_.batcher.max_queue_requests);
  limits->set_max_queue_bytes(options_.batcher.max_queue_bytes);
  for (v1::NormKind k : {v1::LAYER_NORM, v1::RMS_NORM, v1::BATCH_NORM, v1::GROUP_NORM, v1::INSTANCE_NORM}) {
    info->add_kinds(k);
  }
  for (v1::DType t : {v1::FLOAT32, v1::FLOAT16, v1::BFLOAT16}) info->add_dtypes(t);
}

void NormCore::BeginShutdown() { shutting_down_.store(true); }

void NormCore::Shutdown() {
  BeginShutdown();
  for (auto& [name, route] : routes_) {
    (void)name;
    route.batcher->Shutdown();
  }
}

bool NormCore::Healthy() const {
  if (shutting_down_.load()) return false;
  bool healthy = true;
  for (const auto& [name, route] : routes_) {
    const bool ok = route.backend->healthy();
    if (metrics_ != nullptr) metrics_->SetBackendHealthy(name, ok);
    healthy = healthy && ok;
  }
  return healthy;
}

Batcher* NormCore::batcher(std::string_view backend) const {
  auto it = routes_.find(backend);
  return it == routes_.end() ? nullptr : it->second.batcher.get();
}

}  // namespace normserve::server
