// The CUDA factory's contract where it can be checked without a GPU (this
// test runs everywhere): without CUDA in the build, or without a device,
// CreateCudaBackend returns FAILED_PRECONDITION with the documented message
// and no backend. With a GPU it checks that creation works and that a bad
// device ordinal and a bad stream count are refused.
#include <cstdio>
#include <memory>
#include <string>

#include "cuda_test_util.h"
#include "normserve/kernels/cuda_backend.h"

namespace normserve::kernels {
namespace {

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

int Main() {
  cuda_test::Failures f;
  std::unique_ptr<Backend> backend;
  const int devices = CudaDeviceCount();
  f.Expect(devices >= 0, "device_count", "CudaDeviceCount() < 0");
  if (!CudaCompiledIn()) {
    const KernelStatus s = CreateCudaBackend({}, &backend);
    f.Expect(devices == 0, "no_cuda_count", "CudaDeviceCount() != 0 without CUDA");
    f.Expect(s.code() == StatusCode::kFailedPrecondition, "no_cuda_code",
             "code " + std::to_string(int(s.code())));
    f.Expect(s.message() == "normserve was built without CUDA", "no_cuda_message", s.message());
    f.Expect(backend == nullptr, "no_cuda_backend", "backend set");
    return f.Finish("cuda_factory_test");
  }
  if (devices == 0) {
    const KernelStatus s = CreateCudaBackend({}, &backend);
    f.Expect(s.code() == StatusCode::kFailedPrecondition, "no_device_code",
             "code " + std::to_string(int(s.code())));
    f.Expect(
        StartsWith(s.message(), "no CUDA device found (cudaGetDeviceCount: ") && s.message().back() == ')',
        "no_device_message", s.message());
    f.Expect(backend == nullptr, "no_device_backend", "backend set");
    return f.Finish("cuda_factory_test");
  }
  CudaBackendOptions bad_device;
  bad_device.devices = {devices};
  KernelStatus s = CreateCudaBackend(bad_device, &backend);
  f.Expect(s.code() == StatusCode::kFailedPrecondition, "bad_device_code", s.message());
  f.Expect(s.message() == "CUDA device " + std::to_string(devices) + " requested but " +
                              std::to_string(devices) + " visible",
           "bad_device_message", s.message());
  CudaBackendOptions bad_streams;
  bad_streams.streams_per_device = 0;
  s = CreateCudaBackend(bad_streams, &backend);
  f.Expect(s.code() == StatusCode::kInvalidArgument, "bad_streams_code", s.message());
  f.Expect(s.message() == "streams_per_device must be >= 1, got 0", "bad_streams_message", s.message());
  s = CreateCudaBackend({}, &backend);
  f.Expect(s.ok() && backend != nullptr, "create", s.message());
  if (backend != nullptr) {
    f.Expect(backend->name() == "cuda", "name", std::string(backend->name()));
    f.Expect(backend->healthy(), "healthy", "new backend unhealthy");
    f.Expect(backend->Run(nullptr, 0).ok(), "empty_run", "Run of no problems failed");
  }
  return f.Finish("cuda_factory_test");
}

}  // namespace
}  // namespace normserve::kernels

int main() { return normserve::kernels::Main(); }
