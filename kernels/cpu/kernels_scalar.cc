// The scalar kernel table: the portable fallback; built without extra instruction-set flags.
// Only cpu_backend.cc calls in here, after checking the CPU supports it.
#include "simd_scalar.h"
#include "kernel_table.h"
#include "norm_kernels_impl.h"

namespace normserve::kernels::cpu {

const KernelTable& ScalarKernelTable() {
  static const KernelTable table = Kernels<ScalarSimd>::Table();
  return table;
}

}  // namespace normserve::kernels::cpu
