// Turning CUDA runtime errors into KernelStatus. Internal to kernels/cuda/.
//
// NORMSERVE_CUDA_RETURN_IF_ERROR(expr) evaluates a CUDA runtime call once and,
// if it failed, returns KernelStatus::Internal naming the expression, the
// error and the file:line. Nothing here aborts. Thread-safe (no state).
#ifndef NORMSERVE_KERNELS_CUDA_CUDA_CHECK_H_
#define NORMSERVE_KERNELS_CUDA_CUDA_CHECK_H_

#include <cuda_runtime_api.h>

#include <string>

#include "normserve/kernels/status.h"

namespace normserve::kernels::cuda {

// "cudaMalloc(&p, n) failed: cudaErrorMemoryAllocation (out of memory) at file.cc:12"
inline KernelStatus CudaErrorStatus(cudaError_t err, const char* expr, const char* file, int line) {
  std::string msg = std::string(expr) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                    ") at " + file + ":" + std::to_string(line);
  return KernelStatus::Internal(std::move(msg));
}

// True for errors after which the CUDA context is unusable (the runtime keeps
// returning them); the backend then reports itself unhealthy.
inline bool IsStickyCudaError(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoDevice:
    case cudaErrorUnknown:
    case cudaErrorContextIsDestroyed:
    case cudaErrorDeviceUninitialized:
      return true;
    default:
      return false;
  }
}

}  // namespace normserve::kernels::cuda

#define NORMSERVE_CUDA_RETURN_IF_ERROR(expr)                                                    \
  do {                                                                                          \
    const cudaError_t cuda_err_ = (expr);                                                       \
    if (cuda_err_ != cudaSuccess) {                                                             \
      return ::normserve::kernels::cuda::CudaErrorStatus(cuda_err_, #expr, __FILE__, __LINE__); \
    }                                                                                           \
  } while (0)

#endif  // NORMSERVE_KERNELS_CUDA_CUDA_CHECK_H_
