// The kernel thread pool behind kernels::parallel_for (kernels.h): the CPU kernels of
// qgemv.cc, qdot.cc and attention.cc split their rows across it.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels.h"

namespace cortex_mlx::kernels {
namespace {

// set_pool_workers_only (tests)
std::atomic<bool> workers_only{false};

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Runs f over 0..n in contiguous chunks and waits. Decode calls it a few hundred times per
// token, microseconds apart, so workers and the caller spin briefly before sleeping on a
// condition variable: a futex wake-up per call cost about a fifth of decode time.
// Chunks are handed out from a shared counter rather than fixed one per thread: a worker that
// the OS has not scheduled yet (on a small machine the thread building the next token's graph
// often holds its core) leaves its share to whoever is running, instead of the caller waiting
// for it. Once the caller has taken the last chunk it closes the job; a worker that wakes after
// that skips it without touching it, so the caller waits only for workers inside a chunk.
// Each item is computed the same way whichever thread takes it, so results do not depend on
// the split.
class Pool {
 public:
  // Never destroyed: workers wait on the condition variable for the life of the process, and
  // destroying it at exit while they wait would block exit forever.
  static Pool& get() {
    static Pool* pool = new Pool;
    return *pool;
  }

  // Several MLX streams (one per thread that uses MLX) may call at once; the pool serves one
  // caller at a time and the others compute on their own thread rather than wait.
  void run(int n, const std::function<void(int, int)>& f, int min_chunk) {
    std::unique_lock<std::mutex> serial(run_mu_, std::try_to_lock);
    const int threads = int(threads_.size()) + 1;
    if (threads <= 1 || n < 2 * min_chunk || !serial.owns_lock()) {
      f(0, n);
      return;
    }
    // About four chunks per thread, at least min_chunk items each.
    job_ = &f;
    n_ = n;
    grain_ = std::max(min_chunk, (n + 4 * threads - 1) / (4 * threads));
    next_.store(0, std::memory_order_relaxed);
    const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;  // only callers write it
    gate_.store((tag(gen) << kGenShift) | kOpen, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(mu_);
      generation_.store(gen, std::memory_order_release);
    }
    cv_.notify_all();
    if (workers_only.load(std::memory_order_relaxed)) {
      // tests: every chunk runs on a worker (a thread_local named inside f would be another
      // thread's there)
      while (next_.load(std::memory_order_acquire) < n_) cpu_relax();
    } else {
      take_chunks();
    }
    // No chunk is left: late workers must not enter; wait for those inside one.
    gate_.fetch_and(~kOpen, std::memory_order_acq_rel);
    for (int i = 0; i < kSpins && inside() != 0; ++i) cpu_relax();
    if (inside() != 0) {
      std::unique_lock<std::mutex> lk(mu_);
      done_.wait(lk, [&] { return inside() == 0; });
    }
  }

 private:
  static constexpr int kSpins = 4000;
  // A worker that has spun this long without a job offers its core to any other runnable
  // thread every kYieldEvery spins, still spinning otherwise: on a machine with no core to
  // spare, the thread building the next step's graph runs in what would have been spin time
  // instead of preempting a thread inside a chunk.
  static constexpr int kYieldAfter = 256, kYieldEvery = 64;
  // gate_: the job's generation above kGenShift, whether it is open, and the number of
  // workers inside it in the low bits.
  static constexpr int kGenShift = 33;
  static constexpr uint64_t kOpen = uint64_t(1) << 32;
  static constexpr uint64_t kInside = kOpen - 1;

  static uint64_t tag(uint64_t gen) { return gen & ((uint64_t(1) << (64 - kGenShift)) - 1); }
  uint64_t inside() const { return gate_.load(std::memory_order_acquire) & kInside; }

  void take_chunks() {
    for (;;) {
      const int start = next_.fetch_add(grain_, std::memory_order_relaxed);
      if (start >= n_) return;
      (*job_)(start, std::min(n_, start + grain_));
    }
  }

  // Enters job `gen` if it is still open.
  bool enter(uint64_t gen) {
    uint64_t s = gate_.load(std::memory_order_acquire);
    while ((s >> kGenShift) == tag(gen) && (s & kOpen) != 0) {
      if (gate_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) return true;
    }
    return false;
  }

  Pool() {
    unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    if (const char* t = std::getenv("CORTEX_KERNEL_THREADS")) hw = std::max(1, std::atoi(t));
    for (unsigned i = 0; i + 1 < hw && i < 15; ++i) {
      threads_.emplace_back([this] { loop(); });
      threads_.back().detach();
    }
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = generation_.load(std::memory_order_acquire);
      for (int i = 0; i < kSpins && g == seen; ++i) {
        cpu_relax();
        if (i >= kYieldAfter && i % kYieldEvery == 0) std::this_thread::yield();
        g = generation_.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        g = generation_.load(std::memory_order_acquire);
      }
      seen = g;
      if (!enter(g)) continue;
      take_chunks();
      const uint64_t before = gate_.fetch_sub(1, std::memory_order_acq_rel);
      if ((before & kInside) == 1 && (before & kOpen) == 0) {
        std::lock_guard<std::mutex> lk(mu_);
        done_.notify_one();
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_;
  const std::function<void(int, int)>* job_ = nullptr;
  int n_ = 0, grain_ = 0;
  std::atomic<int> next_{0};
  std::atomic<uint64_t> gate_{0};
  std::atomic<uint64_t> generation_{0};
};

}  // namespace

void parallel_for(int n, const std::function<void(int, int)>& f, int min_chunk) {
  Pool::get().run(n, f, std::max(1, min_chunk));
}

void set_pool_workers_only(bool only) { workers_only.store(only, std::memory_order_relaxed); }

}  // namespace cortex_mlx::kernels
