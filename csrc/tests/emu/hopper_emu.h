// CPU emulation of the Hopper (sm_90a) features csrc/cuda/hopper.cuh wraps, implemented from the
// PTX ISA's definitions and independently of how flash_sm90.cuh uses them. It replaces hopper.cuh
// (gen_sm90.py drops the include) and is the whole runtime of emu_sm90 / emu_hopper_isa:
//
//  - threads are fibers (ucontext) on one OS thread, run in index order and switched only where a
//    thread waits (barriers, shuffles, mbarrier try_wait, wgmma wait_group). The producer warp
//    therefore runs as far ahead as it is allowed; a wait that can never complete is reported as a
//    deadlock with what every thread waits on.
//  - shared memory: the dynamic buffer sits at shared-window address kSharedBase, 128-byte but not
//    1024-byte aligned, so a kernel must align its swizzled tiles itself. There are two views: the
//    generic one (ordinary loads and stores) and the async proxy's (what wgmma reads). Bulk tensor
//    copies write both; fence.proxy.async copies the generic view into the async one. A wgmma
//    operand written by ordinary stores without the fence is therefore read stale.
//  - mbarrier: phase, pending arrivals, tx-count, as the ISA defines them; try_wait.parity(P) is
//    true once the phase of parity P completed (on a fresh barrier, parity 1 passes at once).
//    Arrivals past the expected count and tx-counts that can never return to zero are errors.
//  - cp.async.bulk.tensor: tile mode, ranks 1..5, the tensor map's box, strides, element size, zero
//    fill out of bounds and the 32/64/128-byte swizzles. A copy lands only when some thread waits
//    on its mbarrier (as late as the hardware may land it), so a read without the wait sees poison.
//  - wgmma.mma_async m64nNk16 (N = 8..256), f16 / bf16 inputs, f32 accumulators, A from shared
//    memory (descriptor) or registers, B from shared memory (descriptor, K- or MN-major), scale-d.
//    The operation runs when all 128 threads of the warpgroup have issued it and one of them waits
//    for its group (wait_group N leaves the newest N groups pending). Until then the accumulator
//    registers hold NaN (a read before the wait shows) and a write to them is lost (as on a card);
//    A registers and shared memory are read at that time, not at issue. A thread must execute
//    wgmma.fence after its last wait before issuing again (the ISA requires it where registers were
//    touched in between, which is every time in these kernels).
//  - shared-memory matrix descriptors: start address, LBO, SBO (bits 0-13, 16-29, 32-45, in 16-byte
//    units), base offset (bits 49-51) and layout type (bits 62-63: 0 interleave, 1 = 128B, 2 = 64B,
//    3 = 32B swizzle) decoded per the canonical layouts; a non-zero base offset, or a swizzled start
//    address off its pattern's row phase, is refused as not modelled.
//  - setmaxnreg: checked (warpgroup-uniform, 24..256 in steps of 8, the register file not
//    over-committed), otherwise a no-op. Named barriers (bar.sync / bar.arrive with a count).
#pragma once
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <string>
#include <type_traits>
#include <vector>
#include <ucontext.h>

#undef __global__
#define __global__
#define __launch_bounds__(...)
#undef __grid_constant__
#define __grid_constant__
#ifndef __noinline__
#define __noinline__ __attribute__((noinline))
#endif
#ifndef __device__
#define __device__
#endif
#ifndef __forceinline__
#define __forceinline__ inline
#endif

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

namespace emu {

constexpr uint32_t kSharedBase = 0x480;  // shared-window address of the dynamic buffer's byte 0
constexpr int kMaxThreads = 1024;

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "EMU ERROR: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// ---- fibers ------------------------------------------------------------------------------------

inline ucontext_t sched_ctx;
inline long progress = 0;
inline int cur_t = 0;  // the running thread
struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  bool done = false;
  const char* waiting = "";  // what it last waited on (deadlock reports)
};
inline std::vector<Fiber> fibers;
inline void yield(const char* what) {
  fibers[cur_t].waiting = what;
  swapcontext(&fibers[cur_t].ctx, &sched_ctx);
}

// A barrier generation: `count` arrivals complete it.
struct Gate {
  int expected = 0, arrived = 0;
  long gen = 0;
  void arrive(int count, const char* what) {
    if (count <= 0) fail(std::string(what) + ": thread count must be positive");
    if (arrived == 0) expected = count;
    else if (count != expected) fail(std::string(what) + ": threads disagree on the barrier's count");
    if (++arrived == expected) arrived = 0, ++gen, ++progress;
  }
  void sync(int count, const char* what) {
    const long g = gen;
    arrive(count, what);
    while (gen == g) yield(what);
  }
};

// ---- block state -------------------------------------------------------------------------------

struct Copy {  // a bulk tensor copy in flight
  uint32_t dst;
  CUtensorMap map;
  int c[5];
};
struct Mbar {
  int expected = 0, pending = 0;
  long tx = 0;
  unsigned phase = 0;
  std::vector<Copy> copies;
};
struct WgOp {  // one wgmma.mma_async of a warpgroup
  bool rs = false, trans_b = false, bf16 = false;
  int n = 0, scale_d = 0, group = -1, issued = 0;
  bool done = false;
  uint64_t da = 0, db = 0;
  float* d[128] = {};
  const unsigned* a[128] = {};
  bool chain[128] = {};
  std::vector<float> c[128];
};
struct ThreadWg {
  int issued = 0, committed = 0;
  bool fenced = false;
};
struct Warpgroup {
  std::vector<WgOp> ops;
  int maxnreg = -1, maxnreg_calls = 0;
};

inline unsigned char* smem_buf = nullptr;  // generic view
inline std::vector<unsigned char> async_view;
inline size_t smem_bytes = 0;
inline int nthreads = 0;
inline Gate named[16];
inline std::vector<Gate> warp_gate;
inline std::vector<uint64_t> warp_slot;
inline std::map<uint32_t, Mbar> mbars;
inline std::vector<Warpgroup> wgs;
inline std::vector<ThreadWg> twg;
inline long blocks_run = 0;

inline unsigned char* smem() { return smem_buf; }

inline uint32_t shared_addr(const void* p) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  if (c < smem_buf || c >= smem_buf + smem_bytes) fail("address outside the block's shared memory");
  return kSharedBase + (uint32_t)(c - smem_buf);
}
inline size_t smem_off(uint32_t a, size_t bytes, const char* what) {
  if (a < kSharedBase || a - kSharedBase + bytes > smem_bytes)
    fail(std::string(what) + ": shared address outside the block's shared memory");
  return a - kSharedBase;
}

}  // namespace emu

inline size_t __cvta_generic_to_shared(const void* p) { return emu::shared_addr(p); }

// ---- warps ---------------------------------------------------------------------------------------

inline void __syncthreads() { emu::named[0].sync(emu::nthreads, "__syncthreads"); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) emu::fail("__syncwarp with a partial mask");
  emu::warp_gate[emu::cur_t >> 5].sync(32, "__syncwarp");
}
template <class V>
inline V emu_shfl_xor(V v, int m) {
  static_assert(sizeof(V) <= 8, "");
  const int w = emu::cur_t >> 5, l = emu::cur_t & 31;
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof v);
  emu::warp_slot[w * 32 + l] = u;
  __syncwarp();
  const uint64_t r = emu::warp_slot[w * 32 + (l ^ m)];
  __syncwarp();
  V o;
  std::memcpy(&o, &r, sizeof o);
  return o;
}
inline float __shfl_xor_sync(unsigned mask, float v, int m, int = 32) {
  if (mask != 0xffffffffu) emu::fail("shuffle with a partial mask");
  return emu_shfl_xor(v, m);
}
inline unsigned __shfl_xor_sync(unsigned mask, unsigned v, int m, int = 32) {
  if (mask != 0xffffffffu) emu::fail("shuffle with a partial mask");
  return emu_shfl_xor(v, m);
}
inline int __shfl_xor_sync(unsigned mask, int v, int m, int = 32) {
  if (mask != 0xffffffffu) emu::fail("shuffle with a partial mask");
  return emu_shfl_xor(v, m);
}
inline float __int_as_float(int x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline float __int_as_float(unsigned x) { return __int_as_float((int)x); }
inline void __trap() { emu::fail("__trap"); }

namespace emu {

// ---- launch --------------------------------------------------------------------------------------

// Runs kernel() for every block of grid with `threads` threads and smem_size bytes of dynamic
// shared memory, fresh per block and poisoned with 0xFF (NaN as floats, fp16 and bf16) in both
// views.
inline void launch(const std::function<void()>& kernel, dim3 grid, int threads, size_t smem_size) {
  if (threads <= 0 || threads > kMaxThreads || threads % 32) fail("block size must be a multiple of 32 up to 1024");
  if (smem_size > 232448) fail("dynamic shared memory over the 227 KB a Hopper block may opt into");
  nthreads = threads;
  static std::function<void()> body;
  body = kernel;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        smem_bytes = smem_size;
        smem_buf = static_cast<unsigned char*>(::operator new(smem_size + 1, std::align_val_t(1024)));
        std::memset(smem_buf, 0xff, smem_size);
        async_view.assign(smem_size, 0xff);
        for (auto& g : named) g = Gate{};
        warp_gate.assign(threads / 32, Gate{});
        warp_slot.assign(threads, 0);
        mbars.clear();
        wgs.assign((threads + 127) / 128, Warpgroup{});
        twg.assign(threads, ThreadWg{});
        blockIdx = make_uint3(x, y, z);
        blockDim = dim3(threads, 1, 1);
        gridDim = grid;
        if ((int)fibers.size() < threads) fibers.resize(threads);
        for (int t = 0; t < threads; ++t) {
          Fiber& f = fibers[t];
          if (f.stack.empty()) f.stack.resize(512 << 10);
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.data();
          f.ctx.uc_stack.ss_size = f.stack.size();
          f.ctx.uc_link = &sched_ctx;
          f.done = false;
          f.waiting = "";
          makecontext(&f.ctx, (void (*)()) + [] {
            body();
            fibers[cur_t].done = true;
            ++progress;
          }, 0);
        }
        for (;;) {
          const long p0 = progress;
          int live = 0;
          for (int t = 0; t < threads; ++t) {
            if (fibers[t].done) continue;
            cur_t = t;
            threadIdx = make_uint3(t, 0, 0);
            swapcontext(&sched_ctx, &fibers[t].ctx);
            live += !fibers[t].done;
          }
          if (!live) break;
          if (progress == p0) {
            std::string m = "deadlock: no thread can go on;";
            for (int t = 0; t < threads; t += 32)
              if (!fibers[t].done) m += " warp " + std::to_string(t / 32) + " waits on " + fibers[t].waiting + ";";
            fail(m);
          }
        }
        for (auto& [a, b] : mbars)
          if (!b.copies.empty()) fail("a bulk tensor copy was never waited for (its mbarrier never observed)");
        for (auto& w : wgs)
          for (auto& op : w.ops)
            if (!op.done) fail("a wgmma was never waited for (wgmma.wait_group)");
        for (int i = 1; i < 16; ++i)
          if (named[i].arrived) fail("named barrier " + std::to_string(i) + " left with arrivals pending at exit");
        ::operator delete(smem_buf, std::align_val_t(1024));
        smem_buf = nullptr;
        ++blocks_run;
      }
}

// ---- mbarrier ------------------------------------------------------------------------------------

inline Mbar& mbar_at(uint32_t a, const char* what) {
  smem_off(a, 8, what);
  if (a & 7) fail(std::string(what) + ": mbarrier not 8-byte aligned");
  auto it = mbars.find(a);
  if (it == mbars.end()) fail(std::string(what) + ": mbarrier used before mbarrier.init");
  return it->second;
}
inline void mbar_check_phase(Mbar& b) {
  if (b.pending == 0 && b.tx == 0) {
    ++b.phase;
    b.pending = b.expected;
    ++progress;
  } else if (b.pending == 0 && b.tx < 0) {
    fail("mbarrier: more bytes completed than were expected (expect_tx too small): the phase can never complete");
  }
}

inline void mbar_flush(Mbar& b);  // after the bulk copies below

}  // namespace emu

// ---- the instructions, under the names hopper.cuh gives them -------------------------------------

namespace toma {
namespace sm90 {

inline uint32_t smem_u32(const void* p) { return emu::shared_addr(p); }
template <class R, int M>
inline void reg_fence(R (&)[M]) {}

inline void mbar_init(uint32_t bar, unsigned count) {
  emu::smem_off(bar, 8, "mbarrier.init");
  if (bar & 7) emu::fail("mbarrier.init: not 8-byte aligned");
  if (count == 0 || count > (1u << 20) - 1) emu::fail("mbarrier.init: count out of range");
  emu::Mbar& b = emu::mbars[bar];
  if (!b.copies.empty()) emu::fail("mbarrier.init over a barrier with copies in flight");
  b = emu::Mbar{};
  b.expected = b.pending = (int)count;
  ++emu::progress;
}
inline void fence_barrier_init() {}
inline void mbar_arrive(uint32_t bar) {
  emu::Mbar& b = emu::mbar_at(bar, "mbarrier.arrive");
  if (--b.pending < 0) emu::fail("mbarrier.arrive: more arrivals than the barrier's count in one phase");
  ++emu::progress;
  emu::mbar_check_phase(b);
}
inline void mbar_arrive_expect_tx(uint32_t bar, unsigned bytes) {
  emu::Mbar& b = emu::mbar_at(bar, "mbarrier.arrive.expect_tx");
  b.tx += bytes;
  mbar_arrive(bar);
}
inline bool mbar_try_wait(uint32_t bar, unsigned parity) {
  emu::Mbar& b = emu::mbar_at(bar, "mbarrier.try_wait");
  if ((b.phase & 1u) != (parity & 1u)) {
    ++emu::progress;
    return true;
  }
  emu::mbar_flush(b);  // the copies this barrier tracks land now, at the latest
  if ((b.phase & 1u) != (parity & 1u)) {
    ++emu::progress;
    return true;
  }
  emu::yield("mbarrier.try_wait");
  return false;
}
inline void mbar_wait(uint32_t bar, unsigned parity) {
  while (!mbar_try_wait(bar, parity)) {
  }
}

inline void tma_load_3d(uint32_t dst, const CUtensorMap* map, int c0, int c1, int c2, uint32_t bar);
inline void fence_proxy_async() {
  std::memcpy(emu::async_view.data(), emu::smem_buf, emu::smem_bytes);
}

inline void named_bar_sync(int id, int threads) {
  if (id < 0 || id > 15) emu::fail("bar.sync: barrier id out of range");
  if (threads % 32) emu::fail("bar.sync: thread count not a multiple of 32");
  emu::named[id].sync(threads, "bar.sync");
}
inline void named_bar_arrive(int id, int threads) {
  if (id < 0 || id > 15) emu::fail("bar.arrive: barrier id out of range");
  if (threads % 32) emu::fail("bar.arrive: thread count not a multiple of 32");
  emu::named[id].arrive(threads, "bar.arrive");
}

}  // namespace sm90
}  // namespace toma

namespace emu {

// ---- tensor maps and bulk tensor copies -------------------------------------------------------

// Our own encoding of a tiled tensor map into CUtensorMap's 128 opaque bytes.
struct MapFields {
  uint64_t magic;
  uint64_t addr;
  uint64_t stride[5];  // bytes; stride[0] = element size
  uint64_t dim[5];
  uint16_t box[5];
  uint8_t rank, esize, swizzle, interleave, estride[5];
};
static_assert(sizeof(MapFields) <= sizeof(CUtensorMap), "fits the opaque map");
constexpr uint64_t kMapMagic = 0x70616d74656d7563ull;

inline int dtype_bytes(CUtensorMapDataType t) {
  switch (t) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8: return 1;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16: return 2;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32: return 4;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64:
    case CU_TENSOR_MAP_DATA_TYPE_INT64:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT64: return 8;
    default: return 0;
  }
}

// cuTensorMapEncodeTiled with the driver's documented argument checks (CUDA_ERROR_INVALID_VALUE).
inline CUresult encode_tiled(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank, void* addr,
                             const cuuint64_t* dim, const cuuint64_t* strides, const cuuint32_t* box,
                             const cuuint32_t* estrides, CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                             CUtensorMapL2promotion, CUtensorMapFloatOOBfill) {
  const int es = dtype_bytes(type);
  if (!map || (reinterpret_cast<uintptr_t>(map) & 63) || es == 0 || rank < 1 || rank > 5) return CUDA_ERROR_INVALID_VALUE;
  if (reinterpret_cast<uintptr_t>(addr) & 15) return CUDA_ERROR_INVALID_VALUE;
  if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE) return CUDA_ERROR_NOT_SUPPORTED;  // not emulated
  if (swizzle > CU_TENSOR_MAP_SWIZZLE_128B) return CUDA_ERROR_NOT_SUPPORTED;           // not emulated
  MapFields f{};
  f.magic = kMapMagic;
  f.addr = reinterpret_cast<uint64_t>(addr);
  f.rank = (uint8_t)rank;
  f.esize = (uint8_t)es;
  f.swizzle = (uint8_t)swizzle;
  f.interleave = (uint8_t)interleave;
  f.stride[0] = es;
  for (uint32_t i = 0; i < rank; ++i) {
    if (dim[i] == 0 || dim[i] > (1ull << 32)) return CUDA_ERROR_INVALID_VALUE;
    if (box[i] == 0 || box[i] > 256) return CUDA_ERROR_INVALID_VALUE;
    if (estrides[i] == 0 || estrides[i] > 8) return CUDA_ERROR_INVALID_VALUE;
    if (i > 0 && estrides[i] != 1) return CUDA_ERROR_NOT_SUPPORTED;  // not emulated
    f.dim[i] = dim[i];
    f.box[i] = (uint16_t)box[i];
    f.estride[i] = (uint8_t)estrides[i];
    if (i + 1 < rank) {
      if (strides[i] % 16 || strides[i] >= (1ull << 40)) return CUDA_ERROR_INVALID_VALUE;
      f.stride[i + 1] = strides[i];
    }
  }
  if ((box[0] * es) % 16) return CUDA_ERROR_INVALID_VALUE;
  const uint32_t span = swizzle == CU_TENSOR_MAP_SWIZZLE_32B ? 32 : swizzle == CU_TENSOR_MAP_SWIZZLE_64B ? 64 : 128;
  if (swizzle != CU_TENSOR_MAP_SWIZZLE_NONE && box[0] * es > span) return CUDA_ERROR_INVALID_VALUE;
  std::memset(map, 0, sizeof *map);
  std::memcpy(map, &f, sizeof f);
  return CUDA_SUCCESS;
}

// The byte address a swizzle mode gives the 16-byte chunk of shared address a: the chunk index
// bits [4, 4 + b) XOR the bits [7, 7 + b) (b = 1, 2, 3 for the 32, 64, 128-byte patterns).
inline uint32_t swizzle_addr(uint32_t a, int bits) {
  if (bits == 0) return a;
  const uint32_t mask = (1u << bits) - 1;
  return a ^ (((a >> 7) & mask) << 4);
}
inline int tma_swizzle_bits(uint32_t sw) {
  return sw == CU_TENSOR_MAP_SWIZZLE_32B ? 1 : sw == CU_TENSOR_MAP_SWIZZLE_64B ? 2 : sw == CU_TENSOR_MAP_SWIZZLE_128B ? 3 : 0;
}

inline MapFields map_fields(const CUtensorMap& m) {
  MapFields f;
  std::memcpy(&f, &m, sizeof f);
  if (f.magic != kMapMagic) fail("cp.async.bulk.tensor: not a tensor map made by cuTensorMapEncodeTiled");
  return f;
}

inline size_t box_bytes(const MapFields& f) {
  size_t n = f.esize;
  for (uint32_t i = 0; i < f.rank; ++i) n *= f.box[i];
  return n;
}

inline void tma_perform(const Copy& c) {
  const MapFields f = map_fields(c.map);
  const size_t bytes = box_bytes(f);
  const int bits = tma_swizzle_bits(f.swizzle);
  const uint32_t row_bytes = f.box[0] * f.esize;
  uint32_t idx[5] = {0, 0, 0, 0, 0};
  size_t n = 1;
  for (uint32_t i = 0; i < f.rank; ++i) n *= f.box[i];
  for (size_t e = 0; e < n; ++e) {
    size_t r = e;
    for (uint32_t i = 0; i < f.rank; ++i) idx[i] = (uint32_t)(r % f.box[i]), r /= f.box[i];
    bool in = true;
    uint64_t src = f.addr;
    for (uint32_t i = 0; i < f.rank; ++i) {
      const long long g = (long long)c.c[i] + idx[i];
      if (g < 0 || g >= (long long)f.dim[i]) in = false;
      else src += (uint64_t)g * f.stride[i];
    }
    // Packed box rows of row_bytes, then the swizzle on the shared address.
    const size_t lin = (e / f.box[0]) * row_bytes + (size_t)idx[0] * f.esize;
    const uint32_t a = swizzle_addr(c.dst + (uint32_t)lin, bits);
    const size_t off = smem_off(a, f.esize, "cp.async.bulk.tensor destination");
    unsigned char v[8] = {};
    if (in) std::memcpy(v, reinterpret_cast<const void*>(src), f.esize);
    std::memcpy(smem_buf + off, v, f.esize);
    std::memcpy(async_view.data() + off, v, f.esize);
  }
  (void)row_bytes;
}

}  // namespace emu

namespace toma {
namespace sm90 {

inline void tma_load_nd(uint32_t dst, const CUtensorMap* map, const int* c, int rank, uint32_t bar) {
  const emu::MapFields f = emu::map_fields(*map);
  if ((int)f.rank != rank) emu::fail("cp.async.bulk.tensor: the instruction's rank differs from the tensor map's");
  const int bits = emu::tma_swizzle_bits(f.swizzle);
  if (dst & 127) emu::fail("cp.async.bulk.tensor: shared destination not 128-byte aligned");
  if (bits == 3 && (dst & 1023)) emu::fail("cp.async.bulk.tensor: 128-byte swizzle needs a 1024-byte aligned destination");
  emu::smem_off(dst, emu::box_bytes(f), "cp.async.bulk.tensor destination");
  emu::Mbar& b = emu::mbar_at(bar, "cp.async.bulk.tensor mbarrier");
  emu::Copy cp{dst, *map, {0, 0, 0, 0, 0}};
  for (int i = 0; i < rank; ++i) cp.c[i] = c[i];
  b.copies.push_back(cp);
  ++emu::progress;
}
inline void tma_load_3d(uint32_t dst, const CUtensorMap* map, int c0, int c1, int c2, uint32_t bar) {
  const int c[3] = {c0, c1, c2};
  tma_load_nd(dst, map, c, 3, bar);
}
inline void tma_load_2d(uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t bar) {
  const int c[2] = {c0, c1};
  tma_load_nd(dst, map, c, 2, bar);
}

}  // namespace sm90
}  // namespace toma

namespace emu {

// The copies a barrier tracks land, in issue order, each completing its box's bytes (complete_tx),
// until the current phase completes: copies past that count towards the next phase and land later
// (as they may on a card, after the waiter has gone on).
inline void mbar_flush(Mbar& b) {
  const unsigned phase = b.phase;
  while (!b.copies.empty() && b.phase == phase) {
    const Copy c = b.copies.front();
    b.copies.erase(b.copies.begin());
    tma_perform(c);
    b.tx -= (long)box_bytes(map_fields(c.map));
    ++progress;
    mbar_check_phase(b);
  }
}

// ---- wgmma ------------------------------------------------------------------------------------

// Element (mn, k) (k < 16, 2-byte elements) of a 64- or N-row operand at descriptor desc, as a byte
// offset into the async view. K-major: mn is the row, k runs along the row; MN-major: mn runs along
// the contiguous dimension. Canonical layouts, in 16-byte units (T = 8 elements), W = 8 / 4 / 2 for
// the 128 / 64 / 32-byte swizzles:
//   K-major  interleave ((8,m),2):((1,SBO),LBO)     swizzled ((8,m),2):((W,SBO),1)
//   MN-major interleave ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))   swizzled ((T,W,m),(8,k)):((1,T,LBO),(WT,SBO))
inline size_t desc_elem(uint64_t desc, int mn, int k, bool mn_major, const char* what) {
  const uint32_t start = (uint32_t)(desc & 0x3FFF) << 4;
  const uint32_t lbo = (uint32_t)((desc >> 16) & 0x3FFF) << 4;
  const uint32_t sbo = (uint32_t)((desc >> 32) & 0x3FFF) << 4;
  const uint32_t base_off = (uint32_t)((desc >> 49) & 7);
  const uint32_t mode = (uint32_t)(desc >> 62);
  const int bits = mode == 1 ? 3 : mode == 2 ? 2 : mode == 3 ? 1 : 0;
  const uint32_t W = 1u << bits;  // 16-byte chunks per swizzled row
  if (base_off) fail(std::string(what) + ": descriptor base offset not modelled");
  if (bits && ((start >> 7) & (W - 1)))
    fail(std::string(what) + ": swizzled descriptor start inside a pattern's rows (needs a base offset; not modelled)");
  if (desc & ((3ull << 14) | (3ull << 30) | (7ull << 46) | (0x3FFull << 52)))
    fail(std::string(what) + ": reserved descriptor bits set");
  uint32_t off;
  if (!mn_major) {
    if (!bits) off = (mn % 8) * 16 + (mn / 8) * sbo + (k / 8) * lbo + (k % 8) * 2;
    else off = (mn % 8) * (W * 16) + (mn / 8) * sbo + k * 2;
  } else {
    if (!bits) off = (mn % 8) * 2 + (mn / 8) * sbo + (k % 8) * 16 + (k / 8) * lbo;
    else off = (mn % 8) * 2 + ((mn / 8) % W) * 16 + (mn / (8 * W)) * lbo + (k % 8) * (W * 16) + (k / 8) * sbo;
  }
  const uint32_t a = swizzle_addr(start + off, bits);
  return smem_off(a, 2, what);
}

inline float half_bits(uint16_t b, bool bf16) {
  if (bf16) {
    __nv_bfloat16_raw r;
    r.x = b;
    return __bfloat162float(__nv_bfloat16(r));
  }
  __half_raw r;
  r.x = b;
  return __half2float(__half(r));
}

inline void wg_execute(WgOp& op) {
  const int N = op.n;
  float A[64][16], B[256][16];
  if (op.rs) {
    // ALayout 64x16 (16-bit): thread t of warp w, g = lane / 4, q = lane % 4: register r holds
    // (16w + g + 8 (r % 2), 2q + 8 (r / 2)) and the next column, the lower column in the low half.
    for (int t = 0; t < 128; ++t) {
      const int w = t / 32, l = t % 32, g = l / 4, q = l % 4;
      for (int r = 0; r < 4; ++r)
        for (int e = 0; e < 2; ++e)
          A[16 * w + g + 8 * (r % 2)][2 * q + 8 * (r / 2) + e] = half_bits((uint16_t)(op.a[t][r] >> (16 * e)), op.bf16);
    }
  } else {
    for (int m = 0; m < 64; ++m)
      for (int k = 0; k < 16; ++k) {
        uint16_t b;
        std::memcpy(&b, async_view.data() + desc_elem(op.da, m, k, false, "wgmma A descriptor"), 2);
        A[m][k] = half_bits(b, op.bf16);
      }
  }
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < 16; ++k) {
      uint16_t b;
      std::memcpy(&b, async_view.data() + desc_elem(op.db, n, k, op.trans_b, "wgmma B descriptor"), 2);
      B[n][k] = half_bits(b, op.bf16);
    }
  // CLayout 64xN: register v = 4j + 2h + e of thread t holds (16w + g + 8h, 8j + 2q + e).
  for (int t = 0; t < 128; ++t) {
    const int w = t / 32, l = t % 32, g = l / 4, q = l % 4;
    for (int v = 0; v < N / 2; ++v) {
      const int j = v / 4, h = (v / 2) % 2, e = v % 2;
      const int m = 16 * w + g + 8 * h, n = 8 * j + 2 * q + e;
      float s = 0.f;
      for (int k = 0; k < 16; ++k) s += A[m][k] * B[n][k];
      const float c = !op.scale_d ? 0.f : op.chain[t] ? op.d[t][v] : op.c[t][v];
      op.d[t][v] = c + s;
    }
  }
  op.done = true;
  ++progress;
}

template <int N>
inline void wg_issue(float* d, const unsigned* a, uint64_t da, uint64_t db, int scale_d, bool rs, bool trans_b,
                     bool bf16) {
  static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma N: 8..256 in steps of 8");
  const int t = cur_t, wg = t / 128, i = t % 128;
  if (wg >= (int)wgs.size() || (wg + 1) * 128 > nthreads) fail("wgmma by a thread outside a whole warpgroup");
  ThreadWg& tw = twg[t];
  if (!tw.fenced) fail("wgmma.mma_async without wgmma.fence since the thread's last wait (or at start)");
  Warpgroup& W = wgs[wg];
  if (tw.issued == (int)W.ops.size()) {
    W.ops.emplace_back();
    WgOp& op = W.ops.back();
    op.rs = rs, op.trans_b = trans_b, op.bf16 = bf16, op.n = N, op.scale_d = scale_d, op.da = da, op.db = db;
    op.group = tw.committed;
  }
  WgOp& op = W.ops[tw.issued++];
  if (op.rs != rs || op.trans_b != trans_b || op.bf16 != bf16 || op.n != N || op.da != da || op.db != db ||
      (op.scale_d != 0) != (scale_d != 0) || op.group != tw.committed)
    fail("wgmma: the threads of a warpgroup issued different operations (operands, shape or commit group)");
  // A pending operation of this thread on the same registers: this one accumulates onto its result.
  bool chain = false;
  for (size_t k = 0; k + 1 < (size_t)tw.issued; ++k)
    if (!W.ops[k].done && W.ops[k].d[i] == d) chain = true;
  op.d[i] = d;
  op.a[i] = a;
  op.chain[i] = chain;
  if (!chain) op.c[i].assign(d, d + N / 2);
  for (int v = 0; v < N / 2; ++v) d[v] = std::nanf("");
  ++op.issued;
}

}  // namespace emu

namespace toma {
namespace sm90 {

inline void wgmma_fence() { emu::twg[emu::cur_t].fenced = true; }
inline void wgmma_commit() { emu::twg[emu::cur_t].committed++; }
template <int N>
inline void wgmma_wait() {
  const int t = emu::cur_t, i = t % 128;
  emu::ThreadWg& tw = emu::twg[t];
  emu::Warpgroup& W = emu::wgs[t / 128];
  const int need = tw.committed - N;  // groups [0, need) must be complete
  for (size_t k = 0; k < W.ops.size(); ++k) {
    emu::WgOp& op = W.ops[k];
    if (op.group >= need) break;
    if (op.d[i] == nullptr) emu::fail("wgmma.wait_group: the warpgroup's operations differ between threads");
    while (!op.done) {
      // Operations run in issue order, once every thread of the warpgroup has issued them.
      bool ready = true;
      for (size_t j = 0; j <= k; ++j)
        if (!W.ops[j].done && W.ops[j].issued < 128) ready = false;
      if (ready) {
        for (size_t j = 0; j <= k; ++j)
          if (!W.ops[j].done) emu::wg_execute(W.ops[j]);
      } else {
        emu::yield("wgmma.wait_group");
      }
    }
  }
  tw.fenced = false;
  ++emu::progress;
}

template <class T, int N, bool TransB>
inline void wgmma_ss(float (&d)[N / 2], uint64_t da, uint64_t db, int scale_d) {
  emu::wg_issue<N>(d, nullptr, da, db, scale_d, false, TransB, std::is_same<T, __nv_bfloat16>::value);
}
template <class T, int N, bool TransB>
inline void wgmma_rs(float (&d)[N / 2], const unsigned (&a)[4], uint64_t db, int scale_d) {
  emu::wg_issue<N>(d, a, 0, db, scale_d, true, TransB, std::is_same<T, __nv_bfloat16>::value);
}

template <int R>
inline void setmaxnreg_check(bool inc) {
  static_assert(R >= 24 && R <= 256 && R % 8 == 0, "setmaxnreg: 24..256 in steps of 8");
  emu::Warpgroup& W = emu::wgs[emu::cur_t / 128];
  const int v = inc ? R : -R;
  if (W.maxnreg_calls % 128 && W.maxnreg != v) emu::fail("setmaxnreg: threads of a warpgroup disagree");
  W.maxnreg = v;
  if (++W.maxnreg_calls % 128 == 0) {
    // A whole warpgroup has set its count: the register file (64K) must hold every warpgroup's.
    int total = 0;
    const int dflt = (65536 / emu::nthreads) & ~7;
    for (auto& w : emu::wgs) total += 128 * (w.maxnreg_calls >= 128 ? std::abs(w.maxnreg) : std::min(dflt, 255));
    if (total > 65536) emu::fail("setmaxnreg: the warpgroups' register counts exceed the register file (64K)");
  }
}
template <int R>
inline void setmaxnreg_inc() { setmaxnreg_check<R>(true); }
template <int R>
inline void setmaxnreg_dec() { setmaxnreg_check<R>(false); }

}  // namespace sm90
}  // namespace toma
