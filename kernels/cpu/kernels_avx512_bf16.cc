// The avx512_bf16 kernel table: the AVX-512 kernels with BFLOAT16 outputs
// rounded by vcvtneps2bf16 (AVX512_BF16, plus AVX512DQ's vfpclassps to spot
// denormals). Only cpu_backend.cc calls in here, after checking that the CPU
// supports avx512_bf16.
//
// With GCC the instruction set is switched on by a target pragma placed AFTER
// every standard and project header: inline functions from those headers
// (types.h conversions, std:: templates) are then compiled for baseline
// x86-64 here too. Were the whole file built with -mavx512 flags, the linker
// could keep this file's avx512 copy of such a shared inline function for
// every caller and crash older CPUs with SIGILL. Clang has no equivalent
// pragma for templates, so there CMakeLists.txt passes the -m flags instead.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernel_table.h"
#include "normserve/kernels/problem.h"
#include "normserve/kernels/types.h"

// prfchw: PREFETCHW, which every AVX-512 CPU has, for the output
// prefetches of streamed runs (Kernels::PrefetchNextRun). The AVX2 file
// leaves it out (Intel added it with Broadwell), and that tier goes without
// the prefetch (Avx2Simd::kPrefetchNextRun).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c,prfchw")
#endif

#include "norm_kernels_impl.h"
#include "simd_avx512.h"

namespace normserve::kernels::cpu {

const KernelTable& Avx512Bf16KernelTable() {
  static const KernelTable table = Kernels<Avx512Bf16Simd>::Table();
  return table;
}

}  // namespace normserve::kernels::cpu

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
