// Batcher: a Triton-like dynamic batcher in front of one Backend.
//
// Requests are queued in arrival order. A worker takes the oldest request and
// waits up to `max_queue_delay` (counted from that request's arrival) for
// compatible company: same kind, input and output dtype, group size and flags
// (BatchKey). Each request keeps its own gamma/beta/eps: compatibility only
// asks that one Backend::Run call can take them all. It then removes the
// compatible requests, oldest first, up to `max_batch_rows` normalized groups,
// and runs them in one Backend::Run call. BATCH_NORM with use_batch_stats is
// never merged (its statistics span the whole request).
//
// Threading: Submit, Cancel and stats() may be called from any thread. The
// `done` callback of every accepted request runs exactly once, either on a
// worker thread (after compute, or when the deadline passed in the queue) or
// on the thread that called Cancel(); never inside Submit() and never under
// the batcher's lock. The buffers a problem points at must stay alive until
// its `done` has been called.
#ifndef NORMSERVE_SERVER_CORE_BATCHER_H_
#define NORMSERVE_SERVER_CORE_BATCHER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "normserve/kernels/backend.h"
#include "normserve/kernels/problem.h"

namespace normserve::server {

class Metrics;

using Clock = std::chrono::steady_clock;

struct BatcherOptions {
  // Most normalized groups (rows) merged into one backend call. A single
  // request larger than this still runs, alone.
  int64_t max_batch_rows = 4096;
  // How long the oldest queued request may wait for compatible company. 0:
  // never wait, but still merge compatible requests already queued.
  std::chrono::microseconds max_queue_delay{100};
  // Most requests queued at once; beyond it Submit returns UNAVAILABLE.
  int64_t max_queue_requests = 1024;
  // Most input tensor bytes queued at once; beyond it Submit returns UNAVAILABLE.
  int64_t max_queue_bytes = int64_t{1} << 30;
  // Worker threads calling the backend.
  int workers = 2;
  // false: every backend call computes exactly one request.
  bool enable_batching = true;
};

// What the batcher measured for one request.
struct BatchTiming {
  // Arrival to the start of the backend call.
  uint64_t queue_ns = 0;
  // Duration of the backend call (shared by the batch).
  uint64_t compute_ns = 0;
  uint32_t batch_requests = 0;
  uint64_t batch_rows = 0;
};

// One request handed to the batcher.
struct BatchRequest {
  // REQUIRES: validated (kernels::ValidateProblem) and outputs allocated.
  kernels::NormProblem problem;
  // Normalized groups of the problem (kernels::NumStatGroups).
  int64_t rows = 0;
  // Input tensor bytes, counted against max_queue_bytes.
  int64_t bytes = 0;
  // When the request reached the server core.
  Clock::time_point arrival = Clock::now();
  // Past this point a queued request is dropped with DEADLINE_EXCEEDED.
  Clock::time_point deadline = Clock::time_point::max();
  // Kind label for metrics ("layer_norm").
  std::string kind_label;
  // Called exactly once with the outcome: OK (outputs written), CANCELLED or
  // DEADLINE_EXCEEDED (never computed), or the backend's error. Shutdown
  // drains the queue, so it adds no outcome of its own.
  std::function<void(const absl::Status&, const BatchTiming&)> done;
};

// Counters for tests and logs. Monotonic.
struct BatcherStats {
  int64_t submitted = 0;
  int64_t computed_requests = 0;
  int64_t backend_calls = 0;
  int64_t expired_in_queue = 0;
  int64_t cancelled_in_queue = 0;
  int64_t rejected_queue_full = 0;
  int64_t rejected_shutting_down = 0;
};

class Batcher {
 public:
  struct Entry;
  // Identifies an accepted request for Cancel().
  using Ticket = std::shared_ptr<Entry>;

  // `backend` and `metrics` (nullable) must outlive the batcher.
  Batcher(kernels::Backend* backend, const BatcherOptions& options, Metrics* metrics = nullptr);
  // Shuts down (drains the queue) if Shutdown() was not called.
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues `request`. UNAVAILABLE when the queue is full or the batcher is
  // shutting down; then `done` is never called.
  absl::StatusOr<Ticket> Submit(BatchRequest request);

  // If the request is still queued, removes it, calls its `done` with
  // `reason` (CANCELLED or DEADLINE_EXCEEDED) on this thread and returns
  // true. Once its backend call started, does nothing and returns false.
  bool Cancel(const Ticket& ticket, const absl::Status& reason);

  // The batcher that accepted `ticket`.
  static Batcher* OwnerOf(const Ticket& ticket);

  // Stops accepting, computes everything queued, joins the workers. Idempotent.
  void Shutdown();

  BatcherStats stats() const;
  const BatcherOptions& options() const { return options_; }
  kernels::Backend* backend() const { return backend_; }

 private:
  void WorkerLoop();
  // Takes the next batch off the queue; empty when shutting down with an
  // empty queue. Expired requests found on the way go to `expired`.
  std::vector<Ticket> NextBatch(std::vector<Ticket>* expired);
  void RemoveLocked(const Ticket& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishDepthLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunBatch(std::vector<Ticket>& batch);

  kernels::Backend* const backend_;
  const BatcherOptions options_;
  Metrics* const metrics_;
  const std::string backend_name_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::list<Ticket> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  BatcherStats stats_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_;
  std::once_flag shutdown_once_;
};

}  // namespace normserve::server

#endif  // NORMSERVE_SERVER_CORE_BATCHER_H_
