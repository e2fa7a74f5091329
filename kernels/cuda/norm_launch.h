// Launchers of the CUDA normalization kernels, on DEVICE pointers. Internal to
// kernels/cuda/ (the backend and the benchmark use it); includes only the CUDA
// runtime API header, so plain C++ translation units can include it.
//
// Row norms (LAYER_NORM / RMS_NORM) run as one launch over a segment table:
// every segment is one problem (its own pointers, rows, parameters, epsilon,
// flags), and all segments of a launch share the kind, dtypes, residual flag
// and row length. The launch plan depends on the row length and the input
// dtype only, never on the row count or the segments, so a row's bits do not
// depend on what it was batched with (docs/cuda-backend.md).
//
// Grouped norms (GROUP_NORM / INSTANCE_NORM / BATCH_NORM) run one problem per
// call: chunked partial statistics, a fixed-order merge in double, then an
// elementwise normalize.
//
// The launchers only enqueue work on `stream` and return the launch error;
// they neither synchronize nor allocate. Thread-safe.
#ifndef NORMSERVE_KERNELS_CUDA_NORM_LAUNCH_H_
#define NORMSERVE_KERNELS_CUDA_NORM_LAUNCH_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "normserve/kernels/status.h"
#include "normserve/kernels/types.h"

namespace normserve::kernels::cuda {

// One problem of a row-norm launch. All pointers are device pointers; any
// alignment works (16-byte aligned rows take the vector path).
struct RowSegment {
  const void* x = nullptr;         // [rows, cols] of the launch's input dtype
  const void* residual = nullptr;  // same; REQUIRED iff the launch has a residual
  void* y = nullptr;               // [rows, cols] of the launch's output dtype
  void* residual_out = nullptr;    // [rows, cols] input dtype; REQUIRED iff residual
  // Parameters as float32; nullptr means absent (gamma 1, beta 0).
  const float* gamma = nullptr;
  const float* beta = nullptr;
  // Adaptive norm: row r uses parameter row gamma_row[r] (elements
  // gamma + gamma_row[r] * cols). nullptr: every row uses row 0.
  const int32_t* gamma_row = nullptr;
  const int32_t* beta_row = nullptr;
  // Per-row statistics (float32), nullptr when not wanted. mean is ignored
  // for RMS_NORM.
  float* mean = nullptr;
  float* rstd = nullptr;
  // First global row of this segment (prefix sum of the rows before it).
  int64_t row_begin = 0;
  int64_t rows = 0;
  float epsilon = 1e-5f;
  // Scale is 1 + gamma (only when gamma is present).
  int32_t unit_offset = 0;
};

struct RowLaunch {
  NormKind kind = NormKind::kLayerNorm;  // kLayerNorm or kRmsNorm
  DType in_dtype = DType::kFloat32;
  DType out_dtype = DType::kFloat32;
  bool residual = false;
  int64_t cols = 0;
  // Device array of num_segments segments, row_begin ascending from 0.
  const RowSegment* segments = nullptr;
  int num_segments = 0;
  int64_t total_rows = 0;
};

// How a row length is computed; a pure function of (cols, input dtype).
struct RowPlan {
  // Threads that share one row: 1..32 (registers, shuffles) or a whole
  // block of 128..1024 threads.
  int threads_per_row = 0;
  // Vectors of 16 bytes of input each thread keeps in registers (warp plans).
  int chunks_per_thread = 0;
  bool block_per_row = false;
  // Block plans: the row is cached in shared memory (as the input dtype)
  // when it fits, else re-read (then from L2, mostly).
  bool smem_cache = false;
  int64_t smem_bytes = 0;
};
RowPlan ChooseRowPlan(int64_t cols, DType in_dtype);

// REQUIRES: launch.cols >= 1, launch.total_rows >= 1, the segment table on
// the device and consistent with total_rows.
KernelStatus LaunchRowNorm(const RowLaunch& launch, cudaStream_t stream);

// One GROUP_NORM / INSTANCE_NORM / BATCH_NORM problem on [n, channels, spatial].
struct GroupedLaunch {
  NormKind kind = NormKind::kGroupNorm;
  DType in_dtype = DType::kFloat32;
  DType out_dtype = DType::kFloat32;
  const void* x = nullptr;
  const void* residual = nullptr;  // optional
  void* y = nullptr;
  void* residual_out = nullptr;  // REQUIRED iff residual
  const float* gamma = nullptr;  // [channels] float32, optional
  const float* beta = nullptr;
  int64_t n = 0;
  int64_t channels = 0;
  int64_t spatial = 0;
  int64_t num_groups = 1;  // GROUP_NORM; INSTANCE_NORM passes channels
  float epsilon = 1e-5f;
  int32_t unit_offset = 0;
  // BATCH_NORM: true = statistics from the batch; false = group_mean and
  // group_rstd already hold running_mean and 1/sqrt(running_var + eps).
  bool use_batch_stats = true;
  // Per-group statistics (device, float32 [groups] each); written when
  // computed from x. group_var receives the biased variance.
  float* group_mean = nullptr;
  float* group_rstd = nullptr;
  float* group_var = nullptr;
  // Scratch of GroupedScratchBytes() bytes (device).
  void* scratch = nullptr;
};

// Normalized groups of a grouped launch: n * num_groups, or channels for BATCH_NORM.
int64_t GroupedGroupCount(const GroupedLaunch& launch);
// Device scratch a grouped launch needs (partial statistics).
int64_t GroupedScratchBytes(const GroupedLaunch& launch);

KernelStatus LaunchGroupedNorm(const GroupedLaunch& launch, cudaStream_t stream);

// Test hook: converts n floats on the device with the kernels' rounding to
// FLOAT16 and BFLOAT16 bits (device pointers).
KernelStatus LaunchConvertFloats(const float* in, int64_t n, uint16_t* half_out, uint16_t* bf16_out,
                                 cudaStream_t stream);

}  // namespace normserve::kernels::cuda

#endif  // NORMSERVE_KERNELS_CUDA_NORM_LAUNCH_H_
