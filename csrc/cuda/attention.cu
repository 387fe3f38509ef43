// attention_cuda: checks, kernel choice and launch; the kernels are in csrc/cuda/flash.cuh.
#include <cmath>
#include <string>

#include "cuda/common.cuh"
#include "cuda/flash.cuh"
#include "ops/cuda.h"

namespace toma {

namespace {

using namespace flash;

constexpr const char* kOp = "attention";

// ---- launch -----------------------------------------------------------------------------------

size_t smem_optin_limit() {
  int dev = 0, v = 0;
  TOMA_CUDA_CHECK(kOp, cudaGetDevice(&dev));
  TOMA_CUDA_CHECK(kOp, cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return (size_t)v;
}

template <class K>
void launch(K kernel, dim3 grid, size_t smem, const Args& a, const std::string& what) {
  const size_t limit = smem_optin_limit();
  if (smem > limit)
    throw DeviceError(std::string(kOp) + ": " + what + " needs " + std::to_string(smem) +
                      " bytes of shared memory per block; this device allows " + std::to_string(limit));
  if (smem > 48 * 1024)
    TOMA_CUDA_CHECK(kOp, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  kernel<<<grid, kThreads, smem, cuda::kStream>>>(a);
  TOMA_CUDA_LAUNCHED(kOp);
}

template <class T>
void launch_tc(int D, dim3 grid, const Args& a) {
  switch (D) {
#define TOMA_TC_CASE(d) \
  case d: launch(tc_attention<T, d>, grid, TcLayout<d>::kBytes, a, "head dim " #d); break;
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
  const int D = C / H;
  if (D > 256)
    throw DeviceError(std::string(kOp) + ": head dim " + std::to_string(D) +
                      " is not supported on CUDA (at most 256; multiples of 16 up to 128 run on tensor cores)");
  if (H > 65535 || B > 65535)
    throw DeviceError(std::string(kOp) + ": at most 65535 heads and 65535 batch elements on CUDA");

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
    const dim3 grid((unsigned)((Tq + kBM - 1) / kBM), (unsigned)H, (unsigned)B);
    if (dt == DType::F16)
      launch_tc<__half>(D, grid, a);
    else
      launch_tc<__nv_bfloat16>(D, grid, a);
  } else {
    const dim3 grid((unsigned)((Tq + kFQ - 1) / kFQ), (unsigned)H, (unsigned)B);
    const size_t smem = f32_smem(D);
    const std::string what = "the float32 kernel at head dim " + std::to_string(D);
    if (D <= 64)
      launch(f32_attention<2>, grid, smem, a, what);
    else if (D <= 128)
      launch(f32_attention<4>, grid, smem, a, what);
    else
      launch(f32_attention<8>, grid, smem, a, what);
  }
  TOMA_CUDA_CHECK(kOp, cudaStreamSynchronize(cuda::kStream));
}

}  // namespace toma
