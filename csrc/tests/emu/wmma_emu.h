// CPU emulation of the CUDA features flash.cuh uses (included ahead of the generated flash_emu.h):
// one std::thread per CUDA thread of a 128-thread block, std::barrier for __syncthreads and
// __syncwarp, shuffles through a per-warp slot array, cp.async as deferred copies completed at
// the wait, and a WMMA stand-in in which every lane holds the whole 16x16 tile. WMMA leaves its
// register layout unspecified, and flash.cuh only reaches fragments through load / store /
// mma / fill, so a stand-in with a layout of its own exercises the same contract; what it
// checks on the way is what the hardware requires: 32-byte aligned pointers, an ldm that is a
// multiple of 16 bytes, and tiles inside the block's shared memory.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#undef __global__
#define __global__
#define __launch_bounds__(...)
#ifndef __noinline__
#define __noinline__ __attribute__((noinline))
#endif
#ifndef __device__
#define __device__
#endif
#ifndef __forceinline__
#define __forceinline__ inline
#endif

namespace emu {

constexpr unsigned kBlockThreads = 128;  // flash::kThreads, checked by the tests
constexpr unsigned kWarps = kBlockThreads / 32;

inline unsigned char* smem = nullptr;
inline size_t smem_bytes = 0;
inline std::barrier<>* block_bar = nullptr;
inline std::barrier<>* warp_bar[kWarps] = {};
inline float shfl_slot[kWarps][32];

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "EMU ERROR: %s\n", what);
  std::abort();
}

inline void check_smem(const void* p, size_t bytes) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  if (c < smem || c + bytes > smem + smem_bytes) fail("access outside the block's shared memory");
}

// cp.async: the copies of a thread are queued per commit group and done by cp_async_wait<N>,
// which leaves the newest N groups in flight, so a read of the tile before its wait sees the
// poison (or the previous tile) rather than the data.
struct Copy {
  void* dst;
  const void* src;
  bool valid;
};
inline thread_local std::vector<Copy> pending;
inline thread_local std::vector<std::vector<Copy>> groups;

inline void cp_async16(void* dst, const void* src, bool valid) {
  if ((reinterpret_cast<uintptr_t>(src) & 15) || (reinterpret_cast<uintptr_t>(dst) & 15)) fail("cp.async misaligned");
  check_smem(dst, 16);
  pending.push_back({dst, src, valid});
}
inline void cp_async_commit() {
  groups.push_back(std::move(pending));
  pending.clear();
}
template <int N>
inline void cp_async_wait() {
  while (groups.size() > (size_t)N) {
    for (const Copy& c : groups.front()) {
      if (c.valid) std::memcpy(c.dst, c.src, 16);
      else std::memset(c.dst, 0, 16);
    }
    groups.erase(groups.begin());
  }
}

}  // namespace emu

inline thread_local uint3 threadIdx, blockIdx;
inline void __syncthreads() { emu::block_bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_bar[threadIdx.x >> 5]->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int m) {
  const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  emu::shfl_slot[w][l] = v;
  __syncwarp();
  const float r = emu::shfl_slot[w][l ^ m];
  __syncwarp();
  return r;
}
inline float __int_as_float(int x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline float __int_as_float(unsigned x) { return __int_as_float((int)x); }

namespace emu {

// Runs kernel() for every block of grid with kBlockThreads threads; the dynamic shared memory is
// fresh per block and poisoned with 0xFF (NaN as floats) so a read before a write shows up.
inline long blocks_run = 0;
inline void launch(const std::function<void()>& kernel, dim3 grid, size_t smem_size) {
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        smem = static_cast<unsigned char*>(::operator new(smem_size, std::align_val_t(256)));
        std::memset(smem, 0xff, smem_size);
        smem_bytes = smem_size;
        std::barrier<> block(kBlockThreads), w0(32), w1(32), w2(32), w3(32);
        static_assert(kWarps == 4, "one barrier per warp above");
        block_bar = &block;
        warp_bar[0] = &w0, warp_bar[1] = &w1, warp_bar[2] = &w2, warp_bar[3] = &w3;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < kBlockThreads; ++t)
          threads.emplace_back([&, t] {
            threadIdx = make_uint3(t, 0, 0);
            blockIdx = make_uint3(x, y, z);
            kernel();
            if (!pending.empty() || !groups.empty()) fail("cp.async copies never waited for");
          });
        for (auto& t : threads) t.join();
        ::operator delete(smem, std::align_val_t(256));
        ++blocks_run;
      }
}

}  // namespace emu

namespace nvcuda {
namespace wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "flash.cuh uses 16x16x16 tiles only");
  float v[16][16];
};

inline float to_float(__half h) { return __half2float(h); }
inline float to_float(__nv_bfloat16 h) { return __bfloat162float(h); }
inline float to_float(float f) { return f; }

template <class T>
inline void check_tile(const T* p, unsigned ldm) {
  if (reinterpret_cast<uintptr_t>(p) & 31) emu::fail("WMMA pointer not 32-byte aligned");
  if ((ldm * sizeof(T)) % 16) emu::fail("WMMA ldm not a multiple of 16 bytes");
  emu::check_smem(p, ((size_t)15 * ldm + 16) * sizeof(T));
}

template <class F>
inline void fill_fragment(F& f, float x) {
  for (auto& row : f.v)
    for (auto& e : row) e = x;
}

template <class Use, class T>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, row_major>& f, const T* p, unsigned ldm) {
  check_tile(p, ldm);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) f.v[i][j] = to_float(p[i * ldm + j]);
}
template <class Use, class T>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, col_major>& f, const T* p, unsigned ldm) {
  check_tile(p, ldm);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) f.v[i][j] = to_float(p[j * ldm + i]);
}

template <class A, class B>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const A& a, const B& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
  float r[16][16];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float s = c.v[i][j];
      for (int k = 0; k < 16; ++k) s += a.v[i][k] * b.v[k][j];
      r[i][j] = s;
    }
  std::memcpy(d.v, r, sizeof r);
}

// Every lane holds the whole tile, so lane 0 alone writes it (the other lanes would write the same
// values; a real store is spread over the warp, and readers must __syncwarp either way).
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t layout) {
  if (layout != mem_row_major) emu::fail("WMMA store: only mem_row_major is emulated");
  check_tile(p, ldm);
  if ((threadIdx.x & 31) == 0)
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j) p[i * ldm + j] = f.v[i][j];
}

}  // namespace wmma
}  // namespace nvcuda

// ldmatrix and mma.sync.m16n8k16 (csrc/cuda/mma.cuh) with the register layouts the PTX ISA
// specifies: each lane posts its operand (an address, or its fragment registers) to the warp's
// slots, and after a warp barrier builds its own result from all 32 lanes' posts, so a kernel that
// assumes a wrong layout computes wrong numbers here as it would on a card.
namespace emu {

inline const unsigned char* addr_slot[kWarps][32];
inline unsigned frag_slot[kWarps][32][6];

inline void ldmatrix_x4(unsigned (&r)[4], const void* p, bool trans) {
  const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  if (reinterpret_cast<uintptr_t>(p) & 15) fail("ldmatrix row address not 16-byte aligned");
  check_smem(p, 16);
  addr_slot[w][l] = static_cast<const unsigned char*>(p);
  __syncwarp();
  for (int i = 0; i < 4; ++i) {
    uint16_t lo, hi;
    if (!trans) {  // row l / 4 of matrix i, elements 2(l % 4) and 2(l % 4) + 1
      std::memcpy(&lo, addr_slot[w][8 * i + l / 4] + 4 * (l % 4), 2);
      std::memcpy(&hi, addr_slot[w][8 * i + l / 4] + 4 * (l % 4) + 2, 2);
    } else {  // column l / 4 of matrix i, rows 2(l % 4) and 2(l % 4) + 1
      std::memcpy(&lo, addr_slot[w][8 * i + 2 * (l % 4)] + 2 * (l / 4), 2);
      std::memcpy(&hi, addr_slot[w][8 * i + 2 * (l % 4) + 1] + 2 * (l / 4), 2);
    }
    r[i] = (unsigned)lo | ((unsigned)hi << 16);
  }
  __syncwarp();
}

template <class T>
inline float half_bits(unsigned bits) {
  __half_raw r;
  r.x = (unsigned short)bits;
  if constexpr (std::is_same_v<T, __half>) return __half2float(__half(r));
  __nv_bfloat16_raw br;
  br.x = r.x;
  return __bfloat162float(__nv_bfloat16(br));
}

template <class T>
inline void mma_16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  for (int i = 0; i < 4; ++i) frag_slot[w][l][i] = a[i];
  frag_slot[w][l][4] = b0;
  frag_slot[w][l][5] = b1;
  __syncwarp();
  float A[16][16], B[16][8];
  for (int x = 0; x < 32; ++x) {
    const int g = x / 4, t = x % 4;
    const unsigned* f = frag_slot[w][x];
    for (int e = 0; e < 2; ++e) {
      const int sh = 16 * e;
      A[g][2 * t + e] = half_bits<T>(f[0] >> sh);
      A[g + 8][2 * t + e] = half_bits<T>(f[1] >> sh);
      A[g][2 * t + 8 + e] = half_bits<T>(f[2] >> sh);
      A[g + 8][2 * t + 8 + e] = half_bits<T>(f[3] >> sh);
      B[2 * t + e][g] = half_bits<T>(f[4] >> sh);
      B[2 * t + 8 + e][g] = half_bits<T>(f[5] >> sh);
    }
  }
  __syncwarp();
  const int g = l / 4, t = l % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + (i % 2);
    float s = c[i];
    for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
    c[i] = s;
  }
}

}  // namespace emu

namespace toma {
namespace flash {
inline void ldmatrix_x4(unsigned (&r)[4], const void* p) { emu::ldmatrix_x4(r, p, false); }
inline void ldmatrix_x4_trans(unsigned (&r)[4], const void* p) { emu::ldmatrix_x4(r, p, true); }
template <class T>
inline void mma_16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  emu::mma_16816<T>(c, a, b0, b1);
}
}  // namespace flash
}  // namespace toma
