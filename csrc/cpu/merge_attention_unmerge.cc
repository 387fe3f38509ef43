#include "ops/merge_attention_unmerge.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/attention.h"
#include "ops/merge.h"
#include "ops/unmerge.h"

namespace toma {

void merge_attention_unmerge_cpu(const Plan& plan, const MergeAttentionParams& p) {
  const int B = plan.B, C = p.q.C, Tm = plan.P + plan.K;
  // Intermediates stay float32 so half inputs are rounded once, at the output.
  auto merged = [&](ConstTokens x, std::vector<float>& buf) {
    buf.resize((size_t)B * Tm * C);
    Tokens y{buf.data(), DType::F32, B, Tm, C};
    merge_cpu(plan, x, y);
    return ConstTokens{buf.data(), DType::F32, B, Tm, C};
  };
  std::vector<float> mq, mk, mv, mo;
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
  a.q = merged(p.q, mq);
  mo.resize((size_t)B * Tm * C);
  a.out = Tokens{mo.data(), DType::F32, B, Tm, C};
  attention_cpu(a);
  unmerge_cpu(plan, ConstTokens{mo.data(), DType::F32, B, Tm, C}, p.out);
}

}  // namespace toma
