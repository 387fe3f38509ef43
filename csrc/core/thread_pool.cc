#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace toma {

namespace {

struct Job {
  const std::function<void(int64_t, int64_t)>* fn;
  int64_t n, chunk, chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex m;
  std::condition_variable cv;
  std::exception_ptr error;

  // Runs chunks until none are left; returns true when this call finished the last one.
  void run_chunks() {
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      const int64_t b = c * chunk, e = std::min(n, b + chunk);
      try {
        (*fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lock(m);
        if (!error) error = std::current_exception();
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks) {
        std::lock_guard<std::mutex> lock(m);
        cv.notify_all();
      }
    }
  }
};

int pool_size_from_env() {
  if (const char* s = std::getenv("TOMA_NUM_THREADS")) {
    const int v = std::atoi(s);
    if (v >= 1 && v <= 1024) return v;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : (int)hw;
}

}  // namespace

struct ThreadPool::Impl {
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Job>> queue;
  std::vector<std::thread> threads;
};

ThreadPool& ThreadPool::instance() {
  // Never destroyed: joining threads during static destruction at exit can hang the host process.
  static ThreadPool* pool = new ThreadPool(pool_size_from_env() - 1);
  return *pool;
}

ThreadPool::ThreadPool(int workers) : impl_(new Impl), workers_(workers) {
  for (int i = 0; i < workers; ++i) {
    impl_->threads.emplace_back([this] { worker_loop(); });
    impl_->threads.back().detach();
  }
}

void ThreadPool::worker_loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(impl_->m);
      impl_->cv.wait(lock, [&] { return !impl_->queue.empty(); });
      job = impl_->queue.front();
      // A job whose chunks are all handed out is finished by whoever holds them; drop it.
      if (job->next.load(std::memory_order_relaxed) >= job->chunks) {
        impl_->queue.pop_front();
        continue;
      }
    }
    job->run_chunks();
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = size();
  if (threads == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  // About four chunks a thread balances uneven work without much queue traffic.
  const int64_t chunk = std::max<int64_t>(grain, (n + 4 * threads - 1) / (4 * threads));
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  job->chunk = chunk;
  job->chunks = (n + chunk - 1) / chunk;
  {
    std::lock_guard<std::mutex> lock(impl_->m);
    impl_->queue.push_back(job);
  }
  impl_->cv.notify_all();
  job->run_chunks();
  {
    std::unique_lock<std::mutex> lock(job->m);
    job->cv.wait(lock, [&] { return job->done.load(std::memory_order_acquire) == job->chunks; });
  }
  {
    std::lock_guard<std::mutex> lock(impl_->m);
    auto& q = impl_->queue;
    q.erase(std::remove(q.begin(), q.end(), job), q.end());
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace toma
