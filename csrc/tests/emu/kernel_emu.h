// CPU emulation of the CUDA features used by the plan, merge and unmerge kernels. Force-included
// (-include) ahead of the generated copies of csrc/cuda/*.cu (gen_launches.py), so the kernels
// compile as plain C++ and run block by block on the host:
//  - threads of a block are fibers (ucontext) on one OS thread, switched only at barriers: runs are
//    deterministic and a barrier that can never complete is reported as a deadlock instead of
//    hanging. EMU_THREADS=1 gives one std::thread per CUDA thread instead, for ThreadSanitizer;
//  - `__shared__` becomes `static`: one copy, reused block after block, as blocks run in turn;
//  - a thread returning from the kernel drops out of __syncthreads (counted: CUDA leaves a barrier
//    reached after some threads exited undefined), and a full-mask warp op after a lane of the
//    warp returned is an error, as is any partial mask (the kernels never use one);
//  - "device" memory (runtime_stubs.cc) is host memory poisoned with 0xFF and registered, and
//    every pointer argument of a launch must point into it, so a host pointer handed to a kernel
//    fails here as it would fault on a card.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <vector_types.h>
#include <vector_functions.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>
#include <ucontext.h>

#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __forceinline__
#define __forceinline__ inline

using std::max;
using std::min;

namespace emu {

inline bool fiber_mode = true;
inline ucontext_t sched_ctx;
inline ucontext_t* cur_ctx = nullptr;
inline long progress = 0;
inline void yield() { swapcontext(cur_ctx, &sched_ctx); }

struct Bar {
  std::mutex mu;
  std::condition_variable cv;
  int expected = 0, arrived = 0;
  long gen = 0, drop_gen = -1;
  void reset(int n) { expected = n, arrived = 0, drop_gen = -1; }
  // true when the release of this phase came from a thread leaving (returning from the kernel)
  bool wait() {
    if (fiber_mode) {
      const long g = gen;
      if (++arrived == expected) {
        arrived = 0, ++gen, ++progress;
        return false;
      }
      while (gen == g) yield();
      return drop_gen == g;
    }
    std::unique_lock<std::mutex> l(mu);
    const long g = gen;
    if (++arrived == expected) {
      arrived = 0, ++gen;
      cv.notify_all();
    } else {
      cv.wait(l, [&] { return gen != g; });
    }
    return drop_gen == g;
  }
  void drop() {
    std::unique_lock<std::mutex> l(mu, std::defer_lock);
    if (!fiber_mode) l.lock();
    --expected;
    if (arrived > 0 && arrived == expected) {
      drop_gen = gen;
      arrived = 0, ++gen, ++progress;
      if (!fiber_mode) cv.notify_all();
    }
  }
};

struct Block {
  int nthreads = 0, nwarps = 0;
  Bar bar;                    // __syncthreads
  std::vector<Bar> wbar;      // per warp
  std::vector<uint64_t> slot; // per warp x 32
  std::vector<int> wexited;   // lanes exited per warp
  std::atomic<int> exited{0};
};

inline Block* blk = nullptr;
inline std::atomic<long> sync_after_exit{0};
inline const char* cur_kernel = "";

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "EMU ERROR in %s: %s\n", cur_kernel, what);
  std::abort();
}

// Registered "device" allocations.
inline std::mutex mem_mu;
inline std::map<uintptr_t, size_t> allocs;
inline bool is_device(const void* p) {
  std::lock_guard<std::mutex> l(mem_mu);
  const uintptr_t a = (uintptr_t)p;
  auto it = allocs.upper_bound(a);
  if (it == allocs.begin()) return false;
  --it;
  return a >= it->first && a < it->first + it->second;
}

}  // namespace emu

inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

inline void __syncthreads() {
  if (emu::blk->exited.load()) emu::sync_after_exit++;
  emu::blk->bar.wait();
}

namespace emu {
inline int warp() { return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) >> 5; }
inline int lane() { return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31; }
inline void warp_sync_full(unsigned mask) {
  if (mask != 0xffffffffu) fail("warp op with a partial mask");
  if (blk->wexited[warp()]) fail("full-mask warp op after some lanes of the warp returned");
  if (blk->wbar[warp()].wait()) fail("full-mask warp op while some lanes of the warp returned");
}
template <class T>
T shfl_xor(T v, int m) {
  static_assert(sizeof(T) <= 8, "");
  const int w = warp(), l = lane();
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof v);
  blk->slot[w * 32 + l] = u;
  warp_sync_full(0xffffffffu);
  const uint64_t r = blk->slot[w * 32 + (l ^ m)];
  warp_sync_full(0xffffffffu);
  T o;
  std::memcpy(&o, &r, sizeof o);
  return o;
}
}  // namespace emu

inline double __shfl_xor_sync(unsigned mask, double v, int m, int = 32) { if (mask != 0xffffffffu) emu::fail("partial mask"); return emu::shfl_xor(v, m); }
inline float __shfl_xor_sync(unsigned mask, float v, int m, int = 32) { if (mask != 0xffffffffu) emu::fail("partial mask"); return emu::shfl_xor(v, m); }
inline int __shfl_xor_sync(unsigned mask, int v, int m, int = 32) { if (mask != 0xffffffffu) emu::fail("partial mask"); return emu::shfl_xor(v, m); }
inline unsigned __shfl_xor_sync(unsigned mask, unsigned v, int m, int = 32) { if (mask != 0xffffffffu) emu::fail("partial mask"); return emu::shfl_xor(v, m); }
inline unsigned __ballot_sync(unsigned mask, int pred) {
  emu::warp_sync_full(mask);
  const int w = emu::warp(), l = emu::lane();
  emu::blk->slot[w * 32 + l] = pred ? 1 : 0;
  emu::warp_sync_full(mask);
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= (emu::blk->slot[w * 32 + i] ? 1u : 0u) << i;
  emu::warp_sync_full(mask);
  return r;
}
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }

namespace emu {

struct Cfg {
  dim3 g, b;
  Cfg(dim3 g_, dim3 b_, size_t = 0, cudaStream_t = 0) : g(g_), b(b_) {}
};

inline std::map<std::string, long> launch_count;

template <class A>
void check_arg(const A& a, int i) {
  if constexpr (std::is_pointer_v<A>) {
    if (a != nullptr && !is_device((const void*)a)) {
      std::fprintf(stderr, "EMU ERROR in %s: pointer argument %d is not device memory\n", cur_kernel, i);
      std::abort();
    }
  }
}

template <class... P, class... A>
void launch_named(const char* name, Cfg c, void (*k)(P...), A&&... a) {
  static_assert(sizeof...(P) == sizeof...(A), "argument count");
  std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...);
  cur_kernel = name;
  {
    int i = 0;
    std::apply([&](const auto&... x) { (check_arg(x, i++), ...); }, args);
  }
  launch_count[name]++;
  const int nt = (int)(c.b.x * c.b.y * c.b.z);
  if (nt <= 0 || nt > 1024) fail("bad block size");
  if (c.g.x == 0 || c.g.y == 0 || c.g.z == 0) fail("empty grid (cudaErrorInvalidConfiguration)");
  if (c.g.y > 65535 || c.g.z > 65535) fail("grid y/z over 65535");
  Block B;
  B.nthreads = nt;
  B.nwarps = (nt + 31) / 32;
  B.wbar = std::vector<Bar>(B.nwarps);
  B.slot.assign((size_t)B.nwarps * 32, 0);
  B.wexited.assign(B.nwarps, 0);
  blk = &B;
  Bar between;  // end of a block: everyone (exited or not) meets here
  between.reset(nt);
  auto reset_block = [&] {
    B.bar.reset(nt);
    for (int w = 0; w < B.nwarps; ++w) B.wbar[w].reset(std::min(32, nt - 32 * w)), B.wexited[w] = 0;
    B.exited = 0;
  };
  reset_block();
  const long nblocks = (long)c.g.x * c.g.y * c.g.z;
  if (fiber_mode) {
    struct Fiber { ucontext_t ctx; std::vector<char> stack; bool done; int t; };
    static std::vector<Fiber> fibers;
    if ((int)fibers.size() < nt) fibers.resize(nt);
    static std::function<void(int)> body;
    static Fiber* cur = nullptr;
    body = [&](int t) {
      std::apply(k, args);
      B.wexited[t >> 5]++;
      B.exited++;
      B.wbar[t >> 5].drop();
      B.bar.drop();
      ++progress;
    };
    for (long bi = 0; bi < nblocks; ++bi) {
      reset_block();
      blockIdx = uint3{(unsigned)(bi % c.g.x), (unsigned)(bi / c.g.x % c.g.y), (unsigned)(bi / ((long)c.g.x * c.g.y))};
      blockDim = c.b;
      gridDim = c.g;
      for (int t = 0; t < nt; ++t) {
        Fiber& f = fibers[t];
        if (f.stack.empty()) f.stack.resize(256 << 10);
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = &sched_ctx;
        f.done = false;
        f.t = t;
        makecontext(&f.ctx, (void (*)())+[] { body(cur->t); cur->done = true; }, 0);
      }
      for (;;) {
        const long p0 = progress;
        int live = 0;
        for (int t = 0; t < nt; ++t) {
          Fiber& f = fibers[t];
          if (f.done) continue;
          cur = &f;
          cur_ctx = &f.ctx;
          threadIdx = uint3{(unsigned)(t % c.b.x), (unsigned)(t / c.b.x % c.b.y), (unsigned)(t / (c.b.x * c.b.y))};
          swapcontext(&sched_ctx, &f.ctx);
          live += !f.done;
        }
        if (!live) break;
        if (progress == p0) fail("deadlock: threads wait at barriers that can never complete");
      }
    }
    blk = nullptr;
    return;
  }
  std::vector<std::thread> th;
  th.reserve(nt);
  for (int t = 0; t < nt; ++t)
    th.emplace_back([&, t] {
      threadIdx = uint3{(unsigned)(t % c.b.x), (unsigned)(t / c.b.x % c.b.y), (unsigned)(t / (c.b.x * c.b.y))};
      blockDim = c.b;
      gridDim = c.g;
      for (long bi = 0; bi < nblocks; ++bi) {
        blockIdx = uint3{(unsigned)(bi % c.g.x), (unsigned)(bi / c.g.x % c.g.y), (unsigned)(bi / ((long)c.g.x * c.g.y))};
        std::apply(k, args);
        {
          std::lock_guard<std::mutex> l(B.wbar[t >> 5].mu);
          B.wexited[t >> 5]++;
        }
        B.exited++;
        B.wbar[t >> 5].drop();
        B.bar.drop();
        between.wait();
        if (t == 0) reset_block();
        between.wait();
      }
    });
  for (auto& x : th) x.join();
  blk = nullptr;
}

}  // namespace emu

