// A small process-wide pool for the CPU kernels. The calling thread always takes part, so a
// parallel_for nested in another, or issued from several libuv workers at once, cannot deadlock.
#pragma once
#include <cstdint>
#include <functional>

namespace toma {

class ThreadPool {
 public:
  // Sized from std::thread::hardware_concurrency(), or TOMA_NUM_THREADS when set (>= 1).
  static ThreadPool& instance();

  // Threads that work on one parallel_for, the caller included.
  int size() const { return workers_ + 1; }

  // Runs fn(begin, end) over [0, n) in chunks of at least `grain` items. Returns once all chunks
  // are done; the first exception thrown by a chunk is rethrown here after the others finish.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

 private:
  explicit ThreadPool(int workers);
  void worker_loop();
  struct Impl;
  Impl* impl_;
  int workers_;
};

inline void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  ThreadPool::instance().parallel_for(n, grain, fn);
}

}  // namespace toma
