// A persistent pool of worker threads for the CPU backend.
//
// Threads are created once, in the constructor, and sleep on a condition
// variable between jobs: no thread is created per call. Waking a sleeping
// thread costs microseconds (about 5 on the 2-vCPU dev VM), so a worker that
// runs out of work, and a caller waiting for its job's last parts, first spin
// for up to kSpinNanos before they sleep. ParallelFor() may be
// called from many threads at once; each call is one job whose parts any
// idle worker, and the calling thread itself, take in turn. Because the caller
// always works on its own job, a call finishes even when every worker is busy
// with other callers' jobs, and a pool of one thread (no workers) simply runs
// everything inline.
#ifndef NORMSERVE_KERNELS_CPU_THREAD_POOL_H_
#define NORMSERVE_KERNELS_CPU_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace normserve::kernels::cpu {

class ThreadPool {
 public:
  // `threads` counts the calling thread: threads - 1 workers are started.
  // REQUIRES: threads >= 1
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls body(part) once for every part in [0, parts) and returns when all
  // calls have returned. Parts run concurrently on the workers and the caller.
  // REQUIRES: parts >= 1; body does not throw.
  void ParallelFor(int parts, const std::function<void(int)>& body);

 private:
  static constexpr int64_t kSpinNanos = 50'000;

  struct Job {
    const std::function<void(int)>* body = nullptr;
    int parts = 0;
    // Next part to hand out; parts >= `parts` mean none left. Claimed under mu_.
    int next = 0;
    // Parts not yet finished.
    std::atomic<int> remaining{0};
    // Set under mu_ by whoever finishes the last part, as its last touch of
    // the job: a caller that sees it may return at once.
    std::atomic<bool> finished{false};
  };

  void WorkerLoop();
  // Claims a part of `job` under mu_; returns -1 (and drops the job from the
  // queue) when none is left. REQUIRES: mu_ held.
  int ClaimLocked(Job* job);
  // Runs a claimed part and signals completion of the job's last part.
  void RunPart(Job* job, int part);

  std::mutex mu_;
  std::condition_variable work_cv_;  // Signals a new job or shutdown.
  std::condition_variable done_cv_;  // Signals that some job finished.
  std::deque<Job*> queue_;           // Jobs with parts left to hand out. Guarded by mu_.
  std::atomic<int> queued_{0};       // queue_.size(), written under mu_, read by spinning workers.
  bool stopping_ = false;            // Guarded by mu_.
  std::vector<std::thread> workers_;
};

}  // namespace normserve::kernels::cpu

#endif  // NORMSERVE_KERNELS_CPU_THREAD_POOL_H_
