#include "server/core/batcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/metrics.h"
#include "server/core/status_util.h"

namespace normserve::server {
namespace {

// Everything that must match for two problems to share one Backend::Run
// call on its fast path. Per-request values (gamma/beta contents, eps,
// row count, broadcast shape) are not part of it.
struct BatchKey {
  kernels::NormKind kind;
  kernels::DType input_dtype;
  kernels::DType output_dtype;
  int64_t group_size;
  int64_t spatial;
  // Present-and-dtype of each optional tensor: -1 absent, else the dtype.
  int gamma, beta, residual, running;
  bool unit_offset;
  bool mean, rstd;
  // BATCH_NORM with batch statistics never merges.
  bool alone;

  bool operator==(const BatchKey&) const = default;
};

int Presence(const kernels::TensorView& t) { return t.present() ? static_cast<int>(t.dtype) : -1; }

BatchKey KeyOf(const kernels::NormProblem& p) {
  const kernels::ProblemGeometry g = kernels::ComputeGeometry(p);
  BatchKey k{};
  k.kind = p.kind;
  k.input_dtype = p.input.dtype;
  k.output_dtype = p.output_dtype;
  k.group_size = g.group_size;
  k.spatial = g.spatial;
  k.gamma = Presence(p.gamma);
  k.beta = Presence(p.beta);
  k.residual = Presence(p.residual);
  k.running = Presence(p.running_mean);
  k.unit_offset = p.unit_offset;
  k.mean = p.out.mean != nullptr;
  k.rstd = p.out.rstd != nullptr;
  k.alone = p.kind == kernels::NormKind::kBatchNorm && p.use_batch_stats;
  return k;
}

uint64_t Nanos(Clock::duration d) {
  return d.count() <= 0
             ? 0
             : static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

double Seconds(uint64_t ns) { return static_cast<double>(ns) * 1e-9; }

}  // namespace

struct Batcher::Entry {
  BatchRequest request;
  BatchKey key;
  Batcher* owner = nullptr;
  // Valid while `queued`; guarded by the batcher's mu_.
  std::list<Ticket>::iterator position;
  bool queued = false;
};

Batcher::Batcher(kernels::Backend* backend, const BatcherOptions& options, Metrics* metrics)
    : backend_(backend), options_(options), metrics_(metrics), backend_name_(backend->name()) {
  const int workers = std::max(1, options_.workers);
  workers_.reserve(workers);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  if (metrics_ != nullptr) metrics_->SetQueueDepth(backend_name_, 0, 0);
}

Batcher::~Batcher() { Shutdown(); }

absl::StatusOr<Batcher::Ticket> Batcher::Submit(BatchRequest request) {
  auto entry = std::make_shared<Entry>();
  entry->key = KeyOf(request.problem);
  entry->owner = this;
  entry->request = std::move(request);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      ++stats_.rejected_shutting_down;
      if (metrics_ != nullptr) metrics_->CountRejection(kRejectShuttingDown);
      return absl::UnavailableError("server is shutting down");
    }
    const int64_t bytes = entry->request.bytes;
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue_requests ||
        (queued_bytes_ + bytes > options_.max_queue_bytes && !queue_.empty())) {
      ++stats_.rejected_queue_full;
      if (metrics_ != nullptr) metrics_->CountRejection(kRejectQueueFull);
      return absl::UnavailableError(
          absl::StrCat("queue of backend ", backend_name_, " is full (", queue_.size(), " requests, ",
                       queued_bytes_, " bytes queued; limits ", options_.max_queue_requests, " requests, ",
                       options_.max_queue_bytes, " bytes); retry later"));
    }
    ++stats_.submitted;
    queued_bytes_ += bytes;
    entry->position = queue_.insert(queue_.end(), entry);
    entry->queued = true;
    PublishDepthLocked();
  }
  cv_.notify_all();
  return entry;
}

bool Batcher::Cancel(const Ticket& ticket, const absl::Status& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ticket->queued) return false;
    RemoveLocked(ticket);
    if (reason.code() == absl::StatusCode::kDeadlineExceeded) {
      ++stats_.expired_in_queue;
      if (metrics_ != nullptr) metrics_->CountRejection(kRejectDeadline);
    } else {
      ++stats_.cancelled_in_queue;
      if (metrics_ != nullptr) metrics_->CountRejection(kRejectCancelled);
    }
  }
  // Waiting workers may be timing the removed request's delay.
  cv_.notify_all();
  ticket->request.done(reason, BatchTiming{});
  return true;
}

Batcher* Batcher::OwnerOf(const Ticket& ticket) { return ticket->owner; }

void Batcher::Shutdown() {
  std::call_once(shutdown_once_, [this] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  });
}

BatcherStats Batcher::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Batcher::RemoveLocked(const Ticket& entry) {
  queue_.erase(entry->position);
  entry->queued = false;
  queued_bytes_ -= entry->request.bytes;
  PublishDepthLocked();
}

void Batcher::PublishDepthLocked() {
  if (metrics_ != nullptr) {
    metrics_->SetQueueDepth(backend_name_, static_cast<double>(queue_.size()),
                            static_cast<double>(queued_bytes_));
  }
}

std::vector<Batcher::Ticket> Batcher::NextBatch(std::vector<Ticket>* expired) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const Clock::time_point now = Clock::now();
    // Requests whose deadline passed are dropped before any compute.
    for (auto it = queue_.begin(); it != queue_.end();) {
      Ticket entry = *it++;
      if (entry->request.deadline <= now) {
        RemoveLocked(entry);
        ++stats_.expired_in_queue;
        if (metrics_ != nullptr) metrics_->CountRejection(kRejectDeadline);
        expired->push_back(std::move(entry));
      }
    }
    if (!expired->empty()) return {};
    if (queue_.empty()) {
      if (stopping_) return {};
      cv_.wait(lock);
      continue;
    }
    const Ticket front = queue_.front();
    const bool mergeable = options_.enable_batching && !front->key.alone;
    if (mergeable && !stopping_ && options_.max_queue_delay.count() > 0) {
      const Clock::time_point flush_at = front->request.arrival + options_.max_queue_delay;
      if (now < flush_at) {
        int64_t rows = 0;
        for (const Ticket& e : queue_) {
          if (e->key == front->key) rows += e->request.rows;
        }
        if (rows < options_.max_batch_rows) {
          // Wake at the flush time, at the earliest deadline, or on news.
          Clock::time_point wake = flush_at;
          for (const Ticket& e : queue_) wake = std::min(wake, e->request.deadline);
          cv_.wait_until(lock, wake);
          continue;
        }
      }
    }
    std::vector<Ticket> batch;
    int64_t rows = front->request.rows;
    batch.push_back(front);
    RemoveLocked(front);
    if (mergeable) {
      for (auto it = queue_.begin(); it != queue_.end() && rows < options_.max_batch_rows;) {
        Ticket entry = *it++;
        if (!(entry->key == front->key) || rows + entry->request.rows > options_.max_batch_rows) continue;
        rows += entry->request.rows;
        RemoveLocked(entry);
        batch.push_back(std::move(entry));
      }
    }
    ++stats_.backend_calls;
    stats_.computed_requests += static_cast<int64_t>(batch.size());
    return batch;
  }
}

void Batcher::WorkerLoop() {
  for (;;) {
    std::vector<Ticket> expired;
    std::vector<Ticket> batch = NextBatch(&expired);
    for (const Ticket& entry : expired) {
      entry->request.done(absl::DeadlineExceededError("deadline exceeded while queued; not computed"),
                          BatchTiming{});
    }
    if (!expired.empty()) continue;
    if (batch.empty()) return;
    RunBatch(batch);
    // Wake a sibling: this worker's exit from NextBatch may have left a
    // front request nobody is timing.
    cv_.notify_one();
  }
}

void Batcher::RunBatch(std::vector<Ticket>& batch) {
  // Backend::Run takes a contiguous array; the problems are moved (not
  // copied) out of their entries. No tensor bytes move: the problems point
  // at request and response buffers.
  std::vector<kernels::NormProblem> problems;
  problems.reserve(batch.size());
  int64_t rows = 0;
  for (const Ticket& entry : batch) {
    problems.push_back(std::move(entry->request.problem));
    rows += entry->request.rows;
  }
  const Clock::time_point start = Clock::now();
  const kernels::KernelStatus status = backend_->Run(problems.data(), problems.size());
  const Clock::time_point end = Clock::now();

  BatchTiming timing;
  timing.compute_ns = Nanos(end - start);
  timing.batch_requests = static_cast<uint32_t>(batch.size());
  timing.batch_rows = static_cast<uint64_t>(rows);
  if (metrics_ != nullptr) {
    metrics_->ObserveBatch(backend_name_, static_cast<double>(batch.size()), static_cast<double>(rows));
  }
  const absl::Status result = FromKernelStatus(status);
  for (const Ticket& entry : batch) {
    timing.queue_ns = Nanos(start - entry->request.arrival);
    if (metrics_ != nullptr) {
      metrics_->ObserveQueueWait(entry->request.kind_label, backend_name_, Seconds(timing.queue_ns));
      metrics_->ObserveCompute(entry->request.kind_label, backend_name_, Seconds(timing.compute_ns));
    }
    entry->request.done(result, timing);
  }
}

}  // namespace normserve::server
