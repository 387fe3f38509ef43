// Unmerge on the device: x[P + token s] = sum_d A[d, s] y[P + d], prefix rows copied. One block
// row per image token; its weights are column s of its region's block (a strided broadcast read),
// zero weights skipped.
#include <algorithm>
#include <string>

#include "cuda/rows.cuh"
#include "ops/cuda.h"

namespace toma {
namespace cuda {
namespace {

template <class Ti, class To, int V>
__global__ void unmerge_kernel(const Ti* __restrict__ y, To* __restrict__ x, int Ty, int Tx, int C, int P, int b0,
                               const int32_t* __restrict__ offsets, const int32_t* __restrict__ k_off,
                               const int64_t* __restrict__ a_off, const int32_t* __restrict__ token_slot,
                               const int32_t* __restrict__ token_region, const float* __restrict__ A,
                               int64_t a_total) {
  const int row = blockIdx.x, b = b0 + blockIdx.z;
  const int c = (blockIdx.y * blockDim.x + threadIdx.x) * V;
  if (c >= C) return;
  const Ti* yb = y + (size_t)b * Ty * C;
  To* out = x + ((size_t)b * Tx + row) * C + c;
  float acc[V];
  if (row < P) {
    load_row<V>(yb + (size_t)row * C + c, acc);
    store_row<V>(out, acc);
    return;
  }
  const int t = row - P, r = token_region[t];
  const int off = offsets[r], n = offsets[r + 1] - off, s = token_slot[t] - off;
  const int k0 = k_off[r], k = k_off[r + 1] - k0;
  const float* a = A + (size_t)b * a_total + a_off[r] + s;
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = 0.f;
  for (int d = 0; d < k; ++d) {
    const float w = a[(size_t)d * n];
    if (w == 0.f) continue;
    float v[V];
    load_row<V>(yb + (size_t)(P + k0 + d) * C + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] += w * v[i];
  }
  store_row<V>(out, acc);
}

}  // namespace
}  // namespace cuda

void cuda::enqueue_unmerge(const DevicePlan& plan, ConstTokens y, Tokens x) {
  if (y.B != plan.B || y.T != plan.P + plan.K || x.B != plan.B || x.T != plan.P + plan.N || x.C != y.C)
    throw range_error("unmerge: y [" + std::to_string(y.B) + ", " + std::to_string(y.T) + ", " + std::to_string(y.C) +
                      "] does not fit the plan: expected [" + std::to_string(plan.B) + ", " +
                      std::to_string(plan.P + plan.K) + ", C]");
  const int rows = plan.P + plan.N;
  if (rows == 0 || y.C == 0 || y.B == 0) return;
  const cuda::RowLaunch l =
      cuda::row_launch(y.C, y.data, x.data, toma::dtype_size(y.dtype) == 2 && toma::dtype_size(x.dtype) == 2);
  if (l.chunks > cuda::kMaxGridYZ) throw range_error("unmerge: C = " + std::to_string(y.C) + " channels is too many for the CUDA kernel");
  cuda::with_dtype(y.dtype, [&](auto ti) {
    cuda::with_dtype(x.dtype, [&](auto to) {
      using Ti = decltype(ti);
      using To = decltype(to);
      auto launch = [&](auto kernel) {
        for (int b0 = 0; b0 < y.B; b0 += cuda::kMaxGridYZ)
          kernel<<<dim3(rows, l.chunks, std::min(cuda::kMaxGridYZ, y.B - b0)), l.threads, 0, cuda::kStream>>>(
            static_cast<const Ti*>(y.data), static_cast<To*>(x.data), y.T, x.T, y.C, plan.P, b0,
            plan.offsets.as<int32_t>(), plan.k_off.as<int32_t>(), plan.a_off.as<int64_t>(),
            plan.token_slot.as<int32_t>(), plan.token_region.as<int32_t>(), plan.A.as<float>(), plan.a_total);
      };
      if constexpr (sizeof(Ti) == 2 && sizeof(To) == 2) {
        if (l.vec == 8) return launch(cuda::unmerge_kernel<Ti, To, 8>);
      }
      if (l.vec == 4) launch(cuda::unmerge_kernel<Ti, To, 4>);
      else launch(cuda::unmerge_kernel<Ti, To, 1>);
    });
  });
  TOMA_CUDA_LAUNCHED("unmerge");
}

void unmerge_cuda(const DevicePlan& plan, ConstTokens y, Tokens x) {
  cuda::enqueue_unmerge(plan, y, x);
  cuda::synchronize("unmerge");
}

}  // namespace toma
