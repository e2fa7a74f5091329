// normserve-kernel-bench: achieved bandwidth of the normalization kernels
// against a plain copy of the same bytes, measured in the same run
// (docs/PERFORMANCE.md). Prints one JSON line per case.
//
//   normserve-kernel-bench --backend cpu --kind layer_norm,rms_norm
//       --dtype float32,bfloat16 --cols 1024,4096 --threads 2 --out results.jsonl
//
// CPU method: the input of every case is a view of one buffer filled once per
// dtype; the working set (input + output) of the large cases is at least
// 4x the last-level cache, so every call streams from memory. A case is timed
// as the median of --reps repetitions after warm-up; each repetition runs the
// call enough times to last a few milliseconds. The copy baseline copies the
// same number of bytes (read + written) with memcpy, split over the same
// threads by the same pool the backend uses. Peers (oneDNN layer
// normalization) run on the same buffers and thread count. Out of cache,
// kernel, copy and peer take turns, one repetition each per round, and
// frac_of_copy is the median of the rounds' ratios (TimeCase).
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../cpu/thread_pool.h"
#include "bench_common.h"
#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/problem.h"
#include "onednn_peer.h"

namespace normserve::kernels::bench {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

void Usage() {
  std::fprintf(
      stderr,
      "usage: normserve-kernel-bench [--backend cpu|cuda] [--kind K,...] [--dtype D,...]\n"
      "         [--cols N,...] [--rows N,...] [--threads N,...] [--isa scalar|avx2|avx512|avx512_bf16]\n"
      "         [--stores auto|cached|streaming] [--quick] [--reps N] [--max_ws BYTES[K|M|G]] [--no_peers] "
      "[--out FILE]\n"
      "         [--offset BYTES] [--git_commit SHA] [--date YYYY-MM-DD]\n");
}

std::vector<std::string> SplitList(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const size_t end = comma == std::string_view::npos ? s.size() : comma;
    if (end > start) out.emplace_back(s.substr(start, end - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

bool ParseInt(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  int64_t scale = 1;
  if (*end == 'K' || *end == 'k') scale = int64_t{1} << 10, ++end;
  if (*end == 'M' || *end == 'm') scale = int64_t{1} << 20, ++end;
  if (*end == 'G' || *end == 'g') scale = int64_t{1} << 30, ++end;
  if (*end != '\0' || v < 0) return false;
  *out = static_cast<int64_t>(v) * scale;
  return true;
}

std::string CommandOutput(const char* command) {
  std::string out;
  if (FILE* pipe = popen(command, "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
    pclose(pipe);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string TodayUtc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
  return buf;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

int64_t LastLevelCacheBytes() {
  for (int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long v = sysconf(name);
    if (v > 0) return v;
  }
  return 32 * kMiB;
}

int AvailableThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

// 64-byte aligned storage that is not zero-initialized by the constructor.
struct Buffer {
  explicit Buffer(size_t bytes) : size(bytes) {
    data = static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
    if (data == nullptr) {
      std::fprintf(stderr, "normserve-kernel-bench: cannot allocate %zu bytes\n", bytes);
      std::exit(1);
    }
  }
  ~Buffer() { std::free(data); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  uint8_t* data = nullptr;
  size_t size = 0;
};

// Fills `count` elements with values of varying offset and spread, cheaply.
void FillRandom(void* data, DType dtype, int64_t count, cpu::ThreadPool& pool) {
  const int parts = pool.threads();
  const std::function<void(int)> body = [&](int part) {
    const int64_t begin = count * part / parts, end = count * (part + 1) / parts;
    uint64_t state = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(part + 1);
    for (int64_t i = begin; i < end; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const float u = static_cast<float>(state >> 40) * (1.0f / 16777216.0f);  // [0, 1)
      StoreFromFloat(data, dtype, i, 4.0f * u - 1.5f);
    }
  };
  pool.ParallelFor(parts, body);
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One function to time. Work that runs entirely on the calling thread
// (`inline_only`) is timed by that thread's CPU clock, which does not count
// time the thread spent preempted on a shared machine; everything else by
// the wall clock.
// `settle`: the function leaves threads spinning (OpenMP's, in oneDNN),
// which would take the cores from whatever runs next; the timing waits
// kSettle after its repetitions (each of them, when taking turns), outside
// the timed region.
struct Timed {
  std::function<void()> fn;
  bool inline_only = false;
  bool settle = false;
};
constexpr std::chrono::milliseconds kSettle{20};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Seconds per call of each of `fns`: the median of `reps` repetitions, each
// of enough calls to last about 2 ms, after a warm-up. With `interleave` the
// functions take turns, one repetition each per round, so a slow spell of a
// shared machine (this VM's copy speed swings by 2x between minutes) falls
// on the kernel and its copy baseline alike, and ratio_to_first is the
// median over rounds of each function's seconds over fns[0]'s: far steadier
// than medians taken minutes apart. Without it, for cases in cache, whose
// short calls are dominated by thread wake-ups, each function's repetitions
// run back to back after its own warm-up (taking turns, the cores would sit
// idle in the pause after the peer) and ratio_to_first is the ratio of the
// medians.
struct Timings {
  std::vector<double> seconds;
  std::vector<double> ratio_to_first;
};
Timings TimeCase(const std::vector<Timed>& fns, int reps, bool interleave) {
  const size_t n = fns.size();
  auto seconds_of = [&](size_t k, int calls) {
    const bool cpu_clock = fns[k].inline_only;
    const double t0 = cpu_clock ? ThreadCpuSeconds() : WallSeconds();
    for (int i = 0; i < calls; ++i) fns[k].fn();
    return (cpu_clock ? ThreadCpuSeconds() : WallSeconds()) - t0;
  };
  // Calls per repetition from a warm run of at least 1 ms: a first call alone
  // (cold caches, page faults) can take 100x longer than the rest, which
  // left sub-microsecond cases with a dozen calls per repetition and the
  // clock's own cost in every one.
  std::vector<int> calls(n);
  auto warm_up = [&](size_t k) {
    for (int c = 1;; c = std::min(c * 10, 100000)) {
      const double t = seconds_of(k, c);
      if (t >= 1e-3 || c == 100000) {
        calls[k] = static_cast<int>(std::clamp(2e-3 * c / std::max(t, 1e-9), 1.0, 100000.0));
        break;
      }
    }
    seconds_of(k, calls[k]);  // Caches, page faults, thread wake-ups.
  };
  auto settle = [&](size_t k) {
    if (fns[k].settle) std::this_thread::sleep_for(kSettle);
  };
  std::vector<std::vector<double>> samples(n);
  Timings out;
  if (interleave) {
    for (size_t k = 0; k < n; ++k) {
      warm_up(k);
      settle(k);
    }
    std::vector<std::vector<double>> ratios(n);
    for (int r = 0; r < reps; ++r) {
      for (size_t k = 0; k < n; ++k) {
        samples[k].push_back(seconds_of(k, calls[k]) / calls[k]);
        settle(k);
      }
      for (size_t k = 0; k < n; ++k) ratios[k].push_back(samples[k].back() / samples[0].back());
    }
    for (size_t k = 0; k < n; ++k) out.ratio_to_first.push_back(Median(ratios[k]));
  } else {
    for (size_t k = 0; k < n; ++k) {
      warm_up(k);
      for (int r = 0; r < reps; ++r) samples[k].push_back(seconds_of(k, calls[k]) / calls[k]);
      settle(k);
    }
  }
  for (size_t k = 0; k < n; ++k) out.seconds.push_back(Median(samples[k]));
  if (!interleave) {
    for (size_t k = 0; k < n; ++k) out.ratio_to_first.push_back(out.seconds[k] / out.seconds[0]);
  }
  return out;
}

struct CpuCase {
  NormKind kind;
  DType dtype;
  int64_t rows;
  int64_t cols;
};

int RunCpuBench(const BenchOptions& options, std::FILE* out) {
  const int64_t llc = LastLevelCacheBytes();
  int64_t max_ws = options.max_working_set_bytes;
  // 4x the LLC plus a margin, so that whole rows still reach 4x after rounding down.
  if (max_ws == 0) max_ws = options.quick ? 64 * kMiB : std::max<int64_t>(256 * kMiB, 4 * llc + 4 * llc / 32);
  const std::vector<NormKind> kinds =
      options.kinds.empty() ? std::vector<NormKind>{NormKind::kLayerNorm, NormKind::kRmsNorm} : options.kinds;
  const std::vector<DType> dtypes =
      options.dtypes.empty() ? std::vector<DType>{DType::kFloat32, DType::kFloat16, DType::kBFloat16}
                             : options.dtypes;
  std::vector<int64_t> cols_list = options.cols;
  if (cols_list.empty()) {
    cols_list = options.quick ? std::vector<int64_t>{512, 4096}
                              : std::vector<int64_t>{128, 512, 768, 1024, 2048, 4096, 8192, 16384, 65536};
  }
  const std::vector<int> threads_list =
      options.threads.empty() ? std::vector<int>{AvailableThreads()} : options.threads;
  const int reps = options.repetitions > 0 ? options.repetitions : (options.quick ? 5 : 11);
  CpuIsa max_isa = CpuIsa::kAvx512Bf16;
  if (!options.isa.empty() && !ParseCpuIsa(options.isa, &max_isa)) {
    std::fprintf(stderr, "normserve-kernel-bench: unknown --isa %s\n", options.isa.c_str());
    return 2;
  }
  CpuStores stores = CpuStores::kAuto;
  if (!options.stores.empty() && !ParseCpuStores(options.stores, &stores)) {
    std::fprintf(stderr, "normserve-kernel-bench: unknown --stores %s\n", options.stores.c_str());
    return 2;
  }
  const std::string device = CpuModel();
  const std::string peer_name = options.peers ? OneDnnPeerName() : "";
  std::fprintf(stderr, "normserve-kernel-bench: %s, LLC %lld MiB, working set up to %lld MiB, %d reps\n",
               device.c_str(), static_cast<long long>(llc / kMiB), static_cast<long long>(max_ws / kMiB),
               reps);

  // Each buffer holds half the largest working set (and the offset); every
  // case views a prefix from buffer_offset bytes on.
  const int64_t offset = options.buffer_offset;
  if (offset < 0 || offset > 63) {
    std::fprintf(stderr, "normserve-kernel-bench: --offset must be 0 to 63\n");
    return 2;
  }
  Buffer input_buffer(static_cast<size_t>(max_ws / 2 + offset)),
      output_buffer(static_cast<size_t>(max_ws / 2 + offset));
  struct View {
    uint8_t* data;
    size_t size;
  };
  const View input{input_buffer.data + offset, static_cast<size_t>(max_ws / 2)},
      output{output_buffer.data + offset, static_cast<size_t>(max_ws / 2)};
  for (int threads : threads_list) {
    CpuBackendOptions backend_options;
    backend_options.threads = threads;
    backend_options.max_isa = max_isa;
    backend_options.stores = stores;
    CpuBackend backend(backend_options);
    cpu::ThreadPool copy_pool(threads);
    const std::string isa(CpuIsaName(backend.isa()));
    for (DType dtype : dtypes) {
      const int64_t elem = static_cast<int64_t>(DTypeSize(dtype));
      FillRandom(input.data, dtype, max_ws / 2 / elem, copy_pool);
      std::memset(output.data, 0, output.size);
      for (NormKind kind : kinds) {
        for (int64_t cols : cols_list) {
          std::vector<int64_t> rows_list = options.rows;
          if (rows_list.empty()) rows_list = {1, max_ws / (2 * elem * cols)};
          for (int64_t rows : rows_list) {
            if (rows < 1 || rows * cols * 2 * elem > max_ws) {
              std::fprintf(stderr, "skipping %lld x %lld: beyond --max_ws\n", static_cast<long long>(rows),
                           static_cast<long long>(cols));
              continue;
            }
            // LayerNorm with gamma and beta, RMSNorm with gamma: what models use.
            std::vector<float> gamma(static_cast<size_t>(cols), 1.0f), beta(static_cast<size_t>(cols), 0.0f);
            for (int64_t j = 0; j < cols; ++j)
              gamma[static_cast<size_t>(j)] = 0.5f + static_cast<float>(j % 7) * 0.125f;
            NormProblem p;
            p.kind = kind;
            p.input = TensorView{dtype, {rows, cols}, input.data, static_cast<uint64_t>(rows * cols * elem)};
            p.gamma = TensorView{DType::kFloat32, {cols}, gamma.data(), static_cast<uint64_t>(cols * 4)};
            if (kind == NormKind::kLayerNorm) {
              p.beta = TensorView{DType::kFloat32, {cols}, beta.data(), static_cast<uint64_t>(cols * 4)};
            }
            p.epsilon = DefaultEpsilon(kind);
            p.output_dtype = dtype;
            p.out.output = output.data;
            if (KernelStatus st = ValidateProblem(p); !st.ok()) {
              std::fprintf(stderr, "invalid case: %s\n", st.message().c_str());
              return 1;
            }
            const int64_t data_bytes = rows * cols * 2 * elem;
            const int64_t param_bytes = cols * 4 * (p.beta.present() ? 2 : 1);
            const double bytes = static_cast<double>(data_bytes + param_bytes);

            BenchRecord r;
            r.backend = "cpu";
            r.kind = kind;
            r.dtype = dtype;
            r.rows = rows;
            r.cols = cols;
            r.threads = backend.threads();
            r.isa = isa;
            r.stores = std::string(CpuStoresName(backend.stores()));
            r.buffer_offset = offset;
            r.device = device;
            r.in_cache = data_bytes < 4 * llc;
            r.git_commit = options.git_commit;
            r.date = options.date;
            // The backend keeps work below 128 KiB on the calling thread (kMinBytesPerPart).
            const bool inline_only = data_bytes < (128 << 10) || r.threads == 1;
            std::vector<Timed> timed;
            timed.push_back({[&] { (void)backend.Run(&p, 1); }, inline_only});

            // The copy moves data_bytes: half read, half written.
            const size_t copy_bytes = static_cast<size_t>(data_bytes / 2);
            const int copy_parts =
                static_cast<int>(std::clamp<int64_t>(data_bytes / (64 << 10), 1, copy_pool.threads()));
            const std::function<void(int)> copy_part = [&](int part) {
              const size_t begin = copy_bytes * part / copy_parts / 64 * 64;
              const size_t end =
                  part + 1 == copy_parts ? copy_bytes : copy_bytes * (part + 1) / copy_parts / 64 * 64;
              std::memcpy(output.data + begin, input.data + begin, end - begin);
            };
            timed.push_back({[&] { copy_pool.ParallelFor(copy_parts, copy_part); }, copy_parts == 1});

            if (!peer_name.empty() && kind == NormKind::kLayerNorm) {
              std::string why;
              std::function<void()> peer =
                  MakeOneDnnLayerNorm(dtype, rows, cols, p.epsilon, r.threads, input.data, output.data, &why);
              if (peer) {
                r.peer = peer_name;
                timed.push_back({std::move(peer), false, true});
              } else {
                std::fprintf(stderr, "no oneDNN peer for %s: %s\n", std::string(DTypeName(dtype)).c_str(),
                             why.c_str());
              }
            }
            // Out of cache, kernel, copy and peer take turns (TimeCase), and
            // frac_of_copy is the median of the rounds' ratios, so it can differ
            // slightly from gbps / copy_gbps, the ratio of the medians.
            const Timings t = TimeCase(timed, reps, /*interleave=*/!r.in_cache);
            r.seconds = t.seconds[0];
            r.gbps = bytes / r.seconds / 1e9;
            r.copy_gbps = static_cast<double>(data_bytes) / t.seconds[1] / 1e9;
            r.frac_of_copy = bytes / static_cast<double>(data_bytes) * t.ratio_to_first[1];
            if (timed.size() > 2) r.peer_gbps = bytes / t.seconds[2] / 1e9;
            std::fprintf(out, "%s\n", RecordToJson(r).c_str());
            std::fflush(out);
            std::fprintf(stderr, "%s %s %lldx%lld: %.3g GB/s, copy %.3g GB/s (%.2f)%s\n",
                         std::string(NormKindName(kind)).c_str(), std::string(DTypeName(dtype)).c_str(),
                         static_cast<long long>(rows), static_cast<long long>(cols), r.gbps, r.copy_gbps,
                         r.frac_of_copy, r.peer.empty() ? "" : (", " + r.peer).c_str());
          }
        }
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace normserve::kernels::bench

int main(int argc, char** argv) {
  static constexpr std::string_view kValueFlags[] = {
      "--backend", "--out",  "--isa",     "--git_commit", "--date",   "--kind",   "--dtype",
      "--cols",    "--rows", "--threads", "--reps",       "--max_ws", "--stores", "--offset"};
  using namespace normserve::kernels;
  using namespace normserve::kernels::bench;
  BenchOptions options;
  std::string backend = "cpu";
  std::string out_path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    const size_t eq = arg.find('=');
    auto need_value = [&]() -> bool {
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        return true;
      }
      if (i + 1 >= argc) return false;
      value = argv[++i];
      return true;
    };
    if (eq != std::string::npos) need_value();
    auto bad = [&](const char* what) {
      std::fprintf(stderr, "normserve-kernel-bench: %s: %s\n", arg.c_str(), what);
      Usage();
      return 2;
    };
    if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--no_peers") {
      options.peers = false;
    } else if (arg == "--help" || arg == "-h") {
      Usage();
      return 0;
    } else if (arg.rfind("--", 0) != 0) {
      return bad("unexpected argument");
    } else if (std::find(std::begin(kValueFlags), std::end(kValueFlags), arg) == std::end(kValueFlags)) {
      return bad("unknown flag");
    } else if (eq == std::string::npos && !need_value()) {
      return bad("needs a value");
    } else if (arg == "--backend") {
      backend = value;
    } else if (arg == "--out") {
      out_path = value;
    } else if (arg == "--isa") {
      options.isa = value;
    } else if (arg == "--stores") {
      options.stores = value;
    } else if (arg == "--git_commit") {
      options.git_commit = value;
    } else if (arg == "--date") {
      options.date = value;
    } else if (arg == "--kind") {
      for (const std::string& s : SplitList(value)) {
        NormKind k;
        if (!ParseNormKind(s, &k)) return bad("unknown kind");
        options.kinds.push_back(k);
      }
    } else if (arg == "--dtype") {
      for (const std::string& s : SplitList(value)) {
        DType d;
        if (!ParseDType(s, &d)) return bad("unknown dtype");
        options.dtypes.push_back(d);
      }
    } else if (arg == "--cols" || arg == "--rows" || arg == "--threads") {
      for (const std::string& s : SplitList(value)) {
        int64_t v;
        if (!ParseInt(s, &v) || v < 1) return bad("expects positive integers");
        if (arg == "--cols") options.cols.push_back(v);
        if (arg == "--rows") options.rows.push_back(v);
        if (arg == "--threads") options.threads.push_back(static_cast<int>(v));
      }
    } else if (arg == "--reps") {
      int64_t v;
      if (!ParseInt(value, &v) || v < 1) return bad("expects a positive integer");
      options.repetitions = static_cast<int>(v);
    } else if (arg == "--offset") {
      if (!ParseInt(value, &options.buffer_offset) || options.buffer_offset < 0 || options.buffer_offset > 63)
        return bad("expects 0 to 63 bytes");
    } else if (arg == "--max_ws") {
      if (!ParseInt(value, &options.max_working_set_bytes)) return bad("expects bytes, e.g. 256M");
    } else {
      return bad("unknown flag");
    }
  }
  if (options.git_commit.empty())
    options.git_commit = CommandOutput("git rev-parse --short HEAD 2>/dev/null");
  if (options.git_commit.empty()) options.git_commit = "unknown";
  if (options.date.empty()) options.date = TodayUtc();

  std::FILE* out = stdout;
  if (!out_path.empty()) {
    out = std::fopen(out_path.c_str(), "w");
    if (out == nullptr) {
      std::fprintf(stderr, "normserve-kernel-bench: cannot write %s\n", out_path.c_str());
      return 1;
    }
  }
  int rc = 2;
  if (backend == "cpu") {
    rc = RunCpuBench(options, out);
  } else if (backend == "cuda") {
#ifdef NORMSERVE_HAVE_CUDA
    rc = RunCudaBench(options, out);
#else
    std::fprintf(stderr, "normserve-kernel-bench: built without CUDA; --backend cuda is not available\n");
    rc = 1;
#endif
  } else {
    std::fprintf(stderr, "normserve-kernel-bench: --backend must be cpu or cuda\n");
  }
  if (out != stdout) std::fclose(out);
  return rc;
}
