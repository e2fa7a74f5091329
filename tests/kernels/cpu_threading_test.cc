// The CPU backend's thread pool: results are bit for bit the same for 1, 2
// and 4 threads and for any batch composition, Run() is safe from many
// threads at once, and the outputs still match the float64 reference.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/testing/parity.h"

namespace normserve::kernels {
namespace {

using testing::CaseSpec;
using testing::ProblemCase;

// Cases large enough (>= 128 KiB moved) that the backend splits them.
std::vector<CaseSpec> LargeSpecs() {
  std::vector<CaseSpec> specs;
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    CaseSpec s;
    s.dtype = dtype;
    s.return_stats = true;

    s.kind = NormKind::kLayerNorm;
    s.shape = {6, 50, 777};
    s.residual = true;
    s.params = testing::ParamMode::kAdaptivePerSample;
    specs.push_back(s);

    // Short rows go through the statistics four at a time; 301 rows split
    // into parts that start and end inside a group of four.
    s.shape = {301, 200};
    s.residual = false;
    s.params = testing::ParamMode::kAffine;
    specs.push_back(s);
    if (dtype == DType::kFloat32) {
      // Without the mean they take the float sums (Kernels::ShortFloatRows).
      s.return_stats = false;
      specs.push_back(s);
      s.residual = true;
      specs.push_back(s);
      s.residual = false;
      s.return_stats = true;
    }

    s.kind = NormKind::kRmsNorm;
    s.shape = {257, 1024};
    s.residual = false;
    s.params = testing::ParamMode::kGammaOnly;
    s.unit_offset = true;
    specs.push_back(s);
    s.unit_offset = false;

    s.kind = NormKind::kGroupNorm;
    s.shape = {5, 32, 17, 19};
    s.num_groups = 8;
    s.params = testing::ParamMode::kAffine;
    specs.push_back(s);

    s.kind = NormKind::kInstanceNorm;
    s.shape = {7, 12, 601};
    specs.push_back(s);

    s.kind = NormKind::kBatchNorm;
    s.shape = {40, 6, 331};
    s.use_batch_stats = true;
    s.residual = true;
    specs.push_back(s);

    s.use_batch_stats = false;
    s.residual = false;
    specs.push_back(s);

    // Short channel runs ([N, C] and [N, C, 3]): their own vector paths.
    for (int64_t spatial : {1, 3}) {
      s.kind = NormKind::kBatchNorm;
      s.shape = {1001, 40, spatial};
      s.use_batch_stats = false;
      s.residual = false;
      specs.push_back(s);
      s.use_batch_stats = true;
      s.residual = true;
      specs.push_back(s);
      s.kind = NormKind::kGroupNorm;
      s.shape = {1001, 48, spatial};
      s.num_groups = 4;
      s.use_batch_stats = false;
      s.residual = false;
      specs.push_back(s);
    }
  }
  return specs;
}

// Every output buffer of a case, concatenated, for bitwise comparison.
std::vector<uint8_t> OutputBytes(const ProblemCase& c) {
  std::vector<uint8_t> bytes(c.output);
  bytes.insert(bytes.end(), c.residual_out.begin(), c.residual_out.end());
  for (const std::vector<float>* v : {&c.mean, &c.rstd, &c.variance}) {
    const auto* p = reinterpret_cast<const uint8_t*>(v->data());
    bytes.insert(bytes.end(), p, p + v->size() * sizeof(float));
  }
  return bytes;
}

std::vector<uint8_t> RunCase(CpuBackend& backend, ProblemCase& c) {
  c.ResetOutputs();
  NormProblem p = c.Problem();
  EXPECT_TRUE(backend.Run(&p, 1).ok());
  return OutputBytes(c);
}

CpuBackendOptions Threads(int n) {
  CpuBackendOptions o;
  o.threads = n;
  return o;
}

TEST(CpuThreading, BitsDoNotDependOnThreadCount) {
  CpuBackend one(Threads(1)), two(Threads(2)), four(Threads(4));
  uint64_t seed = 1;
  for (const CaseSpec& spec : LargeSpecs()) {
    ProblemCase c = testing::MakeRandomCase(spec, ++seed);
    const std::vector<uint8_t> want = RunCase(one, c);
    EXPECT_TRUE(RunCase(two, c) == want) << testing::DescribeSpec(spec) << ": 2 threads differ from 1";
    EXPECT_TRUE(RunCase(four, c) == want) << testing::DescribeSpec(spec) << ": 4 threads differ from 1";
  }
}

TEST(CpuThreading, BatchInvariantAtEveryThreadCount) {
  for (int threads : {1, 2, 4}) {
    CpuBackend backend(Threads(threads));
    uint64_t seed = 50;
    for (const CaseSpec& spec : LargeSpecs()) {
      const ProblemCase c = testing::MakeRandomCase(spec, ++seed);
      for (const std::string& f : testing::CheckBatchInvariance(backend, c, seed, 4)) {
        ADD_FAILURE() << threads << " threads: " << f;
      }
    }
  }
}

// One Run() over a mixed batch gives each problem the bits it gets alone.
TEST(CpuThreading, MixedBatchEqualsProblemsAlone) {
  CpuBackend backend(Threads(4));
  std::vector<ProblemCase> cases;
  uint64_t seed = 200;
  for (const CaseSpec& spec : LargeSpecs()) cases.push_back(testing::MakeRandomCase(spec, ++seed));
  std::vector<std::vector<uint8_t>> alone;
  for (ProblemCase& c : cases) alone.push_back(RunCase(backend, c));
  std::vector<NormProblem> batch;
  for (ProblemCase& c : cases) {
    c.ResetOutputs();
    batch.push_back(c.Problem());
  }
  ASSERT_TRUE(backend.Run(batch.data(), batch.size()).ok());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_TRUE(OutputBytes(cases[i]) == alone[i]) << cases[i].name << ": differs inside a mixed batch";
  }
}

TEST(CpuThreading, LargeCasesMatchReference) {
  CpuBackend backend(Threads(4));
  uint64_t seed = 300;
  for (const CaseSpec& spec : LargeSpecs()) {
    ProblemCase c = testing::MakeRandomCase(spec, ++seed);
    for (const std::string& f : testing::CompareToReference(backend, c)) ADD_FAILURE() << f;
  }
}

// Many server threads share one backend (and its pool) at once.
TEST(CpuThreading, ConcurrentRunsFromManyThreads) {
  CpuBackend shared(Threads(2));
  CpuBackend serial(Threads(1));
  const std::vector<CaseSpec> specs = LargeSpecs();
  std::vector<std::vector<uint8_t>> want;
  for (size_t i = 0; i < specs.size(); ++i) {
    ProblemCase c = testing::MakeRandomCase(specs[i], 400 + i);
    want.push_back(RunCase(serial, c));
  }
  constexpr int kCallers = 6;
  constexpr int kRounds = 2;
  std::vector<int> mismatches(kCallers, 0);
  std::vector<std::thread> callers;
  for (int t = 0; t < kCallers; ++t) {
    callers.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        for (size_t k = 0; k < specs.size(); ++k) {
          const size_t i = (k + static_cast<size_t>(t)) % specs.size();
          ProblemCase c = testing::MakeRandomCase(specs[i], 400 + i);
          if (RunCase(shared, c) != want[i]) ++mismatches[static_cast<size_t>(t)];
        }
      }
    });
  }
  for (std::thread& t : callers) t.join();
  for (int t = 0; t < kCallers; ++t) EXPECT_EQ(mismatches[static_cast<size_t>(t)], 0) << "caller " << t;
}

// Outputs of 16 MiB and more may be written with non-temporal stores (every
// dtype with CpuStores::kStreaming, rows of 2 KiB and more with kAuto, half
// types only below AVX-512); rows with an odd length start at every
// alignment (BFLOAT16 on AVX2 stores vector pairs). Every store mode
// gives the same bits. Short FLOAT32 rows (256 and 255 columns:
// Kernels::ShortFloatRows) too.
TEST(CpuThreading, StreamedOutputsMatchReferenceAndRowsAlone) {
  struct Shape {
    DType dtype;
    int64_t rows, cols;  // at least 16 MiB of output
  };
  for (const Shape& shape : {Shape{DType::kFloat32, 1031, 4097}, Shape{DType::kFloat16, 2063, 4097},
                             Shape{DType::kBFloat16, 2063, 4097}, Shape{DType::kFloat32, 16400, 256},
                             Shape{DType::kFloat32, 16500, 255}}) {
    const DType dtype = shape.dtype;
    SCOPED_TRACE(std::string(DTypeName(dtype)) + ", " + std::to_string(shape.cols) + " columns");
    CaseSpec spec;
    spec.dtype = dtype;
    spec.params = testing::ParamMode::kAffine;
    spec.shape = {shape.rows, shape.cols};
    ProblemCase c = testing::MakeRandomCase(spec, 17);
    CpuBackendOptions streaming = Threads(2);
    streaming.stores = CpuStores::kStreaming;
    CpuBackend backend(streaming);
    for (const std::string& f : testing::CompareToReference(backend, c)) ADD_FAILURE() << f;
    for (const std::string& f : testing::CheckBatchInvariance(backend, c, 17, 3)) ADD_FAILURE() << f;
    const std::vector<uint8_t> want = RunCase(backend, c);
    for (CpuStores stores : {CpuStores::kAuto, CpuStores::kCached}) {
      CpuBackendOptions options = Threads(2);
      options.stores = stores;
      CpuBackend other(options);
      EXPECT_TRUE(RunCase(other, c) == want) << CpuStoresName(stores) << " stores differ from streaming";
    }
  }
}

TEST(CpuThreading, StoreModeNamesAndEnvironment) {
  for (CpuStores stores : {CpuStores::kAuto, CpuStores::kCached, CpuStores::kStreaming}) {
    CpuStores parsed;
    ASSERT_TRUE(ParseCpuStores(CpuStoresName(stores), &parsed));
    EXPECT_EQ(parsed, stores);
  }
  CpuStores parsed = CpuStores::kCached;
  EXPECT_FALSE(ParseCpuStores("nontemporal", &parsed));
  EXPECT_EQ(parsed, CpuStores::kCached);
  EXPECT_EQ(CpuBackend(Threads(1)).stores(), CpuStores::kAuto);
  ASSERT_EQ(setenv("NORMSERVE_CPU_STORES", "streaming", 1), 0);
  EXPECT_EQ(CpuBackend(Threads(1)).stores(), CpuStores::kStreaming);
  // The startup line and the backend-info metric name it.
  EXPECT_NE(CpuBackend(Threads(1)).device_description().find("stores=streaming"), std::string::npos);
  // An unknown name is ignored, not an error.
  ASSERT_EQ(setenv("NORMSERVE_CPU_STORES", "nontemporal", 1), 0);
  EXPECT_EQ(CpuBackend(Threads(1)).stores(), CpuStores::kAuto);
  ASSERT_EQ(unsetenv("NORMSERVE_CPU_STORES"), 0);
}

// kAuto streams outputs written in runs of 2 KiB or more, and only in Run()
// calls with 16 MiB of output or more; FLOAT16 / BFLOAT16 outputs only below
// AVX-512.
TEST(CpuThreading, AutoStreamsLongRunsOnly) {
  const int64_t large = int64_t{16} << 20;
  auto problem = [](NormKind kind, DType out, std::vector<int64_t> shape, int groups = 1) {
    NormProblem p;
    p.kind = kind;
    p.input.dtype = out;
    p.input.shape = std::move(shape);
    p.output_dtype = out;
    p.num_groups = groups;
    return p;
  };
  struct Case {
    NormProblem p;
    bool streams;
    bool streams_on_avx512;
  };
  const Case cases[] = {
      {problem(NormKind::kLayerNorm, DType::kFloat32, {65536, 512}), true, true},
      {problem(NormKind::kLayerNorm, DType::kFloat32, {65537, 511}), false, false},
      {problem(NormKind::kRmsNorm, DType::kFloat32, {262144, 128}), false, false},
      {problem(NormKind::kRmsNorm, DType::kFloat32, {4096, 4096}), true, true},
      // Half types: 2 KiB is 1024 elements. BFLOAT16 outputs of the centered
      // kinds stream from 8 KiB runs on AVX-512.
      {problem(NormKind::kLayerNorm, DType::kBFloat16, {4096, 4096}), true, true},
      {problem(NormKind::kLayerNorm, DType::kBFloat16, {16384, 4095}), true, false},
      {problem(NormKind::kRmsNorm, DType::kBFloat16, {65536, 1024}), true, true},
      {problem(NormKind::kLayerNorm, DType::kFloat16, {65536, 1024}), true, true},
      {problem(NormKind::kRmsNorm, DType::kBFloat16, {65537, 1023}), false, false},
      {problem(NormKind::kRmsNorm, DType::kFloat16, {262144, 512}), false, false},
      {problem(NormKind::kInstanceNorm, DType::kBFloat16, {64, 64, 1024}), true, false},
      // GroupNorm: groups of 16 and of 2048 elements.
      {problem(NormKind::kGroupNorm, DType::kFloat32, {2048, 1024, 16}, 1024), false, false},
      {problem(NormKind::kGroupNorm, DType::kFloat32, {2048, 1024, 16}, 8), true, true},
      {problem(NormKind::kInstanceNorm, DType::kFloat32, {64, 64, 100}), false, false},
      {problem(NormKind::kInstanceNorm, DType::kFloat32, {64, 64, 4096}), true, true},
      // BatchNorm: short channel runs go along [C, S] rows, longer ones by segment.
      {problem(NormKind::kBatchNorm, DType::kFloat32, {32768, 1024}), true, true},
      {problem(NormKind::kBatchNorm, DType::kFloat32, {32768, 64, 4}), false, false},
      {problem(NormKind::kBatchNorm, DType::kFloat32, {2048, 64, 512}), true, true},
      {problem(NormKind::kBatchNorm, DType::kFloat32, {2048, 64, 500}), false, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(NormKindName(c.p.kind)) + " " + std::string(DTypeName(c.p.output_dtype)) + " " +
                 ShapeString(c.p.input.shape));
    for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16}) {
      SCOPED_TRACE(std::string(CpuIsaName(isa)));
      EXPECT_EQ(StreamsOutput(CpuStores::kAuto, isa, c.p, large),
                isa >= CpuIsa::kAvx512 ? c.streams_on_avx512 : c.streams);
      EXPECT_FALSE(StreamsOutput(CpuStores::kAuto, isa, c.p, large - 1));
      EXPECT_TRUE(StreamsOutput(CpuStores::kStreaming, isa, c.p, large));
      EXPECT_FALSE(StreamsOutput(CpuStores::kStreaming, isa, c.p, large - 1));
      EXPECT_FALSE(StreamsOutput(CpuStores::kCached, isa, c.p, large));
    }
  }
}

// A tiny request and an empty batch run without touching the pool.
TEST(CpuThreading, SmallAndEmptyBatches) {
  CpuBackend backend(Threads(4));
  EXPECT_TRUE(backend.Run(nullptr, 0).ok());
  CaseSpec spec;
  spec.dtype = DType::kBFloat16;
  spec.shape = {1, 4096};
  ProblemCase c = testing::MakeRandomCase(spec, 3);
  for (const std::string& f : testing::CompareToReference(backend, c)) ADD_FAILURE() << f;
}

}  // namespace
}  // namespace normserve::kernels
