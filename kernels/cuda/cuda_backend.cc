// The CUDA backend: stages host problems through reused pinned and device
// buffers and runs them with the launchers of norm_launch.h.
//
// Each (device, stream) pair is a Slot with its own pinned upload/download
// buffers and one device buffer; Run() takes a free slot (round robin, else
// waits on one), so calls from several threads run concurrently on
// different streams and devices. One Run() is: pack inputs into pinned
// memory -> one H2D copy -> kernels (one launch per group of compatible row
// problems, via a segment table) -> one D2H copy -> unpack. Buffers only
// grow, so a steady load allocates nothing.
#include "normserve/kernels/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_check.h"
#include "norm_launch.h"

namespace normserve::kernels {
namespace cuda {
namespace {

constexpr size_t kAlignment = 256;
constexpr size_t kNone = ~size_t{0};

size_t AlignUp(size_t v) { return (v + kAlignment - 1) / kAlignment * kAlignment; }

// Bump allocator of offsets within one staging region.
class RegionLayout {
 public:
  size_t Add(size_t bytes) {
    const size_t offset = size_;
    size_ = AlignUp(size_ + bytes);
    return offset;
  }
  size_t size() const { return size_; }

 private:
  size_t size_ = 0;
};

// Where one problem's tensors live in the staging regions (kNone: absent).
struct StagedProblem {
  ProblemGeometry geo;
  // Upload region.
  size_t x = kNone, residual = kNone, gamma = kNone, beta = kNone;
  size_t gamma_rows = kNone, beta_rows = kNone;
  size_t running_mean = kNone, running_rstd = kNone;
  // Download region.
  size_t y = kNone, residual_out = kNone, mean = kNone, rstd = kNone, var = kNone;
  // Scratch region.
  size_t scratch = kNone;
  int64_t scratch_bytes = 0;
};

// LAYER/RMS problems that can share one launch.
using RowKey = std::tuple<int, int, int, bool, int64_t>;  // kind, in, out, residual, cols

struct RowGroup {
  std::vector<size_t> problems;
  size_t table = kNone;  // upload offset of the segment table
};

bool IsRowKind(NormKind k) { return k == NormKind::kLayerNorm || k == NormKind::kRmsNorm; }

struct Slot {
  int device = 0;
  cudaStream_t stream = nullptr;
  std::mutex mu;
  void* host_in = nullptr;
  size_t host_in_bytes = 0;
  void* host_out = nullptr;
  size_t host_out_bytes = 0;
  void* dev = nullptr;
  size_t dev_bytes = 0;
};

KernelStatus ReservePinned(void** buf, size_t* cap, size_t need, size_t floor) {
  if (need <= *cap) return KernelStatus::Ok();
  const size_t bytes = std::max(floor, need + need / 4);
  if (*buf != nullptr) NORMSERVE_CUDA_RETURN_IF_ERROR(cudaFreeHost(*buf));
  *buf = nullptr;
  *cap = 0;
  const cudaError_t err = cudaHostAlloc(buf, bytes, cudaHostAllocPortable);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    *buf = nullptr;
    return KernelStatus::ResourceExhausted("cannot allocate " + std::to_string(bytes) +
                                           " bytes of pinned host memory");
  }
  NORMSERVE_CUDA_RETURN_IF_ERROR(err);
  *cap = bytes;
  return KernelStatus::Ok();
}

KernelStatus ReserveDevice(void** buf, size_t* cap, size_t need, size_t floor) {
  if (need <= *cap) return KernelStatus::Ok();
  const size_t bytes = std::max(floor, need + need / 4);
  if (*buf != nullptr) NORMSERVE_CUDA_RETURN_IF_ERROR(cudaFree(*buf));
  *buf = nullptr;
  *cap = 0;
  const cudaError_t err = cudaMalloc(buf, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    *buf = nullptr;
    return KernelStatus::ResourceExhausted("cannot allocate " + std::to_string(bytes) +
                                           " bytes of device memory");
  }
  NORMSERVE_CUDA_RETURN_IF_ERROR(err);
  *cap = bytes;
  return KernelStatus::Ok();
}

// Copies a parameter tensor into `dst` as float32.
void ConvertToFloat(const TensorView& t, float* dst) {
  const int64_t n = t.NumElements();
  if (t.dtype == DType::kFloat32) {
    std::memcpy(dst, t.data, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = LoadAsFloat(t.data, t.dtype, i);
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaBackendOptions& options) : options_(options) {}
  ~CudaBackend() override;

  KernelStatus Init();

  std::string_view name() const override { return "cuda"; }
  std::string device_description() const override { return description_; }
  bool healthy() const override { return healthy_.load(std::memory_order_acquire); }
  KernelStatus Run(const NormProblem* problems, size_t count) override;

 private:
  KernelStatus RunOnSlot(Slot& slot, const NormProblem* problems, size_t count);
  // After a failed CUDA call: decides whether the device is lost.
  void NoteFailure(Slot& slot, const KernelStatus& status);

  const CudaBackendOptions options_;
  std::string description_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::atomic<size_t> next_slot_{0};
  std::atomic<bool> healthy_{true};
  std::mutex lost_mu_;
  std::string lost_message_;  // guarded by lost_mu_
};

CudaBackend::~CudaBackend() {
  for (auto& slot : slots_) {
    // Errors are ignored: there is nobody to report them to, and a lost
    // device frees everything anyway.
    cudaSetDevice(slot->device);
    if (slot->stream != nullptr) cudaStreamDestroy(slot->stream);
    if (slot->host_in != nullptr) cudaFreeHost(slot->host_in);
    if (slot->host_out != nullptr) cudaFreeHost(slot->host_out);
    if (slot->dev != nullptr) cudaFree(slot->dev);
  }
}

KernelStatus CudaBackend::Init() {
  std::vector<int> devices = options_.devices;
  if (devices.empty()) devices.push_back(0);
  const size_t pool = options_.initial_pool_bytes;
  for (int d : devices) {
    NORMSERVE_CUDA_RETURN_IF_ERROR(cudaSetDevice(d));
    cudaDeviceProp prop{};
    NORMSERVE_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, d));
    if (!description_.empty()) description_ += "; ";
    description_ += "cuda:" + std::to_string(d) + " " + prop.name + " (sm_" + std::to_string(prop.major) +
                    std::to_string(prop.minor) + ", " + std::to_string(prop.totalGlobalMem >> 20) + " MiB, " +
                    std::to_string(options_.streams_per_device) + " streams)";
    for (int s = 0; s < options_.streams_per_device; ++s) {
      auto slot = std::make_unique<Slot>();
      slot->device = d;
      NORMSERVE_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&slot->stream, cudaStreamNonBlocking));
      if (pool > 0) {
        // Upload and download halves of the pool; they grow independently.
        NORMSERVE_KERNEL_RETURN_IF_ERROR(ReservePinned(&slot->host_in, &slot->host_in_bytes, pool / 2, 0));
        NORMSERVE_KERNEL_RETURN_IF_ERROR(ReservePinned(&slot->host_out, &slot->host_out_bytes, pool / 2, 0));
        NORMSERVE_KERNEL_RETURN_IF_ERROR(ReserveDevice(&slot->dev, &slot->dev_bytes, pool, 0));
      }
      slots_.push_back(std::move(slot));
    }
  }
  return KernelStatus::Ok();
}

KernelStatus CudaBackend::Run(const NormProblem* problems, size_t count) {
  if (!healthy()) {
    std::lock_guard<std::mutex> lock(lost_mu_);
    return KernelStatus::Internal("CUDA device lost: " + lost_message_);
  }
  if (count == 0) return KernelStatus::Ok();
  // A free slot if there is one, else wait for the round-robin choice.
  const size_t start = next_slot_.fetch_add(1, std::memory_order_relaxed) % slots_.size();
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = *slots_[(start + i) % slots_.size()];
    std::unique_lock<std::mutex> lock(slot.mu, std::try_to_lock);
    if (lock.owns_lock()) return RunOnSlot(slot, problems, count);
  }
  Slot& slot = *slots_[start];
  std::lock_guard<std::mutex> lock(slot.mu);
  return RunOnSlot(slot, problems, count);
}

void CudaBackend::NoteFailure(Slot& slot, const KernelStatus& status) {
  if (status.code() != StatusCode::kInternal) return;
  // A sticky error shows up again on the next synchronization.
  cudaError_t err = cudaStreamSynchronize(slot.stream);
  if (err == cudaSuccess) err = cudaPeekAtLastError();
  if (!IsStickyCudaError(err)) {
    cudaGetLastError();
    return;
  }
  std::lock_guard<std::mutex> lock(lost_mu_);
  if (lost_message_.empty()) lost_message_ = status.message();
  healthy_.store(false, std::memory_order_release);
}

KernelStatus CudaBackend::RunOnSlot(Slot& slot, const NormProblem* problems, size_t count) {
  // 1. Layout: offsets of every tensor in the upload, download and scratch regions.
  RegionLayout up, down, scratch;
  std::vector<StagedProblem> staged(count);
  std::map<RowKey, RowGroup> row_groups;
  std::vector<size_t> grouped;
  for (size_t i = 0; i < count; ++i) {
    const NormProblem& p = problems[i];
    StagedProblem& s = staged[i];
    s.geo = ComputeGeometry(p);
    const size_t elements = static_cast<size_t>(p.input.NumElements());
    const size_t in_bytes = elements * DTypeSize(p.input.dtype);
    s.x = up.Add(in_bytes);
    s.y = down.Add(elements * DTypeSize(p.output_dtype));
    if (p.residual.present()) {
      s.residual = up.Add(in_bytes);
      s.residual_out = down.Add(in_bytes);
    }
    if (p.gamma.present()) s.gamma = up.Add(static_cast<size_t>(p.gamma.NumElements()) * sizeof(float));
    if (p.beta.present()) s.beta = up.Add(static_cast<size_t>(p.beta.NumElements()) * sizeof(float));
    const size_t groups = static_cast<size_t>(s.geo.groups);
    if (IsRowKind(p.kind)) {
      const size_t table = static_cast<size_t>(s.geo.rows) * sizeof(int32_t);
      if (p.gamma.present() && !RowBroadcast(p.input.shape, p.gamma.shape, p.normalized_dims).uniform()) {
        s.gamma_rows = up.Add(table);
      }
      if (p.beta.present() && !RowBroadcast(p.input.shape, p.beta.shape, p.normalized_dims).uniform()) {
        s.beta_rows = up.Add(table);
      }
      if (p.out.mean != nullptr && p.kind == NormKind::kLayerNorm) s.mean = down.Add(groups * sizeof(float));
      if (p.out.rstd != nullptr) s.rstd = down.Add(groups * sizeof(float));
      const RowKey key{static_cast<int>(p.kind), static_cast<int>(p.input.dtype),
                       static_cast<int>(p.output_dtype), p.residual.present(), s.geo.cols};
      row_groups[key].problems.push_back(i);
    } else if (p.kind == NormKind::kBatchNorm && !p.use_batch_stats) {
      s.running_mean = up.Add(groups * sizeof(float));
      s.running_rstd = up.Add(groups * sizeof(float));
      grouped.push_back(i);
    } else {
      s.mean = down.Add(groups * sizeof(float));
      s.rstd = down.Add(groups * sizeof(float));
      s.var = down.Add(groups * sizeof(float));
      GroupedLaunch probe;
      probe.kind = p.kind;
      probe.n = s.geo.n;
      probe.channels = s.geo.channels;
      probe.spatial = s.geo.spatial;
      probe.num_groups = p.kind == NormKind::kInstanceNorm ? s.geo.channels : s.geo.num_groups;
      s.scratch_bytes = GroupedScratchBytes(probe);
      s.scratch = scratch.Add(static_cast<size_t>(s.scratch_bytes));
      grouped.push_back(i);
    }
  }
  for (auto& [key, group] : row_groups) group.table = up.Add(group.problems.size() * sizeof(RowSegment));

  // 2. Buffers (grown if this batch is the largest so far).
  NORMSERVE_CUDA_RETURN_IF_ERROR(cudaSetDevice(slot.device));
  const size_t floor = options_.initial_pool_bytes / 2;
  KernelStatus status = ReservePinned(&slot.host_in, &slot.host_in_bytes, up.size(), floor);
  if (status.ok()) status = ReservePinned(&slot.host_out, &slot.host_out_bytes, down.size(), floor);
  if (status.ok())
    status = ReserveDevice(&slot.dev, &slot.dev_bytes, up.size() + down.size() + scratch.size(), 0);
  if (!status.ok()) {
    NoteFailure(slot, status);
    return status;
  }
  char* const host_in = static_cast<char*>(slot.host_in);
  char* const host_out = static_cast<char*>(slot.host_out);
  char* const dev_up = static_cast<char*>(slot.dev);
  char* const dev_down = dev_up + up.size();
  char* const dev_scratch = dev_down + down.size();
  const auto dev_in = [&](size_t off) -> void* { return off == kNone ? nullptr : dev_up + off; };
  const auto dev_out = [&](size_t off) -> void* { return off == kNone ? nullptr : dev_down + off; };

  // 3. Pack the inputs.
  for (size_t i = 0; i < count; ++i) {
    const NormProblem& p = problems[i];
    const StagedProblem& s = staged[i];
    const size_t in_bytes = static_cast<size_t>(p.input.NumElements()) * DTypeSize(p.input.dtype);
    std::memcpy(host_in + s.x, p.input.data, in_bytes);
    if (s.residual != kNone) std::memcpy(host_in + s.residual, p.residual.data, in_bytes);
    if (s.gamma != kNone) ConvertToFloat(p.gamma, reinterpret_cast<float*>(host_in + s.gamma));
    if (s.beta != kNone) ConvertToFloat(p.beta, reinterpret_cast<float*>(host_in + s.beta));
    const auto fill_rows = [&](size_t off, const TensorView& param) {
      if (off == kNone) return;
      const RowBroadcast rows(p.input.shape, param.shape, p.normalized_dims);
      int32_t* table = reinterpret_cast<int32_t*>(host_in + off);
      for (int64_t r = 0; r < s.geo.rows; ++r) table[r] = static_cast<int32_t>(rows.Offset(r) / s.geo.cols);
    };
    fill_rows(s.gamma_rows, p.gamma);
    fill_rows(s.beta_rows, p.beta);
    if (s.running_mean != kNone) {
      // BATCH_NORM inference: the statistics are the running ones, with rstd
      // computed once here in double, as the reference does.
      float* mean = reinterpret_cast<float*>(host_in + s.running_mean);
      float* rstd = reinterpret_cast<float*>(host_in + s.running_rstd);
      for (int64_t c = 0; c < s.geo.channels; ++c) {
        mean[c] = LoadAsFloat(p.running_mean.data, p.running_mean.dtype, c);
        const double var = LoadAsFloat(p.running_var.data, p.running_var.dtype, c);
        rstd[c] = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(p.epsilon)));
      }
    }
  }
  std::vector<RowLaunch> row_launches;
  for (auto& [key, group] : row_groups) {
    RowSegment* table = reinterpret_cast<RowSegment*>(host_in + group.table);
    int64_t row_begin = 0;
    for (size_t k = 0; k < group.problems.size(); ++k) {
      const NormProblem& p = problems[group.problems[k]];
      const StagedProblem& s = staged[group.problems[k]];
      RowSegment seg;
      seg.x = dev_in(s.x);
      seg.residual = dev_in(s.residual);
      seg.y = dev_out(s.y);
      seg.residual_out = dev_out(s.residual_out);
      seg.gamma = static_cast<const float*>(dev_in(s.gamma));
      seg.beta = static_cast<const float*>(dev_in(s.beta));
      seg.gamma_row = static_cast<const int32_t*>(dev_in(s.gamma_rows));
      seg.beta_row = static_cast<const int32_t*>(dev_in(s.beta_rows));
      seg.mean = static_cast<float*>(dev_out(s.mean));
      seg.rstd = static_cast<float*>(dev_out(s.rstd));
      seg.row_begin = row_begin;
      seg.rows = s.geo.rows;
      seg.epsilon = p.epsilon;
      seg.unit_offset = p.unit_offset ? 1 : 0;
      std::memcpy(&table[k], &seg, sizeof(seg));
      row_begin += s.geo.rows;
    }
    RowLaunch launch;
    launch.kind = static_cast<NormKind>(std::get<0>(key));
    launch.in_dtype = static_cast<DType>(std::get<1>(key));
    launch.out_dtype = static_cast<DType>(std::get<2>(key));
    launch.residual = std::get<3>(key);
    launch.cols = std::get<4>(key);
    launch.segments = static_cast<const RowSegment*>(dev_in(group.table));
    launch.num_segments = static_cast<int>(group.problems.size());
    launch.total_rows = row_begin;
    row_launches.push_back(launch);
  }

  // 4. Upload, compute, download, all on the slot's stream.
  status = [&]() -> KernelStatus {
    if (up.size() > 0) {
      NORMSERVE_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(dev_up, host_in, up.size(), cudaMemcpyHostToDevice, slot.stream));
    }
    for (const RowLaunch& launch : row_launches)
      NORMSERVE_KERNEL_RETURN_IF_ERROR(LaunchRowNorm(launch, slot.stream));
    for (size_t i : grouped) {
      const NormProblem& p = problems[i];
      const StagedProblem& s = staged[i];
      GroupedLaunch l;
      l.kind = p.kind;
      l.in_dtype = p.input.dtype;
      l.out_dtype = p.output_dtype;
      l.x = dev_in(s.x);
      l.residual = dev_in(s.residual);
      l.y = dev_out(s.y);
      l.residual_out = dev_out(s.residual_out);
      l.gamma = static_cast<const float*>(dev_in(s.gamma));
      l.beta = static_cast<const float*>(dev_in(s.beta));
      l.n = s.geo.n;
      l.channels = s.geo.channels;
      l.spatial = s.geo.spatial;
      l.num_groups = p.kind == NormKind::kInstanceNorm ? s.geo.channels : s.geo.num_groups;
      l.epsilon = p.epsilon;
      l.unit_offset = p.unit_offset ? 1 : 0;
      l.use_batch_stats = p.kind != NormKind::kBatchNorm || p.use_batch_stats;
      if (s.running_mean != kNone) {
        l.group_mean = static_cast<float*>(dev_in(s.running_mean));
        l.group_rstd = static_cast<float*>(dev_in(s.running_rstd));
      } else {
        l.group_mean = static_cast<float*>(dev_out(s.mean));
        l.group_rstd = static_cast<float*>(dev_out(s.rstd));
        l.group_var = static_cast<float*>(dev_out(s.var));
        l.scratch = dev_scratch + s.scratch;
      }
      NORMSERVE_KERNEL_RETURN_IF_ERROR(LaunchGroupedNorm(l, slot.stream));
    }
    if (down.size() > 0) {
      NORMSERVE_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(host_out, dev_down, down.size(), cudaMemcpyDeviceToHost, slot.stream));
    }
    NORMSERVE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(slot.stream));
    return KernelStatus::Ok();
  }();
  if (!status.ok()) {
    NoteFailure(slot, status);
    return status;
  }

  // 5. Unpack the outputs into the caller's buffers.
  for (size_t i = 0; i < count; ++i) {
    const NormProblem& p = problems[i];
    const StagedProblem& s = staged[i];
    const size_t elements = static_cast<size_t>(p.input.NumElements());
    std::memcpy(p.out.output, host_out + s.y, elements * DTypeSize(p.output_dtype));
    if (s.residual_out != kNone && p.out.residual_out != nullptr) {
      std::memcpy(p.out.residual_out, host_out + s.residual_out, elements * DTypeSize(p.input.dtype));
    }
    const size_t stat_bytes = static_cast<size_t>(s.geo.groups) * sizeof(float);
    if (s.running_mean != kNone) {
      if (p.out.mean != nullptr) std::memcpy(p.out.mean, host_in + s.running_mean, stat_bytes);
      if (p.out.rstd != nullptr) std::memcpy(p.out.rstd, host_in + s.running_rstd, stat_bytes);
      continue;
    }
    if (s.mean != kNone && p.out.mean != nullptr) std::memcpy(p.out.mean, host_out + s.mean, stat_bytes);
    if (s.rstd != kNone && p.out.rstd != nullptr) std::memcpy(p.out.rstd, host_out + s.rstd, stat_bytes);
    if (s.var != kNone && p.out.variance != nullptr && p.kind == NormKind::kBatchNorm) {
      std::memcpy(p.out.variance, host_out + s.var, stat_bytes);
    }
  }
  return KernelStatus::Ok();
}

}  // namespace
}  // namespace cuda

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

bool CudaCompiledIn() { return true; }

KernelStatus CreateCudaBackend(const CudaBackendOptions& options, std::unique_ptr<Backend>* backend) {
  backend->reset();
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    const std::string why = err != cudaSuccess
                                ? std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err)
                                : std::string("0 devices");
    cudaGetLastError();
    return KernelStatus::FailedPrecondition("no CUDA device found (cudaGetDeviceCount: " + why + ")");
  }
  for (int d : options.devices) {
    if (d < 0 || d >= count) {
      return KernelStatus::FailedPrecondition("CUDA device " + std::to_string(d) + " requested but " +
                                              std::to_string(count) + " visible");
    }
  }
  if (options.streams_per_device < 1) {
    return KernelStatus::InvalidArgument("streams_per_device must be >= 1, got " +
                                         std::to_string(options.streams_per_device));
  }
  auto cuda_backend = std::make_unique<cuda::CudaBackend>(options);
  NORMSERVE_KERNEL_RETURN_IF_ERROR(cuda_backend->Init());
  *backend = std::move(cuda_backend);
  return KernelStatus::Ok();
}

}  // namespace normserve::kernels
