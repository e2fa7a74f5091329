// Rounding a float64 value once, correctly, to FLOAT32 / FLOAT16 / BFLOAT16.
//
// Converting double -> float (round to nearest) -> half rounds twice and can
// land on the wrong side of a half tie: a double just above a half midpoint
// may round to the midpoint as a float and then tie to even (down). Rounding
// double -> float to *odd* instead keeps a sticky bit: when the float has at
// least two more significand bits than the target (float: 24, half: 11,
// bfloat16: 8), a second round-to-nearest-even from the round-to-odd value
// equals one correct rounding of the double. Header-only and free of state,
// so the reference and the tests share it.
#ifndef NORMSERVE_KERNELS_REFERENCE_ROUND_FROM_DOUBLE_H_
#define NORMSERVE_KERNELS_REFERENCE_ROUND_FROM_DOUBLE_H_

#include <cmath>
#include <cstdint>

#include "normserve/kernels/types.h"

namespace normserve::kernels::internal {

// double -> float rounded toward zero, with the last bit set if inexact.
// NaN stays NaN; values beyond the float range become the largest float of
// that sign with the sticky bit set (already odd), which still rounds to Inf
// in FLOAT16 and BFLOAT16.
inline float RoundToOddFloat(double v) {
  if (std::isnan(v)) return static_cast<float>(v);
  if (std::isinf(v)) return static_cast<float>(v);
  float f = static_cast<float>(v);
  if (std::isinf(f) || std::fabs(static_cast<double>(f)) > std::fabs(v)) {
    f = std::nextafter(f, 0.0f);
  }
  if (static_cast<double>(f) != v) f = BitsToFloat(FloatBits(f) | 1u);
  return f;
}

// The float value (exactly representable in t) nearest to v, ties to even.
inline float RoundDoubleToDType(double v, DType t) {
  if (t == DType::kFloat32) return static_cast<float>(v);
  return RoundToDType(RoundToOddFloat(v), t);
}

// Rounds v once to t and stores it as element i of data.
inline void StoreFromDouble(void* data, DType t, int64_t i, double v) {
  if (t == DType::kFloat32) {
    StoreFromFloat(data, t, i, static_cast<float>(v));
  } else {
    StoreFromFloat(data, t, i, RoundToOddFloat(v));
  }
}

}  // namespace normserve::kernels::internal

#endif  // NORMSERVE_KERNELS_REFERENCE_ROUND_FROM_DOUBLE_H_
