// A small status type for the kernels library.
//
// kernels/ builds on machines that have only a compiler, CMake and CUDA (no
// Abseil), so it cannot use absl::Status. KernelStatus carries the same codes
// the server needs; server/ converts it to absl::Status in exactly one place
// (server/core/status_util.h). Value type, cheap to copy, no thread concerns.
#ifndef NORMSERVE_KERNELS_STATUS_H_
#define NORMSERVE_KERNELS_STATUS_H_

#include <string>
#include <utility>

namespace normserve::kernels {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 3,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kInternal = 13,
  kUnavailable = 14,
};

class KernelStatus {
 public:
  KernelStatus() = default;
  KernelStatus(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static KernelStatus Ok() { return KernelStatus(); }
  static KernelStatus InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static KernelStatus FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static KernelStatus ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static KernelStatus Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static KernelStatus Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

}  // namespace normserve::kernels

#define NORMSERVE_KERNEL_RETURN_IF_ERROR(expr)           \
  do {                                                   \
    ::normserve::kernels::KernelStatus status_ = (expr); \
    if (!status_.ok()) return status_;                   \
  } while (0)

#endif  // NORMSERVE_KERNELS_STATUS_H_
