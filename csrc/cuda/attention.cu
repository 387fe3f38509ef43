// attention_cuda: checks, kernel choice and launch; the kernels are in csrc/cuda/flash.cuh.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <map>
#include <string>

#include "cuda/attention_sm90.h"
#include "cuda/common.cuh"
#include "cuda/flash.cuh"
#include "ops/cuda.h"
#include "ops/device.h"

namespace toma {

namespace {

using namespace flash;

constexpr const char* kOp = "attention";

// ---- launch -----------------------------------------------------------------------------------

// The probe's opt-in limit (device 0, read once per process).
size_t smem_optin_limit() { return cuda_device_info().smem_optin; }

// cudaFuncSetAttribute once per kernel and size (a driver call per launch otherwise): the float32
// kernel's bytes grow with the head dim, so the limit set is the largest asked for so far.
void allow_smem(const void* kernel, size_t smem) {
  static std::mutex mu;
  static auto* done = new std::map<const void*, size_t>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = done->find(kernel);
  if (it != done->end() && it->second >= smem) return;
  TOMA_CUDA_CHECK(kOp, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  (*done)[kernel] = smem;
}

// Launches over the batch in slices of at most 65535 (gridDim.z), moving the base pointers.
template <class K>
void launch(K kernel, dim3 grid, size_t smem, const Args& a, int B, const std::string& what) {
  const size_t limit = smem_optin_limit();
  if (smem > limit)
    throw DeviceError(std::string(kOp) + ": " + what + " needs " + std::to_string(smem) +
                      " bytes of shared memory per block; this device allows " + std::to_string(limit));
  if (smem > 48 * 1024) allow_smem(reinterpret_cast<const void*>(kernel), smem);
  auto advance = [](const void* p, int dt, size_t elems) {
    return static_cast<const char*>(p) + elems * dtype_size((DType)dt);
  };
  for (int b0 = 0; b0 < B; b0 += cuda::kMaxGridYZ) {
    Args s = a;
    const size_t q_rows = (size_t)b0 * a.Tq * a.C, kv_rows = (size_t)b0 * a.Tk * a.C;
    s.q = advance(a.q, a.qdt, q_rows);
    s.k = advance(a.k, a.kdt, kv_rows);
    s.v = advance(a.v, a.vdt, kv_rows);
    s.out = const_cast<char*>(advance(a.out, a.odt, q_rows));
    if (a.bias) s.bias = a.bias + (size_t)b0 * a.Tk;
    grid.z = (unsigned)std::min(cuda::kMaxGridYZ, B - b0);
    kernel<<<grid, kThreads, smem, cuda::kStream>>>(s);
    TOMA_CUDA_LAUNCHED(kOp);
  }
}

template <class T>
void launch_tc(int D, dim3 grid, const Args& a, int B) {
  switch (D) {
#define TOMA_TC_CASE(d) \
  case d: launch(tc_attention<T, d>, grid, TcLayout<d>::kBytes, a, B, "head dim " #d); break;
    TOMA_TC_CASE(16)
    TOMA_TC_CASE(32)
    TOMA_TC_CASE(48)
    TOMA_TC_CASE(64)
    TOMA_TC_CASE(80)
    TOMA_TC_CASE(96)
    TOMA_TC_CASE(112)
    TOMA_TC_CASE(128)
#undef TOMA_TC_CASE
    default: throw DeviceError(std::string(kOp) + ": internal: no tensor-core kernel for head dim " + std::to_string(D));
  }
}

template <class T, int D>
void launch_mma(const MmaChoice& c, const Args& a, int B) {
  const dim3 grid((unsigned)((a.Tq + c.rows() - 1) / c.rows()), (unsigned)(a.C / D), 1);
  const std::string what = "head dim " + std::to_string(D);
#define TOMA_MMA_CASE(MT_, BN_)                                                                 \
  if (c.mt == MT_ && c.bn == BN_) {                                                             \
    launch(mma_attention<T, D, BN_, MT_>, grid, MmaLayout<D, BN_, MT_>::kBytes, a, B, what);   \
    return;                                                                                     \
  }
  if (c.st == 2) {
    TOMA_MMA_CASE(1, 64)
    if constexpr (D == 128) TOMA_MMA_CASE(2, 32)
  }
#undef TOMA_MMA_CASE
  if (c.mt == 1 && c.bn == 64 && c.st == 3) {
    if (mma_fold(a)) launch(mma_attention<T, D, 64, 1, 3, true>, grid, MmaLayout<D, 64, 1, 3>::kBytes, a, B, what);
    else launch(mma_attention<T, D, 64, 1, 3, false>, grid, MmaLayout<D, 64, 1, 3>::kBytes, a, B, what);
    return;
  }
  throw DeviceError(std::string(kOp) + ": internal: no mma kernel for " + what);
}

bool aligned16(const void* p) { return ((uintptr_t)p & 15u) == 0; }

}  // namespace

namespace flash {

MmaChoice mma_choice(int D) {
  static const MmaChoice forced = [] {
    MmaChoice c;
    const char* f = std::getenv("TOMA_FLASH");
    if (f && std::strcmp(f, "wmma") == 0) return MmaChoice{-1, -1};
    const char* e = std::getenv("TOMA_FLASH_CFG");
    if (e && (std::sscanf(e, "%d,%d,%d", &c.mt, &c.bn, &c.st) < 2 || c.mt < 1 || c.bn < 1)) c = MmaChoice{};
    return c;
  }();
  if (forced.mt < 0 || (D != 64 && D != 128)) return MmaChoice{};
  if (forced.mt > 0) {
    const bool compiled = (forced.mt == 1 && forced.bn == 64 && (forced.st == 2 || forced.st == 3)) ||
                          (D == 128 && forced.mt == 2 && forced.bn == 32 && forced.st == 2);
    if (compiled) return forced;
  }
  // The default, from the variants timed side by side on an H200 (bench/results/
  // gpu-h200-2026-11-26-run3): one row block per warp and 64-key tiles. At D = 64 it beat two
  // row blocks (more blocks per wave, query groups of 64 for the fused path, query fragments in
  // registers), most of all in the fused merge-attention-unmerge; at D = 128 dense attention ran
  // the same (249 vs 247 TFLOP/s) and the fused op 2% faster than two row blocks with 32-key tiles.
  return MmaChoice{1, 64};
}

}  // namespace flash

void attention_cuda(const AttentionParams& p) {
  cuda::enqueue_attention(p);
  TOMA_CUDA_CHECK(kOp, cudaStreamSynchronize(cuda::kStream));
}

void cuda::enqueue_attention(const AttentionParams& p) {
  if (p.q_rows || p.k_rows || p.v_rows)
    throw DeviceError(std::string(kOp) + ": row gathers (RowGather) are not supported on CUDA");
  const int B = p.q.B, Tq = p.q.T, Tk = p.k.T, C = p.q.C, H = p.heads;
  if (H < 1 || C % H != 0)
    throw range_error(std::string(kOp) + ": channels " + std::to_string(C) + " not divisible by heads " +
                      std::to_string(H));
  if (p.k.B != B || p.v.B != B || p.out.B != B || p.k.C != C || p.v.C != C || p.out.C != C || p.v.T != Tk ||
      p.out.T != Tq)
    throw range_error(std::string(kOp) + ": q [B, Tq, C], k and v [B, Tk, C], out [B, Tq, C] do not agree");
  if (B == 0 || Tq == 0 || C == 0) return;
  if (Tk == 0) throw range_error(std::string(kOp) + ": k and v must hold at least one token (Tk = 0)");
  const int D = C / H;
  if (D > 256)
    throw DeviceError(std::string(kOp) + ": head dim " + std::to_string(D) +
                      " is not supported on CUDA (at most 256; multiples of 16 up to 128 run on tensor cores)");
  if (H > 65535) throw DeviceError(std::string(kOp) + ": at most 65535 heads on CUDA");

  Args a;
  a.q = p.q.data;
  a.k = p.k.data;
  a.v = p.v.data;
  a.out = p.out.data;
  a.qdt = (int)p.q.dtype;
  a.kdt = (int)p.k.dtype;
  a.vdt = (int)p.v.dtype;
  a.odt = (int)p.out.dtype;
  a.Tq = Tq;
  a.Tk = Tk;
  a.C = C;
  a.D = D;
  const float scale = p.scale > 0 ? p.scale : 1.0f / std::sqrt((float)D);
  a.sl2 = scale * kLog2e;
  a.bias = p.key_bias;
  // 16-byte loads need aligned bases; C and the head offsets are multiples of 8 elements for every
  // head dim the tensor-core kernel takes.
  a.vec = aligned16(a.q) && aligned16(a.k) && aligned16(a.v);

  const DType dt = p.q.dtype;
  const bool tc = dt != DType::F32 && p.k.dtype == dt && p.v.dtype == dt && D % 16 == 0 && D <= 128;
  const MmaChoice mc = tc ? mma_choice(D) : MmaChoice{};
  if (tc && (D == 64 || D == 128) && sm90_requested() && sm90_attention(a, B, H, dt == DType::BF16)) {
    // TOMA_FLASH=sm90 on a Hopper card (attention_sm90.h): launched
  } else if (mc.mt > 0) {
    if (dt == DType::F16 && D == 64) launch_mma<__half, 64>(mc, a, B);
    else if (dt == DType::F16) launch_mma<__half, 128>(mc, a, B);
    else if (D == 64) launch_mma<__nv_bfloat16, 64>(mc, a, B);
    else launch_mma<__nv_bfloat16, 128>(mc, a, B);
  } else if (tc) {
    const dim3 grid((unsigned)((Tq + kBM - 1) / kBM), (unsigned)H, 1);
    if (dt == DType::F16)
      launch_tc<__half>(D, grid, a, B);
    else
      launch_tc<__nv_bfloat16>(D, grid, a, B);
  } else {
    const dim3 grid((unsigned)((Tq + kFQ - 1) / kFQ), (unsigned)H, 1);
    const size_t smem = f32_smem(D);
    const std::string what = "the float32 kernel at head dim " + std::to_string(D);
    if (D <= 64)
      launch(f32_attention<2>, grid, smem, a, B, what);
    else if (D <= 128)
      launch(f32_attention<4>, grid, smem, a, B, what);
    else
      launch(f32_attention<8>, grid, smem, a, B, what);
  }
}

}  // namespace toma
