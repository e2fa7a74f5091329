// The one conversion from absl::Status (the core's currency) to grpc::Status.
// Codes share the google.rpc.Code numbering, so the mapping keeps code and
// message. Stateless, thread-safe.
#ifndef NORMSERVE_SERVER_GRPC_STATUS_MAP_H_
#define NORMSERVE_SERVER_GRPC_STATUS_MAP_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace normserve::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace normserve::server

#endif  // NORMSERVE_SERVER_GRPC_STATUS_MAP_H_
