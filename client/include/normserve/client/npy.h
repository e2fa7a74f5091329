// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0).
//
// Supported element types, little-endian and C order only:
//   '<f4'  float32
//   '<f2'  float16 (IEEE binary16)
//   '<u2'  16-bit unsigned words; the CLI reads and writes these as raw
//          bfloat16 bits, since NumPy has no bfloat16 type.
// A bfloat16 tensor is normally exchanged as '<f4' (every bfloat16 value is
// exact in float32): the CLI rounds '<f4' input to bfloat16 for the wire
// with --dtype=bfloat16 and writes bfloat16 results as '<f4' unless
// --raw_bf16 asks for '<u2' bit patterns.
//
// Everything else (big-endian, '<f8', fortran_order True, object arrays) is
// rejected with INVALID_ARGUMENT naming the problem. Free functions, no
// state, safe from any thread.
#ifndef NORMSERVE_CLIENT_NPY_H_
#define NORMSERVE_CLIENT_NPY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace normserve::client {

enum class NpyDType { kFloat32, kFloat16, kUInt16 };

// The descr string: "<f4", "<f2" or "<u2".
const char* NpyDescr(NpyDType t);
inline int NpyItemSize(NpyDType t) { return t == NpyDType::kFloat32 ? 4 : 2; }

struct NpyArray {
  NpyDType dtype = NpyDType::kFloat32;
  // Dimensions, C order; empty for a 0-d array.
  std::vector<int64_t> shape;
  // Raw little-endian element bytes, product(shape) * item size of them.
  std::string data;

  int64_t NumElements() const;
};

// Parses a whole .npy file held in memory. Errors (INVALID_ARGUMENT):
//   "bad magic: not a .npy file"
//   "unsupported .npy format version M.N"
//   "truncated header"
//   "malformed header: <what>"
//   "unsupported dtype '<descr>': expected '<f4', '<f2' or '<u2'"
//   "fortran_order True is not supported: save a C-contiguous array"
//   "truncated data: shape (2, 3) '<f4' needs 24 bytes, file has 20"
absl::StatusOr<NpyArray> ParseNpy(absl::string_view file_bytes);

// Reads and parses `path`. Errors carry the path as a prefix ("x.npy: ...");
// NOT_FOUND when the file cannot be opened.
absl::StatusOr<NpyArray> ReadNpyFile(const std::string& path);

// Serializes `array` with the smallest format version that fits (1.0 unless
// the header exceeds 65535 bytes). The data offset is a multiple of 64.
// REQUIRES: array.data.size() == NumElements() * item size.
std::string SerializeNpy(const NpyArray& array);

// Writes SerializeNpy(array) to `path` (replacing it). INTERNAL on I/O errors.
absl::Status WriteNpyFile(const std::string& path, const NpyArray& array);

}  // namespace normserve::client

#endif  // NORMSERVE_CLIENT_NPY_H_
