// cuda_backend.h for builds without CUDA: no devices, and a clear error for
// anyone who asks for the CUDA backend. Includes no CUDA header.
#include "normserve/kernels/cuda_backend.h"

namespace normserve::kernels {

int CudaDeviceCount() { return 0; }

bool CudaCompiledIn() { return false; }

KernelStatus CreateCudaBackend(const CudaBackendOptions& /*options*/, std::unique_ptr<Backend>* backend) {
  backend->reset();
  return KernelStatus::FailedPrecondition("normserve was built without CUDA");
}

}  // namespace normserve::kernels
