// Row access for the merge and unmerge kernels: V consecutive channels of one token as floats,
// with one vector load or store when V = 4 (16 bytes of float, 8 bytes of a half type).
#pragma once
#include <cstring>

#include "cuda/common.cuh"

namespace toma {
namespace cuda {

template <int V, class T>
__device__ __forceinline__ void load_row(const T* p, float (&o)[V]) {
  if constexpr (V == 4 && sizeof(T) == 4) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
  } else if constexpr (V == 4 && sizeof(T) == 2) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    T t[4];
    memcpy(t, &v, sizeof v);
#pragma unroll
    for (int i = 0; i < 4; ++i) o[i] = to_f(t[i]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) o[i] = to_f(p[i]);
  }
}

template <int V, class T>
__device__ __forceinline__ void store_row(T* p, const float (&v)[V]) {
  if constexpr (V == 4 && sizeof(T) == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else if constexpr (V == 4 && sizeof(T) == 2) {
    T t[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) t[i] = from_f<T>(v[i]);
    uint2 u;
    memcpy(&u, t, sizeof u);
    *reinterpret_cast<uint2*>(p) = u;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) p[i] = from_f<T>(v[i]);
  }
}

// The launch shape of a row kernel: one block row per output token, threads over channels.
struct RowLaunch {
  int vec;      // 4 when every row start is aligned for a vector access, else 1
  int threads;  // per block
  int chunks;   // blocks per row
};

inline RowLaunch row_launch(int C, const void* a, const void* b) {
  const bool aligned = C % 4 == 0 && reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0;
  RowLaunch l;
  l.vec = aligned ? 4 : 1;
  const int lanes = (C + l.vec - 1) / l.vec;
  l.threads = std::min(256, std::max(32, (lanes + 31) / 32 * 32));
  l.chunks = (lanes + l.threads - 1) / l.threads;
  return l;
}

}  // namespace cuda
}  // namespace toma
