#include "dtype.h"

namespace toma {

void to_f32(const void* src, DType t, float* dst, size_t n) {
  if (t == DType::F32) {
    std::memcpy(dst, src, n * sizeof(float));
  } else if (t == DType::BF16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (size_t i = 0; i < n; ++i) dst[i] = bits_to_f32((uint32_t)s[i] << 16);
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
  }
}

void from_f32(const float* src, void* dst, DType t, size_t n) {
  if (t == DType::F32) {
    std::memcpy(dst, src, n * sizeof(float));
  } else if (t == DType::BF16) {
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
  } else {
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
  }
}

bool all_finite(const void* src, DType t, size_t n) {
  // Branch-free OR-reduction over the exponent field so the scan vectorises.
  if (t == DType::F32) {
    const uint32_t* s = static_cast<const uint32_t*>(src);
    uint32_t bad = 0;
    for (size_t i = 0; i < n; ++i) bad |= (uint32_t)((s[i] & 0x7f800000u) == 0x7f800000u);
    return bad == 0;
  }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  const uint16_t mask = t == DType::F16 ? 0x7c00u : 0x7f80u;
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad |= (uint32_t)((s[i] & mask) == mask);
  return bad == 0;
}

}  // namespace toma
