#pragma once
#include "ops/plan.h"

namespace toma {

struct MergeAttentionParams {
  ConstTokens q, k, v;  // [B, P+N, C]
  Tokens out;           // [B, P+N, C]
  int heads = 1;
  float scale = 0;
  // false: ToDo-style, only k and v are merged, every query attends, nothing is unmerged.
  bool merge_queries = true;
  // Proportional attention (as in ToMe): each merged key's score gets + log(mass), the number of
  // tokens it stands for, so attention over merged keys approximates attention over all keys.
  bool proportional = false;
  // As AttentionParams::qk_nonfinite (CPU path): a merged row is NaN when any token it averages is.
  bool* qk_nonfinite = nullptr;
};

// unmerge(attention(merge(q), merge(k), merge(v))), intermediates in float32.
void merge_attention_unmerge_cpu(const Plan& plan, const MergeAttentionParams& p);

}  // namespace toma
