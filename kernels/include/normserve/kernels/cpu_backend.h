// The CPU backend: SIMD kernels (AVX-512, AVX2, scalar) picked at run time,
// over a persistent thread pool that splits a batch into contiguous row ranges.
//
// One CpuBackend is shared by the whole server; Run() is thread-safe (calls
// from several threads share the pool). Small batches run on the calling
// thread so a single row does not pay for a wake-up.
#ifndef NORMSERVE_KERNELS_CPU_BACKEND_H_
#define NORMSERVE_KERNELS_CPU_BACKEND_H_

#include <memory>
#include <string>
#include <string_view>

#include "normserve/kernels/backend.h"

namespace normserve::kernels {

// Ordered: each level can do what the ones below it can. kAvx512Bf16 is
// kAvx512 that also rounds BFLOAT16 outputs with AVX512_BF16 instructions.
enum class CpuIsa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Bf16 = 3 };

std::string_view CpuIsaName(CpuIsa isa);  // "scalar", "avx2", "avx512", "avx512_bf16"
bool ParseCpuIsa(std::string_view name, CpuIsa* out);
// The best instruction set this CPU and build support.
CpuIsa DetectCpuIsa();

// How the outputs of large Run() calls (16 MiB and more) are written.
// kStreaming: non-temporal stores, which skip the read of each output line
// that a cached store makes first. kCached: ordinary stores. kAuto: see
// StreamsOutput.
enum class CpuStores : int { kAuto = 0, kCached = 1, kStreaming = 2 };

std::string_view CpuStoresName(CpuStores stores);  // "auto", "cached", "streaming"
bool ParseCpuStores(std::string_view name, CpuStores* out);

// Whether a Run() whose outputs total `run_output_bytes` writes problem p's
// output with non-temporal stores, on instruction set `isa`. Never below 16
// MiB; above it, always with kStreaming, never with kCached, and with kAuto
// for outputs written in runs of at least 2 KiB (a LayerNorm/RMSNorm row, a
// GroupNorm/InstanceNorm group, a BatchNorm channel segment, or a [C, S] row
// where S <= 16); on AVX-512, BFLOAT16 outputs of every kind but RMSNorm
// in runs of at least 8 KiB (until the fifteenth session, no FLOAT16 or
// BFLOAT16 output streamed there). Short runs put each run's reductions between
// two bursts of stores; on the machines this was measured on, non-temporal
// stores held those back more than the saved reads gave
// (docs/cpu-performance.md). The bits are the same either way.
// REQUIRES: p passes ValidateProblem (its shape has the rank its kind needs).
bool StreamsOutput(CpuStores stores, CpuIsa isa, const NormProblem& p, int64_t run_output_bytes);

struct CpuBackendOptions {
  // Worker threads, including the calling thread. 0: the cores available to the process.
  int threads = 0;
  // Highest instruction set to use; the backend uses min(this, DetectCpuIsa()).
  // The environment variable NORMSERVE_CPU_ISA (scalar|avx2|avx512|avx512_bf16)
  // lowers it too.
  CpuIsa max_isa = CpuIsa::kAvx512Bf16;
  // The environment variable NORMSERVE_CPU_STORES (auto|cached|streaming)
  // overrides it.
  CpuStores stores = CpuStores::kAuto;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options = {});
  ~CpuBackend() override;
  CpuBackend(const CpuBackend&) = delete;
  CpuBackend& operator=(const CpuBackend&) = delete;

  std::string_view name() const override { return "cpu"; }
  std::string device_description() const override;
  KernelStatus Run(const NormProblem* problems, size_t count) override;

  // The instruction set, store mode and thread count in use.
  CpuIsa isa() const;
  CpuStores stores() const;
  int threads() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace normserve::kernels

#endif  // NORMSERVE_KERNELS_CPU_BACKEND_H_
