// The float64 reference: the definition every backend is tested against.
//
// Straightforward loops in double precision, written for clarity rather than
// speed. Thread-compatible (no shared state).
#ifndef NORMSERVE_KERNELS_REFERENCE_H_
#define NORMSERVE_KERNELS_REFERENCE_H_

#include "normserve/kernels/backend.h"
#include "normserve/kernels/problem.h"

namespace normserve::kernels {

// Computes `p` in float64 and writes every requested output, each value
// rounded once to its output type (statistics to float32).
// REQUIRES: ValidateProblem(p).ok()
void ReferenceNormalize(const NormProblem& p);

// A Backend over ReferenceNormalize, named "reference", for tests and tools.
class ReferenceBackend final : public Backend {
 public:
  std::string_view name() const override { return "reference"; }
  std::string device_description() const override { return "float64 reference (host)"; }
  KernelStatus Run(const NormProblem* problems, size_t count) override;
};

}  // namespace normserve::kernels

#endif  // NORMSERVE_KERNELS_REFERENCE_H_
