// Row kernels shared by merge and unmerge: both are sparse weighted sums of token rows.
#pragma once
#include <cstdint>

#include "ops/tensor.h"

namespace toma {

// dst[b, dst_off + i] = sum_{e in [ptr[i], ptr[i+1])} w[e] * src[b, src_off + idx[e]] for i < rows,
// and dst[b, :copy] = src[b, :copy] (the prefix), for every b. Parallel over rows.
void sparse_rows(const int64_t* const* ptr, const int32_t* const* idx, const float* const* w,
                 int rows, int copy, ConstTokens src, int src_off, Tokens dst, int dst_off);

}  // namespace toma
