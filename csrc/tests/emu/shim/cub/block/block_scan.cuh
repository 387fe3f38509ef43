// Stand-in for cub::BlockScan<T, N>::ExclusiveSum(in, out, aggregate) in the emulator. Like cub,
// the caller must __syncthreads() before reusing the TempStorage; one barrier inside (after the
// inputs are written) as cub's own.
#pragma once
namespace cub {
template <class T, int N>
struct BlockScan {
  struct TempStorage { T v[N]; };
  TempStorage& s;
  explicit BlockScan(TempStorage& st) : s(st) {}
  void ExclusiveSum(T in, T& out, T& aggregate) {
    if ((int)(blockDim.x * blockDim.y * blockDim.z) != N) ::emu::fail("BlockScan: block size differs from N");
    const int t = (int)threadIdx.x;
    s.v[t] = in;
    __syncthreads();
    T acc = T(), all = T();
    for (int i = 0; i < N; ++i) {
      if (i < t) acc += s.v[i];
      all += s.v[i];
    }
    out = acc;
    aggregate = all;
  }
};
}  // namespace cub
