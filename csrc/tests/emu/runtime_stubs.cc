// The CUDA runtime calls made by the emulated host code (memory.cu, plan.cu, ...), on the host:
// "device" memory is malloc'd, poisoned with 0xFF (so a kernel that reads what nobody wrote sees
// NaN / -1 rather than a lucky zero) and registered, so copies and kernel arguments that mix up
// host and device pointers fail as they would on a card. Events only serve time_ms (benchmarks),
// which the emulator has no use for: they report cudaErrorNotSupported.
#include <cuda_runtime.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
void need(bool ok, const char* what) {
  if (!ok) { std::fprintf(stderr, "EMU ERROR: %s\n", what); std::abort(); }
}
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmu"; }
const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t*, int) { return cudaErrorNotSupported; }
cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, enum cudaMemPoolAttr, void*) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t*) { return cudaErrorNotSupported; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaErrorNotSupported; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaErrorNotSupported; }
cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float*, cudaEvent_t, cudaEvent_t) { return cudaErrorNotSupported; }
cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) {
  *p = std::malloc(n);
  std::memset(*p, 0xFF, n);
  std::lock_guard<std::mutex> l(emu::mem_mu);
  emu::allocs[(uintptr_t)*p] = n;
  return cudaSuccess;
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
  {
    std::lock_guard<std::mutex> l(emu::mem_mu);
    need(emu::allocs.erase((uintptr_t)p) == 1, "cudaFreeAsync of a pointer not allocated");
  }
  std::free(p);
  return cudaSuccess;
}
static bool within(const void* p, size_t n) {
  if (!emu::is_device(p)) return false;
  return n == 0 || emu::is_device((const char*)p + n - 1);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, enum cudaMemcpyKind kind, cudaStream_t) {
  if (n == 0) return cudaSuccess;
  switch (kind) {
    case cudaMemcpyHostToDevice: need(within(dst, n) && !emu::is_device(src), "H2D copy with wrong pointers"); break;
    case cudaMemcpyDeviceToHost: need(within(src, n) && !emu::is_device(dst), "D2H copy with wrong pointers"); break;
    case cudaMemcpyDeviceToDevice: need(within(src, n) && within(dst, n), "D2D copy with wrong pointers"); break;
    default: need(false, "memcpy kind");
  }
  std::memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) {
  need(n == 0 || within(p, n), "memset outside device memory");
  std::memset(p, v, n);
  return cudaSuccess;
}
