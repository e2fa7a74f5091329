// Edge-case problems (parity.h, EdgeCases): inputs where naive kernels go
// wrong. Values are chosen so the float64 reference and a correct float32
// kernel can agree within the SEMANTICS.md bounds: constant groups use
// dyadic values (their float sums and means are exact, so a correct kernel
// sees a variance of exactly 0, as the reference does), and subnormal cases
// keep eps > 0 (with eps = 0 the float32 variance underflows to 0 where the
// float64 one does not).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "normserve/kernels/testing/parity.h"

namespace normserve::kernels::testing {
namespace {

struct Base {
  CaseSpec spec;
  std::string label;
};

// A small, odd-sized case of the kind with every optional output requested.
std::vector<Base> BaseSpecs(NormKind kind, DType dtype) {
  CaseSpec s;
  s.kind = kind;
  s.dtype = dtype;
  s.params = ParamMode::kAffine;
  s.param_dtype = DType::kFloat32;
  s.return_stats = true;
  switch (kind) {
    case NormKind::kLayerNorm:
    case NormKind::kRmsNorm:
      s.shape = {6, 97};
      return {{s, ""}};
    case NormKind::kGroupNorm:
      s.shape = {2, 6, 5, 3};
      s.num_groups = 3;
      return {{s, ""}};
    case NormKind::kInstanceNorm:
      s.shape = {2, 4, 7};
      return {{s, ""}};
    case NormKind::kBatchNorm: {
      s.shape = {6, 3, 5};
      CaseSpec batch = s;
      batch.use_batch_stats = true;
      return {{s, " running_stats"}, {batch, " batch_stats"}};
    }
  }
  return {};
}

// Shape with one element per normalized group.
std::vector<int64_t> OneElementShape(NormKind kind) {
  switch (kind) {
    case NormKind::kLayerNorm:
    case NormKind::kRmsNorm:
      return {5, 1};
    case NormKind::kBatchNorm:
      return {1, 4};
    case NormKind::kGroupNorm:
    case NormKind::kInstanceNorm:
      return {3, 4};
  }
  return {};
}

// Number of groups and the group geometry of a case.
ProblemGeometry Geometry(ProblemCase& c) { return ComputeGeometry(c.Problem()); }

template <typename Fn>
void ForGroup(ProblemCase& c, int64_t group, Fn fn) {
  const NormProblem p = c.Problem();
  const ProblemGeometry g = ComputeGeometry(p);
  if (group >= g.groups) return;
  int64_t j = 0;
  ForEachGroupElement(p, g, group, [&](int64_t i) { fn(i, j++); });
}

ProblemCase Named(ProblemCase c, const std::string& what, const std::string& label) {
  c.name = "edge " + what + label + ": " + c.name;
  c.ResetOutputs();
  return c;
}

}  // namespace

std::vector<ProblemCase> EdgeCases(NormKind kind, DType dtype, uint64_t seed) {
  std::vector<ProblemCase> cases;
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Base& base : BaseSpecs(kind, dtype)) {
    const CaseSpec& spec = base.spec;

    // Constant groups, dyadic values; with RMS_NORM one of them is all zero.
    for (float eps : {DefaultEpsilon(kind), 0.0f}) {
      CaseSpec s = spec;
      s.epsilon = eps;
      ProblemCase c = MakeRandomCase(s, seed);
      const float values[] = {1.5f, kind == NormKind::kRmsNorm ? 0.0f : -0.375f, 3.0f};
      for (int64_t group = 0, k = 0; group < Geometry(c).groups; group += 2, ++k) {
        ForGroup(c, group, [&](int64_t i, int64_t) { c.input.Set(i, values[k % 3]); });
      }
      if (c.residual.present) c.residual = OwnedTensor();
      cases.push_back(
          Named(std::move(c), eps == 0.0f ? "constant groups eps=0" : "constant groups", base.label));
    }

    // NaN and +-Inf in some groups; the others must be untouched.
    {
      ProblemCase c = MakeRandomCase(spec, seed + 1);
      ForGroup(c, 1, [&](int64_t i, int64_t j) {
        if (j == 2) c.input.Set(i, nan);
      });
      ForGroup(c, 2, [&](int64_t i, int64_t j) {
        if (j == 0) c.input.Set(i, inf);
      });
      ForGroup(c, 4, [&](int64_t i, int64_t j) {
        if (j == 3) c.input.Set(i, -inf);
      });
      cases.push_back(Named(std::move(c), "nan/inf", base.label));
    }

    // Huge offset, small spread: x = base + step * (j % 97) with base 40000
    // (40960 for BFLOAT16, which cannot hold 40000) and a step the input
    // dtype represents exactly at that magnitude. Element 0 holds base.
    {
      CaseSpec s = spec;
      s.shape = kind == NormKind::kBatchNorm ? std::vector<int64_t>{40, 3, 5} : spec.shape;
      ProblemCase c = MakeRandomCase(s, seed + 2);
      const float step = dtype == DType::kFloat32 ? 1.0f : dtype == DType::kFloat16 ? 32.0f : 256.0f;
      const float offset = dtype == DType::kBFloat16 ? 40960.0f : 40000.0f;
      for (int64_t group = 0; group < Geometry(c).groups; ++group) {
        ForGroup(c, group,
                 [&](int64_t i, int64_t j) { c.input.Set(i, offset + step * static_cast<float>(j % 97)); });
      }
      if (c.running_mean.present) {
        for (int64_t i = 0; i < c.running_mean.NumElements(); ++i) {
          c.running_mean.Set(i, offset + 48.0f * step);
          c.running_var.Set(i, 784.0f * step * step);
        }
      }
      c.residual = OwnedTensor();
      cases.push_back(Named(std::move(c), "huge offset", base.label));
    }

    // Subnormal inputs.
    {
      ProblemCase c = MakeRandomCase(spec, seed + 3);
      const float unit = dtype == DType::kFloat16 ? 5.9604644775390625e-8f : 1e-41f;
      for (int64_t i = 0; i < c.input.NumElements(); ++i) {
        c.input.Set(i, unit * static_cast<float>((i * 37 + static_cast<int64_t>(seed)) % 1000 - 500));
      }
      if (c.residual.present) c.residual = OwnedTensor();
      cases.push_back(Named(std::move(c), "subnormal", base.label));
    }

    // One element per group, eps > 0 (outputs are beta) and eps = 0 (NaN).
    for (float eps : {DefaultEpsilon(kind), 0.0f}) {
      CaseSpec s = spec;
      s.shape = OneElementShape(kind);
      s.num_groups = kind == NormKind::kGroupNorm ? 4 : 1;
      s.epsilon = eps;
      ProblemCase c = MakeRandomCase(s, seed + 4);
      cases.push_back(Named(
          std::move(c), eps == 0.0f ? "one element per group eps=0" : "one element per group", base.label));
    }

    // eps = 0 on random data, with a residual.
    {
      CaseSpec s = spec;
      s.epsilon = 0.0f;
      s.residual = true;
      cases.push_back(Named(MakeRandomCase(s, seed + 5), "eps=0", base.label));
    }
  }
  return cases;
}

}  // namespace normserve::kernels::testing
