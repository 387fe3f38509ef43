#pragma once
#include "ops/plan.h"

namespace toma {

// y[b, :P] = x[b, :P]; y[b, P + j] = sum_s M[j, s] x[b, P + s]. x: [B, P+N, C], y: [B, P+K, C].
// x and y may have different dtypes; accumulation is float32.
void merge_cpu(const Plan& plan, ConstTokens x, Tokens y);

}  // namespace toma
