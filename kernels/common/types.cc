#include "normserve/kernels/types.h"

namespace normserve::kernels {

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat16:
      return "float16";
    case DType::kBFloat16:
      return "bfloat16";
  }
  return "unknown";
}

std::string_view NormKindName(NormKind k) {
  switch (k) {
    case NormKind::kLayerNorm:
      return "layer_norm";
    case NormKind::kRmsNorm:
      return "rms_norm";
    case NormKind::kBatchNorm:
      return "batch_norm";
    case NormKind::kGroupNorm:
      return "group_norm";
    case NormKind::kInstanceNorm:
      return "instance_norm";
  }
  return "unknown";
}

const char* DTypeWireName(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "FLOAT32";
    case DType::kFloat16:
      return "FLOAT16";
    case DType::kBFloat16:
      return "BFLOAT16";
  }
  return "UNKNOWN";
}

const char* NormKindWireName(NormKind k) {
  switch (k) {
    case NormKind::kLayerNorm:
      return "LAYER_NORM";
    case NormKind::kRmsNorm:
      return "RMS_NORM";
    case NormKind::kBatchNorm:
      return "BATCH_NORM";
    case NormKind::kGroupNorm:
      return "GROUP_NORM";
    case NormKind::kInstanceNorm:
      return "INSTANCE_NORM";
  }
  return "UNKNOWN";
}

bool ParseDType(std::string_view name, DType* out) {
  for (DType t : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    if (DTypeName(t) == name) {
      *out = t;
      return true;
    }
  }
  return false;
}

bool ParseNormKind(std::string_view name, NormKind* out) {
  for (NormKind k : {NormKind::kLayerNorm, NormKind::kRmsNorm, NormKind::kBatchNorm, NormKind::kGroupNorm,
                     NormKind::kInstanceNorm}) {
    if (NormKindName(k) == name) {
      *out = k;
      return true;
    }
  }
  return false;
}

}  // namespace normserve::kernels
