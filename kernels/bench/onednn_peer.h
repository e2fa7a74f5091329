// The oneDNN peer of normserve-kernel-bench: oneDNN's layer normalization
// primitive (forward inference, scale and shift) on the same buffers and
// thread count as the CPU backend. Built only where libdnnl is found
// (NORMSERVE_HAVE_DNNL); otherwise MakeOneDnnLayerNorm reports no peer.
#ifndef NORMSERVE_KERNELS_BENCH_ONEDNN_PEER_H_
#define NORMSERVE_KERNELS_BENCH_ONEDNN_PEER_H_

#include <cstdint>
#include <functional>
#include <string>

#include "normserve/kernels/types.h"

namespace normserve::kernels::bench {

// "onednn-<major>.<minor>", or empty without oneDNN.
std::string OneDnnPeerName();

// A callable that runs one layer normalization of src [rows, cols] into dst
// (both of `dtype`, gamma = 1, beta = 0 as float32 vectors) on `threads`
// OpenMP threads. Empty when oneDNN is absent or does not support the dtype;
// `why` then says why. The buffers must outlive the callable.
std::function<void()> MakeOneDnnLayerNorm(DType dtype, int64_t rows, int64_t cols, float epsilon, int threads,
                                          const void* src, void* dst, std::string* why);

}  // namespace normserve::kernels::bench

#endif  // NORMSERVE_KERNELS_BENCH_ONEDNN_PEER_H_
