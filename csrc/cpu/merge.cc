#include "ops/merge.h"

#include <vector>

#include "cpu/rows.h"

namespace toma {

void merge_cpu(const Plan& plan, ConstTokens x, Tokens y) {
  std::vector<const int64_t*> ptr(plan.B);
  std::vector<const int32_t*> idx(plan.B);
  std::vector<const float*> w(plan.B);
  for (int b = 0; b < plan.B; ++b) {
    ptr[b] = plan.weights[b].mptr.data();
    idx[b] = plan.weights[b].midx.data();
    w[b] = plan.weights[b].mw.data();
  }
  sparse_rows(ptr.data(), idx.data(), w.data(), plan.K, plan.P, x, plan.P, y, plan.P);
}

}  // namespace toma
