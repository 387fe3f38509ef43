// unmerge(attention(merge(q), merge(k), merge(v))) on the device, as three stages: the merges
// write merged q / k / v once per call into one temporary allocation, the flash kernel attends
// over them, and the unmerge scatters the merged output back. Not fused: the merged tensors are
// [B, P + K, C], small next to the attention's O(T^2) work, and the composition keeps each stage
// checked on its own.
//
// Merged q / k / v are stored in the dtype the attention kernel computes in: fp16 or bf16 when q,
// k and v all have that dtype (tensor cores), float32 otherwise. The merged attention output stays
// float32 so the unmerge rounds to the output dtype once, as the CPU path does.
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>

#include "cuda/common.cuh"
#include "ops/cuda.h"

namespace toma {

namespace {

constexpr const char* kOp = "mergeAttentionUnmerge";

// Proportional attention: a merged key stands for mass tokens, so its score gets + log(mass);
// prefix keys stand for themselves (log 1 = 0). bias: [B, P + K], mass: [B, K].
__global__ void mass_bias_kernel(const float* __restrict__ mass, float* __restrict__ bias, int B, int P, int K) {
  const int Tm = P + K;
  const size_t n = (size_t)B * Tm;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const int b = (int)(i / Tm), j = (int)(i % Tm);
    bias[i] = j < P ? 0.f : logf(fmaxf(mass[(size_t)b * K + (j - P)], 1e-30f));
  }
}

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

std::string shape(const ConstTokens& t) {
  return "[" + std::to_string(t.B) + ", " + std::to_string(t.T) + ", " + std::to_string(t.C) + "]";
}

}  // namespace

void merge_attention_unmerge_cuda(const DevicePlan& plan, const MergeAttentionParams& p) {
  const int B = plan.B, P = plan.P, T = plan.P + plan.N, Tm = plan.P + plan.K, C = p.q.C;
  const std::string want = "[" + std::to_string(B) + ", " + std::to_string(T) + ", " + std::to_string(C) + "]";
  const ConstTokens out = p.out;
  for (const ConstTokens* t : {&p.q, &p.k, &p.v, &out})
    if (t->B != B || t->T != T || t->C != C)
      throw range_error(std::string(kOp) + ": q, k, v and out must be " + want + " (the plan's B and P + N), got " +
                        shape(*t));
  if (p.heads < 1 || C % p.heads != 0)
    throw range_error(std::string(kOp) + ": channels " + std::to_string(C) + " not divisible by heads " +
                      std::to_string(p.heads));
  if (B == 0 || C == 0) return;

  const DType dt = p.q.dtype;
  const DType ct = (dt != DType::F32 && p.k.dtype == dt && p.v.dtype == dt) ? dt : DType::F32;
  const size_t merged = (size_t)B * Tm * C;
  // One allocation, carved at 256-byte boundaries (the attention kernel's 16-byte loads need
  // 16-byte aligned bases).
  size_t bytes = 0;
  auto carve = [&](size_t n) {
    const size_t at = bytes;
    bytes += round_up(n, 256);
    return at;
  };
  const size_t at_k = carve(merged * dtype_size(ct)), at_v = carve(merged * dtype_size(ct));
  const size_t at_q = p.merge_queries ? carve(merged * dtype_size(ct)) : 0;
  const size_t at_o = p.merge_queries ? carve(merged * sizeof(float)) : 0;
  const size_t at_bias = p.proportional ? carve((size_t)B * Tm * sizeof(float)) : 0;
  cuda::DeviceBuffer tmp(bytes, "mergeAttentionUnmerge temporaries");
  char* const base = tmp.as<char>();

  const Tokens mk{base + at_k, ct, B, Tm, C}, mv{base + at_v, ct, B, Tm, C};
  merge_cuda(plan, p.k, mk);
  merge_cuda(plan, p.v, mv);

  AttentionParams a;
  a.k = mk;
  a.v = mv;
  a.heads = p.heads;
  a.scale = p.scale;
  if (p.proportional) {
    float* const bias = reinterpret_cast<float*>(base + at_bias);
    const size_t n = (size_t)B * Tm;
    const unsigned blocks = (unsigned)std::min<size_t>(cuda::blocks_for(n, 256), 4096);
    mass_bias_kernel<<<blocks, 256, 0, cuda::kStream>>>(plan.mass.as<float>(), bias, B, P, plan.K);
    TOMA_CUDA_LAUNCHED(kOp);
    a.key_bias = bias;  // attention_cuda runs on the same stream: no wait needed here
  }

  if (!p.merge_queries) {
    a.q = p.q;
    a.out = p.out;
    attention_cuda(a);
    return;
  }
  const Tokens mq{base + at_q, ct, B, Tm, C}, mo{base + at_o, DType::F32, B, Tm, C};
  merge_cuda(plan, p.q, mq);
  a.q = mq;
  a.out = mo;
  attention_cuda(a);
  unmerge_cuda(plan, mo, p.out);
}

}  // namespace toma
