// FLOAT16 / BFLOAT16 conversions (types.h) and the reference's one-step
// rounding from double (round_from_double.h): round to nearest even
// including ties, subnormals, overflow to Inf, NaN kept NaN.
#include <cmath>
#include <cstdint>
#include <limits>

#include "gtest/gtest.h"
#include "normserve/kernels/types.h"
#include "round_from_double.h"

namespace normserve::kernels {
namespace {

bool HalfIsNaN(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }
bool BFloat16IsNaN(uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0; }

// The value of a binary16 pattern, decoded independently of types.h.
double HalfValue(uint16_t h) {
  const int sign = (h & 0x8000) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0x1f) return mant ? std::numeric_limits<double>::quiet_NaN() : sign * HUGE_VAL;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

TEST(HalfConversion, DecodesEveryPatternExactly) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const double want = HalfValue(static_cast<uint16_t>(h));
    const float got = HalfBitsToFloat(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << std::hex << h;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << std::hex << h;
      EXPECT_EQ(std::signbit(got), (h & 0x8000) != 0) << std::hex << h;
    }
  }
}

TEST(HalfConversion, RoundTripsEveryPattern) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t back = FloatToHalfBits(HalfBitsToFloat(static_cast<uint16_t>(h)));
    if (HalfIsNaN(static_cast<uint16_t>(h))) {
      EXPECT_TRUE(HalfIsNaN(back)) << std::hex << h;
      EXPECT_EQ(back & 0x8000, h & 0x8000) << std::hex << h;
    } else {
      EXPECT_EQ(back, h) << std::hex << h;
    }
  }
}

// Every midpoint between neighbouring finite halves (subnormals included)
// rounds to the even one; one float ulp either side rounds to the nearer one.
TEST(HalfConversion, TiesGoToEvenAndNeighboursToNearest) {
  for (uint16_t lo = 0; lo < 0x7bff; ++lo) {
    const uint16_t hi = lo + 1;
    const float mid = static_cast<float>((HalfValue(lo) + HalfValue(hi)) / 2);  // exact: 12 bits
    const uint16_t even = (lo & 1) ? hi : lo;
    for (float sign : {1.0f, -1.0f}) {
      const uint16_t s = sign < 0 ? 0x8000 : 0;
      EXPECT_EQ(FloatToHalfBits(sign * mid), even | s) << std::hex << lo;
      EXPECT_EQ(FloatToHalfBits(sign * std::nextafter(mid, 0.0f)), lo | s) << std::hex << lo;
      EXPECT_EQ(FloatToHalfBits(sign * std::nextafter(mid, HUGE_VALF)), hi | s) << std::hex << lo;
    }
  }
}

TEST(HalfConversion, SubnormalsRoundOnTheTwoToMinus24Grid) {
  const float tiny = std::ldexp(1.0f, -24);
  EXPECT_EQ(FloatToHalfBits(tiny), 0x0001);
  EXPECT_EQ(FloatToHalfBits(tiny / 2), 0x0000);     // tie with 0: even
  EXPECT_EQ(FloatToHalfBits(-tiny / 2), 0x8000);    // keeps the sign
  EXPECT_EQ(FloatToHalfBits(tiny * 1.5f), 0x0002);  // tie between 1 and 2: even
  EXPECT_EQ(FloatToHalfBits(tiny * 2.5f), 0x0002);  // tie between 2 and 3: even
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -14)), 0x0400);     // smallest normal
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1023.5f, -24)), 0x0400);  // tie up into the normals
  EXPECT_EQ(FloatToHalfBits(std::numeric_limits<float>::denorm_min()), 0x0000);
}

TEST(HalfConversion, OverflowGoesToInfinity) {
  EXPECT_EQ(FloatToHalfBits(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalfBits(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(FloatToHalfBits(65520.0f), 0x7c00);  // the tie above the largest half
  EXPECT_EQ(FloatToHalfBits(1e10f), 0x7c00);
  EXPECT_EQ(FloatToHalfBits(-1e10f), 0xfc00);
  EXPECT_EQ(FloatToHalfBits(HUGE_VALF), 0x7c00);
  EXPECT_EQ(FloatToHalfBits(-HUGE_VALF), 0xfc00);
}

TEST(HalfConversion, NaNStaysNaN) {
  EXPECT_TRUE(HalfIsNaN(FloatToHalfBits(std::numeric_limits<float>::quiet_NaN())));
  // A NaN whose payload sits only in bits that binary16 drops.
  EXPECT_TRUE(HalfIsNaN(FloatToHalfBits(BitsToFloat(0x7f800001u))));
  EXPECT_TRUE(HalfIsNaN(FloatToHalfBits(BitsToFloat(0xff800001u))));
  EXPECT_EQ(FloatToHalfBits(BitsToFloat(0xff800001u)) & 0x8000, 0x8000);
}

TEST(BFloat16Conversion, RoundTripsEveryPattern) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = BFloat16BitsToFloat(static_cast<uint16_t>(b));
    EXPECT_EQ(FloatBits(f), b << 16);
    const uint16_t back = FloatToBFloat16Bits(f);
    if (BFloat16IsNaN(static_cast<uint16_t>(b))) {
      EXPECT_TRUE(BFloat16IsNaN(back)) << std::hex << b;
    } else {
      EXPECT_EQ(back, b) << std::hex << b;
    }
  }
}

TEST(BFloat16Conversion, TiesGoToEvenAndNeighboursToNearest) {
  for (uint32_t lo = 0; lo < 0x7f7f; ++lo) {
    const uint32_t mid = (lo << 16) | 0x8000;
    const uint16_t even = (lo & 1) ? static_cast<uint16_t>(lo + 1) : static_cast<uint16_t>(lo);
    ASSERT_EQ(FloatToBFloat16Bits(BitsToFloat(mid)), even) << std::hex << lo;
    ASSERT_EQ(FloatToBFloat16Bits(BitsToFloat(mid - 1)), lo) << std::hex << lo;
    ASSERT_EQ(FloatToBFloat16Bits(BitsToFloat(mid + 1)), lo + 1) << std::hex << lo;
    ASSERT_EQ(FloatToBFloat16Bits(BitsToFloat(mid | 0x80000000u)), even | 0x8000) << std::hex << lo;
  }
}

TEST(BFloat16Conversion, OverflowSubnormalsAndNaN) {
  EXPECT_EQ(FloatToBFloat16Bits(std::numeric_limits<float>::max()), 0x7f80);  // above the last tie
  EXPECT_EQ(FloatToBFloat16Bits(BitsToFloat(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(FloatToBFloat16Bits(-HUGE_VALF), 0xff80);
  EXPECT_EQ(FloatToBFloat16Bits(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(FloatToBFloat16Bits(BitsToFloat(0x00018000u)), 0x0002);  // subnormal tie, to even
  EXPECT_TRUE(BFloat16IsNaN(FloatToBFloat16Bits(BitsToFloat(0x7f800001u))));
  EXPECT_TRUE(BFloat16IsNaN(FloatToBFloat16Bits(std::numeric_limits<float>::quiet_NaN())));
}

// A double just above a FLOAT16 midpoint: double -> float -> half lands on the
// midpoint and ties to even (down); the reference's one-step rounding must not.
TEST(RoundFromDouble, AvoidsDoubleRoundingAtHalfTies) {
  int naive_wrong = 0;
  for (uint16_t lo = 0x3c00; lo < 0x3c40; ++lo) {
    const double mid = (HalfValue(lo) + HalfValue(lo + 1)) / 2;
    const double above = mid + std::ldexp(mid, -40);
    const double below = mid - std::ldexp(mid, -40);
    EXPECT_EQ(FloatToHalfBits(internal::RoundDoubleToDType(above, DType::kFloat16)), lo + 1)
        << std::hex << lo;
    EXPECT_EQ(FloatToHalfBits(internal::RoundDoubleToDType(below, DType::kFloat16)), lo) << std::hex << lo;
    EXPECT_EQ(FloatToHalfBits(internal::RoundDoubleToDType(mid, DType::kFloat16)), (lo & 1) ? lo + 1 : lo);
    uint16_t stored = 0;
    internal::StoreFromDouble(&stored, DType::kFloat16, 0, above);
    EXPECT_EQ(stored, lo + 1);
    if (FloatToHalfBits(static_cast<float>(above)) != lo + 1) ++naive_wrong;
  }
  // Half of the ties are even-below, where the naive path goes wrong.
  EXPECT_EQ(naive_wrong, 32);
}

TEST(RoundFromDouble, AvoidsDoubleRoundingAtBFloat16Ties) {
  for (uint32_t lo = 0x3f80; lo < 0x3fc0; ++lo) {
    const double mid = static_cast<double>(BitsToFloat((lo << 16) | 0x8000));
    const double above = mid + std::ldexp(mid, -40);
    uint16_t stored = 0;
    internal::StoreFromDouble(&stored, DType::kBFloat16, 0, above);
    EXPECT_EQ(stored, lo + 1) << std::hex << lo;
    internal::StoreFromDouble(&stored, DType::kBFloat16, 0, -above);
    EXPECT_EQ(stored, (lo + 1) | 0x8000) << std::hex << lo;
  }
}

TEST(RoundFromDouble, EdgesOfTheRange) {
  EXPECT_EQ(FloatToHalfBits(internal::RoundDoubleToDType(1e300, DType::kFloat16)), 0x7c00);
  EXPECT_EQ(FloatToBFloat16Bits(internal::RoundDoubleToDType(-1e300, DType::kBFloat16)), 0xff80);
  EXPECT_EQ(internal::RoundDoubleToDType(1e300, DType::kFloat32), HUGE_VALF);
  EXPECT_EQ(FloatToHalfBits(internal::RoundDoubleToDType(1e-300, DType::kFloat16)), 0x0000);
  EXPECT_EQ(FloatToHalfBits(internal::RoundDoubleToDType(-1e-300, DType::kFloat16)), 0x8000);
  // Just above half of the smallest subnormal: rounds up, not to the tie's even 0.
  EXPECT_EQ(
      FloatToHalfBits(internal::RoundDoubleToDType(std::ldexp(1.0, -25) * (1 + 1e-12), DType::kFloat16)),
      0x0001);
  EXPECT_TRUE(std::isnan(internal::RoundDoubleToDType(std::nan(""), DType::kFloat16)));
  EXPECT_EQ(internal::RoundDoubleToDType(-HUGE_VAL, DType::kBFloat16), -HUGE_VALF);
  EXPECT_EQ(internal::RoundDoubleToDType(0.1, DType::kFloat32), 0.1f);
}

}  // namespace
}  // namespace normserve::kernels
