#include "normserve/client/loadgen.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "normserve/kernels/problem.h"

namespace normserve::client {
namespace {

using Clock = std::chrono::steady_clock;
using Result = absl::StatusOr<v1::NormalizeResponse>;
using Callback = std::function<void(Result)>;

double SecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

uint64_t NanosBetween(Clock::time_point a, Clock::time_point b) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
  return ns > 0 ? static_cast<uint64_t>(ns) : 0;
}

// Collects the outcome of every request of one step. Completions arrive on
// many threads, so everything is behind one mutex; the cost is small next to
// an RPC.
class StepRecorder {
 public:
  StepRecorder(Clock::time_point measure_start, absl::Duration interval)
      : measure_start_(measure_start), interval_s_(absl::ToDoubleSeconds(interval)) {
    result_.timeline_interval_s = interval_s_;
  }

  // `start` is the actual (closed loop) or intended (open loop) send time.
  void Record(Clock::time_point start, bool measured, const Result& r) {
    const Clock::time_point now = Clock::now();
    std::lock_guard lock(mu_);
    if (!measured) {
      ++result_.warmup_requests;
      return;
    }
    ++result_.requests;
    last_completion_ = std::max(last_completion_, now);
    const double since = SecondsBetween(measure_start_, now);
    const size_t slot = since > 0 ? static_cast<size_t>(since / interval_s_) : 0;
    if (result_.timeline.size() <= slot) result_.timeline.resize(slot + 1, 0);
    ++result_.timeline[slot];
    if (!r.ok()) {
      ++result_.errors[absl::StatusCodeToString(r.status().code())];
      return;
    }
    ++result_.ok;
    result_.latency_ns.Record(NanosBetween(start, now));
    result_.server_queue_ns.Record(r->timing().queue_ns());
    result_.server_compute_ns.Record(r->timing().compute_ns());
  }

  // Elapsed seconds, measured requests, errors and p99 (ms) so far.
  std::string ProgressLine() {
    std::lock_guard lock(mu_);
    const double elapsed = SecondsBetween(measure_start_, Clock::now());
    int64_t errors = 0;
    for (const auto& [code, n] : result_.errors) errors += n;
    if (elapsed < 0) return absl::StrFormat("warming up (%d requests)", result_.warmup_requests);
    return absl::StrFormat("%6.1fs  %9.1f req/s  p99 %8.3f ms  errors %d", elapsed,
                           elapsed > 0 ? result_.requests / elapsed : 0.0,
                           result_.latency_ns.Percentile(99) / 1e6, errors);
  }

  StepResult Finish() {
    std::lock_guard lock(mu_);
    StepResult r = std::move(result_);
    if (r.requests > 0) {
      r.seconds = SecondsBetween(measure_start_, last_completion_);
      if (r.seconds > 0) r.achieved_rps = r.requests / r.seconds;
    }
    return r;
  }

 private:
  const Clock::time_point measure_start_;
  const double interval_s_;
  std::mutex mu_;
  StepResult result_;
  Clock::time_point last_completion_{};
};

// Sends requests over every connection in turn, unary or on one stream per
// connection, and tracks how many are in flight.
class Sender {
 public:
  Sender(std::vector<std::unique_ptr<Client>>* clients, LoadMode mode) : clients_(clients), mode_(mode) {
    if (mode_ == LoadMode::kStream) {
      for (auto& c : *clients_) sessions_.push_back(c->OpenSession());
    }
  }

  // Waits for every callback to finish touching this object: a closed-loop
  // worker can see its result (and the step end) before the callback that
  // delivered it has returned.
  ~Sender() {
    WaitIdle();
    for (auto& s : sessions_) s->Finish().IgnoreError();
  }

  // Asynchronous send; `done` runs on a gRPC thread (or inline on a closed
  // stream).
  void Send(v1::NormalizeRequest request, Callback done) {
    const uint64_t n = next_.fetch_add(1);
    request.set_request_id(n + 1);
    {
      std::lock_guard lock(mu_);
      ++inflight_;
    }
    Callback wrapped = [this, done = std::move(done)](Result r) {
      done(std::move(r));
      std::lock_guard lock(mu_);
      if (--inflight_ == 0) idle_.notify_all();
    };
    if (mode_ == LoadMode::kStream) {
      sessions_[n % sessions_.size()]->Send(std::move(request), std::move(wrapped));
    } else {
      (*clients_)[n % clients_->size()]->NormalizeAsync(request, std::move(wrapped));
    }
  }

  // Blocking send, for closed-loop workers.
  Result SendAndWait(v1::NormalizeRequest request) {
    std::promise<Result> promise;
    auto future = promise.get_future();
    Send(std::move(request), [&promise](Result r) { promise.set_value(std::move(r)); });
    return future.get();
  }

  void WaitIdle() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [this] { return inflight_ == 0; });
  }

 private:
  std::vector<std::unique_ptr<Client>>* clients_;
  LoadMode mode_;
  std::vector<std::unique_ptr<NormalizeSession>> sessions_;
  std::atomic<uint64_t> next_{0};
  std::mutex mu_;
  std::condition_variable idle_;
  int64_t inflight_ = 0;
};

// Prints the recorder's progress line every half second until stopped.
class ProgressPrinter {
 public:
  ProgressPrinter(bool enabled, StepRecorder* recorder, std::string prefix) {
    if (!enabled) return;
    thread_ = std::thread([this, recorder, prefix = std::move(prefix)] {
      std::unique_lock lock(mu_);
      while (!cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_; })) {
        std::printf("\r%s %s", prefix.c_str(), recorder->ProgressLine().c_str());
        std::fflush(stdout);
      }
      std::printf("\r%s %s\n", prefix.c_str(), recorder->ProgressLine().c_str());
      std::fflush(stdout);
    });
  }
  ~ProgressPrinter() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

StepResult RunClosedLoop(const LoadgenOptions& o, Sender* sender, int concurrency, const std::string& label) {
  const Clock::time_point t0 = Clock::now();
  const Clock::time_point measure_start = t0 + absl::ToChronoNanoseconds(o.warmup);
  const Clock::time_point measure_end = measure_start + absl::ToChronoNanoseconds(o.duration);
  StepRecorder recorder(measure_start, o.timeline_interval);
  std::atomic<int64_t> tickets{0};
  {
    ProgressPrinter progress(o.progress, &recorder, label);
    std::vector<std::thread> workers;
    for (int w = 0; w < concurrency; ++w) {
      workers.emplace_back([&] {
        while (true) {
          const Clock::time_point start = Clock::now();
          const bool measured = start >= measure_start;
          if (measured) {
            if (o.requests > 0) {
              if (tickets.fetch_add(1) >= o.requests) return;
            } else if (start >= measure_end) {
              return;
            }
          }
          Result r = sender->SendAndWait(o.request);
          recorder.Record(start, measured, r);
        }
      });
    }
    for (auto& t : workers) t.join();
  }
  StepResult result = recorder.Finish();
  result.concurrency = concurrency;
  return result;
}

StepResult RunOpenLoop(const LoadgenOptions& o, Sender* sender, double rate, uint64_t seed,
                       const std::string& label) {
  const Clock::time_point t0 = Clock::now();
  const Clock::time_point measure_start = t0 + absl::ToChronoNanoseconds(o.warmup);
  const Clock::time_point measure_end = measure_start + absl::ToChronoNanoseconds(o.duration);
  StepRecorder recorder(measure_start, o.timeline_interval);
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate);
  int64_t measured_sent = 0;
  Clock::time_point first_send{}, last_send{};
  double max_lag_s = 0;
  {
    ProgressPrinter progress(o.progress, &recorder, label);
    double offset_s = 0;
    while (true) {
      const Clock::time_point intended =
          t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(offset_s));
      const bool measured = intended >= measure_start;
      if (measured && (o.requests > 0 ? measured_sent >= o.requests : intended >= measure_end)) break;
      std::this_thread::sleep_until(intended);
      if (measured) {
        const Clock::time_point now = Clock::now();
        if (measured_sent == 0) first_send = now;
        last_send = now;
        ++measured_sent;
        max_lag_s = std::max(max_lag_s, SecondsBetween(intended, now));
      }
      sender->Send(o.request,
                   [&recorder, intended, measured](Result r) { recorder.Record(intended, measured, r); });
      offset_s += o.arrival == ArrivalProcess::kPoisson ? gap(rng) : 1.0 / rate;
    }
    sender->WaitIdle();
  }
  StepResult result = recorder.Finish();
  result.requested_rate = rate;
  result.max_send_lag_ms = max_lag_s * 1e3;
  const double send_span = SecondsBetween(first_send, last_send);
  if (measured_sent > 1 && send_span > 0) {
    // n sends span n-1 gaps.
    result.send_rate = (measured_sent - 1) / send_span;
  } else {
    result.send_rate = rate;
  }
  // Poisson gaps vary by chance; allow for that before calling it a lag.
  const double tolerance =
      o.arrival == ArrivalProcess::kPoisson ? 3.0 / std::sqrt(std::max<int64_t>(measured_sent, 1)) : 0.0;
  result.fell_behind =
      result.send_rate < rate * (0.95 - tolerance) || result.achieved_rps < rate * (0.95 - tolerance);
  return result;
}

absl::StatusOr<double> ParsePositive(absl::string_view text, absl::string_view what) {
  double v = 0;
  double scale = 1;
  if (absl::ConsumeSuffix(&text, "k")) scale = 1e3;
  if (!absl::SimpleAtod(text, &v) || !(v > 0) || !std::isfinite(v)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad ", what, " '", text, "': expected a positive number"));
  }
  return v * scale;
}

}  // namespace

absl::StatusOr<std::vector<double>> ParseSweep(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  if (parts.size() == 1) {
    auto v = ParsePositive(parts[0], "value");
    if (!v.ok()) return v.status();
    return std::vector<double>{*v};
  }
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad sweep '", text, "': expected N or START:END:xFACTOR or START:END:+STEP"));
  }
  auto start = ParsePositive(parts[0], "sweep start");
  if (!start.ok()) return start.status();
  auto end = ParsePositive(parts[1], "sweep end");
  if (!end.ok()) return end.status();
  if (*end < *start) {
    return absl::InvalidArgumentError(absl::StrCat("bad sweep '", text, "': end is below start"));
  }
  absl::string_view step = parts[2];
  const bool multiply = absl::ConsumePrefix(&step, "x");
  const bool add = !multiply && absl::ConsumePrefix(&step, "+");
  if (!multiply && !add) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad sweep step '", parts[2], "': expected xFACTOR or +STEP"));
  }
  auto by = ParsePositive(step, "sweep step");
  if (!by.ok()) return by.status();
  if (multiply && *by <= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad sweep step '", parts[2], "': the factor must exceed 1"));
  }
  std::vector<double> out;
  for (double v = *start; v <= *end * (1 + 1e-9); v = multiply ? v * *by : v + *by) {
    out.push_back(v);
    if (out.size() > 1000)
      return absl::InvalidArgumentError(absl::StrCat("sweep '", text, "' has over 1000 steps"));
  }
  return out;
}

absl::StatusOr<double> ParseRate(absl::string_view text) {
  absl::ConsumeSuffix(&text, "/s");
  return ParsePositive(text, "rate");
}

absl::StatusOr<std::vector<int64_t>> ParseShape(absl::string_view text) {
  std::vector<int64_t> shape;
  for (absl::string_view part : absl::StrSplit(text, 'x')) {
    int64_t d = 0;
    if (!absl::SimpleAtoi(part, &d) || d < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad shape '", text, "': expected dims >= 1 joined by 'x', like 1x4096"));
    }
    shape.push_back(d);
  }
  if (shape.size() > static_cast<size_t>(kernels::kMaxRank)) {
    return absl::InvalidArgumentError(absl::StrCat("bad shape '", text, "': rank above ", kernels::kMaxRank));
  }
  return shape;
}

absl::StatusOr<LoadReport> RunLoad(const LoadgenOptions& options) {
  if (options.connections < 1) return absl::InvalidArgumentError("connections must be >= 1");
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < options.connections; ++i) {
    ClientOptions co = options.client;
    co.channel_id = i + 1;
    auto c = Client::Create(co);
    if (!c.ok()) return c.status();
    clients.push_back(std::move(*c));
  }
  LoadReport report;
  report.settings = options.settings;
  report.payload_bytes = static_cast<int64_t>(options.request.input().data().size());
  const bool open_loop = !options.rates.empty();
  const size_t steps = open_loop ? options.rates.size() : options.concurrency.size();
  for (size_t i = 0; i < steps; ++i) {
    Sender sender(&clients, options.mode);
    std::string label = absl::StrFormat("[%d/%d %s]", i + 1, steps,
                                        open_loop ? absl::StrFormat("rate %g/s", options.rates[i])
                                                  : absl::StrCat("c=", options.concurrency[i]));
    StepResult r = open_loop ? RunOpenLoop(options, &sender, options.rates[i], options.seed + i, label)
                             : RunClosedLoop(options, &sender, options.concurrency[i], label);
    report.steps.push_back(std::move(r));
  }
  return report;
}

}  // namespace normserve::client
