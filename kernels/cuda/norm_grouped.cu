// GROUP_NORM / INSTANCE_NORM / BATCH_NORM kernels, the row-plan choice and
// the row-norm entry point.
//
// A grouped problem normalizes groups whose elements are either one
// contiguous block (GROUP / INSTANCE: (n, g) is C/G channels x S) or N
// strided runs of S (BATCH: channel c over every sample). Groups can hold
// millions of elements, so statistics are computed in three steps whose
// order depends only on the group size:
//   1. GroupPartialStatsKernel: one block per fixed 4096-element chunk of a
//      group, two-pass (sum, then squared deviations) in double.
//   2. GroupFinalizeKernel: one block per group merges the chunk partials
//      with Chan's formula in double, in a fixed tree order.
//   3. GroupApplyKernel: elementwise (x - mean) * rstd * scale + shift.
// Double accumulation makes the mean of a constant group exact, so eps = 0
// gives NaN there, as the float64 reference does.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cuda_check.h"
#include "norm_device.cuh"
#include "norm_launch.h"
#include "norm_rows.cuh"

namespace normserve::kernels::cuda {
namespace {

constexpr int kStatsThreads = 256;
constexpr int kStatsPerThread = 16;
constexpr int64_t kStatsChunk = int64_t{kStatsThreads} * kStatsPerThread;
constexpr int kFinalizeThreads = 256;
constexpr int kApplyThreads = 256;

struct GroupedArgs {
  const void* x;
  const void* residual;
  void* y;
  void* residual_out;
  const float* gamma;
  const float* beta;
  int64_t channels;
  int64_t spatial;
  int64_t num_groups;
  int64_t channels_per_group;
  int64_t group_size;
  int64_t chunks_per_group;
  bool batch_layout;
  float epsilon;
  int32_t unit_offset;
  float* mean;
  float* rstd;
  float* var;
  double* partials;  // [groups * chunks_per_group][3]: count, mean, m2
};

// Element offset of element j of group g.
__device__ __forceinline__ int64_t GroupElementOffset(const GroupedArgs& a, int64_t g, int64_t j) {
  if (a.batch_layout) return (j / a.spatial) * a.channels * a.spatial + g * a.spatial + j % a.spatial;
  return g * a.group_size + j;
}

template <typename TIn, bool kResidual>
__device__ __forceinline__ float LoadH(const GroupedArgs& a, int64_t offset) {
  using S = typename TIn::Storage;
  float v = TIn::ToFloat(static_cast<const S*>(a.x)[offset]);
  if constexpr (kResidual) v = RoundTo<TIn>(v + TIn::ToFloat(static_cast<const S*>(a.residual)[offset]));
  return v;
}

template <typename TIn, bool kResidual>
__global__ void __launch_bounds__(kStatsThreads) GroupPartialStatsKernel(GroupedArgs a) {
  __shared__ double scratch[32];
  const int64_t g = blockIdx.x / a.chunks_per_group;
  const int64_t begin = (blockIdx.x % a.chunks_per_group) * kStatsChunk;
  const int64_t count = a.group_size - begin < kStatsChunk ? a.group_size - begin : kStatsChunk;
  float h[kStatsPerThread];
  double sum = 0.0;
#pragma unroll
  for (int i = 0; i < kStatsPerThread; ++i) {
    const int64_t j = i * kStatsThreads + threadIdx.x;
    h[i] = j < count ? LoadH<TIn, kResidual>(a, GroupElementOffset(a, g, begin + j)) : 0.0f;
    sum += h[i];
  }
  sum = BlockSumDouble(sum, scratch);
  const double mean = sum / static_cast<double>(count);
  double m2 = 0.0;
#pragma unroll
  for (int i = 0; i < kStatsPerThread; ++i) {
    const int64_t j = i * kStatsThreads + threadIdx.x;
    const double d = static_cast<double>(h[i]) - mean;
    if (j < count) m2 += d * d;
  }
  m2 = BlockSumDouble(m2, scratch);
  if (threadIdx.x == 0) {
    double* p = a.partials + static_cast<int64_t>(blockIdx.x) * 3;
    p[0] = static_cast<double>(count);
    p[1] = mean;
    p[2] = m2;
  }
}

// Chan et al.'s merge of (count, mean, m2) b into a.
__device__ __forceinline__ void MergeStats(double& na, double& ma, double& m2a, double nb, double mb,
                                           double m2b) {
  if (nb == 0.0) return;
  if (na == 0.0) {
    na = nb;
    ma = mb;
    m2a = m2b;
    return;
  }
  const double n = na + nb;
  const double delta = mb - ma;
  ma += delta * (nb / n);
  m2a += m2b + delta * delta * (na * nb / n);
  na = n;
}

__global__ void __launch_bounds__(kFinalizeThreads) GroupFinalizeKernel(GroupedArgs a) {
  __shared__ double sn[kFinalizeThreads];
  __shared__ double sm[kFinalizeThreads];
  __shared__ double sm2[kFinalizeThreads];
  const int64_t g = blockIdx.x;
  const int t = threadIdx.x;
  double n = 0.0, m = 0.0, m2 = 0.0;
  for (int64_t k = t; k < a.chunks_per_group; k += kFinalizeThreads) {
    const double* p = a.partials + (g * a.chunks_per_group + k) * 3;
    MergeStats(n, m, m2, p[0], p[1], p[2]);
  }
  sn[t] = n;
  sm[t] = m;
  sm2[t] = m2;
  __syncthreads();
  for (int stride = kFinalizeThreads / 2; stride > 0; stride /= 2) {
    if (t < stride) {
      MergeStats(sn[t], sm[t], sm2[t], sn[t + stride], sm[t + stride], sm2[t + stride]);
    }
    __syncthreads();
  }
  if (t == 0) {
    const bool finite = isfinite(sm[0]) && isfinite(sm2[0]);
    const double var = finite ? fmax(0.0, sm2[0] / sn[0]) : NAN;
    const double rstd = finite ? 1.0 / sqrt(var + static_cast<double>(a.epsilon)) : NAN;
    a.mean[g] = finite ? static_cast<float>(sm[0]) : NAN;
    a.var[g] = static_cast<float>(var);
    a.rstd[g] = static_cast<float>(rstd);
  }
}

template <typename TIn, typename TOut, bool kResidual, int W>
__device__ __forceinline__ void ApplyUnit(const GroupedArgs& a, int64_t i0) {
  using SI = typename TIn::Storage;
  using SO = typename TOut::Storage;
  const int64_t c = (i0 / a.spatial) % a.channels;
  const int64_t sample = i0 / (a.channels * a.spatial);
  const int64_t grp = a.batch_layout ? c : sample * a.num_groups + c / a.channels_per_group;
  const float mean = a.mean[grp];
  const float rstd = a.rstd[grp];
  float scale = 1.0f;
  if (a.gamma != nullptr) scale = a.unit_offset ? 1.0f + a.gamma[c] : a.gamma[c];
  const float shift = a.beta != nullptr ? a.beta[c] : 0.0f;
  // W > 1 only when every pointer is 16-byte aligned and S is a multiple of W.
  constexpr bool kVec = W > 1;
  float h[W];
  LoadChunk<TIn, W>(static_cast<const SI*>(a.x) + i0, W, kVec, h);
  if constexpr (kResidual) {
    float r[W];
    LoadChunk<TIn, W>(static_cast<const SI*>(a.residual) + i0, W, kVec, r);
#pragma unroll
    for (int k = 0; k < W; ++k) h[k] = RoundTo<TIn>(h[k] + r[k]);
    StoreChunk<TIn, W>(static_cast<SI*>(a.residual_out) + i0, W, kVec, h);
  }
  float y[W];
#pragma unroll
  for (int k = 0; k < W; ++k) y[k] = (h[k] - mean) * rstd * scale + shift;
  StoreChunk<TOut, W>(static_cast<SO*>(a.y) + i0, W, kVec, y);
}

template <typename TIn, typename TOut, bool kResidual>
__global__ void __launch_bounds__(kApplyThreads) GroupApplyKernel(GroupedArgs a, int64_t total, bool vec) {
  constexpr int N = kVecOf<TIn>;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vec) {
    for (int64_t u = first; u < total / N; u += step) ApplyUnit<TIn, TOut, kResidual, N>(a, u * N);
  } else {
    for (int64_t u = first; u < total; u += step) ApplyUnit<TIn, TOut, kResidual, 1>(a, u);
  }
}

__global__ void ConvertFloatsKernel(const float* in, int64_t n, uint16_t* half_out, uint16_t* bf16_out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  half_out[i] = F16::FromFloat(in[i]);
  bf16_out[i] = BF16::FromFloat(in[i]);
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename TIn, bool kResidual>
KernelStatus LaunchStats(const GroupedArgs& a, int64_t groups, cudaStream_t stream) {
  const int64_t blocks = groups * a.chunks_per_group;
  if (blocks > 0x7fffffff || groups > 0x7fffffff) {
    return KernelStatus::InvalidArgument("too many normalized groups for one launch");
  }
  GroupPartialStatsKernel<TIn, kResidual><<<static_cast<unsigned>(blocks), kStatsThreads, 0, stream>>>(a);
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  GroupFinalizeKernel<<<static_cast<unsigned>(groups), kFinalizeThreads, 0, stream>>>(a);
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return KernelStatus::Ok();
}

template <typename TIn, typename TOut, bool kResidual>
KernelStatus LaunchApply(const GroupedArgs& a, int64_t total, bool vec, cudaStream_t stream) {
  const int64_t units = vec ? total / kVecOf<TIn> : total;
  // Grid-stride: each element is computed alone, so the grid size cannot change any bits.
  const int64_t blocks = std::min<int64_t>(CeilDiv(units, kApplyThreads), int64_t{1} << 16);
  GroupApplyKernel<TIn, TOut, kResidual>
      <<<static_cast<unsigned>(blocks), kApplyThreads, 0, stream>>>(a, total, vec);
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return KernelStatus::Ok();
}

template <typename TIn, typename TOut>
KernelStatus LaunchGroupedTyped(const GroupedLaunch& l, const GroupedArgs& a, cudaStream_t stream) {
  const bool stats = l.kind != NormKind::kBatchNorm || l.use_batch_stats;
  const int64_t groups = GroupedGroupCount(l);
  const int64_t total = l.n * l.channels * l.spatial;
  constexpr int N = kVecOf<TIn>;
  bool vec = (l.spatial % N) == 0 && Aligned16Host(l.x) && Aligned16Host(l.y);
  if (l.residual != nullptr) vec = vec && Aligned16Host(l.residual) && Aligned16Host(l.residual_out);
  if (l.residual != nullptr) {
    if (stats) NORMSERVE_KERNEL_RETURN_IF_ERROR((LaunchStats<TIn, true>(a, groups, stream)));
    return LaunchApply<TIn, TOut, true>(a, total, vec, stream);
  }
  if (stats) NORMSERVE_KERNEL_RETURN_IF_ERROR((LaunchStats<TIn, false>(a, groups, stream)));
  return LaunchApply<TIn, TOut, false>(a, total, vec, stream);
}

template <typename TIn>
KernelStatus LaunchGroupedIn(const GroupedLaunch& l, const GroupedArgs& a, cudaStream_t stream) {
  switch (l.out_dtype) {
    case DType::kFloat32:
      return LaunchGroupedTyped<TIn, F32>(l, a, stream);
    case DType::kFloat16:
      return LaunchGroupedTyped<TIn, F16>(l, a, stream);
    case DType::kBFloat16:
      return LaunchGroupedTyped<TIn, BF16>(l, a, stream);
  }
  return KernelStatus::Internal("unknown output dtype");
}

}  // namespace

RowPlan ChooseRowPlan(int64_t cols, DType in_dtype) {
  const int vec = static_cast<int>(16 / DTypeSize(in_dtype));
  const int max_chunks = 32 / vec;  // at most 32 floats of row per lane
  const int64_t chunks = (cols + vec - 1) / vec;
  RowPlan plan;
  const auto pow2_at_least = [](int64_t v) {
    int64_t p = 1;
    while (p < v) p *= 2;
    return p;
  };
  if (chunks <= 32) {
    plan.threads_per_row = static_cast<int>(pow2_at_least(chunks));
    plan.chunks_per_thread = 1;
    return plan;
  }
  if (chunks <= int64_t{32} * max_chunks) {
    plan.threads_per_row = 32;
    plan.chunks_per_thread = static_cast<int>(pow2_at_least((chunks + 31) / 32));
    return plan;
  }
  plan.block_per_row = true;
  plan.threads_per_row = static_cast<int>(std::clamp<int64_t>(pow2_at_least(chunks / 4), 128, 1024));
  plan.smem_bytes = chunks * 16;
  plan.smem_cache = plan.smem_bytes <= kSmemCacheLimit;
  return plan;
}

KernelStatus LaunchRowNorm(const RowLaunch& l, cudaStream_t stream) {
  if (l.cols < 1 || l.total_rows < 1 || l.num_segments < 1) {
    return KernelStatus::InvalidArgument("row launch needs cols, rows and segments >= 1");
  }
  switch (l.in_dtype) {
    case DType::kFloat32:
      return LaunchRowNormF32(l, stream);
    case DType::kFloat16:
      return LaunchRowNormF16(l, stream);
    case DType::kBFloat16:
      return LaunchRowNormBF16(l, stream);
  }
  return KernelStatus::Internal("unknown input dtype");
}

int64_t GroupedGroupCount(const GroupedLaunch& l) {
  if (l.kind == NormKind::kBatchNorm) return l.channels;
  return l.n * l.num_groups;
}

int64_t GroupedScratchBytes(const GroupedLaunch& l) {
  const int64_t groups = GroupedGroupCount(l);
  const int64_t group_size = l.n * l.channels * l.spatial / std::max<int64_t>(groups, 1);
  return groups * CeilDiv(group_size, kStatsChunk) * 3 * static_cast<int64_t>(sizeof(double));
}

KernelStatus LaunchGroupedNorm(const GroupedLaunch& l, cudaStream_t stream) {
  if (l.n < 1 || l.channels < 1 || l.spatial < 1 || l.num_groups < 1 || l.channels % l.num_groups != 0) {
    return KernelStatus::InvalidArgument(
        "grouped launch needs n, channels, spatial >= 1 and groups dividing channels");
  }
  if (l.group_mean == nullptr || l.group_rstd == nullptr) {
    return KernelStatus::InvalidArgument("grouped launch needs group_mean and group_rstd");
  }
  const bool stats = l.kind != NormKind::kBatchNorm || l.use_batch_stats;
  if (stats && (l.group_var == nullptr || l.scratch == nullptr)) {
    return KernelStatus::InvalidArgument("grouped launch with statistics needs group_var and scratch");
  }
  GroupedArgs a{};
  a.x = l.x;
  a.residual = l.residual;
  a.y = l.y;
  a.residual_out = l.residual_out;
  a.gamma = l.gamma;
  a.beta = l.beta;
  a.channels = l.channels;
  a.spatial = l.spatial;
  a.batch_layout = l.kind == NormKind::kBatchNorm;
  a.num_groups = a.batch_layout ? l.channels : l.num_groups;
  a.channels_per_group = l.channels / a.num_groups;
  const int64_t groups = GroupedGroupCount(l);
  a.group_size = l.n * l.channels * l.spatial / groups;
  a.chunks_per_group = CeilDiv(a.group_size, kStatsChunk);
  a.epsilon = l.epsilon;
  a.unit_offset = l.unit_offset;
  a.mean = l.group_mean;
  a.rstd = l.group_rstd;
  a.var = l.group_var;
  a.partials = static_cast<double*>(l.scratch);
  switch (l.in_dtype) {
    case DType::kFloat32:
      return LaunchGroupedIn<F32>(l, a, stream);
    case DType::kFloat16:
      return LaunchGroupedIn<F16>(l, a, stream);
    case DType::kBFloat16:
      return LaunchGroupedIn<BF16>(l, a, stream);
  }
  return KernelStatus::Internal("unknown input dtype");
}

KernelStatus LaunchConvertFloats(const float* in, int64_t n, uint16_t* half_out, uint16_t* bf16_out,
                                 cudaStream_t stream) {
  if (n <= 0) return KernelStatus::Ok();
  const int64_t blocks = CeilDiv(n, 256);
  if (blocks > 0x7fffffff) return KernelStatus::InvalidArgument("too many values");
  ConvertFloatsKernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(in, n, half_out, bf16_out);
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return KernelStatus::Ok();
}

}  // namespace normserve::kernels::cuda
