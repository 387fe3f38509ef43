#include "core/scratch.h"

#include "core/result_memory.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace toma {

namespace {

// Buffers kept for reuse; beyond this many bytes they go back to the system.
constexpr size_t kMaxCachedBytes = size_t(768) << 20;

struct Block {
  float* data;
  size_t capacity;
};

struct Pool {
  std::mutex m;
  std::vector<Block> free;
  size_t cached = 0;
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: buffers may be released during exit
  return *p;
}

}  // namespace

Scratch::Scratch(size_t floats) : data_(nullptr), size_(floats), capacity_(0) {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.m);
    // The smallest cached block that fits (a block far larger than needed is left for others).
    size_t best = p.free.size();
    for (size_t i = 0; i < p.free.size(); ++i)
      if (p.free[i].capacity >= floats && p.free[i].capacity <= 4 * floats + 4096 &&
          (best == p.free.size() || p.free[i].capacity < p.free[best].capacity))
        best = i;
    if (best != p.free.size()) {
      data_ = p.free[best].data;
      capacity_ = p.free[best].capacity;
      p.cached -= capacity_ * sizeof(float);
      p.free.erase(p.free.begin() + best);
      return;
    }
  }
  capacity_ = floats ? floats : 1;
  data_ = static_cast<float*>(std::aligned_alloc(64, (capacity_ * sizeof(float) + 63) / 64 * 64));
  if (!data_) throw std::bad_alloc();
  advise_huge_pages(data_, capacity_ * sizeof(float));  // fewer first-touch faults
}

Scratch::~Scratch() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  if (p.cached + capacity_ * sizeof(float) > kMaxCachedBytes) {
    std::free(data_);
    return;
  }
  p.free.push_back({data_, capacity_});
  p.cached += capacity_ * sizeof(float);
}

void scratch_release_all() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  for (const Block& b : p.free) std::free(b.data);
  p.free.clear();
  p.cached = 0;
}

}  // namespace toma
