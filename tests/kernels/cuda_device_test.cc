// Device-level checks below the Backend interface (built only with CUDA):
// - the kernels' float -> FLOAT16 / BFLOAT16 rounding equals types.h bit for
//   bit (a stride through all 2^32 float bit patterns plus special values);
// - a row launch on device pointers that are one element off 16 bytes (the
//   scalar path) gives the same bits as the aligned launch (vector path),
//   for every dtype and the register and block plans.
// Exits 77 without a GPU.
#include <cuda_runtime.h>

#include <cstring>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "norm_launch.h"
#include "normserve/kernels/types.h"

namespace normserve::kernels {
namespace {

#define CHECK_CUDA(f, expr) f.Expect((expr) == cudaSuccess, "cuda", #expr)

void CheckConversions(cuda_test::Failures& f) {
  std::vector<float> in;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 4093) in.push_back(BitsToFloat(uint32_t(bits)));
  // Ties, overflow edges, subnormals and NaN payloads.
  for (uint32_t b :
       {0x477fe000u, 0x477ff000u, 0x477fefffu, 0x33000000u, 0x33000001u, 0x387fc000u, 0x38800000u,
        0x3f801000u, 0x3f803000u, 0x3f808000u, 0x3f818000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
        0xffc00001u, 0x7f800001u, 0x7fbfffffu, 0x80000000u, 0x00000001u, 0x7f7fffffu}) {
    in.push_back(BitsToFloat(b));
  }
  const size_t n = in.size();
  float* d_in = nullptr;
  uint16_t* d_half = nullptr;
  uint16_t* d_bf16 = nullptr;
  CHECK_CUDA(f, cudaMalloc(&d_in, n * sizeof(float)));
  CHECK_CUDA(f, cudaMalloc(&d_half, n * 2));
  CHECK_CUDA(f, cudaMalloc(&d_bf16, n * 2));
  CHECK_CUDA(f, cudaMemcpy(d_in, in.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  const KernelStatus s = cuda::LaunchConvertFloats(d_in, int64_t(n), d_half, d_bf16, nullptr);
  f.Expect(s.ok(), "convert_launch", s.message());
  std::vector<uint16_t> half(n), bf16(n);
  CHECK_CUDA(f, cudaMemcpy(half.data(), d_half, n * 2, cudaMemcpyDeviceToHost));
  CHECK_CUDA(f, cudaMemcpy(bf16.data(), d_bf16, n * 2, cudaMemcpyDeviceToHost));
  std::vector<std::string> bad;
  for (size_t i = 0; i < n; ++i) {
    if (half[i] != FloatToHalfBits(in[i]) || bf16[i] != FloatToBFloat16Bits(in[i])) {
      bad.push_back("float bits " + std::to_string(FloatBits(in[i])) + ": device half " +
                    std::to_string(half[i]) + " bf16 " + std::to_string(bf16[i]) + ", types.h " +
                    std::to_string(FloatToHalfBits(in[i])) + " " +
                    std::to_string(FloatToBFloat16Bits(in[i])));
    }
  }
  f.Add("conversions", bad);
  cudaFree(d_in);
  cudaFree(d_half);
  cudaFree(d_bf16);
}

// Runs one LAYER_NORM launch with every tensor at byte offset `shift` of its buffer.
std::vector<uint8_t> RunRows(DType dtype, int64_t rows, int64_t cols, size_t shift,
                             const std::vector<uint8_t>& x, const std::vector<float>& gamma,
                             cuda_test::Failures& f) {
  const size_t bytes = x.size();
  char *d_x = nullptr, *d_r = nullptr, *d_y = nullptr, *d_ro = nullptr, *d_g = nullptr;
  cuda::RowSegment* d_table = nullptr;
  CHECK_CUDA(f, cudaMalloc(&d_x, bytes + 64));
  CHECK_CUDA(f, cudaMalloc(&d_r, bytes + 64));
  CHECK_CUDA(f, cudaMalloc(&d_y, bytes + 64));
  CHECK_CUDA(f, cudaMalloc(&d_ro, bytes + 64));
  CHECK_CUDA(f, cudaMalloc(&d_g, gamma.size() * 4 + 64));
  CHECK_CUDA(f, cudaMalloc(&d_table, sizeof(cuda::RowSegment)));
  CHECK_CUDA(f, cudaMemcpy(d_x + shift, x.data(), bytes, cudaMemcpyHostToDevice));
  // The residual is x reversed, so h = x + r differs from x.
  std::vector<uint8_t> r(x.rbegin(), x.rend());
  CHECK_CUDA(f, cudaMemcpy(d_r + shift, r.data(), bytes, cudaMemcpyHostToDevice));
  CHECK_CUDA(f, cudaMemcpy(d_g + (shift / DTypeSize(dtype)) * 4, gamma.data(), gamma.size() * 4,
                           cudaMemcpyHostToDevice));
  cuda::RowSegment seg;
  seg.x = d_x + shift;
  seg.residual = d_r + shift;
  seg.y = d_y + shift;
  seg.residual_out = d_ro + shift;
  seg.gamma = reinterpret_cast<const float*>(d_g + (shift / DTypeSize(dtype)) * 4);
  seg.rows = rows;
  CHECK_CUDA(f, cudaMemcpy(d_table, &seg, sizeof(seg), cudaMemcpyHostToDevice));
  cuda::RowLaunch l;
  l.kind = NormKind::kLayerNorm;
  l.in_dtype = dtype;
  l.out_dtype = dtype;
  l.residual = true;
  l.cols = cols;
  l.segments = d_table;
  l.num_segments = 1;
  l.total_rows = rows;
  const KernelStatus s = cuda::LaunchRowNorm(l, nullptr);
  f.Expect(s.ok(), "row_launch", s.message());
  CHECK_CUDA(f, cudaDeviceSynchronize());
  std::vector<uint8_t> out(2 * bytes);
  CHECK_CUDA(f, cudaMemcpy(out.data(), d_y + shift, bytes, cudaMemcpyDeviceToHost));
  CHECK_CUDA(f, cudaMemcpy(out.data() + bytes, d_ro + shift, bytes, cudaMemcpyDeviceToHost));
  for (void* p : {static_cast<void*>(d_x), static_cast<void*>(d_r), static_cast<void*>(d_y),
                  static_cast<void*>(d_ro), static_cast<void*>(d_g), static_cast<void*>(d_table)}) {
    cudaFree(p);
  }
  return out;
}

void CheckMisalignedDevicePointers(cuda_test::Failures& f) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    for (int64_t cols : {256, 1024, 4096, 65536}) {
      const int64_t rows = 9;
      std::vector<uint8_t> x(size_t(rows * cols) * DTypeSize(dtype));
      for (int64_t i = 0; i < rows * cols; ++i) {
        StoreFromFloat(x.data(), dtype, i, float((i * 7919) % 1000) / 250.0f - 2.0f + float(i / cols));
      }
      std::vector<float> gamma(static_cast<size_t>(cols));
      for (int64_t j = 0; j < cols; ++j) gamma[size_t(j)] = 0.5f + float(j % 13) / 13.0f;
      const std::vector<uint8_t> aligned = RunRows(dtype, rows, cols, 0, x, gamma, f);
      const std::vector<uint8_t> shifted = RunRows(dtype, rows, cols, DTypeSize(dtype), x, gamma, f);
      f.Expect(aligned == shifted, "misaligned_device",
               std::string(DTypeName(dtype)) + " cols " + std::to_string(cols) + ": bits differ");
    }
  }
}

int Main() {
  if (CudaDeviceCount() == 0) {
    std::printf("cuda_device_test: skipped, no CUDA device\n");
    return cuda_test::kSkipExitCode;
  }
  cuda_test::Failures f;
  CheckConversions(f);
  CheckMisalignedDevicePointers(f);
  return f.Finish("cuda_device_test");
}

}  // namespace
}  // namespace normserve::kernels

int main() { return normserve::kernels::Main(); }
