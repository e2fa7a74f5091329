// Helpers shared by the server unit tests: request builders, backends that
// count, block or rename, and a synchronous wrapper around NormCore::Submit.
#ifndef NORMSERVE_TESTS_SERVER_SERVER_TEST_UTIL_H_
#define NORMSERVE_TESTS_SERVER_SERVER_TEST_UTIL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "normserve/kernels/backend.h"
#include "normserve/kernels/reference.h"
#include "normserve/kernels/types.h"
#include "normserve/v1/normserve.pb.h"
#include "server/core/norm_core.h"

namespace normserve::server::testing {

// A FLOAT32 tensor of `shape` with the given values.
inline v1::Tensor Float32Tensor(std::vector<int64_t> shape, const std::vector<float>& values) {
  v1::Tensor t;
  t.set_dtype(v1::FLOAT32);
  for (int64_t d : shape) t.add_shape(d);
  t.set_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  return t;
}

// Deterministic pseudo-random values in [-4, 4) with an offset.
inline std::vector<float> RandomValues(size_t n, uint32_t seed, float offset = 0.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng) + offset;
  return v;
}

// A valid LAYER_NORM request: input [rows, cols] FLOAT32 with gamma and beta [cols].
inline v1::NormalizeRequest LayerNormRequest(int64_t rows, int64_t cols, uint32_t seed) {
  v1::NormalizeRequest r;
  r.set_request_id(seed);
  r.set_kind(v1::LAYER_NORM);
  *r.mutable_input() =
      Float32Tensor({rows, cols}, RandomValues(static_cast<size_t>(rows * cols), seed, 3.0f));
  *r.mutable_gamma() = Float32Tensor({cols}, RandomValues(static_cast<size_t>(cols), seed + 1000));
  *r.mutable_beta() = Float32Tensor({cols}, RandomValues(static_cast<size_t>(cols), seed + 2000));
  return r;
}

inline std::vector<float> Floats(const v1::Tensor& t) {
  std::vector<float> v(t.data().size() / sizeof(float));
  std::memcpy(v.data(), t.data().data(), v.size() * sizeof(float));
  return v;
}

// Runs `problems` with the float64 reference under another name ("cpu" by
// default, so NormCore routes BACKEND_CPU to it), counting calls and
// problems. While `Block()` is in effect, Run waits until `Release()`.
class FakeBackend final : public kernels::Backend {
 public:
  explicit FakeBackend(std::string name = "cpu") : name_(std::move(name)) {}

  std::string_view name() const override { return name_; }
  std::string device_description() const override { return "fake device over the float64 reference"; }
  bool healthy() const override { return healthy_.load(); }

  kernels::KernelStatus Run(const kernels::NormProblem* problems, size_t count) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++entered_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !blocked_; });
      ++calls_;
      problems_ += static_cast<int64_t>(count);
      batch_sizes_.push_back(count);
      for (size_t i = 0; i < count; ++i) seen_inputs_.push_back(problems[i].input.data);
    }
    return reference_.Run(problems, count);
  }

  void Block() {
    std::lock_guard<std::mutex> lock(mu_);
    blocked_ = true;
  }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      blocked_ = false;
    }
    cv_.notify_all();
  }
  // Waits until `n` Run calls have started (blocked or not).
  void WaitEntered(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_ >= n; });
  }
  void set_healthy(bool h) { healthy_.store(h); }

  int64_t calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  int64_t problems() const {
    std::lock_guard<std::mutex> lock(mu_);
    return problems_;
  }
  std::vector<size_t> batch_sizes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return batch_sizes_;
  }
  // Input pointers of every problem computed, to prove one never was.
  std::vector<const void*> seen_inputs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_inputs_;
  }

 private:
  const std::string name_;
  kernels::ReferenceBackend reference_;
  std::atomic<bool> healthy_{true};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool blocked_ = false;
  int entered_ = 0;
  int64_t calls_ = 0;
  int64_t problems_ = 0;
  std::vector<size_t> batch_sizes_;
  std::vector<const void*> seen_inputs_;
};

// A request in flight through NormCore: owns the response and the outcome.
struct PendingCall {
  // Holds the request when the caller does not (see SubmitOwned).
  v1::NormalizeRequest request;
  v1::NormalizeResponse response;
  std::promise<absl::Status> promise;
  std::future<absl::Status> future = promise.get_future();
  absl::StatusOr<NormCore::Ticket> ticket;
};

// Submits `request` (which must outlive the call) and records the outcome.
inline void SubmitAsync(NormCore& core, const v1::NormalizeRequest& request, PendingCall* call,
                        CallInfo info = CallInfo()) {
  call->ticket = core.Submit(request, &call->response, info,
                             [call](const absl::Status& status) { call->promise.set_value(status); });
  if (!call->ticket.ok()) call->promise.set_value(call->ticket.status());
}

// Copies `request` into `call` and submits that copy, so that a temporary
// request may be passed.
inline void SubmitOwned(NormCore& core, const v1::NormalizeRequest& request, PendingCall* call,
                        CallInfo info = CallInfo()) {
  call->request = request;
  SubmitAsync(core, call->request, call, info);
}

// Submits and waits: the response, or the error.
inline absl::StatusOr<v1::NormalizeResponse> RunSync(NormCore& core, const v1::NormalizeRequest& request) {
  PendingCall call;
  SubmitAsync(core, request, &call);
  absl::Status status = call.future.get();
  if (!status.ok()) return status;
  return call.response;
}

}  // namespace normserve::server::testing

#endif  // NORMSERVE_TESTS_SERVER_SERVER_TEST_UTIL_H_
