// NormProblem: one validated normalization request, as the kernels see it.
//
// A NormProblem only points at memory: the caller owns every input and output
// buffer and keeps them alive until the backend call that uses them returns.
// Problems are plain data; reading one from several threads is safe.
//
// Layout conventions (docs/SEMANTICS.md has the math):
// - LAYER_NORM / RMS_NORM: input is viewed as [rows, cols] where cols is the
//   product of the last `normalized_dims` dims. gamma/beta are [cols] or carry
//   leading dims that broadcast against input's leading dims (adaptive norm);
//   RowBroadcast maps a row to its parameter vector.
// - GROUP_NORM / INSTANCE_NORM: input is [N, C, S] (S = product of spatial
//   dims, 1 if none); group (n, g) is the contiguous block of C/G channels x S.
//   gamma/beta are [C].
// - BATCH_NORM: input is [N, C, S]; channel c is normalized over N x S.
//   gamma/beta/running_mean/running_var are [C].
#ifndef NORMSERVE_KERNELS_PROBLEM_H_
#define NORMSERVE_KERNELS_PROBLEM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "normserve/kernels/status.h"
#include "normserve/kernels/types.h"

namespace normserve::kernels {

// Highest tensor rank the service accepts.
inline constexpr int kMaxRank = 8;

// A read-only tensor. `data == nullptr` means the tensor is absent.
struct TensorView {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  // Bytes available at `data`; validation checks it against shape and dtype.
  uint64_t byte_size = 0;

  bool present() const { return data != nullptr; }
  // Product of shape, 1 for rank 0. REQUIRES: the dims were validated (no overflow).
  int64_t NumElements() const;
};

// Where results go. Buffers are owned by the caller.
struct NormOutputs {
  // REQUIRED. input's element count, of NormProblem::output_dtype.
  void* output = nullptr;
  // REQUIRED iff residual is present: input's element count, input's dtype.
  void* residual_out = nullptr;
  // Optional per-group statistics (NumStatGroups() floats each). mean is
  // never written for RMS_NORM. For BATCH_NORM with use_batch_stats, mean and
  // variance are REQUIRED and receive the batch statistics.
  float* mean = nullptr;
  float* rstd = nullptr;
  float* variance = nullptr;
};

struct NormProblem {
  NormKind kind = NormKind::kLayerNorm;
  TensorView input;
  TensorView gamma;
  TensorView beta;
  TensorView residual;
  TensorView running_mean;
  TensorView running_var;
  float epsilon = 1e-5f;
  // LAYER_NORM / RMS_NORM: trailing dims normalized together (>= 1).
  int normalized_dims = 1;
  // GROUP_NORM: groups (divides C). INSTANCE_NORM: ignored (G = C).
  int num_groups = 1;
  bool use_batch_stats = false;
  bool unit_offset = false;
  DType output_dtype = DType::kFloat32;
  NormOutputs out;
};

// Sizes derived from a valid problem.
struct ProblemGeometry {
  // Normalized groups: rows for LAYER/RMS, N*G for GROUP/INSTANCE, C for BATCH.
  int64_t groups = 0;
  // Elements per group (M in SEMANTICS.md): cols; C/G*S; N*S.
  int64_t group_size = 0;
  // LAYER/RMS: rows x cols of the 2-D view.
  int64_t rows = 0;
  int64_t cols = 0;
  // GROUP/INSTANCE/BATCH: the [N, C, S] view and the group count G.
  int64_t n = 0;
  int64_t channels = 0;
  int64_t spatial = 0;
  int64_t num_groups = 0;
};

// "[2,4,5]": a shape as messages print it.
std::string ShapeString(const std::vector<int64_t>& shape);

// REQUIRES: ValidateProblem(p).ok()
ProblemGeometry ComputeGeometry(const NormProblem& p);

// Number of floats each of out.mean / out.rstd must hold (geometry.groups).
// REQUIRES: ValidateProblem(p).ok()
int64_t NumStatGroups(const NormProblem& p);

// Checks everything SEMANTICS.md requires of a request: byte lengths, ranks,
// dims >= 1 without int64 overflow, element limits, broadcastable gamma/beta,
// running stats, residual, num_groups, normalized_dims, epsilon, dtypes.
// Returns INVALID_ARGUMENT with a message that names the field (as in the
// .proto: "input.data", "gamma.shape", "num_groups", ...) and what was
// expected, or RESOURCE_EXHAUSTED for a tensor over max_tensor_elements (too
// large by configuration, SEMANTICS.md). Does not look at `out`.
KernelStatus ValidateProblem(const NormProblem& p, int64_t max_tensor_elements = int64_t{1} << 31);

// Maps a row of a LAYER/RMS problem's [rows, cols] view to the element offset
// of that row's parameter vector in gamma or beta (adaptive norm). Value type.
class RowBroadcast {
 public:
  RowBroadcast() = default;
  // `input_shape` is the input's shape, `param_shape` the parameter's, `k`
  // the normalized dims. REQUIRES: the shapes were validated as broadcastable.
  RowBroadcast(const std::vector<int64_t>& input_shape, const std::vector<int64_t>& param_shape, int k);

  // Element offset (a multiple of cols) of row `row`'s parameter vector.
  int64_t Offset(int64_t row) const {
    if (rank_ == 0) return 0;
    int64_t offset = 0;
    for (int i = rank_ - 1; i >= 0; --i) {
      const int64_t idx = row % dims_[i];
      row /= dims_[i];
      offset += idx * strides_[i];
    }
    return offset;
  }
  // True when every row uses offset 0 (a plain [cols] parameter).
  bool uniform() const { return rank_ == 0; }

 private:
  // Leading dims of the input and the parameter's element stride for each (0 where broadcast).
  int rank_ = 0;
  int64_t dims_[kMaxRank] = {};
  int64_t strides_[kMaxRank] = {};
};

}  // namespace normserve::kernels

#endif  // NORMSERVE_KERNELS_PROBLEM_H_
