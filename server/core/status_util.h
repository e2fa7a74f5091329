// Status helpers for the server core.
//
// Debian's Abseil (20220623) has no RETURN_IF_ERROR / ASSIGN_OR_RETURN, so
// they live here. FromKernelStatus is the one place where a kernels-library
// KernelStatus becomes an absl::Status. The absl::Status -> grpc::Status
// mapping lives in the gRPC adapter (server/grpc/status_map.h), because the
// core knows no gRPC types. Everything here is stateless and thread-safe.
#ifndef NORMSERVE_SERVER_CORE_STATUS_UTIL_H_
#define NORMSERVE_SERVER_CORE_STATUS_UTIL_H_

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "normserve/kernels/status.h"

namespace normserve::server {

// Same code (the enums share the google.rpc.Code numbering), same message.
absl::Status FromKernelStatus(const kernels::KernelStatus& status);

// "OK", "INVALID_ARGUMENT", ...: the google.rpc.Code name, as used in the
// `code` label of normserve_requests_total.
std::string_view StatusCodeName(absl::StatusCode code);

}  // namespace normserve::server

#define NORMSERVE_STATUS_CONCAT_INNER_(a, b) a##b
#define NORMSERVE_STATUS_CONCAT_(a, b) NORMSERVE_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function when it is not OK.
#define RETURN_IF_ERROR(expr)                              \
  do {                                                     \
    ::absl::Status normserve_status_ = (expr);             \
    if (!normserve_status_.ok()) return normserve_status_; \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>);
// returns its status when not OK, else moves the value into `lhs`, which may
// be a declaration (`auto x`).
#define ASSIGN_OR_RETURN(lhs, expr) \
  NORMSERVE_ASSIGN_OR_RETURN_IMPL_(NORMSERVE_STATUS_CONCAT_(normserve_statusor_, __LINE__), lhs, expr)

#define NORMSERVE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();    \
  lhs = std::move(statusor).value()

#endif  // NORMSERVE_SERVER_CORE_STATUS_UTIL_H_
