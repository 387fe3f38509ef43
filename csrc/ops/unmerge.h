#pragma once
#include "ops/plan.h"

namespace toma {

// x[b, :P] = y[b, :P]; x[b, P + s] = sum_j U[s, j] y[b, P + j]. y: [B, P+K, C], x: [B, P+N, C].
void unmerge_cpu(const Plan& plan, ConstTokens y, Tokens x);

}  // namespace toma
