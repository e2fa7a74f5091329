#include "normserve/client/histogram.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace normserve::client {
namespace {

uint64_t ExactPercentile(std::vector<uint64_t> sorted, double p) {
  const uint64_t n = sorted.size();
  uint64_t rank = static_cast<uint64_t>(std::ceil(p * static_cast<double>(n) / 100.0 - 1e-9));
  rank = std::clamp<uint64_t>(rank, 1, n);
  return sorted[rank - 1];
}

void ExpectWithinOnePercent(const std::vector<uint64_t>& values) {
  LatencyHistogram h;
  for (uint64_t v : values) h.Record(v);
  std::vector<uint64_t> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  for (double p : {0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    const double exact = static_cast<double>(ExactPercentile(sorted, p));
    const double got = static_cast<double>(h.Percentile(p));
    EXPECT_LE(std::abs(got - exact), 0.01 * exact) << "p" << p << " exact " << exact << " got " << got;
  }
  EXPECT_EQ(h.max(), sorted.back());
  EXPECT_EQ(h.min(), sorted.front());
  EXPECT_EQ(h.count(), values.size());
}

TEST(HistogramTest, PercentilesWithinOnePercentOnLogNormalLatencies) {
  std::mt19937_64 rng(1);
  std::lognormal_distribution<double> dist(std::log(200e3), 1.0);  // ~200 us median, in ns
  std::vector<uint64_t> values(200000);
  for (auto& v : values) v = static_cast<uint64_t>(dist(rng));
  ExpectWithinOnePercent(values);
}

TEST(HistogramTest, PercentilesWithinOnePercentOnUniformWideRange) {
  std::mt19937_64 rng(2);
  std::uniform_int_distribution<uint64_t> dist(1, uint64_t{1} << 40);
  std::vector<uint64_t> values(50000);
  for (auto& v : values) v = dist(rng);
  ExpectWithinOnePercent(values);
}

TEST(HistogramTest, SmallValuesAreExact) {
  LatencyHistogram h;
  for (uint64_t v = 0; v < 256; ++v) h.Record(v);
  EXPECT_EQ(h.Percentile(50), 127u);
  EXPECT_EQ(h.Percentile(100), 255u);
  EXPECT_EQ(h.Percentile(0), 0u);
}

TEST(HistogramTest, BucketsTileTheRange) {
  // Every bucket starts where the previous one ended and is at most 1/128 of
  // its lower bound wide.
  for (int i = 1; i < LatencyHistogram::NumBuckets() - 1; ++i) {
    ASSERT_EQ(LatencyHistogram::BucketLower(i),
              LatencyHistogram::BucketLower(i - 1) + LatencyHistogram::BucketWidth(i - 1))
        << i;
    if (LatencyHistogram::BucketLower(i) >= 256) {
      ASSERT_LE(LatencyHistogram::BucketWidth(i) * 128, LatencyHistogram::BucketLower(i)) << i;
    }
  }
  for (uint64_t v : {uint64_t{0}, uint64_t{255}, uint64_t{256}, uint64_t{257}, uint64_t{1000003},
                     uint64_t{1} << 62, ~uint64_t{0}}) {
    const int i = LatencyHistogram::BucketIndex(v);
    ASSERT_LT(i, LatencyHistogram::NumBuckets());
    EXPECT_GE(v, LatencyHistogram::BucketLower(i));
    EXPECT_LE(v - LatencyHistogram::BucketLower(i), LatencyHistogram::BucketWidth(i) - 1);
  }
}

TEST(HistogramTest, MergeEqualsRecordingEverything) {
  LatencyHistogram a, b, all;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t v = rng() % 10000000;
    (i % 2 ? a : b).Record(v);
    all.Record(v);
  }
  a.Merge(b);
  for (double p : {50.0, 99.0, 99.9}) EXPECT_EQ(a.Percentile(p), all.Percentile(p));
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_DOUBLE_EQ(a.Mean(), all.Mean());
}

TEST(HistogramTest, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.Percentile(99), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_TRUE(h.NonEmptyBuckets().empty());
}

}  // namespace
}  // namespace normserve::client
