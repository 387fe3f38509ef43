#include "ops/unmerge.h"

#include <vector>

#include "cpu/rows.h"

namespace toma {

void unmerge_cpu(const Plan& plan, ConstTokens y, Tokens x) {
  std::vector<const int64_t*> ptr(plan.B);
  std::vector<const int32_t*> idx(plan.B);
  std::vector<const float*> w(plan.B);
  for (int b = 0; b < plan.B; ++b) {
    ptr[b] = plan.weights[b].uptr.data();
    idx[b] = plan.weights[b].uidx.data();
    w[b] = plan.weights[b].uw.data();
  }
  sparse_rows(ptr.data(), idx.data(), w.data(), plan.N, plan.P, y, plan.P, x, plan.P);
}

}  // namespace toma
