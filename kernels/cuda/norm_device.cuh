// Device-side building blocks shared by the CUDA kernels: element types with
// their float conversions, 16-byte packs for vector loads, and reductions.
// Internal to kernels/cuda/; included by .cu files only.
//
// Conversions to FLOAT16 / BFLOAT16 round to nearest even with the hardware
// intrinsics and treat NaN explicitly, so the bits equal types.h's
// FloatToHalfBits / FloatToBFloat16Bits for every input, NaN payloads included.
#ifndef NORMSERVE_KERNELS_CUDA_NORM_DEVICE_CUH_
#define NORMSERVE_KERNELS_CUDA_NORM_DEVICE_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "normserve/kernels/types.h"

namespace normserve::kernels::cuda {

struct F32 {
  using Storage = float;
  static constexpr DType kDType = DType::kFloat32;
  __device__ __forceinline__ static float ToFloat(float v) { return v; }
  __device__ __forceinline__ static float FromFloat(float v) { return v; }
};

struct F16 {
  using Storage = uint16_t;
  static constexpr DType kDType = DType::kFloat16;
  __device__ __forceinline__ static float ToFloat(uint16_t b) { return __half2float(__ushort_as_half(b)); }
  __device__ __forceinline__ static uint16_t FromFloat(float f) {
    if (isnan(f)) {
      // types.h keeps the sign and the top mantissa bits and sets the quiet bit;
      // the cvt instruction would return a canonical NaN instead.
      const uint32_t x = __float_as_uint(f);
      return static_cast<uint16_t>(((x >> 16) & 0x8000u) | 0x7e00u | ((x >> 13) & 0x3ffu));
    }
    return __half_as_ushort(__float2half_rn(f));
  }
};

struct BF16 {
  using Storage = uint16_t;
  static constexpr DType kDType = DType::kBFloat16;
  __device__ __forceinline__ static float ToFloat(uint16_t b) {
    return __uint_as_float(static_cast<uint32_t>(b) << 16);
  }
  __device__ __forceinline__ static uint16_t FromFloat(float f) {
    if (isnan(f)) return static_cast<uint16_t>((__float_as_uint(f) >> 16) | 0x40u);
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
  }
};

// The value of f after one rounding to T, as a float.
template <typename T>
__device__ __forceinline__ float RoundTo(float f) {
  return T::ToFloat(T::FromFloat(f));
}

// N elements loaded or stored as one (or two) vector accesses.
template <typename S, int N>
struct alignas((sizeof(S) * N) < 16 ? (sizeof(S) * N) : 16) Pack {
  S v[N];
};

// Elements per 16-byte vector of the input type.
template <typename T>
inline constexpr int kVecOf = static_cast<int>(16 / sizeof(typename T::Storage));

// Loads up to N elements starting at p into out (zeros past `valid`). `vec`
// promises p is aligned for a Pack and valid == N is then used in one access.
// The values are the same on both paths, so the bits of every result do not
// depend on alignment.
template <typename T, int N>
__device__ __forceinline__ void LoadChunk(const typename T::Storage* p, int valid, bool vec,
                                          float (&out)[N]) {
  using S = typename T::Storage;
  if (vec && valid == N) {
    const Pack<S, N> pk = *reinterpret_cast<const Pack<S, N>*>(p);
#pragma unroll
    for (int k = 0; k < N; ++k) out[k] = T::ToFloat(pk.v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) out[k] = k < valid ? T::ToFloat(p[k]) : 0.0f;
  }
}

template <typename T, int N>
__device__ __forceinline__ void StoreChunk(typename T::Storage* p, int valid, bool vec,
                                           const float (&in)[N]) {
  using S = typename T::Storage;
  if (vec && valid == N) {
    Pack<S, N> pk;
#pragma unroll
    for (int k = 0; k < N; ++k) pk.v[k] = T::FromFloat(in[k]);
    *reinterpret_cast<Pack<S, N>*>(p) = pk;
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) {
      if (k < valid) p[k] = T::FromFloat(in[k]);
    }
  }
}

// Float32 parameters (gamma / beta); nullptr gives `fill`.
template <int N>
__device__ __forceinline__ void LoadParams(const float* p, int valid, bool vec, float fill, float (&out)[N]) {
  if (p == nullptr) {
#pragma unroll
    for (int k = 0; k < N; ++k) out[k] = fill;
    return;
  }
  LoadChunk<F32, N>(p, valid, vec, out);
}

__device__ __forceinline__ bool Aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}
inline bool Aligned16Host(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Butterfly reductions over aligned groups of `width` lanes (a power of two
// <= 32). Every lane of the warp must call them. IEEE addition is
// commutative, so every lane of a group ends with the same bits.
__device__ __forceinline__ float GroupSum(float v, int width) {
  for (int o = width / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float GroupMin(float v, int width) {
  for (int o = width / 2; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float GroupMax(float v, int width) {
  for (int o = width / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double GroupSumDouble(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

enum class ReduceOp { kSum, kMin, kMax };

// Reduction over the whole block: warp butterflies, then every thread folds
// the per-warp results in warp order, so the order is fixed by blockDim.
// `scratch` holds 32 floats. REQUIRES: blockDim.x a multiple of 32; every
// thread calls it.
template <ReduceOp kOp>
__device__ __forceinline__ float BlockReduce(float v, float* scratch) {
  if constexpr (kOp == ReduceOp::kSum) v = GroupSum(v, 32);
  if constexpr (kOp == ReduceOp::kMin) v = GroupMin(v, 32);
  if constexpr (kOp == ReduceOp::kMax) v = GroupMax(v, 32);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  if ((threadIdx.x & 31) == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = static_cast<int>(blockDim.x) / 32;
  float r = scratch[0];
  for (int w = 1; w < warps; ++w) {
    if constexpr (kOp == ReduceOp::kSum) r += scratch[w];
    if constexpr (kOp == ReduceOp::kMin) r = fminf(r, scratch[w]);
    if constexpr (kOp == ReduceOp::kMax) r = fmaxf(r, scratch[w]);
  }
  // Keeps the next reduction from overwriting scratch before all have read it.
  __syncthreads();
  return r;
}

__device__ __forceinline__ double BlockSumDouble(double v, double* scratch) {
  v = GroupSumDouble(v);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  if ((threadIdx.x & 31) == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = static_cast<int>(blockDim.x) / 32;
  double r = scratch[0];
  for (int w = 1; w < warps; ++w) r += scratch[w];
  __syncthreads();
  return r;
}

}  // namespace normserve::kernels::cuda

#endif  // NORMSERVE_KERNELS_CUDA_NORM_DEVICE_CUH_
