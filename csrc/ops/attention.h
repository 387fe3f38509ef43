#pragma once
#include "ops/tensor.h"

namespace toma {

struct AttentionParams {
  ConstTokens q;  // [B, Tq, C]
  ConstTokens k;  // [B, Tk, C]
  ConstTokens v;  // [B, Tk, C]
  Tokens out;     // [B, Tq, C]
  int heads = 1;
  float scale = 0;  // 0 = 1 / sqrt(C / heads)
  // Optional [B, Tk] additive bias on every query's score of key j, in natural-log units (the
  // same for every head): log(mass) makes a merged key count as the tokens it stands for.
  const float* key_bias = nullptr;
};

// Exact softmax attention per head, blocked with an online softmax: memory is O(block), never
// O(Tq * Tk).
void attention_cpu(const AttentionParams& p);

}  // namespace toma
