// Cosine best matches between two sets of unit rows through the register-tiled GEMM: the
// bipartite matching of ToMeSD (and any large similarity product) without an na x nb buffer.
#pragma once
#include <cstdint>

namespace toma {

// For every row of A (na x C) the index of its most similar row of B (nb x C) and the dot product;
// ties go to the lowest index. Rows are expected to be unit length. Parallel over A.
void best_match(const float* A, int na, const float* B, int nb, int C, int32_t* best, float* score);

// Rows of x scaled to unit length (rows with norm < 1e-6 are divided by 1e-6, as SPEC section 4).
void normalize_rows(float* x, int n, int C);

}  // namespace toma
