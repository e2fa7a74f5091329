// How far oneDNN's layer normalization (the benchmark's peer) and
// normserve's CPU backend are from the float64 reference, in the terms of
// docs/SEMANTICS.md: BFLOAT16 outputs within 1 ulp, FLOAT32 outputs within
// 1e-5 * max(1, |ref|). The same rows, gamma and beta go to all three.
//
//   g++ -O2 -std=c++20 -fopenmp -Ikernels/include -Ikernels/testing/include \
//     bench/probes/onednn_accuracy.cc build/kernels/testing/libnormserve_kernel_testing.a \
//     build/kernels/libnormserve_kernels.a -ldnnl -lpthread -o /tmp/onednn_accuracy
//   /tmp/onednn_accuracy [ROWS]   (default 2048 rows a case)
//
// Prints one line per (data, dtype, cols): how many elements and rows are
// outside the bound, and the largest error (ulps for BFLOAT16, multiples of
// the bound for FLOAT32), for oneDNN and for normserve.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/reference.h"
#include "normserve/kernels/testing/parity.h"
#include "normserve/kernels/types.h"
#include "oneapi/dnnl/dnnl.hpp"

using namespace normserve::kernels;

namespace {

struct Data {
  std::string name;
  std::vector<float> x, gamma, beta;  // x: rows * cols floats, rounded to the dtype later
};

// The benchmark's values (kernel_bench.cc: uniform in [-1.5, 2.5), gamma
// 0.5 + (j % 7) / 8, beta 0), rows of N(0.3, 1) with random gamma and beta
// (as run_driver), and rows far from zero against their spread (N(8, 1)).
Data MakeData(int which, int64_t rows, int64_t cols, std::mt19937& rng) {
  Data d;
  d.x.resize(static_cast<size_t>(rows * cols));
  d.gamma.resize(static_cast<size_t>(cols));
  d.beta.resize(static_cast<size_t>(cols));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(-1.5f, 2.5f);
  for (int64_t j = 0; j < cols; ++j) {
    d.gamma[j] = which == 0 ? 0.5f + static_cast<float>(j % 7) * 0.125f : 1.0f + 0.1f * nd(rng);
    d.beta[j] = which == 0 ? 0.0f : 0.1f * nd(rng);
  }
  for (float& v : d.x) v = which == 0 ? ud(rng) : which == 1 ? 0.3f + nd(rng) : 8.0f + nd(rng);
  d.name = which == 0   ? "bench values, beta 0"
           : which == 1 ? "N(0.3, 1), gamma, beta"
                        : "N(8, 1), gamma, beta";
  return d;
}

struct Errors {
  int64_t bad_elements = 0, bad_rows = 0;
  double worst = 0;  // ulps (BFLOAT16) or multiples of the bound (FLOAT32)
};

Errors Compare(DType dt, const std::vector<uint8_t>& got, const std::vector<uint8_t>& ref, int64_t rows,
               int64_t cols) {
  Errors e;
  for (int64_t r = 0; r < rows; ++r) {
    bool row_bad = false;
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t i = r * cols + j;
      double err = 0;
      if (dt == DType::kBFloat16) {
        uint16_t a, b;
        std::memcpy(&a, got.data() + 2 * i, 2);
        std::memcpy(&b, ref.data() + 2 * i, 2);
        err = static_cast<double>(normserve::kernels::testing::HalfUlpDistance(a, b));
        if (err > 1) ++e.bad_elements, row_bad = true;
      } else {
        float a, b;
        std::memcpy(&a, got.data() + 4 * i, 4);
        std::memcpy(&b, ref.data() + 4 * i, 4);
        err =
            std::fabs(static_cast<double>(a) - b) / (1e-5 * std::max(1.0, std::fabs(static_cast<double>(b))));
        if (err > 1) ++e.bad_elements, row_bad = true;
      }
      e.worst = std::max(e.worst, err);
    }
    e.bad_rows += row_bad;
  }
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  std::mt19937 rng(7);
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 2048;
  omp_set_num_threads(2);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  CpuBackendOptions options;
  options.threads = 2;
  CpuBackend ours(options);
  std::printf("%lld rows a case\n", static_cast<long long>(rows));
  std::printf(
      "| values | dtype | cols | oneDNN: elements outside, rows outside, worst | normserve: elements "
      "outside, rows outside, worst |\n");
  std::printf("|---|---|---:|---|---|\n");
  for (int which = 0; which < 3; ++which) {
    for (DType dt : {DType::kFloat32, DType::kBFloat16}) {
      for (int64_t cols : {128, 512, 1024, 4096}) {
        Data d = MakeData(which, rows, cols, rng);
        const size_t elem = DTypeSize(dt), n = static_cast<size_t>(rows * cols);
        std::vector<uint8_t> x(n * elem), y_dnnl(n * elem), y_ours(n * elem), y_ref(n * elem);
        for (size_t i = 0; i < n; ++i) StoreFromFloat(x.data(), dt, static_cast<int64_t>(i), d.x[i]);

        NormProblem p;
        p.kind = NormKind::kLayerNorm;
        p.input = TensorView{dt, {rows, cols}, x.data(), static_cast<uint64_t>(n * elem)};
        p.gamma = TensorView{DType::kFloat32, {cols}, d.gamma.data(), static_cast<uint64_t>(cols * 4)};
        p.beta = TensorView{DType::kFloat32, {cols}, d.beta.data(), static_cast<uint64_t>(cols * 4)};
        p.epsilon = 1e-5f;
        p.output_dtype = dt;
        p.out.output = y_ref.data();
        ReferenceNormalize(p);
        p.out.output = y_ours.data();
        if (!ours.Run(&p, 1).ok()) {
          std::fprintf(stderr, "normserve failed\n");
          return 1;
        }

        using dnnl::memory;
        const memory::data_type mdt =
            dt == DType::kFloat32 ? memory::data_type::f32 : memory::data_type::bf16;
        const memory::desc data_md({rows, cols}, mdt, memory::format_tag::ab);
        const memory::desc param_md({cols}, memory::data_type::f32, memory::format_tag::a);
        const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
        const dnnl::layer_normalization_forward::desc desc(dnnl::prop_kind::forward_inference, data_md, 1e-5f,
                                                           flags);
        const dnnl::layer_normalization_forward::primitive_desc pd(desc, engine);
        dnnl::layer_normalization_forward(pd).execute(
            stream, {{DNNL_ARG_SRC, memory(data_md, engine, x.data())},
                     {DNNL_ARG_DST, memory(data_md, engine, y_dnnl.data())},
                     {DNNL_ARG_SCALE, memory(param_md, engine, d.gamma.data())},
                     {DNNL_ARG_SHIFT, memory(param_md, engine, d.beta.data())}});
        stream.wait();

        const Errors a = Compare(dt, y_dnnl, y_ref, rows, cols), b = Compare(dt, y_ours, y_ref, rows, cols);
        const char* unit = dt == DType::kBFloat16 ? "ulp" : "x bound";
        std::printf("| %s | %s | %lld | %lld, %lld, %.3g %s | %lld, %lld, %.3g %s |\n", d.name.c_str(),
                    std::string(DTypeName(dt)).c_str(), static_cast<long long>(cols),
                    static_cast<long long>(a.bad_elements), static_cast<long long>(a.bad_rows), a.worst, unit,
                    static_cast<long long>(b.bad_elements), static_cast<long long>(b.bad_rows), b.worst,
                    unit);
      }
    }
  }
  return 0;
}
