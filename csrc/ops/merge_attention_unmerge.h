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
};

// unmerge(attention(merge(q), merge(k), merge(v))), intermediates in float32.
void merge_attention_unmerge_cpu(const Plan& plan, const MergeAttentionParams& p);

}  // namespace toma
