#include "server/grpc/norm_service.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "server/core/status_util.h"
#include "server/grpc/status_map.h"

namespace normserve::server {
namespace {

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Why a call ended early: its deadline passed, or the client went away.
absl::Status CancelReason(const grpc::CallbackServerContext* context) {
  if (context->deadline() <= std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("deadline exceeded while queued; not computed");
  }
  return absl::CancelledError("call cancelled while queued; not computed");
}

// Keeps normserve_inflight_requests{method} right for the reactor's life.
class InflightGauge {
 public:
  InflightGauge(Metrics* metrics, const char* method) : metrics_(metrics), method_(method) {
    if (metrics_ != nullptr) metrics_->AddInflight(method_, 1);
  }
  ~InflightGauge() {
    if (metrics_ != nullptr) metrics_->AddInflight(method_, -1);
  }

 private:
  Metrics* metrics_;
  const char* method_;
};

// One unary Normalize call. Lives from the handler until OnDone.
class NormalizeReactor final : public grpc::ServerUnaryReactor {
 public:
  NormalizeReactor(NormServiceImpl* service, grpc::CallbackServerContext* context,
                   const v1::NormalizeRequest* request, v1::NormalizeResponse* response)
      : service_(service), context_(context), inflight_(service->core()->metrics(), kMethodNormalize) {
    service_->CallStarted();
    const Clock::time_point arrival = Clock::now();
    NormCore* core = service_->core();
    if (absl::Status auth = service_->Authenticate(context); !auth.ok()) {
      core->RecordRefused(kMethodNormalize, auth, SecondsSince(arrival));
      Finish(ToGrpcStatus(auth));
      return;
    }
    CallInfo call;
    call.method = kMethodNormalize;
    call.arrival = arrival;
    call.deadline = SteadyDeadline(context);
    absl::StatusOr<NormCore::Ticket> ticket =
        core->Submit(*request, response, call, [this](const absl::Status& status) { Complete(status); });
    if (!ticket.ok()) {
      Finish(ToGrpcStatus(ticket.status()));
      return;
    }
    // A worker may already have completed the call; it then left the result
    // here, because finishing before this point could delete `this` early.
    std::optional<absl::Status> early;
    bool cancel = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ticket_ = *ticket;
      submitted_ = true;
      early = std::move(result_);
      cancel = cancelled_ && !early.has_value();
    }
    if (early.has_value()) {
      Finish(ToGrpcStatus(*early));
    } else if (cancel) {
      core->Cancel(*ticket, CancelReason(context_));
    }
  }

  void OnCancel() override {
    NormCore::Ticket ticket;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      ticket = ticket_;
    }
    // Removes the request if still queued; its completion then finishes the
    // call. A request already computing finishes normally (gRPC drops it).
    if (ticket) service_->core()->Cancel(ticket, CancelReason(context_));
  }

  void OnDone() override {
    service_->CallEnded();
    delete this;
  }

 private:
  void Complete(const absl::Status& status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!submitted_) {
        result_ = status;
        return;
      }
    }
    Finish(ToGrpcStatus(status));
  }

  NormServiceImpl* const service_;
  grpc::CallbackServerContext* const context_;
  InflightGauge inflight_;
  std::mutex mu_;
  NormCore::Ticket ticket_;
  bool submitted_ = false;
  bool cancelled_ = false;
  std::optional<absl::Status> result_;
};

}  // namespace

// One NormalizeStream call. Reads requests ahead up to max_stream_inflight,
// queues each on the core as it arrives, writes each answer as it completes
// (completion order, not request order), one write at a time. A bad request
// gets a StreamResponse carrying its status; the stream goes on. Finishes
// with OK once the client half-closed and every answer is written. On server
// shutdown (Drain) it stops reading, writes the answers it owes and finishes
// with UNAVAILABLE, so an idle open stream does not hold the process.
class StreamReactor final : public grpc::ServerBidiReactor<v1::NormalizeRequest, v1::StreamResponse> {
 public:
  StreamReactor(NormServiceImpl* service, grpc::CallbackServerContext* context)
      : service_(service),
        context_(context),
        inflight_(service->core()->metrics(), kMethodNormalizeStream),
        limit_(std::max(1, service->options().max_stream_inflight)) {
    service_->CallStarted();
    if (absl::Status auth = service_->Authenticate(context); !auth.ok()) {
      service_->core()->RecordRefused(kMethodNormalizeStream, auth, 0);
      finished_ = true;
      Finish(ToGrpcStatus(auth));
      return;
    }
    registered_ = service_->AddStream(this);
    if (!registered_) {
      const absl::Status refused = absl::UnavailableError("server is shutting down");
      service_->core()->RecordRefused(kMethodNormalizeStream, refused, 0);
      finished_ = true;
      Finish(ToGrpcStatus(refused));
      return;
    }
    reading_ = std::make_unique<Slot>();
    read_outstanding_ = true;
    StartRead(&reading_->request);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::unique_lock<std::mutex> lock(mu_);
      read_outstanding_ = false;
      reads_done_ = true;
      reading_.reset();
      MaybeFinish(lock);
      return;
    }
    // `hold` keeps the slot alive through this function even if its answer
    // is written (and the slot dropped) by other threads meanwhile.
    std::shared_ptr<Slot> hold;
    Slot* slot = nullptr;
    {
      // One critical section with the finished_ test: a Drain either
      // finished the stream before (then this request is dropped, and the
      // client answers it with the stream's UNAVAILABLE) or sees it counted
      // in unanswered_ and waits for its answer.
      std::lock_guard<std::mutex> lock(mu_);
      read_outstanding_ = false;
      if (finished_) {
        reading_.reset();
        return;
      }
      hold.reset(reading_.release());
      slot = hold.get();
      slot->arrival = Clock::now();
      slot->response.set_request_id(slot->request.request_id());
      slots_.emplace(slot, hold);
      ++unanswered_;
    }
    CallInfo call;
    call.method = kMethodNormalizeStream;
    call.arrival = slot->arrival;
    call.deadline = SteadyDeadline(context_);
    absl::StatusOr<NormCore::Ticket> ticket =
        service_->core()->Submit(slot->request, slot->response.mutable_response(), call,
                                 [this, slot](const absl::Status& status) { Answer(slot, status); });
    if (!ticket.ok()) {
      Answer(slot, ticket.status());
    } else {
      bool cancel = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        // The ticket matters only while the request may still be queued.
        if (!slot->answered) {
          slot->ticket = *ticket;
          cancel = cancelled_;
        }
      }
      if (cancel) service_->core()->Cancel(*ticket, CancelReason(context_));
    }
    ContinueReading();
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    Slot* written = writes_.front();
    writes_.pop_front();
    slots_.erase(written);
    writing_ = false;
    if (!ok) write_failed_ = true;
    if (!writes_.empty() && !write_failed_) {
      writing_ = true;
      Slot* next = writes_.front();
      lock.unlock();
      StartWrite(&next->response);
      lock.lock();
    }
    const bool resume = read_paused_ && !reads_done_ && !cancelled_ && unanswered_ + writes_.size() < limit_;
    if (resume) {
      read_paused_ = false;
      lock.unlock();
      ContinueReading();
      lock.lock();
    }
    MaybeFinish(lock);
  }

  void OnCancel() override {
    std::vector<NormCore::Ticket> queued;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      for (auto& [ptr, slot] : slots_) {
        if (slot->ticket && !slot->answered) queued.push_back(slot->ticket);
      }
    }
    const absl::Status reason = CancelReason(context_);
    for (const NormCore::Ticket& t : queued) service_->core()->Cancel(t, reason);
    std::unique_lock<std::mutex> lock(mu_);
    MaybeFinish(lock);
  }

  // gRPC runs OnDone after its last reaction returns, but completions come
  // from batcher workers too; each holds a reference so that the reactor
  // outlives the code that finished the stream.
  void OnDone() override {
    if (registered_) service_->RemoveStream(this);
    service_->CallEnded();
    Unref();
  }

  // Server shutdown: stop reading, finish once the answers owed are written.
  void Drain() {
    std::unique_lock<std::mutex> lock(mu_);
    draining_ = true;
    MaybeFinish(lock);
  }

  // References held by NormServiceImpl::BeginShutdown while it drains.
  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 private:
  struct Slot {
    v1::NormalizeRequest request;
    // The kernels write straight into response.response's tensors.
    v1::StreamResponse response;
    NormCore::Ticket ticket;
    Clock::time_point arrival;
    bool answered = false;
  };

  // Starts the next read unless `limit_` requests are unanswered or unwritten.
  void ContinueReading() {
    std::unique_lock<std::mutex> lock(mu_);
    if (reads_done_ || cancelled_ || read_outstanding_ || finished_ || draining_) return;
    if (unanswered_ + writes_.size() >= limit_) {
      read_paused_ = true;
      return;
    }
    read_outstanding_ = true;
    reading_ = std::make_unique<Slot>();
    v1::NormalizeRequest* target = &reading_->request;
    lock.unlock();
    StartRead(target);
  }

  // Records the outcome of `slot` and queues its answer for writing.
  void Answer(Slot* slot, const absl::Status& status) {
    // Safe: while this slot is unanswered the stream cannot finish.
    refs_.fetch_add(1, std::memory_order_relaxed);
    AnswerHeld(slot, status);
    Unref();
  }

  void AnswerHeld(Slot* slot, const absl::Status& status) {
    if (!status.ok()) {
      slot->response.clear_response();
      slot->response.set_status_code(static_cast<int>(status.code()));
      slot->response.set_status_message(std::string(status.message()));
    }
    std::unique_lock<std::mutex> lock(mu_);
    slot->answered = true;
    slot->ticket.reset();
    --unanswered_;
    writes_.push_back(slot);
    if (!writing_ && !write_failed_ && !cancelled_) {
      writing_ = true;
      lock.unlock();
      StartWrite(&slot->response);
      lock.lock();
    }
    MaybeFinish(lock);
  }

  // Finishes once nothing is computed or written any more and either the
  // client half-closed (OK), the call broke (CANCELLED) or the server is
  // shutting down (UNAVAILABLE; a read still outstanding then ends with the
  // call).
  void MaybeFinish(std::unique_lock<std::mutex>& lock) {
    if (finished_ || unanswered_ != 0 || writing_) return;
    grpc::Status status;
    if (cancelled_ || write_failed_) {
      if (read_outstanding_) return;
      status = grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled");
    } else if (reads_done_) {
      if (!writes_.empty()) return;
      status = grpc::Status::OK;
    } else if (draining_) {
      if (!writes_.empty()) return;
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "server is shutting down; send further requests on a new stream");
    } else {
      return;
    }
    finished_ = true;
    lock.unlock();
    Finish(status);
    lock.lock();
  }

  NormServiceImpl* const service_;
  grpc::CallbackServerContext* const context_;
  InflightGauge inflight_;
  const size_t limit_;

  // One for gRPC (dropped in OnDone) plus one per Answer in progress.
  std::atomic<int> refs_{1};
  std::mutex mu_;
  // The slot the outstanding read fills.
  std::unique_ptr<Slot> reading_;
  // Every slot read and not yet written (or dropped), owned here.
  std::unordered_map<Slot*, std::shared_ptr<Slot>> slots_;
  // Answered slots waiting to be written, in completion order.
  std::deque<Slot*> writes_;
  size_t unanswered_ = 0;
  bool read_outstanding_ = false;
  bool read_paused_ = false;
  bool reads_done_ = false;
  bool writing_ = false;
  bool write_failed_ = false;
  bool cancelled_ = false;
  bool draining_ = false;
  bool finished_ = false;
  // In NormServiceImpl's stream set (set once, in the constructor).
  bool registered_ = false;
};

Clock::time_point SteadyDeadline(const grpc::CallbackServerContext* context) {
  const auto deadline = context->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return Clock::time_point::max();
  const auto now_system = std::chrono::system_clock::now();
  const auto now_steady = Clock::now();
  // Deadlines decades away (gRPC's "infinite") would overflow; treat as none.
  if (deadline - now_system > std::chrono::hours(24 * 365)) return Clock::time_point::max();
  return now_steady + std::chrono::duration_cast<Clock::duration>(deadline - now_system);
}

NormServiceImpl::NormServiceImpl(NormCore* core, NormServiceOptions options)
    : core_(core), options_(std::move(options)) {}

void NormServiceImpl::CallStarted() {
  active_calls_.fetch_add(1, std::memory_order_acq_rel);
  last_arrival_.store(Clock::now().time_since_epoch().count(), std::memory_order_release);
}

bool NormServiceImpl::AddStream(StreamReactor* stream) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  if (shutting_down_) return false;
  streams_.insert(stream);
  return true;
}

void NormServiceImpl::RemoveStream(StreamReactor* stream) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_.erase(stream);
}

void NormServiceImpl::BeginShutdown() {
  std::vector<StreamReactor*> open;
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    shutting_down_ = true;
    // A stream still in the set has not run OnDone, so gRPC's reference
    // keeps it alive while we take ours.
    for (StreamReactor* stream : streams_) {
      stream->Ref();
      open.push_back(stream);
    }
  }
  // Outside streams_mu_: Drain may finish the call, and gRPC may run OnDone
  // (RemoveStream) inline.
  for (StreamReactor* stream : open) {
    stream->Drain();
    stream->Unref();
  }
}

absl::Status NormServiceImpl::Authenticate(const grpc::CallbackServerContext* context) const {
  if (!options_.auth.has_value()) return absl::OkStatus();
  return options_.auth->Check(context->client_metadata());
}

grpc::ServerUnaryReactor* NormServiceImpl::Normalize(grpc::CallbackServerContext* context,
                                                     const v1::NormalizeRequest* request,
                                                     v1::NormalizeResponse* response) {
  return new NormalizeReactor(this, context, request, response);
}

grpc::ServerBidiReactor<v1::NormalizeRequest, v1::StreamResponse>* NormServiceImpl::NormalizeStream(
    grpc::CallbackServerContext* context) {
  return new StreamReactor(this, context);
}

grpc::ServerUnaryReactor* NormServiceImpl::GetServerInfo(grpc::CallbackServerContext* context,
                                                         const v1::GetServerInfoRequest* /*request*/,
                                                         v1::GetServerInfoResponse* response) {
  CallStarted();
  const Clock::time_point arrival = Clock::now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = Authenticate(context);
  if (status.ok()) core_->FillServerInfo(response);
  if (Metrics* metrics = core_->metrics()) {
    if (!status.ok()) metrics->CountRejection(kRejectUnauthenticated);
    metrics->RecordRequest(kMethodGetServerInfo, "none", "none", core_->default_backend(),
                           StatusCodeName(status.code()), SecondsSince(arrival));
  }
  reactor->Finish(ToGrpcStatus(status));
  CallEnded();
  return reactor;
}

}  // namespace normserve::server
