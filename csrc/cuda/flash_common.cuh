// What the attention kernels of flash.cuh (sm_80+) and flash_sm90.cuh (sm_90a) share: the
// argument structs, dtype-generic loads and stores, and the fused merge-attention-unmerge's
// prologue (the merged query tile) and epilogue (unmerge of the output tile) with the host's
// query grouping. No inline PTX here: the CPU emulation compiles this file as it is.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/common.cuh"

namespace toma {
namespace flash {

using cuda::from_f;
using cuda::to_f;

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kThreads = 128;  // the sm_80 kernels: 4 warps

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

struct Args {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  int qdt, kdt, vdt, odt;  // DType values
  int Tq, Tk, C, D;
  float sl2;          // scale * log2(e): scores are kept in log2 units and exponentiated by exp2
  const float* bias;  // [B, Tk] natural-log units, or null
  // Proportional attention without a bias array (the fused merge-attention-unmerge): the bias of
  // key j is log(max(mass[b, j - P], 1e-30)), 0 for the first mass_P keys (mass [B, Tk - mass_P]).
  // mass_bias_kernel's arithmetic, so the two agree bit for bit. Not with bias; no batch slicing.
  const float* mass = nullptr;
  int mass_P = 0;
  bool vec;           // q, k, v allow 16-byte loads (tc_attention only)
};

// merge-attention-unmerge fused into tc_mau_attention (below). The plan fields are those of
// DevicePlan (ops/cuda.h).
struct MauArgs {
  const int32_t* groups;   // [G + 1]: query group g is regions groups[g] .. groups[g + 1] - 1
  const int32_t* tokens;   // [N]
  const int32_t* offsets;  // [R + 1]
  const int32_t* k_off;    // [R + 1]
  const int64_t* a_off;    // [R + 1]
  const float* A;          // [B, a_total]
  const float* mass;       // [B, K]
  int64_t a_total;
  int P, K, T;             // T = P + N: the rows of q and out
  int prefix_blocks;       // ceil(P / query tile rows): the first blocks are plain query tiles of the prefix
  bool out_vec;            // out allows 16-byte stores
};

__device__ __forceinline__ unsigned bits_of(__half x) { return __half_as_ushort(x); }
__device__ __forceinline__ unsigned bits_of(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }

__device__ __forceinline__ float load_any(const void* p, int dt, size_t i) {
  if (dt == (int)DType::F32) return static_cast<const float*>(p)[i];
  if (dt == (int)DType::F16) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

__device__ __forceinline__ void store_any(void* p, int dt, size_t i, float v) {
  if (dt == (int)DType::F32)
    static_cast<float*>(p)[i] = v;
  else if (dt == (int)DType::F16)
    static_cast<__half*>(p)[i] = __float2half_rn(v);
  else
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
}

// Bias of key j (log2 units) for the tile held in shared memory; -inf past the last key, so the
// padding keys (zero rows of K, finite scores) get exactly zero weight.
__device__ __forceinline__ float key_bias_l2(const Args& a, int b, int j) {
  if (j >= a.Tk) return neg_inf();
  if (a.mass) {
    const int K = a.Tk - a.mass_P;
    return j < a.mass_P ? 0.f : logf(fmaxf(a.mass[(size_t)b * K + (j - a.mass_P)], 1e-30f)) * kLog2e;
  }
  return a.bias ? a.bias[(size_t)b * a.Tk + j] * kLog2e : 0.f;
}

// Eight consecutive elements of a 2-byte row, widened (16-byte load when vec).
template <class T>
__device__ __forceinline__ void load8(const T* p, bool vec, float v[8]) {
  union {
    uint4 u;
    T h[8];
  } x;
  if (vec) {
    x.u = *reinterpret_cast<const uint4*>(p);
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) x.h[e] = p[e];
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) v[e] = to_f(x.h[e]);
}

// Eight consecutive output elements (element index i a multiple of 8) in the output dtype.
__device__ __forceinline__ void store8(void* p, int dt, size_t i, const float v[8], bool vec) {
  if (vec && dt == (int)DType::F32) {
    float4* q = reinterpret_cast<float4*>(static_cast<float*>(p) + i);
    q[0] = make_float4(v[0], v[1], v[2], v[3]);
    q[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else if (vec && dt == (int)DType::F16) {
    union { uint4 u; __half h[8]; } x;
#pragma unroll
    for (int e = 0; e < 8; ++e) x.h[e] = __float2half_rn(v[e]);
    *reinterpret_cast<uint4*>(static_cast<__half*>(p) + i) = x.u;
  } else if (vec) {
    union { uint4 u; __nv_bfloat16 h[8]; } x;
#pragma unroll
    for (int e = 0; e < 8; ++e) x.h[e] = __float2bfloat16_rn(v[e]);
    *reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(p) + i) = x.u;
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) store_any(p, dt, i + e, v[e]);
  }
}

// The merged query tile of a group (fused path): row i is merged token j0 + i of region
// row_reg[i] (-1: past the group, a zero row). The arithmetic is merge_kernel's (merge.cu) in the
// same order, so the tile is bit for bit the merged q the unfused path would have loaded. Out of
// line and with scalar arguments for the reason given at unmerge_tile. qb: q at row P, column
// col0 of the block's batch element; Ab, mass: that element's weights and masses.
// NT threads (tid in [0, NT)) share the work. kSwizzle128: the tile is in the layout of
// q_tile_offset (flash_sm90.cuh's wgmma operand) instead of rows of D + 8.
template <int D, int BM, bool kSwizzle128>
__device__ __forceinline__ int q_tile_offset(int i, int c) {
  if constexpr (kSwizzle128) {
    // 64-column atoms of BM rows of 128 bytes; the 16-byte chunk c % 8 of row i sits at chunk
    // (c % 8) ^ (i % 8) (the 128-byte swizzle; the tile starts 1024-byte aligned).
    return (c >> 3) * (BM * 64) + i * 64 + (((c & 7) ^ (i & 7)) << 3);
  } else {
    return i * (D + 8) + c * 8;
  }
}

template <class T, int D, int BM, int NT = kThreads, bool kSwizzle128 = false>
__device__ __noinline__ void gather_merged_q(T* Qs, const int* row_reg, const T* qb, int C, bool vec,
                                             const int32_t* tokens, const int32_t* offsets, const int32_t* k_off,
                                             const int64_t* a_off, const float* Ab, const float* mass, int j0,
                                             int tid) {
  constexpr int kChunks = D / 8;
  static_assert((BM * kChunks) % NT == 0, "whole iterations");
#pragma unroll 1
  for (int idx = tid; idx < BM * kChunks; idx += NT) {
    const int i = idx / kChunks, c = idx % kChunks, r = row_reg[i];
    float acc[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = 0.f;
    if (r >= 0) {
      const int off = offsets[r], n = offsets[r + 1] - off, j = j0 + i;
      const float* const w = Ab + a_off[r] + (size_t)(j - k_off[r]) * n;
      const float mj = mass[j];
      // Four sources at a time, their loads issued before any is used: one dependent load per
      // source left the prologue waiting out a memory latency per source. The sums keep the
      // source order (and skip zero weights), so the tile is still merge_kernel's bit for bit.
      int s = 0;
#pragma unroll 1
      for (; s + 4 <= n; s += 4) {
        float wv[4], v[4][8];
#pragma unroll
        for (int u = 0; u < 4; ++u) wv[u] = w[s + u];
#pragma unroll
        for (int u = 0; u < 4; ++u)
          if (wv[u] != 0.f) load8<T>(qb + (size_t)tokens[off + s + u] * C + c * 8, vec, v[u]);
#pragma unroll
        for (int u = 0; u < 4; ++u)
          if (wv[u] != 0.f) {
            const float wm = wv[u] / mj;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[e] += wm * v[u][e];
          }
      }
#pragma unroll 1
      for (; s < n; ++s) {
        const float wv = w[s];
        if (wv == 0.f) continue;
        const float wm = wv / mj;
        float v[8];
        load8<T>(qb + (size_t)tokens[off + s] * C + c * 8, vec, v);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] += wm * v[e];
      }
    }
    union {
      uint4 u;
      T h[8];
    } x;
#pragma unroll
    for (int e = 0; e < 8; ++e) x.h[e] = from_f<T>(acc[e]);
    *reinterpret_cast<uint4*>(Qs + q_tile_offset<D, BM, kSwizzle128>(i, c)) = x.u;
  }
}

// The fused kernel's epilogue: out[P + tokens[slot]] = sum_d A_r[d, s] O[row of d] for every
// source slot of the group and 8-column chunk. Out of line because, inlined, its registers (and
// the prologue's) add to the key loop's and the kernel spills at the 168-register cap; scalar
// arguments because a reference to the kernel's parameter structs copies them to local memory.
// out_base: element (P, col0) of the block's batch element; Ab: its weights; a_off: the group's
// first region's entry.
template <int D, int NT = kThreads>
__device__ __noinline__ void unmerge_tile(const float* Os, const int* reg_src, const int* reg_row, int nreg, void* out,
                                          int odt, bool out_vec, size_t out_base, int C, const int32_t* tokens,
                                          const float* Ab, const int64_t* a_off, int tid) {
  constexpr int kLdO = D + 8;
  constexpr int kChunks = D / 8;
  const int src0 = reg_src[0], work = (reg_src[nreg] - src0) * kChunks;
#pragma unroll 1
  for (int idx = tid; idx < work; idx += NT) {
    const int slot = src0 + idx / kChunks, c = idx % kChunks;
    // The last region starting at or before slot (regions without sources share its start).
    int lo = 0, hi = nreg - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (reg_src[mid] <= slot) lo = mid; else hi = mid - 1;
    }
    const int off = reg_src[lo], n = reg_src[lo + 1] - off, row0 = reg_row[lo], k = reg_row[lo + 1] - row0;
    const float* const w = Ab + a_off[lo] + (slot - off);
    float acc[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = 0.f;
    // unmerge_kernel's arithmetic (unmerge.cu) in the same order: the fused and the unfused
    // outputs agree bit for bit when the attention rows do.
#pragma unroll 1
    for (int d = 0; d < k; ++d) {
      const float wv = w[(size_t)d * n];
      if (wv == 0.f) continue;
      const float4 y0 = *reinterpret_cast<const float4*>(Os + (row0 + d) * kLdO + c * 8);
      const float4 y1 = *reinterpret_cast<const float4*>(Os + (row0 + d) * kLdO + c * 8 + 4);
      acc[0] += wv * y0.x;
      acc[1] += wv * y0.y;
      acc[2] += wv * y0.z;
      acc[3] += wv * y0.w;
      acc[4] += wv * y1.x;
      acc[5] += wv * y1.y;
      acc[6] += wv * y1.z;
      acc[7] += wv * y1.w;
    }
    store8(out, odt, out_base + (size_t)tokens[slot] * C + c * 8, acc, out_vec);
  }
}

// The fused kernel's epilogue for a prefix tile: its first `rows` rows of the output tile to
// out[row0 ..], out_base being element (row0, col0) of the block's batch element.
template <int D, int NT = kThreads>
__device__ __noinline__ void store_tile(const float* Os, int rows, void* out, int odt, bool out_vec, size_t out_base,
                                        int C, int tid) {
  constexpr int kLdO = D + 8, kChunks = D / 8;
#pragma unroll 1
  for (int idx = tid; idx < rows * kChunks; idx += NT) {
    const int i = idx / kChunks, c = idx % kChunks;
    const float4 y0 = *reinterpret_cast<const float4*>(Os + i * kLdO + c * 8);
    const float4 y1 = *reinterpret_cast<const float4*>(Os + i * kLdO + c * 8 + 4);
    const float v[8] = {y0.x, y0.y, y0.z, y0.w, y1.x, y1.y, y1.z, y1.w};
    store8(out, odt, out_base + (size_t)i * C + c * 8, v, out_vec);
  }
}

// Two adjacent output elements (index i even) in the output dtype; pair: the pointer allows
// stores of both at once.
__device__ __forceinline__ void store2(void* p, int dt, size_t i, float x, float y, bool pair) {
  if (pair && dt == (int)DType::F32) {
    *reinterpret_cast<float2*>(static_cast<float*>(p) + i) = make_float2(x, y);
  } else if (pair && dt == (int)DType::F16) {
    *reinterpret_cast<__half2*>(static_cast<__half*>(p) + i) = __floats2half2_rn(x, y);
  } else if (pair) {
    *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(p) + i) = __floats2bfloat162_rn(x, y);
  } else {
    store_any(p, dt, i, x);
    store_any(p, dt, i + 1, y);
  }
}

// ---- query groups of the fused kernels (host) ------------------------------------------------

// Consecutive regions into groups of at most tile destinations (the query tile's rows) and tile
// regions (the epilogue's region tables hold tile + 1 entries). groups[g] .. groups[g + 1] - 1 are
// group g's regions; false when some region has more destinations than a query tile holds. Host
// code: merge_attention_unmerge.cu groups with it, and the emulation tests the fused kernels on
// its groups.
inline bool query_groups(const std::vector<int32_t>& k_off, int R, int tile, std::vector<int32_t>& groups) {
  groups.assign(1, 0);
  int rows = 0, regions = 0;
  for (int r = 0; r < R; ++r) {
    const int k = k_off[r + 1] - k_off[r];
    if (k > tile) return false;
    if (rows + k > tile || regions == tile) {
      groups.push_back(r);
      rows = 0, regions = 0;
    }
    rows += k, ++regions;
  }
  if (R > 0) groups.push_back(R);
  return true;
}

}  // namespace flash
}  // namespace toma
