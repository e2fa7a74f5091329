// The avx512 kernel table: built with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c (CMakeLists.txt).
// Only cpu_backend.cc calls in here, after checking the CPU supports it.
#include "simd_avx512.h"
#include "kernel_table.h"
#include "norm_kernels_impl.h"

namespace normserve::kernels::cpu {

const KernelTable& Avx512KernelTable() {
  static const KernelTable table = Kernels<Avx512Simd>::Table();
  return table;
}

}  // namespace normserve::kernels::cpu
