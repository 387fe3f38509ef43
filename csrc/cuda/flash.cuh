// The device side of attention_cuda (csrc/cuda/attention.cu launches these): two flash-style
// kernels, each block owning a tile of queries of one (batch, head) and streaming over key tiles
// with an online softmax, so the [Tq, Tk] score matrix only ever exists one tile at a time, in
// shared memory.
//
//  - mma_attention / mma_mau_attention: fp16 / bf16 at head dims 64 and 128 (the ones diffusion
//    transformers use), FlashAttention-2's register-resident design on mma.sync; the fastest.
//  - tc_attention: fp16 / bf16 q, k, v of one dtype and other head dims that are multiples of 16 up
//    to 128 (or TOMA_FLASH=wmma), on tensor cores through WMMA (mma.sync on sm_80+), fp32 accumulation. WMMA leaves the
//    register layout of its fragments unspecified, so every step that needs to know which row a
//    value belongs to (softmax, the rescale of the output) goes through a per-warp shared-memory
//    scratch whose layout we choose, and the output accumulator lives in registers in that layout.
//  - tc_mau_attention: tc_attention fused with merge and unmerge for merge_attention_unmerge_cuda
//    (csrc/cuda/merge_attention_unmerge.cu): a block's query tile is a group of whole regions,
//    merged in the prologue and unmerged in the epilogue.
//  - f32_attention: everything else (float32 inputs, mixed dtypes, other head dims up to 256) on
//    CUDA cores in float32. Float32 attention must stay within 1e-4 (SPEC 9), which neither fp16
//    nor bf16 nor tf32 tensor cores can meet, so float32 inputs are never rounded down.
#pragma once
#include <mma.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/flash_common.cuh"
#include "cuda/mma.cuh"

namespace toma {
namespace flash {

namespace wmma = nvcuda::wmma;

// ---- tensor-core kernel -----------------------------------------------------------------------

constexpr int kBM = 64;           // queries per block: 16 per warp
constexpr int kBN = 64;           // keys per tile
constexpr int kLdS = kBN + 8;     // floats per row of a warp's score scratch
constexpr int kLdP = kBN + 8;     // halves per row of a warp's probability tile
constexpr int kLdW = 24;          // floats per row of a warp's 16x16 P.V chunk (aliases the scores)
constexpr int kWarps = kThreads / 32;
static_assert(kBM == 16 * kWarps, "one 16-row WMMA tile of queries per warp");
static_assert(kBM == kBN, "the query tile is staged in the K buffer");
static_assert(kBN == 64, "the softmax below gives each lane 32 of a row's 64 scores");
// The paddings (8 floats / 8 halves / 24 floats) make WMMA's ldm legal (a multiple of 16 bytes)
// and the lanes' 16-byte reads of the scratch below bank-conflict free.

template <int D>
struct TcLayout {
  static constexpr int kLd = D + 8;  // halves per row of the K / V / Q tiles
  static constexpr size_t kTile = (size_t)kBN * kLd * 2;
  static constexpr size_t kK = 0, kV = kTile, kP = 2 * kTile;
  static constexpr size_t kS = kP + (size_t)kWarps * 16 * kLdP * 2;
  static constexpr size_t kBias = kS + (size_t)kWarps * 16 * kLdS * 4;
  static constexpr size_t kBytes = kBias + kBN * 4;
  // WMMA pointers must be 32-byte aligned; every region starts at a multiple of 256 bytes.
  static_assert(kTile % 256 == 0 && kP % 256 == 0 && kS % 256 == 0 && kBias % 256 == 0, "alignment");
};

// cp.async (sm_80+): global to shared without passing through registers. With src_bytes = 0 it
// reads nothing and writes 16 zero bytes (rows past the end).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Starts copying rows [row0, row0 + ROWS) of a [rows, C] matrix (channels [0, D) from src) into
// dst[ROWS][D + 8]; rows past the end become zero. With vec the copy is asynchronous (cp.async,
// waited for by the caller); otherwise, for bases not 16-byte aligned, plain 2-byte loads.
// rows >= 1, so src (row 0) is always a readable address for the zero-fill copies.
template <class T, int D, int ROWS = kBN>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int row0, int rows, int C, bool vec, int tid) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert((ROWS * kChunks) % kThreads == 0, "whole iterations");
  if (vec) {
#pragma unroll
    for (int it = 0; it < ROWS * kChunks / kThreads; ++it) {
      const int idx = tid + it * kThreads, r = idx / kChunks, c = idx % kChunks, j = row0 + r;
      const bool valid = j < rows;
      cp_async16(dst + r * (D + 8) + c * 8, src + (valid ? (size_t)j * C : 0) + c * 8, valid);
    }
  } else {
#pragma unroll 1
    for (int it = 0; it < ROWS * kChunks / kThreads; ++it) {
      const int idx = tid + it * kThreads, r = idx / kChunks, c = idx % kChunks, j = row0 + r;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (j < rows) {
        const unsigned short* h = reinterpret_cast<const unsigned short*>(src + (size_t)j * C + c * 8);
        val.x = (unsigned)h[0] | ((unsigned)h[1] << 16);
        val.y = (unsigned)h[2] | ((unsigned)h[3] << 16);
        val.z = (unsigned)h[4] | ((unsigned)h[5] << 16);
        val.w = (unsigned)h[6] | ((unsigned)h[7] << 16);
      }
      *reinterpret_cast<uint4*>(dst + r * (D + 8) + c * 8) = val;
    }
  }
}

// grid (ceil(Tq / 64), heads, B), 128 threads. Warp w owns queries q0 + 16w .. q0 + 16w + 15. In
// the softmax and the output accumulator, lane l owns row l / 2 of its warp's 16 and half of its
// columns (lane parity picks which), so a row's statistics live in the two lanes that use them.
// Unconstrained, ptxas spends up to 255 registers on deeper unrolling (2 blocks per SM). Up to
// D = 64 it fits 168 without spilling: 3 blocks of 128 threads per SM (a cap of 128 for 4 blocks
// spills). Above, the output accumulator and the query fragments alone take 80+ registers and a
// cap of 168 spills; an A100's shared memory holds only 2 blocks there anyway.
template <int D>
constexpr int tc_min_blocks() { return D <= 64 ? 3 : 2; }

// The fused kernels' epilogue, once the normalised output tile is in Os ([rows][D + 8] floats):
// a group block unmerges it into out through its regions' tables (built here in meta, 2 rows + 2
// ints), a prefix block stores its rows. Ends with the block's last barrier behind it.
template <int D>
__device__ __forceinline__ void fused_epilogue(const float* Os, int* meta, int rows, bool group, const Args& a,
                                               const MauArgs& m, int b, size_t col0, int q0, int tid) {
  int* const reg_src = meta;             // [nreg + 1]: offsets[r0 ..]
  int* const reg_row = meta + rows + 1;  // [nreg + 1]: k_off[r0 ..] - j0
  const int g = blockIdx.x - m.prefix_blocks;
  const int r0 = group ? m.groups[g] : 0, nreg = group ? m.groups[g + 1] - r0 : 0;
  if (group) {
    const int j0 = m.k_off[r0];
    for (int rr = tid; rr <= nreg; rr += kThreads) {
      reg_src[rr] = m.offsets[r0 + rr];
      reg_row[rr] = m.k_off[r0 + rr] - j0;
    }
  }
  __syncthreads();
  if (group)
    unmerge_tile<D>(Os, reg_src, reg_row, nreg, a.out, a.odt, m.out_vec, ((size_t)b * m.T + m.P) * a.C + col0, a.C,
                    m.tokens, m.A + (size_t)b * m.a_total, m.a_off + r0, tid);
  else
    store_tile<D>(Os, m.P - q0 < rows ? m.P - q0 : rows, a.out, a.odt, m.out_vec, ((size_t)b * m.T + q0) * a.C + col0,
                  a.C, tid);
}

// The body of both tensor-core kernels. kFused: blocks past m.prefix_blocks each own one query
// group of whole regions (at most 64 merged tokens): the prologue merges their queries straight
// into the query tile and the epilogue unmerges the normalised output straight into out, so the
// merged q and the merged output never reach global memory.
template <class T, int D, bool kFused>
__device__ __forceinline__ void tc_attention_body(const Args& a, const MauArgs& m) {
  using L = TcLayout<D>;
  constexpr int kLd = L::kLd;
  constexpr int kNC = D / 16;     // 16-wide chunks of the head dim
  constexpr int kNK = kBN / 16;   // 16-wide chunks of a key tile
  extern __shared__ __align__(256) unsigned char smem[];
  T* const Ks = reinterpret_cast<T*>(smem + L::kK);
  T* const Vs = reinterpret_cast<T*>(smem + L::kV);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  T* const Pw = reinterpret_cast<T*>(smem + L::kP) + warp * 16 * kLdP;
  float* const Sw = reinterpret_cast<float*>(smem + L::kS) + warp * 16 * kLdS;
  float* const bias_s = reinterpret_cast<float*>(smem + L::kBias);
  // Fused-path tables live in the score scratch, which nothing else uses outside the key loop.
  int* const meta = reinterpret_cast<int*>(smem + L::kS);

  const int head = blockIdx.y, b = blockIdx.z;
  const size_t col0 = (size_t)head * D;
  // Plain tiles: rows q0 .. of q / out, of q_rows valid rows, batch stride q_bstride rows (the
  // fused kernel's prefix tiles read the first P rows of the [B, P + N, C] q and out).
  const bool group = kFused && (int)blockIdx.x >= m.prefix_blocks;
  const int q0 = blockIdx.x * kBM;
  const int q_rows = kFused ? m.P : a.Tq, q_bstride = kFused ? m.T : a.Tq;
  const T* const kg = static_cast<const T*>(a.k) + (size_t)b * a.Tk * a.C + col0;
  const T* const vg = static_cast<const T*>(a.v) + (size_t)b * a.Tk * a.C + col0;

  // The query tile goes through the K buffer into registers once; the loop's first barrier keeps
  // the first key tile from overwriting it before every warp has loaded its fragments.
  if (group) {
    // The group's bounds are read again in the epilogue rather than kept live across the key
    // loop, where every register is taken.
    const int g = blockIdx.x - m.prefix_blocks;
    const int r0 = m.groups[g], r1 = m.groups[g + 1], j0 = m.k_off[r0];
    int* const row_reg = meta;
    if (tid < kBM) row_reg[tid] = -1;
    __syncthreads();
    for (int rr = r0 + tid; rr < r1; rr += kThreads)
      for (int j = m.k_off[rr]; j < m.k_off[rr + 1]; ++j) row_reg[j - j0] = rr;
    __syncthreads();
    gather_merged_q<T, D, kBM>(Ks, row_reg, static_cast<const T*>(a.q) + ((size_t)b * m.T + m.P) * a.C + col0, a.C, a.vec,
                          m.tokens, m.offsets, m.k_off, m.a_off, m.A + (size_t)b * m.a_total,
                          m.mass + (size_t)b * m.K, j0, tid);
  } else {
    const T* const qg = static_cast<const T*>(a.q) + (size_t)b * q_bstride * a.C + col0;
    load_tile<T, D>(Ks, qg, q0, q_rows, a.C, a.vec, tid);
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[kNC];
#pragma unroll
  for (int kk = 0; kk < kNC; ++kk) wmma::load_matrix_sync(qf[kk], Ks + warp * 16 * kLd + kk * 16, kLd);

  const int r = lane >> 1, hf = lane & 1;
  float m_run = neg_inf(), l_run = 0.f;
  // o[n][0..3]: columns 16n + 4hf + 0..3; o[n][4..7]: columns 16n + 8 + 4hf + 0..3 (of row r).
  float o[kNC][8];
#pragma unroll
  for (int n = 0; n < kNC; ++n)
#pragma unroll
    for (int e = 0; e < 8; ++e) o[n][e] = 0.f;

  const int tiles = (a.Tk + kBN - 1) / kBN;
  for (int t = 0; t < tiles; ++t) {
    const int k0 = t * kBN;
    __syncthreads();  // every warp is done with the previous K / V tile (or the query staging)
    // K and V in two copy groups: V keeps arriving while the scores and the softmax run.
    load_tile<T, D>(Ks, kg, k0, a.Tk, a.C, a.vec, tid);
    cp_async_commit();
    load_tile<T, D>(Vs, vg, k0, a.Tk, a.C, a.vec, tid);
    cp_async_commit();
    if (tid < kBN) bias_s[tid] = key_bias_l2(a, b, k0 + tid);
    cp_async_wait<1>();  // this thread's K copies have landed
    __syncthreads();     // ... and everyone's, and the bias

    // Scores of the warp's 16 queries against the 64 keys, into the warp's scratch.
    {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> sacc[kNK];
#pragma unroll
      for (int n = 0; n < kNK; ++n) wmma::fill_fragment(sacc[n], 0.f);
#pragma unroll
      for (int kk = 0; kk < kNC; ++kk)
#pragma unroll
        for (int n = 0; n < kNK; ++n) {
          // K^T as a column-major 16x16 block: element (d, j) at Ks[j * kLd + d].
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
          wmma::load_matrix_sync(kf, Ks + n * 16 * kLd + kk * 16, kLd);
          wmma::mma_sync(sacc[n], qf[kk], kf, sacc[n]);
        }
#pragma unroll
      for (int n = 0; n < kNK; ++n) wmma::store_matrix_sync(Sw + n * 16, sacc[n], kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of row r: this lane takes the float4 groups hf, hf + 2, ..., its partner
    // lane (lane ^ 1) the others. Two passes over the scratch (max, then exp) rather than holding
    // the 32 scores in registers. P is rounded to T before it is summed, so the normaliser l
    // counts exactly the weights the P.V product uses.
    float alpha;
    {
      float mx = neg_inf();
#pragma unroll
      for (int i = 0; i < kBN / 8; ++i) {
        const int c = 4 * (hf + 2 * i);
        const float4 s = *reinterpret_cast<const float4*>(Sw + r * kLdS + c);
        const float4 bb = *reinterpret_cast<const float4*>(bias_s + c);
        mx = fmaxf(mx, fmaxf(fmaxf(fmaf(s.x, a.sl2, bb.x), fmaf(s.y, a.sl2, bb.y)),
                             fmaxf(fmaf(s.z, a.sl2, bb.z), fmaf(s.w, a.sl2, bb.w))));
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      const float m_new = fmaxf(m_run, mx);
      // A row with every key so far at -inf (a -inf bias) keeps weights 0 instead of NaN.
      const float m_use = m_new == neg_inf() ? 0.f : m_new;
      alpha = exp2f(m_run - m_use);  // 0 on the first tile (m_run = -inf)
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < kBN / 8; ++i) {
        const int c = 4 * (hf + 2 * i);
        const float4 s = *reinterpret_cast<const float4*>(Sw + r * kLdS + c);
        const float4 bb = *reinterpret_cast<const float4*>(bias_s + c);
        // The same fmaf as in the max pass: bit-identical scores, so no p exceeds 1.
        const T p0 = from_f<T>(exp2f(fmaf(s.x, a.sl2, bb.x) - m_use));
        const T p1 = from_f<T>(exp2f(fmaf(s.y, a.sl2, bb.y) - m_use));
        const T p2 = from_f<T>(exp2f(fmaf(s.z, a.sl2, bb.z) - m_use));
        const T p3 = from_f<T>(exp2f(fmaf(s.w, a.sl2, bb.w) - m_use));
        sum += (to_f(p0) + to_f(p1)) + (to_f(p2) + to_f(p3));
        // One 8-byte store (element 0 in the low half): conflict-free across the warp.
        *reinterpret_cast<uint2*>(Pw + r * kLdP + c) =
            make_uint2(bits_of(p0) | (bits_of(p1) << 16), bits_of(p2) | (bits_of(p3) << 16));
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      l_run = l_run * alpha + sum;
      m_run = m_new;
    }
    cp_async_wait<0>();  // this thread's V copies have landed
    __syncthreads();     // everyone's V; also orders this warp's P and scratch use
                         // (a warp-level barrier would do for those)

    // O = alpha O + P V, one 16-wide chunk of the head dim at a time through the scratch.
    {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf[kNK];
#pragma unroll
      for (int kk = 0; kk < kNK; ++kk) wmma::load_matrix_sync(pf[kk], Pw + kk * 16, kLdP);
#pragma unroll
      for (int n = 0; n < kNC; ++n) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.f);
#pragma unroll
        for (int kk = 0; kk < kNK; ++kk) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
          wmma::load_matrix_sync(vf, Vs + kk * 16 * kLd + n * 16, kLd);
          wmma::mma_sync(acc, pf[kk], vf, acc);
        }
        wmma::store_matrix_sync(Sw, acc, kLdW, wmma::mem_row_major);
        __syncwarp();
        const float4 w0 = *reinterpret_cast<const float4*>(Sw + r * kLdW + 4 * hf);
        const float4 w1 = *reinterpret_cast<const float4*>(Sw + r * kLdW + 8 + 4 * hf);
        o[n][0] = fmaf(o[n][0], alpha, w0.x);
        o[n][1] = fmaf(o[n][1], alpha, w0.y);
        o[n][2] = fmaf(o[n][2], alpha, w0.z);
        o[n][3] = fmaf(o[n][3], alpha, w0.w);
        o[n][4] = fmaf(o[n][4], alpha, w1.x);
        o[n][5] = fmaf(o[n][5], alpha, w1.y);
        o[n][6] = fmaf(o[n][6], alpha, w1.z);
        o[n][7] = fmaf(o[n][7], alpha, w1.w);
        __syncwarp();  // read before the next chunk (or the next tile's scores) overwrite it
      }
    }
  }

  if constexpr (kFused) {
    // Both kinds of block stage the normalised output tile over K / V (fp32; 8 floats of padding
    // keep the lanes' float4 stores conflict-free) and write it out of line: inlined, the writers'
    // registers add to the key loop's and the kernel spills at its register cap.
    constexpr int kLdO = D + 8;
    static_assert((size_t)kBM * kLdO * 4 <= L::kP, "the output tile fits in the K and V buffers");
    float* const Os = reinterpret_cast<float*>(smem);
    __syncthreads();  // every warp is done with the last K / V tile and its score scratch
    {
      const float inv = 1.f / l_run;
      float* const orow = Os + (warp * 16 + r) * kLdO + 4 * hf;
#pragma unroll
      for (int n = 0; n < kNC; ++n) {
        *reinterpret_cast<float4*>(orow + 16 * n) =
            make_float4(o[n][0] * inv, o[n][1] * inv, o[n][2] * inv, o[n][3] * inv);
        *reinterpret_cast<float4*>(orow + 16 * n + 8) =
            make_float4(o[n][4] * inv, o[n][5] * inv, o[n][6] * inv, o[n][7] * inv);
      }
    }
    fused_epilogue<D>(Os, meta, kBM, group, a, m, b, col0, q0, tid);
    return;
  }

  const int row = q0 + warp * 16 + r;
  if (row < a.Tq) {
    const float inv = 1.f / l_run;
    const size_t base = ((size_t)b * a.Tq + row) * a.C + col0;
#pragma unroll
    for (int n = 0; n < kNC; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        store_any(a.out, a.odt, base + 16 * n + 4 * hf + e, o[n][e] * inv);
        store_any(a.out, a.odt, base + 16 * n + 8 + 4 * hf + e, o[n][4 + e] * inv);
      }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads, tc_min_blocks<D>()) tc_attention(const Args a) {
  tc_attention_body<T, D, false>(a, MauArgs{});
}

// unmerge(attention(merge(q), k, v)) for merged k / v already in a.k / a.v (a.Tk = P + K rows):
// grid (m.prefix_blocks + G, heads, B). a.q / a.out are the [B, P + N, C] q and out; a.Tq is
// unused.
template <class T, int D>
__global__ void __launch_bounds__(kThreads, tc_min_blocks<D>()) tc_mau_attention(const Args a, const MauArgs m) {
  tc_attention_body<T, D, true>(a, m);
}

// ---- mma kernel -------------------------------------------------------------------------------
// FlashAttention-2's structure on mma.sync (mma.cuh), for fp16 / bf16 at head dims 64 and 128:
// the scores, the probabilities and the output accumulator stay in registers in the layout the
// instructions specify (the score accumulator of two adjacent 8-key tiles is exactly the A operand
// of the P.V product), so nothing but the q / k / v tiles goes through shared memory. Warp w owns
// query rows 16 MT w .. 16 MT (w + 1) - 1 of the block's 64 MT; each key tile of BN rows is read
// by ldmatrix and used for all of them. K and V are double-buffered: the next tile is copied
// (cp.async) during the whole of the current one. (The first version, with one buffer each,
// waited on every copy: 180 TFLOP/s at its best on an H200.)
//
// ST = 3 (the variant TOMA_FLASH_CFG=1,64,3): three K / V buffers, tile t + 2 copied while tile t
// is used, and one barrier per tile instead of two (the barrier that publishes tile t also says
// every warp is done with tile t - 1, whose buffer the copy of t + 2 reuses). kFold (with it, where
// there is no bias and the scale is positive): FlashAttention-2's exp2 with the scale folded into
// one FMA, p = exp2(s * scale log2e - m), the row max taken on the raw scores and keys past the
// end masked in registers (no bias array).

template <int D, int BN, int MT, int ST = 2>
struct MmaLayout {
  static constexpr int kBM = 16 * MT * kWarps;
  static constexpr int kLd = D + 8;  // halves per row: ldmatrix's 8 rows fall in distinct banks
  static constexpr size_t kTile = (size_t)BN * kLd * 2;
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = (size_t)kBM * kLd * 2;  // K[ST], then V[ST]
  static constexpr size_t kV = kK + ST * kTile;
  static constexpr size_t kTiles = kV + ST * kTile;
  // The fused epilogue stages the float32 output tile (unmerge_tile's [kBM][D + 8]) over Q / K / V.
  static constexpr size_t kOut = (size_t)kBM * kLd * 4;
  static constexpr size_t kBias = ((kTiles > kOut ? kTiles : kOut) + 255) / 256 * 256;  // [ST][BN]
  static constexpr size_t kMeta = kBias + ((size_t)ST * BN * 4 + 255) / 256 * 256;
  static constexpr size_t kBytes = kMeta + (size_t)(2 * kBM + 4) * 4;  // the fused path's region tables
  static_assert(D % 16 == 0 && BN % 16 == 0, "ldmatrix.x4 takes 16x16 blocks");
  static_assert(ST == 2 || ST == 3, "two or three K / V buffers");
};

template <class T, int D, int BN, int MT, bool kFused, int ST = 2, bool kFold = false>
__device__ __forceinline__ void mma_attention_body(const Args& a, const MauArgs& m) {
  using L = MmaLayout<D, BN, MT, ST>;
  constexpr int kRows = L::kBM, kLd = L::kLd;
  constexpr int kNT = BN / 8;  // 8-key tiles of scores per row block
  constexpr int kND = D / 8;   // 8-column tiles of the output
  extern __shared__ __align__(256) unsigned char smem[];
  T* const Qs = reinterpret_cast<T*>(smem + L::kQ);
  T* const Ks = reinterpret_cast<T*>(smem + L::kK);  // tile t in Ks + (t % ST) * kTileElems
  T* const Vs = reinterpret_cast<T*>(smem + L::kV);
  float* const bias_s = reinterpret_cast<float*>(smem + L::kBias);  // tile t's at (t % ST) * BN
  int* const meta = reinterpret_cast<int*>(smem + L::kMeta);
  constexpr int kTileElems = BN * kLd;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, t4 = lane & 3, g = lane >> 2;
  const int head = blockIdx.y, b = blockIdx.z;
  const size_t col0 = (size_t)head * D;
  const bool group = kFused && (int)blockIdx.x >= m.prefix_blocks;
  const int q0 = blockIdx.x * kRows;
  const int q_rows = kFused ? m.P : a.Tq, q_bstride = kFused ? m.T : a.Tq;
  const T* const kg = static_cast<const T*>(a.k) + (size_t)b * a.Tk * a.C + col0;
  const T* const vg = static_cast<const T*>(a.v) + (size_t)b * a.Tk * a.C + col0;

  // The first key / value tile is on its way while the query tile is gathered or loaded.
  load_tile<T, D, BN>(Ks, kg, 0, a.Tk, a.C, a.vec, tid);
  load_tile<T, D, BN>(Vs, vg, 0, a.Tk, a.C, a.vec, tid);
  if (tid < BN) bias_s[tid] = key_bias_l2(a, b, tid);
  if (group) {
    const int gi = blockIdx.x - m.prefix_blocks;
    const int r0 = m.groups[gi], r1 = m.groups[gi + 1], j0 = m.k_off[r0];
    int* const row_reg = meta;
    for (int i = tid; i < kRows; i += kThreads) row_reg[i] = -1;
    __syncthreads();
    for (int rr = r0 + tid; rr < r1; rr += kThreads)
      for (int j = m.k_off[rr]; j < m.k_off[rr + 1]; ++j) row_reg[j - j0] = rr;
    __syncthreads();
    gather_merged_q<T, D, kRows>(Qs, row_reg, static_cast<const T*>(a.q) + ((size_t)b * m.T + m.P) * a.C + col0,
                                 a.C, a.vec, m.tokens, m.offsets, m.k_off, m.a_off, m.A + (size_t)b * m.a_total,
                                 m.mass + (size_t)b * m.K, j0, tid);
  } else {
    const T* const qg = static_cast<const T*>(a.q) + (size_t)b * q_bstride * a.C + col0;
    load_tile<T, D, kRows>(Qs, qg, q0, q_rows, a.C, a.vec, tid);
  }
  cp_async_commit();
  const int tiles = (a.Tk + BN - 1) / BN;
  if constexpr (ST == 3) {
    // Tile 1 too (its own copy group, empty when there is none): two tiles ahead from the start.
    if (tiles > 1) {
      load_tile<T, D, BN>(Ks + kTileElems, kg, BN, a.Tk, a.C, a.vec, tid);
      load_tile<T, D, BN>(Vs + kTileElems, vg, BN, a.Tk, a.C, a.vec, tid);
      if (tid < BN) bias_s[BN + tid] = key_bias_l2(a, b, BN + tid);
    }
    cp_async_commit();
  }

  float o[MT][kND][4];
  float m_run[MT][2], l_run[MT][2];  // [.][h]: row g + 8h of the warp's row block; l per lane
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) m_run[mt][h] = neg_inf(), l_run[mt][h] = 0.f;
#pragma unroll
    for (int nd = 0; nd < kND; ++nd)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][nd][e] = 0.f;
  }
  const T* const q_warp = Qs + (warp * 16 * MT + (lane & 15)) * kLd + (lane >> 4) * 8;
  const T* const k_lane = Ks + ((lane & 7) + (lane >> 4) * 8) * kLd + ((lane >> 3) & 1) * 8;
  const T* const v_lane = Vs + ((lane & 7) + ((lane >> 3) & 1) * 8) * kLd + (lane >> 4) * 8;
  // With one row block per warp its query fragments stay in registers (16 or 32); with two they
  // would take too many, and are read from shared memory at every key tile.
  constexpr bool kQRegs = MT == 1;
  unsigned qr[kQRegs ? D / 16 : 1][4];
  if constexpr (kQRegs) {
    cp_async_wait<ST - 2>();  // the query tile (with tile 0), not tile 1
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) ldmatrix_x4(qr[kk], q_warp + kk * 16);
  }

  // Two K / V buffers: tile t + 1 is copied while tile t is used, and a barrier at the end of each
  // tile keeps the copy of t + 2 off buffer t & 1 until every warp is done with it. Three: see above.
  for (int t = 0; t < tiles; ++t) {
    const int cur = (t % ST) * kTileElems;
    if constexpr (ST == 3) {
      cp_async_wait<1>();  // tile t from this thread (t + 1 may still be on its way)
      __syncthreads();     // ... from everyone, with bias(t); and every warp is done with tile t - 1
      if (t + 2 < tiles) {
        const int nxt = ((t + 2) % 3) * kTileElems;
        load_tile<T, D, BN>(Ks + nxt, kg, (t + 2) * BN, a.Tk, a.C, a.vec, tid);
        load_tile<T, D, BN>(Vs + nxt, vg, (t + 2) * BN, a.Tk, a.C, a.vec, tid);
        if (tid < BN) bias_s[((t + 2) % 3) * BN + tid] = key_bias_l2(a, b, (t + 2) * BN + tid);
      }
      cp_async_commit();  // every iteration, so that the wait above always means tile t
    } else if (t + 1 < tiles) {
      const int nxt = kTileElems - cur;
      load_tile<T, D, BN>(Ks + nxt, kg, (t + 1) * BN, a.Tk, a.C, a.vec, tid);
      load_tile<T, D, BN>(Vs + nxt, vg, (t + 1) * BN, a.Tk, a.C, a.vec, tid);
      cp_async_commit();
      if (tid < BN) bias_s[((t + 1) & 1) * BN + tid] = key_bias_l2(a, b, (t + 1) * BN + tid);
      cp_async_wait<1>();  // tile t (and, first, the query tile) from this thread
    } else {
      cp_async_wait<0>();
    }
    if constexpr (ST == 2) __syncthreads();  // ... and from everyone, with bias(t)

    float s[MT][kNT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      unsigned qa[MT][4];
      if constexpr (kQRegs) {
#pragma unroll
        for (int e = 0; e < 4; ++e) qa[0][e] = qr[kk][e];
      } else {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) ldmatrix_x4(qa[mt], q_warp + mt * 16 * kLd + kk * 16);
      }
#pragma unroll
      for (int np = 0; np < BN / 16; ++np) {
        unsigned kb[4];  // b0, b1 of key tiles 2np and 2np + 1
        ldmatrix_x4(kb, k_lane + cur + np * 16 * kLd + kk * 16);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816<T>(s[mt][2 * np], qa[mt], kb[0], kb[1]);
          mma_16816<T>(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
        }
      }
    }

    // Online softmax, in log2 units. A row's 4 lanes (same g) share its max through two shuffles;
    // its sum stays per lane until the end (the rescales are the same for the 4). P is rounded
    // to T before it is summed, so l counts exactly the weights the P.V product uses.
    const float* const bias_t = bias_s + (t % ST) * BN;
    [[maybe_unused]] const bool partial = (t + 1) * BN > a.Tk;  // kFold: keys past the end masked here
    unsigned pa[MT][BN / 16][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = neg_inf();
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
          if constexpr (kFold) {
            if (partial) {
              const int j = t * BN + nt * 8 + 2 * t4;
              if (j >= a.Tk) s[mt][nt][2 * h] = neg_inf();
              if (j + 1 >= a.Tk) s[mt][nt][2 * h + 1] = neg_inf();
            }
          } else {
            const float2 bb = *reinterpret_cast<const float2*>(bias_t + nt * 8 + 2 * t4);
            s[mt][nt][2 * h] = fmaf(s[mt][nt][2 * h], a.sl2, bb.x);
            s[mt][nt][2 * h + 1] = fmaf(s[mt][nt][2 * h + 1], a.sl2, bb.y);
          }
          mx = fmaxf(mx, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        if constexpr (kFold) mx *= a.sl2;  // the max of the scaled scores (scale > 0)
        const float m_new = fmaxf(m_run[mt][h], mx);
        // A row with every key so far at -inf (a -inf bias) keeps weights 0 instead of NaN.
        const float m_use = m_new == neg_inf() ? 0.f : m_new;
        const float alpha = exp2f(m_run[mt][h] - m_use);  // 0 on the first tile
        m_run[mt][h] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
          const float x0 = kFold ? fmaf(s[mt][nt][2 * h], a.sl2, -m_use) : s[mt][nt][2 * h] - m_use;
          const float x1 = kFold ? fmaf(s[mt][nt][2 * h + 1], a.sl2, -m_use) : s[mt][nt][2 * h + 1] - m_use;
          const T p0 = from_f<T>(exp2f(x0));
          const T p1 = from_f<T>(exp2f(x1));
          sum += to_f(p0) + to_f(p1);
          pa[mt][nt >> 1][(nt & 1) * 2 + h] = bits_of(p0) | (bits_of(p1) << 16);
        }
        l_run[mt][h] = l_run[mt][h] * alpha + sum;
#pragma unroll
        for (int nd = 0; nd < kND; ++nd) {
          o[mt][nd][2 * h] *= alpha;
          o[mt][nd][2 * h + 1] *= alpha;
        }
      }

#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk)
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        unsigned vb[4];  // b0, b1 of output tiles 2np and 2np + 1
        ldmatrix_x4_trans(vb, v_lane + cur + kk * 16 * kLd + np * 16);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816<T>(o[mt][2 * np], pa[mt][kk], vb[0], vb[1]);
          mma_16816<T>(o[mt][2 * np + 1], pa[mt][kk], vb[2], vb[3]);
        }
      }
    if constexpr (ST == 2) __syncthreads();  // every warp is done with buffer t & 1 (refilled with tile t + 2 next)
  }
  if constexpr (ST == 3) {
    cp_async_wait<0>();  // the loop's last (empty) copy groups
    if constexpr (kFused) __syncthreads();  // the epilogue stages its tile over Q, K and V
  }

  float inv[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float l = l_run[mt][h];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      inv[mt][h] = 1.f / l;
    }

  if constexpr (kFused) {
    float* const Os = reinterpret_cast<float*>(smem);  // the loop's last barrier: Q, K, V are free
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float* const orow = Os + (warp * 16 * MT + mt * 16 + g + 8 * h) * kLd + 2 * t4;
#pragma unroll
        for (int nd = 0; nd < kND; ++nd)
          *reinterpret_cast<float2*>(orow + nd * 8) =
              make_float2(o[mt][nd][2 * h] * inv[mt][h], o[mt][nd][2 * h + 1] * inv[mt][h]);
      }
    fused_epilogue<D>(Os, meta, kRows, group, a, m, b, col0, q0, tid);
    return;
  }

  // C and the head offsets are even, so a pair store needs only an aligned base.
  const bool pair = ((uintptr_t)a.out & (a.odt == (int)DType::F32 ? 7u : 3u)) == 0;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = q0 + warp * 16 * MT + mt * 16 + g + 8 * h;
      if (row >= a.Tq) continue;
      const size_t base = ((size_t)b * a.Tq + row) * a.C + col0 + 2 * t4;
#pragma unroll
      for (int nd = 0; nd < kND; ++nd)
        store2(a.out, a.odt, base + nd * 8, o[mt][nd][2 * h] * inv[mt][h], o[mt][nd][2 * h + 1] * inv[mt][h], pair);
    }
}

// Two blocks per SM at most 255 registers each: the accumulators of MT = 2 at D = 128 need them.
template <class T, int D, int BN, int MT, int ST = 2, bool kFold = false>
__global__ void __launch_bounds__(kThreads, 2) mma_attention(const Args a) {
  mma_attention_body<T, D, BN, MT, false, ST, kFold>(a, MauArgs{});
}

// tc_mau_attention's contract (above) on the mma kernel, with query groups of up to 64 MT rows.
template <class T, int D, int BN, int MT, int ST = 2, bool kFold = false>
__global__ void __launch_bounds__(kThreads, 2) mma_mau_attention(const Args a, const MauArgs m) {
  mma_attention_body<T, D, BN, MT, true, ST, kFold>(a, m);
}

// Whether the folded-exp2 instance may serve these arguments: no bias of either kind, scale > 0.
inline bool mma_fold(const Args& a) { return !a.bias && !a.mass && a.sl2 > 0.f; }

// Which mma kernel serves a head dim: {0, 0} for none (the WMMA kernel then), else {MT, BN}.
// TOMA_FLASH=wmma in the environment forces the WMMA kernel and TOMA_FLASH_CFG=MT,BN picks a
// compiled variant: 1,64 (the default), 1,64,3 (three buffers, see above) or, at D = 128, 2,32
// (read once per process; for benchmarks on a card). 2,64 was measured and dropped: no faster,
// and it spills at D = 128.
struct MmaChoice {
  int mt = 0, bn = 0, st = 2;  // st: K / V buffers (3: one barrier per tile, folded exp2 where no bias)
  int rows() const { return 16 * mt * kWarps; }
};
MmaChoice mma_choice(int D);

// ---- float32 CUDA-core kernel -----------------------------------------------------------------

constexpr int kFQ = 32;  // queries per block: 8 per warp
constexpr int kFK = 32;  // keys per tile: one per lane in the softmax

inline int f32_dpad(int D) { return (D + 3) & ~3; }
inline size_t f32_smem(int D) { return ((size_t)3 * 32 * f32_dpad(D) + 32 * 33 + 32) * 4; }

// grid (ceil(Tq / 32), heads, B), 128 threads; any head dim D <= 32 * NCH, any input dtypes.
// Shared memory: Q transposed [Dp][32] (lane = query reads consecutive words), K and V [32][Dp],
// scores / probabilities [32][33] (padded against bank conflicts), the tile's key bias [32].
// Scores: lane = query row, warp w computes keys w, w + 4, ..., w + 28. Softmax and P.V: warp w
// owns rows 8w .. 8w + 7; in P.V lane l owns head-dim columns l, l + 32, ... of those rows.
template <int NCH>
__global__ void __launch_bounds__(kThreads) f32_attention(const Args a) {
  extern __shared__ __align__(256) unsigned char smem[];
  const int D = a.D, Dp = (D + 3) & ~3;
  float* const Qt = reinterpret_cast<float*>(smem);
  float* const Ks = Qt + 32 * Dp;
  float* const Vs = Ks + 32 * Dp;
  float* const Ss = Vs + 32 * Dp;
  float* const bias_s = Ss + 32 * 33;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int q0 = blockIdx.x * kFQ, head = blockIdx.y, b = blockIdx.z;
  const size_t col0 = (size_t)head * D;
  const size_t qbase = (size_t)b * a.Tq * a.C + col0, kbase = (size_t)b * a.Tk * a.C + col0;

  for (int idx = tid; idx < 32 * Dp; idx += kThreads) {
    const int r = idx / Dp, d = idx - r * Dp;
    const float x = (q0 + r < a.Tq && d < D) ? load_any(a.q, a.qdt, qbase + (size_t)(q0 + r) * a.C + d) : 0.f;
    Qt[d * 32 + r] = x;
  }

  float o[8][NCH], m[8], l[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    m[i] = neg_inf();
    l[i] = 0.f;
#pragma unroll
    for (int c = 0; c < NCH; ++c) o[i][c] = 0.f;
  }

  const int tiles = (a.Tk + kFK - 1) / kFK;
  for (int t = 0; t < tiles; ++t) {
    const int k0 = t * kFK;
    __syncthreads();  // the previous tile's K, V and P are no longer read
    for (int idx = tid; idx < 32 * Dp; idx += kThreads) {
      const int j = idx / Dp, d = idx - j * Dp;
      float kv = 0.f, vv = 0.f;
      if (k0 + j < a.Tk && d < D) {
        const size_t off = kbase + (size_t)(k0 + j) * a.C + d;
        kv = load_any(a.k, a.kdt, off);
        vv = load_any(a.v, a.vdt, off);
      }
      Ks[idx] = kv;
      Vs[idx] = vv;
    }
    if (tid < kFK) bias_s[tid] = key_bias_l2(a, b, k0 + tid);
    __syncthreads();

    {
      float acc[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] = 0.f;
      for (int d = 0; d < Dp; d += 4) {
        const float x0 = Qt[d * 32 + lane], x1 = Qt[(d + 1) * 32 + lane];
        const float x2 = Qt[(d + 2) * 32 + lane], x3 = Qt[(d + 3) * 32 + lane];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float4 kv = *reinterpret_cast<const float4*>(Ks + (warp + 4 * i) * Dp + d);
          acc[i] = fmaf(x0, kv.x, acc[i]);
          acc[i] = fmaf(x1, kv.y, acc[i]);
          acc[i] = fmaf(x2, kv.z, acc[i]);
          acc[i] = fmaf(x3, kv.w, acc[i]);
        }
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) Ss[lane * 33 + warp + 4 * i] = acc[i];
    }
    __syncthreads();

    float alpha[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      float* const srow = Ss + (warp * 8 + i) * 33;
      const float s = fmaf(srow[lane], a.sl2, bias_s[lane]);
      float mx = s;
#pragma unroll
      for (int w = 16; w > 0; w >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, w));
      const float m_new = fmaxf(m[i], mx);
      const float m_use = m_new == neg_inf() ? 0.f : m_new;
      alpha[i] = exp2f(m[i] - m_use);
      const float p = exp2f(s - m_use);
      float sum = p;
#pragma unroll
      for (int w = 16; w > 0; w >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, w);
      l[i] = l[i] * alpha[i] + sum;
      m[i] = m_new;
      srow[lane] = p;
    }
    __syncwarp();  // the warp's own rows of P, written above, are read below

#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int c = 0; c < NCH; ++c) o[i][c] *= alpha[i];
    for (int j = 0; j < kFK; ++j) {
      float p[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) p[i] = Ss[(warp * 8 + i) * 33 + j];
#pragma unroll
      for (int c = 0; c < NCH; ++c) {
        const int d = lane + 32 * c;
        if (d < D) {
          const float vv = Vs[j * Dp + d];
#pragma unroll
          for (int i = 0; i < 8; ++i) o[i][c] = fmaf(p[i], vv, o[i][c]);
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = q0 + warp * 8 + i;
    if (row >= a.Tq) continue;
    const float inv = 1.f / l[i];
    const size_t base = ((size_t)b * a.Tq + row) * a.C + col0;
#pragma unroll
    for (int c = 0; c < NCH; ++c) {
      const int d = lane + 32 * c;
      if (d < D) store_any(a.out, a.odt, base + d, o[i][c] * inv);
    }
  }
}

}  // namespace flash
}  // namespace toma
