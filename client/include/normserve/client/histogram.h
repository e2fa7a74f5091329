// LatencyHistogram: a log-linear histogram of non-negative integer values
// (the load generator records nanoseconds), in the manner of HdrHistogram.
//
// Values below 256 get a bucket each. Above that, every power-of-two range
// [2^k, 2^(k+1)) is cut into 128 equal buckets, so a bucket is never wider
// than 1/128 of its lower bound, and a percentile read back as the bucket's
// midpoint is within 1/256 (0.4%) of the recorded value it stands for.
// Memory is fixed (about 60 KiB) whatever the range.
//
// Threads: not synchronized. Record from one thread, or guard it; Merge
// per-thread histograms at the end.
#ifndef NORMSERVE_CLIENT_HISTOGRAM_H_
#define NORMSERVE_CLIENT_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace normserve::client {

class LatencyHistogram {
 public:
  LatencyHistogram();

  void Record(uint64_t value);
  void Merge(const LatencyHistogram& other);
  void Clear();

  uint64_t count() const { return count_; }
  // Exact extremes; 0 when empty.
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double Mean() const;

  // The value at percentile `p` in [0, 100], nearest-rank definition: the
  // smallest recorded value v such that at least p% of values are <= v,
  // reported as its bucket's midpoint clamped to [min, max]. 0 when empty.
  uint64_t Percentile(double p) const;

  // One non-empty bucket: values in [lower, upper) were seen `count` times.
  struct Bucket {
    uint64_t lower;
    uint64_t upper;
    uint64_t count;
  };
  std::vector<Bucket> NonEmptyBuckets() const;

  // Bucket index and bounds, exposed for tests.
  static int BucketIndex(uint64_t value);
  static uint64_t BucketLower(int index);
  static uint64_t BucketWidth(int index);
  static int NumBuckets();

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t min_ = 0;
  uint64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace normserve::client

#endif  // NORMSERVE_CLIENT_HISTOGRAM_H_
