// Row-norm kernels for input type BF16; one file per input type so the
// instantiations compile in parallel.
#include "norm_rows.cuh"

namespace normserve::kernels::cuda {

KernelStatus LaunchRowNormBF16(const RowLaunch& l, cudaStream_t stream) {
  return LaunchRowNormTyped<BF16>(l, stream);
}

}  // namespace normserve::kernels::cuda
