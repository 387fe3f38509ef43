// Block-wide reductions in a fixed order (the same inputs give the same bits, whichever thread
// reads the result), with ties resolved to the lowest index as on the CPU. The lazy greedy's first
// bounds are sums in candidate order and its re-evaluations these tree sums: they can differ in the
// last bit, which could only change a pick on a near-tie (SPEC 9 allows f(S) within 1e-5).
#pragma once
#include <climits>
#include <cmath>

namespace toma {
namespace cuda {

struct Best {
  double v;
  int i;
};

__device__ __forceinline__ Best none() { return Best{-INFINITY, INT_MAX}; }

__device__ __forceinline__ Best better(Best a, Best b) {
  return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

__device__ __forceinline__ Best warp_best(Best x) {
  for (int o = 16; o > 0; o >>= 1) {
    const Best y{__shfl_xor_sync(0xffffffffu, x.v, o), __shfl_xor_sync(0xffffffffu, x.i, o)};
    x = better(x, y);
  }
  return x;
}

__device__ __forceinline__ double warp_sum(double x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__device__ __forceinline__ double warp_max(double x) {
  for (int o = 16; o > 0; o >>= 1) x = fmax(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Every thread of the block calls these (blockDim.x a multiple of 32) and gets the result.
// `red` holds 32 entries in shared memory.
__device__ __forceinline__ Best block_best(Best x, Best* red) {
  x = warp_best(x);
  __syncthreads();  // the previous call may still be reading red
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = x;
  __syncthreads();
  Best r = red[0];
  for (int w = 1; w < (int)(blockDim.x >> 5); ++w) r = better(r, red[w]);
  return r;
}

__device__ __forceinline__ double block_sum(double x, double* red) {
  x = warp_sum(x);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = x;
  __syncthreads();
  double r = red[0];
  for (int w = 1; w < (int)(blockDim.x >> 5); ++w) r += red[w];
  return r;
}

}  // namespace cuda
}  // namespace toma
