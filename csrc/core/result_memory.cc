#include "core/result_memory.h"

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace toma {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;
// Blocks kept for reuse; beyond this the GC's releases go back to the system.
constexpr size_t kMaxPooledBytes = size_t(256) << 20;

size_t rounded(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }

struct Pool {
  std::mutex m;
  std::vector<std::pair<void*, size_t>> free;  // (block, rounded size)
  size_t held = 0;
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: finalizers may run during exit
  return *p;
}

}  // namespace

void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // madvise wants page-aligned bounds; the kernel uses huge pages where 2 MiB fits inside.
  const uintptr_t page = 4096, a = ((uintptr_t)p + page - 1) / page * page, e = ((uintptr_t)p + bytes) / page * page;
  if (e > a && e - a >= kHugePage) madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

void* result_alloc(size_t bytes) {
  const size_t size = rounded(bytes ? bytes : 1);
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.m);
    for (size_t i = 0; i < p.free.size(); ++i)
      if (p.free[i].second == size) {
        void* block = p.free[i].first;
        p.free[i] = p.free.back();
        p.free.pop_back();
        p.held -= size;
        return block;
      }
  }
  void* block = std::aligned_alloc(kHugePage, size);
  if (block) advise_huge_pages(block, size);
  return block;
}

void result_free(void* block, size_t bytes) {
  if (!block) return;
  const size_t size = rounded(bytes ? bytes : 1);
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  if (p.held + size > kMaxPooledBytes) {
    std::free(block);
    return;
  }
  p.free.emplace_back(block, size);
  p.held += size;
}

size_t result_pool_bytes() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  return p.held;
}

}  // namespace toma
