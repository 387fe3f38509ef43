#include "ops/merge_attention_unmerge.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/scratch.h"
#include "ops/attention.h"
#include "ops/unmerge.h"

namespace toma {

void merge_attention_unmerge_cpu(const Plan& plan, const MergeAttentionParams& p) {
  const int B = plan.B, C = p.q.C, Tm = plan.P + plan.K;
  // Merged q/k/v are gathered on the fly by the attention kernel (no merged copies are written);
  // the merged output stays float32, so half inputs are rounded once, at the output.
  std::vector<const int64_t*> ptr(B);
  std::vector<const int32_t*> idx(B);
  std::vector<const float*> w(B);
  for (int b = 0; b < B; ++b) {
    ptr[b] = plan.weights[b].mptr.data();
    idx[b] = plan.weights[b].midx.data();
    w[b] = plan.weights[b].mw.data();
  }
  auto gather = [&](ConstTokens x) {
    RowGather g;
    g.src = x;
    g.prefix = plan.P;
    g.ptr = ptr.data();
    g.idx = idx.data();
    g.w = w.data();
    return g;
  };
  const RowGather qg = gather(p.q), kg = gather(p.k), vg = gather(p.v);
  const ConstTokens merged_shape{nullptr, DType::F32, B, Tm, C};
  AttentionParams a;
  a.k = a.v = merged_shape;
  a.k_rows = &kg;
  a.v_rows = &vg;
  a.heads = p.heads;
  a.scale = p.scale;
  a.qk_nonfinite = p.qk_nonfinite;
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
  Scratch mo((size_t)B * Tm * C);
  a.q = merged_shape;
  a.q_rows = &qg;
  a.out = Tokens{mo.data(), DType::F32, B, Tm, C};
  attention_cpu(a);
  unmerge_cpu(plan, ConstTokens{mo.data(), DType::F32, B, Tm, C}, p.out);
}

}  // namespace toma
