// SIGTERM in the middle of a load run against the real `normserve`: every
// request ends with OK or UNAVAILABLE (never hangs, never another code), new
// requests after the signal are refused with UNAVAILABLE, and the process
// exits 0 within --shutdown_grace_s.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "hardening_util.h"
#include "normserve/client/client.h"
#include "normserve/client/tensor_util.h"

namespace normserve::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kGraceSeconds = 5;

v1::NormalizeRequest LoadRequest(uint64_t id) {
  std::vector<float> x(64 * 1024);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7 + id) % 101) * 0.01f;
  v1::NormalizeRequest r;
  r.set_request_id(id);
  r.set_kind(v1::LAYER_NORM);
  *r.mutable_input() = client::MakeTensor(x, {64, 1024}, v1::FLOAT32);
  return r;
}

// Waits (without reaping, so ServerProcess still can) until `pid` has
// exited or `timeout` passes. Returns the exit code, or -1 on timeout and
// -2 when it died of a signal.
int WaitForExit(pid_t pid, std::chrono::milliseconds timeout, Clock::duration* took) {
  const Clock::time_point start = Clock::now();
  while (Clock::now() - start < timeout) {
    siginfo_t info = {};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid) {
      *took = Clock::now() - start;
      return info.si_code == CLD_EXITED ? info.si_status : -2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  *took = Clock::now() - start;
  return -1;
}

// Runs the load from kThreads clients, each on its own connection, sends
// SIGTERM, and checks that every request ended with OK or UNAVAILABLE, that
// requests sent after the signal were refused, and that the process exited 0
// within the grace. `watch_health`: the clients use round_robin with health
// checking (the library's default), so they stop sending once the server
// turns NOT_SERVING; otherwise pick_first, and they keep sending on their
// open connection until the server refuses them.
void RunLoadAndSigterm(bool watch_health) {
  auto server = ServerProcess::Start(
      ServerBinary(), {"--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--backend=cpu",
                       "--max_queue_requests=64", absl::StrCat("--shutdown_grace_s=", kGraceSeconds)});
  ASSERT_TRUE(server.ok()) << server.status();
  const pid_t pid = (*server)->pid();

  constexpr int kThreads = 6;
  std::atomic<bool> signalled{false};
  std::atomic<int> ok_before_signal{0};
  std::mutex mu;
  std::map<absl::StatusCode, int> codes;
  // Of `codes`, the requests sent after SIGTERM.
  std::map<absl::StatusCode, int> codes_after;
  std::map<absl::StatusCode, std::string> examples;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      client::ClientOptions options;
      options.target = (*server)->target();
      options.retry_max_attempts = 1;
      options.channel_id = t + 1;
      if (!watch_health) options.load_balancing_policy = "pick_first";
      absl::StatusOr<std::unique_ptr<client::Client>> c = client::Client::Create(options);
      if (!c.ok()) {
        ADD_FAILURE() << c.status();
        return;
      }
      int unavailable_after = 0;
      // Bounded even if the server never goes away.
      const Clock::time_point give_up = Clock::now() + std::chrono::seconds(60);
      for (uint64_t i = 0; unavailable_after < 3 && Clock::now() < give_up; ++i) {
        const bool after = signalled.load();
        auto result = (*c)->Normalize(LoadRequest(static_cast<uint64_t>(t) * 100000 + i), absl::Seconds(30));
        const absl::StatusCode code = result.status().code();
        if (code == absl::StatusCode::kOk && !after) ok_before_signal.fetch_add(1);
        if (code == absl::StatusCode::kUnavailable && after) ++unavailable_after;
        std::lock_guard<std::mutex> lock(mu);
        ++codes[code];
        if (after) ++codes_after[code];
        examples.emplace(code, result.status().ToString());
      }
    });
  }
  // Let the load run until every connection has seen some work done.
  const Clock::time_point load_start = Clock::now();
  while (ok_before_signal.load() < 4 * kThreads && Clock::now() - load_start < std::chrono::seconds(20)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // No ASSERT until the threads are joined: they stop only after SIGTERM.
  EXPECT_GE(ok_before_signal.load(), 4 * kThreads) << "the load never got going";

  signalled.store(true);
  EXPECT_EQ(kill(pid, SIGTERM), 0);
  Clock::duration took{};
  const int exit_code =
      WaitForExit(pid, std::chrono::milliseconds(static_cast<int64_t>(kGraceSeconds * 1000) + 10000), &took);
  for (std::thread& thread : threads) thread.join();
  const double exit_seconds = std::chrono::duration<double>(took).count();

  std::printf("[sigterm] exit code %d after %.3f s (grace %.1f s)\n", exit_code, exit_seconds, kGraceSeconds);
  for (const auto& [code, count] : codes) {
    std::printf("[sigterm] %d x (%d sent after SIGTERM) %s\n", count, codes_after[code],
                examples[code].c_str());
  }
  EXPECT_EQ(exit_code, 0);
  EXPECT_LE(exit_seconds, kGraceSeconds) << "exit took longer than --shutdown_grace_s";
  for (const auto& [code, count] : codes) {
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kUnavailable)
        << count << " x " << examples[code];
  }
  EXPECT_GT(codes[absl::StatusCode::kOk], 0);
  EXPECT_GT(codes[absl::StatusCode::kUnavailable], 0) << "requests after SIGTERM must be refused";
}

TEST(SigtermTest, HealthWatchingClientsGetOkOrUnavailableOnly) { RunLoadAndSigterm(/*watch_health=*/true); }

// The harder case: clients that keep sending on their connection after the
// server turned NOT_SERVING. Before the quiet wait in NormServer::Shutdown,
// calls that reached grpc::Server::Shutdown unhandled came back as a bare
// CANCELLED (docs/hardening.md, finding 2).
TEST(SigtermTest, ClientsIgnoringHealthGetOkOrUnavailableOnly) { RunLoadAndSigterm(/*watch_health=*/false); }

// A NormalizeStream left open by its client across SIGTERM: the requests it
// sent before the signal are answered, and the server ends the idle stream
// with UNAVAILABLE once it stops taking work, so the process exits long
// before the grace.
TEST(SigtermTest, OpenStreamEndsWithUnavailableAndDoesNotHoldTheProcess) {
  constexpr double kStreamGraceSeconds = 6;
  auto server = ServerProcess::Start(ServerBinary(),
                                     {"--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--backend=cpu",
                                      absl::StrCat("--shutdown_grace_s=", kStreamGraceSeconds)});
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<client::Client> c = ConnectNoRetry((*server)->target());
  ASSERT_NE(c, nullptr);
  // Declared before the session, so it outlives every callback.
  std::vector<std::promise<absl::Status>> answered(8);
  std::unique_ptr<client::NormalizeSession> session = c->OpenSession();
  for (size_t i = 0; i < answered.size(); ++i) {
    session->Send(LoadRequest(i + 1),
                  [p = &answered[i]](absl::StatusOr<v1::NormalizeResponse> r) { p->set_value(r.status()); });
  }
  for (auto& p : answered) {
    auto f = p.get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    EXPECT_TRUE(f.get().ok());
  }
  ASSERT_EQ(kill((*server)->pid(), SIGTERM), 0);
  Clock::duration took{};
  const int exit_code = WaitForExit((*server)->pid(), std::chrono::seconds(20), &took);
  const absl::Status finished = session->Finish();
  const double seconds = std::chrono::duration<double>(took).count();
  std::printf("[sigterm-stream] exit code %d after %.3f s (grace %.0f s); stream ended with %s\n", exit_code,
              seconds, kStreamGraceSeconds, finished.ToString().c_str());
  EXPECT_EQ(exit_code, 0);
  // Drain window (0.5 s) + quiet wait (0.1 s) + teardown, far below the grace
  // that an idle stream used to hold the process for.
  EXPECT_LT(seconds, kStreamGraceSeconds / 2);
  EXPECT_EQ(finished,
            absl::UnavailableError("server is shutting down; send further requests on a new stream"));
}

// A stream kept busy through SIGTERM: every request sent on it is answered
// exactly once, with OK or UNAVAILABLE (a per-request refusal, or the
// stream's own UNAVAILABLE for requests still unread when it ended).
TEST(SigtermTest, BusyStreamAnswersEveryRequestWithOkOrUnavailable) {
  auto server = ServerProcess::Start(ServerBinary(), {"--host=127.0.0.1", "--port=0", "--metrics_port=-1",
                                                      "--backend=cpu", "--shutdown_grace_s=5"});
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<client::Client> c = ConnectNoRetry((*server)->target());
  ASSERT_NE(c, nullptr);
  constexpr int kWindow = 16;
  std::mutex mu;
  std::condition_variable cv;
  int outstanding = 0;
  int ok = 0;
  std::map<uint64_t, int> answers;  // request id -> callbacks seen
  std::map<absl::StatusCode, std::string> other;
  bool refused = false;
  std::unique_ptr<client::NormalizeSession> session = c->OpenSession();
  const Clock::time_point give_up = Clock::now() + std::chrono::seconds(60);
  bool signalled = false;
  uint64_t sent = 0;
  while (Clock::now() < give_up) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return outstanding < kWindow; });
      if (refused) break;
      if (!signalled && ok >= 50) {
        signalled = true;
        EXPECT_EQ(kill((*server)->pid(), SIGTERM), 0);
      }
      ++outstanding;
    }
    const uint64_t id = ++sent;
    session->Send(LoadRequest(id), [&, id](absl::StatusOr<v1::NormalizeResponse> r) {
      std::lock_guard<std::mutex> lock(mu);
      --outstanding;
      ++answers[id];
      if (r.ok()) {
        ++ok;
      } else if (r.status().code() == absl::StatusCode::kUnavailable) {
        refused = true;
      } else {
        other.emplace(r.status().code(), r.status().ToString());
      }
      cv.notify_all();
    });
  }
  const absl::Status finished = session->Finish();
  Clock::duration took{};
  const int exit_code = WaitForExit((*server)->pid(), std::chrono::seconds(20), &took);
  std::lock_guard<std::mutex> lock(mu);
  std::printf("[sigterm-busy-stream] %llu sent, %d OK, stream ended with %s, exit code %d\n",
              static_cast<unsigned long long>(sent), ok, finished.ToString().c_str(), exit_code);
  EXPECT_TRUE(signalled);
  EXPECT_TRUE(refused) << "no request was refused after SIGTERM";
  EXPECT_EQ(outstanding, 0);
  EXPECT_EQ(answers.size(), sent) << "a request was never answered";
  for (const auto& [id, count] : answers) EXPECT_EQ(count, 1) << "request " << id;
  for (const auto& [code, example] : other) ADD_FAILURE() << "neither OK nor UNAVAILABLE: " << example;
  EXPECT_TRUE(finished.ok() || finished.code() == absl::StatusCode::kUnavailable) << finished;
  EXPECT_EQ(exit_code, 0);
}

}  // namespace
}  // namespace normserve::testing
