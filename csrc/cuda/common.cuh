// Shared by the .cu files: error checks that throw (never abort), element types by DType, and the
// launch conventions (every op runs on the calling thread's per-thread stream).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace toma {
namespace cuda {

inline const cudaStream_t kStream = cudaStreamPerThread;

[[noreturn]] inline void throw_cuda(const char* op, const char* what, cudaError_t e) {
  cudaGetLastError();  // clear a non-sticky error so the next call on this thread starts clean
  std::string m = std::string(op) + ": " + what + " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  if (e == cudaErrorMemoryAllocation) m += " (out of device memory)";
  throw DeviceError(m);
}

}  // namespace cuda
}  // namespace toma

// TOMA_CUDA_CHECK(op, call): throws DeviceError naming the op and the call.
#define TOMA_CUDA_CHECK(op, call)                                   \
  do {                                                              \
    const cudaError_t toma_e_ = (call);                             \
    if (toma_e_ != cudaSuccess) ::toma::cuda::throw_cuda(op, #call, toma_e_); \
  } while (0)

// After a launch: a bad configuration is reported here, a fault at the next synchronisation.
#define TOMA_CUDA_LAUNCHED(op) TOMA_CUDA_CHECK(op, cudaGetLastError())

namespace toma {
namespace cuda {

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Calls f with a value of the element type of t (float, __half, __nv_bfloat16).
template <class F>
void with_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(float{}); break;
    case DType::F16: f(__half{}); break;
    default: f(__nv_bfloat16{}); break;
  }
}

inline unsigned blocks_for(size_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

// gridDim.y and gridDim.z stop at 65535: launches over a batch (or regions) in those dimensions
// go in slices of this many, with the slice's first index passed to the kernel.
constexpr int kMaxGridYZ = 65535;

}  // namespace cuda
}  // namespace toma
