// Device memory and copies. Allocation failures become DeviceError with the size and what it was
// for, so out-of-memory reaches JavaScript as a message, never an abort.
#include <algorithm>
#include <vector>

#include "cuda/common.cuh"
#include "ops/cuda.h"

namespace toma {
namespace cuda {

namespace {

// The default pool hands memory back to the driver at every synchronisation unless told to keep
// some: keep up to 2 GiB of freed memory for the next op, so allocations stay cheap.
void keep_pool_warm() {
  static const bool once = [] {
    int dev = 0;
    cudaMemPool_t pool;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) {
      uint64_t keep = 2ull << 30;
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    cudaGetLastError();
    return true;
  }();
  (void)once;
}

}  // namespace

DeviceBuffer::DeviceBuffer(size_t bytes, const char* what) {
  if (bytes == 0) return;
  keep_pool_warm();
  const cudaError_t e = cudaMallocAsync(&p_, bytes, kStream);
  if (e != cudaSuccess) {
    cudaGetLastError();
    p_ = nullptr;
    throw DeviceError(std::string(what) + ": cannot allocate " + std::to_string((bytes + (1 << 20) - 1) >> 20) +
                      " MiB of device memory (" + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + ")");
  }
  n_ = bytes;
}

DeviceBuffer::~DeviceBuffer() {
  // Ordered after the work queued on this thread's stream (which may still read the buffer, as in
  // an op's scratch freed at its end); work of other threads on it finished when their op
  // synchronised.
  if (p_ && !owner_ && cudaFreeAsync(p_, kStream) != cudaSuccess) cudaGetLastError();
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  std::swap(p_, o.p_);
  std::swap(n_, o.n_);
  std::swap(owner_, o.owner_);
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

void enqueue_copy_on_device(void* dst, const void* src, size_t bytes, const char* op) {
  TOMA_CUDA_CHECK(op, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, kStream));
}

void synchronize(const char* op) {
  TOMA_CUDA_CHECK(op, cudaGetLastError());
  TOMA_CUDA_CHECK(op, cudaStreamSynchronize(kStream));
}

double time_ms(void (*fn)(void*), void* ctx, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn(ctx);
  synchronize("time_ms");
  struct Events {  // destroyed on every exit, a throwing fn included
    cudaEvent_t a = nullptr, b = nullptr;
    ~Events() {
      if (a) cudaEventDestroy(a);
      if (b) cudaEventDestroy(b);
    }
  } ev;
  TOMA_CUDA_CHECK("time_ms", cudaEventCreate(&ev.a));
  TOMA_CUDA_CHECK("time_ms", cudaEventCreate(&ev.b));
  std::vector<float> t(std::max(iters, 1));
  for (auto& ms : t) {
    TOMA_CUDA_CHECK("time_ms", cudaEventRecord(ev.a, kStream));
    fn(ctx);
    TOMA_CUDA_CHECK("time_ms", cudaEventRecord(ev.b, kStream));
    TOMA_CUDA_CHECK("time_ms", cudaEventSynchronize(ev.b));
    TOMA_CUDA_CHECK("time_ms", cudaEventElapsedTime(&ms, ev.a, ev.b));
  }
  synchronize("time_ms");
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace cuda
}  // namespace toma
