#include "thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace normserve::kernels::cpu {

namespace {

// Spins until done() or kSpinNanos have passed; returns done().
template <typename Done>
bool SpinUntil(int64_t nanos, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(nanos);
  while (!done()) {
    for (int i = 0; i < 64; ++i) {
#if defined(__x86_64__)
      _mm_pause();
#endif
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
  return true;
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  const int workers = std::max(threads, 1) - 1;
  workers_.reserve(static_cast<size_t>(workers));
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

int ThreadPool::ClaimLocked(Job* job) {
  if (job->next < job->parts) return job->next++;
  auto it = std::find(queue_.begin(), queue_.end(), job);
  if (it != queue_.end()) {
    queue_.erase(it);
    queued_.store(static_cast<int>(queue_.size()), std::memory_order_relaxed);
  }
  return -1;
}

void ThreadPool::RunPart(Job* job, int part) {
  (*job->body)(part);
  if (job->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    // The caller may return (and free the job) as soon as it sees `finished`
    // (it spins on it without the lock), so setting it is the last touch of
    // the job; notify_all and the unlock touch only the pool.
    std::lock_guard<std::mutex> lock(mu_);
    job->finished.store(true, std::memory_order_release);
    done_cv_.notify_all();
  }
}

void ThreadPool::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (queue_.empty() && !stopping_) {
      // Out of work: spin a while before sleeping, so that the next call of
      // a busy caller finds this thread awake.
      lock.unlock();
      SpinUntil(kSpinNanos, [this] { return queued_.load(std::memory_order_relaxed) != 0; });
      lock.lock();
    }
    work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    Job* job = queue_.front();
    const int part = ClaimLocked(job);
    if (part < 0) continue;
    lock.unlock();
    RunPart(job, part);
    lock.lock();
  }
}

void ThreadPool::ParallelFor(int parts, const std::function<void(int)>& body) {
  if (parts <= 1 || workers_.empty()) {
    for (int i = 0; i < parts; ++i) body(i);
    return;
  }
  Job job;
  job.body = &body;
  job.parts = parts;
  job.remaining.store(parts, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(&job);
    queued_.store(static_cast<int>(queue_.size()), std::memory_order_relaxed);
  }
  // Wake only as many workers as there are parts beyond the caller's own.
  const int wake = std::min(parts - 1, static_cast<int>(workers_.size()));
  for (int i = 0; i < wake; ++i) work_cv_.notify_one();
  while (true) {
    int part;
    {
      std::lock_guard<std::mutex> lock(mu_);
      part = ClaimLocked(&job);
    }
    if (part < 0) break;
    RunPart(&job, part);
  }
  // The other parts are short: spin for them a while before sleeping.
  if (SpinUntil(kSpinNanos, [&job] { return job.finished.load(std::memory_order_acquire); })) return;
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&job] { return job.finished.load(std::memory_order_acquire); });
}

}  // namespace normserve::kernels::cpu
