// Helpers that move values between float vectors and wire Tensors, and map
// between the wire enums (normserve.v1) and the kernels' enums and names.
//
// Conversions use normserve/kernels/types.h, so a value rounded here is
// rounded exactly as the server rounds it (once, to nearest even, NaN kept).
// Free functions, no state, safe from any thread.
#ifndef NORMSERVE_CLIENT_TENSOR_UTIL_H_
#define NORMSERVE_CLIENT_TENSOR_UTIL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "normserve/kernels/types.h"
#include "normserve/v1/normserve.pb.h"

namespace normserve::client {

// Builds a tensor of `dtype` from float values, each rounded once to dtype.
// REQUIRES: values.size() == product(shape); dtype is not DTYPE_UNSPECIFIED.
v1::Tensor MakeTensor(absl::Span<const float> values, absl::Span<const int64_t> shape, v1::DType dtype);

// Builds a tensor from raw element bytes (copied as they are).
v1::Tensor MakeTensorFromBytes(absl::string_view bytes, absl::Span<const int64_t> shape, v1::DType dtype);

// Reads every element of `t` as float. INVALID_ARGUMENT when the dtype is
// unspecified or the byte length does not match the shape.
absl::StatusOr<std::vector<float>> TensorToFloats(const v1::Tensor& t);

// Product of the shape (1 for rank 0).
int64_t NumElements(const v1::Tensor& t);

// Enum mappings. The wire's UNSPECIFIED values have no kernel counterpart:
// INVALID_ARGUMENT.
absl::StatusOr<kernels::DType> ToKernelDType(v1::DType t);
v1::DType ToWireDType(kernels::DType t);
absl::StatusOr<kernels::NormKind> ToKernelKind(v1::NormKind k);
v1::NormKind ToWireKind(kernels::NormKind k);

// Parse "float32" / "float16" / "bfloat16" and "layer_norm" / "rms_norm" /
// "batch_norm" / "group_norm" / "instance_norm". INVALID_ARGUMENT listing the
// accepted names otherwise.
absl::StatusOr<v1::DType> ParseWireDType(absl::string_view name);
absl::StatusOr<v1::NormKind> ParseWireKind(absl::string_view name);
// Lower-case names of the wire enums ("unspecified" for 0).
std::string WireDTypeName(v1::DType t);
std::string WireKindName(v1::NormKind k);

// "[2,3]" for logs and messages.
std::string ShapeString(absl::Span<const int64_t> shape);

}  // namespace normserve::client

#endif  // NORMSERVE_CLIENT_TENSOR_UTIL_H_
