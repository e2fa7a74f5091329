// Row-norm kernels for input type F32; one file per input type so the
// instantiations compile in parallel.
#include "norm_rows.cuh"

namespace normserve::kernels::cuda {

KernelStatus LaunchRowNormF32(const RowLaunch& l, cudaStream_t stream) {
  return LaunchRowNormTyped<F32>(l, stream);
}

}  // namespace normserve::kernels::cuda
