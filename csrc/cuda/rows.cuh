// Row access for the merge and unmerge kernels: V consecutive channels of one token as floats,
// with one vector load or store of V * sizeof(T) bytes when that is 8 or 16.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/common.cuh"

namespace toma {
namespace cuda {

template <int V, class T>
__device__ __forceinline__ void load_row(const T* p, float (&o)[V]) {
  if constexpr (V == 4 && sizeof(T) == 4) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
  } else if constexpr (V * sizeof(T) == 8 || V * sizeof(T) == 16) {
    using Word = typename std::conditional<V * sizeof(T) == 8, uint2, uint4>::type;
    const Word v = *reinterpret_cast<const Word*>(p);
    T t[V];
    memcpy(t, &v, sizeof v);
#pragma unroll
    for (int i = 0; i < V; ++i) o[i] = to_f(t[i]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) o[i] = to_f(p[i]);
  }
}

template <int V, class T>
__device__ __forceinline__ void store_row(T* p, const float (&v)[V]) {
  if constexpr (V == 4 && sizeof(T) == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else if constexpr (V * sizeof(T) == 8 || V * sizeof(T) == 16) {
    using Word = typename std::conditional<V * sizeof(T) == 8, uint2, uint4>::type;
    T t[V];
#pragma unroll
    for (int i = 0; i < V; ++i) t[i] = from_f<T>(v[i]);
    Word u;
    memcpy(&u, t, sizeof u);
    *reinterpret_cast<Word*>(p) = u;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) p[i] = from_f<T>(v[i]);
  }
}

// The launch shape of a row kernel: one block row per output token, threads over channels.
struct RowLaunch {
  int vec;      // channels per thread: 8 (16-byte accesses of two half types), 4, or 1 (unaligned)
  int threads;  // per block
  int chunks;   // blocks per row
};

// halves: both tensors hold 2-byte elements.
inline RowLaunch row_launch(int C, const void* a, const void* b, bool halves) {
  const bool aligned16 = reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0;
  RowLaunch l;
  l.vec = halves && aligned16 && C % 8 == 0 ? 8 : aligned16 && C % 4 == 0 ? 4 : 1;
  const int lanes = (C + l.vec - 1) / l.vec;
  l.threads = std::min(256, std::max(32, (lanes + 31) / 32 * 32));
  l.chunks = (lanes + l.threads - 1) / l.threads;
  return l;
}

}  // namespace cuda
}  // namespace toma
