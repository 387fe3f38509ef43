// attention_sm90.h's entry points. This file alone is compiled for sm_90a (CMakeLists.txt: its own
// object library with -gencode arch=compute_90a,code=sm_90a), so the Hopper kernels never exist for
// another architecture; TOMA_NO_SM90 (TOMA_SM90=OFF) compiles it without them.
#include "cuda/attention_sm90.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "cuda/common.cuh"
#include "cuda/flash_common.cuh"
#include "ops/device.h"
#ifndef TOMA_NO_SM90
#include "cuda/flash_sm90.cuh"
#endif

namespace toma {
namespace flash {

namespace {

constexpr const char* kOp = "attention (sm90)";

[[maybe_unused]] bool aligned16(const void* p) { return ((uintptr_t)p & 15u) == 0; }

#ifndef TOMA_NO_SM90
static_assert(kSm90TileRows == kSm90Rows, "attention_sm90.h and flash_sm90.cuh agree");
static_assert(Sm90Layout<64>::kBN == Sm90Layout<128>::kBN, "one key-tile height for both head dims");

// The driver's cuTensorMapEncodeTiled, through the runtime (which loads libcuda itself): nullptr
// with the reason when the driver has none.
EncodeTiledFn encode_fn(std::string* why) {
  static std::string reason;
  static const EncodeTiledFn fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !p) {
      cudaGetLastError();
      reason = std::string("cuTensorMapEncodeTiled not found in the driver (") + cudaGetErrorName(e) + ")";
      return (EncodeTiledFn) nullptr;
    }
    return reinterpret_cast<EncodeTiledFn>(p);
  }();
  if (why) *why = reason;
  return fn;
}

template <auto Kernel>
void launch(size_t smem, dim3 grid, const CUtensorMap& tq, const CUtensorMap& tk, const CUtensorMap& tv,
            const Args& a, const MauArgs& m) {
  static std::once_flag once;
  std::call_once(once, [smem] {
    TOMA_CUDA_CHECK(kOp, cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  });
  Kernel<<<grid, kSm90Threads, smem, cuda::kStream>>>(tq, tk, tv, a, m);
  TOMA_CUDA_LAUNCHED(kOp);
}

template <class T, int D, bool kFused>
void launch_d(dim3 grid, const CUtensorMap& tq, const CUtensorMap& tk, const CUtensorMap& tv, const Args& a,
              const MauArgs& m) {
  const size_t smem = Sm90Layout<D>::kBytes;
  if (smem > cuda_device_info().smem_optin)
    throw DeviceError(std::string(kOp) + ": head dim " + std::to_string(D) + " needs " + std::to_string(smem) +
                      " bytes of shared memory per block; this device allows " +
                      std::to_string(cuda_device_info().smem_optin));
  if (sm90_requested() == 2) launch<sm90_attention<T, D, kFused, true>>(smem, grid, tq, tk, tv, a, m);
  else launch<sm90_attention<T, D, kFused, false>>(smem, grid, tq, tk, tv, a, m);
}

template <bool kFused>
void dispatch(int D, bool bf16, dim3 grid, const CUtensorMap& tq, const CUtensorMap& tk, const CUtensorMap& tv,
              const Args& a, const MauArgs& m) {
  if (D == 64 && !bf16) launch_d<__half, 64, kFused>(grid, tq, tk, tv, a, m);
  else if (D == 64) launch_d<__nv_bfloat16, 64, kFused>(grid, tq, tk, tv, a, m);
  else if (!bf16) launch_d<__half, 128, kFused>(grid, tq, tk, tv, a, m);
  else launch_d<__nv_bfloat16, 128, kFused>(grid, tq, tk, tv, a, m);
}

void make_map(CUtensorMap* map, const void* p, bool bf16, int B, int T, int C, int rows) {
  const CUresult r = sm90_tensor_map(encode_fn(nullptr), map, p, bf16, B, T, C, rows);
  if (r != CUDA_SUCCESS)
    throw DeviceError(std::string(kOp) + ": cuTensorMapEncodeTiled failed (CUresult " + std::to_string((int)r) +
                      ") for a [" + std::to_string(B) + ", " + std::to_string(T) + ", " + std::to_string(C) + "] tensor");
}
#endif

}  // namespace

int sm90_requested() {
  static const int mode = [] {
    const char* f = std::getenv("TOMA_FLASH");
    if (!f) return 0;
    if (std::strcmp(f, "sm90") == 0) return 1;
    if (std::strcmp(f, "sm90-pingpong") == 0) return 2;
    return 0;
  }();
  return mode;
}

bool sm90_usable() {
  static const bool ok = [] {
    if (!sm90_requested()) return false;
    std::string why;
#ifdef TOMA_NO_SM90
    why = "this build has no sm_90a kernels (TOMA_SM90=OFF)";
#else
    const DeviceInfo& d = cuda_device_info();
    if (!d.available) why = "no CUDA device";
    else if (d.cc_major != 9 || d.cc_minor != 0)
      why = d.name + " has compute capability " + std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor) +
            "; the sm_90a kernels run on 9.0 only";
    else if (!encode_fn(&why))
      ;  // why set
#endif
    if (!why.empty()) std::fprintf(stderr, "toma: TOMA_FLASH=sm90 ignored: %s; using the sm_80 kernels\n", why.c_str());
    else
      std::fprintf(stderr, "toma: TOMA_FLASH=%s: using the sm_90a attention kernels (not yet run on a card)\n",
                   sm90_requested() == 2 ? "sm90-pingpong" : "sm90");
    return why.empty();
  }();
  return ok;
}

bool sm90_attention(const Args& a, int B, int heads, bool bf16) {
#ifdef TOMA_NO_SM90
  return false;
#else
  if (!sm90_usable() || (a.D != 64 && a.D != 128) || B > cuda::kMaxGridYZ || heads > cuda::kMaxGridYZ) return false;
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v)) return false;
  CUtensorMap tq, tk, tv;
  make_map(&tq, a.q, bf16, B, a.Tq, a.C, kSm90Rows);
  make_map(&tk, a.k, bf16, B, a.Tk, a.C, Sm90Layout<64>::kBN);
  make_map(&tv, a.v, bf16, B, a.Tk, a.C, Sm90Layout<64>::kBN);
  const dim3 grid((unsigned)((a.Tq + kSm90Rows - 1) / kSm90Rows), (unsigned)heads, (unsigned)B);
  dispatch<false>(a.D, bf16, grid, tq, tk, tv, a, MauArgs{});
  return true;
#endif
}

bool sm90_mau_attention(const Args& a, const MauArgs& m, int groups, int heads, int B, bool bf16) {
#ifdef TOMA_NO_SM90
  return false;
#else
  if (!sm90_usable() || (a.D != 64 && a.D != 128) || B > cuda::kMaxGridYZ || heads > cuda::kMaxGridYZ) return false;
  if (!aligned16(a.k) || !aligned16(a.v)) return false;
  CUtensorMap tk, tv;
  make_map(&tk, a.k, bf16, B, a.Tk, a.C, Sm90Layout<64>::kBN);
  make_map(&tv, a.v, bf16, B, a.Tk, a.C, Sm90Layout<64>::kBN);
  const dim3 grid((unsigned)(m.prefix_blocks + groups), (unsigned)heads, (unsigned)B);
  if (grid.x > 0) dispatch<true>(a.D, bf16, grid, tk /* unused */, tk, tv, a, m);
  return true;
#endif
}

}  // namespace flash
}  // namespace toma
