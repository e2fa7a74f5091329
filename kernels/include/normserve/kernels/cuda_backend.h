// The CUDA backend factory. This header includes no CUDA header, so CPU-only
// code can ask for a CUDA backend and get a clear error where there is none.
//
// In a build without CUDA (NORMSERVE_HAVE_CUDA undefined) CudaDeviceCount()
// returns 0 and CreateCudaBackend() returns FAILED_PRECONDITION.
#ifndef NORMSERVE_KERNELS_CUDA_BACKEND_H_
#define NORMSERVE_KERNELS_CUDA_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "normserve/kernels/backend.h"
#include "normserve/kernels/status.h"

namespace normserve::kernels {

struct CudaBackendOptions {
  // CUDA device ordinals to use; empty means device 0. Batches are spread over them.
  std::vector<int> devices;
  // Streams per device; batches run concurrently on different streams.
  int streams_per_device = 2;
  // Bytes of pinned host staging and of device memory kept per stream; larger
  // batches grow the pool once and keep it.
  size_t initial_pool_bytes = size_t{64} << 20;
};

// Number of CUDA devices visible, 0 if none or built without CUDA.
int CudaDeviceCount();

// Whether this build has the CUDA backend compiled in.
bool CudaCompiledIn();

// Creates the CUDA backend. FAILED_PRECONDITION where there is no GPU or no
// CUDA in the build (the message says which); INTERNAL if initialization fails.
KernelStatus CreateCudaBackend(const CudaBackendOptions& options, std::unique_ptr<Backend>* backend);

}  // namespace normserve::kernels

#endif  // NORMSERVE_KERNELS_CUDA_BACKEND_H_
