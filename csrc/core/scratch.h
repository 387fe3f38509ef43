// Reusable float32 work buffers. Large intermediates (merged q/k/v, attention outputs) would
// otherwise be fresh allocations on every call: tens of MB of page faults and zeroing that cost
// as much as the merge itself. Buffers return to a process-wide pool; contents are undefined.
#pragma once
#include <cstddef>

namespace toma {

class Scratch {
 public:
  explicit Scratch(size_t floats);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  float* data_;
  size_t size_;
  size_t capacity_;
};

// Frees every cached buffer (tests of memory growth call it).
void scratch_release_all();

}  // namespace toma
