#include "normserve/client/client.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/byte_buffer.h"

namespace normserve::client {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return StatusFromGrpc(static_cast<int>(s.error_code()), s.error_message());
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " file '", path, "'"));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::string Seconds(absl::Duration d) { return absl::StrFormat("%.3fs", absl::ToDoubleSeconds(d)); }

// Applies the per-call settings every RPC shares.
void PrepareContext(const ClientOptions& options, absl::Duration deadline, grpc::ClientContext* ctx) {
  if (deadline == absl::ZeroDuration()) deadline = options.default_deadline;
  if (deadline != absl::InfiniteDuration()) {
    ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(deadline));
  }
  // Sent as plain metadata rather than call credentials: gRPC drops call
  // credentials on insecure channels, and a token behind a TLS-terminating
  // proxy is a real deployment.
  if (!options.bearer_token.empty()) {
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", options.bearer_token));
  }
}

// grpc.health.v1 messages are tiny; encoding them by hand avoids needing
// generated code for health.proto, which Debian does not ship.
std::string EncodeHealthCheckRequest(const std::string& service) {
  std::string out;
  if (service.empty()) return out;
  out.push_back(0x0a);  // field 1, length-delimited
  size_t n = service.size();
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
  return out + service;
}

absl::StatusOr<HealthState> DecodeHealthCheckResponse(const std::string& bytes) {
  // Field 1 (status) is the only field; an empty message means UNKNOWN.
  size_t i = 0;
  int64_t status = 0;
  while (i < bytes.size()) {
    const uint8_t tag = static_cast<uint8_t>(bytes[i++]);
    if ((tag & 7) != 0) return absl::InternalError("unexpected health response encoding");
    uint64_t v = 0;
    int shift = 0;
    while (i < bytes.size()) {
      const uint8_t b = static_cast<uint8_t>(bytes[i++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      shift += 7;
      if (!(b & 0x80)) break;
    }
    if ((tag >> 3) == 1) status = static_cast<int64_t>(v);
  }
  switch (status) {
    case 1:
      return HealthState::kServing;
    case 2:
      return HealthState::kNotServing;
    case 3:
      return HealthState::kServiceUnknown;
    default:
      return HealthState::kUnknown;
  }
}

class SessionImpl final : public NormalizeSession,
                          public grpc::ClientBidiReactor<v1::NormalizeRequest, v1::StreamResponse> {
 public:
  SessionImpl(const ClientOptions& options, v1::NormService::Stub* stub, absl::Duration deadline) {
    if (deadline == absl::InfiniteDuration()) {
      ClientOptions no_deadline = options;
      no_deadline.default_deadline = absl::InfiniteDuration();
      PrepareContext(no_deadline, absl::ZeroDuration(), &ctx_);
    } else {
      PrepareContext(options, deadline, &ctx_);
    }
    stub->async()->NormalizeStream(&ctx_, this);
    // The hold keeps the call open while we have nothing to write; it is
    // released after WritesDone (Finish) or on Cancel.
    AddHold();
    StartRead(&read_buf_);
    StartCall();
  }

  ~SessionImpl() override {
    Cancel();
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [this] { return done_; });
  }

  void Send(v1::NormalizeRequest request, Callback done) override {
    std::unique_lock lock(mu_);
    if (closed_ || writes_done_requested_) {
      absl::Status s = closed_ && !final_status_.ok() ? final_status_
                                                      : absl::FailedPreconditionError("the stream is closed");
      lock.unlock();
      done(s);
      return;
    }
    if (broken_) {
      // The stream broke and its status is not known yet: OnDone answers this
      // request with it (UNAVAILABLE when the server is shutting down).
      if (inflight_.try_emplace(request.request_id(), std::move(done)).second) return;
      lock.unlock();
      done(absl::InvalidArgumentError(
          absl::StrCat("request_id ", request.request_id(), " is already in flight on this stream")));
      return;
    }
    const uint64_t id = request.request_id();
    // try_emplace leaves `done` alone when the id is taken.
    if (!inflight_.try_emplace(id, std::move(done)).second) {
      auto cb = std::move(done);
      lock.unlock();
      cb(absl::InvalidArgumentError(absl::StrCat("request_id ", id, " is already in flight on this stream")));
      return;
    }
    if (writing_) {
      pending_.push_back(std::move(request));
      return;
    }
    writing_ = true;
    write_buf_ = std::move(request);
    lock.unlock();
    StartWrite(&write_buf_);
  }

  absl::Status Finish() override {
    bool send_writes_done = false;
    {
      std::lock_guard lock(mu_);
      if (!writes_done_requested_) {
        writes_done_requested_ = true;
        send_writes_done = !writing_ && !hold_released_;
        if (send_writes_done) hold_released_ = true;
      }
    }
    if (send_writes_done) {
      StartWritesDone();
      RemoveHold();
    }
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [this] { return done_; });
    return final_status_;
  }

  void Cancel() override {
    bool release = false;
    {
      std::lock_guard lock(mu_);
      if (done_) return;
      release = !hold_released_;
      hold_released_ = true;
    }
    ctx_.TryCancel();
    if (release) RemoveHold();
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(mu_);
    if (!ok) {
      // The stream is broken; OnDone will fail whatever is outstanding.
      broken_ = true;
      writing_ = false;
      const bool release = !hold_released_;
      hold_released_ = true;
      lock.unlock();
      if (release) RemoveHold();
      return;
    }
    if (!pending_.empty()) {
      write_buf_ = std::move(pending_.front());
      pending_.pop_front();
      lock.unlock();
      StartWrite(&write_buf_);
      return;
    }
    writing_ = false;
    const bool send_writes_done = writes_done_requested_ && !hold_released_;
    if (send_writes_done) hold_released_ = true;
    lock.unlock();
    if (send_writes_done) {
      StartWritesDone();
      RemoveHold();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The server ended the stream (or it broke). Requests it never read
      // are answered by OnDone with the stream's status, which needs the
      // hold released now rather than at Finish or Cancel.
      bool release = false;
      {
        std::lock_guard lock(mu_);
        broken_ = true;
        release = !hold_released_;
        hold_released_ = true;
      }
      if (release) RemoveHold();
      return;
    }
    Callback cb;
    {
      std::lock_guard lock(mu_);
      auto it = inflight_.find(read_buf_.request_id());
      if (it != inflight_.end()) {
        cb = std::move(it->second);
        inflight_.erase(it);
      }
    }
    if (cb) {
      if (read_buf_.status_code() == 0) {
        cb(std::move(*read_buf_.mutable_response()));
      } else {
        cb(StatusFromGrpc(read_buf_.status_code(), read_buf_.status_message()));
      }
    }
    read_buf_.Clear();
    StartRead(&read_buf_);
  }

  void OnDone(const grpc::Status& status) override {
    std::map<uint64_t, Callback> orphans;
    absl::Status s = FromGrpc(status);
    {
      // In one step with the swap, so that a Send from now on answers
      // itself instead of joining a map nobody will look at again.
      std::lock_guard lock(mu_);
      orphans.swap(inflight_);
      final_status_ = s;
      closed_ = true;
    }
    const absl::Status orphan_status =
        s.ok() ? absl::UnavailableError("the stream ended before this request was answered") : s;
    for (auto& [id, cb] : orphans) cb(orphan_status);
    std::lock_guard lock(mu_);
    done_ = true;
    done_cv_.notify_all();
  }

 private:
  grpc::ClientContext ctx_;
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::map<uint64_t, Callback> inflight_;
  std::deque<v1::NormalizeRequest> pending_;
  v1::NormalizeRequest write_buf_;
  v1::StreamResponse read_buf_;
  bool writing_ = false;
  bool writes_done_requested_ = false;
  bool hold_released_ = false;
  bool broken_ = false;
  // The stream's status is known and inflight_ has been handed to OnDone.
  bool closed_ = false;
  // OnDone has answered every orphan (Finish and the destructor wait for it).
  bool done_ = false;
  absl::Status final_status_;
};

}  // namespace

const char* HealthStateName(HealthState s) {
  switch (s) {
    case HealthState::kServing:
      return "SERVING";
    case HealthState::kNotServing:
      return "NOT_SERVING";
    case HealthState::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    case HealthState::kUnknown:
      break;
  }
  return "UNKNOWN";
}

absl::Status StatusFromGrpc(int code, const std::string& message) {
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

std::string ServiceConfigJson(const ClientOptions& options) {
  std::string json =
      absl::StrCat(R"({"loadBalancingConfig":[{")", options.load_balancing_policy, R"(":{}}])");
  // Watch each backend's grpc.health.v1 status: a replica that turns
  // NOT_SERVING (it is draining before shutdown) stops being picked, so calls
  // move to the others before it refuses them.
  if (options.load_balancing_policy == "round_robin") {
    absl::StrAppend(&json, R"(,"healthCheckConfig":{"serviceName":""})");
  }
  if (options.retry_max_attempts > 1) {
    absl::StrAppend(&json, R"(,"methodConfig":[{"name":[{"service":"normserve.v1.NormService"}],)",
                    R"("retryPolicy":{"maxAttempts":)", options.retry_max_attempts, R"(,"initialBackoff":")",
                    Seconds(options.retry_initial_backoff), R"(","maxBackoff":")",
                    Seconds(options.retry_max_backoff),
                    R"(","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}])");
  }
  json += "}";
  return json;
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("target is empty");
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("tls_cert_file and tls_key_file must be given together");
  }
  if (options.load_balancing_policy != "round_robin" && options.load_balancing_policy != "pick_first") {
    return absl::InvalidArgumentError(absl::StrCat("load_balancing_policy '", options.load_balancing_policy,
                                                   "': expected round_robin or pick_first"));
  }
  if (options.retry_max_attempts < 1) return absl::InvalidArgumentError("retry_max_attempts must be >= 1");
  const bool tls = options.use_tls || !options.tls_root_ca_file.empty() || !options.tls_cert_file.empty();
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_root_ca_file.empty()) {
      auto ca = ReadFile(options.tls_root_ca_file, "root CA");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (!options.tls_cert_file.empty()) {
      auto cert = ReadFile(options.tls_cert_file, "client certificate");
      if (!cert.ok()) return cert.status();
      auto key = ReadFile(options.tls_key_file, "client key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(ServiceConfigJson(options));
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  if (options.channel_id != 0) {
    // A private subchannel pool plus a distinct argument keeps this channel's
    // connections apart from every other channel's.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("normserve.channel_id", options.channel_id);
  }
  auto channel = grpc::CreateCustomChannel(options.target, creds, args);
  if (!channel) return absl::InternalError("could not create a channel");
  return std::unique_ptr<Client>(new Client(options, std::move(channel)));
}

Client::Client(ClientOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)), channel_(std::move(channel)), stub_(v1::NormService::NewStub(channel_)) {}

Client::~Client() {
  std::unique_lock lock(inflight_mu_);
  inflight_cv_.wait(lock, [this] { return inflight_calls_ == 0; });
}

absl::StatusOr<v1::NormalizeResponse> Client::Normalize(const v1::NormalizeRequest& request,
                                                        absl::Duration deadline) {
  grpc::ClientContext ctx;
  PrepareContext(options_, deadline, &ctx);
  v1::NormalizeResponse response;
  grpc::Status s = stub_->Normalize(&ctx, request, &response);
  if (!s.ok()) return FromGrpc(s);
  return response;
}

void Client::NormalizeAsync(const v1::NormalizeRequest& request,
                            std::function<void(absl::StatusOr<v1::NormalizeResponse>)> done,
                            absl::Duration deadline) {
  struct Call {
    grpc::ClientContext ctx;
    v1::NormalizeRequest request;
    v1::NormalizeResponse response;
    std::function<void(absl::StatusOr<v1::NormalizeResponse>)> done;
  };
  auto* call = new Call;
  PrepareContext(options_, deadline, &call->ctx);
  call->request = request;
  call->done = std::move(done);
  {
    std::lock_guard lock(inflight_mu_);
    ++inflight_calls_;
  }
  stub_->async()->Normalize(&call->ctx, &call->request, &call->response, [this, call](grpc::Status s) {
    std::unique_ptr<Call> owned(call);
    auto user_done = std::move(owned->done);
    absl::StatusOr<v1::NormalizeResponse> result =
        s.ok() ? absl::StatusOr<v1::NormalizeResponse>(std::move(owned->response)) : FromGrpc(s);
    // The call's context goes before the caller hears of the result, so a
    // caller that then tears everything down finds no call half-destroyed.
    owned.reset();
    user_done(std::move(result));
    std::lock_guard lock(inflight_mu_);
    if (--inflight_calls_ == 0) inflight_cv_.notify_all();
  });
}

std::future<absl::StatusOr<v1::NormalizeResponse>> Client::NormalizeFuture(
    const v1::NormalizeRequest& request, absl::Duration deadline) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<v1::NormalizeResponse>>>();
  auto future = promise->get_future();
  NormalizeAsync(
      request, [promise](absl::StatusOr<v1::NormalizeResponse> r) { promise->set_value(std::move(r)); },
      deadline);
  return future;
}

std::unique_ptr<NormalizeSession> Client::OpenSession(absl::Duration deadline) {
  return std::make_unique<SessionImpl>(options_, stub_.get(), deadline);
}

absl::StatusOr<v1::GetServerInfoResponse> Client::GetServerInfo() {
  grpc::ClientContext ctx;
  PrepareContext(options_, absl::ZeroDuration(), &ctx);
  v1::GetServerInfoResponse response;
  grpc::Status s = stub_->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &response);
  if (!s.ok()) return FromGrpc(s);
  return response;
}

absl::StatusOr<HealthState> Client::CheckHealth(const std::string& service) {
  grpc::GenericStub stub(channel_);
  grpc::ClientContext ctx;
  PrepareContext(options_, absl::ZeroDuration(), &ctx);
  const std::string encoded = EncodeHealthCheckRequest(service);
  grpc::Slice slice(encoded);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status s = done.get_future().get();
  if (!s.ok()) return FromGrpc(s);
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::InternalError("could not read the health response");
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  return DecodeHealthCheckResponse(bytes);
}

absl::Status Client::WaitForServing(absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  absl::Status last = absl::UnavailableError("not serving");
  while (true) {
    auto state = CheckHealth();
    if (state.ok() && *state == HealthState::kServing) return absl::OkStatus();
    last = state.ok() ? absl::UnavailableError(absl::StrCat("health: ", HealthStateName(*state)))
                      : state.status();
    if (absl::Now() >= end) return last;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

}  // namespace normserve::client
