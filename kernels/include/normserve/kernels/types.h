// Element types, normalization kinds and the scalar conversions every backend
// shares.
//
// Everything here is plain data and free functions: no allocation, no state,
// safe from any thread. The conversions to FLOAT16 and BFLOAT16 round to
// nearest even and keep NaN a NaN, as docs/SEMANTICS.md requires; the CUDA
// backend uses its own intrinsics and must agree with these bit for bit.
#ifndef NORMSERVE_KERNELS_TYPES_H_
#define NORMSERVE_KERNELS_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace normserve::kernels {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

enum class NormKind : int {
  kLayerNorm = 0,
  kRmsNorm = 1,
  kBatchNorm = 2,
  kGroupNorm = 3,
  kInstanceNorm = 4,
};

inline constexpr size_t DTypeSize(DType t) { return t == DType::kFloat32 ? 4 : 2; }

// Names as used in JSON, flags and metrics labels: "float32", "float16", "bfloat16".
std::string_view DTypeName(DType t);
// "layer_norm", "rms_norm", "batch_norm", "group_norm", "instance_norm".
std::string_view NormKindName(NormKind k);
// Names as in the .proto ("FLOAT32", "LAYER_NORM", ...), for messages that go
// back to API clients.
const char* DTypeWireName(DType t);
const char* NormKindWireName(NormKind k);
// Inverse of DTypeName / NormKindName; return false for an unknown name.
bool ParseDType(std::string_view name, DType* out);
bool ParseNormKind(std::string_view name, NormKind* out);

// Default epsilon when a request leaves it unset (SEMANTICS.md).
inline constexpr float DefaultEpsilon(NormKind k) { return k == NormKind::kRmsNorm ? 1e-6f : 1e-5f; }

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// binary16 -> binary32, exact.
inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return BitsToFloat(sign | 0x7f800000 | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return BitsToFloat(sign);
    // Subnormal: value = mant * 2^-24, exact in binary32.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return BitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
}

// binary32 -> binary16, round to nearest even; overflow goes to Inf, NaN stays NaN.
inline uint16_t FloatToHalfBits(float f) {
  const uint32_t x = FloatBits(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  uint32_t abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) {
    if (abs == 0x7f800000) return static_cast<uint16_t>(sign | 0x7c00);
    return static_cast<uint16_t>(sign | 0x7e00 | ((abs >> 13) & 0x3ff));
  }
  // 65520 and above round to Inf (65504 is the largest finite half).
  if (abs >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);
  if (abs < 0x38800000) {
    // Below 2^-14: adding 0.5f rounds (to nearest even) onto the 2^-24 grid of
    // half subnormals; the low bits are then the half's mantissa.
    const float r = BitsToFloat(abs) + 0.5f;
    return static_cast<uint16_t>(sign | (FloatBits(r) - 0x3f000000u));
  }
  const uint32_t odd = (abs >> 13) & 1;
  abs += 0xc8000fffu + odd;  // Rebias the exponent (-112) and round to nearest even.
  return static_cast<uint16_t>(sign | (abs >> 13));
}

inline float BFloat16BitsToFloat(uint16_t b) { return BitsToFloat(static_cast<uint32_t>(b) << 16); }

// binary32 -> bfloat16, round to nearest even; NaN stays (quiet) NaN.
inline uint16_t FloatToBFloat16Bits(float f) {
  uint32_t x = FloatBits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);
  x += 0x7fffu + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

// Reads element i of a buffer of type t as float.
inline float LoadAsFloat(const void* data, DType t, int64_t i) {
  switch (t) {
    case DType::kFloat32:
      return static_cast<const float*>(data)[i];
    case DType::kFloat16:
      return HalfBitsToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kBFloat16:
      return BFloat16BitsToFloat(static_cast<const uint16_t*>(data)[i]);
  }
  return 0.0f;
}

// Rounds v once to type t and stores it as element i.
inline void StoreFromFloat(void* data, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kFloat32:
      static_cast<float*>(data)[i] = v;
      return;
    case DType::kFloat16:
      static_cast<uint16_t*>(data)[i] = FloatToHalfBits(v);
      return;
    case DType::kBFloat16:
      static_cast<uint16_t*>(data)[i] = FloatToBFloat16Bits(v);
      return;
  }
}

// Rounds a float to the nearest value representable in t (as a float).
inline float RoundToDType(float v, DType t) {
  switch (t) {
    case DType::kFloat32:
      return v;
    case DType::kFloat16:
      return HalfBitsToFloat(FloatToHalfBits(v));
    case DType::kBFloat16:
      return BFloat16BitsToFloat(FloatToBFloat16Bits(v));
  }
  return v;
}

}  // namespace normserve::kernels

#endif  // NORMSERVE_KERNELS_TYPES_H_
