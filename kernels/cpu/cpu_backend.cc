// CpuBackend: picks the kernel table for the instruction set, plans each
// Run() into units (kernel_table.h) and spreads them over the thread pool.
//
// Scheduling: all units of all problems in a Run() form one sequence, cut into
// up to 4 contiguous ranges per thread of about equal bytes, which the workers
// and the calling thread take in turn. Work below kMinBytesPerPart per part stays on fewer
// threads, so a small request (one row) runs inline with no wake-up at all.
// BATCH_NORM with batch statistics first computes per-channel statistics, in
// parallel over channels, and then joins the same unit sequence.
// Which thread runs a unit never changes its bits: a unit is computed whole
// by one thread in an order fixed by its length.
#include "normserve/kernels/cpu_backend.h"

#include <sched.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "kernel_table.h"
#include "thread_pool.h"

namespace normserve::kernels {

std::string_view CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx512Bf16:
      return "avx512_bf16";
  }
  return "unknown";
}

bool ParseCpuIsa(std::string_view name, CpuIsa* out) {
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16}) {
    if (CpuIsaName(isa) == name) {
      *out = isa;
      return true;
    }
  }
  return false;
}

std::string_view CpuStoresName(CpuStores stores) {
  switch (stores) {
    case CpuStores::kAuto:
      return "auto";
    case CpuStores::kCached:
      return "cached";
    case CpuStores::kStreaming:
      return "streaming";
  }
  return "unknown";
}

bool ParseCpuStores(std::string_view name, CpuStores* out) {
  for (CpuStores stores : {CpuStores::kAuto, CpuStores::kCached, CpuStores::kStreaming}) {
    if (CpuStoresName(stores) == name) {
      *out = stores;
      return true;
    }
  }
  return false;
}

CpuIsa DetectCpuIsa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
#if defined(NORMSERVE_CPU_HAVE_AVX512)
  // The AVX-512 kernels use 16-bit masked loads and stores (BW, VL).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
#if defined(NORMSERVE_CPU_HAVE_AVX512_BF16)
    if (__builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bf16"))
      return CpuIsa::kAvx512Bf16;
#endif
    return CpuIsa::kAvx512;
  }
#endif
#if defined(NORMSERVE_CPU_HAVE_AVX2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    return CpuIsa::kAvx2;
  }
#endif
#endif
  return CpuIsa::kScalar;
}

namespace cpu {

const KernelTable& GetKernelTable(CpuIsa isa) {
  switch (isa) {
#if defined(NORMSERVE_CPU_HAVE_AVX512_BF16)
    case CpuIsa::kAvx512Bf16:
      return Avx512Bf16KernelTable();
#endif
#if defined(NORMSERVE_CPU_HAVE_AVX512)
    case CpuIsa::kAvx512:
      return Avx512KernelTable();
#endif
#if defined(NORMSERVE_CPU_HAVE_AVX2)
    case CpuIsa::kAvx2:
      return Avx2KernelTable();
#endif
    default:
      return ScalarKernelTable();
  }
}

}  // namespace cpu

namespace {

// Below this many bytes (read + written) per part, splitting further costs
// more in wake-ups than it saves.
constexpr int64_t kMinBytesPerPart = int64_t{64} << 10;
constexpr int kPartsPerThread = 4;

// Outputs of a Run() above this size may be written with non-temporal stores
// (StreamsOutput): they are far larger than the L2 caches, so caching them
// costs a read of every output line first (and evicts the inputs of the next
// rows). Whether that read costs more than the stores' back-pressure on the
// kernel depends on the arithmetic per byte and on the length of the runs
// stored between two reductions: kAuto streams outputs in runs of at least
// kStreamRunBytes. Out of cache, 128 MiB in, FLOAT32 LayerNorm with gamma
// and beta on one thread took 29.4 ms streaming against 15.7 cached at 64
// columns, 19.1 against 14.6 at 256, and 16.7 against 18.3 at 512 (AVX-512
// machine, eleventh session). Until the fifteenth session FLOAT16 / BFLOAT16
// outputs on AVX-512 stayed cached (BFLOAT16 LayerNorm, 4096 columns:
// 8.2-8.4 ms streaming against 7.0-7.2 cached); since streamed runs prefetch
// the next run for writing (Kernels::PrefetchNextRun), streaming is ahead
// there too: Zen 5, 2 threads, output 16 bytes past a line, run_driver with
// both modes taking turns call by call, ns a row cached / streaming:
// BFLOAT16 LayerNorm 1024 columns 144 / 124-133, 4096 columns 613-652 /
// 561-563, FLOAT16 LayerNorm 1024 columns 174-180 / 139-141, BFLOAT16
// RMSNorm 1024 columns 117-121 / 95-96 (FLOAT32 RMSNorm 1024 columns 179-195
// / 123-125). On Zen 3 (AVX2 only) streaming was ahead from 2 KiB runs on
// already (docs/cpu-performance.md, twelfth session). A 1 KiB run is now
// level (FLOAT32 LayerNorm 256 columns 46-49 cached, 45-47 streaming) and a
// 512-byte one still behind (22 / 30), so the threshold stays.
// BFLOAT16 outputs of the centered kinds (all but RMSNorm) on AVX-512 stream
// from 8 KiB runs only: the benchmark, 2 threads, out of cache, BFLOAT16
// LayerNorm frac_of_copy cached / streaming at 2048 columns: 0.59 / 0.50,
// 0.68 / 0.53 (output 16 bytes past a line), 0.64 / 0.57, 0.61 / 0.48 (on
// a line), level at 1024 and 4096 columns in the same runs, streaming ahead
// from 8192 (the fifteenth session's results in docs/cpu-performance.md).
constexpr int64_t kStreamOutputBytes = int64_t{16} << 20;
constexpr int64_t kStreamRunBytes = int64_t{2} << 10;
constexpr int64_t kStreamRunBytesBf16Centered = int64_t{8} << 10;

// Non-temporal stores are weakly ordered; this makes them visible before a
// part reports completion to the thread that waits for it.
inline void FenceStreamingStores() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

// PreparedProblem::float_stats. The parameters must be one row's worth, so
// that the choice (and so the bits of a row) depends on no other row's
// parameters; with unit_offset, |1 + gamma| <= 2^k holds where |gamma| <=
// 2^k - 1, so gamma is held to 2^(k-1) there. RMSNorm's error is relative
// to the term (x * rstd) * gamma, so gamma is not bounded there; FLOAT16 /
// BFLOAT16 RMSNorm with its output in the input's dtype (Kernels::
// ShortHalfRows) keeps the output pass's double fallback, so beta is
// not bounded there either.
bool FloatStatsAllowed(const NormProblem& p, const ProblemGeometry& g, const cpu::KernelTable& table) {
  const bool rms = p.kind == NormKind::kRmsNorm;
  const bool half_rms = rms && p.input.dtype != DType::kFloat32 && p.output_dtype == p.input.dtype;
  const bool f32 = p.input.dtype == DType::kFloat32 && p.output_dtype == DType::kFloat32;
  if ((p.kind != NormKind::kLayerNorm && !rms) || !(f32 || half_rms) || p.out.mean != nullptr) return false;
  if (p.gamma.present()) {
    const int log2 = p.unit_offset ? cpu::kFloatStatsGammaLog2 - 1 : cpu::kFloatStatsGammaLog2;
    if (p.gamma.NumElements() != g.cols ||
        (!rms && table.any_magnitude_above(p.gamma.data, p.gamma.dtype, g.cols, log2))) {
      return false;
    }
  }
  if (p.beta.present()) {
    if (p.beta.NumElements() != g.cols ||
        (!half_rms &&
         table.any_magnitude_above(p.beta.data, p.beta.dtype, g.cols, cpu::kFloatStatsBetaLog2))) {
      return false;
    }
  }
  return true;
}

int AvailableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        size_t start = line.find_first_not_of(" \t", colon + 1);
        return start == std::string::npos ? std::string() : line.substr(start);
      }
    }
  }
  return "unknown CPU";
}

CpuIsa ChooseIsa(CpuIsa max_isa) {
  CpuIsa isa = std::min(max_isa, DetectCpuIsa());
  if (const char* env = std::getenv("NORMSERVE_CPU_ISA"); env != nullptr && *env != '\0') {
    CpuIsa forced;
    if (ParseCpuIsa(env, &forced)) {
      isa = std::min(isa, forced);
    } else {
      std::fprintf(
          stderr, "normserve: ignoring NORMSERVE_CPU_ISA=%s (expected scalar, avx2, avx512 or avx512_bf16)\n",
          env);
    }
  }
  return isa;
}

CpuStores ChooseStores(CpuStores stores) {
  if (const char* env = std::getenv("NORMSERVE_CPU_STORES"); env != nullptr && *env != '\0') {
    if (!ParseCpuStores(env, &stores)) {
      std::fprintf(stderr,
                   "normserve: ignoring NORMSERVE_CPU_STORES=%s (expected auto, cached or streaming)\n", env);
    }
  }
  return stores;
}

// Bytes read and written per element of a problem (parameters not counted).
int64_t BytesPerElement(const NormProblem& p) {
  int64_t bytes = static_cast<int64_t>(DTypeSize(p.input.dtype) + DTypeSize(p.output_dtype));
  if (p.residual.present()) bytes += 2 * static_cast<int64_t>(DTypeSize(p.input.dtype));
  return bytes;
}

// One entry of the sequence that gets cut into parts.
struct WorkItem {
  int64_t units = 0;
  int64_t cost_per_unit = 0;  // bytes
  int64_t cost_begin = 0;     // prefix sum of the items before it
};

// Splits the items into `parts` contiguous ranges of about equal cost and
// calls fn(item index, unit begin, unit end) for the pieces of part `part`.
template <typename Fn>
void ForEachPieceOfPart(const std::vector<WorkItem>& items, int64_t total, int parts, int part, Fn fn) {
  const int64_t target_begin = total / parts * part + std::min<int64_t>(total % parts, part);
  const int64_t target_end = total / parts * (part + 1) + std::min<int64_t>(total % parts, part + 1);
  for (size_t i = 0; i < items.size(); ++i) {
    const WorkItem& item = items[i];
    if (item.units == 0) continue;
    const int64_t item_end = item.cost_begin + item.units * item.cost_per_unit;
    if (item_end <= target_begin || item.cost_begin >= target_end) continue;
    // A unit belongs to the part in whose range its first byte falls.
    auto first_unit_at = [&](int64_t cost) {
      if (cost <= item.cost_begin) return int64_t{0};
      const int64_t u = (cost - item.cost_begin + item.cost_per_unit - 1) / item.cost_per_unit;
      return std::min(u, item.units);
    };
    const int64_t begin = first_unit_at(target_begin);
    const int64_t end = first_unit_at(target_end);
    if (begin < end) fn(i, begin, end);
  }
}

}  // namespace

bool StreamsOutput(CpuStores stores, CpuIsa isa, const NormProblem& p, int64_t run_output_bytes) {
  if (run_output_bytes < kStreamOutputBytes || stores == CpuStores::kCached) return false;
  if (stores == CpuStores::kStreaming) return true;
  // The elements each output loop writes in one go (norm_kernels_impl.h):
  // a row, a group, or for BatchNorm a [C, S] row of short channel runs
  // (BatchElements) and a channel segment otherwise.
  const ProblemGeometry g = ComputeGeometry(p);
  const int64_t run = p.kind == NormKind::kBatchNorm && g.spatial > cpu::kShortSpatial ? g.spatial : g.cols;
  const int64_t run_bytes = run * static_cast<int64_t>(DTypeSize(p.output_dtype));
  if (p.output_dtype == DType::kBFloat16 && p.kind != NormKind::kRmsNorm && isa >= CpuIsa::kAvx512)
    return run_bytes >= kStreamRunBytesBf16Centered;
  return run_bytes >= kStreamRunBytes;
}

struct CpuBackend::Impl {
  explicit Impl(const CpuBackendOptions& options)
      : isa(ChooseIsa(options.max_isa)),
        stores(ChooseStores(options.stores)),
        table(cpu::GetKernelTable(isa)),
        pool(options.threads > 0 ? options.threads : AvailableCores()),
        model(CpuModelName()) {}

  // Runs fn(item, begin, end) over the items' units on up to pool.threads() parts.
  template <typename Fn>
  void Parallel(const std::vector<WorkItem>& items, Fn fn) {
    int64_t total = 0, units = 0;
    for (const WorkItem& item : items) {
      total += item.units * item.cost_per_unit;
      units += item.units;
    }
    if (total == 0) return;
    // A few parts per thread, taken first come first served: a thread that
    // is slow (preempted on a busy machine) leaves its remaining parts to the
    // others instead of holding up the whole call. Parts stay contiguous row
    // ranges, and which thread runs a row never changes its bits. No more
    // parts than units: a unit is never split, so one large row stays on the
    // calling thread instead of going to a worker that must be woken (one
    // FLOAT32 row of 16384 at 2 threads took 11.8 us median that way, 3.2 on
    // one thread).
    const int parts = static_cast<int>(std::clamp<int64_t>(std::min(total / kMinBytesPerPart, units), 1,
                                                           int64_t{kPartsPerThread} * pool.threads()));
    if (pool.threads() == 1 && parts > 1) {
      ForEachPieceOfPart(items, total, 1, 0, fn);
      FenceStreamingStores();
      return;
    }
    if (parts == 1) {
      // No std::function (which may allocate) and no pool on the one-row path.
      ForEachPieceOfPart(items, total, 1, 0, fn);
      FenceStreamingStores();
      return;
    }
    const std::function<void(int)> body = [&](int part) {
      ForEachPieceOfPart(items, total, parts, part, fn);
      FenceStreamingStores();
    };
    pool.ParallelFor(parts, body);
  }

  const CpuIsa isa;
  const CpuStores stores;
  const cpu::KernelTable& table;
  cpu::ThreadPool pool;
  const std::string model;
};

CpuBackend::CpuBackend(const CpuBackendOptions& options) : impl_(std::make_unique<Impl>(options)) {}
CpuBackend::~CpuBackend() = default;

CpuIsa CpuBackend::isa() const { return impl_->isa; }
CpuStores CpuBackend::stores() const { return impl_->stores; }
int CpuBackend::threads() const { return impl_->pool.threads(); }

std::string CpuBackend::device_description() const {
  return impl_->model + " (" + std::string(CpuIsaName(impl_->isa)) + ", " + std::to_string(threads()) +
         " threads, stores=" + std::string(CpuStoresName(impl_->stores)) + ")";
}

KernelStatus CpuBackend::Run(const NormProblem* problems, size_t count) {
  // Reused per calling thread so that a small request allocates nothing.
  // Plain references, because the workers must see this thread's copies
  // (naming a thread_local inside the lambdas would give them their own).
  thread_local std::vector<cpu::PreparedProblem> prepared_storage;
  thread_local std::vector<WorkItem> items_storage;
  std::vector<cpu::PreparedProblem>& prepared = prepared_storage;
  std::vector<WorkItem>& items = items_storage;
  prepared.clear();
  prepared.resize(count);
  bool any_batch_stats = false;
  for (size_t i = 0; i < count; ++i) {
    const NormProblem& p = problems[i];
    cpu::PreparedProblem& pp = prepared[i];
    pp.problem = &p;
    pp.geometry = ComputeGeometry(p);
    const ProblemGeometry& g = pp.geometry;
    pp.float_stats = FloatStatsAllowed(p, g, impl_->table);
    // float_stats bounds |beta| by 2 already where the output is FLOAT32.
    if (p.output_dtype == DType::kFloat32 && p.beta.present() && !pp.float_stats) {
      pp.float_beta_large =
          impl_->table.any_magnitude_above(p.beta.data, p.beta.dtype, p.beta.NumElements(), 3);
      static_assert(cpu::kFloatBetaUnchecked == 8.0f, "2^3");
      static_assert(cpu::kFloatStatsBetaLog2 <= 3, "float_stats implies !float_beta_large");
      pp.wide_squares = p.kind == NormKind::kRmsNorm &&
                        (pp.float_beta_large ||
                         impl_->table.any_magnitude_above(p.beta.data, p.beta.dtype, p.beta.NumElements(),
                                                          cpu::kFloatStatsBetaLog2));
    }
    switch (p.kind) {
      case NormKind::kLayerNorm:
      case NormKind::kRmsNorm:
        pp.units = g.rows;
        pp.unit_length = g.cols;
        if (p.gamma.present()) pp.gamma_rows = RowBroadcast(p.input.shape, p.gamma.shape, p.normalized_dims);
        if (p.beta.present()) pp.beta_rows = RowBroadcast(p.input.shape, p.beta.shape, p.normalized_dims);
        break;
      case NormKind::kGroupNorm:
      case NormKind::kInstanceNorm:
        pp.units = g.groups;
        pp.unit_length = g.group_size;
        break;
      case NormKind::kBatchNorm: {
        pp.units = g.n * g.channels;
        pp.unit_length = g.spatial;
        const size_t c = static_cast<size_t>(g.channels);
        pp.channel_pivot.assign(c, 0.0f);
        pp.channel_rstd.assign(c, 0.0f);
        pp.channel_correction.assign(c, 0.0f);
        pp.channel_mean_wide.assign(c, 0.0);
        pp.channel_rstd_wide.assign(c, 0.0);
        if (p.use_batch_stats) {
          any_batch_stats = true;
          pp.input_is_residual_out = p.residual.present();
        } else {
          // Inference is elementwise IEEE arithmetic with the running statistics.
          for (int64_t ch = 0; ch < g.channels; ++ch) {
            const double mean = LoadAsFloat(p.running_mean.data, p.running_mean.dtype, ch);
            const double var = LoadAsFloat(p.running_var.data, p.running_var.dtype, ch);
            const double rstd_wide = 1.0 / std::sqrt(var + static_cast<double>(p.epsilon));
            const float rstd = static_cast<float>(rstd_wide);
            pp.channel_pivot[ch] = static_cast<float>(mean);
            pp.channel_rstd[ch] = rstd;
            pp.channel_mean_wide[ch] = mean;
            pp.channel_rstd_wide[ch] = rstd_wide;
            if (p.out.mean != nullptr) p.out.mean[ch] = static_cast<float>(mean);
            if (p.out.rstd != nullptr) p.out.rstd[ch] = rstd;
          }
        }
        break;
      }
    }
  }

  if (any_batch_stats) {
    items.assign(count, WorkItem{});
    int64_t cost = 0;
    for (size_t i = 0; i < count; ++i) {
      const cpu::PreparedProblem& pp = prepared[i];
      if (pp.problem->kind != NormKind::kBatchNorm || !pp.problem->use_batch_stats) continue;
      items[i].units = pp.geometry.channels;
      items[i].cost_per_unit = pp.geometry.group_size * BytesPerElement(*pp.problem);
      items[i].cost_begin = cost;
      cost += items[i].units * items[i].cost_per_unit;
    }
    impl_->Parallel(items, [&](size_t i, int64_t begin, int64_t end) {
      impl_->table.batch_norm_channel_stats(prepared[i], begin, end);
    });
  }

  // Short channel runs: the per-channel values spread over one [C, S] row.
  for (cpu::PreparedProblem& pp : prepared) {
    const NormProblem& p = *pp.problem;
    const ProblemGeometry& g = pp.geometry;
    if (p.kind == NormKind::kLayerNorm || p.kind == NormKind::kRmsNorm || g.spatial <= 1 ||
        g.spatial > cpu::kShortSpatial) {
      continue;
    }
    const size_t row = static_cast<size_t>(g.channels * g.spatial);
    auto spread = [&](std::vector<float>& out, auto value_of) {
      out.resize(row);
      for (size_t e = 0; e < row; ++e) out[e] = value_of(static_cast<int64_t>(e) / g.spatial);
    };
    if (p.gamma.present()) {
      spread(pp.spread_gamma, [&](int64_t c) { return LoadAsFloat(p.gamma.data, p.gamma.dtype, c); });
    }
    if (p.beta.present()) {
      spread(pp.spread_beta, [&](int64_t c) { return LoadAsFloat(p.beta.data, p.beta.dtype, c); });
    }
    if (p.kind == NormKind::kBatchNorm) {
      spread(pp.spread_pivot, [&](int64_t c) { return pp.channel_pivot[static_cast<size_t>(c)]; });
      spread(pp.spread_rstd, [&](int64_t c) { return pp.channel_rstd[static_cast<size_t>(c)]; });
      spread(pp.spread_correction, [&](int64_t c) { return pp.channel_correction[static_cast<size_t>(c)]; });
    }
  }

  int64_t output_bytes = 0;
  for (size_t i = 0; i < count; ++i) {
    output_bytes +=
        problems[i].input.NumElements() * static_cast<int64_t>(DTypeSize(problems[i].output_dtype));
  }
  for (cpu::PreparedProblem& pp : prepared)
    pp.stream_output = StreamsOutput(impl_->stores, impl_->isa, *pp.problem, output_bytes);

  items.assign(count, WorkItem{});
  int64_t cost = 0;
  for (size_t i = 0; i < count; ++i) {
    items[i].units = prepared[i].units;
    items[i].cost_per_unit = std::max<int64_t>(1, prepared[i].unit_length * BytesPerElement(problems[i]));
    items[i].cost_begin = cost;
    cost += items[i].units * items[i].cost_per_unit;
  }
  impl_->Parallel(
      items, [&](size_t i, int64_t begin, int64_t end) { impl_->table.run_units(prepared[i], begin, end); });
  return KernelStatus::Ok();
}

}  // namespace normserve::kernels
