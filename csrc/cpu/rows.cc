#include "cpu/rows.h"

#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/simd/kernels.h"

namespace toma {

void sparse_rows(const int64_t* const* ptr, const int32_t* const* idx, const float* const* w,
                 int rows, int copy, ConstTokens src, int src_off, Tokens dst, int dst_off) {
  const CpuKernels& K = cpu_kernels();
  const int B = src.B, C = src.C;
  const size_t ses = dtype_size(src.dtype), des = dtype_size(dst.dtype);
  const bool f32_in = src.dtype == DType::F32, f32_out = dst.dtype == DType::F32;
  const int64_t total = (int64_t)B * (rows + copy);
  // About 64 KB of output per chunk keeps scheduling cheap at small C.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max(C, 1));
  parallel_for(total, grain, [&](int64_t t0, int64_t t1) {
    std::vector<float> acc(f32_out ? 0 : C), tmp(f32_in ? 0 : C);
    std::vector<const float*> rp;
    for (int64_t t = t0; t < t1; ++t) {
      const int b = (int)(t / (rows + copy));
      const int i = (int)(t % (rows + copy));
      const char* sbase = static_cast<const char*>(src.data) + (size_t)b * src.T * C * ses;
      char* dbase = static_cast<char*>(dst.data) + (size_t)b * dst.T * C * des;
      if (i < copy) {  // prefix row, unchanged
        float* out = f32_out ? reinterpret_cast<float*>(dbase + (size_t)i * C * des) : acc.data();
        to_f32(sbase + (size_t)i * C * ses, src.dtype, out, C);
        if (!f32_out) from_f32(out, dbase + (size_t)i * C * des, dst.dtype, C);
        continue;
      }
      const int row = i - copy;
      float* out = f32_out ? reinterpret_cast<float*>(dbase + (size_t)(dst_off + row) * C * des) : acc.data();
      const int64_t e0 = ptr[b][row], e1 = ptr[b][row + 1];
      if (f32_in) {
        rp.resize((size_t)(e1 - e0));
        for (int64_t e = e0; e < e1; ++e) rp[e - e0] = reinterpret_cast<const float*>(sbase + (size_t)(src_off + idx[b][e]) * C * ses);
        K.wsum(out, rp.data(), w[b] + e0, (int)(e1 - e0), C);
        if (!f32_out) from_f32(out, dbase + (size_t)(dst_off + row) * C * des, dst.dtype, C);
        continue;
      }
      std::fill(out, out + C, 0.f);
      for (int64_t e = e0; e < e1; ++e) {
        const char* s = sbase + (size_t)(src_off + idx[b][e]) * C * ses;
        const float* sf = reinterpret_cast<const float*>(s);
        if (!f32_in) {
          to_f32(s, src.dtype, tmp.data(), C);
          sf = tmp.data();
        }
        K.axpy(out, w[b][e], sf, C);
      }
      if (!f32_out) from_f32(out, dbase + (size_t)(dst_off + row) * C * des, dst.dtype, C);
    }
  });
}

}  // namespace toma
