// The real CPU backend behind the batcher: a request's output bits are the
// same alone and inside a batch of many, and agree with the float64
// reference within the SEMANTICS.md bounds.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/types.h"
#include "server/core/norm_core.h"
#include "tests/server/server_test_util.h"

namespace normserve::server {
namespace {

using testing::LayerNormRequest;
using testing::PendingCall;
using testing::SubmitAsync;

std::unique_ptr<NormCore> MakeCore(std::unique_ptr<kernels::Backend> backend, int64_t max_batch_rows) {
  std::vector<std::unique_ptr<kernels::Backend>> backends;
  const std::string name(backend->name());
  backends.push_back(std::move(backend));
  CoreOptions options;
  options.batcher.workers = 1;
  // The batch is released when it holds max_batch_rows rows, well before
  // this delay: every request submitted below shares one backend call.
  options.batcher.max_queue_delay = std::chrono::seconds(20);
  options.batcher.max_batch_rows = max_batch_rows;
  return std::make_unique<NormCore>(options, std::move(backends), name, nullptr);
}

// Converts a FLOAT32 request to `dtype` (input and gamma/beta), rounding once.
v1::NormalizeRequest ToDType(v1::NormalizeRequest r, v1::DType dtype) {
  if (dtype == v1::FLOAT32) return r;
  for (v1::Tensor* t : {r.mutable_input(), r.mutable_gamma(), r.mutable_beta()}) {
    const std::vector<float> v = testing::Floats(*t);
    std::string bytes(v.size() * 2, '\0');
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t h =
          dtype == v1::FLOAT16 ? kernels::FloatToHalfBits(v[i]) : kernels::FloatToBFloat16Bits(v[i]);
      std::memcpy(&bytes[i * 2], &h, 2);
    }
    t->set_dtype(dtype);
    t->set_data(bytes);
  }
  return r;
}

class CpuBatchingTest : public ::testing::TestWithParam<v1::DType> {};

TEST_P(CpuBatchingTest, SameBitsAloneAndBatchedAndWithinBounds) {
  const v1::DType dtype = GetParam();
  constexpr int64_t kCols = 200;
  const v1::NormalizeRequest probe = ToDType(LayerNormRequest(3, kCols, 77), dtype);

  auto alone_core = MakeCore(std::make_unique<kernels::CpuBackend>(), 3);
  absl::StatusOr<v1::NormalizeResponse> alone = testing::RunSync(*alone_core, probe);
  ASSERT_TRUE(alone.ok()) << alone.status();

  auto ref_core = MakeCore(std::make_unique<testing::FakeBackend>("cpu"), 3);
  absl::StatusOr<v1::NormalizeResponse> reference = testing::RunSync(*ref_core, probe);
  ASSERT_TRUE(reference.ok()) << reference.status();

  std::vector<v1::NormalizeRequest> requests;
  int64_t rows = 0;
  for (int i = 0; i < 24; ++i) {
    requests.push_back(i == 11 ? probe : ToDType(LayerNormRequest(1 + i % 4, kCols, 300 + i), dtype));
    rows += 1 + (i == 11 ? 2 : i % 4);
  }
  auto batch_core = MakeCore(std::make_unique<kernels::CpuBackend>(), rows);
  std::vector<PendingCall> calls(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) SubmitAsync(*batch_core, requests[i], &calls[i]);
  for (auto& call : calls) ASSERT_TRUE(call.future.get().ok());
  const v1::NormalizeResponse& batched = calls[11].response;
  EXPECT_EQ(batched.timing().batch_requests(), 24u);
  EXPECT_EQ(batched.output().data(), alone->output().data()) << "batch changed the bits";

  // Within bounds of the float64 reference.
  const std::string& got = alone->output().data();
  const std::string& want = reference->output().data();
  ASSERT_EQ(got.size(), want.size());
  const size_t n = 3 * kCols;
  for (size_t i = 0; i < n; ++i) {
    if (dtype == v1::FLOAT32) {
      float g, w;
      std::memcpy(&g, &got[i * 4], 4);
      std::memcpy(&w, &want[i * 4], 4);
      ASSERT_LE(std::abs(g - w), 1e-5 * std::max(1.0f, std::abs(w))) << i;
    } else {
      uint16_t g, w;
      std::memcpy(&g, &got[i * 2], 2);
      std::memcpy(&w, &want[i * 2], 2);
      // Same sign here (|values| well away from 0 is not guaranteed, so
      // compare as ordered integers over the sign-magnitude encoding).
      auto ordered = [](uint16_t b) {
        return (b & 0x8000) ? -static_cast<int>(b & 0x7fff) : static_cast<int>(b);
      };
      ASSERT_LE(std::abs(ordered(g) - ordered(w)), 1) << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, CpuBatchingTest, ::testing::Values(v1::FLOAT32, v1::FLOAT16, v1::BFLOAT16));

}  // namespace
}  // namespace normserve::server
