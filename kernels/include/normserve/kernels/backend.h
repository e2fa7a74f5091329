// Backend: the one small interface every compute backend implements.
//
// The CPU and CUDA backends are siblings behind this interface; the server
// routes batches to them and the parity tests run every backend against the
// float64 reference through it. A Backend is created once at start-up and
// shared: Run() may be called from several threads at once and must be
// thread-safe. Buffers in the problems are host memory owned by the caller;
// a device backend stages them itself.
#ifndef NORMSERVE_KERNELS_BACKEND_H_
#define NORMSERVE_KERNELS_BACKEND_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "normserve/kernels/problem.h"
#include "normserve/kernels/status.h"

namespace normserve::kernels {

class Backend {
 public:
  virtual ~Backend() = default;

  // "cpu" or "cuda".
  virtual std::string_view name() const = 0;
  // Human-readable device description for logs and GetServerInfo.
  virtual std::string device_description() const = 0;
  // False once the device is lost; the server then reports NOT_SERVING.
  virtual bool healthy() const { return true; }

  // Computes every problem and writes its outputs. Problems may be of any
  // mix; a batch of compatible problems (same kind, dtypes, group size and
  // flags) is the fast path and may run as one launch. The bits of each
  // problem's outputs never depend on the other problems in the batch.
  // REQUIRES: ValidateProblem(problems[i]).ok() and out buffers sized as
  // NormOutputs documents. Returns INTERNAL (naming the failed call) on a
  // device error; then the contents of every output are unspecified.
  virtual KernelStatus Run(const NormProblem* problems, size_t count) = 0;
};

}  // namespace normserve::kernels

#endif  // NORMSERVE_KERNELS_BACKEND_H_
