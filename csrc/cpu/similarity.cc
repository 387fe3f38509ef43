#include "cpu/similarity.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/simd/kernels.h"

namespace toma {

void normalize_rows(float* x, int n, int C) {
  const CpuKernels& K = cpu_kernels();
  for (int i = 0; i < n; ++i) {
    float* r = x + (size_t)i * C;
    const double norm = std::sqrt(K.dot_f64(r, r, C));
    K.scale(r, (float)(1.0 / std::max(norm, 1e-6)), C);
  }
}

void best_match(const float* A, int na, const float* B, int nb, int C, int32_t* best, float* score) {
  const CpuKernels& K = cpu_kernels();
  const int MR = K.mr, NR = K.nr;
  const int panels = (nb + NR - 1) / NR;
  // B packed as [panel][C][NR], zero padded: the layout the GEMM kernel streams.
  std::vector<float> Bp((size_t)panels * C * NR, 0.f);
  parallel_for(panels, 8, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int jj = 0; jj < NR; ++jj) {
        const int j = (int)p * NR + jj;
        if (j >= nb) break;
        for (int c = 0; c < C; ++c) Bp[((size_t)p * C + c) * NR + jj] = B[(size_t)j * C + c];
      }
  });
  const int blocks = (na + MR - 1) / MR;
  parallel_for(blocks, 4, [&](int64_t b0, int64_t b1) {
    std::vector<float> Ablk((size_t)MR * C), tile((size_t)MR * NR);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int i0 = (int)blk * MR, rows = std::min(MR, na - i0);
      const float* Ab = A + (size_t)i0 * C;
      if (rows < MR) {  // pad the last block with zero rows
        std::fill(Ablk.begin(), Ablk.end(), 0.f);
        std::copy(Ab, Ab + (size_t)rows * C, Ablk.begin());
        Ab = Ablk.data();
      }
      float bestv[64];
      int32_t besti[64];
      for (int r = 0; r < rows; ++r) bestv[r] = -std::numeric_limits<float>::infinity(), besti[r] = 0;
      for (int p = 0; p < panels; ++p) {
        K.gemm(C, Ab, C, Bp.data() + (size_t)p * C * NR, tile.data(), NR, 0);
        const int cols = std::min(NR, nb - p * NR);
        for (int r = 0; r < rows; ++r)
          for (int c = 0; c < cols; ++c)
            if (tile[(size_t)r * NR + c] > bestv[r]) bestv[r] = tile[(size_t)r * NR + c], besti[r] = p * NR + c;
      }
      for (int r = 0; r < rows; ++r) best[i0 + r] = besti[r], score[i0 + r] = bestv[r];
    }
  });
}

}  // namespace toma
