#include "normserve/client/tensor_util.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace normserve::client {

namespace kn = ::normserve::kernels;

int64_t NumElements(const v1::Tensor& t) {
  int64_t n = 1;
  for (int64_t d : t.shape()) n *= d;
  return n;
}

absl::StatusOr<kn::DType> ToKernelDType(v1::DType t) {
  switch (t) {
    case v1::FLOAT32:
      return kn::DType::kFloat32;
    case v1::FLOAT16:
      return kn::DType::kFloat16;
    case v1::BFLOAT16:
      return kn::DType::kBFloat16;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unsupported dtype ", static_cast<int>(t)));
  }
}

v1::DType ToWireDType(kn::DType t) {
  switch (t) {
    case kn::DType::kFloat32:
      return v1::FLOAT32;
    case kn::DType::kFloat16:
      return v1::FLOAT16;
    case kn::DType::kBFloat16:
      return v1::BFLOAT16;
  }
  return v1::DTYPE_UNSPECIFIED;
}

absl::StatusOr<kn::NormKind> ToKernelKind(v1::NormKind k) {
  switch (k) {
    case v1::LAYER_NORM:
      return kn::NormKind::kLayerNorm;
    case v1::RMS_NORM:
      return kn::NormKind::kRmsNorm;
    case v1::BATCH_NORM:
      return kn::NormKind::kBatchNorm;
    case v1::GROUP_NORM:
      return kn::NormKind::kGroupNorm;
    case v1::INSTANCE_NORM:
      return kn::NormKind::kInstanceNorm;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unsupported kind ", static_cast<int>(k)));
  }
}

v1::NormKind ToWireKind(kn::NormKind k) {
  switch (k) {
    case kn::NormKind::kLayerNorm:
      return v1::LAYER_NORM;
    case kn::NormKind::kRmsNorm:
      return v1::RMS_NORM;
    case kn::NormKind::kBatchNorm:
      return v1::BATCH_NORM;
    case kn::NormKind::kGroupNorm:
      return v1::GROUP_NORM;
    case kn::NormKind::kInstanceNorm:
      return v1::INSTANCE_NORM;
  }
  return v1::NORM_KIND_UNSPECIFIED;
}

absl::StatusOr<v1::DType> ParseWireDType(absl::string_view name) {
  kn::DType t;
  if (!kn::ParseDType(std::string_view(name.data(), name.size()), &t)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown dtype '", name, "': expected float32, float16 or bfloat16"));
  }
  return ToWireDType(t);
}

absl::StatusOr<v1::NormKind> ParseWireKind(absl::string_view name) {
  kn::NormKind k;
  if (!kn::ParseNormKind(std::string_view(name.data(), name.size()), &k)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown kind '", name, "': expected layer_norm, rms_norm, batch_norm, group_norm or instance_norm"));
  }
  return ToWireKind(k);
}

std::string WireDTypeName(v1::DType t) {
  auto k = ToKernelDType(t);
  return k.ok() ? std::string(kn::DTypeName(*k)) : "unspecified";
}

std::string WireKindName(v1::NormKind k) {
  auto kk = ToKernelKind(k);
  return kk.ok() ? std::string(kn::NormKindName(*kk)) : "unspecified";
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

v1::Tensor MakeTensor(absl::Span<const float> values, absl::Span<const int64_t> shape, v1::DType dtype) {
  v1::Tensor t;
  t.set_dtype(dtype);
  for (int64_t d : shape) t.add_shape(d);
  const kn::DType kt = ToKernelDType(dtype).value();
  std::string* data = t.mutable_data();
  data->resize(values.size() * kn::DTypeSize(kt));
  for (size_t i = 0; i < values.size(); ++i) {
    kn::StoreFromFloat(data->data(), kt, static_cast<int64_t>(i), values[i]);
  }
  return t;
}

v1::Tensor MakeTensorFromBytes(absl::string_view bytes, absl::Span<const int64_t> shape, v1::DType dtype) {
  v1::Tensor t;
  t.set_dtype(dtype);
  for (int64_t d : shape) t.add_shape(d);
  t.set_data(std::string(bytes));
  return t;
}

absl::StatusOr<std::vector<float>> TensorToFloats(const v1::Tensor& t) {
  auto kt = ToKernelDType(t.dtype());
  if (!kt.ok()) return kt.status();
  const int64_t n = NumElements(t);
  const uint64_t need = static_cast<uint64_t>(n) * kn::DTypeSize(*kt);
  if (t.data().size() != need) {
    return absl::InvalidArgumentError(absl::StrCat("tensor data has ", t.data().size(), " bytes; shape ",
                                                   ShapeString(t.shape()), " ",
                                                   std::string(kn::DTypeName(*kt)), " needs ", need));
  }
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = kn::LoadAsFloat(t.data().data(), *kt, i);
  return out;
}

}  // namespace normserve::client
