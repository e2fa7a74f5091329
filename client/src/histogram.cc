#include "normserve/client/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace normserve::client {
namespace {

// 2^7 linear buckets per power of two: a bucket is at most 1/128 of its
// lower bound wide.
constexpr int kSubBits = 7;
constexpr uint64_t kSub = uint64_t{1} << kSubBits;
// Values below 2 * kSub are their own bucket.
constexpr uint64_t kLinearLimit = 2 * kSub;
// Shifts run from 1 (values in [256, 512)) to 56 (values up to 2^64).
constexpr int kNumBuckets = static_cast<int>(kLinearLimit + (64 - kSubBits - 1 - 1 + 1) * kSub);

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kNumBuckets, 0) {}

int LatencyHistogram::NumBuckets() { return kNumBuckets; }

int LatencyHistogram::BucketIndex(uint64_t v) {
  if (v < kLinearLimit) return static_cast<int>(v);
  const int msb = 63 - std::countl_zero(v);
  const int shift = msb - kSubBits;
  const uint64_t mantissa = v >> shift;  // in [kSub, 2 * kSub)
  return static_cast<int>(kLinearLimit + (shift - 1) * kSub + (mantissa - kSub));
}

uint64_t LatencyHistogram::BucketLower(int index) {
  const uint64_t i = static_cast<uint64_t>(index);
  if (i < kLinearLimit) return i;
  const int shift = static_cast<int>((i - kLinearLimit) / kSub) + 1;
  const uint64_t mantissa = kSub + (i - kLinearLimit) % kSub;
  return mantissa << shift;
}

uint64_t LatencyHistogram::BucketWidth(int index) {
  const uint64_t i = static_cast<uint64_t>(index);
  if (i < kLinearLimit) return 1;
  return uint64_t{1} << ((i - kLinearLimit) / kSub + 1);
}

void LatencyHistogram::Record(uint64_t value) {
  ++counts_[BucketIndex(value)];
  if (count_ == 0 || value < min_) min_ = value;
  max_ = std::max(max_, value);
  ++count_;
  sum_ += value;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (int i = 0; i < kNumBuckets; ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

void LatencyHistogram::Clear() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = min_ = max_ = 0;
  sum_ = 0;
}

double LatencyHistogram::Mean() const { return count_ ? static_cast<double>(sum_ / count_) : 0.0; }

uint64_t LatencyHistogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  // Nearest rank: the rank-th smallest value, rank in [1, count].
  uint64_t rank = static_cast<uint64_t>(std::ceil(p * static_cast<double>(count_) / 100.0 - 1e-9));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (int i = 0; i < kNumBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const uint64_t mid = BucketLower(i) + BucketWidth(i) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

std::vector<LatencyHistogram::Bucket> LatencyHistogram::NonEmptyBuckets() const {
  std::vector<Bucket> out;
  for (int i = 0; i < kNumBuckets; ++i) {
    if (counts_[i] == 0) continue;
    out.push_back({BucketLower(i), BucketLower(i) + BucketWidth(i), counts_[i]});
  }
  return out;
}

}  // namespace normserve::client
