// core/thread_pool.h: coverage of every index exactly once, chunk sizes, nesting, exceptions,
// concurrent callers; the same cases again in child processes with TOMA_NUM_THREADS = 1 and 5.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "tests/harness.h"

using toma::ThreadPool;

namespace {

struct CustomError : std::runtime_error {
  int code;
  explicit CustomError(int c) : std::runtime_error("custom error " + std::to_string(c)), code(c) {}
};

// Runs parallel_for over [0, n) and checks every index was visited exactly once, chunks are
// well formed, and every chunk but the last has at least `grain` items.
bool cover_once(int64_t n, int64_t grain, std::string* why) {
  std::unique_ptr<std::atomic<int>[]> hits(new std::atomic<int>[n > 0 ? n : 1]);
  for (int64_t i = 0; i < n; ++i) hits[i] = 0;
  std::atomic<int> bad_chunks{0}, calls{0};
  toma::parallel_for(n, grain, [&](int64_t b, int64_t e) {
    ++calls;
    if (!(0 <= b && b < e && e <= n)) {
      ++bad_chunks;
      return;
    }
    if (e - b < grain && e != n) ++bad_chunks;
    for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
  });
  for (int64_t i = 0; i < n; ++i)
    if (hits[i] != 1) {
      *why = "index " + std::to_string(i) + " visited " + std::to_string(hits[i].load()) + " times";
      return false;
    }
  if (bad_chunks) {
    *why = std::to_string(bad_chunks.load()) + " malformed or short chunks";
    return false;
  }
  if (n <= 0 && calls) {
    *why = "fn called for an empty range";
    return false;
  }
  return true;
}

}  // namespace

TEST_CASE(thread_pool, size_follows_environment) {
  const int size = ThreadPool::instance().size();
  CHECK_GE(size, 1);
  CHECK(&ThreadPool::instance() == &ThreadPool::instance());
  if (const char* s = std::getenv("TOMA_NUM_THREADS")) {
    CHECK_EQ(size, std::atoi(s));
  } else {
    const unsigned hw = std::thread::hardware_concurrency();
    CHECK_EQ(size, hw == 0 ? 1 : (int)hw);
  }
  tt::note("pool size " + std::to_string(size));
}

TEST_CASE(thread_pool, every_index_exactly_once) {
  const int64_t ns[] = {0, 1, 2, 3, 7, 16, 100, 1000, 4099, 100003};
  const int64_t grains[] = {1, 2, 3, 64, 1000, 1 << 20, 0, -5};
  for (int64_t n : ns)
    for (int64_t g : grains) {
      std::string why;
      const bool ok = cover_once(n, g, &why);
      CHECK_MSG(ok, "n=" + std::to_string(n) + " grain=" + std::to_string(g) + ": " + why);
    }
  // Negative n is an empty range.
  bool called = false;
  toma::parallel_for(-3, 1, [&](int64_t, int64_t) { called = true; });
  CHECK(!called);
}

TEST_CASE(thread_pool, results_are_complete_on_return) {
  // Writes made by any thread are visible to the caller once parallel_for returns.
  for (int rep = 0; rep < 50; ++rep) {
    std::vector<int64_t> out(10007, -1);
    toma::parallel_for((int64_t)out.size(), 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out[i] = i * i;
    });
    int64_t bad = 0;
    for (int64_t i = 0; i < (int64_t)out.size(); ++i) bad += out[i] != i * i;
    REQUIRE_EQ(bad, 0);
  }
}

TEST_CASE(thread_pool, nested_calls) {
  // Three levels deep, each level splitting its own range: every leaf index once.
  const int A = 13, Bn = 17, Cn = 19;
  std::vector<std::atomic<int>> hits(A * Bn * Cn);
  for (auto& h : hits) h = 0;
  toma::parallel_for(A, 1, [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1; ++a)
      toma::parallel_for(Bn, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
          toma::parallel_for(Cn, 2, [&](int64_t c0, int64_t c1) {
            for (int64_t c = c0; c < c1; ++c) hits[(a * Bn + b) * Cn + c]++;
          });
      });
  });
  int bad = 0;
  for (auto& h : hits) bad += h != 1;
  CHECK_EQ(bad, 0);
}

TEST_CASE(thread_pool, exceptions_propagate) {
  // A std::exception subclass keeps its type and contents.
  bool caught = false;
  try {
    toma::parallel_for(1000, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        if (i == 617) throw CustomError(617);
    });
  } catch (const CustomError& e) {
    caught = e.code == 617;
  }
  CHECK(caught);
  // The other chunks still run to completion before the rethrow (nothing runs after return).
  std::atomic<int64_t> done{0};
  std::atomic<bool> returned{false}, late{false};
  try {
    toma::parallel_for(400, 1, [&](int64_t b, int64_t e) {
      if (b == 0) throw std::runtime_error("first chunk");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      if (returned) late = true;
      done += e - b;
    });
    CHECK_MSG(false, "no exception");
  } catch (const std::runtime_error& e) {
    returned = true;
    CHECK_EQ(std::string(e.what()), std::string("first chunk"));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(!late);
  // With one thread the whole range is one chunk, so there are no others.
  if (ThreadPool::instance().size() > 1) CHECK_GT(done.load(), 0);
  // Every chunk throwing: exactly one exception comes out.
  int count = 0;
  try {
    toma::parallel_for(64, 1, [&](int64_t b, int64_t) { throw CustomError((int)b); });
  } catch (const CustomError&) {
    ++count;
  }
  CHECK_EQ(count, 1);
  // Non-std exceptions too.
  caught = false;
  try {
    toma::parallel_for(50, 1, [&](int64_t b, int64_t e) {
      if (b <= 25 && 25 < e) throw 42;
    });
  } catch (int v) {
    caught = v == 42;
  }
  CHECK(caught);
  // An exception inside a nested call reaches the outermost caller.
  caught = false;
  try {
    toma::parallel_for(8, 1, [&](int64_t b, int64_t e) {
      toma::parallel_for(8, 1, [&](int64_t b2, int64_t e2) {
        if (b == 0 && b2 == 0) throw CustomError(3);
      });
    });
  } catch (const CustomError& e) {
    caught = e.code == 3;
  }
  CHECK(caught);
  // The pool still works afterwards.
  std::string why;
  CHECK_MSG(cover_once(10000, 7, &why), why);
}

TEST_CASE(thread_pool, concurrent_callers) {
  const int callers = 6, reps = 40;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < callers; ++c)
    threads.emplace_back([&, c] {
      for (int r = 0; r < reps; ++r) {
        const int64_t n = 1000 + 37 * c + r;
        std::vector<int> hits(n, 0);
        std::atomic<int64_t> sum{0};
        toma::parallel_for(n, 1 + (r % 5), [&](int64_t b, int64_t e) {
          int64_t s = 0;
          for (int64_t i = b; i < e; ++i) {
            hits[i]++;  // distinct chunks never share an index
            s += i;
          }
          sum += s;
          // Nested work from concurrent callers too.
          if (b == 0)
            toma::parallel_for(64, 1, [&](int64_t b2, int64_t e2) { sum += 0 * (e2 - b2); });
        });
        if (sum != n * (n - 1) / 2) ++bad;
        for (int64_t i = 0; i < n; ++i)
          if (hits[i] != 1) {
            ++bad;
            break;
          }
        // Some callers throw: that must not disturb the others.
        if (r % 7 == 3) {
          try {
            toma::parallel_for(100, 1, [&](int64_t b, int64_t) {
              if (b == 0) throw CustomError(c);
            });
            ++bad;
          } catch (const CustomError& e) {
            if (e.code != c) ++bad;
          }
        }
      }
    });
  for (auto& t : threads) t.join();
  CHECK_EQ(bad.load(), 0);
}

TEST_CASE(thread_pool, workers_take_part) {
  // With more than one thread, a long job is shared (the caller alone would be a pool of one).
  const int size = ThreadPool::instance().size();
  if (size == 1) {
    tt::note("pool of one: nothing to share");
    return;
  }
  std::mutex m;
  std::set<std::thread::id> ids;
  for (int attempt = 0; attempt < 20 && ids.size() < 2; ++attempt)
    toma::parallel_for(64, 1, [&](int64_t, int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::lock_guard<std::mutex> lock(m);
      ids.insert(std::this_thread::get_id());
    });
  CHECK_GE(ids.size(), 2u);
}

TEST_CASE(thread_pool, other_pool_sizes) {
  if (tt::is_child()) return;
  for (const char* n : {"1", "5"}) {
    const int rc = tt::run_self({"thread_pool"}, {{"TOMA_NUM_THREADS", n}});
    CHECK_MSG(rc == 0, std::string("thread_pool suite with TOMA_NUM_THREADS=") + n + " exited " + std::to_string(rc));
  }
}
