// The scalar kernel table: the portable fallback; built without extra instruction-set flags.
// Only cpu_backend.cc calls in here, after checking the CPU supports it.
#include "kernel_table.h"
#include "norm_kernels_impl.h"
#include "simd_scalar.h"

namespace normserve::kernels::cpu {

const KernelTable& ScalarKernelTable() {
  static const KernelTable table = Kernels<ScalarSimd>::Table();
  return table;
}

}  // namespace normserve::kernels::cpu
