// The Hopper (sm_90a) attention kernel: fp16 / bf16 at head dims 64 and 128, dense
// (attention_cuda) and fused merge-attention-unmerge (merge_attention_unmerge_cuda), in the design
// of FlashAttention-3: warp specialisation, TMA, wgmma, and two consumer warpgroups.
//
//  - 384 threads. Warpgroup 0 is the producer: one warp copies K and V tiles of kBN keys (and, for
//    dense attention, the block's query tile) with bulk tensor copies (TMA) into a ring of kStages
//    shared-memory stages, each guarded by a "full" and an "empty" mbarrier, and writes the tile's
//    key bias (log2 units, -inf past the last key) beside it. It gives its registers away
//    (setmaxnreg.dec to 24) to the consumers (setmaxnreg.inc to 240).
//  - Warpgroups 1 and 2 each own 64 of the block's 128 query rows. Per key tile: S = Q K^T by
//    wgmma with both operands in shared memory (K-major, 128-byte swizzle: the layout TMA writes),
//    online softmax on the S registers (exp2, the scale folded into one FMA with the bias), then
//    O += P V by wgmma with P from registers (the accumulator layout of S is the A-operand layout
//    of P) and V MN-major from shared memory. The P V product of tile t - 1 is issued together with
//    S of tile t, so the tensor cores work while the softmax of tile t runs.
//  - kPingpong: the two consumer warpgroups take turns to issue their products (named barriers),
//    so one warpgroup's softmax overlaps the other's matrix products.
//  - kFused: blocks past m.prefix_blocks own one query group of whole regions (at most 128 merged
//    tokens, flash.cuh's query_groups): the consumers merge their queries straight into the
//    swizzled query tile (ordinary stores, then fence.proxy.async for wgmma) and unmerge the
//    normalised output tile straight into out (flash_common.cuh's prologue and epilogue).
//
// Compiled for sm_90a only (csrc/cuda/attention_sm90.cu); every instruction is in hopper.cuh, and
// the CPU emulation (csrc/tests/emu/hopper_emu.h, emu_sm90) runs this source against float64.
#pragma once
#include <cuda.h>

#include <cstddef>
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/flash_common.cuh"
#include "cuda/hopper.cuh"

namespace toma {
namespace flash {

constexpr int kSm90Threads = 384;  // producer warpgroup + 2 consumer warpgroups
constexpr int kSm90Rows = 128;     // query rows per block, 64 per consumer warpgroup
constexpr int kSm90Consumers = 256;
constexpr int kSm90BarConsumers = 1;  // named barrier over the consumer threads
constexpr int kSm90BarTurn = 2;       // 2, 3: whose turn it is to issue products (kPingpong)

// Shared memory (offsets from the 1024-byte aligned base). Every 2-byte tile is stored in atoms of
// 64 columns: [rows][64] with 128-byte rows and the 128-byte swizzle, atom a at a * rows * 128.
template <int D>
struct Sm90Layout {
  static constexpr int kBM = kSm90Rows, kBN = 128;
  static constexpr int kStages = D == 64 ? 4 : 2;
  static constexpr uint32_t kQBytes = (uint32_t)kBM * D * 2;
  static constexpr uint32_t kTileBytes = (uint32_t)kBN * D * 2;  // one K or V tile
  static constexpr uint32_t kQ = 0;
  static constexpr uint32_t kK = kQ + kQBytes;  // stage s at kK + s * kTileBytes
  static constexpr uint32_t kV = kK + kStages * kTileBytes;
  static constexpr uint32_t kBias = kV + kStages * kTileBytes;  // float [kStages][kBN]
  static constexpr uint32_t kBar = kBias + kStages * kBN * 4;   // q, full_k[S], full_v[S], empty[S]
  static constexpr uint32_t kMeta = kBar + ((1 + 3 * kStages) * 8 + 15) / 16 * 16;  // int [2 kBM + 4]
  static constexpr size_t kBytes = kMeta + (2 * kBM + 4) * 4 + 1024;  // + the alignment of the base
  // The fused epilogue stages the float32 output tile [kBM][D + 8] over Q, K and V.
  static_assert((size_t)kBM * (D + 8) * 4 <= kBias, "the output tile fits over the tiles");
  static_assert(kQBytes % 1024 == 0 && kTileBytes % 1024 == 0, "tiles stay 1024-byte aligned (swizzle atoms)");
  __host__ __device__ static constexpr uint32_t full_k(int s) { return kBar + 8 * (1 + s); }
  __host__ __device__ static constexpr uint32_t full_v(int s) { return kBar + 8 * (1 + kStages + s); }
  __host__ __device__ static constexpr uint32_t empty(int s) { return kBar + 8 * (1 + 2 * kStages + s); }
};

// A shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"): start address, leading
// and stride byte offsets in 16-byte units (bits 0-13, 16-29, 32-45), layout type 1 = 128-byte
// swizzle (bits 62-63), base offset 0 (every start is within the first 128 bytes of a 1024-byte
// pattern). K-major operands: SBO = 1024 (8 rows of 128 bytes), LBO unused. MN-major (V): SBO =
// 1024 (8 keys), LBO = the distance between 64-column atoms.
__host__ __device__ constexpr uint64_t sm90_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |
         ((uint64_t)((sbo & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

// Row i (of rows) and 16-byte chunk c of a 2-byte tile in 64-column atoms: the shared-memory
// offset in bytes, as TMA with CU_TENSOR_MAP_SWIZZLE_128B writes it.
__host__ __device__ constexpr uint32_t sm90_tile_offset(int i, int c, int rows) {
  return (uint32_t)((c >> 3) * rows * 128 + i * 128 + (((c & 7) ^ (i & 7)) << 4));
}

template <class T, int D, bool kFused, bool kPingpong>
__device__ __forceinline__ void sm90_consumer(unsigned char* sm, uint32_t base, const Args& a, const MauArgs& m) {
  using L = Sm90Layout<D>;
  constexpr int kBN = L::kBN, kS = L::kStages;
  const int tid = threadIdx.x, ctid = tid - 128, cw = ctid / 128;  // cw: which consumer warpgroup
  const int w4 = (tid & 127) >> 5, lane = tid & 31, g = lane >> 2, q4 = lane & 3;
  const int head = blockIdx.y, b = blockIdx.z;
  const size_t col0 = (size_t)head * D;
  const bool group = kFused && (int)blockIdx.x >= m.prefix_blocks;
  const int q0 = blockIdx.x * kSm90Rows;
  int* const meta = reinterpret_cast<int*>(sm + L::kMeta);
  T* const Qs = reinterpret_cast<T*>(sm + L::kQ);

  if constexpr (kFused) {
    // The query tile from ordinary loads: merged queries of the group, or the prefix rows.
    if (group) {
      const int gi = blockIdx.x - m.prefix_blocks;
      const int r0 = m.groups[gi], r1 = m.groups[gi + 1], j0 = m.k_off[r0];
      int* const row_reg = meta;
      for (int i = ctid; i < kSm90Rows; i += kSm90Consumers) row_reg[i] = -1;
      sm90::named_bar_sync(kSm90BarConsumers, kSm90Consumers);
      for (int rr = r0 + ctid; rr < r1; rr += kSm90Consumers)
        for (int j = m.k_off[rr]; j < m.k_off[rr + 1]; ++j) row_reg[j - j0] = rr;
      sm90::named_bar_sync(kSm90BarConsumers, kSm90Consumers);
      gather_merged_q<T, D, kSm90Rows, kSm90Consumers, true>(
          Qs, row_reg, static_cast<const T*>(a.q) + ((size_t)b * m.T + m.P) * a.C + col0, a.C, a.vec, m.tokens,
          m.offsets, m.k_off, m.a_off, m.A + (size_t)b * m.a_total, m.mass + (size_t)b * m.K, j0, ctid);
    } else {
      const T* const qg = static_cast<const T*>(a.q) + (size_t)b * m.T * a.C + col0;
      constexpr int kChunks = D / 8;
      for (int idx = ctid; idx < kSm90Rows * kChunks; idx += kSm90Consumers) {
        const int i = idx / kChunks, c = idx % kChunks;
        float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        if (q0 + i < m.P) load8<T>(qg + (size_t)(q0 + i) * a.C + c * 8, a.vec, v);
        union {
          uint4 u;
          T h[8];
        } x;
#pragma unroll
        for (int e = 0; e < 8; ++e) x.h[e] = from_f<T>(v[e]);
        *reinterpret_cast<uint4*>(Qs + q_tile_offset<D, kSm90Rows, true>(i, c)) = x.u;
      }
    }
    sm90::fence_proxy_async();  // ordinary stores, read next by wgmma (the async proxy)
    sm90::named_bar_sync(kSm90BarConsumers, kSm90Consumers);
  } else {
    sm90::mbar_wait(base + L::kBar, 0);
  }

  const int tiles = (a.Tk + kBN - 1) / kBN;
  float s[kBN / 2];  // S (then P in float) of this thread: (g + 8h, 8j + 2q4 + e) at 4j + 2h + e
  float o[D / 2];    // O in the same layout over the head dim
  unsigned p[kBN / 16][4];
  float m_run[2] = {neg_inf(), neg_inf()}, l_run[2] = {0.f, 0.f};
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;

  // This warpgroup's 64 rows start 64 rows into each Q atom.
  const uint32_t q_base = base + L::kQ + cw * 64 * 128;
  auto issue_qk = [&](int t) {
    const int st = t % kS;
    sm90::mbar_wait(base + L::full_k(st), (t / kS) & 1);
    const uint32_t k_base = base + L::kK + st * L::kTileBytes;
    sm90::reg_fence(s);
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t off = (kk & 3) * 32;  // 16 columns = 32 bytes into the 128-byte rows
      sm90::wgmma_ss<T, kBN, false>(s, sm90_desc(q_base + (kk >> 2) * kSm90Rows * 128 + off, 16, 1024),
                                    sm90_desc(k_base + (kk >> 2) * kBN * 128 + off, 16, 1024), kk > 0);
    }
    sm90::wgmma_commit();
  };
  auto issue_pv = [&](int t) {
    const int st = t % kS;
    sm90::mbar_wait(base + L::full_v(st), (t / kS) & 1);
    const uint32_t v_base = base + L::kV + st * L::kTileBytes;
    sm90::reg_fence(o);
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk)
      sm90::wgmma_rs<T, D, true>(o, p[kk], sm90_desc(v_base + kk * 16 * 128, kBN * 128, 1024), (t > 0 || kk > 0) ? 1 : 0);
    sm90::wgmma_commit();
  };
  // Turns (kPingpong): a warpgroup issues after bar.sync on its barrier and hands the turn over by
  // bar.arrive on the other's; warpgroup 1 hands warpgroup 0 the first turn and skips its last
  // hand-over, so every barrier ends with as many arrivals as waits.
  const int phases = tiles + 1;
  int phase = 0;
  auto turn_begin = [&] {
    if constexpr (kPingpong) sm90::named_bar_sync(kSm90BarTurn + cw, kSm90Consumers);
  };
  auto turn_end = [&] {
    if constexpr (kPingpong) {
      if (!(cw == 1 && phase == phases - 1)) sm90::named_bar_arrive(kSm90BarTurn + (1 - cw), kSm90Consumers);
      ++phase;
    }
  };
  if constexpr (kPingpong)
    if (cw == 1) sm90::named_bar_arrive(kSm90BarTurn, kSm90Consumers);

  // Online softmax of tile t on the S registers, in log2 units: s = exp2(s * scale * log2e + bias
  // - max). alpha: the factor for O (applied by the caller once O is no longer being written).
  auto softmax = [&](int t, float (&alpha)[2]) {
    const float* const bias_t = reinterpret_cast<const float*>(sm + L::kBias) + (t % kS) * kBN;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = neg_inf();
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
        const float2 bb = *reinterpret_cast<const float2*>(bias_t + 8 * j + 2 * q4);
        s[4 * j + 2 * h] = fmaf(s[4 * j + 2 * h], a.sl2, bb.x);
        s[4 * j + 2 * h + 1] = fmaf(s[4 * j + 2 * h + 1], a.sl2, bb.y);
        mx = fmaxf(mx, fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run[h], mx);
      // A row with every key so far at -inf (a -inf bias) keeps weights 0 instead of NaN.
      const float m_use = m_new == neg_inf() ? 0.f : m_new;
      alpha[h] = exp2f(m_run[h] - m_use);
      m_run[h] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
        s[4 * j + 2 * h] = exp2f(s[4 * j + 2 * h] - m_use);
        s[4 * j + 2 * h + 1] = exp2f(s[4 * j + 2 * h + 1] - m_use);
        sum += s[4 * j + 2 * h] + s[4 * j + 2 * h + 1];
      }
      l_run[h] = l_run[h] * alpha[h] + sum;
    }
  };
  // P for the next product: the S accumulator's layout is the A operand's (16 keys = registers
  // 8kk .. 8kk + 7), packed two per register, the lower column in the low half.
  auto to_p = [&] {
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        p[kk][r] = bits_of(from_f<T>(s[8 * kk + 2 * r])) | (bits_of(from_f<T>(s[8 * kk + 2 * r + 1])) << 16);
  };

  float alpha[2];
  turn_begin();
  issue_qk(0);
  turn_end();
  sm90::wgmma_wait<0>();
  sm90::reg_fence(s);
  softmax(0, alpha);
  to_p();
  for (int t = 1; t < tiles; ++t) {
    turn_begin();
    issue_qk(t);
    issue_pv(t - 1);
    turn_end();
    sm90::wgmma_wait<1>();  // S of tile t (P V of t - 1 may still run: O and P untouched)
    sm90::reg_fence(s);
    softmax(t, alpha);
    sm90::wgmma_wait<0>();
    sm90::reg_fence(o);
    sm90::mbar_arrive(base + L::empty((t - 1) % kS));  // K and V of tile t - 1 are free
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] *= alpha[(i >> 1) & 1];
    to_p();
  }
  turn_begin();
  issue_pv(tiles - 1);
  turn_end();
  sm90::wgmma_wait<0>();
  sm90::reg_fence(o);
  sm90::mbar_arrive(base + L::empty((tiles - 1) % kS));

  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float l = l_run[h];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[h] = 1.f / l;
  }
  const int row_in_block = 64 * cw + 16 * w4 + g;  // + 8h

  if constexpr (kFused) {
    constexpr int kLdO = D + 8;
    float* const Os = reinterpret_cast<float*>(sm);
    sm90::named_bar_sync(kSm90BarConsumers, kSm90Consumers);  // both warpgroups are done with Q, K, V
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
        *reinterpret_cast<float2*>(Os + (row_in_block + 8 * h) * kLdO + 8 * j + 2 * q4) =
            make_float2(o[4 * j + 2 * h] * inv[h], o[4 * j + 2 * h + 1] * inv[h]);
    int* const reg_src = meta;                  // [nreg + 1]: offsets[r0 ..]
    int* const reg_row = meta + kSm90Rows + 1;  // [nreg + 1]: k_off[r0 ..] - j0
    const int gi = blockIdx.x - m.prefix_blocks;
    const int r0 = group ? m.groups[gi] : 0, nreg = group ? m.groups[gi + 1] - r0 : 0;
    if (group) {
      const int j0 = m.k_off[r0];
      for (int rr = ctid; rr <= nreg; rr += kSm90Consumers) {
        reg_src[rr] = m.offsets[r0 + rr];
        reg_row[rr] = m.k_off[r0 + rr] - j0;
      }
    }
    sm90::named_bar_sync(kSm90BarConsumers, kSm90Consumers);
    if (group)
      unmerge_tile<D, kSm90Consumers>(Os, reg_src, reg_row, nreg, a.out, a.odt, m.out_vec,
                                      ((size_t)b * m.T + m.P) * a.C + col0, a.C, m.tokens,
                                      m.A + (size_t)b * m.a_total, m.a_off + r0, ctid);
    else
      store_tile<D, kSm90Consumers>(Os, m.P - q0 < kSm90Rows ? m.P - q0 : kSm90Rows, a.out, a.odt, m.out_vec,
                                    ((size_t)b * m.T + q0) * a.C + col0, a.C, ctid);
    return;
  }

  // C and the head offsets are even, so a pair store needs only an aligned base.
  const bool pair = ((uintptr_t)a.out & (a.odt == (int)DType::F32 ? 7u : 3u)) == 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = q0 + row_in_block + 8 * h;
    if (row >= a.Tq) continue;
    const size_t rb = ((size_t)b * a.Tq + row) * a.C + col0 + 2 * q4;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) store2(a.out, a.odt, rb + 8 * j, o[4 * j + 2 * h] * inv[h], o[4 * j + 2 * h + 1] * inv[h], pair);
  }
}

// The producer warp: the query tile (dense attention), then K and V tile by tile into the stages.
template <class T, int D, bool kFused>
__device__ __forceinline__ void sm90_producer(unsigned char* sm, uint32_t base, const CUtensorMap* tm_q,
                                              const CUtensorMap* tm_k, const CUtensorMap* tm_v, const Args& a) {
  using L = Sm90Layout<D>;
  constexpr int kBN = L::kBN, kS = L::kStages, kAtoms = D / 64;
  const int lane = threadIdx.x & 31, head = blockIdx.y, b = blockIdx.z;
  const int col0 = head * D;
  if (!kFused && lane == 0) {
    sm90::mbar_arrive_expect_tx(base + L::kBar, L::kQBytes);
#pragma unroll
    for (int at = 0; at < kAtoms; ++at)
      sm90::tma_load_3d(base + L::kQ + at * kSm90Rows * 128, tm_q, col0 + 64 * at, blockIdx.x * kSm90Rows, b,
                        base + L::kBar);
  }
  const int tiles = (a.Tk + kBN - 1) / kBN;
  for (int t = 0; t < tiles; ++t) {
    const int st = t % kS;
    // Round t / kS of this stage: wait until the consumers released the previous round (the
    // first round passes at once: parity 1 of a fresh barrier counts as complete).
    sm90::mbar_wait(base + L::empty(st), ((t / kS) & 1) ^ 1);
    float* const bias_s = reinterpret_cast<float*>(sm + L::kBias) + st * kBN;
    for (int i = lane; i < kBN; i += 32) bias_s[i] = key_bias_l2(a, b, t * kBN + i);
    if (lane == 0) {
      sm90::mbar_arrive_expect_tx(base + L::full_k(st), L::kTileBytes);
#pragma unroll
      for (int at = 0; at < kAtoms; ++at)
        sm90::tma_load_3d(base + L::kK + st * L::kTileBytes + at * kBN * 128, tm_k, col0 + 64 * at, t * kBN, b,
                          base + L::full_k(st));
      sm90::mbar_arrive_expect_tx(base + L::full_v(st), L::kTileBytes);
#pragma unroll
      for (int at = 0; at < kAtoms; ++at)
        sm90::tma_load_3d(base + L::kV + st * L::kTileBytes + at * kBN * 128, tm_v, col0 + 64 * at, t * kBN, b,
                          base + L::full_v(st));
    } else {
      sm90::mbar_arrive(base + L::full_k(st));  // the bias this lane wrote is released with it
    }
  }
}

// grid (ceil(Tq / 128), heads, B) (fused: (m.prefix_blocks + groups, heads, B)), 384 threads,
// Sm90Layout<D>::kBytes of dynamic shared memory. tm_q / tm_k / tm_v: sm90_tensor_map of q, k and
// v (tm_q unused by the fused kernel, which reads q with ordinary loads).
template <class T, int D, bool kFused, bool kPingpong>
__global__ void __launch_bounds__(kSm90Threads, 1)
    sm90_attention(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                   const __grid_constant__ CUtensorMap tm_v, const Args a, const MauArgs m) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();  // sm_90a only; the host never launches it elsewhere
#else
  using L = Sm90Layout<D>;
  extern __shared__ __align__(1024) unsigned char smem[];
  // The swizzle patterns repeat every 1024 bytes of the shared address: align the tiles to that.
  const uint32_t raw = sm90::smem_u32(smem), base = (raw + 1023) & ~1023u;
  unsigned char* const sm = smem + (base - raw);
  if (threadIdx.x == 0) {
    sm90::mbar_init(base + L::kBar, 1);
    for (int st = 0; st < L::kStages; ++st) {
      sm90::mbar_init(base + L::full_k(st), 32);  // the producer warp: expect_tx by lane 0, the bias by all
      sm90::mbar_init(base + L::full_v(st), 1);
      sm90::mbar_init(base + L::empty(st), kSm90Consumers);
    }
    sm90::fence_barrier_init();
  }
  __syncthreads();
  if (threadIdx.x < 128) {
    sm90::setmaxnreg_dec<24>();
    if (threadIdx.x < 32) sm90_producer<T, D, kFused>(sm, base, &tm_q, &tm_k, &tm_v, a);
  } else {
    sm90::setmaxnreg_inc<240>();
    sm90_consumer<T, D, kFused, kPingpong>(sm, base, a, m);
  }
#endif
}

// ---- host ------------------------------------------------------------------------------------

using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// A [B, T, C] fp16 / bf16 tensor as a 3-D tensor map whose boxes are 64 columns x `rows` rows of
// one batch element, written to shared memory with the 128-byte swizzle; rows past T read as zero.
// Needs a 16-byte aligned base and C a multiple of 8.
inline CUresult sm90_tensor_map(EncodeTiledFn encode, CUtensorMap* map, const void* p, bool bf16, int B, int T, int C,
                                int rows) {
  const cuuint64_t dim[3] = {(cuuint64_t)C, (cuuint64_t)T, (cuuint64_t)B};
  const cuuint64_t strides[2] = {(cuuint64_t)C * 2, (cuuint64_t)T * C * 2};
  const cuuint32_t box[3] = {64, (cuuint32_t)rows, 1}, elem[3] = {1, 1, 1};
  return encode(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3, const_cast<void*>(p),
                dim, strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

}  // namespace flash
}  // namespace toma
