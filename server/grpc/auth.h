// Bearer-token authentication for the NormService methods.
//
// A client sends `authorization: Bearer <token>` metadata; anything else is
// UNAUTHENTICATED. The health service is not behind it (load balancers and
// kubelets probe it without credentials). Immutable after construction, so
// Check() is safe from any thread.
#ifndef NORMSERVE_SERVER_GRPC_AUTH_H_
#define NORMSERVE_SERVER_GRPC_AUTH_H_

#include <grpcpp/support/string_ref.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace normserve::server {

class BearerTokenAuth {
 public:
  // Reads the token from `path` (surrounding whitespace ignored). An empty
  // token or an unreadable file is INVALID_ARGUMENT / NOT_FOUND.
  static absl::StatusOr<BearerTokenAuth> FromFile(const std::string& path);
  // REQUIRES: !token.empty()
  explicit BearerTokenAuth(std::string token);

  // OK when `metadata` carries the expected token, else UNAUTHENTICATED.
  absl::Status Check(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const;

 private:
  std::string token_;
};

}  // namespace normserve::server

#endif  // NORMSERVE_SERVER_GRPC_AUTH_H_
