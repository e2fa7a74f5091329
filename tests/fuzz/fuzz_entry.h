// The one entry point shared by the libFuzzer target and the corpus replay
// test: bytes -> NormalizeRequest -> server::PrepareRequest -> (if accepted)
// the CPU backend, checked against the float64 reference.
//
// CheckRequestBytes never crashes on its own account: it returns a verdict,
// and the callers decide what a violated property means (libFuzzer aborts,
// the replay test fails). Properties checked:
// - a rejected request gets INVALID_ARGUMENT or RESOURCE_EXHAUSTED, never
//   another code, with a short non-empty message;
// - an accepted request's response tensors have the input's shape and the
//   sizes their dtypes need;
// - the CPU backend agrees with the float64 reference within the
//   SEMANTICS.md bounds (kernels::testing::CompareToReference), and running
//   it on the server's own output buffers gives the same bits.
//
// Thread-compatible only: it keeps one CPU backend in a function-local static
// and is meant to be called from one thread.
#ifndef NORMSERVE_TESTS_FUZZ_FUZZ_ENTRY_H_
#define NORMSERVE_TESTS_FUZZ_FUZZ_ENTRY_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace normserve::fuzz {

// Per-tensor element cap passed to PrepareRequest, so that every accepted
// input computes in microseconds (the server default is 2^28).
inline constexpr int64_t kFuzzMaxTensorElements = 4096;

// Longest error message a rejection may carry. A hostile shape must not
// produce a message that grows with the input.
inline constexpr size_t kMaxErrorMessageBytes = 512;

struct FuzzVerdict {
  // False when the bytes do not parse as a NormalizeRequest.
  bool parsed = false;
  // PrepareRequest's result (OK when accepted).
  absl::Status status;
  // Empty when every property held; otherwise what broke.
  std::string violation;
};

FuzzVerdict CheckRequestBytes(const uint8_t* data, size_t size);

}  // namespace normserve::fuzz

#endif  // NORMSERVE_TESTS_FUZZ_FUZZ_ENTRY_H_
