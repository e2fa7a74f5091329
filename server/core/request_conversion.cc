#include "server/core/request_conversion.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/status_util.h"

namespace normserve::server {
namespace {

constexpr char kDTypeChoices[] = "expected FLOAT32, FLOAT16 or BFLOAT16";

// Checks a present tensor's dtype and builds a view into its bytes (no copy).
absl::Status ViewTensor(const v1::Tensor& tensor, const char* field, kernels::TensorView* view) {
  const int wire = static_cast<int>(tensor.dtype());
  if (wire == v1::DTYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".dtype is unset; ", kDTypeChoices));
  }
  if (!KernelDType(wire, &view->dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".dtype has unknown value ", wire, "; ", kDTypeChoices));
  }
  view->shape.assign(tensor.shape().begin(), tensor.shape().end());
  // std::string::data() is never null, so a present tensor is present() even
  // with no bytes; ValidateProblem then reports the size mismatch.
  view->data = tensor.data().data();
  view->byte_size = tensor.data().size();
  return absl::OkStatus();
}

// Resizes `tensor` to hold `elements` values of `dtype` and returns its bytes.
// The resize zero-fills once; the kernel then writes the final values in place.
void* AllocateTensor(kernels::DType dtype, std::vector<int64_t> shape, int64_t elements, v1::Tensor* tensor,
                     uint64_t* bytes) {
  tensor->set_dtype(WireDType(dtype));
  tensor->mutable_shape()->Assign(shape.begin(), shape.end());
  const size_t size = static_cast<size_t>(elements) * kernels::DTypeSize(dtype);
  std::string* data = tensor->mutable_data();
  data->resize(size);
  *bytes += size;
  return data->data();
}

// Shape of the per-group statistics (SEMANTICS.md / the .proto).
std::vector<int64_t> StatsShape(const kernels::NormProblem& p, const kernels::ProblemGeometry& g) {
  switch (p.kind) {
    case kernels::NormKind::kLayerNorm:
    case kernels::NormKind::kRmsNorm: {
      const auto& s = p.input.shape;
      std::vector<int64_t> shape(s.begin(), s.end() - p.normalized_dims);
      // A single group (rank == normalized_dims) still gets a rank-1 tensor.
      if (shape.empty()) shape.push_back(1);
      return shape;
    }
    case kernels::NormKind::kGroupNorm:
    case kernels::NormKind::kInstanceNorm:
      return {g.n, g.num_groups};
    case kernels::NormKind::kBatchNorm:
      return {g.channels};
  }
  return {g.groups};
}

}  // namespace

bool KernelDType(int wire_dtype, kernels::DType* out) {
  switch (wire_dtype) {
    case v1::FLOAT32:
      *out = kernels::DType::kFloat32;
      return true;
    case v1::FLOAT16:
      *out = kernels::DType::kFloat16;
      return true;
    case v1::BFLOAT16:
      *out = kernels::DType::kBFloat16;
      return true;
    default:
      return false;
  }
}

bool KernelNormKind(int wire_kind, kernels::NormKind* out) {
  switch (wire_kind) {
    case v1::LAYER_NORM:
      *out = kernels::NormKind::kLayerNorm;
      return true;
    case v1::RMS_NORM:
      *out = kernels::NormKind::kRmsNorm;
      return true;
    case v1::BATCH_NORM:
      *out = kernels::NormKind::kBatchNorm;
      return true;
    case v1::GROUP_NORM:
      *out = kernels::NormKind::kGroupNorm;
      return true;
    case v1::INSTANCE_NORM:
      *out = kernels::NormKind::kInstanceNorm;
      return true;
    default:
      return false;
  }
}

v1::DType WireDType(kernels::DType dtype) {
  switch (dtype) {
    case kernels::DType::kFloat32:
      return v1::FLOAT32;
    case kernels::DType::kFloat16:
      return v1::FLOAT16;
    case kernels::DType::kBFloat16:
      return v1::BFLOAT16;
  }
  return v1::DTYPE_UNSPECIFIED;
}

v1::NormKind WireNormKind(kernels::NormKind kind) {
  switch (kind) {
    case kernels::NormKind::kLayerNorm:
      return v1::LAYER_NORM;
    case kernels::NormKind::kRmsNorm:
      return v1::RMS_NORM;
    case kernels::NormKind::kBatchNorm:
      return v1::BATCH_NORM;
    case kernels::NormKind::kGroupNorm:
      return v1::GROUP_NORM;
    case kernels::NormKind::kInstanceNorm:
      return v1::INSTANCE_NORM;
  }
  return v1::NORM_KIND_UNSPECIFIED;
}

std::string WireDTypeName(int wire_dtype) {
  if (!v1::DType_IsValid(wire_dtype)) return "UNKNOWN";
  return v1::DType_Name(static_cast<v1::DType>(wire_dtype));
}

std::string WireNormKindName(int wire_kind) {
  if (!v1::NormKind_IsValid(wire_kind)) return "UNKNOWN";
  return v1::NormKind_Name(static_cast<v1::NormKind>(wire_kind));
}

absl::Status PrepareRequest(const v1::NormalizeRequest& request, int64_t max_tensor_elements,
                            v1::NormalizeResponse* response, PreparedRequest* prepared) {
  kernels::NormProblem& p = prepared->problem;
  p = kernels::NormProblem();

  const int wire_kind = static_cast<int>(request.kind());
  if (wire_kind == v1::NORM_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "kind is unset; expected LAYER_NORM, RMS_NORM, BATCH_NORM, GROUP_NORM or INSTANCE_NORM");
  }
  if (!KernelNormKind(wire_kind, &p.kind)) {
    return absl::InvalidArgumentError(absl::StrCat("kind has unknown value ", wire_kind,
                                                   "; expected LAYER_NORM, RMS_NORM, BATCH_NORM, "
                                                   "GROUP_NORM or INSTANCE_NORM"));
  }
  const int wire_backend = static_cast<int>(request.backend());
  if (!v1::BackendPreference_IsValid(wire_backend)) {
    return absl::InvalidArgumentError(absl::StrCat("backend has unknown value ", wire_backend,
                                                   "; expected BACKEND_AUTO, BACKEND_CPU or BACKEND_CUDA"));
  }
  if (!request.has_input()) return absl::InvalidArgumentError("input is required");
  RETURN_IF_ERROR(ViewTensor(request.input(), "input", &p.input));
  if (request.has_gamma()) RETURN_IF_ERROR(ViewTensor(request.gamma(), "gamma", &p.gamma));
  if (request.has_beta()) RETURN_IF_ERROR(ViewTensor(request.beta(), "beta", &p.beta));
  if (request.has_residual()) RETURN_IF_ERROR(ViewTensor(request.residual(), "residual", &p.residual));
  if (request.has_running_mean()) {
    RETURN_IF_ERROR(ViewTensor(request.running_mean(), "running_mean", &p.running_mean));
  }
  if (request.has_running_var()) {
    RETURN_IF_ERROR(ViewTensor(request.running_var(), "running_var", &p.running_var));
  }

  const int wire_out = static_cast<int>(request.output_dtype());
  if (wire_out == v1::DTYPE_UNSPECIFIED) {
    p.output_dtype = p.input.dtype;
  } else if (!KernelDType(wire_out, &p.output_dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("output_dtype has unknown value ", wire_out, "; expected FLOAT32, FLOAT16 or BFLOAT16"));
  }

  if (request.normalized_dims() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("normalized_dims is ", request.normalized_dims(), "; must be >= 0 (0 means 1)"));
  }
  p.normalized_dims = request.normalized_dims() == 0 ? 1 : request.normalized_dims();
  if (p.kind == kernels::NormKind::kGroupNorm) {
    if (request.num_groups() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("num_groups is ", request.num_groups(), "; GROUP_NORM needs num_groups >= 1"));
    }
    p.num_groups = request.num_groups();
  }
  p.epsilon = request.has_epsilon() ? request.epsilon() : kernels::DefaultEpsilon(p.kind);
  p.use_batch_stats = request.use_batch_stats();
  p.unit_offset = request.unit_offset();

  RETURN_IF_ERROR(FromKernelStatus(kernels::ValidateProblem(p, max_tensor_elements)));

  // Outputs go straight into the response's bytes fields.
  const kernels::ProblemGeometry g = kernels::ComputeGeometry(p);
  prepared->geometry = g;
  prepared->rows = g.groups;
  prepared->input_bytes = 0;
  for (const kernels::TensorView* t :
       {&p.input, &p.gamma, &p.beta, &p.residual, &p.running_mean, &p.running_var}) {
    if (t->present()) prepared->input_bytes += t->byte_size;
  }
  prepared->output_bytes = 0;
  response->Clear();
  response->set_request_id(request.request_id());
  const int64_t elements = p.input.NumElements();
  p.out.output = AllocateTensor(p.output_dtype, p.input.shape, elements, response->mutable_output(),
                                &prepared->output_bytes);
  if (p.residual.present()) {
    p.out.residual_out = AllocateTensor(p.input.dtype, p.input.shape, elements,
                                        response->mutable_residual_out(), &prepared->output_bytes);
  }
  const bool batch_stats = p.kind == kernels::NormKind::kBatchNorm && p.use_batch_stats;
  const bool want_mean = (request.return_stats() || batch_stats) && p.kind != kernels::NormKind::kRmsNorm;
  const bool want_rstd = request.return_stats();
  if (want_mean || want_rstd || batch_stats) {
    const int64_t stat_groups = kernels::NumStatGroups(p);
    const std::vector<int64_t> shape = StatsShape(p, g);
    if (want_mean) {
      p.out.mean = static_cast<float*>(AllocateTensor(kernels::DType::kFloat32, shape, stat_groups,
                                                      response->mutable_mean(), &prepared->output_bytes));
    }
    if (want_rstd) {
      p.out.rstd = static_cast<float*>(AllocateTensor(kernels::DType::kFloat32, shape, stat_groups,
                                                      response->mutable_rstd(), &prepared->output_bytes));
    }
    if (batch_stats) {
      p.out.variance =
          static_cast<float*>(AllocateTensor(kernels::DType::kFloat32, shape, stat_groups,
                                             response->mutable_variance(), &prepared->output_bytes));
    }
  }
  return absl::OkStatus();
}

}  // namespace normserve::server
