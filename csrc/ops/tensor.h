// Views of the [B, T, C] token tensors the ops read and write. No ownership, no Node types.
#pragma once
#include <cstdint>
#include "core/dtype.h"

namespace toma {

struct ConstTokens {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int B = 0, T = 0, C = 0;
  float at(int b, int t, int c) const {
    return load_as_f32(data, dtype, ((size_t)b * T + t) * C + c);
  }
};

struct Tokens {
  void* data = nullptr;
  DType dtype = DType::F32;
  int B = 0, T = 0, C = 0;
  operator ConstTokens() const { return ConstTokens{data, dtype, B, T, C}; }
};

}  // namespace toma
