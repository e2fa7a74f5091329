// oneDNN 2.x layer normalization as a benchmark peer. oneDNN's C++ API
// reports errors by exception; they are caught here and turned into "no peer".
#include "onednn_peer.h"

#if defined(NORMSERVE_HAVE_DNNL)
#include <omp.h>

#include <memory>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#endif

namespace normserve::kernels::bench {

#if defined(NORMSERVE_HAVE_DNNL)

std::string OneDnnPeerName() {
  const dnnl_version_t* v = dnnl_version();
  return "onednn-" + std::to_string(v->major) + "." + std::to_string(v->minor);
}

std::function<void()> MakeOneDnnLayerNorm(DType dtype, int64_t rows, int64_t cols, float epsilon, int threads,
                                          const void* src, void* dst, std::string* why) {
  using dnnl::memory;
  memory::data_type dt = memory::data_type::f32;
  switch (dtype) {
    case DType::kFloat32:
      dt = memory::data_type::f32;
      break;
    case DType::kFloat16:
      dt = memory::data_type::f16;
      break;
    case DType::kBFloat16:
      dt = memory::data_type::bf16;
      break;
  }
  struct State {
    dnnl::engine engine;
    dnnl::stream stream;
    dnnl::layer_normalization_forward primitive;
    std::unordered_map<int, memory> args;
    std::vector<float> scale, shift;
  };
  try {
    auto state = std::make_shared<State>();
    state->engine = dnnl::engine(dnnl::engine::kind::cpu, 0);
    state->stream = dnnl::stream(state->engine);
    const memory::desc data_md({rows, cols}, dt, memory::format_tag::ab);
    const memory::desc param_md({cols}, memory::data_type::f32, memory::format_tag::a);
    const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    const dnnl::layer_normalization_forward::desc desc(dnnl::prop_kind::forward_inference, data_md, epsilon,
                                                       flags);
    const dnnl::layer_normalization_forward::primitive_desc pd(desc, state->engine);
    state->primitive = dnnl::layer_normalization_forward(pd);
    state->scale.assign(static_cast<size_t>(cols), 1.0f);
    state->shift.assign(static_cast<size_t>(cols), 0.0f);
    state->args[DNNL_ARG_SRC] = memory(data_md, state->engine, const_cast<void*>(src));
    state->args[DNNL_ARG_DST] = memory(data_md, state->engine, dst);
    state->args[DNNL_ARG_SCALE] = memory(param_md, state->engine, state->scale.data());
    state->args[DNNL_ARG_SHIFT] = memory(param_md, state->engine, state->shift.data());
    return [state, threads] {
      omp_set_num_threads(threads);
      state->primitive.execute(state->stream, state->args);
      state->stream.wait();
    };
  } catch (const dnnl::error& e) {
    if (why != nullptr) *why = e.what();
    return {};
  }
}

#else

std::string OneDnnPeerName() { return ""; }

std::function<void()> MakeOneDnnLayerNorm(DType, int64_t, int64_t, float, int, const void*, void*,
                                          std::string* why) {
  if (why != nullptr) *why = "built without oneDNN";
  return {};
}

#endif

}  // namespace normserve::kernels::bench
