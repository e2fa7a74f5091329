// Every instruction-set path of the CPU backend (scalar, AVX2, AVX-512; an
// ISA this CPU lacks is skipped) against the float64 reference: the parity
// sweep, the edge cases, and bit-exact FLOAT16 / BFLOAT16 rounding of the
// vector conversions against FloatToHalfBits / FloatToBFloat16Bits.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/reference.h"
#include "normserve/kernels/testing/parity.h"

namespace normserve::kernels {
namespace {

using testing::CaseSpec;
using testing::ProblemCase;

constexpr NormKind kKinds[] = {NormKind::kLayerNorm, NormKind::kRmsNorm, NormKind::kBatchNorm,
                               NormKind::kGroupNorm, NormKind::kInstanceNorm};
constexpr DType kDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};
constexpr size_t kShownFailures = 20;

void ExpectNoFailures(const std::vector<std::string>& failures) {
  EXPECT_TRUE(failures.empty()) << testing::SummarizeFailures(failures, kShownFailures);
}

// The failures of the RandomSpec cases of seeds [first, last] on `backend`,
// with each group holding its own mean (testing::PlantExactMeans) or not.
std::vector<std::string> RandomCaseFailures(Backend& backend, uint64_t first, uint64_t last,
                                            bool exact_means) {
  std::vector<std::string> failures;
  for (uint64_t seed = first; seed <= last; ++seed) {
    ProblemCase c = testing::MakeRandomCase(testing::RandomSpec(seed), seed);
    if (exact_means) testing::PlantExactMeans(c, seed);
    for (std::string& f : testing::CompareToReference(backend, c)) failures.push_back(std::move(f));
  }
  return failures;
}

class CpuIsaTest : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override {
    if (DetectCpuIsa() < GetParam()) {
      GTEST_SKIP() << "this CPU lacks " << CpuIsaName(GetParam());
    }
    CpuBackendOptions options;
    options.threads = 2;
    options.max_isa = GetParam();
    backend_ = std::make_unique<CpuBackend>(options);
  }
  std::unique_ptr<CpuBackend> backend_;
};

TEST_P(CpuIsaTest, UsesTheRequestedIsa) {
  EXPECT_EQ(backend_->isa(), GetParam());
  EXPECT_EQ(backend_->threads(), 2);
  EXPECT_NE(backend_->device_description().find(std::string(CpuIsaName(GetParam()))), std::string::npos);
}

TEST_P(CpuIsaTest, ParitySweepMatchesReference) {
  std::vector<std::string> failures;
  uint64_t seed = 100;
  for (const CaseSpec& spec : testing::ParitySweep(31, 1)) {
    ProblemCase c = testing::MakeRandomCase(spec, ++seed);
    for (std::string& f : testing::CompareToReference(*backend_, c)) failures.push_back(std::move(f));
  }
  ExpectNoFailures(failures);
}

// Random cases at and around the widths where the CPU paths change (short
// rows, ShortHalfRows' limits, check blocks, statistics chunks), which the
// sweep's fixed widths mostly miss. bench/probes/parity_fuzz.cc runs more.
TEST_P(CpuIsaTest, RandomWidthsMatchReference) {
  ExpectNoFailures(RandomCaseFailures(*backend_, 1, 500, /*exact_means=*/false));
}

// BatchNorm batch statistics over short channel runs: a channel whose mean
// equals one of its elements gives that element exactly 0 in the reference,
// so the mean must be the sum over the count, not a running mean rounded at
// each step (found by bench/probes/parity_fuzz.cc: 3e-18 for 0).
TEST_P(CpuIsaTest, BatchStatisticsMeanOfAChannelIsExact) {
  std::vector<std::string> failures;
  for (DType dtype : kDTypes) {
    CaseSpec spec;
    spec.kind = NormKind::kBatchNorm;
    spec.dtype = dtype;
    spec.params = testing::ParamMode::kNone;
    spec.use_batch_stats = true;
    spec.return_stats = true;
    spec.shape = {4, 3};
    ProblemCase c = testing::MakeRandomCase(spec, 5);
    const float channel[4] = {-5.875f, 5.375f, 0.3125f, -0.0625f};  // mean -0.0625
    for (int n = 0; n < 4; ++n) c.input.Set(n * 3 + 1, channel[n]);
    for (std::string& f : testing::CompareToReference(*backend_, c)) failures.push_back(std::move(f));
  }
  ExpectNoFailures(failures);
}

// Groups that merge several runs' moments (rows and groups longer than one
// 4096-element statistics chunk; BatchNorm channels over several samples,
// with short and long spatial runs) and whose mean is one of their elements
// (testing::PlantExactMeans): the reference gives that element exactly 0, so
// the merged mean must be the total sum over the count, as the reference
// takes it. Each run's mean differs from the group's, so Chan's update, a +
// (b - a) * nb / n, rounds; six rounds of random values, as a single one
// missed the LayerNorm rows.
TEST_P(CpuIsaTest, MergedMeanOfAGroupIsExact) {
  struct Shape {
    NormKind kind;
    std::vector<int64_t> shape;
    int groups;
  };
  const Shape shapes[] = {
      {NormKind::kLayerNorm, {2, 6151}, 1},    {NormKind::kLayerNorm, {1, 12289}, 1},
      {NormKind::kGroupNorm, {2, 4, 3001}, 2}, {NormKind::kInstanceNorm, {2, 2, 5003}, 1},
      {NormKind::kBatchNorm, {3, 2, 37}, 1},   {NormKind::kBatchNorm, {5, 3, 4}, 1},
      {NormKind::kBatchNorm, {7, 2, 1}, 1},
  };
  std::vector<std::string> failures;
  uint64_t seed = 1;
  for (int round = 0; round < 6; ++round) {
    for (const Shape& s : shapes) {
      for (DType dtype : kDTypes) {
        CaseSpec spec;
        spec.kind = s.kind;
        spec.dtype = dtype;
        spec.params = testing::ParamMode::kNone;
        spec.use_batch_stats = s.kind == NormKind::kBatchNorm;
        spec.return_stats = true;
        spec.shape = s.shape;
        spec.num_groups = s.groups;
        ProblemCase c = testing::MakeRandomCase(spec, ++seed);
        testing::PlantExactMeans(c, seed);
        for (std::string& f : testing::CompareToReference(*backend_, c)) failures.push_back(std::move(f));
      }
    }
  }
  ExpectNoFailures(failures);
}

// The random cases of RandomWidthsMatchReference (other seeds), each group
// holding its own mean (testing::PlantExactMeans): every path's mean, short
// rows and float statistics included, against the reference's sum / n.
TEST_P(CpuIsaTest, RandomWidthsWithExactMeansMatchReference) {
  ExpectNoFailures(RandomCaseFailures(*backend_, 1001, 1200, /*exact_means=*/true));
}

TEST_P(CpuIsaTest, EdgeCasesMatchReference) {
  std::vector<std::string> failures;
  for (NormKind kind : kKinds) {
    for (DType dtype : kDTypes) {
      for (ProblemCase& c : testing::EdgeCases(kind, dtype, 11)) {
        for (std::string& f : testing::CompareToReference(*backend_, c)) failures.push_back(std::move(f));
      }
    }
  }
  ExpectNoFailures(failures);
}

// Long rows cross several statistics chunks (4096 elements) and end in a
// partial vector; rows with a large offset test the pivot and correction.
TEST_P(CpuIsaTest, LongAndOffsetRowsMatchReference) {
  std::vector<std::string> failures;
  for (NormKind kind : {NormKind::kLayerNorm, NormKind::kRmsNorm}) {
    for (DType dtype : kDTypes) {
      CaseSpec spec;
      spec.kind = kind;
      spec.dtype = dtype;
      spec.shape = {3, 12289};
      spec.return_stats = true;
      spec.residual = true;
      ProblemCase c = testing::MakeRandomCase(spec, 5);
      for (std::string& f : testing::CompareToReference(*backend_, c)) failures.push_back(std::move(f));

      spec.shape = {2, 4099};
      spec.residual = false;
      ProblemCase shifted = testing::MakeRandomCase(spec, 6);
      for (int64_t i = 0; i < shifted.input.NumElements(); ++i) {
        shifted.input.Set(i, (dtype == DType::kFloat32 ? 40000.0f : 1000.0f) + shifted.input.Get(i));
      }
      for (std::string& f : testing::CompareToReference(*backend_, shifted)) failures.push_back(std::move(f));
    }
  }
  ExpectNoFailures(failures);
}

// Float bit patterns that exercise rounding: ties, subnormal results, the
// FLOAT16 overflow boundary, Inf and NaN with payloads.
std::vector<uint32_t> ConversionPatterns() {
  std::vector<uint32_t> bits = {
      0x3f800000, 0x3f801000, 0x3f800fff, 0x3f801001, 0x3f808000, 0x3f818000, 0x3f807fff,  // ties near 1
      0x477fe000, 0x477fefff, 0x477ff000, 0x477ff001, 0x47800000, 0x7f7fffff,              // half overflow
      0x38800000, 0x387fffff, 0x33800000, 0x33000000, 0x33000001, 0x337fffff, 0x00000001,  // half subnormals
      0x00800000, 0x007fffff, 0x80000001, 0x807fffff,                                      // float subnormals
      0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x7fbfffff, 0x7fa12345,  // Inf, NaN
  };
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 4000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    bits.push_back(static_cast<uint32_t>(state >> 32));
  }
  // y = norm(x) * 0 + beta is beta exactly, except that +-0 may change sign.
  std::vector<uint32_t> nonzero;
  for (uint32_t b : bits) {
    if ((b & 0x7fffffff) != 0) nonzero.push_back(b);
  }
  return nonzero;
}

// A random case with FLOAT32 gamma and beta (ParamMode::kAffine).
ProblemCase AffineCase(NormKind kind, DType dtype, DType out, std::vector<int64_t> shape, uint64_t seed,
                       int num_groups = 1) {
  CaseSpec spec;
  spec.kind = kind;
  spec.dtype = dtype;
  spec.params = testing::ParamMode::kAffine;
  spec.output_dtype = out;
  spec.shape = std::move(shape);
  spec.num_groups = num_groups;
  return testing::MakeRandomCase(spec, seed);
}

void ExpectConversionsMatch(CpuBackend& backend, const std::vector<uint32_t>& patterns) {
  const int64_t cols = static_cast<int64_t>(patterns.size());
  for (DType out : {DType::kFloat16, DType::kBFloat16}) {
    ProblemCase c = AffineCase(NormKind::kLayerNorm, DType::kFloat32, out, {1, cols}, 9);
    for (int64_t i = 0; i < cols; ++i) {
      c.gamma.Set(i, 0.0f);
      c.beta.Set(i, BitsToFloat(patterns[static_cast<size_t>(i)]));
    }
    NormProblem p = c.Problem();
    ASSERT_TRUE(backend.Run(&p, 1).ok());
    const auto* got = reinterpret_cast<const uint16_t*>(c.output.data());
    int mismatches = 0;
    for (int64_t i = 0; i < cols && mismatches < 10; ++i) {
      const float b = BitsToFloat(patterns[static_cast<size_t>(i)]);
      const uint16_t want = out == DType::kFloat16 ? FloatToHalfBits(b) : FloatToBFloat16Bits(b);
      if (got[i] != want) {
        ++mismatches;
        ADD_FAILURE() << DTypeName(out) << " of float bits 0x" << std::hex << patterns[static_cast<size_t>(i)]
                      << ": got 0x" << got[i] << ", want 0x" << want;
      }
    }
  }
}

// Vectors holding a float denormal take a slower path on avx512_bf16, so the
// patterns run twice: as listed, and with the denormals left out (every
// vector then takes the vcvtneps2bf16 path, NaN payloads included).
TEST_P(CpuIsaTest, HalfConversionsRoundLikeTheScalarFunctions) {
  for (bool denormals : {true, false}) {
    std::vector<uint32_t> patterns = ConversionPatterns();
    if (!denormals) {
      std::erase_if(patterns, [](uint32_t b) { return (b & 0x7f800000) == 0; });
    }
    SCOPED_TRACE(denormals ? "with denormals" : "without denormals");
    ExpectConversionsMatch(*backend_, patterns);
  }
}

// RMSNorm sums squares in float blocks and falls back to double where a
// block's sum overflows float or comes near its denormals; with epsilon 0
// and denormal inputs rstd itself exceeds the float range and every kind
// takes the double output pass. Rows whose squares overflow float (1e25),
// underflow (1e-30) or are denormal (1e-42), and an all-zero row, for
// RMSNorm, LayerNorm (rows) and InstanceNorm (segments), against the
// reference.
TEST_P(CpuIsaTest, ExtremeMagnitudesWithZeroEpsilonMatchReference) {
  std::vector<std::string> failures;
  const float scales[] = {1e25f, 1e19f, 1e-30f, 1e-42f, 0.0f, 1.0f};
  for (NormKind kind : {NormKind::kRmsNorm, NormKind::kLayerNorm, NormKind::kInstanceNorm}) {
    for (DType dtype : kDTypes) {
      for (DType out : kDTypes) {
        const std::vector<int64_t> shape = kind == NormKind::kInstanceNorm ? std::vector<int64_t>{6, 1, 1100}
                                                                           : std::vector<int64_t>{6, 1100};
        ProblemCase c = AffineCase(kind, dtype, out, shape, 91);
        c.epsilon = 0.0f;
        c.input = testing::OwnedTensor::Zeros(DType::kFloat32, shape);
        for (int64_t i = 0; i < c.input.NumElements(); ++i) {
          const float unit = 0.5f + static_cast<float>((i * 29) % 97) / 97.0f;
          c.input.Set(i, (i % 3 == 0 ? -unit : unit) * scales[i / 1100]);
        }
        if (dtype != DType::kFloat32) {
          // Half inputs cannot hold 1e25 or 1e-42: their rows take the dtype's
          // own extremes (largest finite squares overflow float for neither,
          // so only the zero and tiny rows reach the fallback there).
          testing::OwnedTensor half = testing::OwnedTensor::Zeros(dtype, shape);
          for (int64_t i = 0; i < half.NumElements(); ++i) half.Set(i, c.input.Get(i));
          c.input = std::move(half);
        }
        c.name = std::string(NormKindName(kind)) + " extremes " + std::string(DTypeName(dtype)) + " -> " +
                 std::string(DTypeName(out));
        for (std::string& f : testing::CompareToReference(*backend_, c)) failures.push_back(std::move(f));
      }
    }
  }
  ExpectNoFailures(failures);
}

// Runs c on the backend and in the reference, and returns c.name plus
// what `element(i, got, want)` says of each element that misses (the output
// buffers as T; an empty string for an element that passes).
template <typename T, typename Element>
std::vector<std::string> ElementFailures(CpuBackend& backend, ProblemCase& c, Element element) {
  std::vector<std::string> failures;
  ProblemCase ref = c;
  NormProblem rp = ref.Problem();
  ReferenceNormalize(rp);
  NormProblem p = c.Problem();
  if (const KernelStatus status = backend.Run(&p, 1); !status.ok()) {
    failures.push_back(c.name + ": " + status.message());
    return failures;
  }
  const auto* got = reinterpret_cast<const T*>(c.output.data());
  const auto* want = reinterpret_cast<const T*>(ref.output.data());
  for (int64_t i = 0; i < c.input.NumElements(); ++i) {
    if (std::string what = element(i, got[i], want[i]); !what.empty()) failures.push_back(c.name + what);
  }
  return failures;
}

// Strict 1 ulp where beta cancels almost all of xhat * gamma, beyond the
// harness's bound (which allows 1e-5 of the terms there, as float arithmetic
// needs): the CPU backend recomputes such vectors in double and promises
// 1 ulp anyway. LayerNorm cancels in every element (beta = -term rounded to
// float, nudged by 2^-16 of it); GroupNorm in the whole first channel of
// each group (values near +a there and near -a in the second channel, so
// xhat is about 1, and beta = -gamma).
std::vector<std::string> StrictUlpFailures(CpuBackend& backend, ProblemCase& c) {
  return ElementFailures<uint16_t>(backend, c, [](int64_t i, uint16_t got, uint16_t want) {
    const int64_t d = testing::HalfUlpDistance(got, want);
    if (d <= 1) return std::string();
    char what[96];
    std::snprintf(what, sizeof(what), " element %lld: %lld ulp (got 0x%04x, want 0x%04x)",
                  static_cast<long long>(i), static_cast<long long>(d), got, want);
    return std::string(what);
  });
}

// Sets beta[i] for the first `count` parameters to just past minus the
// term it is added to at output element i * stride (the first element of
// parameter i's run in the first row), from the reference with beta = 0 and
// a FLOAT32 output, so that beta cancels nearly all of it there.
void SetBetaToCancel(ProblemCase& c, int64_t count, int64_t stride = 1) {
  ProblemCase terms = c;
  for (int64_t i = 0; i < count; ++i) terms.beta.Set(i, 0.0f);
  terms.output_dtype = DType::kFloat32;
  NormProblem tp = terms.Problem();
  ReferenceNormalize(tp);
  const auto* term = reinterpret_cast<const float*>(terms.output.data());
  for (int64_t i = 0; i < count; ++i) c.beta.Set(i, -term[i * stride] * (1.0f + 0x1p-16f));
}

TEST_P(CpuIsaTest, CancellingBetaStaysWithinOneUlp) {
  std::vector<std::string> failures;
  for (DType out : {DType::kFloat16, DType::kBFloat16}) {
    {
      ProblemCase c = AffineCase(NormKind::kLayerNorm, DType::kFloat32, out, {1, 1000}, 77);
      c.name = std::string("LayerNorm cancelling, ") + std::string(DTypeName(out));
      SetBetaToCancel(c, 1000);
      for (std::string& f : StrictUlpFailures(*backend_, c)) failures.push_back(std::move(f));
    }
    {
      ProblemCase c =
          AffineCase(NormKind::kGroupNorm, DType::kFloat32, out, {2, 4, 100}, 78, /*num_groups=*/2);
      c.name = std::string("GroupNorm cancelling, ") + std::string(DTypeName(out));
      for (int64_t i = 0; i < c.input.NumElements(); ++i) {
        const int64_t channel = (i / 100) % 4;
        const float jitter = 1e-3f * static_cast<float>((i * 37) % 101 - 50);
        c.input.Set(i, (channel % 2 == 0 ? 3.0f : -3.0f) + jitter);
      }
      for (int64_t ch = 0; ch < 4; ++ch) c.beta.Set(ch, ch % 2 == 0 ? -c.gamma.Get(ch) : 0.25f);
      for (std::string& f : StrictUlpFailures(*backend_, c)) failures.push_back(std::move(f));
    }
  }
  ExpectNoFailures(failures);
}

// The AVX512_BF16 tier tests a 256-element block's full vectors together,
// per lane (Avx512SimdT::RangeGapFold): the smallest |result| against the
// largest |beta|, each vector folded into one of two sets in turn, so
// elements 32 apart meet in one set. A NaN result (from a NaN gamma) or a
// NaN beta (quiet or signaling) must not hide a cancelling element of the
// same set: every 96th element has a beta that cancels all but 2^-20 of
// its term, the element 32 on a NaN parameter and the one 64 on beta = 0
// (as every other element has), so that a NaN that dropped the largest
// |beta| so far would leave only zeros behind it. The cancelling elements
// stay within 1 ulp; the NaN elements are NaN.
TEST_P(CpuIsaTest, NanParameterDoesNotHideACancellingBeta) {
  std::vector<std::string> failures;
  const float nans[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::signaling_NaN()};
  for (DType out : {DType::kFloat16, DType::kBFloat16})
    for (const int64_t cols : {int64_t{1024}, int64_t{1000}})
      for (const char* where : {"gamma", "beta", "signaling beta"}) {
        ProblemCase c = AffineCase(NormKind::kLayerNorm, DType::kFloat32, out, {2, cols}, 79);
        c.name = std::string("LayerNorm, NaN ") + where + " beside cancelling beta, " +
                 std::string(DTypeName(out)) + ", " + std::to_string(cols) + " columns";
        const bool in_gamma = where[0] == 'g';
        const float nan = nans[where[0] == 's' ? 1 : 0];
        ProblemCase terms = c;
        for (int64_t i = 0; i < cols; ++i) terms.beta.Set(i, 0.0f);
        terms.output_dtype = DType::kFloat32;
        ReferenceNormalize(terms.Problem());
        const auto* term = reinterpret_cast<const float*>(terms.output.data());
        for (int64_t i = 0; i < cols; ++i) {
          c.beta.Set(i, i % 96 == 0 ? -term[i] * (1.0f + 0x1p-20f) : 0.0f);
          if (i % 96 == 32) (in_gamma ? c.gamma : c.beta).Set(i, nan);
        }
        const auto found =
            ElementFailures<uint16_t>(*backend_, c, [&](int64_t i, uint16_t got, uint16_t want) {
              const bool nan_param = i % cols % 96 == 32;
              const bool got_nan = (got & 0x7fff) > (out == DType::kBFloat16 ? 0x7f80 : 0x7c00);
              if (nan_param) return got_nan ? std::string() : " element " + std::to_string(i) + ": not NaN";
              const int64_t d = testing::HalfUlpDistance(got, want);
              return d <= 1 ? std::string()
                            : " element " + std::to_string(i) + ": " + std::to_string(d) + " ulp";
            });
        failures.insert(failures.end(), found.begin(), found.end());
      }
  ExpectNoFailures(failures);
}

// FLOAT32 outputs hold SEMANTICS.md's bound, |y - ref| <= 1e-5 * max(1,
// |ref|), strictly, even where a large beta cancels a large term: float
// arithmetic alone is off by up to 2^-22 of the term, which exceeds the
// bound once the term is above about 40 (gamma about 1000 here).
// Uniform values in [-1, 1) from a 64-bit LCG: the same sequence on every machine.
class Uniform {
 public:
  explicit Uniform(uint64_t seed) : state_(seed) {}
  double operator()() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state_ >> 11) * 0x1p-52 - 1.0;
  }

 private:
  uint64_t state_;
};

std::vector<std::string> StrictFloatFailures(CpuBackend& backend, ProblemCase& c) {
  return ElementFailures<float>(backend, c, [](int64_t i, float got, float want) {
    const double err = std::fabs(static_cast<double>(got) - static_cast<double>(want));
    if (err <= 1e-5 * std::max(1.0, std::fabs(static_cast<double>(want)))) return std::string();
    char what[96];
    std::snprintf(what, sizeof(what), " element %lld: got %.9g, want %.9g", static_cast<long long>(i),
                  static_cast<double>(got), static_cast<double>(want));
    return std::string(what);
  });
}

TEST_P(CpuIsaTest, CancellingBetaFloat32StaysWithinBound) {
  std::vector<std::string> failures;
  for (DType in : {DType::kFloat32, DType::kBFloat16}) {
    {
      ProblemCase c = AffineCase(NormKind::kLayerNorm, in, DType::kFloat32, {2, 1000}, 79);
      c.name = std::string("LayerNorm cancelling, FLOAT32 out, ") + std::string(DTypeName(in)) + " in";
      for (int64_t i = 0; i < 1000; ++i) c.gamma.Set(i, 1000.0f * c.gamma.Get(i));
      SetBetaToCancel(c, 1000);
      for (std::string& f : StrictFloatFailures(*backend_, c)) failures.push_back(std::move(f));
    }
    {
      ProblemCase c =
          AffineCase(NormKind::kGroupNorm, in, DType::kFloat32, {2, 4, 100}, 80, /*num_groups=*/2);
      c.name = std::string("GroupNorm cancelling, FLOAT32 out, ") + std::string(DTypeName(in)) + " in";
      for (int64_t i = 0; i < c.input.NumElements(); ++i) {
        const int64_t channel = (i / 100) % 4;
        const float jitter = 1e-6f * static_cast<float>((i * 37) % 101 - 50);
        c.input.Set(i, (channel % 2 == 0 ? 3.0f : -3.0f) + jitter);
      }
      for (int64_t ch = 0; ch < 4; ++ch) {
        c.gamma.Set(ch, 1000.0f);
        c.beta.Set(ch, ch % 2 == 0 ? -1000.0f : 0.25f);
      }
      for (std::string& f : StrictFloatFailures(*backend_, c)) failures.push_back(std::move(f));
    }
  }
  ExpectNoFailures(failures);
}

// FLOAT32 LayerNorm rows whose statistics are summed in float (FLOAT32 in
// and out, no mean requested, |gamma| <= 4, |beta| <= 2, not adaptive:
// Kernels::FloatCenteredSums) hold the 1e-5 max(1, |ref|) bound strictly,
// with the parameters at those limits (gamma +-4, beta +-2 against the
// sign of the term, so beta cancels most of it): rows of zero mean, with
// elements exactly at the mean (outputs exactly beta), offset far from
// zero (1000 and 30000 against a spread of 1 and 1e-3), outliers at the
// start (the pivot's first sample holds them, so these rows fail the pivot
// check and take the double sums), chunks of 4096 with different means
// (merged), a partial last vector and a residual.
TEST_P(CpuIsaTest, Float32StatisticsInFloatStayWithinBound) {
  std::vector<std::string> failures;
  Uniform uniform(0x2545f4914f6cdd1dull);
  struct Pattern {
    const char* name;
    int64_t cols;
    double (*value)(int64_t col, double u);
  };
  const Pattern patterns[] = {
      {"zero mean", 4096, [](int64_t, double u) { return u; }},
      // Triples 5 + t, 5 - t, 5 (t a multiple of 2^-7): the mean is exactly 5, and so is a
      // third of the row (outputs exactly beta).
      {"elements at the mean", 4098,
       [](int64_t col, double) {
         const double t = static_cast<double>((col / 3) % 97 + 1) / 128.0;
         return col % 3 == 0 ? 5.0 + t : col % 3 == 1 ? 5.0 - t : 5.0;
       }},
      {"offset 1000", 1000, [](int64_t, double u) { return 1000.0 + u; }},
      {"offset 30000, spread 1e-3", 2048, [](int64_t, double u) { return 30000.0 + 1e-3 * u; }},
      {"outliers first", 4096, [](int64_t col, double u) { return col < 16 ? 100.0 : u; }},
      {"chunk means 0, 40, 80", 12288, [](int64_t col, double u) { return 40.0 * (col / 4096) + u; }},
      {"just past short rows", 513, [](int64_t, double u) { return 3.0 + u * u * u; }},
  };
  for (const Pattern& pat : patterns) {
    for (bool residual : {false, true}) {
      CaseSpec spec;
      spec.kind = NormKind::kLayerNorm;
      spec.dtype = DType::kFloat32;
      spec.params = testing::ParamMode::kAffine;
      spec.output_dtype = DType::kFloat32;
      spec.residual = residual;
      spec.shape = {3, pat.cols};
      ProblemCase c = testing::MakeRandomCase(spec, 81);
      c.name = std::string("LayerNorm FLOAT32, ") + pat.name + (residual ? ", residual" : "");
      for (int64_t row = 0; row < 3; ++row) {
        for (int64_t col = 0; col < pat.cols; ++col) {
          const int64_t i = row * pat.cols + col;
          const double v = pat.value(col, uniform());
          if (residual) {
            // x + r rounds to v's float (r = 0.5 exactly, x = v - 0.5 in float, exact here).
            c.input.Set(i, static_cast<float>(v) - 0.5f);
            c.residual.Set(i, 0.5f);
          } else {
            c.input.Set(i, static_cast<float>(v));
          }
        }
      }
      for (int64_t col = 0; col < pat.cols; ++col) {
        c.gamma.Set(col, col % 2 == 0 ? 4.0f : -4.0f);
        // Against the sign of the term (the elements' deviations alternate or are random).
        c.beta.Set(col, col % 4 < 2 ? -2.0f : 2.0f);
      }
      for (std::string& f : StrictFloatFailures(*backend_, c)) failures.push_back(std::move(f));
    }
  }
  ExpectNoFailures(failures);
}

// Short FLOAT32 LayerNorm rows with the float statistics (at most 32
// vectors a row: 512 columns with AVX-512, 256 with AVX2; the scalar path
// keeps the double sums) sum around their float mean
// (Kernels::ShortFloatRows; over 16 vectors the lanes add in double), which
// stands for the mean where it is within about sigma of zero. 37 rows of each
// row kind in turn: zero mean, offset 1000 and 30000 (spread 1e-3), a third
// of the elements at the mean, 1536 and its two neighbouring floats,
// constant rows (which take the double sums), means just under and just
// over sigma (spread 1); widths from 1
// column to 512, partial last vectors, a residual, and gamma +-4, beta +-2
// (no beta, and unit offset, too). Strict 1e-5 max(1, |ref|) against the
// reference; rows 5 to 29 run as their own problem must give the same bits;
// asking for the mean (the double sums) must change some bits where these
// rows take the float sums, and none where they do not. Then rows with NaN
// or Inf among others, against the reference.
// Runs row case c (at least 30 rows, the output in the input's dtype) whole
// and rows 5 to 29 of it alone: those rows must have the same bits either way.
std::vector<std::string> RowsAloneFailures(CpuBackend& backend, ProblemCase& c) {
  const int64_t cols = c.input.shape[1];
  const int64_t row_bytes = cols * static_cast<int64_t>(DTypeSize(c.input.dtype));
  ProblemCase part = c;
  constexpr int64_t kFirst = 5, kLast = 30;
  part.input.shape = {kLast - kFirst, cols};
  auto keep_rows = [&](std::vector<uint8_t>& bytes) {
    bytes.assign(bytes.begin() + kFirst * row_bytes, bytes.begin() + kLast * row_bytes);
  };
  keep_rows(part.input.bytes);
  if (c.residual.present) {
    part.residual.shape = part.input.shape;
    keep_rows(part.residual.bytes);
  }
  part.ResetOutputs();
  NormProblem whole_problem = c.Problem();
  NormProblem part_problem = part.Problem();
  if (!backend.Run(&whole_problem, 1).ok() || !backend.Run(&part_problem, 1).ok())
    return {c.name + ": Run failed"};
  if (!std::equal(part.output.begin(), part.output.end(), c.output.begin() + kFirst * row_bytes)) {
    return {c.name + ": rows 5 to 29 alone differ from the same rows in the batch"};
  }
  return {};
}

// c again with its statistics returned (mean and rstd per row, LAYER; rstd,
// RMS), against the reference.
std::vector<std::string> WithStatsFailures(CpuBackend& backend, const ProblemCase& c) {
  ProblemCase with_stats = c;
  with_stats.return_stats = true;
  with_stats.ResetOutputs();
  return testing::CompareToReference(backend, with_stats);
}

// `rows` rows of 100 and of 128 columns with a NaN in row 3 and an infinity
// in rows 20 and 36, against the reference (their outputs NaN, the others'
// untouched).
std::vector<std::string> NonFiniteRowsFailures(CpuBackend& backend, NormKind kind, DType dtype, int64_t rows,
                                               uint64_t seed) {
  std::vector<std::string> failures;
  for (int64_t cols : {100, 128}) {
    ProblemCase c = AffineCase(kind, dtype, dtype, {rows, cols}, seed);
    c.name = std::string(NormKindName(kind)) + " " + std::string(DTypeName(dtype)) +
             " with NaN and Inf rows, " + std::to_string(cols) + " columns";
    c.input.Set(3 * cols + 17, std::numeric_limits<float>::quiet_NaN());
    c.input.Set(20 * cols + cols - 1, std::numeric_limits<float>::infinity());
    c.input.Set(36 * cols, -std::numeric_limits<float>::infinity());
    for (std::string& f : testing::CompareToReference(backend, c)) failures.push_back(std::move(f));
  }
  return failures;
}

TEST_P(CpuIsaTest, ShortFloat32RowsInFloatStayWithinBound) {
  std::vector<std::string> failures;
  Uniform uniform(0x9e3779b97f4a7c15ull);
  auto value = [&](int64_t row, int64_t col) {
    const double u = uniform();
    switch (row % 8) {
      case 0:
        return u;
      case 1:
        return 1000.0 + u;
      case 2:
        return 30000.0 + 1e-3 * u;
      case 3: {
        const double t = static_cast<double>((col / 3) % 97 + 1) / 128.0;
        return col % 3 == 0 ? 5.0 + t : col % 3 == 1 ? 5.0 - t : 5.0;
      }
      case 4:  // 1536 and its neighbours, 1 ulp apart: a spread of 1e-7 of the mean
        return 1536.0 + 0x1p-13 * static_cast<double>((col * 7) % 3 - 1);
      case 5:
        return 3.0;
      // Means either side of sigma (sigma of u about 0.577): where the float mean
      // stops standing for the mean (Kernels::MeanPivotKept) and the sums around it
      // take over.
      case 6:
        return 0.55 + u;
      default:
        return 0.61 + u;
    }
  };
  constexpr int64_t kRows = 37;
  const int64_t float_cols = GetParam() >= CpuIsa::kAvx512 ? 512 : GetParam() == CpuIsa::kAvx2 ? 256 : 0;
  for (int64_t cols : {1, 7, 16, 33, 100, 128, 129, 200, 256, 257, 300, 511, 512}) {
    for (int variant = 0; variant < 4; ++variant) {
      const bool residual = variant == 1, no_beta = variant == 2, unit_offset = variant == 3;
      CaseSpec spec;
      spec.kind = NormKind::kLayerNorm;
      spec.dtype = DType::kFloat32;
      spec.params = no_beta ? testing::ParamMode::kGammaOnly : testing::ParamMode::kAffine;
      spec.unit_offset = unit_offset;
      spec.output_dtype = DType::kFloat32;
      spec.residual = residual;
      spec.shape = {kRows, cols};
      ProblemCase c = testing::MakeRandomCase(spec, 83);
      c.name = "LayerNorm FLOAT32, " + std::to_string(cols) + " columns" + (residual ? ", residual" : "") +
               (no_beta ? ", no beta" : "") + (unit_offset ? ", unit offset" : "");
      for (int64_t row = 0; row < kRows; ++row) {
        for (int64_t col = 0; col < cols; ++col) {
          const int64_t i = row * cols + col;
          const double v = value(row, col);
          if (residual) {
            // x + r rounds to v's float (r = 0.5 exactly, x = v - 0.5 in float, exact here).
            c.input.Set(i, static_cast<float>(v) - 0.5f);
            c.residual.Set(i, 0.5f);
          } else {
            c.input.Set(i, static_cast<float>(v));
          }
        }
      }
      for (int64_t col = 0; col < cols; ++col) {
        // The limits: |gamma| <= 4, or 2 with unit offset; beta against the sign of the term.
        const float g = unit_offset ? 2.0f : 4.0f;
        c.gamma.Set(col, col % 2 == 0 ? g : -g);
        if (!no_beta) c.beta.Set(col, col % 4 < 2 ? -2.0f : 2.0f);
      }
      for (std::string& f : StrictFloatFailures(*backend_, c)) failures.push_back(std::move(f));

      for (std::string& f : RowsAloneFailures(*backend_, c)) failures.push_back(std::move(f));

      ProblemCase with_mean = c;
      with_mean.return_stats = true;
      with_mean.ResetOutputs();
      NormProblem q = with_mean.Problem();
      ASSERT_TRUE(backend_->Run(&q, 1).ok()) << c.name;
      const bool same = with_mean.output == c.output;
      // Single columns are exact either way (every output is beta).
      if (cols > 1 && same != (cols > float_cols)) {
        failures.push_back(c.name + (same ? ": took the double sums" : ": took the float sums"));
      }
    }
  }
  // NaN and infinities in some rows of a group: those rows are NaN, the others unharmed.
  for (int64_t cols : {100, 128}) {
    ProblemCase c = AffineCase(NormKind::kLayerNorm, DType::kFloat32, DType::kFloat32, {kRows, cols}, 84);
    c.name = "LayerNorm FLOAT32 with NaN and Inf rows, " + std::to_string(cols) + " columns";
    c.input.Set(3 * cols + 17, std::numeric_limits<float>::quiet_NaN());
    c.input.Set(20 * cols + cols - 1, std::numeric_limits<float>::infinity());
    c.input.Set(36 * cols, -std::numeric_limits<float>::infinity());
    for (std::string& f : testing::CompareToReference(*backend_, c)) failures.push_back(std::move(f));
  }
  ExpectNoFailures(failures);
}

// Short RMSNorm rows sum their squares in float (Kernels::ShortRmsTransform:
// FLOAT32 rows in ShortFloatRows with |beta| <= 2, FLOAT16 / BFLOAT16 rows
// in ShortHalfRows, up to 48 vectors a row, with the double fallback for
// cancelling beta), with gamma unbounded: widths from 1 column to just past
// 768 (the longest such half-type row with AVX-512), rows of every
// magnitude, among them squares that overflow float (1e20) or fall below
// 2^-90 (1e-25, with epsilon 0 so that they decide rstd), which must take
// RunSumSquares (FLOAT16 reaches neither: its large and tiny rows are 3e4
// and 1e-6, subnormal); strictly against the reference (1e-5, or 1 ulp for
// half outputs, also where beta cancels the terms of a row), rows 5 to 29
// alone giving the same bits, rstd against the reference, NaN and Inf rows.
TEST_P(CpuIsaTest, ShortRmsRowsInFloatStayWithinBound) {
  std::vector<std::string> failures;
  Uniform uniform(0x2545f4914f6cdd1dull);
  constexpr int64_t kRows = 37;
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    const bool fp16 = dtype == DType::kFloat16;
    const double large = fp16 ? 3e4 : 1e20, tiny = fp16 ? 1e-6 : 1e-25;
    auto value = [&](int64_t row, int64_t col) {
      const double u = uniform();
      switch (row % 6) {
        case 0:
          return u;
        case 1:
          return 1000.0 + u;
        case 2:
          return large * u;
        case 3:  // never zero, so that no row is all zeros with epsilon 0
          return tiny * (u < 0 ? u - 1.0 : u + 1.0);
        case 4:  // mostly zeros
          return col % 5 == 0 ? 3.0 + u : 0.0;
        default:
          return 30000.0 + 1e-3 * u;
      }
    };
    for (float epsilon : {1e-5f, 0.0f}) {
      for (int64_t cols : {1, 7, 16, 33, 100, 128, 129, 200, 256, 257, 300, 511, 512, 700, 767, 768, 769}) {
        for (int variant = 0; variant < 5; ++variant) {
          const bool residual = variant == 1, no_beta = variant == 2, unit_offset = variant == 3;
          const bool cancelling = variant == 4;
          CaseSpec spec;
          spec.kind = NormKind::kRmsNorm;
          spec.dtype = dtype;
          spec.params = no_beta ? testing::ParamMode::kGammaOnly : testing::ParamMode::kAffine;
          spec.unit_offset = unit_offset;
          spec.output_dtype = dtype;
          spec.residual = residual;
          spec.epsilon = epsilon;
          spec.shape = {kRows, cols};
          ProblemCase c = testing::MakeRandomCase(spec, 85);
          c.name = "RMSNorm " + std::string(DTypeName(dtype)) + ", " + std::to_string(cols) +
                   " columns, epsilon " + std::to_string(epsilon) + (residual ? ", residual" : "") +
                   (no_beta ? ", no beta" : "") + (unit_offset ? ", unit offset" : "") +
                   (cancelling ? ", cancelling beta" : "");
          for (int64_t row = 0; row < kRows; ++row) {
            for (int64_t col = 0; col < cols; ++col) {
              const int64_t i = row * cols + col;
              const float v = static_cast<float>(value(row, col));
              if (residual) {
                c.input.Set(i, v * 0.5f);
                c.residual.Set(i, v * 0.5f);
              } else {
                c.input.Set(i, v);
              }
            }
          }
          for (int64_t col = 0; col < cols; ++col) {
            c.gamma.Set(col, col % 2 == 0 ? 100.0f : -100.0f);
            if (!no_beta) c.beta.Set(col, col % 4 < 2 ? -2.0f : 2.0f);
          }
          // Beta cancels nearly all of every term of row 0 (beyond 2 for FLOAT32,
          // which then takes the general pass).
          if (cancelling) SetBetaToCancel(c, cols);
          // Where beta cancels all but 2^-15 of a term, the statistics' own error
          // (a few u of rstd) exceeds 1 ulp of the result: the harness's bound,
          // 1e-5 (|term| + |beta|), holds there (ShortHalfRmsRowsRecomputeCancellingBeta
          // below holds 1 ulp where rstd is exact).
          for (std::string& f : cancelling                 ? testing::CompareToReference(*backend_, c)
                                : dtype == DType::kFloat32 ? StrictFloatFailures(*backend_, c)
                                                           : StrictUlpFailures(*backend_, c)) {
            failures.push_back(std::move(f));
          }
          for (std::string& f : RowsAloneFailures(*backend_, c)) failures.push_back(std::move(f));

          for (std::string& f : WithStatsFailures(*backend_, c)) failures.push_back(std::move(f));
        }
      }
    }
    for (std::string& f : NonFiniteRowsFailures(*backend_, NormKind::kRmsNorm, dtype, kRows, 86))
      failures.push_back(std::move(f));
  }
  ExpectNoFailures(failures);
}

// Short FLOAT16 / BFLOAT16 LayerNorm rows (Kernels::ShortHalfRows where
// kShortHalfLayerRows, the grouped pass elsewhere, and rows past 256
// columns for comparison) with every parameter shape: strictly within 1 ulp
// of the reference, also for rows far from zero whose outputs sit near the
// mean (which needs the double mean) and where beta cancels the terms of
// row 0; rows 5 to 29 alone give the same bits; mean and rstd against the
// reference; NaN and Inf rows.
TEST_P(CpuIsaTest, ShortHalfLayerRowsMatchReference) {
  std::vector<std::string> failures;
  Uniform uniform(0x7f4a7c159e3779b9ull);
  constexpr int64_t kRows = 37;
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    auto value = [&](int64_t row) {
      const double u = uniform();
      switch (row % 4) {
        case 0:
          return u;
        case 1:  // a few distinct values (BFLOAT16 spacing 8, FLOAT16 0.5): outputs at and near the mean
          return 1000.0 + 3.0 * u;
        case 2:
          return 300.0 + 1e-2 * u;
        default:
          return 1e-3 * u;
      }
    };
    for (int64_t cols : {1, 7, 16, 33, 100, 128, 129, 200, 256, 257, 300, 512}) {
      for (int variant = 0; variant < 7; ++variant) {
        const bool residual = variant == 1, no_beta = variant == 2, unit_offset = variant == 3;
        const bool adaptive = variant == 4, half_params = variant == 5, cancelling = variant == 6;
        CaseSpec spec;
        spec.kind = NormKind::kLayerNorm;
        spec.dtype = dtype;
        spec.params = no_beta    ? testing::ParamMode::kGammaOnly
                      : adaptive ? testing::ParamMode::kAdaptivePerSample
                                 : testing::ParamMode::kAffine;
        spec.param_dtype = half_params ? dtype : DType::kFloat32;
        spec.unit_offset = unit_offset;
        spec.residual = residual;
        spec.epsilon = variant == 0 ? 0.0f : 1e-5f;
        spec.shape = {kRows, cols};
        ProblemCase c = testing::MakeRandomCase(spec, 87);
        c.name = "LayerNorm " + std::string(DTypeName(dtype)) + ", " + std::to_string(cols) + " columns, " +
                 (residual      ? "residual"
                  : no_beta     ? "no beta"
                  : unit_offset ? "unit offset"
                  : adaptive    ? "adaptive"
                  : half_params ? "half parameters"
                  : cancelling  ? "cancelling beta"
                                : "epsilon 0");
        for (int64_t row = 0; row < kRows; ++row) {
          for (int64_t col = 0; col < cols; ++col) {
            const int64_t i = row * cols + col;
            const float v = static_cast<float>(value(row));
            if (residual) {
              c.input.Set(i, v * 0.5f);
              c.residual.Set(i, v * 0.5f);
            } else {
              c.input.Set(i, v);
            }
          }
        }
        if (cancelling) {
          for (int64_t col = 0; col < cols; ++col) c.gamma.Set(col, col % 2 == 0 ? 100.0f : -100.0f);
          SetBetaToCancel(c, cols);
        }
        for (std::string& f : StrictUlpFailures(*backend_, c)) failures.push_back(std::move(f));
        if (!adaptive) {
          for (std::string& f : RowsAloneFailures(*backend_, c)) failures.push_back(std::move(f));
        }
        for (std::string& f : WithStatsFailures(*backend_, c)) failures.push_back(std::move(f));
      }
    }
    for (std::string& f : NonFiniteRowsFailures(*backend_, NormKind::kLayerNorm, dtype, kRows, 88))
      failures.push_back(std::move(f));
  }
  ExpectNoFailures(failures);
}

// FLOAT16 / BFLOAT16 LayerNorm rows sum x and x^2 unshifted in double, a
// chunk of 4096 at a time (Kernels::CenteredPass); a row far from zero with
// a tiny spread is where that could lose M2 to sum(x)^2 / n. Rows of n - 1
// copies of v and one neighbouring value w (n = 100 to 6000: one chunk or
// two, v at and near binade edges, epsilon 0): rstd = n / (|w - v| sqrt(n -
// 1)) exactly, so
// the returned rstd (float) must be it correctly rounded, and the FLOAT32
// outputs within their bound. Without ChunkMoments' exact remainder of
// sum(x)^2 / n, some of these rstd were a float ulp off.
TEST_P(CpuIsaTest, HalfRowsFarFromZeroKeepTheirVariance) {
  std::vector<std::string> failures;
  struct Row {
    DType dtype;
    float v, w;
  };
  // FLOAT16: spacing 0.5 in [512, 1024), 1 in [1024, 2048), 32 in [32768,
  // 65504]; BFLOAT16: 4 in [512, 1024), 8 in [1024, 2048), 0.5 in [64, 128).
  const Row rows[] = {{DType::kFloat16, 1000.0f, 1000.5f},  {DType::kFloat16, 1023.5f, 1024.0f},
                      {DType::kFloat16, 2047.0f, 2046.0f},  {DType::kFloat16, 60000.0f, 60032.0f},
                      {DType::kFloat16, -777.0f, -776.5f},  {DType::kBFloat16, 1000.0f, 1004.0f},
                      {DType::kBFloat16, 1016.0f, 1024.0f}, {DType::kBFloat16, 127.5f, 127.0f},
                      {DType::kBFloat16, -99.5f, -100.0f}};
  for (const Row& row : rows) {
    for (int64_t cols : {100, 129, 333, 512, 999, 1000, 1023, 1024, 2047, 4095, 6000}) {
      CaseSpec spec;
      spec.kind = NormKind::kLayerNorm;
      spec.dtype = row.dtype;
      spec.params = testing::ParamMode::kAffine;
      spec.output_dtype = DType::kFloat32;
      spec.return_stats = true;
      spec.epsilon = 0.0f;
      spec.shape = {3, cols};
      ProblemCase c = testing::MakeRandomCase(spec, 91);
      c.name = "LayerNorm " + std::string(DTypeName(row.dtype)) + " " + std::to_string(row.v) + " and one " +
               std::to_string(row.w) + ", " + std::to_string(cols) + " columns";
      for (int64_t r = 0; r < 3; ++r) {
        for (int64_t col = 0; col < cols; ++col)
          c.input.Set(r * cols + col, col == (r * 37) % cols ? row.w : row.v);
      }
      for (std::string& f : testing::CompareToReference(*backend_, c)) failures.push_back(std::move(f));
      const long double n = static_cast<long double>(cols);
      const long double exact =
          n / (std::fabs(static_cast<long double>(row.w) - row.v) * std::sqrt(n - 1.0L));
      // rstd in double is within about 2^-50 of it, so the float rstd is it
      // correctly rounded: within half an ulp (and a hair, for the double's
      // own error).
      const float want = static_cast<float>(exact);
      const long double ulp = std::nextafter(want, std::numeric_limits<float>::infinity()) - want;
      for (int64_t r = 0; r < 3; ++r) {
        const float got = c.rstd[static_cast<size_t>(r)];
        if (!(std::fabs(static_cast<long double>(got) - exact) <= ulp * (0.5L + 0x1p-20L))) {
          failures.push_back(c.name + ": row " + std::to_string(r) + " rstd " + std::to_string(got) +
                             ", want " + std::to_string(want) +
                             " (within half a float ulp of the exact value)");
        }
      }
    }
  }
  ExpectNoFailures(failures);
}

// Short FLOAT16 / BFLOAT16 RMSNorm rows keep NormalizeRowT's double
// fallback where beta cancels: rows of 41 (or -41, gamma of the same sign)
// with epsilon 0 have exact squares and rstd = 1/41 in double, but float
// gives 41 * fl(1/41) = 1 - 2^-24, and with gamma 65000 and beta 0.09765625
// - 65000 (exact in float) that is 8 ulp (BFLOAT16) or 63 ulp (FLOAT16) off
// the exact 0.09765625; the double fallback gets it. Rows of 1000 columns
// take the general pass, for comparison.
TEST_P(CpuIsaTest, ShortHalfRmsRowsRecomputeCancellingBeta) {
  std::vector<std::string> failures;
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    for (int64_t cols : {1, 7, 64, 200, 512, 1000}) {
      CaseSpec spec;
      spec.kind = NormKind::kRmsNorm;
      spec.dtype = dtype;
      spec.output_dtype = dtype;
      spec.epsilon = 0.0f;
      spec.shape = {4, cols};
      ProblemCase c = testing::MakeRandomCase(spec, 87);
      c.name = "RMSNorm " + std::string(DTypeName(dtype)) + " rows of 41, cancelling beta, " +
               std::to_string(cols) + " columns";
      for (int64_t i = 0; i < c.input.NumElements(); ++i)
        c.input.Set(i, (i % cols) % 3 == 1 ? -41.0f : 41.0f);
      for (int64_t col = 0; col < cols; ++col) {
        c.gamma.Set(col, col % 3 == 1 ? -65000.0f : 65000.0f);
        c.beta.Set(col, 0.09765625f - 65000.0f);
      }
      for (std::string& f : StrictUlpFailures(*backend_, c)) failures.push_back(std::move(f));
    }
  }
  ExpectNoFailures(failures);
}

// Which FLOAT32 LayerNorm problems take the float statistics: asking for
// the mean forces the double sums, so outputs with and without it must be
// bitwise equal wherever the parameters rule the float sums out (|gamma| >
// 4, |1 + gamma| possibly > 4 with unit_offset, |beta| > 2, adaptive
// parameters), and differ somewhere where they allow them (so the test
// above runs the float sums).
TEST_P(CpuIsaTest, Float32StatisticsFollowTheParameters) {
  struct Variant {
    const char* name;
    float gamma_max, beta_max;
    bool unit_offset, adaptive, float_sums;
  };
  const Variant variants[] = {
      {"gamma 4, beta 2", 4.0f, 2.0f, false, false, true},
      {"gamma 4.5", 4.5f, 2.0f, false, false, false},
      {"beta 2.5", 4.0f, 2.5f, false, false, false},
      {"unit offset, gamma 2", 2.0f, 2.0f, true, false, true},
      {"unit offset, gamma 2.5", 2.5f, 2.0f, true, false, false},
      {"adaptive", 1.0f, 1.0f, false, true, false},
  };
  for (const Variant& v : variants) {
    CaseSpec spec;
    spec.kind = NormKind::kLayerNorm;
    spec.dtype = DType::kFloat32;
    spec.params = v.adaptive ? testing::ParamMode::kAdaptivePerSample : testing::ParamMode::kAffine;
    spec.unit_offset = v.unit_offset;
    spec.shape = {4, 4096};
    ProblemCase plain = testing::MakeRandomCase(spec, 82);
    for (int64_t i = 0; i < plain.gamma.NumElements(); ++i) {
      const float t = static_cast<float>(i % 97) / 96.0f;  // 0 to 1, both ends reached
      plain.gamma.Set(i, (i % 2 == 0 ? 1.0f : -1.0f) * t * v.gamma_max);
      plain.beta.Set(i, (i % 3 == 0 ? 1.0f : -1.0f) * t * v.beta_max);
    }
    ProblemCase with_mean = plain;
    with_mean.return_stats = true;
    NormProblem p = plain.Problem();
    NormProblem q = with_mean.Problem();
    ASSERT_TRUE(backend_->Run(&p, 1).ok()) << v.name;
    ASSERT_TRUE(backend_->Run(&q, 1).ok()) << v.name;
    const bool same = plain.output == with_mean.output;
    EXPECT_EQ(same, !v.float_sums) << v.name << (same ? ": took the double sums" : ": took the float sums");
  }
}

// Outputs below the smallest normal float: vcvtneps2bf16 would flush them
// to zero, so on avx512_bf16 the output passes find them (a block at a
// time, no per-vector test) and write their blocks again with the rounding
// that keeps them. Gamma is a float denormal in columns [300, 600) of
// LayerNorm and RMSNorm rows (ending in a partial vector), with no beta
// and with an all-zero beta, and in one channel of GroupNorm segments;
// strict 1 ulp against the reference, BFLOAT16 outputs (FLOAT16 for
// contrast, whose store has no such test).
TEST_P(CpuIsaTest, DenormalHalfOutputsKeepTheirValue) {
  std::vector<std::string> failures;
  for (DType out : {DType::kBFloat16, DType::kFloat16}) {
    for (NormKind kind : {NormKind::kLayerNorm, NormKind::kRmsNorm}) {
      for (bool zero_beta : {false, true}) {
        CaseSpec spec;
        spec.kind = kind;
        spec.dtype = DType::kFloat32;
        spec.output_dtype = out;
        spec.params = zero_beta ? testing::ParamMode::kAffine : testing::ParamMode::kGammaOnly;
        spec.shape = {3, 1000};
        ProblemCase c = testing::MakeRandomCase(spec, 81);
        c.name = std::string(NormKindName(kind)) + " denormal outputs -> " + std::string(DTypeName(out)) +
                 (zero_beta ? ", zero beta" : ", no beta");
        for (int64_t i = 300; i < 600; ++i) c.gamma.Set(i, 1e-39f * (1.0f + static_cast<float>(i) / 1000.0f));
        if (zero_beta) {
          for (int64_t i = 0; i < 1000; ++i) c.beta.Set(i, 0.0f);
        }
        for (std::string& f : StrictUlpFailures(*backend_, c)) failures.push_back(std::move(f));
      }
    }
    CaseSpec spec;
    spec.kind = NormKind::kGroupNorm;
    spec.dtype = DType::kFloat32;
    spec.output_dtype = out;
    spec.params = testing::ParamMode::kGammaOnly;
    spec.shape = {2, 4, 300};
    spec.num_groups = 2;
    ProblemCase c = testing::MakeRandomCase(spec, 82);
    c.name = std::string("GroupNorm denormal outputs -> ") + std::string(DTypeName(out));
    c.gamma.Set(1, 3e-39f);
    for (std::string& f : StrictUlpFailures(*backend_, c)) failures.push_back(std::move(f));
  }
  ExpectNoFailures(failures);
}

// The output loops of long runs store their first elements as partial
// vectors until the output reaches a cache line (or a vector's width), so
// that the whole vectors after them are aligned; values never depend on that. Every kind and
// dtype, with the output at every element offset from a 64-byte boundary,
// gives the bits it gives in the case's own buffer, which are checked against
// the reference. Beta is present, so the blocks of the cancellation test run
// too (the head is a block of its own).
TEST_P(CpuIsaTest, OutputAddressNeverChangesTheBits) {
  struct Shape {
    NormKind kind;
    std::vector<int64_t> shape;
    int groups;
  };
  // Runs of 2 KiB and more align (kAlignedRunBytes): rows of 1537 and 4096
  // columns, GroupNorm / InstanceNorm channels of 1100 and 1500 elements;
  // the others are too short and store where they start.
  const Shape shapes[] = {{NormKind::kLayerNorm, {3, 1537}, 1},    {NormKind::kLayerNorm, {2, 4096}, 1},
                          {NormKind::kLayerNorm, {9, 96}, 1},      {NormKind::kRmsNorm, {3, 1537}, 1},
                          {NormKind::kGroupNorm, {2, 4, 1100}, 2}, {NormKind::kInstanceNorm, {2, 3, 1500}, 1},
                          {NormKind::kBatchNorm, {3, 5, 77}, 1},   {NormKind::kGroupNorm, {2, 4, 300}, 2}};
  for (const Shape& s : shapes) {
    for (DType dtype : kDTypes) {
      ProblemCase c = AffineCase(s.kind, dtype, dtype, s.shape, 91, s.groups);
      ExpectNoFailures(testing::CompareToReference(*backend_, c));
      const std::vector<uint8_t> want = c.output;
      const size_t elem = DTypeSize(dtype);
      std::vector<uint8_t> buffer(want.size() + 128);
      uint8_t* const line =
          reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buffer.data()) + 63) / 64 * 64);
      for (size_t offset = 0; offset < 64; offset += elem) {
        NormProblem p = c.Problem();
        p.out.output = line + offset;
        ASSERT_TRUE(backend_->Run(&p, 1).ok());
        EXPECT_TRUE(std::equal(want.begin(), want.end(), line + offset))
            << NormKindName(s.kind) << " " << DTypeName(dtype) << ": output at " << offset
            << " bytes past a 64-byte boundary differs from the case's own output";
      }
    }
  }
}

// Short channel runs ([N, C] and [N, C, S] with S <= kShortSpatial) take
// their own vector paths: GroupNorm/InstanceNorm groups as rows with
// per-element parameters, BatchNorm by columns (statistics) and runs of
// channels (output). Every dtype, parameter dtype, unit offset, residual and
// statistics output, against the reference; S = 17 is the first length past
// the short paths.
TEST_P(CpuIsaTest, ShortChannelRunsMatchReference) {
  std::vector<std::string> failures;
  uint64_t seed = 500;
  for (int64_t spatial : {1, 3, 16, 17}) {
    for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      for (DType param_dtype : {DType::kFloat32, dtype}) {
        for (bool unit_offset : {false, true}) {
          for (int variant = 0; variant < 5; ++variant) {
            CaseSpec spec;
            spec.dtype = dtype;
            spec.param_dtype = param_dtype;
            spec.unit_offset = unit_offset;
            spec.return_stats = true;
            spec.params = variant == 3 ? testing::ParamMode::kGammaOnly : testing::ParamMode::kAffine;
            if (variant == 0 || variant == 4) {
              spec.kind = variant == 0 ? NormKind::kGroupNorm : NormKind::kInstanceNorm;
              spec.shape = {7, 48, spatial};
              spec.num_groups = variant == 0 ? 4 : 1;
            } else {
              spec.kind = NormKind::kBatchNorm;
              spec.shape = {61, 37, spatial};  // channel blocks with a partial vector
              spec.use_batch_stats = variant != 2;
              spec.residual = variant == 1;
            }
            ProblemCase c = testing::MakeRandomCase(spec, ++seed);
            for (std::string& f : testing::CompareToReference(*backend_, c)) failures.push_back(std::move(f));
          }
        }
      }
    }
  }
  // Beta cancelling the rest: the double fallback, chosen per element.
  for (int64_t spatial : {1, 3}) {
    for (DType out : {DType::kFloat16, DType::kBFloat16}) {
      for (NormKind kind : {NormKind::kGroupNorm, NormKind::kBatchNorm}) {
        CaseSpec spec;
        spec.kind = kind;
        spec.output_dtype = out;
        spec.shape = {kind == NormKind::kGroupNorm ? int64_t{1} : int64_t{50}, 96, spatial};
        spec.num_groups = kind == NormKind::kGroupNorm ? 2 : 1;
        spec.use_batch_stats = kind == NormKind::kBatchNorm;
        ProblemCase c = testing::MakeRandomCase(spec, 79);
        c.name = std::string(NormKindName(kind)) + " short runs cancelling, S=" + std::to_string(spatial) +
                 ", " + std::string(DTypeName(out));
        SetBetaToCancel(c, 96, spatial);
        for (std::string& f : StrictUlpFailures(*backend_, c)) failures.push_back(std::move(f));
      }
    }
  }
  ExpectNoFailures(failures);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, CpuIsaTest,
                         ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512,
                                           CpuIsa::kAvx512Bf16),
                         [](const ::testing::TestParamInfo<CpuIsa>& info) {
                           return std::string(CpuIsaName(info.param));
                         });

TEST(CpuIsaNames, RoundTrip) {
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16}) {
    CpuIsa parsed;
    ASSERT_TRUE(ParseCpuIsa(CpuIsaName(isa), &parsed));
    EXPECT_EQ(parsed, isa);
  }
  CpuIsa parsed = CpuIsa::kAvx2;
  EXPECT_FALSE(ParseCpuIsa("sse2", &parsed));
  EXPECT_EQ(parsed, CpuIsa::kAvx2);
}

TEST(CpuIsaEnvironment, LowersTheIsa) {
  ASSERT_EQ(setenv("NORMSERVE_CPU_ISA", "scalar", 1), 0);
  EXPECT_EQ(CpuBackend().isa(), CpuIsa::kScalar);
  // An unknown name is ignored, not an error.
  ASSERT_EQ(setenv("NORMSERVE_CPU_ISA", "sse9", 1), 0);
  EXPECT_EQ(CpuBackend().isa(), DetectCpuIsa());
  ASSERT_EQ(unsetenv("NORMSERVE_CPU_ISA"), 0);
  CpuBackendOptions options;
  options.max_isa = CpuIsa::kScalar;
  EXPECT_EQ(CpuBackend(options).isa(), CpuIsa::kScalar);
}

}  // namespace
}  // namespace normserve::kernels
