// Row-norm kernels for input type F16; one file per input type so the
// instantiations compile in parallel.
#include "norm_rows.cuh"

namespace normserve::kernels::cuda {

KernelStatus LaunchRowNormF16(const RowLaunch& l, cudaStream_t stream) {
  return LaunchRowNormTyped<F16>(l, stream);
}

}  // namespace normserve::kernels::cuda
