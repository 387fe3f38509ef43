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
};

// Exact softmax attention per head, blocked with an online softmax: memory is O(block), never
// O(Tq * Tk).
void attention_cpu(const AttentionParams& p);

}  // namespace toma
