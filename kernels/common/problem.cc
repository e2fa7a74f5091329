// Validation and geometry of a NormProblem.
//
// ValidateProblem runs once per request, so it does no allocation on the
// success path: strings are only built for the error being returned.
//
// Rules checked, in this order (docs/SEMANTICS.md, "Decisions" for the ones
// the shared contract leaves open):
//  1. kind, input.dtype and output_dtype are known enum values.
//  2. input is present; its rank is 1..kMaxRank; every dim >= 1; the element
//     count does not overflow int64 (INVALID_ARGUMENT) and is at most
//     max_tensor_elements (RESOURCE_EXHAUSTED: too large by configuration).
//  3. LAYER/RMS: 1 <= normalized_dims <= rank. BATCH/GROUP/INSTANCE: rank >= 2.
//  4. input.data holds exactly NumElements * sizeof(dtype) bytes.
//  5. epsilon is finite and >= 0.
//  6. GROUP_NORM: num_groups >= 1 and divides C.
//  7. gamma / beta (when present): dtype FLOAT32 or input.dtype; rank
//     1..kMaxRank; dims >= 1; shape as the kind requires (LAYER/RMS: the last
//     normalized_dims dims of input, optionally preceded by leading dims that
//     broadcast numpy-style against input's leading dims; others: [C]);
//     byte length.
//  8. residual (when present): same dtype and shape as input; byte length.
//  9. running_mean / running_var: only BATCH_NORM takes them; required there
//     unless use_batch_stats; same dtype and shape rules as gamma with [C].
// Parameters are checked against shapes that are already bounded by the
// input's, so their element counts cannot overflow.
#include "normserve/kernels/problem.h"

#include <cmath>
#include <cstdio>
#include <string>

namespace normserve::kernels {
namespace {

bool ValidDType(DType t) { return t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kBFloat16; }

bool ValidKind(NormKind k) {
  switch (k) {
    case NormKind::kLayerNorm:
    case NormKind::kRmsNorm:
    case NormKind::kBatchNorm:
    case NormKind::kGroupNorm:
    case NormKind::kInstanceNorm:
      return true;
  }
  return false;
}

bool IsRowKind(NormKind k) { return k == NormKind::kLayerNorm || k == NormKind::kRmsNorm; }

std::string FloatString(float v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(v));
  return buf;
}

int64_t Product(const std::vector<int64_t>& shape, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end; ++i) n *= shape[i];
  return n;
}

// Rank limit and dims >= 1 for any tensor; `min_rank` is checked by callers
// that have a kind-specific message.
KernelStatus CheckDims(const TensorView& t, const char* field) {
  const size_t rank = t.shape.size();
  if (rank > static_cast<size_t>(kMaxRank)) {
    return KernelStatus::InvalidArgument(std::string(field) + ".shape has rank " + std::to_string(rank) +
                                         "; the limit is " + std::to_string(kMaxRank));
  }
  for (size_t i = 0; i < rank; ++i) {
    if (t.shape[i] < 1) {
      return KernelStatus::InvalidArgument(std::string(field) + ".shape[" + std::to_string(i) + "] is " +
                                           std::to_string(t.shape[i]) + "; every dim must be >= 1");
    }
  }
  return KernelStatus::Ok();
}

// REQUIRES: CheckDims passed and the element count is known not to overflow.
KernelStatus CheckBytes(const TensorView& t, const char* field) {
  const uint64_t need = static_cast<uint64_t>(t.NumElements()) * DTypeSize(t.dtype);
  if (t.byte_size != need) {
    return KernelStatus::InvalidArgument(std::string(field) + ".data has " + std::to_string(t.byte_size) +
                                         " bytes; shape " + ShapeString(t.shape) + " " +
                                         DTypeWireName(t.dtype) + " needs " + std::to_string(need));
  }
  return KernelStatus::Ok();
}

// Parameters (gamma, beta, running stats) come as FLOAT32 or the input's dtype.
KernelStatus CheckParamDType(const TensorView& t, const char* field, DType input_dtype) {
  if (!ValidDType(t.dtype)) {
    return KernelStatus::InvalidArgument(std::string(field) + ".dtype has unknown value " +
                                         std::to_string(static_cast<int>(t.dtype)) +
                                         "; expected FLOAT32, FLOAT16 or BFLOAT16");
  }
  if (t.dtype != DType::kFloat32 && t.dtype != input_dtype) {
    return KernelStatus::InvalidArgument(std::string(field) + ".dtype " + DTypeWireName(t.dtype) +
                                         " must be FLOAT32 or input.dtype " + DTypeWireName(input_dtype));
  }
  return KernelStatus::Ok();
}

// A per-channel tensor of shape [C].
KernelStatus CheckChannelParam(const TensorView& t, const char* field, const NormProblem& p) {
  NORMSERVE_KERNEL_RETURN_IF_ERROR(CheckParamDType(t, field, p.input.dtype));
  NORMSERVE_KERNEL_RETURN_IF_ERROR(CheckDims(t, field));
  const int64_t c = p.input.shape[1];
  if (t.shape.size() != 1 || t.shape[0] != c) {
    return KernelStatus::InvalidArgument(std::string(field) + ".shape " + ShapeString(t.shape) +
                                         " must be [C] = [" + std::to_string(c) + "] (input.shape[1])");
  }
  return CheckBytes(t, field);
}

// gamma / beta of LAYER_NORM / RMS_NORM: the last k dims of input, preceded
// by at most rank - k leading dims that are each 1 or equal to input's
// right-aligned leading dim.
KernelStatus CheckRowParam(const TensorView& t, const char* field, const NormProblem& p) {
  NORMSERVE_KERNEL_RETURN_IF_ERROR(CheckParamDType(t, field, p.input.dtype));
  if (t.shape.empty()) {
    return KernelStatus::InvalidArgument(
        std::string(field) + ".shape has rank 0; expected at least the last " +
        std::to_string(p.normalized_dims) + " dim(s) of input.shape " + ShapeString(p.input.shape));
  }
  NORMSERVE_KERNEL_RETURN_IF_ERROR(CheckDims(t, field));
  const size_t k = static_cast<size_t>(p.normalized_dims);
  const size_t in_rank = p.input.shape.size();
  const size_t rank = t.shape.size();
  bool ok = rank >= k && rank <= in_rank;
  for (size_t i = 1; ok && i <= rank; ++i) {
    const int64_t pd = t.shape[rank - i];
    const int64_t xd = p.input.shape[in_rank - i];
    // The normalized dims must match exactly; leading dims may broadcast.
    ok = i <= k ? pd == xd : (pd == 1 || pd == xd);
  }
  if (!ok) {
    return KernelStatus::InvalidArgument(
        std::string(field) + ".shape " + ShapeString(t.shape) + " does not broadcast against input.shape " +
        ShapeString(p.input.shape) + " with normalized_dims " + std::to_string(p.normalized_dims));
  }
  return CheckBytes(t, field);
}

}  // namespace

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(shape[i]);
  }
  s += ']';
  return s;
}

int64_t TensorView::NumElements() const { return Product(shape, 0, shape.size()); }

ProblemGeometry ComputeGeometry(const NormProblem& p) {
  ProblemGeometry g;
  const std::vector<int64_t>& s = p.input.shape;
  if (IsRowKind(p.kind)) {
    const size_t lead = s.size() - static_cast<size_t>(p.normalized_dims);
    g.rows = Product(s, 0, lead);
    g.cols = Product(s, lead, s.size());
    g.groups = g.rows;
    g.group_size = g.cols;
    return g;
  }
  g.n = s[0];
  g.channels = s[1];
  g.spatial = Product(s, 2, s.size());
  if (p.kind == NormKind::kBatchNorm) {
    // Every channel is its own group; [rows, cols] is the contiguous [N, C*S] view.
    g.num_groups = g.channels;
    g.groups = g.channels;
    g.group_size = g.n * g.spatial;
    g.rows = g.n;
    g.cols = g.channels * g.spatial;
    return g;
  }
  g.num_groups = p.kind == NormKind::kInstanceNorm ? g.channels : p.num_groups;
  g.groups = g.n * g.num_groups;
  g.group_size = g.channels / g.num_groups * g.spatial;
  // Group (n, g) is contiguous, so [groups, group_size] is a true 2-D view.
  g.rows = g.groups;
  g.cols = g.group_size;
  return g;
}

int64_t NumStatGroups(const NormProblem& p) { return ComputeGeometry(p).groups; }

KernelStatus ValidateProblem(const NormProblem& p, int64_t max_tensor_elements) {
  if (!ValidKind(p.kind)) {
    return KernelStatus::InvalidArgument(
        "kind has unknown value " + std::to_string(static_cast<int>(p.kind)) +
        "; expected LAYER_NORM, RMS_NORM, BATCH_NORM, GROUP_NORM or INSTANCE_NORM");
  }
  const char* kind = NormKindWireName(p.kind);
  const bool row_kind = IsRowKind(p.kind);

  // 1-2. The input tensor itself.
  if (!p.input.present()) return KernelStatus::InvalidArgument("input is required");
  if (!ValidDType(p.input.dtype)) {
    return KernelStatus::InvalidArgument("input.dtype has unknown value " +
                                         std::to_string(static_cast<int>(p.input.dtype)) +
                                         "; expected FLOAT32, FLOAT16 or BFLOAT16");
  }
  if (!ValidDType(p.output_dtype)) {
    return KernelStatus::InvalidArgument("output_dtype has unknown value " +
                                         std::to_string(static_cast<int>(p.output_dtype)) +
                                         "; expected FLOAT32, FLOAT16 or BFLOAT16");
  }
  NORMSERVE_KERNEL_RETURN_IF_ERROR(CheckDims(p.input, "input"));
  const size_t rank = p.input.shape.size();
  int64_t elements = 1;
  for (int64_t d : p.input.shape) {
    if (__builtin_mul_overflow(elements, d, &elements)) {
      return KernelStatus::InvalidArgument("input.shape " + ShapeString(p.input.shape) +
                                           " has more elements than int64 can count");
    }
  }
  if (elements > max_tensor_elements) {
    return KernelStatus::ResourceExhausted("input.shape " + ShapeString(p.input.shape) + " has " +
                                           std::to_string(elements) + " elements; the limit is " +
                                           std::to_string(max_tensor_elements));
  }

  // 3. Rank against the kind.
  if (row_kind) {
    if (p.normalized_dims < 1) {
      return KernelStatus::InvalidArgument("normalized_dims is " + std::to_string(p.normalized_dims) +
                                           "; must be >= 1");
    }
    if (rank < static_cast<size_t>(p.normalized_dims)) {
      std::string need = p.normalized_dims == 1 ? std::string(kind)
                                                : std::string(kind) + " with normalized_dims " +
                                                      std::to_string(p.normalized_dims);
      return KernelStatus::InvalidArgument("input.shape has rank " + std::to_string(rank) + "; " + need +
                                           " needs rank >= " + std::to_string(p.normalized_dims));
    }
  } else if (rank < 2) {
    return KernelStatus::InvalidArgument("input.shape has rank " + std::to_string(rank) + "; " + kind +
                                         " needs rank >= 2 ([N, C, *spatial])");
  }

  // 4. Bytes of the input.
  NORMSERVE_KERNEL_RETURN_IF_ERROR(CheckBytes(p.input, "input"));

  // 5. epsilon.
  if (!std::isfinite(p.epsilon) || p.epsilon < 0.0f) {
    return KernelStatus::InvalidArgument("epsilon is " + FloatString(p.epsilon) +
                                         "; must be finite and >= 0");
  }

  // 6. Groups.
  if (p.kind == NormKind::kGroupNorm) {
    if (p.num_groups < 1) {
      return KernelStatus::InvalidArgument("num_groups is " + std::to_string(p.num_groups) +
                                           "; GROUP_NORM needs num_groups >= 1");
    }
    const int64_t c = p.input.shape[1];
    if (c % p.num_groups != 0) {
      return KernelStatus::InvalidArgument("num_groups " + std::to_string(p.num_groups) +
                                           " does not divide C = " + std::to_string(c) + " (input.shape[1])");
    }
  }

  // 7. Scale and shift.
  for (const auto& [t, field] : {std::pair{&p.gamma, "gamma"}, std::pair{&p.beta, "beta"}}) {
    if (!t->present()) continue;
    NORMSERVE_KERNEL_RETURN_IF_ERROR(row_kind ? CheckRowParam(*t, field, p)
                                              : CheckChannelParam(*t, field, p));
  }

  // 8. Residual.
  if (p.residual.present()) {
    // Rank and dims first, so that the messages below never print a huge shape.
    NORMSERVE_KERNEL_RETURN_IF_ERROR(CheckDims(p.residual, "residual"));
    if (p.residual.dtype != p.input.dtype) {
      const std::string got =
          ValidDType(p.residual.dtype)
              ? std::string(DTypeWireName(p.residual.dtype))
              : "with unknown value " + std::to_string(static_cast<int>(p.residual.dtype));
      return KernelStatus::InvalidArgument("residual.dtype " + got + " differs from input.dtype " +
                                           DTypeWireName(p.input.dtype));
    }
    if (p.residual.shape != p.input.shape) {
      return KernelStatus::InvalidArgument("residual.shape " + ShapeString(p.residual.shape) +
                                           " differs from input.shape " + ShapeString(p.input.shape));
    }
    NORMSERVE_KERNEL_RETURN_IF_ERROR(CheckBytes(p.residual, "residual"));
  }

  // 9. Running statistics.
  for (const auto& [t, field] :
       {std::pair{&p.running_mean, "running_mean"}, std::pair{&p.running_var, "running_var"}}) {
    if (p.kind != NormKind::kBatchNorm) {
      if (t->present()) {
        return KernelStatus::InvalidArgument(
            std::string(field) + " is set; only BATCH_NORM takes running statistics, not " + kind);
      }
      continue;
    }
    if (!t->present()) {
      if (p.use_batch_stats) continue;
      return KernelStatus::InvalidArgument(std::string(field) +
                                           " is required for BATCH_NORM unless use_batch_stats is set");
    }
    NORMSERVE_KERNEL_RETURN_IF_ERROR(CheckChannelParam(*t, field, p));
  }
  return KernelStatus::Ok();
}

RowBroadcast::RowBroadcast(const std::vector<int64_t>& input_shape, const std::vector<int64_t>& param_shape,
                           int k) {
  const int lead = static_cast<int>(input_shape.size()) - k;
  const int param_lead = static_cast<int>(param_shape.size()) - k;
  if (lead <= 0 || param_lead <= 0) return;
  int64_t stride = Product(param_shape, static_cast<size_t>(param_lead), param_shape.size());
  int64_t strides[kMaxRank] = {};
  bool any = false;
  // Right-align the parameter's leading dims against the input's; a dim of 1
  // (or a missing one) broadcasts, which is stride 0.
  for (int i = lead - 1; i >= 0; --i) {
    const int j = i - (lead - param_lead);
    if (j >= 0 && param_shape[j] != 1) {
      strides[i] = stride;
      any = true;
    }
    if (j >= 0) stride *= param_shape[j];
  }
  if (!any) return;
  // Outermost stride-0 dims do not change the offset; drop them so Offset()
  // does fewer divisions.
  int first = 0;
  while (strides[first] == 0) ++first;
  rank_ = lead - first;
  for (int i = 0; i < rank_; ++i) {
    dims_[i] = input_shape[first + i];
    strides_[i] = strides[first + i];
  }
}

}  // namespace normserve::kernels
