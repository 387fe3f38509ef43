// attention_cuda: checks, kernel choice and launch; the kernels are in csrc/cuda/flash.cuh.
#include <algorithm>
#include <cmath>
#include <mutex>
#include <set>
#include <string>

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

// cudaFuncSetAttribute once per kernel: it is a driver call per launch otherwise.
void allow_smem(const void* kernel, size_t smem) {
  static std::mutex mu;
  static auto* done = new std::set<const void*>();
  std::lock_guard<std::mutex> lock(mu);
  if (done->count(kernel)) return;
  TOMA_CUDA_CHECK(kOp, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  done->insert(kernel);
}

// Launches over the batch in slices of at most 65535 (gridDim.z), moving the base pointers.
template <class K>
void launch(K kernel, dim3 grid, size_t smem, const Args& a, int B, const std::string& what) {
  const size_t limit = smem_optin_limit();
  if (smem > limit)
    throw DeviceError(std::string(kOp) + ": " + what + " needs " + std::to_string(smem) +
                      " bytes of shared memory per block; this device allows " + std::to_string(limit));
  // Every launch of one kernel asks for the same bytes (they depend on the head dim only).
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

bool aligned16(const void* p) { return ((uintptr_t)p & 15u) == 0; }

}  // namespace

void attention_cuda(const AttentionParams& p) {
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
  if (tc) {
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
  TOMA_CUDA_CHECK(kOp, cudaStreamSynchronize(cuda::kStream));
}

}  // namespace toma
