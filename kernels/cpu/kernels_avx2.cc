// The avx2 kernel table: built with -mavx2 -mfma -mf16c (CMakeLists.txt).
// Only cpu_backend.cc calls in here, after checking the CPU supports it.
#include "simd_avx2.h"
#include "kernel_table.h"
#include "norm_kernels_impl.h"

namespace normserve::kernels::cpu {

const KernelTable& Avx2KernelTable() {
  static const KernelTable table = Kernels<Avx2Simd>::Table();
  return table;
}

}  // namespace normserve::kernels::cpu
