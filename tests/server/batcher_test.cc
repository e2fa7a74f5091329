// The dynamic batcher, through NormCore with a fake backend that counts and
// blocks: batch invariance, compatibility, limits, deadlines, cancellation,
// timing and shutdown.
#include "server/core/batcher.h"

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/core/metrics.h"
#include "server/core/norm_core.h"
#include "tests/server/server_test_util.h"

namespace normserve::server {
namespace {

using testing::FakeBackend;
using testing::LayerNormRequest;
using testing::PendingCall;
using testing::SubmitAsync;

struct CoreWithFake {
  FakeBackend* fake = nullptr;
  std::unique_ptr<NormCore> core;
};

CoreWithFake MakeCore(const BatcherOptions& batcher, Metrics* metrics = nullptr) {
  std::vector<std::unique_ptr<kernels::Backend>> backends;
  auto fake = std::make_unique<FakeBackend>("cpu");
  CoreWithFake result;
  result.fake = fake.get();
  backends.push_back(std::move(fake));
  CoreOptions options;
  options.batcher = batcher;
  result.core = std::make_unique<NormCore>(options, std::move(backends), "cpu", metrics);
  return result;
}

BatcherOptions OneWorker() {
  BatcherOptions o;
  o.workers = 1;
  o.max_queue_delay = std::chrono::microseconds(0);
  return o;
}

// Occupies the single worker: submits a request and waits until the fake
// backend is blocked inside Run with it.
void OccupyWorker(CoreWithFake& c, const v1::NormalizeRequest& request, PendingCall* call) {
  c.fake->Block();
  testing::SubmitOwned(*c.core, request, call);
  ASSERT_TRUE(call->ticket.ok()) << call->ticket.status();
  c.fake->WaitEntered(1);
}

TEST(BatcherTest, BatchInvarianceSameBitsAloneAndInABatch) {
  const v1::NormalizeRequest probe = LayerNormRequest(3, 96, 42);
  std::string alone;
  {
    CoreWithFake c = MakeCore(OneWorker());
    absl::StatusOr<v1::NormalizeResponse> r = testing::RunSync(*c.core, probe);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->timing().batch_requests(), 1u);
    alone = r->output().data();
  }
  CoreWithFake c = MakeCore(OneWorker());
  PendingCall blocker;
  const v1::NormalizeRequest first = LayerNormRequest(1, 96, 1);
  OccupyWorker(c, first, &blocker);
  // 31 other compatible requests of various row counts, and the probe in the middle.
  std::vector<v1::NormalizeRequest> requests;
  for (int i = 0; i < 32; ++i) requests.push_back(i == 17 ? probe : LayerNormRequest(1 + i % 5, 96, 100 + i));
  std::vector<PendingCall> calls(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) SubmitAsync(*c.core, requests[i], &calls[i]);
  c.fake->Release();
  ASSERT_TRUE(blocker.future.get().ok());
  for (auto& call : calls) ASSERT_TRUE(call.future.get().ok());
  const v1::NormalizeResponse& batched = calls[17].response;
  EXPECT_EQ(batched.timing().batch_requests(), 32u);
  EXPECT_EQ(batched.output().data(), alone);
  EXPECT_EQ(c.fake->batch_sizes(), (std::vector<size_t>{1, 32}));
}

TEST(BatcherTest, OnlyCompatibleRequestsShareACall) {
  CoreWithFake c = MakeCore(OneWorker());
  PendingCall blocker;
  OccupyWorker(c, LayerNormRequest(1, 16, 1), &blocker);
  v1::NormalizeRequest ln_a = LayerNormRequest(2, 16, 2);
  v1::NormalizeRequest rms = LayerNormRequest(2, 16, 3);
  rms.set_kind(v1::RMS_NORM);
  v1::NormalizeRequest other_cols = LayerNormRequest(2, 32, 4);
  v1::NormalizeRequest ln_b = LayerNormRequest(1, 16, 5);
  v1::NormalizeRequest other_out = LayerNormRequest(1, 16, 6);
  other_out.set_output_dtype(v1::FLOAT16);
  std::vector<const v1::NormalizeRequest*> order = {&ln_a, &rms, &other_cols, &ln_b, &other_out};
  std::vector<PendingCall> calls(order.size());
  for (size_t i = 0; i < order.size(); ++i) SubmitAsync(*c.core, *order[i], &calls[i]);
  c.fake->Release();
  for (auto& call : calls) ASSERT_TRUE(call.future.get().ok());
  // ln_a and ln_b merge; everything else runs alone, oldest first.
  EXPECT_EQ(c.fake->batch_sizes(), (std::vector<size_t>{1, 2, 1, 1, 1}));
  EXPECT_EQ(calls[0].response.timing().batch_requests(), 2u);
  EXPECT_EQ(calls[0].response.timing().batch_rows(), 3u);
  EXPECT_EQ(calls[3].response.timing().batch_requests(), 2u);
  EXPECT_EQ(calls[1].response.timing().batch_requests(), 1u);
}

TEST(BatcherTest, MaxBatchRowsBoundsACall) {
  BatcherOptions o = OneWorker();
  o.max_batch_rows = 5;
  CoreWithFake c = MakeCore(o);
  PendingCall blocker;
  OccupyWorker(c, LayerNormRequest(1, 8, 1), &blocker);
  std::vector<v1::NormalizeRequest> requests;
  for (int i = 0; i < 6; ++i) requests.push_back(LayerNormRequest(2, 8, 10 + i));
  std::vector<PendingCall> calls(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) SubmitAsync(*c.core, requests[i], &calls[i]);
  c.fake->Release();
  for (auto& call : calls) ASSERT_TRUE(call.future.get().ok());
  EXPECT_EQ(c.fake->batch_sizes(), (std::vector<size_t>{1, 2, 2, 2}));
  for (auto& call : calls) EXPECT_LE(call.response.timing().batch_rows(), 5u);
}

TEST(BatcherTest, BatchingDisabledRunsOneRequestPerCall) {
  BatcherOptions o = OneWorker();
  o.enable_batching = false;
  CoreWithFake c = MakeCore(o);
  PendingCall blocker;
  OccupyWorker(c, LayerNormRequest(1, 8, 1), &blocker);
  std::vector<v1::NormalizeRequest> requests;
  for (int i = 0; i < 4; ++i) requests.push_back(LayerNormRequest(1, 8, 10 + i));
  std::vector<PendingCall> calls(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) SubmitAsync(*c.core, requests[i], &calls[i]);
  c.fake->Release();
  for (auto& call : calls) ASSERT_TRUE(call.future.get().ok());
  EXPECT_EQ(c.fake->batch_sizes(), (std::vector<size_t>{1, 1, 1, 1, 1}));
}

TEST(BatcherTest, BatchNormWithBatchStatsIsNeverMerged) {
  CoreWithFake c = MakeCore(OneWorker());
  PendingCall blocker;
  OccupyWorker(c, LayerNormRequest(1, 8, 1), &blocker);
  v1::NormalizeRequest bn;
  bn.set_kind(v1::BATCH_NORM);
  bn.set_use_batch_stats(true);
  *bn.mutable_input() = testing::Float32Tensor({2, 3}, testing::RandomValues(6, 3));
  std::vector<PendingCall> calls(3);
  for (auto& call : calls) SubmitAsync(*c.core, bn, &call);
  c.fake->Release();
  for (auto& call : calls) ASSERT_TRUE(call.future.get().ok());
  EXPECT_EQ(c.fake->batch_sizes(), (std::vector<size_t>{1, 1, 1, 1}));
}

TEST(BatcherTest, DelayGathersRequestsArrivingLater) {
  BatcherOptions o;
  o.workers = 1;
  // A long delay, cut short when the batch reaches max_batch_rows: the two
  // requests can only come back together.
  o.max_queue_delay = std::chrono::seconds(20);
  o.max_batch_rows = 2;
  CoreWithFake c = MakeCore(o);
  const v1::NormalizeRequest a = LayerNormRequest(1, 8, 1);
  const v1::NormalizeRequest b = LayerNormRequest(1, 8, 2);
  PendingCall ca, cb;
  SubmitAsync(*c.core, a, &ca);
  SubmitAsync(*c.core, b, &cb);
  ASSERT_TRUE(ca.future.get().ok());
  ASSERT_TRUE(cb.future.get().ok());
  EXPECT_EQ(c.fake->batch_sizes(), (std::vector<size_t>{2}));
  EXPECT_EQ(ca.response.timing().batch_requests(), 2u);
}

TEST(BatcherTest, FullQueueIsUnavailableAtOnce) {
  BatcherOptions o = OneWorker();
  o.max_queue_requests = 2;
  auto metrics = Metrics::CreateForTesting();
  CoreWithFake c = MakeCore(o, metrics.get());
  PendingCall blocker;
  OccupyWorker(c, LayerNormRequest(1, 8, 1), &blocker);
  const v1::NormalizeRequest r = LayerNormRequest(1, 8, 2);
  PendingCall q1, q2, rejected;
  SubmitAsync(*c.core, r, &q1);
  SubmitAsync(*c.core, r, &q2);
  SubmitAsync(*c.core, r, &rejected);
  ASSERT_FALSE(rejected.ticket.ok());
  EXPECT_EQ(rejected.ticket.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(
      rejected.ticket.status().message(),
      "queue of backend cpu is full (2 requests, 192 bytes queued; limits 2 requests, 1073741824 bytes); "
      "retry later");
  EXPECT_EQ(c.core->batcher("cpu")->stats().rejected_queue_full, 1);
  c.fake->Release();
  EXPECT_TRUE(q1.future.get().ok());
  EXPECT_TRUE(q2.future.get().ok());
  EXPECT_NE(metrics->Serialize().find("normserve_rejections_total{reason=\"queue_full\"} 1"),
            std::string::npos);
}

TEST(BatcherTest, QueueBytesLimit) {
  BatcherOptions o = OneWorker();
  o.max_queue_bytes = 200;
  CoreWithFake c = MakeCore(o);
  PendingCall blocker;
  OccupyWorker(c, LayerNormRequest(1, 8, 1), &blocker);
  const v1::NormalizeRequest r = LayerNormRequest(2, 8, 2);  // 128 bytes of tensors
  PendingCall q1, rejected;
  SubmitAsync(*c.core, r, &q1);
  SubmitAsync(*c.core, r, &rejected);
  ASSERT_FALSE(rejected.ticket.ok());
  EXPECT_EQ(rejected.ticket.status().code(), absl::StatusCode::kUnavailable);
  c.fake->Release();
  EXPECT_TRUE(q1.future.get().ok());
}

TEST(BatcherTest, ExpiredDeadlineIsDroppedBeforeCompute) {
  auto metrics = Metrics::CreateForTesting();
  CoreWithFake c = MakeCore(OneWorker(), metrics.get());
  PendingCall blocker;
  OccupyWorker(c, LayerNormRequest(1, 8, 1), &blocker);
  const v1::NormalizeRequest r = LayerNormRequest(1, 8, 2);
  CallInfo info;
  info.deadline = Clock::now() + std::chrono::milliseconds(20);
  PendingCall late;
  SubmitAsync(*c.core, r, &late, info);
  ASSERT_TRUE(late.ticket.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  c.fake->Release();
  const absl::Status status = late.future.get();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(status.message(), "deadline exceeded while queued; not computed");
  ASSERT_TRUE(blocker.future.get().ok());
  c.core->Shutdown();
  EXPECT_EQ(c.core->batcher("cpu")->stats().expired_in_queue, 1);
  EXPECT_EQ(c.fake->problems(), 1);  // only the blocker
  for (const void* p : c.fake->seen_inputs()) EXPECT_NE(p, r.input().data().data());
  EXPECT_NE(metrics->Serialize().find("normserve_rejections_total{reason=\"deadline_exceeded\"} 1"),
            std::string::npos);
}

TEST(BatcherTest, DeadlineAlreadyPassedIsRefusedAtSubmit) {
  CoreWithFake c = MakeCore(OneWorker());
  CallInfo info;
  info.deadline = Clock::now() - std::chrono::milliseconds(1);
  PendingCall call;
  testing::SubmitOwned(*c.core, LayerNormRequest(1, 8, 2), &call, info);
  ASSERT_FALSE(call.ticket.ok());
  EXPECT_EQ(call.ticket.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(c.fake->problems(), 0);
}

TEST(BatcherTest, CancelledRequestNeverReachesTheBackend) {
  CoreWithFake c = MakeCore(OneWorker());
  PendingCall blocker;
  OccupyWorker(c, LayerNormRequest(1, 8, 1), &blocker);
  const v1::NormalizeRequest r = LayerNormRequest(1, 8, 2);
  PendingCall cancelled;
  SubmitAsync(*c.core, r, &cancelled);
  ASSERT_TRUE(cancelled.ticket.ok());
  EXPECT_TRUE(c.core->Cancel(*cancelled.ticket, absl::CancelledError("client went away")));
  // The completion ran on this thread, before release.
  ASSERT_EQ(cancelled.future.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(cancelled.future.get().code(), absl::StatusCode::kCancelled);
  // A second cancel is a no-op.
  EXPECT_FALSE(c.core->Cancel(*cancelled.ticket, absl::CancelledError("again")));
  c.fake->Release();
  ASSERT_TRUE(blocker.future.get().ok());
  c.core->Shutdown();
  EXPECT_EQ(c.fake->problems(), 1);
  EXPECT_EQ(c.core->batcher("cpu")->stats().cancelled_in_queue, 1);
  for (const void* p : c.fake->seen_inputs()) EXPECT_NE(p, r.input().data().data());
}

TEST(BatcherTest, CancelAfterComputeStartedDoesNothing) {
  CoreWithFake c = MakeCore(OneWorker());
  PendingCall running;
  OccupyWorker(c, LayerNormRequest(1, 8, 1), &running);
  EXPECT_FALSE(c.core->Cancel(*running.ticket, absl::CancelledError("late")));
  c.fake->Release();
  EXPECT_TRUE(running.future.get().ok());
}

TEST(BatcherTest, TimingFieldsAreFilled) {
  CoreWithFake c = MakeCore(OneWorker());
  PendingCall blocker;
  OccupyWorker(c, LayerNormRequest(1, 8, 1), &blocker);
  const v1::NormalizeRequest r = LayerNormRequest(4, 8, 2);
  PendingCall call;
  SubmitAsync(*c.core, r, &call);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  c.fake->Release();
  ASSERT_TRUE(call.future.get().ok());
  const v1::ServerTiming& t = call.response.timing();
  EXPECT_GE(t.queue_ns(), 5'000'000u);  // it waited behind the blocker
  EXPECT_GT(t.compute_ns(), 0u);
  EXPECT_GE(t.total_ns(), t.queue_ns() + t.compute_ns());
  EXPECT_EQ(t.batch_requests(), 1u);
  EXPECT_EQ(t.batch_rows(), 4u);
}

TEST(BatcherTest, ShutdownDrainsQueueAndRefusesNewWork) {
  CoreWithFake c = MakeCore(OneWorker());
  PendingCall blocker;
  OccupyWorker(c, LayerNormRequest(1, 8, 1), &blocker);
  const v1::NormalizeRequest r = LayerNormRequest(1, 8, 2);
  std::vector<PendingCall> queued(3);
  for (auto& call : queued) SubmitAsync(*c.core, r, &call);
  c.core->BeginShutdown();
  PendingCall refused;
  SubmitAsync(*c.core, r, &refused);
  ASSERT_FALSE(refused.ticket.ok());
  EXPECT_EQ(refused.ticket.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(refused.ticket.status().message(), "server is shutting down");
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    c.fake->Release();
  });
  c.core->Shutdown();
  releaser.join();
  for (auto& call : queued) EXPECT_TRUE(call.future.get().ok());
  EXPECT_EQ(c.fake->problems(), 4);
}

TEST(BatcherTest, ManyThreadsManyRequests) {
  BatcherOptions o;
  o.workers = 2;
  o.max_queue_delay = std::chrono::microseconds(200);
  o.max_queue_requests = 100000;
  CoreWithFake c = MakeCore(o);
  constexpr int kThreads = 4, kPerThread = 50;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const v1::NormalizeRequest r = LayerNormRequest(1 + i % 3, 24, t * 1000 + i);
        absl::StatusOr<v1::NormalizeResponse> resp = testing::RunSync(*c.core, r);
        if (resp.ok() && resp->request_id() == r.request_id() &&
            resp->output().data().size() == r.input().data().size()) {
          ok.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  EXPECT_EQ(c.fake->problems(), kThreads * kPerThread);
}

}  // namespace
}  // namespace normserve::server
