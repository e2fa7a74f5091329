// normserve::client::Client: a C++ client for the normserve NormService.
//
// A Client owns one gRPC channel to `ClientOptions::target`, which may be any
// gRPC target: "host:port", "dns:///name:port" or a static list such as
// "ipv4:127.0.0.1:5001,127.0.0.1:5002". The channel balances with
// round_robin over every resolved address and retries calls that fail with
// UNAVAILABLE (service config), so a rolling restart behind a DNS name or a
// static list does not surface as errors. TLS, mutual TLS and a bearer token
// are set in the options.
//
// Threads: a Client is thread-safe; every method may be called from many
// threads at once. Async callbacks run on gRPC's internal threads and must not
// block for long. A NormalizeSession is also thread-safe (Send may be called
// from several threads); its callbacks run on gRPC threads too.
//
// Errors: every method returns the call's gRPC status as an absl::Status with
// the same code and message. No method throws.
#ifndef NORMSERVE_CLIENT_CLIENT_H_
#define NORMSERVE_CLIENT_CLIENT_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "normserve/v1/normserve.grpc.pb.h"

namespace grpc {
class Channel;
}

namespace normserve::client {

struct ClientOptions {
  // Any gRPC target string (see the file comment).
  std::string target = "127.0.0.1:50051";

  // Use TLS. With only this set, the server is verified against the system's
  // root certificates.
  bool use_tls = false;
  // PEM file with the root CA(s) that signed the server's certificate.
  // Setting it implies use_tls.
  std::string tls_root_ca_file;
  // PEM client certificate chain and private key for mutual TLS. Both or
  // neither; setting them implies use_tls.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Name to verify the server's certificate against when it differs from the
  // target's host (e.g. when dialing an IP address). Empty: the target's host.
  std::string tls_server_name;

  // Sent as "authorization: Bearer <token>" on every call when non-empty.
  std::string bearer_token;

  // Deadline of each call that does not set its own. absl::InfiniteDuration()
  // means none.
  absl::Duration default_deadline = absl::Seconds(30);

  // Largest message the client sends or receives, bytes.
  int max_message_bytes = 256 << 20;

  // "round_robin" (spread calls over every address the target resolves to)
  // or "pick_first".
  std::string load_balancing_policy = "round_robin";

  // Attempts per call for UNAVAILABLE (gRPC retry policy; 1 disables
  // retries), with exponential backoff between them.
  int retry_max_attempts = 3;
  absl::Duration retry_initial_backoff = absl::Milliseconds(50);
  absl::Duration retry_max_backoff = absl::Seconds(1);

  // Clients with different channel_id values never share a TCP connection,
  // even to the same target (the load generator opens --connections this way).
  int channel_id = 0;
};

// Result of a health check (grpc.health.v1).
enum class HealthState { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };
// "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN".
const char* HealthStateName(HealthState s);

// One NormalizeStream call: many requests in flight on one stream, each
// answered through its own callback, matched by request_id. Requests on one
// session should have distinct request_ids; a request whose id is already in
// flight fails at once with INVALID_ARGUMENT.
class NormalizeSession {
 public:
  using Callback = std::function<void(absl::StatusOr<v1::NormalizeResponse>)>;

  virtual ~NormalizeSession() = default;

  // Queues `request` for sending; `done` runs once with its response or
  // error. After the stream has ended, `done` runs at once with the stream's
  // final status (or UNAVAILABLE if it ended OK).
  virtual void Send(v1::NormalizeRequest request, Callback done) = 0;

  // Half-closes the stream, waits for every outstanding response and
  // returns the stream's final status. Requests still unanswered when the
  // stream ends get that status (or UNAVAILABLE). Idempotent.
  virtual absl::Status Finish() = 0;

  // Ends the stream now; outstanding callbacks get CANCELLED.
  virtual void Cancel() = 0;
};

class Client {
 public:
  // Builds the channel (no connection is made until the first call).
  // INVALID_ARGUMENT for inconsistent options, NOT_FOUND for unreadable
  // TLS files.
  static absl::StatusOr<std::unique_ptr<Client>> Create(const ClientOptions& options);

  // Waits for the callbacks of outstanding NormalizeAsync calls to return.
  // REQUIRES: no NormalizeSession opened from this client is still alive.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Blocking Normalize. `deadline` overrides options.default_deadline when
  // not zero.
  absl::StatusOr<v1::NormalizeResponse> Normalize(const v1::NormalizeRequest& request,
                                                  absl::Duration deadline = absl::ZeroDuration());

  // Non-blocking Normalize: `done` runs once, on a gRPC thread, with the
  // result. `request` is copied before this returns.
  void NormalizeAsync(const v1::NormalizeRequest& request,
                      std::function<void(absl::StatusOr<v1::NormalizeResponse>)> done,
                      absl::Duration deadline = absl::ZeroDuration());

  // The same, as a future.
  std::future<absl::StatusOr<v1::NormalizeResponse>> NormalizeFuture(
      const v1::NormalizeRequest& request, absl::Duration deadline = absl::ZeroDuration());

  // Opens a NormalizeStream. The stream has no deadline unless `deadline` is
  // given (long-lived sessions are the point).
  std::unique_ptr<NormalizeSession> OpenSession(absl::Duration deadline = absl::InfiniteDuration());

  absl::StatusOr<v1::GetServerInfoResponse> GetServerInfo();

  // grpc.health.v1.Health/Check for `service` ("" is the whole server).
  // A transport failure is an error; NOT_SERVING is a successful result.
  absl::StatusOr<HealthState> CheckHealth(const std::string& service = "");

  // Blocks until CheckHealth returns kServing or `timeout` passes; returns
  // the last error (or UNAVAILABLE "not serving") on timeout.
  absl::Status WaitForServing(absl::Duration timeout);

  const ClientOptions& options() const { return options_; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  Client(ClientOptions options, std::shared_ptr<grpc::Channel> channel);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::NormService::Stub> stub_;
  // NormalizeAsync calls whose callback has not returned; the destructor
  // waits for them.
  std::mutex inflight_mu_;
  std::condition_variable inflight_cv_;
  int64_t inflight_calls_ = 0;
};

// The gRPC service config JSON the client uses (load balancing and the
// retry policy for UNAVAILABLE). Exposed for tests and for logging.
std::string ServiceConfigJson(const ClientOptions& options);

// Converts a grpc::Status-like (code, message) pair to absl::Status.
absl::Status StatusFromGrpc(int code, const std::string& message);

}  // namespace normserve::client

#endif  // NORMSERVE_CLIENT_CLIENT_H_
