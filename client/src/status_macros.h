// RETURN_IF_ERROR / ASSIGN_OR_RETURN for the client's own sources (Debian's
// Abseil predates the upstream macros). Private to client/.
#ifndef NORMSERVE_CLIENT_SRC_STATUS_MACROS_H_
#define NORMSERVE_CLIENT_SRC_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define NORMSERVE_CLIENT_CONCAT_INNER(a, b) a##b
#define NORMSERVE_CLIENT_CONCAT(a, b) NORMSERVE_CLIENT_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status status_macro_ = (expr);         \
    if (!status_macro_.ok()) return status_macro_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(NORMSERVE_CLIENT_CONCAT(statusor_macro_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                          \
  if (!statusor.ok()) return statusor.status();    \
  lhs = std::move(statusor).value()

#endif  // NORMSERVE_CLIENT_SRC_STATUS_MACROS_H_
