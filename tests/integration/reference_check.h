// Compares a server's NormalizeResponse with the float64 reference
// (normserve::kernels::ReferenceNormalize) computed from the same request,
// using the bounds of docs/SEMANTICS.md: 1 ulp for FLOAT16/BFLOAT16 outputs,
// 1e-5 * max(1, |ref|) for FLOAT32. Test-only; no state.
#ifndef NORMSERVE_TESTS_INTEGRATION_REFERENCE_CHECK_H_
#define NORMSERVE_TESTS_INTEGRATION_REFERENCE_CHECK_H_

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/client/tensor_util.h"
#include "normserve/kernels/problem.h"
#include "normserve/kernels/reference.h"
#include "normserve/v1/normserve.pb.h"

namespace normserve::testing {

inline kernels::TensorView ViewOf(const v1::Tensor& t, bool present) {
  kernels::TensorView v;
  if (!present) return v;
  v.dtype = client::ToKernelDType(t.dtype()).value();
  v.shape.assign(t.shape().begin(), t.shape().end());
  v.data = t.data().data();
  v.byte_size = t.data().size();
  return v;
}

// The reference output of `req` (output dtype bytes).
inline std::string ReferenceOutput(const v1::NormalizeRequest& req) {
  kernels::NormProblem p;
  p.kind = client::ToKernelKind(req.kind()).value();
  p.input = ViewOf(req.input(), true);
  p.gamma = ViewOf(req.gamma(), req.has_gamma());
  p.beta = ViewOf(req.beta(), req.has_beta());
  p.residual = ViewOf(req.residual(), req.has_residual());
  p.running_mean = ViewOf(req.running_mean(), req.has_running_mean());
  p.running_var = ViewOf(req.running_var(), req.has_running_var());
  p.epsilon = req.has_epsilon() ? req.epsilon() : kernels::DefaultEpsilon(p.kind);
  p.normalized_dims = req.normalized_dims() > 0 ? req.normalized_dims() : 1;
  p.num_groups = req.num_groups() > 0 ? req.num_groups() : 1;
  p.use_batch_stats = req.use_batch_stats();
  p.unit_offset = req.unit_offset();
  p.output_dtype = req.output_dtype() == v1::DTYPE_UNSPECIFIED
                       ? p.input.dtype
                       : client::ToKernelDType(req.output_dtype()).value();
  const kernels::KernelStatus valid = kernels::ValidateProblem(p);
  EXPECT_TRUE(valid.ok()) << valid.message();
  if (!valid.ok()) return "";
  const int64_t n = p.input.NumElements();
  std::string out(n * kernels::DTypeSize(p.output_dtype), '\0');
  std::string residual_out(p.residual.present() ? n * kernels::DTypeSize(p.input.dtype) : 0, '\0');
  const int64_t groups = kernels::NumStatGroups(p);
  std::vector<float> mean(groups), rstd(groups), var(groups);
  p.out.output = out.data();
  p.out.residual_out = p.residual.present() ? residual_out.data() : nullptr;
  if (p.kind == kernels::NormKind::kBatchNorm && p.use_batch_stats) {
    p.out.mean = mean.data();
    p.out.variance = var.data();
  }
  kernels::ReferenceNormalize(p);
  return out;
}

// Distance in units in the last place between two 16-bit patterns of the
// same type (ordered so that -0 and +0 are neighbours).
inline int64_t Ulp16(uint16_t a, uint16_t b) {
  auto ordered = [](uint16_t x) -> int64_t { return (x & 0x8000) ? -static_cast<int64_t>(x & 0x7fff) : x; };
  return std::llabs(ordered(a) - ordered(b));
}

// Every element of `got` within the SEMANTICS bound of `want`, both of `dtype`.
inline ::testing::AssertionResult WithinBounds(const std::string& got, const std::string& want,
                                               v1::DType dtype) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "sizes differ: " << got.size() << " vs " << want.size();
  }
  int64_t bad = 0;
  std::string first;
  const kernels::DType kt = client::ToKernelDType(dtype).value();
  const int64_t n = static_cast<int64_t>(got.size() / kernels::DTypeSize(kt));
  for (int64_t i = 0; i < n; ++i) {
    const float g = kernels::LoadAsFloat(got.data(), kt, i);
    const float w = kernels::LoadAsFloat(want.data(), kt, i);
    bool ok;
    if (std::isnan(w) || std::isnan(g)) {
      ok = std::isnan(w) && std::isnan(g);
    } else if (kt == kernels::DType::kFloat32) {
      ok = std::abs(g - w) <= 1e-5f * std::max(1.0f, std::abs(w));
    } else {
      uint16_t gb, wb;
      std::memcpy(&gb, got.data() + 2 * i, 2);
      std::memcpy(&wb, want.data() + 2 * i, 2);
      ok = Ulp16(gb, wb) <= 1;
    }
    if (!ok && bad++ == 0)
      first = "element " + std::to_string(i) + ": got " + std::to_string(g) + ", want " + std::to_string(w);
  }
  if (bad) return ::testing::AssertionFailure() << bad << " of " << n << " out of bounds; first " << first;
  return ::testing::AssertionSuccess();
}

}  // namespace normserve::testing

#endif  // NORMSERVE_TESTS_INTEGRATION_REFERENCE_CHECK_H_
