// Dense attention on the CPU, flash-style: per (batch, head) the keys and values are packed once
// into the panels the register-tiled GEMM reads; each block of queries then streams over key
// blocks with an online softmax, so memory stays O(block) and the score matrix never exists.
#include "ops/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/scratch.h"
#include "core/thread_pool.h"
#include "cpu/simd/kernels.h"

namespace toma {

namespace {

constexpr int kQueryBlock = 96;  // multiple of every kernel's mr (12, 6, 4)
constexpr int kKeyBlock = 256;   // multiple of every kernel's nr (32, 16)

inline int round_up(int a, int b) { return (a + b - 1) / b * b; }

// Channels [c0, c0 + D) of row j of batch b as float32: straight from t, or summed through g.
// Returns the row: the source itself when it is float32 and not gathered, else dst.
const float* load_row(const ConstTokens& t, const RowGather* g, int b, int j, int c0, int D, float* dst, float* tmp) {
  if (!g) {
    const char* src = static_cast<const char*>(t.data) + (((size_t)b * t.T + j) * t.C + c0) * dtype_size(t.dtype);
    if (t.dtype == DType::F32) return reinterpret_cast<const float*>(src);
    to_f32(src, t.dtype, dst, D);
    return dst;
  }
  const ConstTokens& s = g->src;
  const size_t es = dtype_size(s.dtype);
  auto row = [&](int r) { return static_cast<const char*>(s.data) + (((size_t)b * s.T + r) * s.C + c0) * es; };
  if (j < g->prefix) {
    if (s.dtype == DType::F32) return reinterpret_cast<const float*>(row(j));
    to_f32(row(j), s.dtype, dst, D);
    return dst;
  }
  const CpuKernels& K = cpu_kernels();
  const int64_t* ptr = g->ptr[b];
  if (s.dtype == DType::F32) {
    const int64_t e0 = ptr[j - g->prefix], n = ptr[j - g->prefix + 1] - e0;
    const float* small[64];  // a merged token sums one region's rows: 16 for 4x4 tiles
    std::vector<const float*> big;
    const float** rows = small;
    if (n > 64) {
      big.resize((size_t)n);
      rows = big.data();
    }
    for (int64_t r = 0; r < n; ++r) rows[r] = reinterpret_cast<const float*>(row(g->prefix + g->idx[b][e0 + r]));
    K.wsum(dst, rows, g->w[b] + e0, (int)n, D);
    return dst;
  }
  std::fill(dst, dst + D, 0.f);
  for (int64_t e = ptr[j - g->prefix]; e < ptr[j - g->prefix + 1]; ++e) {
    const char* r = row(g->prefix + g->idx[b][e]);
    const float* rf = reinterpret_cast<const float*>(r);
    if (s.dtype != DType::F32) {
      to_f32(r, s.dtype, tmp, D);
      rf = tmp;
    }
    K.axpy(dst, g->w[b][e], rf, D);
  }
  return dst;
}

}  // namespace

void attention_cpu(const AttentionParams& p) {
  const CpuKernels& K = cpu_kernels();
  const int MR = K.mr, NR = K.nr;
  const int B = p.q.B, Tq = p.q.T, Tk = p.k.T, C = p.q.C, H = p.heads, D = C / H;
  const float scale = p.scale > 0 ? p.scale : 1.0f / std::sqrt((float)D);
  const float qs = scale * 1.4426950408889634f;  // scores in log2 units: softmax by exp2
  const int TkP = round_up(Tk, NR), Dpan = (D + NR - 1) / NR, Dp = Dpan * NR;
  const size_t oes = dtype_size(p.out.dtype);
  const int BH = B * H, panels = TkP / NR;
  const size_t kt_size = (size_t)TkP * D, vp_size = (size_t)Dpan * TkP * NR;
  // Every (batch, head) is packed first, then one parallel loop runs over all (batch, head,
  // query block): no barrier per head, and the threads stay balanced when a head has few blocks.
  const int TqP = round_up(Tq, MR);
  const size_t q_size = (size_t)TqP * D;
  Scratch kt_buf(kt_size * BH), vp_buf(vp_size * BH), q_buf(q_size * BH);
  const int qblocks = (Tq + kQueryBlock - 1) / kQueryBlock;
  // The key bias in the kernel's log2 units.
  std::vector<float> bias;
  if (p.key_bias) {
    bias.resize((size_t)B * Tk);
    for (size_t i = 0; i < bias.size(); ++i) bias[i] = p.key_bias[i] * 1.4426950408889634f;
  }

  // Non-finite q / k rows, noted as they are loaded (each row once: k when packed, q per block).
  std::atomic<bool> nonfinite{false};
  auto note_row = [&](const float* r, int n) {
    if (!p.qk_nonfinite) return;
    uint32_t bad = 0;
    for (int d = 0; d < n; ++d) {
      uint32_t u;
      std::memcpy(&u, r + d, 4);
      bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    if (bad) nonfinite.store(true, std::memory_order_relaxed);
  };

  // Packing reads each source row once, whole, and splits it among the heads: reading row
  // slices head by head walks the tensor at a stride of C floats, a TLB miss per head-row, and
  // that cost as much as the attention itself at 512 tokens. A gathered (merged) row is summed
  // over all C channels at once for the same reason.
  // Kt as [TkP / NR][D][NR], V as [Dpan][TkP][NR] per (batch, head); padding is zero.
  parallel_for((int64_t)B * panels, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> row(std::max(C, 1)), tmp(std::max(C, 1));
    for (int64_t t = p0; t < p1; ++t) {
      const int b = (int)(t / panels), jp = (int)(t % panels);
      for (int jj = 0; jj < NR; ++jj) {
        const int j = jp * NR + jj;
        const bool real = j < Tk;
        const float* src = row.data();
        if (real) {
          src = load_row(p.k, p.k_rows, b, j, 0, C, row.data(), tmp.data());
          note_row(src, C);
        }
        for (int h = 0; h < H; ++h) {
          float* const Ktp = kt_buf.data() + (size_t)(b * H + h) * kt_size + (size_t)jp * D * NR + jj;
          const float* r = src + (size_t)h * D;
          for (int d = 0; d < D; ++d) Ktp[(size_t)d * NR] = real ? r[d] : 0.f;
        }
        if (real) src = load_row(p.v, p.v_rows, b, j, 0, C, row.data(), tmp.data());
        for (int h = 0; h < H; ++h) {
          float* const Vpp = vp_buf.data() + (size_t)(b * H + h) * vp_size + (size_t)j * NR;
          const float* r = src + (size_t)h * D;
          for (int d = 0; d < Dp; ++d) Vpp[(size_t)(d / NR) * TkP * NR + d % NR] = real && d < D ? r[d] : 0.f;
        }
      }
    }
  });
  // Q as [TqP][D] per (batch, head), pre-scaled; rows past Tq are zero (the last block's tile).
  constexpr int kRowChunk = 32;
  const int qchunks = (TqP + kRowChunk - 1) / kRowChunk;
  parallel_for((int64_t)B * qchunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> row(std::max(C, 1)), tmp(std::max(C, 1));
    for (int64_t c = c0; c < c1; ++c) {
      const int b = (int)(c / qchunks), i0 = (int)(c % qchunks) * kRowChunk;
      for (int i = i0; i < std::min(i0 + kRowChunk, TqP); ++i) {
        if (i < Tq) {
          const float* src = load_row(p.q, p.q_rows, b, i, 0, C, row.data(), tmp.data());
          note_row(src, C);
          for (int h = 0; h < H; ++h) {
            float* dst = q_buf.data() + (size_t)(b * H + h) * q_size + (size_t)i * D;
            for (int d = 0; d < D; ++d) dst[d] = src[(size_t)h * D + d] * qs;
          }
        } else {
          for (int h = 0; h < H; ++h) std::fill_n(q_buf.data() + (size_t)(b * H + h) * q_size + (size_t)i * D, D, 0.f);
        }
      }
    }
  });

  parallel_for((int64_t)BH * qblocks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> S((size_t)kQueryBlock * kKeyBlock);
    std::vector<float> O((size_t)kQueryBlock * Dp), m(kQueryBlock), l(kQueryBlock), orow(Dp);
    for (int64_t t = t0; t < t1; ++t) {
      const int bh = (int)(t / qblocks), blk = (int)(t % qblocks), b = bh / H, h = bh % H;
      const float* const Ktp = kt_buf.data() + (size_t)bh * kt_size;
      const float* const Vpp = vp_buf.data() + (size_t)bh * vp_size;
      const int q0 = blk * kQueryBlock, mb = std::min(kQueryBlock, Tq - q0);
      const int mbp = round_up(mb, MR);
      const float* const Q = q_buf.data() + (size_t)bh * q_size + (size_t)q0 * D;
      std::fill(O.begin(), O.begin() + (size_t)mbp * Dp, 0.f);
      std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
      std::fill(l.begin(), l.end(), 0.f);
      for (int j0 = 0; j0 < TkP; j0 += kKeyBlock) {
        const int nb = std::min(kKeyBlock, TkP - j0);
        // Panel-major: one key panel (D x NR) stays in L1 across all row tiles.
        for (int jp = 0; jp < nb; jp += NR)
          for (int i0 = 0; i0 < mbp; i0 += MR)
            K.gemm(D, Q + (size_t)i0 * D, D, Ktp + (size_t)(j0 + jp) * D,
                   S.data() + (size_t)i0 * kKeyBlock + jp, kKeyBlock, 0);
        const int valid = std::min(nb, Tk - j0);
        const float* kb = bias.empty() ? nullptr : bias.data() + (size_t)b * Tk + j0;
        for (int i = 0; i < mbp; ++i) {
          float* s = S.data() + (size_t)i * kKeyBlock;
          if (kb) K.axpy(s, 1.f, kb, valid);
          for (int j = valid; j < nb; ++j) s[j] = -std::numeric_limits<float>::infinity();
          const float mx = K.max(s, nb);
          const float mnew = std::max(m[i], mx);
          const float alpha = std::exp2(m[i] - mnew);  // m = -inf on the first block: 0
          l[i] = l[i] * alpha + K.exp2_sum(s, mnew, nb);
          m[i] = mnew;
          if (alpha != 1.f) K.scale(O.data() + (size_t)i * Dp, alpha, Dp);
        }
        for (int dp = 0; dp < Dpan; ++dp)
          for (int i0 = 0; i0 < mbp; i0 += MR)
            K.gemm(nb, S.data() + (size_t)i0 * kKeyBlock, kKeyBlock,
                   Vpp + ((size_t)dp * TkP + j0) * NR, O.data() + (size_t)i0 * Dp + dp * NR,
                   Dp, 1);
      }
      for (int i = 0; i < mb; ++i) {
        const float inv = 1.f / l[i];
        for (int d = 0; d < D; ++d) orow[d] = O[(size_t)i * Dp + d] * inv;
        char* dst = static_cast<char*>(p.out.data) + (((size_t)b * Tq + q0 + i) * C + (size_t)h * D) * oes;
        from_f32(orow.data(), dst, p.out.dtype, D);
      }
    }
  });
  if (p.qk_nonfinite && nonfinite.load()) *p.qk_nonfinite = true;
}

}  // namespace toma
