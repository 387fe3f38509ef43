// Merge on the device: y[P + j] = sum_s (A[j, s] / mass[j]) x[P + token s], prefix rows copied.
// One block row per output token; the weights of a merged token are one contiguous row of its
// region's block, read by every thread (a broadcast), and zero weights are skipped, so each output
// reads only the tokens it averages.
#include <algorithm>
#include <string>

#include "cuda/rows.cuh"
#include "ops/cuda.h"

namespace toma {
namespace cuda {
namespace {

// blockIdx.z in [0, nb): batch element b0 + z of x -> y; in [nb, 2 nb) (a pair launch): of x2 -> y2.
template <class Ti, class To, int V>
__global__ void merge_kernel(const Ti* __restrict__ x, To* __restrict__ y, const Ti* __restrict__ x2,
                             To* __restrict__ y2, int nb, int Tx, int Ty, int C, int P, int b0, int K,
                             const int32_t* __restrict__ tokens, const int32_t* __restrict__ offsets,
                             const int32_t* __restrict__ k_off, const int64_t* __restrict__ a_off,
                             const int32_t* __restrict__ dest_region, const float* __restrict__ A, int64_t a_total,
                             const float* __restrict__ mass) {
  const int second = (int)blockIdx.z >= nb;
  if (second) x = x2, y = y2;
  const int row = blockIdx.x, b = b0 + (int)blockIdx.z - (second ? nb : 0);
  const int c = (blockIdx.y * blockDim.x + threadIdx.x) * V;
  if (c >= C) return;
  const Ti* xb = x + (size_t)b * Tx * C;
  To* out = y + ((size_t)b * Ty + row) * C + c;
  float acc[V];
  if (row < P) {
    load_row<V>(xb + (size_t)row * C + c, acc);
    store_row<V>(out, acc);
    return;
  }
  const int j = row - P, r = dest_region[j];
  const int off = offsets[r], n = offsets[r + 1] - off;
  const float* a = A + (size_t)b * a_total + a_off[r] + (size_t)(j - k_off[r]) * n;
  const float m = mass[(size_t)b * K + j];
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = 0.f;
  for (int s = 0; s < n; ++s) {
    const float w = a[s];
    if (w == 0.f) continue;
    const float wm = w / m;  // the merge weight (the CPU rounds a / mass from float64: within 1 ulp)
    float v[V];
    load_row<V>(xb + (size_t)(P + tokens[off + s]) * C + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] += wm * v[i];
  }
  store_row<V>(out, acc);
}

}  // namespace
}  // namespace cuda

namespace {

// x2 / y2 null: one merge; else both pairs in the same launch.
void enqueue_merge_impl(const DevicePlan& plan, ConstTokens x, Tokens y, const void* x2, void* y2) {
  if (x.B != plan.B || x.T != plan.P + plan.N || y.B != plan.B || y.T != plan.P + plan.K || y.C != x.C)
    throw range_error("merge: x [" + std::to_string(x.B) + ", " + std::to_string(x.T) + ", " + std::to_string(x.C) +
                      "] does not fit the plan: expected [" + std::to_string(plan.B) + ", " +
                      std::to_string(plan.P + plan.N) + ", C]");
  const int rows = plan.P + plan.K;
  if (rows == 0 || x.C == 0 || x.B == 0) return;
  const cuda::RowLaunch l =
      cuda::row_launch(x.C, x.data, y.data, toma::dtype_size(x.dtype) == 2 && toma::dtype_size(y.dtype) == 2);
  if (l.chunks > cuda::kMaxGridYZ) throw range_error("merge: C = " + std::to_string(x.C) + " channels is too many for the CUDA kernel");
  cuda::with_dtype(x.dtype, [&](auto ti) {
    cuda::with_dtype(y.dtype, [&](auto to) {
      using Ti = decltype(ti);
      using To = decltype(to);
      const int pairs = x2 ? 2 : 1, slice = cuda::kMaxGridYZ / pairs;
      auto launch = [&](auto kernel) {
        for (int b0 = 0; b0 < x.B; b0 += slice) {
          const int nb = std::min(slice, x.B - b0);
          kernel<<<dim3(rows, l.chunks, nb * pairs), l.threads, 0, cuda::kStream>>>(
            static_cast<const Ti*>(x.data), static_cast<To*>(y.data), static_cast<const Ti*>(x2 ? x2 : x.data),
            static_cast<To*>(y2 ? y2 : y.data), nb, x.T, y.T, x.C, plan.P, b0, plan.K,
            plan.tokens.as<int32_t>(), plan.offsets.as<int32_t>(), plan.k_off.as<int32_t>(), plan.a_off.as<int64_t>(),
            plan.dest_region.as<int32_t>(), plan.A.as<float>(), plan.a_total, plan.mass.as<float>());
        }
      };
      if constexpr (sizeof(Ti) == 2 && sizeof(To) == 2) {
        if (l.vec == 8) return launch(cuda::merge_kernel<Ti, To, 8>);
      }
      if (l.vec == 4) launch(cuda::merge_kernel<Ti, To, 4>);
      else launch(cuda::merge_kernel<Ti, To, 1>);
    });
  });
  TOMA_CUDA_LAUNCHED("merge");
}

}  // namespace

void cuda::enqueue_merge(const DevicePlan& plan, ConstTokens x, Tokens y) { enqueue_merge_impl(plan, x, y, nullptr, nullptr); }

void cuda::enqueue_merge2(const DevicePlan& plan, ConstTokens x1, Tokens y1, ConstTokens x2, Tokens y2) {
  if (x2.dtype != x1.dtype || y2.dtype != y1.dtype || x2.B != x1.B || x2.T != x1.T || x2.C != x1.C || y2.B != y1.B ||
      y2.T != y1.T || y2.C != y1.C)
    throw range_error("merge: the two tensors of a pair merge differ in dtype or shape");
  // The vector width is chosen on x1 / y1's alignment: the pair must allow it too.
  const bool same_align = (((uintptr_t)x1.data ^ (uintptr_t)x2.data) & 15) == 0 && (((uintptr_t)y1.data ^ (uintptr_t)y2.data) & 15) == 0;
  if (!same_align) {
    enqueue_merge_impl(plan, x1, y1, nullptr, nullptr);
    enqueue_merge_impl(plan, x2, y2, nullptr, nullptr);
    return;
  }
  enqueue_merge_impl(plan, x1, y1, x2.data, y2.data);
}

void merge_cuda(const DevicePlan& plan, ConstTokens x, Tokens y) {
  cuda::enqueue_merge(plan, x, y);
  cuda::synchronize("merge");
}

}  // namespace toma
