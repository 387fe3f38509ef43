// unmerge(attention(merge(q), merge(k), merge(v))) on the device. Merged k and v are written once
// per call, both by one launch of the merge kernel (every query tile reads all of them). The queries take one of two
// paths:
//  - fused (fp16 / bf16 on the tensor-core kernels, every region at most one query tile of
//    destinations: 64 rows on both kernels by default, 128 with the mma variant TOMA_FLASH_CFG=2,32
//    and with the sm_90a kernel, TOMA_FLASH=sm90, attention_sm90.h):
//    the regions are cut on the host into query groups of whole regions filling at most one query
//    tile (cached on the plan), and one block per (group, head, batch) of mma_mau_attention /
//    tc_mau_attention (flash.cuh) merges its queries in the prologue and unmerges its output in
//    the epilogue, so merged q and the merged output never reach global memory. The prefix rows
//    are plain query tiles of the same launch.
//  - unfused (everything else, or TOMA_MAU_FUSED=0 in the environment, read once, to compare the
//    two on a GPU): merged q into a temporary, attention_cuda, then the unmerge kernel.
// Both round merged q to the attention dtype and keep the merged output float32 up to the one
// rounding to the output dtype, with the merge and unmerge kernels' arithmetic in the same order,
// so the two should agree bit for bit.
//
// Merged q / k / v are stored in the dtype the attention kernel computes in: fp16 or bf16 when q,
// k and v all have that dtype (tensor cores), float32 otherwise.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/attention_sm90.h"
#include "cuda/common.cuh"
#include "cuda/flash.cuh"
#include "ops/cuda.h"
#include "ops/device.h"

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

bool fused_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("TOMA_MAU_FUSED");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

bool aligned16(const void* p) { return ((uintptr_t)p & 15u) == 0; }

// The plan's query groups for tiles of `rows`, grouped and uploaded on first use.
const DevicePlan::MauGroups& plan_groups(const DevicePlan& plan, int rows) {
  std::lock_guard<std::mutex> lock(plan.mau_mu);
  for (const auto& g : plan.mau_groups)
    if (g->rows == rows) return *g;
  auto g = std::make_unique<DevicePlan::MauGroups>();
  g->rows = rows;
  std::vector<int32_t> groups;
  g->ok = (int)plan.k_offsets.size() == plan.R + 1 && flash::query_groups(plan.k_offsets, plan.R, rows, groups);
  if (g->ok) {
    g->count = (int)groups.size() - 1;
    g->groups = cuda::DeviceBuffer(groups.size() * sizeof(int32_t), "mergeAttentionUnmerge query groups");
    cuda::copy_to_device(g->groups.data(), groups.data(), groups.size() * sizeof(int32_t), kOp);
  }
  plan.mau_groups.push_back(std::move(g));
  return *plan.mau_groups.back();
}

// Launches one fused kernel with smem bytes of dynamic shared memory, raising the kernel's limit
// once per process (a driver call per launch otherwise; a failure leaves the flag unset).
template <auto Kernel>
void launch_fused_kernel(int D, size_t smem, dim3 grid, const flash::Args& a, const flash::MauArgs& m) {
  const size_t limit = cuda_device_info().smem_optin;
  if (smem > limit)
    throw DeviceError(std::string(kOp) + ": head dim " + std::to_string(D) + " needs " + std::to_string(smem) +
                      " bytes of shared memory per block; this device allows " + std::to_string(limit));
  if (smem > 48 * 1024) {
    static std::once_flag once;
    std::call_once(once, [smem] {
      TOMA_CUDA_CHECK(kOp, cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    });
  }
  Kernel<<<grid, flash::kThreads, smem, cuda::kStream>>>(a, m);
  TOMA_CUDA_LAUNCHED(kOp);
}

template <class T, int D>
void launch_fused_d(dim3 grid, const flash::Args& a, const flash::MauArgs& m) {
  launch_fused_kernel<flash::tc_mau_attention<T, D>>(D, flash::TcLayout<D>::kBytes, grid, a, m);
}

template <class T>
void launch_fused(int D, dim3 grid, const flash::Args& a, const flash::MauArgs& m) {
  switch (D) {
#define TOMA_MAU_CASE(d) \
  case d: launch_fused_d<T, d>(grid, a, m); break;
    TOMA_MAU_CASE(16)
    TOMA_MAU_CASE(32)
    TOMA_MAU_CASE(48)
    TOMA_MAU_CASE(64)
    TOMA_MAU_CASE(80)
    TOMA_MAU_CASE(96)
    TOMA_MAU_CASE(112)
    TOMA_MAU_CASE(128)
#undef TOMA_MAU_CASE
    default: throw DeviceError(std::string(kOp) + ": internal: no fused kernel for head dim " + std::to_string(D));
  }
}

template <class T, int D, int BN, int MT>
void launch_mma_d(dim3 grid, const flash::Args& a, const flash::MauArgs& m) {
  launch_fused_kernel<flash::mma_mau_attention<T, D, BN, MT>>(D, flash::MmaLayout<D, BN, MT>::kBytes, grid, a, m);
}

template <class T, int D>
void launch_mma(const flash::MmaChoice& c, dim3 grid, const flash::Args& a, const flash::MauArgs& m) {
  if (c.mt == 1 && c.bn == 64 && c.st == 3) {
    using L = flash::MmaLayout<D, 64, 1, 3>;
    if (flash::mma_fold(a)) return launch_fused_kernel<flash::mma_mau_attention<T, D, 64, 1, 3, true>>(D, L::kBytes, grid, a, m);
    return launch_fused_kernel<flash::mma_mau_attention<T, D, 64, 1, 3, false>>(D, L::kBytes, grid, a, m);
  }
  if (c.mt == 1 && c.bn == 64) return launch_mma_d<T, D, 64, 1>(grid, a, m);
  if constexpr (D == 128)
    if (c.mt == 2 && c.bn == 32) return launch_mma_d<T, D, 32, 2>(grid, a, m);
  throw DeviceError(std::string(kOp) + ": internal: no mma kernel for head dim " + std::to_string(D));
}

template <class T>
void launch_fused_any(int D, const flash::MmaChoice& c, dim3 grid, const flash::Args& a, const flash::MauArgs& m) {
  if (c.mt == 0) return launch_fused<T>(D, grid, a, m);
  if (D == 64) return launch_mma<T, 64>(c, grid, a, m);
  return launch_mma<T, 128>(c, grid, a, m);
}

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
  // Merged q/k/v stay in the half type only where attention runs on tensor cores (attention.cu's
  // rule); the float32 kernel would gain nothing from the rounding.
  const int Dh = C / p.heads;
  const bool tensor_cores = dt != DType::F32 && p.k.dtype == dt && p.v.dtype == dt && Dh % 16 == 0 && Dh <= 128;
  const DType ct = tensor_cores ? dt : DType::F32;
  const size_t merged = (size_t)B * Tm * C;
  // One allocation, carved at 256-byte boundaries (the attention kernel's 16-byte loads need
  // 16-byte aligned bases).
  size_t bytes = 0;
  auto carve = [&](size_t n) {
    const size_t at = bytes;
    bytes += round_up(n, 256);
    return at;
  };
  const int D = C / p.heads;
  // The mma kernel (head dims 64 and 128) takes query tiles of mc.rows(); the WMMA one 64.
  const flash::MmaChoice mc = ct != DType::F32 ? flash::mma_choice(D) : flash::MmaChoice{};
  // TOMA_FLASH=sm90 on a Hopper card: the sm_90a kernel, query tiles of 128 rows.
  const bool sm90 = ct != DType::F32 && (D == 64 || D == 128) && flash::sm90_requested() && flash::sm90_usable();
  const int tile_rows = sm90 ? flash::kSm90TileRows : mc.mt > 0 ? mc.rows() : flash::kBM;
  // Otherwise unfused: other dtypes and head dims, batches past one grid (attention_cuda slices
  // them), no keys at all (attention_cuda reports it).
  const bool fusable = p.merge_queries && ct != DType::F32 && D % 16 == 0 && D <= 128 && p.heads <= 65535 &&
                       B <= cuda::kMaxGridYZ && Tm > 0 && (plan.N == 0 || plan.R > 0) && fused_enabled();
  const DevicePlan::MauGroups* groups = fusable ? &plan_groups(plan, tile_rows) : nullptr;
  const bool fused = groups && groups->ok;
  const size_t at_k = carve(merged * dtype_size(ct)), at_v = carve(merged * dtype_size(ct));
  const bool unfused_q = p.merge_queries && !fused;
  const size_t at_q = unfused_q ? carve(merged * dtype_size(ct)) : 0;
  const size_t at_o = unfused_q ? carve(merged * sizeof(float)) : 0;
  // The fused kernels compute the proportional bias from the masses themselves (Args::mass).
  const size_t at_bias = p.proportional && !fused ? carve((size_t)B * Tm * sizeof(float)) : 0;
  cuda::DeviceBuffer tmp(bytes, "mergeAttentionUnmerge temporaries");
  char* const base = tmp.as<char>();

  const Tokens mk{base + at_k, ct, B, Tm, C}, mv{base + at_v, ct, B, Tm, C};
  // Both in one launch, enqueued without waiting: the attention launch on the same stream orders
  // after it. The call waits once, at its end.
  cuda::enqueue_merge2(plan, p.k, mk, p.v, mv);

  AttentionParams a;
  a.k = mk;
  a.v = mv;
  a.heads = p.heads;
  a.scale = p.scale;
  if (p.proportional && !fused) {
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
  if (fused) {
    flash::Args fa;
    fa.q = p.q.data;
    fa.k = mk.data;
    fa.v = mv.data;
    fa.out = p.out.data;
    fa.qdt = fa.kdt = fa.vdt = (int)ct;
    fa.odt = (int)p.out.dtype;
    fa.Tq = Tm;  // not read by the fused kernel
    fa.Tk = Tm;
    fa.C = C;
    fa.D = D;
    fa.sl2 = (p.scale > 0 ? p.scale : 1.0f / std::sqrt((float)D)) * flash::kLog2e;
    fa.bias = nullptr;
    if (p.proportional) fa.mass = plan.mass.as<float>(), fa.mass_P = P;
    // merged k / v sit at 256-byte boundaries of the temporary; q is the caller's.
    fa.vec = aligned16(p.q.data);
    flash::MauArgs m;
    m.groups = groups->groups.as<int32_t>();
    m.tokens = plan.tokens.as<int32_t>();
    m.offsets = plan.offsets.as<int32_t>();
    m.k_off = plan.k_off.as<int32_t>();
    m.a_off = plan.a_off.as<int64_t>();
    m.A = plan.A.as<float>();
    m.mass = plan.mass.as<float>();
    m.a_total = plan.a_total;
    m.P = P;
    m.K = plan.K;
    m.T = T;
    m.prefix_blocks = (P + tile_rows - 1) / tile_rows;
    m.out_vec = aligned16(p.out.data);
    const int G = groups->count;
    const dim3 grid((unsigned)(m.prefix_blocks + G), (unsigned)p.heads, (unsigned)B);
    if (sm90) {
      if (!flash::sm90_mau_attention(fa, m, G, p.heads, B, ct == DType::BF16))
        throw DeviceError(std::string(kOp) + ": internal: the sm90 kernel refused a fusable call");
    } else if (grid.x > 0) {
      if (ct == DType::F16)
        launch_fused_any<__half>(D, mc, grid, fa, m);
      else
        launch_fused_any<__nv_bfloat16>(D, mc, grid, fa, m);
    }
    cuda::synchronize(kOp);
    return;
  }
  const Tokens mq{base + at_q, ct, B, Tm, C}, mo{base + at_o, DType::F32, B, Tm, C};
  cuda::enqueue_merge(plan, p.q, mq);
  a.q = mq;
  a.out = mo;
  cuda::enqueue_attention(a);
  cuda::enqueue_unmerge(plan, mo, p.out);
  cuda::synchronize(kOp);
}

}  // namespace toma
