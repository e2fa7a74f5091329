// Parity harness: random and edge-case problems, and checks of any Backend
// against the float64 reference (docs/SEMANTICS.md bounds) and for batch
// invariance.
//
// No GoogleTest here: the checks return failure messages (empty = pass), so
// GPU tests built as plain executables can use them too. A ProblemCase owns
// every buffer its NormProblem points at; Problem() hands out a view that is
// valid until the case is modified, moved or destroyed. Nothing here is
// shared between threads; use one ProblemCase per thread.
#ifndef NORMSERVE_KERNELS_TESTING_PARITY_H_
#define NORMSERVE_KERNELS_TESTING_PARITY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "normserve/kernels/backend.h"
#include "normserve/kernels/problem.h"
#include "normserve/kernels/types.h"

namespace normserve::kernels::testing {

// A tensor with its own bytes.
struct OwnedTensor {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
  // Absent tensors give a view with data == nullptr.
  bool present = false;

  // A present, zero-filled tensor.
  static OwnedTensor Zeros(DType dtype, std::vector<int64_t> shape);
  int64_t NumElements() const;
  float Get(int64_t i) const { return LoadAsFloat(bytes.data(), dtype, i); }
  // Rounds v to dtype (nearest even) and stores it.
  void Set(int64_t i, float v) { StoreFromFloat(bytes.data(), dtype, i, v); }
  TensorView View() const;
};

// One request with all its buffers. Fields are public: tests build and edit
// cases directly, then call Problem().
struct ProblemCase {
  // Describes how the case was made; prefixes every failure message.
  std::string name;

  NormKind kind = NormKind::kLayerNorm;
  OwnedTensor input;
  OwnedTensor gamma;
  OwnedTensor beta;
  OwnedTensor residual;
  OwnedTensor running_mean;
  OwnedTensor running_var;
  float epsilon = 1e-5f;
  int normalized_dims = 1;
  int num_groups = 1;
  bool use_batch_stats = false;
  bool unit_offset = false;
  DType output_dtype = DType::kFloat32;
  // Ask for mean / rstd. RMS_NORM still gets a mean buffer, which must stay
  // untouched (RMS_NORM never writes mean).
  bool return_stats = false;

  // Outputs, sized by Problem() and pre-filled with a sentinel pattern so
  // that an unwritten value shows up as a mismatch.
  std::vector<uint8_t> output;
  std::vector<uint8_t> residual_out;
  std::vector<float> mean;
  std::vector<float> rstd;
  std::vector<float> variance;

  // A view of this case. When the inputs validate, the outputs are sized as
  // the server sizes them (mean for BATCH_NORM with use_batch_stats even
  // without return_stats, variance only then) and the view points at them;
  // when they do not, the view has no outputs.
  NormProblem Problem();
  // Refills every output with the sentinel.
  void ResetOutputs();
};

// Which scale / shift tensors a random case carries.
enum class ParamMode {
  kNone,
  kGammaOnly,
  kBetaOnly,
  kAffine,
  // LAYER/RMS only (other kinds fall back to kAffine): gamma and beta with
  // the input's leading dims, the non-first ones set to 1 ([B, 1, D]).
  kAdaptivePerSample,
  // LAYER/RMS only: gamma and beta of the input's full shape ([B, T, D]).
  kAdaptivePerPosition,
};
std::string_view ParamModeName(ParamMode m);

struct CaseSpec {
  NormKind kind = NormKind::kLayerNorm;
  DType dtype = DType::kFloat32;
  ParamMode params = ParamMode::kAffine;
  // FLOAT32 or dtype; also the running statistics' dtype.
  DType param_dtype = DType::kFloat32;
  bool unit_offset = false;
  bool residual = false;
  bool return_stats = false;
  // Unset: the input's dtype.
  std::optional<DType> output_dtype;
  std::vector<int64_t> shape = {4, 64};
  // LAYER/RMS.
  int normalized_dims = 1;
  // GROUP_NORM.
  int num_groups = 1;
  // BATCH_NORM: batch statistics instead of running_mean / running_var.
  bool use_batch_stats = false;
  // Unset: DefaultEpsilon(kind).
  std::optional<float> epsilon;
};
std::string DescribeSpec(const CaseSpec& spec);

// A case with random values (a different offset and spread per innermost
// row, so statistics vary) drawn deterministically from `seed`.
// REQUIRES: the spec describes a valid problem.
ProblemCase MakeRandomCase(const CaseSpec& spec, uint64_t seed);

// Every kind x dtype x param mode x residual x return_stats (x batch
// statistics or not for BATCH_NORM), `size` random cases each (size >= 1),
// with random shapes (column counts that are not multiples of 8 or 16,
// single columns, odd spatial sizes), normalized_dims, num_groups, param
// dtypes, unit_offset, output dtypes and sometimes eps = 0.
std::vector<CaseSpec> ParitySweep(uint64_t seed, int size);

// One random case, drawn deterministically from `seed`, weighted to
// LAYER/RMS rows at and around the widths where the CPU paths change (vector
// widths, 2 KiB short rows, 512 and 768 columns, 256-element check blocks,
// 4096-element statistics chunks) or of any width up to 6000, with random
// kind, dtypes, param mode, unit_offset, residual, statistics and eps = 0
// sometimes; a few rows, at most about 60000 elements.
CaseSpec RandomSpec(uint64_t seed);

// Rewrites c's input so that every normalized group (a row; an (n, g) block
// of GROUP/INSTANCE; a BATCH_NORM channel over all samples) holds its own
// mean: m + d and m - d pairs in a random order and one or two elements
// equal to m, all exact in every dtype (as is every partial sum), m and d
// drawn from `seed`. The reference gives the elements at m exactly 0 (times
// gamma, plus beta), so a mean that is rounded anywhere (a merge, a float
// sum) shows up as a value far outside 1 ulp. A residual is zeroed (h = x).
// Appends " exact_means" to the name. REQUIRES: c's inputs validate.
void PlantExactMeans(ProblemCase& c, uint64_t seed);

// Runs `backend` on `c` and the reference on a copy, and compares: output
// within 1 ulp (FLOAT16/BFLOAT16; or, where y = xhat * scale + shift cancels,
// within 1e-5 * (|xhat * scale| + |shift|), the FLOAT32 bound on the terms)
// or 1e-5 * max(1, |ref|) (FLOAT32), NaN
// exactly where the reference has NaN and Inf only where it has the same
// Inf; mean / rstd / variance with the FLOAT32 bound; residual_out bit for
// bit; an RMS_NORM mean buffer untouched. Returns one message per failure
// (at most a few per output, then a count); empty means the backend agrees.
// On return `c` holds the backend's outputs.
std::vector<std::string> CompareToReference(Backend& backend, ProblemCase& c);

// The first `max_shown` failures, one a line, then how many more there were:
// a test's failure message that stays readable when a sweep fails wholesale.
std::string SummarizeFailures(const std::vector<std::string>& failures, size_t max_shown);

// Checks that every sampled row (LAYER/RMS) or sample (GROUP/INSTANCE,
// BATCH_NORM inference) of `c` gets the same output bits computed (1) as
// part of all of `c`, (2) alone, as a one-row problem, and (3) alone inside
// one Run() together with other compatible problems, `c` among them. Up to
// `max_rows` rows are sampled (first, last and random ones from `seed`).
// BATCH_NORM with batch statistics normalizes over the batch, so it has no
// per-row invariance to check and returns no failures.
std::vector<std::string> CheckBatchInvariance(Backend& backend, const ProblemCase& c, uint64_t seed,
                                              int max_rows = 8);

// Edge cases for one kind and input dtype: constant groups (eps default and
// eps = 0), NaN and +-Inf in some groups, huge offsets (40000 + i and the
// like), subnormal inputs, one element per group, eps = 0 on random data.
// BATCH_NORM cases come with and without batch statistics. Statistics are
// requested in every case.
std::vector<ProblemCase> EdgeCases(NormKind kind, DType dtype, uint64_t seed);

// Calls fn(element_index) for every element of group `group` of a valid
// problem (the groups of ProblemGeometry).
template <typename Fn>
void ForEachGroupElement(const NormProblem& p, const ProblemGeometry& g, int64_t group, Fn fn) {
  if (p.kind == NormKind::kBatchNorm) {
    for (int64_t n = 0; n < g.n; ++n) {
      for (int64_t s = 0; s < g.spatial; ++s) fn((n * g.channels + group) * g.spatial + s);
    }
    return;
  }
  for (int64_t j = 0; j < g.group_size; ++j) fn(group * g.group_size + j);
}

// Distance in units in the last place between two FLOAT16 or BFLOAT16 bit
// patterns (+0 and -0 are 0 apart). REQUIRES: neither is NaN.
int64_t HalfUlpDistance(uint16_t a, uint16_t b);

}  // namespace normserve::kernels::testing

#endif  // NORMSERVE_KERNELS_TESTING_PARITY_H_
