#pragma once
#include "ops/tensor.h"

namespace toma {

// A tensor whose rows are sparse weighted sums of another's, read on the fly: row j < prefix is
// src row j; row j >= prefix is sum over e in [ptr[b][j - prefix], ptr[b][j - prefix + 1]) of
// w[b][e] * src row (prefix + idx[b][e]). Merge-attention-unmerge feeds attention merged q/k/v
// this way, so the merged tensors are never written out.
struct RowGather {
  ConstTokens src;
  int prefix = 0;
  const int64_t* const* ptr = nullptr;
  const int32_t* const* idx = nullptr;
  const float* const* w = nullptr;
};

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
  // When set, q / k / v rows come from these gathers (q, k, v then give only B, T and C).
  const RowGather* q_rows = nullptr;
  const RowGather* k_rows = nullptr;
  const RowGather* v_rows = nullptr;
  // When set (CPU path), becomes true if any q or k row the kernel read (gathered rows included)
  // holds NaN or Infinity: a NaN score can vanish in the softmax (the running max and the exp
  // clamps drop it) and leave a finite, wrong output, so the output scan alone cannot tell.
  bool* qk_nonfinite = nullptr;
};

// Exact softmax attention per head, blocked with an online softmax: memory is O(block), never
// O(Tq * Tk).
void attention_cpu(const AttentionParams& p);

}  // namespace toma
