// Internal to the CPU backend: the per-problem plan that cpu_backend.cc
// prepares once per Run(), and the table of kernels that each instruction set
// (scalar, AVX2, AVX-512) provides for it.
//
// Work is cut into "units" whose outputs do not depend on each other:
//   LAYER/RMS: a row of the [rows, cols] view;
//   GROUP/INSTANCE: a group (n, g), contiguous C/G x S elements;
//   BATCH: a segment (n, c) of S elements, once per-channel statistics are known.
// A unit is always computed by one thread with a reduction order fixed by its
// length, which is what makes results batch- and thread-count invariant.
// A PreparedProblem is written by one thread and then only read, except the
// per-channel BATCH_NORM arrays, which are written by disjoint channel ranges.
#ifndef NORMSERVE_KERNELS_CPU_KERNEL_TABLE_H_
#define NORMSERVE_KERNELS_CPU_KERNEL_TABLE_H_

#include <cstdint>
#include <vector>

#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/problem.h"

namespace normserve::kernels::cpu {

// Elements per statistics chunk. A row is summed chunk by chunk (each chunk
// read twice while it sits in L1) and the chunks are merged in order with
// Chan's formula in double, so long rows cost one read from memory for the
// statistics and the result depends only on the row length.
inline constexpr int64_t kStatsChunk = 4096;

// GROUP/INSTANCE/BATCH_NORM with at most this many elements per channel run
// go through vector paths over whole [C, S] rows instead of one call per run.
inline constexpr int64_t kShortSpatial = 16;

// With |beta| at most this, a FLOAT32 output of the float output pass stays
// within SEMANTICS.md's bound whatever beta cancels (Kernels::kCancelLog2).
inline constexpr float kFloatBetaUnchecked = 8.0f;

// FLOAT32 LayerNorm sums its statistics in float (PreparedProblem::
// float_stats) only where every |gamma| (1 + gamma with unit_offset) is at
// most 2^kFloatStatsGammaLog2 and every |beta| at most 2^kFloatStatsBetaLog2:
// the error bound of Kernels::FloatCenteredSums scales with them.
inline constexpr int kFloatStatsGammaLog2 = 2;
inline constexpr int kFloatStatsBetaLog2 = 1;

struct PreparedProblem {
  const NormProblem* problem = nullptr;
  ProblemGeometry geometry;
  // Units (see above) and elements per unit.
  int64_t units = 0;
  int64_t unit_length = 0;
  // LAYER/RMS parameter offsets per row (adaptive norm).
  RowBroadcast gamma_rows;
  RowBroadcast beta_rows;
  // BATCH_NORM: per channel, the value subtracted, the scale applied after it,
  // and a small correction subtracted after scaling:
  // y = ((x - pivot) * rstd - correction) * gamma + beta.
  std::vector<float> channel_pivot;
  std::vector<float> channel_rstd;
  std::vector<float> channel_correction;
  // The same channel mean and rstd in double, for the double output pass.
  std::vector<double> channel_mean_wide;
  std::vector<double> channel_rstd_wide;
  // GROUP/INSTANCE/BATCH_NORM with a short spatial size (1 < S <=
  // kShortSpatial): per-element copies of the per-channel values over one
  // [C, S] row, so that rows are normalized in vectors: gamma and beta as
  // given (in float, before any unit offset), and for BATCH_NORM (filled after
  // the channel statistics) pivot, rstd and correction.
  std::vector<float> spread_gamma;
  std::vector<float> spread_beta;
  std::vector<float> spread_pivot;
  std::vector<float> spread_rstd;
  std::vector<float> spread_correction;
  // BATCH_NORM with batch statistics and a residual: residual_out already
  // holds h when the output pass runs, so it reads h from there.
  bool input_is_residual_out = false;
  // A FLOAT32 output whose beta has a value beyond kFloatBetaUnchecked
  // (infinities included): its output passes test for cancellation too.
  bool float_beta_large = false;
  // RMSNorm with a FLOAT32 output and some |beta| > 2^kFloatStatsBetaLog2:
  // its squares are summed in double (Kernels::RunSumSquares).
  bool wide_squares = false;
  // FLOAT32 LayerNorm whose statistics may be summed in float
  // (Kernels::FloatCenteredSums): FLOAT32 output, no mean requested, and
  // gamma / beta absent or one row's worth (not adaptive) within
  // 2^kFloatStatsGammaLog2 / 2^kFloatStatsBetaLog2. FLOAT32 RMSNorm the same,
  // with gamma unbounded: its short rows go through Kernels::ShortFloatRows.
  // FLOAT16 / BFLOAT16 RMSNorm with the output in the input's dtype and gamma
  // / beta absent or one row's worth, unbounded: Kernels::ShortHalfRows.
  bool float_stats = false;
  // Write the output with non-temporal stores: set for outputs much larger
  // than the caches, which would otherwise be read before being overwritten.
  bool stream_output = false;
};

struct KernelTable {
  // Computes units [begin, end) of `p`: statistics (LAYER/RMS/GROUP/INSTANCE),
  // residual_out, output and the requested statistics outputs.
  void (*run_units)(const PreparedProblem& p, int64_t begin, int64_t end);
  // BATCH_NORM with batch statistics: computes h (writing residual_out) and the
  // statistics of channels [begin, end), fills the channel_* arrays and the
  // mean / rstd / variance outputs of those channels.
  void (*batch_norm_channel_stats)(PreparedProblem& p, int64_t begin, int64_t end);
  // Whether some |v| of n values of `dtype` at `data` exceeds 2^log2, 0 <=
  // log2 <= 8 (PreparedProblem::float_beta_large and float_stats).
  // Infinities count as above; a NaN need not.
  bool (*any_magnitude_above)(const void* data, DType dtype, int64_t n, int log2);
};

// REQUIRES: the CPU supports `isa` (DetectCpuIsa() >= isa).
const KernelTable& GetKernelTable(CpuIsa isa);

const KernelTable& ScalarKernelTable();
const KernelTable& Avx2KernelTable();
const KernelTable& Avx512KernelTable();
const KernelTable& Avx512Bf16KernelTable();

}  // namespace normserve::kernels::cpu

#endif  // NORMSERVE_KERNELS_CPU_KERNEL_TABLE_H_
