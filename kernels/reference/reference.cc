// The float64 reference. Every value is computed in double from the inputs
// as given (FLOAT16 / BFLOAT16 widened exactly), with a two-pass variance,
// and rounded once at the end (round_from_double.h explains why the rounding
// to the half types goes through round-to-odd). Choices the shared contract
// leaves open are listed under "Decisions" in docs/SEMANTICS.md; the ones
// that shape this file:
// - A group (LAYER/RMS row, GROUP/INSTANCE (n, g), BATCH channel with batch
//   statistics) that contains NaN or Inf gets NaN outputs, NaN mean, rstd
//   and variance. BATCH_NORM inference computes no statistics from x, so it
//   is elementwise IEEE arithmetic: Inf in gives +-Inf (or NaN) out.
// - gamma / beta values go through plain IEEE arithmetic (a NaN gamma[j]
//   makes column j NaN in every row), they do not poison the group.
// - unit_offset makes the scale 1 + gamma; without gamma the scale is 1.
// - RMS_NORM never writes mean; BATCH_NORM inference reports running_mean
//   and 1/sqrt(running_var + eps) as its statistics.
#include "normserve/kernels/reference.h"

#include <cmath>
#include <limits>
#include <vector>

#include "round_from_double.h"

namespace normserve::kernels {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double Load(const TensorView& t, int64_t i) { return static_cast<double>(LoadAsFloat(t.data, t.dtype, i)); }

// The values that get normalized: x, or h = round_to_dtype(x + residual)
// (written to residual_out) when a residual is present.
std::vector<double> LoadNormInput(const NormProblem& p, int64_t count) {
  std::vector<double> h(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    double v = Load(p.input, i);
    if (p.residual.present()) {
      // x + r is exact in double for the half types; for FLOAT32 the double
      // sum can only be inexact far below half a float ulp, so one rounding
      // from it is still the correctly rounded sum.
      const float h_rounded = internal::RoundDoubleToDType(v + Load(p.residual, i), p.input.dtype);
      if (p.out.residual_out != nullptr) StoreFromFloat(p.out.residual_out, p.input.dtype, i, h_rounded);
      v = static_cast<double>(h_rounded);
    }
    h[static_cast<size_t>(i)] = v;
  }
  return h;
}

// Scale and shift of one element; `gi` / `bi` index gamma / beta.
struct Affine {
  const NormProblem* p;
  double Scale(int64_t gi) const {
    if (!p->gamma.present()) return 1.0;
    const double g = Load(p->gamma, gi);
    return p->unit_offset ? 1.0 + g : g;
  }
  double Shift(int64_t bi) const { return p->beta.present() ? Load(p->beta, bi) : 0.0; }
};

struct GroupStats {
  double mean = 0;
  double var = 0;
  bool finite = true;
};

// Two-pass mean and biased variance over the elements h[index(j)], j < m.
// RMS (no centering): mean stays 0 and var is mean(x^2).
template <typename Index>
GroupStats ComputeStats(const std::vector<double>& h, int64_t m, Index index, bool center) {
  GroupStats s;
  double sum = 0;
  for (int64_t j = 0; j < m; ++j) {
    const double v = h[static_cast<size_t>(index(j))];
    if (!std::isfinite(v)) s.finite = false;
    sum += v;
  }
  if (!s.finite) {
    s.mean = s.var = kNaN;
    return s;
  }
  s.mean = center ? sum / static_cast<double>(m) : 0.0;
  double sq = 0;
  for (int64_t j = 0; j < m; ++j) {
    const double d = h[static_cast<size_t>(index(j))] - s.mean;
    sq += d * d;
  }
  s.var = std::max(0.0, sq / static_cast<double>(m));
  return s;
}

double Rstd(double var, float epsilon) { return 1.0 / std::sqrt(var + static_cast<double>(epsilon)); }

void WriteStat(float* out, int64_t i, double v) {
  if (out != nullptr) out[i] = static_cast<float>(v);
}

void RowNormalize(const NormProblem& p, const ProblemGeometry& g, const std::vector<double>& h) {
  const bool rms = p.kind == NormKind::kRmsNorm;
  const Affine affine{&p};
  const RowBroadcast gamma_rows =
      p.gamma.present() ? RowBroadcast(p.input.shape, p.gamma.shape, p.normalized_dims) : RowBroadcast();
  const RowBroadcast beta_rows =
      p.beta.present() ? RowBroadcast(p.input.shape, p.beta.shape, p.normalized_dims) : RowBroadcast();
  for (int64_t row = 0; row < g.rows; ++row) {
    const int64_t base = row * g.cols;
    const GroupStats s = ComputeStats(
        h, g.cols, [base](int64_t j) { return base + j; }, !rms);
    const double rstd = s.finite ? Rstd(s.var, p.epsilon) : kNaN;
    const int64_t gamma_base = gamma_rows.Offset(row);
    const int64_t beta_base = beta_rows.Offset(row);
    for (int64_t j = 0; j < g.cols; ++j) {
      const double xhat = (h[static_cast<size_t>(base + j)] - s.mean) * rstd;
      const double y = s.finite ? xhat * affine.Scale(gamma_base + j) + affine.Shift(beta_base + j) : kNaN;
      internal::StoreFromDouble(p.out.output, p.output_dtype, base + j, y);
    }
    if (!rms) WriteStat(p.out.mean, row, s.mean);
    WriteStat(p.out.rstd, row, rstd);
  }
}

void GroupNormalize(const NormProblem& p, const ProblemGeometry& g, const std::vector<double>& h) {
  const Affine affine{&p};
  const int64_t channels_per_group = g.channels / g.num_groups;
  for (int64_t group = 0; group < g.groups; ++group) {
    const int64_t base = group * g.group_size;
    const int64_t first_channel = (group % g.num_groups) * channels_per_group;
    const GroupStats s = ComputeStats(
        h, g.group_size, [base](int64_t j) { return base + j; }, true);
    const double rstd = s.finite ? Rstd(s.var, p.epsilon) : kNaN;
    for (int64_t j = 0; j < g.group_size; ++j) {
      const int64_t c = first_channel + j / g.spatial;
      const double xhat = (h[static_cast<size_t>(base + j)] - s.mean) * rstd;
      const double y = s.finite ? xhat * affine.Scale(c) + affine.Shift(c) : kNaN;
      internal::StoreFromDouble(p.out.output, p.output_dtype, base + j, y);
    }
    WriteStat(p.out.mean, group, s.mean);
    WriteStat(p.out.rstd, group, rstd);
  }
}

void BatchNormalize(const NormProblem& p, const ProblemGeometry& g, const std::vector<double>& h) {
  const Affine affine{&p};
  const int64_t cs = g.channels * g.spatial;
  for (int64_t c = 0; c < g.channels; ++c) {
    // Element j of channel c's group: sample j / S, position j % S.
    const auto index = [&](int64_t j) { return (j / g.spatial) * cs + c * g.spatial + j % g.spatial; };
    GroupStats s;
    if (p.use_batch_stats) {
      s = ComputeStats(h, g.group_size, index, true);
    } else {
      s.mean = Load(p.running_mean, c);
      s.var = Load(p.running_var, c);
    }
    const double rstd = s.finite ? Rstd(s.var, p.epsilon) : kNaN;
    const double scale = affine.Scale(c);
    const double shift = affine.Shift(c);
    for (int64_t j = 0; j < g.group_size; ++j) {
      const int64_t i = index(j);
      const double y = s.finite ? (h[static_cast<size_t>(i)] - s.mean) * rstd * scale + shift : kNaN;
      internal::StoreFromDouble(p.out.output, p.output_dtype, i, y);
    }
    WriteStat(p.out.mean, c, s.mean);
    WriteStat(p.out.rstd, c, rstd);
    if (p.use_batch_stats) WriteStat(p.out.variance, c, s.var);
  }
}

}  // namespace

void ReferenceNormalize(const NormProblem& p) {
  const ProblemGeometry g = ComputeGeometry(p);
  const std::vector<double> h = LoadNormInput(p, p.input.NumElements());
  switch (p.kind) {
    case NormKind::kLayerNorm:
    case NormKind::kRmsNorm:
      RowNormalize(p, g, h);
      return;
    case NormKind::kGroupNorm:
    case NormKind::kInstanceNorm:
      GroupNormalize(p, g, h);
      return;
    case NormKind::kBatchNorm:
      BatchNormalize(p, g, h);
      return;
  }
}

KernelStatus ReferenceBackend::Run(const NormProblem* problems, size_t count) {
  // The reference is for tests and tools, so it re-checks its precondition
  // rather than trusting the caller.
  for (size_t i = 0; i < count; ++i) {
    NORMSERVE_KERNEL_RETURN_IF_ERROR(ValidateProblem(problems[i]));
  }
  for (size_t i = 0; i < count; ++i) ReferenceNormalize(problems[i]);
  return KernelStatus::Ok();
}

}  // namespace normserve::kernels
