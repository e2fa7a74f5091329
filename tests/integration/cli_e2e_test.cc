// normserve-cli against the real server: .npy in, .npy out, compared with the
// float64 reference; info, health and error reporting.
#include <random>

#include "gtest/gtest.h"
#include "normserve/client/npy.h"
#include "normserve/client/tensor_util.h"
#include "reference_check.h"
#include "shared_server.h"

namespace normserve::testing {
namespace {

using client::NpyArray;
using client::NpyDType;

std::string Cli() { return EnvOrEmpty("NORMSERVE_CLI"); }

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/cli_e2e_" + name; }

NpyArray FloatArray(const std::vector<float>& v, std::vector<int64_t> shape) {
  NpyArray a;
  a.dtype = NpyDType::kFloat32;
  a.shape = std::move(shape);
  a.data.assign(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  return a;
}

std::vector<float> Random(std::mt19937* rng, size_t n, float mean, float stddev) {
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(*rng);
  return v;
}

class CliE2eTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(Server(), nullptr); }
  std::string Run(const std::string& args, int* exit_code) {
    CommandResult r = RunCommand(Cli() + " " + args);
    *exit_code = r.exit_code;
    return r.output;
  }
};

TEST_F(CliE2eTest, LayerNormBFloat16WithResidualMatchesTheReference) {
  std::mt19937 rng(9);
  const std::vector<int64_t> shape = {4, 1024};
  const auto x = Random(&rng, 4096, 0.2f, 2.0f), r = Random(&rng, 4096, 0.0f, 1.0f);
  const auto g = Random(&rng, 1024, 1.0f, 0.2f), b = Random(&rng, 1024, 0.0f, 0.2f);
  ASSERT_TRUE(client::WriteNpyFile(TempPath("x.npy"), FloatArray(x, shape)).ok());
  ASSERT_TRUE(client::WriteNpyFile(TempPath("r.npy"), FloatArray(r, shape)).ok());
  ASSERT_TRUE(client::WriteNpyFile(TempPath("g.npy"), FloatArray(g, {1024})).ok());
  ASSERT_TRUE(client::WriteNpyFile(TempPath("b.npy"), FloatArray(b, {1024})).ok());
  int code = 0;
  const std::string out =
      Run("normalize --target=" + Server()->target() + " --kind=layer_norm --dtype=bfloat16" + " --input=" +
              TempPath("x.npy") + " --residual=" + TempPath("r.npy") + " --gamma=" + TempPath("g.npy") +
              " --beta=" + TempPath("b.npy") + " --output=" + TempPath("y.npy") +
              " --residual_out=" + TempPath("h.npy") + " --stats_out=" + TempPath("stats") + " --raw_bf16",
          &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("layer_norm bfloat16 [4,1024]"), std::string::npos) << out;
  EXPECT_NE(out.find("server queue"), std::string::npos) << out;

  // The request the CLI should have sent: x and r rounded to bfloat16,
  // gamma/beta as FLOAT32.
  v1::NormalizeRequest req;
  req.set_kind(v1::LAYER_NORM);
  *req.mutable_input() = client::MakeTensor(x, shape, v1::BFLOAT16);
  *req.mutable_residual() = client::MakeTensor(r, shape, v1::BFLOAT16);
  *req.mutable_gamma() = client::MakeTensor(g, std::vector<int64_t>{1024}, v1::FLOAT32);
  *req.mutable_beta() = client::MakeTensor(b, std::vector<int64_t>{1024}, v1::FLOAT32);
  auto y = client::ReadNpyFile(TempPath("y.npy"));
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(y->dtype, NpyDType::kUInt16);
  EXPECT_EQ(y->shape, shape);
  EXPECT_TRUE(WithinBounds(y->data, ReferenceOutput(req), v1::BFLOAT16));
  // h = round_bf16(x + r), exactly.
  auto h = client::ReadNpyFile(TempPath("h.npy"));
  ASSERT_TRUE(h.ok()) << h.status();
  std::vector<float> sum(4096);
  for (int i = 0; i < 4096; ++i) {
    sum[i] = kernels::RoundToDType(kernels::RoundToDType(x[i], kernels::DType::kBFloat16) +
                                       kernels::RoundToDType(r[i], kernels::DType::kBFloat16),
                                   kernels::DType::kBFloat16);
  }
  EXPECT_EQ(h->data, client::MakeTensor(sum, shape, v1::BFLOAT16).data());
  auto mean = client::ReadNpyFile(TempPath("stats_mean.npy"));
  ASSERT_TRUE(mean.ok()) << mean.status();
  EXPECT_EQ(mean->shape, std::vector<int64_t>{4});
  EXPECT_TRUE(client::ReadNpyFile(TempPath("stats_rstd.npy")).ok());
}

TEST_F(CliE2eTest, RmsNormFloat32OutputsAsF4) {
  std::mt19937 rng(10);
  const auto x = Random(&rng, 3 * 512, 0.0f, 3.0f);
  ASSERT_TRUE(client::WriteNpyFile(TempPath("x2.npy"), FloatArray(x, {3, 512})).ok());
  int code = 0;
  const std::string out =
      Run("normalize --target=" + Server()->target() + " --kind=rms_norm --input=" + TempPath("x2.npy") +
              " --output=" + TempPath("y2.npy") + " --eps=1e-5",
          &code);
  ASSERT_EQ(code, 0) << out;
  v1::NormalizeRequest req;
  req.set_kind(v1::RMS_NORM);
  req.set_epsilon(1e-5f);
  *req.mutable_input() = client::MakeTensor(x, std::vector<int64_t>{3, 512}, v1::FLOAT32);
  auto y = client::ReadNpyFile(TempPath("y2.npy"));
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(y->dtype, NpyDType::kFloat32);
  EXPECT_TRUE(WithinBounds(y->data, ReferenceOutput(req), v1::FLOAT32));
}

TEST_F(CliE2eTest, InfoAndHealth) {
  int code = -1;
  std::string out = Run("health --target=" + Server()->target(), &code);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "SERVING\n");
  out = Run("info --target=" + Server()->target(), &code);
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("default backend  cpu"), std::string::npos) << out;
  EXPECT_NE(out.find("layer_norm, rms_norm, batch_norm, group_norm, instance_norm"), std::string::npos)
      << out;
}

TEST_F(CliE2eTest, ErrorsPrintTheCodeAndMessage) {
  int code = 0;
  // Nothing listens on port 1.
  std::string out = Run("health --target=127.0.0.1:1 --deadline=5s", &code);
  EXPECT_EQ(code, 1);
  EXPECT_EQ(out.rfind("error: UNAVAILABLE: ", 0), 0u) << out;

  const std::string bad = TempPath("bad.npy");
  std::FILE* f = std::fopen(bad.c_str(), "w");
  std::fputs("not numpy", f);
  std::fclose(f);
  out = Run("normalize --target=" + Server()->target() + " --input=" + bad + " --output=" + TempPath("o.npy"),
            &code);
  EXPECT_EQ(code, 1);
  EXPECT_EQ(out, "error: INVALID_ARGUMENT: " + bad + ": bad magic: not a .npy file\n");

  // A server-side validation error comes back with its code.
  std::mt19937 rng(1);
  ASSERT_TRUE(client::WriteNpyFile(TempPath("x3.npy"), FloatArray(Random(&rng, 12, 0, 1), {2, 6})).ok());
  out = Run("normalize --target=" + Server()->target() + " --kind=group_norm --num_groups=4 --input=" +
                TempPath("x3.npy") + " --output=" + TempPath("o.npy"),
            &code);
  EXPECT_EQ(code, 1);
  EXPECT_EQ(out.rfind("error: INVALID_ARGUMENT: ", 0), 0u) << out;
  EXPECT_NE(out.find("num_groups"), std::string::npos) << out;

  out = Run("normalize --bogus", &code);
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out, "unknown flag --bogus\n");
}

}  // namespace
}  // namespace normserve::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new normserve::testing::SharedServerEnvironment);
  return RUN_ALL_TESTS();
}
