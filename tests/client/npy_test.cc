#include "normserve/client/npy.h"

#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace normserve::client {
namespace {

NpyArray RandomArray(NpyDType dtype, std::vector<int64_t> shape, uint32_t seed) {
  NpyArray a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  std::mt19937 rng(seed);
  a.data.resize(a.NumElements() * NpyItemSize(dtype));
  for (char& c : a.data) c = static_cast<char>(rng() & 0xff);
  return a;
}

// A file as NumPy 1.24 writes it for np.zeros((2, 3), np.float32).
std::string NumpyHeader(const std::string& dict, int major = 1) {
  std::string h = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  h.append((64 - (prefix + h.size() + 1) % 64) % 64, ' ');
  h.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  const int len_bytes = major == 1 ? 2 : 4;
  for (int i = 0; i < len_bytes; ++i) out.push_back(static_cast<char>((h.size() >> (8 * i)) & 0xff));
  return out + h;
}

TEST(NpyTest, RoundTripsEveryDtype) {
  for (NpyDType t : {NpyDType::kFloat32, NpyDType::kFloat16, NpyDType::kUInt16}) {
    for (const auto& shape : std::vector<std::vector<int64_t>>{{}, {7}, {2, 3}, {2, 1, 4, 5}}) {
      NpyArray a = RandomArray(t, shape, 42);
      const std::string bytes = SerializeNpy(a);
      // The data starts at a multiple of 64, as NumPy requires.
      const size_t header_len =
          static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
      EXPECT_EQ((10 + header_len) % 64, 0u);
      auto b = ParseNpy(bytes);
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ(b->dtype, t);
      EXPECT_EQ(b->shape, a.shape);
      EXPECT_EQ(b->data, a.data);
    }
  }
}

TEST(NpyTest, WritesTheHeaderNumpyExpects) {
  NpyArray a = RandomArray(NpyDType::kFloat32, {2, 3}, 1);
  const std::string bytes = SerializeNpy(a);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_NE(bytes.find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), std::string::npos);
  NpyArray v = RandomArray(NpyDType::kFloat16, {5}, 1);
  EXPECT_NE(SerializeNpy(v).find("'shape': (5,)"), std::string::npos);
}

TEST(NpyTest, ReadsVersion2And3Headers) {
  for (int major : {2, 3}) {
    std::string file = NumpyHeader("{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }", major);
    file += std::string("\x00\x3c\x00\x40\x00\xc0", 6);  // 1, 2, -2 in binary16
    auto a = ParseNpy(file);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->dtype, NpyDType::kFloat16);
    EXPECT_EQ(a->shape, std::vector<int64_t>{3});
    EXPECT_EQ(a->data.size(), 6u);
  }
}

TEST(NpyTest, ReadsKeysInAnyOrderAndDoubleQuotes) {
  std::string file = NumpyHeader("{\"shape\": (1, 2), \"fortran_order\": False, \"descr\": \"<f4\"}");
  file += std::string(8, '\0');
  auto a = ParseNpy(file);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->shape, (std::vector<int64_t>{1, 2}));
}

void ExpectError(const std::string& file, const std::string& message) {
  auto a = ParseNpy(file);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.status().message(), message);
}

TEST(NpyTest, RejectsBadMagic) {
  ExpectError("PK\x03\x04 not numpy at all", "bad magic: not a .npy file");
  ExpectError("", "bad magic: not a .npy file");
}

TEST(NpyTest, RejectsUnsupportedVersion) {
  std::string file = NumpyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }");
  file[6] = 4;
  ExpectError(file, "unsupported .npy format version 4.0");
}

TEST(NpyTest, RejectsUnsupportedDtypes) {
  ExpectError(NumpyHeader("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }") + std::string(8, '\0'),
              "unsupported dtype '<f8': expected '<f4', '<f2' or '<u2'");
  ExpectError(NumpyHeader("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }") + std::string(4, '\0'),
              "unsupported dtype '>f4': expected '<f4', '<f2' or '<u2'");
}

TEST(NpyTest, RejectsFortranOrder) {
  ExpectError(
      NumpyHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }") + std::string(24, '\0'),
      "fortran_order True is not supported: save a C-contiguous array");
}

TEST(NpyTest, RejectsTruncatedData) {
  ExpectError(
      NumpyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") + std::string(20, '\0'),
      "truncated data: shape (2, 3) '<f4' needs 24 bytes, file has 20");
}

TEST(NpyTest, RejectsTruncatedAndMalformedHeaders) {
  const std::string full = NumpyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }");
  ExpectError(full.substr(0, 30), "truncated header");
  ExpectError(full.substr(0, 9), "truncated header");
  ExpectError(NumpyHeader("{'descr': '<f4', 'shape': (1,), }"), "malformed header: missing 'fortran_order'");
  ExpectError(NumpyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1,-2), }"),
              "malformed header: shape is not a tuple of non-negative integers");
  ExpectError(NumpyHeader("['descr', '<f4']"), "malformed header: expected '{'");
}

TEST(NpyTest, FileRoundTripAndPathInErrors) {
  const std::string path = testing::TempDir() + "/npy_test_roundtrip.npy";
  NpyArray a = RandomArray(NpyDType::kFloat32, {3, 4}, 7);
  ASSERT_TRUE(WriteNpyFile(path, a).ok());
  auto b = ReadNpyFile(path);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->data, a.data);

  const std::string bad = testing::TempDir() + "/npy_test_bad.npy";
  std::FILE* f = std::fopen(bad.c_str(), "wb");
  std::fputs("hello", f);
  std::fclose(f);
  auto c = ReadNpyFile(bad);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(), bad + ": bad magic: not a .npy file");
  auto d = ReadNpyFile(testing::TempDir() + "/does_not_exist.npy");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace normserve::client
