// LAYER_NORM / RMS_NORM kernels over a segment table, their launchers and the
// dispatcher from runtime sizes to template arguments. Internal to
// kernels/cuda/. Each norm_rows_<dtype>.cu instantiates the dispatcher for one
// input type, so the three compile in parallel.
//
// Layers (docs/cuda-backend.md):
// - RowNormRegKernel: 1..32 lanes per row, the row in registers
//   (kChunks 16-byte vectors per lane), shuffle reductions. Rows <= 1024.
// - RowNormBlockKernel: a block per row; the row is cached in shared memory
//   as the input type when it fits (<= kSmemCacheLimit), else re-read.
// - LaunchRowNormTyped: picks the plan from (cols, dtype) via ChooseRowPlan
//   and the template arguments from the launch's dtypes and flags.
//
// Statistics are two-pass over the cached row in float32. A row whose min
// equals its max is constant: its mean is that value exactly and its
// variance 0, as in the float64 reference (a float sum of copies of a value
// divided by the count need not give the value back).
#ifndef NORMSERVE_KERNELS_CUDA_NORM_ROWS_CUH_
#define NORMSERVE_KERNELS_CUDA_NORM_ROWS_CUH_

#include <cmath>
#include <cstdint>

#include "cuda_check.h"
#include "norm_device.cuh"
#include "norm_launch.h"

namespace normserve::kernels::cuda {

inline constexpr int kRegPlanBlockThreads = 128;
inline constexpr int64_t kSmemCacheLimit = int64_t{160} << 10;

struct RowArgs {
  const RowSegment* segments;
  int num_segments;
  int64_t total_rows;
  int64_t cols;
  int threads_per_row;
};

// Index of the segment holding global row `row` (row_begin ascending).
__device__ __forceinline__ int FindSegment(const RowSegment* segs, int n, int64_t row) {
  int lo = 0;
  int hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (segs[mid].row_begin <= row) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Pointers and settings of one row.
template <typename TIn, typename TOut>
struct RowView {
  const typename TIn::Storage* x;
  const typename TIn::Storage* residual;
  typename TOut::Storage* y;
  typename TIn::Storage* residual_out;
  const float* gamma;
  const float* beta;
  float* mean;
  float* rstd;
  int64_t row;  // within the segment
  float epsilon;
  bool unit_offset;
  // Every base pointer 16-byte aligned and cols a multiple of the vector.
  bool vec;
};

template <typename TIn, typename TOut, bool kResidual>
__device__ __forceinline__ RowView<TIn, TOut> MakeRowView(const RowArgs& a, int64_t global_row) {
  const RowSegment& s = a.segments[FindSegment(a.segments, a.num_segments, global_row)];
  RowView<TIn, TOut> v;
  v.row = global_row - s.row_begin;
  const int64_t offset = v.row * a.cols;
  v.x = static_cast<const typename TIn::Storage*>(s.x) + offset;
  v.y = static_cast<typename TOut::Storage*>(s.y) + offset;
  bool aligned = Aligned16(s.x) && Aligned16(s.y);
  if constexpr (kResidual) {
    v.residual = static_cast<const typename TIn::Storage*>(s.residual) + offset;
    v.residual_out = static_cast<typename TIn::Storage*>(s.residual_out) + offset;
    aligned = aligned && Aligned16(s.residual) && Aligned16(s.residual_out);
  } else {
    v.residual = nullptr;
    v.residual_out = nullptr;
  }
  v.gamma = s.gamma == nullptr ? nullptr : s.gamma + (s.gamma_row ? s.gamma_row[v.row] : 0) * a.cols;
  v.beta = s.beta == nullptr ? nullptr : s.beta + (s.beta_row ? s.beta_row[v.row] : 0) * a.cols;
  aligned = aligned && Aligned16(s.gamma) && Aligned16(s.beta);
  v.mean = s.mean;
  v.rstd = s.rstd;
  v.epsilon = s.epsilon;
  v.unit_offset = s.unit_offset != 0;
  v.vec = aligned && (a.cols % kVecOf<TIn>) == 0;
  return v;
}

// Loads x (and the residual) of one chunk; with a residual, h is rounded to
// the input type and written to residual_out.
template <typename TIn, typename TOut, bool kResidual, int N>
__device__ __forceinline__ void LoadInputChunk(const RowView<TIn, TOut>& v, int64_t col0, int valid,
                                               float (&h)[N]) {
  LoadChunk<TIn, N>(v.x + col0, valid, v.vec, h);
  if constexpr (kResidual) {
    float r[N];
    LoadChunk<TIn, N>(v.residual + col0, valid, v.vec, r);
#pragma unroll
    for (int k = 0; k < N; ++k) h[k] = RoundTo<TIn>(h[k] + r[k]);
    StoreChunk<TIn, N>(v.residual_out + col0, valid, v.vec, h);
  }
}

// y = (h - mean) * rstd * scale + shift for one chunk, stored as TOut.
template <typename TIn, typename TOut, int N>
__device__ __forceinline__ void StoreOutputChunk(const RowView<TIn, TOut>& v, int64_t col0, int valid,
                                                 float mean, float rstd, bool finite, const float (&h)[N]) {
  float g[N];
  float b[N];
  LoadParams<N>(v.gamma == nullptr ? nullptr : v.gamma + col0, valid, v.vec, 1.0f, g);
  LoadParams<N>(v.beta == nullptr ? nullptr : v.beta + col0, valid, v.vec, 0.0f, b);
  const bool unit = v.unit_offset && v.gamma != nullptr;
  float y[N];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const float scale = unit ? 1.0f + g[k] : g[k];
    y[k] = finite ? (h[k] - mean) * rstd * scale + b[k] : __int_as_float(0x7fc00000);
  }
  StoreChunk<TOut, N>(v.y + col0, valid, v.vec, y);
}

// Finishes the statistics from the reduced sums. LayerNorm: `sum` is the sum
// of h and `m2` the sum of squared deviations; RMSNorm: `sum` is the sum of
// squares.
struct RowStats {
  float mean;
  float rstd;
  bool finite;
};

__device__ __forceinline__ float RstdOf(float var, float epsilon) { return 1.0f / sqrtf(var + epsilon); }

template <int kChunks, int N>
__device__ __forceinline__ void ValidCounts(int64_t cols, int lane, int tpr, int (&valid)[kChunks]) {
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int64_t col0 = (static_cast<int64_t>(c) * tpr + lane) * N;
    const int64_t left = cols - col0;
    valid[c] = left <= 0 ? 0 : (left >= N ? N : static_cast<int>(left));
  }
}

// Registers plan: `threads_per_row` lanes per row (a power of two <= 32),
// each holding kChunks vectors. Lane l owns vectors l, l + tpr, l + 2 tpr, ...
// so loads are coalesced.
template <typename TIn, typename TOut, bool kRms, bool kResidual, int kChunks>
__global__ void __launch_bounds__(kRegPlanBlockThreads) RowNormRegKernel(RowArgs a) {
  constexpr int N = kVecOf<TIn>;
  const int tpr = a.threads_per_row;
  const int lane = static_cast<int>(threadIdx.x) & (tpr - 1);
  const int64_t global_row = static_cast<int64_t>(blockIdx.x) * (kRegPlanBlockThreads / tpr) +
                             static_cast<int64_t>(threadIdx.x) / tpr;
  // Lanes past the last row stay to take part in the shuffles.
  const bool active = global_row < a.total_rows;

  int valid[kChunks];
  ValidCounts<kChunks, N>(a.cols, lane, tpr, valid);
  if (!active) {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) valid[c] = 0;
  }
  RowView<TIn, TOut> v{};
  if (active) v = MakeRowView<TIn, TOut, kResidual>(a, global_row);

  float h[kChunks][N];
  float acc = 0.0f;
  float lo = INFINITY;
  float hi = -INFINITY;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int64_t col0 = (static_cast<int64_t>(c) * tpr + lane) * N;
    if (valid[c] > 0) {
      LoadInputChunk<TIn, TOut, kResidual, N>(v, col0, valid[c], h[c]);
    } else {
#pragma unroll
      for (int k = 0; k < N; ++k) h[c][k] = 0.0f;
    }
#pragma unroll
    for (int k = 0; k < N; ++k) {
      acc += kRms ? h[c][k] * h[c][k] : h[c][k];
      if (!kRms && k < valid[c]) {
        lo = fminf(lo, h[c][k]);
        hi = fmaxf(hi, h[c][k]);
      }
    }
  }
  const float cols_f = static_cast<float>(a.cols);
  acc = GroupSum(acc, tpr);
  RowStats st;
  if constexpr (kRms) {
    st.finite = isfinite(acc);
    st.mean = 0.0f;
    st.rstd = st.finite ? RstdOf(acc / cols_f, v.epsilon) : __int_as_float(0x7fc00000);
  } else {
    lo = GroupMin(lo, tpr);
    hi = GroupMax(hi, tpr);
    st.finite = isfinite(acc);
    st.mean = lo == hi ? lo : acc / cols_f;
    float m2 = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float d = h[c][k] - st.mean;
        if (k < valid[c]) m2 += d * d;
      }
    }
    m2 = GroupSum(m2, tpr);
    st.rstd = st.finite ? RstdOf(fmaxf(m2 / cols_f, 0.0f), v.epsilon) : __int_as_float(0x7fc00000);
    if (!st.finite) st.mean = __int_as_float(0x7fc00000);
  }
  if (!active) return;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    if (valid[c] > 0) {
      const int64_t col0 = (static_cast<int64_t>(c) * tpr + lane) * N;
      StoreOutputChunk<TIn, TOut, N>(v, col0, valid[c], st.mean, st.rstd, st.finite, h[c]);
    }
  }
  if (lane == 0) {
    if (!kRms && v.mean != nullptr) v.mean[v.row] = st.mean;
    if (v.rstd != nullptr) v.rstd[v.row] = st.rstd;
  }
}

// Block plan: one block per row; thread t owns vectors t, t + blockDim, ...
// With kSmem the rounded row h is kept in dynamic shared memory (as the
// input type, which holds h exactly); without it h is recomputed from x and
// the residual, which gives the same values.
template <typename TIn, typename TOut, bool kRms, bool kResidual, bool kSmem>
__global__ void __launch_bounds__(1024) RowNormBlockKernel(RowArgs a) {
  constexpr int N = kVecOf<TIn>;
  using S = typename TIn::Storage;
  extern __shared__ uint4 smem_cache_raw[];
  __shared__ float scratch[32];
  S* cache = reinterpret_cast<S*>(smem_cache_raw);

  const int64_t global_row = blockIdx.x;
  const RowView<TIn, TOut> v = MakeRowView<TIn, TOut, kResidual>(a, global_row);
  const int64_t chunks = (a.cols + N - 1) / N;
  const auto valid_of = [&](int64_t j) {
    const int64_t left = a.cols - j * N;
    return left >= N ? N : static_cast<int>(left);
  };
  // The h values of chunk j, from the cache or recomputed.
  const auto fetch = [&](int64_t j, float(&h)[N]) {
    if constexpr (kSmem) {
      LoadChunk<TIn, N>(cache + j * N, N, true, h);
    } else {
      const int valid = valid_of(j);
      LoadChunk<TIn, N>(v.x + j * N, valid, v.vec, h);
      if constexpr (kResidual) {
        float r[N];
        LoadChunk<TIn, N>(v.residual + j * N, valid, v.vec, r);
#pragma unroll
        for (int k = 0; k < N; ++k) h[k] = RoundTo<TIn>(h[k] + r[k]);
      }
    }
  };

  float acc = 0.0f;
  float lo = INFINITY;
  float hi = -INFINITY;
  for (int64_t j = threadIdx.x; j < chunks; j += blockDim.x) {
    const int valid = valid_of(j);
    float h[N];
    LoadInputChunk<TIn, TOut, kResidual, N>(v, j * N, valid, h);
    if constexpr (kSmem) StoreChunk<TIn, N>(cache + j * N, N, true, h);
#pragma unroll
    for (int k = 0; k < N; ++k) {
      acc += kRms ? h[k] * h[k] : h[k];
      if (!kRms && k < valid) {
        lo = fminf(lo, h[k]);
        hi = fmaxf(hi, h[k]);
      }
    }
  }
  const float cols_f = static_cast<float>(a.cols);
  // The reductions' barriers also make the cache visible to every thread.
  acc = BlockReduce<ReduceOp::kSum>(acc, scratch);
  RowStats st;
  if constexpr (kRms) {
    st.finite = isfinite(acc);
    st.mean = 0.0f;
    st.rstd = st.finite ? RstdOf(acc / cols_f, v.epsilon) : __int_as_float(0x7fc00000);
  } else {
    lo = BlockReduce<ReduceOp::kMin>(lo, scratch);
    hi = BlockReduce<ReduceOp::kMax>(hi, scratch);
    st.finite = isfinite(acc);
    st.mean = lo == hi ? lo : acc / cols_f;
    float m2 = 0.0f;
    for (int64_t j = threadIdx.x; j < chunks; j += blockDim.x) {
      const int valid = valid_of(j);
      float h[N];
      fetch(j, h);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float d = h[k] - st.mean;
        if (k < valid) m2 += d * d;
      }
    }
    m2 = BlockReduce<ReduceOp::kSum>(m2, scratch);
    st.rstd = st.finite ? RstdOf(fmaxf(m2 / cols_f, 0.0f), v.epsilon) : __int_as_float(0x7fc00000);
    if (!st.finite) st.mean = __int_as_float(0x7fc00000);
  }
  for (int64_t j = threadIdx.x; j < chunks; j += blockDim.x) {
    float h[N];
    fetch(j, h);
    StoreOutputChunk<TIn, TOut, N>(v, j * N, valid_of(j), st.mean, st.rstd, st.finite, h);
  }
  if (threadIdx.x == 0) {
    if (!kRms && v.mean != nullptr) v.mean[v.row] = st.mean;
    if (v.rstd != nullptr) v.rstd[v.row] = st.rstd;
  }
}

template <typename TIn, typename TOut, bool kRms, bool kResidual, int kChunks>
KernelStatus LaunchRegPlan(const RowArgs& args, cudaStream_t stream) {
  const int rows_per_block = kRegPlanBlockThreads / args.threads_per_row;
  const int64_t blocks = (args.total_rows + rows_per_block - 1) / rows_per_block;
  if (blocks > 0x7fffffff) return KernelStatus::InvalidArgument("too many rows for one launch");
  RowNormRegKernel<TIn, TOut, kRms, kResidual, kChunks>
      <<<static_cast<unsigned>(blocks), kRegPlanBlockThreads, 0, stream>>>(args);
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return KernelStatus::Ok();
}

template <typename TIn, typename TOut, bool kRms, bool kResidual, bool kSmem>
KernelStatus LaunchBlockPlan(const RowArgs& args, const RowPlan& plan, cudaStream_t stream) {
  if (args.total_rows > 0x7fffffff) return KernelStatus::InvalidArgument("too many rows for one launch");
  const auto kernel = RowNormBlockKernel<TIn, TOut, kRms, kResidual, kSmem>;
  const size_t smem = kSmem ? static_cast<size_t>(plan.smem_bytes) : 0;
  if (smem > (size_t{48} << 10)) {
    // Opt in to more than the default 48 KiB of dynamic shared memory.
    NORMSERVE_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  kernel<<<static_cast<unsigned>(args.total_rows), plan.threads_per_row, smem, stream>>>(args);
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return KernelStatus::Ok();
}

template <typename TIn, typename TOut, bool kRms, bool kResidual>
KernelStatus LaunchRowPlan(const RowArgs& args, const RowPlan& plan, cudaStream_t stream) {
  if (plan.block_per_row) {
    if (plan.smem_cache) return LaunchBlockPlan<TIn, TOut, kRms, kResidual, true>(args, plan, stream);
    return LaunchBlockPlan<TIn, TOut, kRms, kResidual, false>(args, plan, stream);
  }
  // Only the chunk counts a plan can pick for this vector width exist: each
  // lane keeps at most 32 floats.
  switch (plan.chunks_per_thread) {
    case 1:
      return LaunchRegPlan<TIn, TOut, kRms, kResidual, 1>(args, stream);
    case 2:
      return LaunchRegPlan<TIn, TOut, kRms, kResidual, 2>(args, stream);
    case 4:
      return LaunchRegPlan<TIn, TOut, kRms, kResidual, 4>(args, stream);
    case 8:
      if constexpr (kVecOf<TIn> * 8 <= 32) return LaunchRegPlan<TIn, TOut, kRms, kResidual, 8>(args, stream);
      break;
    default:
      break;
  }
  return KernelStatus::Internal("row plan with unsupported chunks_per_thread");
}

template <typename TIn, typename TOut>
KernelStatus LaunchRowNormOut(const RowLaunch& l, const RowArgs& args, const RowPlan& plan,
                              cudaStream_t stream) {
  const bool rms = l.kind == NormKind::kRmsNorm;
  if (rms) {
    if (l.residual) return LaunchRowPlan<TIn, TOut, true, true>(args, plan, stream);
    return LaunchRowPlan<TIn, TOut, true, false>(args, plan, stream);
  }
  if (l.residual) return LaunchRowPlan<TIn, TOut, false, true>(args, plan, stream);
  return LaunchRowPlan<TIn, TOut, false, false>(args, plan, stream);
}

// The dispatcher for one input type (instantiated in norm_rows_<dtype>.cu).
template <typename TIn>
KernelStatus LaunchRowNormTyped(const RowLaunch& l, cudaStream_t stream) {
  const RowPlan plan = ChooseRowPlan(l.cols, l.in_dtype);
  RowArgs args{l.segments, l.num_segments, l.total_rows, l.cols, plan.threads_per_row};
  switch (l.out_dtype) {
    case DType::kFloat32:
      return LaunchRowNormOut<TIn, F32>(l, args, plan, stream);
    case DType::kFloat16:
      return LaunchRowNormOut<TIn, F16>(l, args, plan, stream);
    case DType::kBFloat16:
      return LaunchRowNormOut<TIn, BF16>(l, args, plan, stream);
  }
  return KernelStatus::Internal("unknown output dtype");
}

KernelStatus LaunchRowNormF32(const RowLaunch& l, cudaStream_t stream);
KernelStatus LaunchRowNormF16(const RowLaunch& l, cudaStream_t stream);
KernelStatus LaunchRowNormBF16(const RowLaunch& l, cudaStream_t stream);

}  // namespace normserve::kernels::cuda

#endif  // NORMSERVE_KERNELS_CUDA_NORM_ROWS_CUH_
