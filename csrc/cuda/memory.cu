// Device memory and copies. Allocation failures become DeviceError with the size and what it was
// for, so out-of-memory reaches JavaScript as a message, never an abort.
#include <algorithm>
#include <vector>

#include "cuda/common.cuh"
#include "ops/cuda.h"

namespace toma {
namespace cuda {

DeviceBuffer::DeviceBuffer(size_t bytes, const char* what) {
  if (bytes == 0) return;
  const cudaError_t e = cudaMalloc(&p_, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    p_ = nullptr;
    throw DeviceError(std::string(what) + ": cannot allocate " + std::to_string((bytes + (1 << 20) - 1) >> 20) +
                      " MiB of device memory (" + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + ")");
  }
  n_ = bytes;
}

DeviceBuffer::~DeviceBuffer() {
  if (p_) {
    // Work queued on this thread's stream may still read the buffer: cudaFree synchronises with
    // the device first, so nothing is freed under a running kernel.
    if (cudaFree(p_) != cudaSuccess) cudaGetLastError();
  }
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  std::swap(p_, o.p_);
  std::swap(n_, o.n_);
  return *this;
}

void copy_to_device(void* dst, const void* src, size_t bytes, const char* op) {
  if (bytes == 0) return;
  TOMA_CUDA_CHECK(op, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, kStream));
  TOMA_CUDA_CHECK(op, cudaStreamSynchronize(kStream));
}

void copy_to_host(void* dst, const void* src, size_t bytes, const char* op) {
  if (bytes == 0) return;
  TOMA_CUDA_CHECK(op, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, kStream));
  TOMA_CUDA_CHECK(op, cudaStreamSynchronize(kStream));
}

void copy_on_device(void* dst, const void* src, size_t bytes, const char* op) {
  if (bytes == 0) return;
  TOMA_CUDA_CHECK(op, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, kStream));
  TOMA_CUDA_CHECK(op, cudaStreamSynchronize(kStream));
}

void synchronize(const char* op) {
  TOMA_CUDA_CHECK(op, cudaGetLastError());
  TOMA_CUDA_CHECK(op, cudaStreamSynchronize(kStream));
}

double time_ms(void (*fn)(void*), void* ctx, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn(ctx);
  synchronize("time_ms");
  cudaEvent_t a, b;
  TOMA_CUDA_CHECK("time_ms", cudaEventCreate(&a));
  TOMA_CUDA_CHECK("time_ms", cudaEventCreate(&b));
  std::vector<float> t(std::max(iters, 1));
  for (auto& ms : t) {
    cudaEventRecord(a, kStream);
    fn(ctx);
    cudaEventRecord(b, kStream);
    cudaEventSynchronize(b);
    cudaEventElapsedTime(&ms, a, b);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  synchronize("time_ms");
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace cuda
}  // namespace toma
