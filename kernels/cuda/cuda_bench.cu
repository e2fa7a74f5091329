// The CUDA half of normserve-kernel-bench (declared in bench/bench_common.h).
//
// Every case runs the row-norm launcher on device buffers (no staging: this
// measures the kernels), times each call with CUDA events and reports the
// median after warm-up. In the same run it times a device-to-device
// cudaMemcpyAsync that moves the same number of bytes (it reads and writes
// half of them each), which is the bandwidth a memory-bound kernel can hope
// for. Before every timed repetition of a case whose working set is below
// 4x the L2, the L2 is flushed by writing a buffer twice its size, so no
// figure is in-cache.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "../bench/bench_common.h"
#include "cuda_check.h"
#include "norm_device.cuh"
#include "norm_launch.h"

namespace normserve::kernels::bench {
namespace {

using cuda::BF16;
using cuda::F16;
using cuda::F32;

// Values in about [-2, 3): a hash per index, so rows differ and no NaN appears.
template <typename T>
__global__ void FillKernel(typename T::Storage* p, int64_t n, uint32_t seed) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const float v = static_cast<float>(h & 0xffffff) / 16777216.0f * 5.0f - 2.0f;
    p[i] = T::FromFloat(v);
  }
}

KernelStatus Fill(void* p, DType dtype, int64_t n, uint32_t seed) {
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 4096));
  switch (dtype) {
    case DType::kFloat32:
      FillKernel<F32><<<blocks, 256>>>(static_cast<float*>(p), n, seed);
      break;
    case DType::kFloat16:
      FillKernel<F16><<<blocks, 256>>>(static_cast<uint16_t*>(p), n, seed);
      break;
    case DType::kBFloat16:
      FillKernel<BF16><<<blocks, 256>>>(static_cast<uint16_t*>(p), n, seed);
      break;
  }
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return KernelStatus::Ok();
}

// Device memory freed on scope exit.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  KernelStatus Allocate(size_t bytes) {
    NORMSERVE_CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr_, std::max<size_t>(bytes, 256)));
    return KernelStatus::Ok();
  }
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

struct Timer {
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  ~Timer() {
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
  }
};

// Median seconds of `reps` timed calls of fn after `warmup` untimed ones;
// the L2 is flushed before each when `flush` is non-null.
template <typename Fn>
KernelStatus TimeMedian(Fn fn, int warmup, int reps, void* flush, size_t flush_bytes, cudaStream_t stream,
                        double* seconds) {
  Timer t;
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaEventCreate(&t.start));
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaEventCreate(&t.stop));
  for (int i = 0; i < warmup; ++i) NORMSERVE_KERNEL_RETURN_IF_ERROR(fn());
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    if (flush != nullptr)
      NORMSERVE_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(flush, i & 0xff, flush_bytes, stream));
    NORMSERVE_CUDA_RETURN_IF_ERROR(cudaEventRecord(t.start, stream));
    NORMSERVE_KERNEL_RETURN_IF_ERROR(fn());
    NORMSERVE_CUDA_RETURN_IF_ERROR(cudaEventRecord(t.stop, stream));
    NORMSERVE_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(t.stop));
    float ms = 0;
    NORMSERVE_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, t.start, t.stop));
    times.push_back(ms * 1e-3);
  }
  std::sort(times.begin(), times.end());
  *seconds = times[times.size() / 2];
  return KernelStatus::Ok();
}

std::vector<int64_t> DefaultRows(int64_t cols, int64_t bytes_per_row, int64_t max_ws, bool quick) {
  const int64_t max_rows = std::max<int64_t>(1, max_ws / (cols * bytes_per_row));
  std::vector<int64_t> rows;
  if (quick) {
    rows = {std::min<int64_t>(4096, max_rows), max_rows};
  } else {
    for (int64_t r = 1; r < max_rows; r *= 8) rows.push_back(r);
    rows.push_back(max_rows);
  }
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

struct CaseResult {
  double seconds = 0;
  double copy_seconds = 0;
  int64_t bytes = 0;
  int64_t copy_bytes = 0;
  bool flushed = false;
};

KernelStatus RunCase(NormKind kind, DType dtype, int64_t rows, int64_t cols, int warmup, int reps,
                     void* flush, size_t flush_bytes, size_t l2_bytes, cudaStream_t stream,
                     CaseResult* result) {
  const int64_t elements = rows * cols;
  const int64_t tensor_bytes = elements * static_cast<int64_t>(DTypeSize(dtype));
  const int64_t param_bytes = cols * static_cast<int64_t>(sizeof(float));
  DeviceBuffer x, y, gamma, beta, table;
  NORMSERVE_KERNEL_RETURN_IF_ERROR(x.Allocate(static_cast<size_t>(tensor_bytes + 2 * param_bytes)));
  NORMSERVE_KERNEL_RETURN_IF_ERROR(y.Allocate(static_cast<size_t>(tensor_bytes + 2 * param_bytes)));
  NORMSERVE_KERNEL_RETURN_IF_ERROR(gamma.Allocate(static_cast<size_t>(param_bytes)));
  NORMSERVE_KERNEL_RETURN_IF_ERROR(beta.Allocate(static_cast<size_t>(param_bytes)));
  NORMSERVE_KERNEL_RETURN_IF_ERROR(table.Allocate(sizeof(cuda::RowSegment)));
  NORMSERVE_KERNEL_RETURN_IF_ERROR(Fill(x.get(), dtype, elements, 1u));
  NORMSERVE_KERNEL_RETURN_IF_ERROR(Fill(gamma.get(), DType::kFloat32, cols, 2u));
  NORMSERVE_KERNEL_RETURN_IF_ERROR(Fill(beta.get(), DType::kFloat32, cols, 3u));

  cuda::RowSegment seg;
  seg.x = x.get();
  seg.y = y.get();
  seg.gamma = static_cast<const float*>(gamma.get());
  seg.beta = kind == NormKind::kLayerNorm ? static_cast<const float*>(beta.get()) : nullptr;
  seg.rows = rows;
  seg.epsilon = DefaultEpsilon(kind);
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaMemcpy(table.get(), &seg, sizeof(seg), cudaMemcpyHostToDevice));
  cuda::RowLaunch launch;
  launch.kind = kind;
  launch.in_dtype = dtype;
  launch.out_dtype = dtype;
  launch.cols = cols;
  launch.segments = static_cast<const cuda::RowSegment*>(table.get());
  launch.num_segments = 1;
  launch.total_rows = rows;

  // Read x, write y, read gamma (and beta) once.
  result->bytes = 2 * tensor_bytes + (seg.beta != nullptr ? 2 : 1) * param_bytes;
  result->flushed = static_cast<size_t>(result->bytes) < 4 * l2_bytes;
  void* flush_ptr = result->flushed ? flush : nullptr;
  NORMSERVE_KERNEL_RETURN_IF_ERROR(TimeMedian([&] { return cuda::LaunchRowNorm(launch, stream); }, warmup,
                                              reps, flush_ptr, flush_bytes, stream, &result->seconds));
  // The copy reads and writes half of the bytes each.
  result->copy_bytes = (result->bytes / 2 + 15) / 16 * 16;
  NORMSERVE_KERNEL_RETURN_IF_ERROR(TimeMedian(
      [&]() -> KernelStatus {
        NORMSERVE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
            y.get(), x.get(), static_cast<size_t>(result->copy_bytes), cudaMemcpyDeviceToDevice, stream));
        return KernelStatus::Ok();
      },
      warmup, reps, flush_ptr, flush_bytes, stream, &result->copy_seconds));
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return KernelStatus::Ok();
}

}  // namespace

int RunCudaBench(const BenchOptions& options, std::FILE* out) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "cuda bench: no CUDA device found\n");
    return 2;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    std::fprintf(stderr, "cuda bench: cudaGetDeviceProperties failed\n");
    return 1;
  }
  std::vector<NormKind> kinds = options.kinds;
  if (kinds.empty()) kinds = {NormKind::kLayerNorm, NormKind::kRmsNorm};
  std::vector<DType> dtypes = options.dtypes;
  if (dtypes.empty()) dtypes = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};
  std::vector<int64_t> all_cols = options.cols;
  if (all_cols.empty()) {
    all_cols = options.quick ? std::vector<int64_t>{1024, 4096}
                             : std::vector<int64_t>{128, 512, 768, 1024, 2048, 4096, 8192, 16384, 65536};
  }
  const int64_t max_ws = options.max_working_set_bytes > 0 ? options.max_working_set_bytes : int64_t{1} << 30;
  const int reps = options.repetitions > 0 ? options.repetitions : (options.quick ? 10 : 30);
  const int warmup = 3;

  cudaStream_t stream = nullptr;
  void* flush = nullptr;
  const size_t l2_bytes = static_cast<size_t>(std::max(prop.l2CacheSize, 1 << 20));
  const size_t flush_bytes = 2 * l2_bytes;
  if (cudaStreamCreate(&stream) != cudaSuccess || cudaMalloc(&flush, flush_bytes) != cudaSuccess) {
    std::fprintf(stderr, "cuda bench: cannot create a stream and the L2 flush buffer\n");
    return 1;
  }
  int exit_code = 0;
  for (NormKind kind : kinds) {
    if (kind != NormKind::kLayerNorm && kind != NormKind::kRmsNorm) {
      std::fprintf(stderr, "cuda bench: %s is not benchmarked on the GPU (layer_norm, rms_norm only)\n",
                   std::string(NormKindName(kind)).c_str());
      continue;
    }
    for (DType dtype : dtypes) {
      for (int64_t cols : all_cols) {
        const int64_t bytes_per_row = 2 * static_cast<int64_t>(DTypeSize(dtype));
        const std::vector<int64_t> rows_list =
            options.rows.empty() ? DefaultRows(cols, bytes_per_row, max_ws, options.quick) : options.rows;
        for (int64_t rows : rows_list) {
          CaseResult r;
          const KernelStatus s =
              RunCase(kind, dtype, rows, cols, warmup, reps, flush, flush_bytes, l2_bytes, stream, &r);
          if (!s.ok()) {
            std::fprintf(stderr, "cuda bench: %s %s rows=%lld cols=%lld: %s\n",
                         std::string(NormKindName(kind)).c_str(), std::string(DTypeName(dtype)).c_str(),
                         static_cast<long long>(rows), static_cast<long long>(cols), s.message().c_str());
            exit_code = 1;
            continue;
          }
          BenchRecord rec;
          rec.backend = "cuda";
          rec.kind = kind;
          rec.dtype = dtype;
          rec.rows = rows;
          rec.cols = cols;
          rec.device = prop.name;
          rec.seconds = r.seconds;
          rec.gbps = static_cast<double>(r.bytes) / r.seconds / 1e9;
          rec.copy_gbps = 2.0 * static_cast<double>(r.copy_bytes) / r.copy_seconds / 1e9;
          rec.frac_of_copy = rec.gbps / rec.copy_gbps;
          rec.in_cache = false;  // small cases are flushed
          rec.git_commit = options.git_commit;
          rec.date = options.date;
          std::fprintf(out, "%s\n", RecordToJson(rec).c_str());
          std::fflush(out);
        }
      }
    }
  }
  cudaFree(flush);
  cudaStreamDestroy(stream);
  return exit_code;
}

}  // namespace normserve::kernels::bench
