// Greedy facility location on the device (SPEC section 4), per (batch element, region).
// Small regions (the tiles, n <= 64): one block computes the float64 Gram matrix in registers from
// shared-memory slices of x, the cosine matrix in shared memory, then the k picks, each one sweep of
// candidate gains and a block argmax. Larger regions (stripes, global): a tiled similarity kernel
// writes each region's float cosine matrix to device memory, then one block per region runs the
// lazy greedy (stale gains are upper bounds because gains only shrink as coverage grows: the best
// bound, once re-evaluated and still best, is the exact argmax), each warp re-evaluating the best
// stale bound of its share of the candidates in every round. The small-region kernel can also
// compute the plan's weights and masses (plan_small_on_device): the tiles' computePlan is one launch.
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "cuda/plan_internal.cuh"
#include "cuda/reduce.cuh"

namespace toma {
namespace cuda {

namespace {

constexpr int kSmallThreads = 256;
constexpr int kPairsPerThread = kSmallRegion * kSmallRegion / kSmallThreads;
constexpr int kSlice = 32;  // channels staged in shared memory at a time (one per lane)
constexpr int kSliceRows = kSmallThreads / kSlice;           // rows one pass of the block stages
constexpr int kLoadsPerThread = kSmallRegion / kSliceRows;   // staged elements per thread per slice
static_assert(kSlice == 32 && kSmallRegion % kSliceRows == 0, "one channel per lane, whole passes");

// The weights phase of select_small (Weigh = true): as weights_kernel and mass_kernel in plan.cu,
// from the float64 cosines the selection already holds.
struct SmallWeights {
  double tau = 0;
  bool hard = false;
  const int64_t* a_off = nullptr;
  int64_t a_total = 0;
  float* A = nullptr;
  float* mass = nullptr;
};

// One block per (region, batch element b0 + blockIdx.y).
// Selection: the float64 Gram matrix in registers from shared-memory slices of x (the next slice
// is loaded into registers while this one is multiplied), the cosines in shared memory (float64;
// the greedy reads them rounded to float, as the CPU's S), then the k picks, each one sweep of
// candidate gains and a block argmax.
// Weigh: then, as the CPU path does for regions of at most 64 tokens (its weights read the same
// float64 Gram cosines), one warp per source writes its whole column of the region's k x n block
// (zeros included, so A needs no memset) and one thread per destination sums its row in source
// order into the mass (the CPU's order).
template <class T, bool Weigh>
__global__ void __launch_bounds__(kSmallThreads, 2)  // room for the 16 float64 accumulators
    select_small(const T* __restrict__ x, int T_, int C, int P, int K, int b0, const int32_t* __restrict__ tokens,
                 const int32_t* __restrict__ offsets, const int32_t* __restrict__ k_off, int32_t* __restrict__ dest,
                 SmallWeights w) {
  const int r = blockIdx.x, b = b0 + blockIdx.y, tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  const int off = offsets[r], n = offsets[r + 1] - off, k = k_off[r + 1] - k_off[r];
  // Rows padded to 33 floats: the threads of a warp read different rows j at the same channel.
  __shared__ float xs[kSmallRegion][kSlice + 1];
  __shared__ double S[kSmallRegion][kSmallRegion + 1];
  __shared__ double inv[kSmallRegion];
  __shared__ double m[kSmallRegion];
  __shared__ int chosen[kSmallRegion];
  __shared__ int local[kSmallRegion];  // Weigh: the region-local token of destination d
  __shared__ int slot[kSmallRegion];   // Weigh: the destination index of a chosen token
  __shared__ Best red[32];

  const T* xb = x + ((size_t)b * T_ + P) * C;
  // This thread stages channel c0 + lane of rows warp + q * kSliceRows.
  int row_token[kLoadsPerThread];
#pragma unroll
  for (int q = 0; q < kLoadsPerThread; ++q) {
    const int i = warp + q * kSliceRows;
    row_token[q] = i < n ? tokens[off + i] : -1;
  }
  float pre[kLoadsPerThread];
  auto fetch = [&](int c0) {
    const int c = c0 + lane;
#pragma unroll
    for (int q = 0; q < kLoadsPerThread; ++q)
      pre[q] = row_token[q] >= 0 && c < C ? to_f(xb[(size_t)row_token[q] * C + c]) : 0.f;
  };
  const int np = n * n;
  double acc[kPairsPerThread];
#pragma unroll
  for (int q = 0; q < kPairsPerThread; ++q) acc[q] = 0;
  fetch(0);
  for (int c0 = 0; c0 < C; c0 += kSlice) {
    const int cw = min(kSlice, C - c0);
#pragma unroll
    for (int q = 0; q < kLoadsPerThread; ++q) xs[warp + q * kSliceRows][lane] = pre[q];
    __syncthreads();
    if (c0 + kSlice < C) fetch(c0 + kSlice);  // in flight during the products below
#pragma unroll
    for (int q = 0; q < kPairsPerThread; ++q) {
      const int p = tid + q * kSmallThreads;
      if (p < np) {
        const int i = p / n, j = p % n;
        double a = acc[q];
        for (int cc = 0; cc < cw; ++cc) a += (double)xs[i][cc] * (double)xs[j][cc];
        acc[q] = a;
      }
    }
    __syncthreads();
  }
  // Norms from the Gram diagonal, as the CPU's small-region path.
#pragma unroll
  for (int q = 0; q < kPairsPerThread; ++q) {
    const int p = tid + q * kSmallThreads;
    if (p < np && p / n == p % n) inv[p / n] = 1.0 / fmax(sqrt(acc[q]), 1e-6);
  }
  __syncthreads();
#pragma unroll
  for (int q = 0; q < kPairsPerThread; ++q) {
    const int p = tid + q * kSmallThreads;
    if (p < np) {
      const int i = p / n, j = p % n;
      S[i][j] = acc[q] * inv[i] * inv[j];
    }
  }
  __syncthreads();
  // The selection's similarity: the float the CPU stores in its S.
  auto sf = [&](int i, int j) { return (double)(float)S[i][j]; };

  // First pick: the largest total similarity (row sums, in order, as the CPU).
  Best mine = none();
  if (tid < n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += sf(tid, i);
    mine = Best{s, tid};
  }
  const int j0 = block_best(mine, red).i;
  // Non-finite input (the binding rejects it first) leaves no finite gain to pick: the region then
  // gets its first k tokens with zero weights and masses, valid indices rather than unwritten ones.
  bool degenerate = j0 == INT_MAX;
  if (!degenerate) {
    if (tid < n) {
      m[tid] = sf(j0, tid);
      chosen[tid] = tid == j0;
    }
    __syncthreads();
  }
  for (int t = 1; t < k && !degenerate; ++t) {
    Best g = none();
    if (tid < n && !chosen[tid]) {
      double s = 0;
      for (int i = 0; i < n; ++i) {
        const double d = sf(i, tid) - m[i];
        s += d > 0 ? d : 0;
      }
      g = Best{s, tid};
    }
    const int c = block_best(g, red).i;
    if (c == INT_MAX) {
      degenerate = true;
      break;
    }
    if (tid < n) {
      m[tid] = fmax(m[tid], sf(c, tid));
      if (tid == c) chosen[tid] = 1;
    }
    __syncthreads();
  }
  if (degenerate) {  // block-uniform: every thread saw the same block_best results
    for (int d = tid; d < k; d += kSmallThreads) dest[(size_t)b * K + k_off[r] + d] = tokens[off + d];
    if constexpr (Weigh) {
      float* Ar = w.A + (size_t)b * w.a_total + w.a_off[r];
      for (int i = tid; i < k * n; i += kSmallThreads) Ar[i] = 0.f;
      for (int d = tid; d < k; d += kSmallThreads) w.mass[(size_t)b * K + k_off[r] + d] = 0.f;
    }
    return;
  }
  // Destinations ascending inside the region: a chosen token's place is the count chosen before it.
  if (tid < n && chosen[tid]) {
    int pos = 0;
    for (int j = 0; j < tid; ++j) pos += chosen[j];
    dest[(size_t)b * K + k_off[r] + pos] = tokens[off + tid];
    if constexpr (Weigh) {
      local[pos] = tid;
      slot[tid] = pos;
    }
  }
  if constexpr (Weigh) {
    __syncthreads();
    float* Ar = w.A + (size_t)b * w.a_total + w.a_off[r];
    const int d0 = lane, d1 = lane + 32;  // the destinations of this lane (k <= n <= 64)
    for (int s = warp; s < n; s += kSmallThreads / 32) {
      float a0 = 0.f, a1 = 0.f;
      if (w.hard) {
        int best;
        if (chosen[s]) {
          best = slot[s];  // destinations keep themselves, even when another is identical
        } else {
          Best c = none();
          if (d0 < k) c = Best{S[local[d0]][s], d0};
          if (d1 < k) c = better(c, Best{S[local[d1]][s], d1});
          best = warp_best(c).i;
          if (best == INT_MAX) best = 0;  // non-finite cosines only (rejected by the binding)
        }
        a0 = d0 == best ? 1.f : 0.f;
        a1 = d1 == best ? 1.f : 0.f;
      } else {
        const double l0 = d0 < k ? w.tau * S[local[d0]][s] : -INFINITY;
        const double l1 = d1 < k ? w.tau * S[local[d1]][s] : -INFINITY;
        const double mx = warp_max(fmax(l0, l1));
        const double e0 = d0 < k ? exp(l0 - mx) : 0, e1 = d1 < k ? exp(l1 - mx) : 0;
        const double sum = warp_sum(e0 + e1);
        if (e0 >= kWeightCutoff) a0 = (float)(e0 / sum);
        if (e1 >= kWeightCutoff) a1 = (float)(e1 / sum);
      }
      if (d0 < k) Ar[(size_t)d0 * n + s] = a0;
      if (d1 < k) Ar[(size_t)d1 * n + s] = a1;
    }
    __syncthreads();  // the block's writes to A are visible to the block
    if (tid < k) {
      const float* row = Ar + (size_t)tid * n;
      double s = 0;
      for (int i = 0; i < n; ++i) s += row[i];
      w.mass[(size_t)b * K + k_off[r] + tid] = (float)s;
    }
  }
}

constexpr int kTile = 16;

// Cosines of one region's token pairs, S[i][j] = dot(x_i, x_j) * inv[max] * inv[min] in float64,
// stored as float. Both orders give the same bits, so S is exactly symmetric.
template <class T>
__global__ void __launch_bounds__(kTile * kTile)
    similarity_tiles(const T* __restrict__ x, int T_, int C, int P, int b, int r0, const int32_t* __restrict__ tokens,
                     const int32_t* __restrict__ offsets, const int64_t* __restrict__ s_off,
                     const double* __restrict__ inv, float* __restrict__ S) {
  const int r = r0 + blockIdx.z;
  const int off = offsets[r], n = offsets[r + 1] - off;
  const int i0 = blockIdx.y * kTile, j0 = blockIdx.x * kTile;
  if (i0 >= n || j0 >= n) return;
  __shared__ float xi[kTile][kSlice + 1], xj[kTile][kSlice + 1];
  const int tx = threadIdx.x, ty = threadIdx.y, e0 = ty * kTile + tx;
  const T* xb = x + ((size_t)b * T_ + P) * C;
  double acc = 0;
  for (int c0 = 0; c0 < C; c0 += kSlice) {
    for (int e = e0; e < kTile * kSlice; e += kTile * kTile) {
      const int row = e / kSlice, cc = e % kSlice, c = c0 + cc;
      xi[row][cc] = i0 + row < n && c < C ? to_f(xb[(size_t)tokens[off + i0 + row] * C + c]) : 0.f;
      xj[row][cc] = j0 + row < n && c < C ? to_f(xb[(size_t)tokens[off + j0 + row] * C + c]) : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int cc = 0; cc < kSlice; ++cc) acc += (double)xi[ty][cc] * (double)xj[tx][cc];
    __syncthreads();
  }
  const int i = i0 + ty, j = j0 + tx;
  if (i < n && j < n) {
    const int hi = tokens[off + max(i, j)], lo = tokens[off + min(i, j)];
    S[s_off[r] + (int64_t)i * n + j] = (float)(acc * inv[hi] * inv[lo]);
  }
}

constexpr int kLazyThreads = 512;

__global__ void __launch_bounds__(kLazyThreads)
    select_lazy(const float* __restrict__ S, const int64_t* __restrict__ s_off, int b, int K,
                const int32_t* __restrict__ tokens, const int32_t* __restrict__ offsets,
                const int32_t* __restrict__ k_off, double* m_all, double* bound_all, int* fresh_all,
                int* taken_all, int32_t* __restrict__ dest) {
  const int r = blockIdx.x, tid = threadIdx.x;
  const int off = offsets[r], n = offsets[r + 1] - off, k = k_off[r + 1] - k_off[r];
  const float* Sr = S + s_off[r];
  double* m = m_all + off;
  double* bound = bound_all + off;
  int* fresh = fresh_all + off;  // the round whose coverage bound[c] was computed with
  int* taken = taken_all + off;
  __shared__ Best red[32];
  __shared__ double dred[32];

  // S is symmetric: column sums read rows of consecutive threads' columns, coalesced.
  Best mine = none();
  for (int c = tid; c < n; c += kLazyThreads) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += Sr[(int64_t)i * n + c];
    mine = better(mine, Best{s, c});
    taken[c] = 0;
    fresh[c] = 0;
  }
  const int j0 = block_best(mine, red).i;
  if (j0 == INT_MAX) return;
  for (int i = tid; i < n; i += kLazyThreads) m[i] = Sr[(int64_t)j0 * n + i];
  if (tid == 0) taken[j0] = 1;
  __syncthreads();
  if (k > 1) {
    for (int c = tid; c < n; c += kLazyThreads) {
      if (taken[c]) continue;
      double s = 0;
      for (int i = 0; i < n; ++i) {
        const double d = (double)Sr[(int64_t)i * n + c] - m[i];
        s += d > 0 ? d : 0;
      }
      bound[c] = s;
      fresh[c] = 1;
    }
    __syncthreads();
  }
  for (int t = 1; t < k; ++t) {
    int pick;
    for (;;) {
      Best top = none();
      for (int c = tid; c < n; c += kLazyThreads)
        if (!taken[c]) top = better(top, Best{bound[c], c});
      top = block_best(top, red);
      if (top.i == INT_MAX) {  // no finite bound left (non-finite input): stop, never index past n
        pick = -1;
        break;
      }
      if (fresh[top.i] == t) {
        pick = top.i;
        break;
      }
      const float* row = Sr + (int64_t)top.i * n;
      double part = 0;
      for (int i = tid; i < n; i += kLazyThreads) {
        const double d = (double)row[i] - m[i];
        part += d > 0 ? d : 0;
      }
      const double g = block_sum(part, dred);
      if (tid == 0) {
        bound[top.i] = g;
        fresh[top.i] = t;
      }
      __syncthreads();
    }
    if (pick < 0) break;
    const float* row = Sr + (int64_t)pick * n;
    for (int i = tid; i < n; i += kLazyThreads) m[i] = fmax(m[i], (double)row[i]);
    if (tid == 0) taken[pick] = 1;
    __syncthreads();
  }
  using Scan = cub::BlockScan<int, kLazyThreads>;
  __shared__ typename Scan::TempStorage scan;
  __shared__ int base;
  if (tid == 0) base = 0;
  __syncthreads();
  for (int c0 = 0; c0 < n; c0 += kLazyThreads) {
    const int c = c0 + tid;
    const int flag = c < n && taken[c] ? 1 : 0;
    int pos, total;
    Scan(scan).ExclusiveSum(flag, pos, total);
    if (flag) dest[(int64_t)b * K + k_off[r] + base + pos] = tokens[off + c];
    __syncthreads();
    if (tid == 0) base += total;
    __syncthreads();
  }
}

}  // namespace

void select_on_device(ConstTokens x, DevicePlan& plan, const double* inv, int Bsel) {
  const int R = plan.R, P = plan.P, K = plan.K, N = plan.N;
  const auto* tokens = plan.tokens.as<int32_t>();
  const auto* offsets = plan.offsets.as<int32_t>();
  const auto* k_off = plan.k_off.as<int32_t>();
  auto* dest = plan.dest.as<int32_t>();
  if (plan.max_n <= kSmallRegion) {
    for (int b0 = 0; b0 < Bsel; b0 += kMaxGridYZ) {
      with_dtype(x.dtype, [&](auto t) {
        using T = decltype(t);
        select_small<T, false><<<dim3(R, std::min(kMaxGridYZ, Bsel - b0)), kSmallThreads, 0, kStream>>>(
            static_cast<const T*>(x.data), x.T, x.C, P, K, b0, tokens, offsets, k_off, dest, SmallWeights{});
      });
      TOMA_CUDA_LAUNCHED("computePlan (selection)");
    }
    return;
  }
  std::vector<int64_t> s_off(R + 1, 0);
  for (int r = 0; r < R; ++r) s_off[r + 1] = s_off[r] + (int64_t)plan.regions.size(r) * plan.regions.size(r);
  DeviceBuffer d_soff((R + 1) * sizeof(int64_t), "computePlan (similarity offsets)");
  DeviceBuffer S(s_off[R] * sizeof(float), "computePlan (region similarity matrices)");
  DeviceBuffer m(N * sizeof(double), "computePlan (coverage)");
  DeviceBuffer bound(N * sizeof(double), "computePlan (gain bounds)");
  DeviceBuffer fresh(N * sizeof(int), "computePlan (gain rounds)");
  DeviceBuffer taken(N * sizeof(int), "computePlan (picks)");
  TOMA_CUDA_CHECK("computePlan", cudaMemcpyAsync(d_soff.data(), s_off.data(), (R + 1) * sizeof(int64_t),
                                                 cudaMemcpyHostToDevice, kStream));
  const int tiles = (plan.max_n + kTile - 1) / kTile;
  if (tiles > kMaxGridYZ)
    throw DeviceError("computePlan: a region of " + std::to_string(plan.max_n) +
                      " tokens is more than the CUDA selection handles (1048560); use smaller regions");
  for (int b = 0; b < Bsel; ++b) {
    for (int r0 = 0; r0 < R; r0 += kMaxGridYZ) {
      with_dtype(x.dtype, [&](auto t) {
        using T = decltype(t);
        similarity_tiles<T><<<dim3(tiles, tiles, std::min(kMaxGridYZ, R - r0)), dim3(kTile, kTile), 0, kStream>>>(
            static_cast<const T*>(x.data), x.T, x.C, P, b, r0, tokens, offsets, d_soff.as<int64_t>(),
            inv + (size_t)b * N, S.as<float>());
      });
      TOMA_CUDA_LAUNCHED("computePlan (similarities)");
    }
    select_lazy<<<R, kLazyThreads, 0, kStream>>>(S.as<float>(), d_soff.as<int64_t>(), b, K, tokens, offsets, k_off,
                                                 m.as<double>(), bound.as<double>(), fresh.as<int>(), taken.as<int>(),
                                                 dest);
    TOMA_CUDA_LAUNCHED("computePlan (selection)");
  }
  // The scratch buffers are freed on return; cudaFree waits for the kernels using them.
}

void plan_small_on_device(ConstTokens x, DevicePlan& plan, bool hard) {
  SmallWeights w;
  w.tau = plan.opts.tau;
  w.hard = hard;
  w.a_off = plan.a_off.as<int64_t>();
  w.a_total = plan.a_total;
  w.A = plan.A.as<float>();
  w.mass = plan.mass.as<float>();
  for (int b0 = 0; b0 < plan.B; b0 += kMaxGridYZ) {
    with_dtype(x.dtype, [&](auto t) {
      using T = decltype(t);
      select_small<T, true><<<dim3(plan.R, std::min(kMaxGridYZ, plan.B - b0)), kSmallThreads, 0, kStream>>>(
          static_cast<const T*>(x.data), x.T, x.C, plan.P, plan.K, b0, plan.tokens.as<int32_t>(),
          plan.offsets.as<int32_t>(), plan.k_off.as<int32_t>(), plan.dest.as<int32_t>(), w);
    });
    TOMA_CUDA_LAUNCHED("computePlan (selection and weights)");
  }
}

}  // namespace cuda
}  // namespace toma
