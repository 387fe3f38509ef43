#include "ops/merge_attention_unmerge.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/scratch.h"
#include "ops/attention.h"
#include "ops/merge.h"
#include "ops/unmerge.h"

namespace toma {

void merge_attention_unmerge_cpu(const Plan& plan, const MergeAttentionParams& p) {
  const int B = plan.B, C = p.q.C, Tm = plan.P + plan.K;
  // Intermediates stay float32 so half inputs are rounded once, at the output; their buffers
  // come from the scratch pool (no page faults or zeroing per call).
  const size_t n = (size_t)B * Tm * C;
  auto merged = [&](ConstTokens x, const Scratch& buf) {
    merge_cpu(plan, x, Tokens{buf.data(), DType::F32, B, Tm, C});
    return ConstTokens{buf.data(), DType::F32, B, Tm, C};
  };
  Scratch mk(n), mv(n);
  AttentionParams a;
  a.k = merged(p.k, mk);
  a.v = merged(p.v, mv);
  a.heads = p.heads;
  a.scale = p.scale;
  std::vector<float> bias;
  if (p.proportional) {
    bias.assign((size_t)B * Tm, 0.f);  // prefix keys stand for themselves: log 1 = 0
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < plan.K; ++j)
        bias[(size_t)b * Tm + plan.P + j] = std::log(std::max(plan.weights[b].mass[j], 1e-30f));
    a.key_bias = bias.data();
  }
  if (!p.merge_queries) {
    a.q = p.q;
    a.out = p.out;
    attention_cpu(a);
    return;
  }
  Scratch mq(n), mo(n);
  a.q = merged(p.q, mq);
  a.out = Tokens{mo.data(), DType::F32, B, Tm, C};
  attention_cpu(a);
  unmerge_cpu(plan, ConstTokens{mo.data(), DType::F32, B, Tm, C}, p.out);
}

}  // namespace toma
