// Conversion between the wire API (normserve.v1 protobuf messages) and the
// kernels' NormProblem.
//
// PrepareRequest checks what only the wire format can get wrong (unknown or
// unset enum values, negative counts), then runs kernels::ValidateProblem,
// then allocates every output directly inside the NormalizeResponse's bytes
// fields and points the problem at them. No tensor bytes are copied: the
// problem's input views point into `request`, its outputs into `response`.
// Both messages must therefore outlive every use of the problem.
//
// Free functions, no state: safe from any thread on distinct messages.
#ifndef NORMSERVE_SERVER_CORE_REQUEST_CONVERSION_H_
#define NORMSERVE_SERVER_CORE_REQUEST_CONVERSION_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "normserve/kernels/problem.h"
#include "normserve/kernels/types.h"
#include "normserve/v1/normserve.pb.h"

namespace normserve::server {

struct PreparedRequest {
  // Ready for Backend::Run; points into the request and response messages.
  kernels::NormProblem problem;
  kernels::ProblemGeometry geometry;
  // Normalized groups (NumStatGroups): what the batcher counts as rows.
  int64_t rows = 0;
  // Tensor payload bytes read (all input tensors) and written (all outputs).
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;
};

// Validates `request` and prepares `response` (request_id, output tensors
// with their dtype, shape and zero-filled data of the final size). On error
// returns INVALID_ARGUMENT (or what ValidateProblem returns) with a message
// naming the field; `response` is then unspecified.
absl::Status PrepareRequest(const v1::NormalizeRequest& request, int64_t max_tensor_elements,
                            v1::NormalizeResponse* response, PreparedRequest* prepared);

// Wire enum <-> kernels enum. Return false for values outside the known set
// (including the *_UNSPECIFIED ones).
bool KernelDType(int wire_dtype, kernels::DType* out);
bool KernelNormKind(int wire_kind, kernels::NormKind* out);
v1::DType WireDType(kernels::DType dtype);
v1::NormKind WireNormKind(kernels::NormKind kind);

// Proto enum names for labels and messages ("FLOAT16", "LAYER_NORM").
std::string WireDTypeName(int wire_dtype);
std::string WireNormKindName(int wire_kind);

}  // namespace normserve::server

#endif  // NORMSERVE_SERVER_CORE_REQUEST_CONVERSION_H_
