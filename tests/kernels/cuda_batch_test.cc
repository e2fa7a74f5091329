// Batching properties of the CUDA backend: batch invariance (a row's bits do
// not depend on what it ran with), many requests in one launch through the
// segment table, misaligned host buffers, concurrent Run() calls on several
// streams, and agreement with the CPU backend (1 ulp for the half types, the
// FLOAT32 bound otherwise). Exits 77 without a GPU.
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cuda_test_util.h"
#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/testing/parity.h"

namespace normserve::kernels {
namespace {

using testing::CaseSpec;
using testing::ParamMode;
using testing::ProblemCase;

constexpr DType kDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

// Hands out outputs computed earlier, so CompareToReference can judge results
// that came from a batched Run().
class ReplayBackend final : public Backend {
 public:
  explicit ReplayBackend(const ProblemCase& done) : done_(done) {}
  std::string_view name() const override { return "cuda (replayed)"; }
  std::string device_description() const override { return "replay"; }
  KernelStatus Run(const NormProblem* problems, size_t count) override {
    if (count != 1) return KernelStatus::Internal("replay takes one problem");
    const NormProblem& p = problems[0];
    std::memcpy(p.out.output, done_.output.data(), done_.output.size());
    if (p.out.residual_out != nullptr) {
      std::memcpy(p.out.residual_out, done_.residual_out.data(), done_.residual_out.size());
    }
    if (p.out.mean != nullptr) std::memcpy(p.out.mean, done_.mean.data(), done_.mean.size() * sizeof(float));
    if (p.out.rstd != nullptr) std::memcpy(p.out.rstd, done_.rstd.data(), done_.rstd.size() * sizeof(float));
    if (p.out.variance != nullptr) {
      std::memcpy(p.out.variance, done_.variance.data(), done_.variance.size() * sizeof(float));
    }
    return KernelStatus::Ok();
  }

 private:
  const ProblemCase& done_;
};

// Runs all cases in one Run() and checks each against the reference.
void CheckBatchedRun(Backend& backend, std::vector<ProblemCase>& cases, const std::string& check,
                     cuda_test::Failures& f) {
  std::vector<NormProblem> problems;
  for (ProblemCase& c : cases) {
    c.ResetOutputs();
    problems.push_back(c.Problem());
  }
  const KernelStatus s = backend.Run(problems.data(), problems.size());
  if (!f.Expect(s.ok(), check, "Run failed: " + s.message())) return;
  for (ProblemCase& c : cases) {
    ReplayBackend replay(c);
    ProblemCase copy = c;
    f.Add(check, testing::CompareToReference(replay, copy));
  }
}

// CPU and CUDA outputs within 1 ulp (half types) or 1e-5 * max(1, |cpu|).
std::vector<std::string> CompareBackends(Backend& cuda, Backend& cpu, const ProblemCase& c) {
  ProblemCase a = c;
  ProblemCase b = c;
  NormProblem pa = a.Problem();
  NormProblem pb = b.Problem();
  std::vector<std::string> failures;
  const KernelStatus sa = cuda.Run(&pa, 1);
  const KernelStatus sb = cpu.Run(&pb, 1);
  if (!sa.ok() || !sb.ok()) return {c.name + ": Run failed: " + sa.message() + " / " + sb.message()};
  const int64_t n = c.input.NumElements();
  for (int64_t i = 0; i < n && failures.size() < 5; ++i) {
    if (c.output_dtype == DType::kFloat32) {
      float x, y;
      std::memcpy(&x, a.output.data() + 4 * i, 4);
      std::memcpy(&y, b.output.data() + 4 * i, 4);
      const bool both_nan = std::isnan(x) && std::isnan(y);
      if (!both_nan && !(std::fabs(x - y) <= 1e-5f * std::fmax(1.0f, std::fabs(y))) && x != y) {
        failures.push_back(c.name + ": element " + std::to_string(i) + " cuda " + std::to_string(x) +
                           " cpu " + std::to_string(y));
      }
    } else {
      uint16_t x, y;
      std::memcpy(&x, a.output.data() + 2 * i, 2);
      std::memcpy(&y, b.output.data() + 2 * i, 2);
      const float fx = LoadAsFloat(&x, c.output_dtype, 0);
      const float fy = LoadAsFloat(&y, c.output_dtype, 0);
      if (std::isnan(fx) || std::isnan(fy)) {
        if (std::isnan(fx) != std::isnan(fy))
          failures.push_back(c.name + ": NaN mismatch at " + std::to_string(i));
      } else if (testing::HalfUlpDistance(x, y) > 1) {
        failures.push_back(c.name + ": element " + std::to_string(i) + " differs by " +
                           std::to_string(testing::HalfUlpDistance(x, y)) + " ulp");
      }
    }
  }
  return failures;
}

int Main() {
  std::unique_ptr<Backend> backend = cuda_test::CudaBackendOrSkip("cuda_batch_test");
  if (backend == nullptr) return cuda_test::kSkipExitCode;
  cuda_test::Failures f;
  uint64_t seed = 100;

  // Batch invariance over the sweep (every kind; BATCH_NORM with batch
  // statistics has nothing to check and passes).
  for (const CaseSpec& spec : testing::ParitySweep(77, 1)) {
    ProblemCase c = testing::MakeRandomCase(spec, seed++);
    f.Add("batch_invariance", testing::CheckBatchInvariance(*backend, c, seed, 4));
  }

  // Many requests in one launch: 96 LAYER_NORM problems with one row length
  // but different row counts, parameter modes, eps, unit_offset and stats
  // share one segment table; a second group with a residual shares another.
  for (DType dtype : kDTypes) {
    std::vector<ProblemCase> cases;
    const ParamMode modes[] = {ParamMode::kNone, ParamMode::kGammaOnly, ParamMode::kAffine,
                               ParamMode::kAdaptivePerSample, ParamMode::kAdaptivePerPosition};
    for (int i = 0; i < 96; ++i) {
      CaseSpec spec;
      spec.kind = i % 4 == 3 ? NormKind::kRmsNorm : NormKind::kLayerNorm;
      spec.dtype = dtype;
      spec.shape = {1 + i % 3, 1 + (i * 7) % 11, 768};
      spec.params = modes[i % 5];
      spec.unit_offset = i % 6 == 1;
      spec.residual = i % 2 == 1;
      spec.return_stats = i % 3 != 0;
      spec.epsilon = i % 5 == 0 ? 1e-3f : 1e-6f;
      cases.push_back(testing::MakeRandomCase(spec, seed++));
    }
    CheckBatchedRun(*backend, cases, std::string("segment_table ") + std::string(DTypeName(dtype)), f);
  }

  // Mixed kinds in one Run(): row norms and grouped norms together.
  {
    std::vector<ProblemCase> cases;
    const NormKind kinds[] = {NormKind::kLayerNorm, NormKind::kGroupNorm, NormKind::kBatchNorm,
                              NormKind::kInstanceNorm, NormKind::kRmsNorm};
    for (int i = 0; i < 15; ++i) {
      CaseSpec spec;
      spec.kind = kinds[i % 5];
      spec.dtype = kDTypes[i % 3];
      spec.shape = spec.kind == NormKind::kLayerNorm || spec.kind == NormKind::kRmsNorm
                       ? std::vector<int64_t>{3, 4096}
                       : std::vector<int64_t>{2, 8, 5, 7};
      spec.num_groups = 4;
      spec.use_batch_stats = i % 2 == 0;
      spec.return_stats = true;
      cases.push_back(testing::MakeRandomCase(spec, seed++));
    }
    CheckBatchedRun(*backend, cases, "mixed_kinds", f);
  }

  // Misaligned host buffers: the same case with every tensor one element
  // off a 16-byte boundary must give the same bits.
  for (DType dtype : kDTypes) {
    CaseSpec spec;
    spec.dtype = dtype;
    spec.shape = {7, 1000};
    spec.residual = true;
    ProblemCase c = testing::MakeRandomCase(spec, seed++);
    ProblemCase aligned = c;
    NormProblem pa = aligned.Problem();
    const KernelStatus sa = backend->Run(&pa, 1);
    const size_t es = DTypeSize(dtype);
    std::vector<uint8_t> x(c.input.bytes.size() + 16), r(x.size()), y(c.output.size() + 16), ro(x.size());
    std::memcpy(x.data() + es, c.input.bytes.data(), c.input.bytes.size());
    std::memcpy(r.data() + es, c.residual.bytes.data(), c.residual.bytes.size());
    NormProblem pm = c.Problem();
    pm.input.data = x.data() + es;
    pm.residual.data = r.data() + es;
    pm.out.output = y.data() + es;
    pm.out.residual_out = ro.data() + es;
    const KernelStatus sm = backend->Run(&pm, 1);
    f.Expect(sa.ok() && sm.ok(), "misaligned_run", sa.message() + sm.message());
    f.Expect(std::memcmp(y.data() + es, aligned.output.data(), aligned.output.size()) == 0,
             "misaligned_output",
             std::string(DTypeName(dtype)) + ": output bits differ from the aligned run");
    f.Expect(std::memcmp(ro.data() + es, aligned.residual_out.data(), aligned.residual_out.size()) == 0,
             "misaligned_residual_out", std::string(DTypeName(dtype)) + ": residual_out differs");
  }

  // Concurrent Run() calls from several threads (streams and pools per slot).
  {
    std::vector<std::vector<std::string>> results(6);
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&, t] {
        for (int k = 0; k < 10; ++k) {
          CaseSpec spec;
          spec.kind = k % 2 ? NormKind::kRmsNorm : NormKind::kLayerNorm;
          spec.dtype = kDTypes[(t + k) % 3];
          spec.shape = {33, 512 + 128 * t};
          ProblemCase c = testing::MakeRandomCase(spec, 1000 + t * 100 + k);
          for (std::string& m : testing::CompareToReference(*backend, c)) results[t].push_back(m);
        }
      });
    }
    for (std::thread& th : threads) th.join();
    for (const auto& r : results) f.Add("concurrent", r);
  }

  // CPU vs CUDA.
  CpuBackend cpu;
  for (const CaseSpec& spec : testing::ParitySweep(31, 1)) {
    ProblemCase c = testing::MakeRandomCase(spec, seed++);
    f.Add("cpu_agreement", CompareBackends(*backend, cpu, c));
  }

  f.Expect(backend->healthy(), "healthy", "backend unhealthy after the tests");
  return f.Finish("cuda_batch_test");
}

}  // namespace
}  // namespace normserve::kernels

int main() { return normserve::kernels::Main(); }
