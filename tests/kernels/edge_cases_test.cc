// What the reference does on the edge cases of every kind and dtype
// (docs/SEMANTICS.md and its "Decisions"): NaN/Inf poisons its group only,
// constant groups and one-element groups give beta (eps > 0) or NaN
// (eps = 0), huge offsets do not cancel, subnormals stay finite.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/kernels/reference.h"
#include "normserve/kernels/testing/parity.h"

namespace normserve::kernels {
namespace {

using testing::ProblemCase;

struct Param {
  NormKind kind;
  DType dtype;
};

class EdgeCaseTest : public ::testing::TestWithParam<Param> {};

bool Has(const ProblemCase& c, const char* what) { return c.name.find(what) != std::string::npos; }

// Kinds whose groups take their statistics from x (all but BATCH_NORM inference).
bool StatsFromInput(const ProblemCase& c) { return c.kind != NormKind::kBatchNorm || c.use_batch_stats; }

// Column (LAYER/RMS) or channel of element i: the index into gamma / beta.
int64_t ParamIndex(const ProblemCase& c, const ProblemGeometry& g, int64_t i) {
  if (c.kind == NormKind::kLayerNorm || c.kind == NormKind::kRmsNorm) return i % g.cols;
  return (i / g.spatial) % g.channels;
}

float Out(const ProblemCase& c, int64_t i) { return LoadAsFloat(c.output.data(), c.output_dtype, i); }

void RunReference(ProblemCase& c) {
  const NormProblem p = c.Problem();
  const KernelStatus s = ValidateProblem(p);
  ASSERT_TRUE(s.ok()) << c.name << ": " << s.message();
  ReferenceNormalize(p);
}

// Relative size of one ulp of the output dtype, for comparing two reference runs.
double UlpBound(DType t, float v) {
  const double rel = t == DType::kFloat32 ? 1e-5 : t == DType::kFloat16 ? 0x1p-10 : 0x1p-7;
  return rel * std::max(1.0, std::fabs(static_cast<double>(v)));
}

TEST_P(EdgeCaseTest, ReferenceFollowsTheContract) {
  const auto [kind, dtype] = GetParam();
  for (ProblemCase& c : testing::EdgeCases(kind, dtype, 3)) {
    SCOPED_TRACE(c.name);
    RunReference(c);
    const NormProblem p = c.Problem();
    const ProblemGeometry g = ComputeGeometry(p);
    const bool rms = kind == NormKind::kRmsNorm;

    if (Has(c, "nan/inf")) {
      std::vector<bool> poisoned(static_cast<size_t>(c.input.NumElements()), false);
      for (int64_t group : {1, 2, 4}) {
        if (group >= g.groups) continue;
        testing::ForEachGroupElement(p, g, group, [&](int64_t i) {
          poisoned[static_cast<size_t>(i)] = StatsFromInput(c) || !std::isfinite(c.input.Get(i));
        });
      }
      for (int64_t i = 0; i < c.input.NumElements(); ++i) {
        if (poisoned[static_cast<size_t>(i)]) {
          // BATCH_NORM inference is elementwise: +-Inf stays Inf, NaN stays NaN.
          EXPECT_TRUE(StatsFromInput(c) ? std::isnan(Out(c, i)) : !std::isfinite(Out(c, i))) << i;
        } else {
          EXPECT_TRUE(std::isfinite(Out(c, i))) << i;
        }
      }
      for (int64_t group : {1, 2, 4}) {
        if (group < g.groups && StatsFromInput(c)) {
          EXPECT_TRUE(std::isnan(c.rstd[static_cast<size_t>(group)]));
        }
      }
    } else if (Has(c, "constant groups") || Has(c, "one element per group")) {
      const bool eps_zero = Has(c, "eps=0");
      const bool constant = Has(c, "constant groups");
      for (int64_t group = 0; group < g.groups; ++group) {
        // Constant groups are the even ones; with RMS_NORM group 2 is all zeros.
        const bool degenerate = !constant || group % 2 == 0;
        const bool zero_rms_group = rms && constant && group % 6 == 2;
        testing::ForEachGroupElement(p, g, group, [&](int64_t i) {
          const float y = Out(c, i);
          if (!degenerate || !StatsFromInput(c)) {
            EXPECT_TRUE(std::isfinite(y)) << i;
          } else if (rms) {
            // x * rsqrt(x^2 + eps) is finite unless x = 0 and eps = 0.
            if (eps_zero && (zero_rms_group || c.input.Get(i) == 0.0f)) {
              EXPECT_TRUE(std::isnan(y)) << i;
            } else {
              EXPECT_TRUE(std::isfinite(y)) << i;
            }
          } else if (eps_zero) {
            EXPECT_TRUE(std::isnan(y)) << i;
          } else {
            // x - mean is exactly 0, so the output is beta rounded once.
            EXPECT_EQ(y, RoundToDType(c.beta.Get(ParamIndex(c, g, i)), c.output_dtype)) << i;
          }
        });
      }
    } else if (Has(c, "huge offset")) {
      if (rms) continue;  // RMS_NORM is not shift-invariant.
      // Shifting every value (and running_mean) by the offset, which element
      // 0 holds, must not change the result. The shifts are exact.
      const float offset = c.input.Get(0);
      ASSERT_GE(offset, 40000.0f);
      ProblemCase shifted = c;
      for (int64_t i = 0; i < c.input.NumElements(); ++i) shifted.input.Set(i, c.input.Get(i) - offset);
      for (int64_t i = 0; c.running_mean.present && i < c.running_mean.NumElements(); ++i) {
        shifted.running_mean.Set(i, c.running_mean.Get(i) - offset);
      }
      RunReference(shifted);
      for (int64_t i = 0; i < c.input.NumElements(); ++i) {
        ASSERT_NEAR(Out(c, i), Out(shifted, i), UlpBound(c.output_dtype, Out(shifted, i))) << i;
      }
    } else {
      // Subnormal inputs and eps = 0 on random data stay finite.
      for (int64_t i = 0; i < c.input.NumElements(); ++i) EXPECT_TRUE(std::isfinite(Out(c, i))) << i;
    }
  }
}

std::vector<Param> AllKindsAndDTypes() {
  std::vector<Param> params;
  for (NormKind kind : {NormKind::kLayerNorm, NormKind::kRmsNorm, NormKind::kBatchNorm, NormKind::kGroupNorm,
                        NormKind::kInstanceNorm}) {
    for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) params.push_back({kind, dtype});
  }
  return params;
}

INSTANTIATE_TEST_SUITE_P(AllKinds, EdgeCaseTest, ::testing::ValuesIn(AllKindsAndDTypes()),
                         [](const ::testing::TestParamInfo<Param>& param_info) {
                           return std::string(NormKindName(param_info.param.kind)) + "_" +
                                  std::string(DTypeName(param_info.param.dtype));
                         });

}  // namespace
}  // namespace normserve::kernels
