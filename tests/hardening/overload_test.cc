// Overload at about 4x capacity against a `normserve` with a small queue:
// rejections are UNAVAILABLE and fast, accepted requests' p99 stays bounded,
// the server's resident memory stays bounded, and it serves normally after.
//
// Capacity is made a property of the configuration rather than of this
// (shared, 2-core) machine: requests are small, so neither transport nor
// compute limits throughput, and the batcher holds each one for up to
// --max_queue_delay_us waiting for company (--max_batch_rows is never
// reached). One worker then takes at most --max_queue_requests requests per
// delay, so capacity is max_queue_requests / max_queue_delay.
//
// Timing decides nothing finely: the bounds are generous multiples (a second
// against milliseconds) and the test prints the measured numbers.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hardening_util.h"
#include "normserve/client/client.h"
#include "normserve/client/tensor_util.h"

namespace normserve::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxQueueRequests = 8;
constexpr double kMaxQueueDelaySeconds = 0.1;
// Requests per second the server can accept at most.
constexpr double kCapacity = kMaxQueueRequests / kMaxQueueDelaySeconds;

v1::NormalizeRequest Work(uint64_t id) {
  std::vector<float> x(8 * 256);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 13 + id) % 97) * 0.02f;
  v1::NormalizeRequest r;
  r.set_request_id(id);
  r.set_kind(v1::LAYER_NORM);
  r.set_return_stats(true);
  *r.mutable_input() = client::MakeTensor(x, {8, 256}, v1::FLOAT32);
  return r;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

TEST(OverloadTest, RejectsFastKeepsLatencyAndMemoryBounded) {
  auto server = ServerProcess::Start(
      ServerBinary(),
      {"--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--backend=cpu", "--batch_workers=1",
       "--enable_batching=true", "--max_batch_rows=1000000",
       "--max_queue_delay_us=" + std::to_string(static_cast<int>(kMaxQueueDelaySeconds * 1e6)),
       "--max_queue_requests=" + std::to_string(kMaxQueueRequests), "--shutdown_grace_s=2"});
  ASSERT_TRUE(server.ok()) << server.status();
  const pid_t pid = (*server)->pid();
  std::unique_ptr<client::Client> c = ConnectNoRetry((*server)->target());
  ASSERT_NE(c, nullptr);
  // Warm up the connection and the server's allocations.
  for (int i = 0; i < 5; ++i) {
    auto r = c->Normalize(Work(i), absl::Seconds(30));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  const int64_t rss_before = ResidentKib(pid);

  // Open loop at 4x capacity for about 1.5 seconds.
  const double rate = 4 * kCapacity;
  const int total = static_cast<int>(rate * 1.5);
  std::mutex mu;
  std::condition_variable done_cv;
  int done = 0;
  std::vector<double> accepted, rejected;
  std::map<absl::StatusCode, int> codes;
  std::map<absl::StatusCode, std::string> examples;
  int64_t rss_peak = rss_before;
  const v1::NormalizeRequest request = Work(7);
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < total; ++i) {
    std::this_thread::sleep_until(
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(i / rate)));
    const Clock::time_point sent = Clock::now();
    c->NormalizeAsync(
        request,
        [&, sent](absl::StatusOr<v1::NormalizeResponse> r) {
          const double latency = Seconds(Clock::now() - sent);
          std::lock_guard<std::mutex> lock(mu);
          ++codes[r.status().code()];
          examples.emplace(r.status().code(), r.status().ToString());
          if (r.ok()) accepted.push_back(latency);
          if (r.status().code() == absl::StatusCode::kUnavailable) rejected.push_back(latency);
          ++done;
          done_cv.notify_all();
        },
        absl::Seconds(30));
    if (i % 16 == 0) rss_peak = std::max(rss_peak, ResidentKib(pid));
  }
  bool all_done = false;
  {
    std::unique_lock<std::mutex> lock(mu);
    all_done = done_cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == total; });
  }
  if (!all_done) {
    // The callbacks use this frame's locals: wait for them (the client's
    // destructor does) before failing out of it.
    c.reset();
    FAIL() << done << " of " << total << " requests finished within 60 s";
  }
  const int64_t rss_after = ResidentKib(pid);

  std::printf("[overload] capacity %.1f req/s, offered %.1f req/s, %d requests in %.2f s\n", kCapacity, rate,
              total, Seconds(Clock::now() - start));
  for (const auto& [code, count] : codes) std::printf("[overload] %d x %s\n", count, examples[code].c_str());
  std::printf("[overload] accepted p50 %.2f ms p99 %.2f ms; rejected p50 %.2f ms p99 %.2f ms\n",
              Quantile(accepted, 0.5) * 1e3, Quantile(accepted, 0.99) * 1e3, Quantile(rejected, 0.5) * 1e3,
              Quantile(rejected, 0.99) * 1e3);
  std::printf("[overload] VmRSS before %lld KiB, peak %lld KiB, after %lld KiB\n",
              static_cast<long long>(rss_before), static_cast<long long>(rss_peak),
              static_cast<long long>(rss_after));

  for (const auto& [code, count] : codes) {
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kUnavailable)
        << count << " x " << examples[code];
  }
  EXPECT_FALSE(accepted.empty());
  ASSERT_FALSE(rejected.empty()) << "4x capacity never filled a queue of " << kMaxQueueRequests;
  EXPECT_NE(examples[absl::StatusCode::kUnavailable].find("is full"), std::string::npos);
  // Fast: a rejection never waits for the queue; far below the 30 s deadline.
  EXPECT_LT(Quantile(rejected, 0.99), 1.0);
  // Bounded: an accepted request waits about one queue delay; 10x that and
  // a second more is generous.
  EXPECT_LT(Quantile(accepted, 0.99), 1.0 + 10 * kMaxQueueDelaySeconds);
  // Most of the excess is refused, not absorbed.
  EXPECT_GT(rejected.size(), static_cast<size_t>(total) / 4);
  // Memory: the queue limit bounds what is held.
  ASSERT_GT(rss_before, 0);
  EXPECT_LT(rss_peak, 2 * rss_before + 256 * 1024);
  EXPECT_LT(rss_after, 2 * rss_before + 256 * 1024);

  // Still serving normally.
  auto ok = c->Normalize(Work(99), absl::Seconds(30));
  EXPECT_TRUE(ok.ok()) << ok.status();
  auto health = c->CheckHealth();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, client::HealthState::kServing);
}

}  // namespace
}  // namespace normserve::testing
