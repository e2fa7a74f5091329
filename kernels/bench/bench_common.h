// Shared pieces of normserve-kernel-bench: options, one result record, and
// its JSON line (docs/PERFORMANCE.md). The CPU benchmark lives in
// kernel_bench.cc, the CUDA one in ../cuda/cuda_bench.cu; both print records
// through RecordToJson so results from either can be compared by one script.
#ifndef NORMSERVE_KERNELS_BENCH_BENCH_COMMON_H_
#define NORMSERVE_KERNELS_BENCH_BENCH_COMMON_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "normserve/kernels/types.h"

namespace normserve::kernels::bench {

struct BenchOptions {
  // Filters; empty means the default grid (docs/PERFORMANCE.md).
  std::vector<NormKind> kinds;
  std::vector<DType> dtypes;
  std::vector<int64_t> cols;
  std::vector<int64_t> rows;
  std::vector<int> threads;
  // CPU instruction set ("scalar", "avx2", "avx512", "avx512_bf16"); empty = best available.
  std::string isa;
  // CPU output stores ("auto", "cached", "streaming"); empty = the backend's default.
  std::string stores;
  // A small grid that finishes in under a minute.
  bool quick = false;
  // Largest working set (input + output bytes) per case; 0 = backend default
  // (256 MiB on the CPU, 1 GiB on the GPU).
  int64_t max_working_set_bytes = 0;
  // Timed repetitions per case after warm-up; the median is reported.
  int repetitions = 0;
  // Run the peers (oneDNN / PyTorch) where available.
  bool peers = true;
  // CPU: input and output start this many bytes past a 64-byte boundary
  // (the server's tensors start 16 past one: protobuf strings), for the
  // kernel, the copy and the peer alike. 0 to 63.
  int64_t buffer_offset = 0;
  // Stamped into every record.
  std::string git_commit;
  std::string date;
};

struct BenchRecord {
  std::string backend;  // "cpu" or "cuda"
  NormKind kind = NormKind::kLayerNorm;
  DType dtype = DType::kFloat32;
  int64_t rows = 0;
  int64_t cols = 0;
  int threads = 0;            // CPU threads; 0 on the GPU
  std::string isa;            // CPU ISA, empty on the GPU
  std::string stores;         // CPU store mode (CpuStoresName), empty on the GPU
  int64_t buffer_offset = 0;  // CPU: BenchOptions::buffer_offset; written only when not 0
  std::string device;         // CPU model or GPU name
  double seconds = 0;         // median seconds per call
  double gbps = 0;            // bytes moved / seconds / 1e9
  double copy_gbps = 0;       // memcpy / cudaMemcpyAsync D2D of the same bytes, same run
  double frac_of_copy = 0;    // gbps / copy_gbps (CPU out of cache: the median of per-round ratios, TimeCase)
  bool in_cache = false;      // working set below 4x LLC / L2 and not flushed
  std::string peer;           // e.g. "onednn-2.6", "torch-1.13", "torch-2.11-eager"; empty if none
  double peer_gbps = 0;
  std::string git_commit;
  std::string date;
};

// One JSON object, no trailing newline. Peer fields only when peer is set.
std::string RecordToJson(const BenchRecord& r);

// The CUDA benchmark (cuda_bench.cu); defined only when NORMSERVE_HAVE_CUDA.
// Prints one JSON line per case to `out`; returns a process exit code.
int RunCudaBench(const BenchOptions& options, std::FILE* out);

}  // namespace normserve::kernels::bench

#endif  // NORMSERVE_KERNELS_BENCH_BENCH_COMMON_H_
