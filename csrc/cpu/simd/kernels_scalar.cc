// Portable fallback; also the reference the SIMD sets are tested against.
#include <cmath>
#include <limits>

#include "cpu/simd/kernels.h"

namespace toma {

namespace {

constexpr int MR = 4, NR = 16;

void gemm(int kc, const float* A, int lda, const float* B, float* C, int ldc, int accumulate) {
  float acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = accumulate ? C[r * ldc + c] : 0.f;
  for (int p = 0; p < kc; ++p) {
    const float* b = B + (size_t)p * NR;
    for (int r = 0; r < MR; ++r) {
      const float a = A[(size_t)r * lda + p];
      for (int c = 0; c < NR; ++c) acc[r][c] += a * b[c];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) C[r * ldc + c] = acc[r][c];
}

float dot(const float* a, const float* b, int n) {
  float s[4] = {0, 0, 0, 0};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) s[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

double dot_f64(const float* a, const float* b, int n) {
  double s0 = 0, s1 = 0;
  int i = 0;
  for (; i + 2 <= n; i += 2) {
    s0 += (double)a[i] * b[i];
    s1 += (double)a[i + 1] * b[i + 1];
  }
  if (i < n) s0 += (double)a[i] * b[i];
  return s0 + s1;
}

void wsum(float* out, const float* const* rows, const float* w, int n, int C) {
  for (int c = 0; c < C; ++c) out[c] = 0.f;
  for (int e = 0; e < n; ++e)
    for (int c = 0; c < C; ++c) out[c] += w[e] * rows[e][c];
}

void axpy(float* y, float a, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

void scale(float* x, float a, int n) {
  for (int i = 0; i < n; ++i) x[i] *= a;
}

float max(const float* x, int n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

float exp2_sum(float* x, float m, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp2(x[i] - m);
    s += x[i];
  }
  return s;
}

}  // namespace

const CpuKernels kScalarKernels = {"scalar", MR, NR, gemm, dot, dot_f64, axpy, wsum, scale, max, exp2_sum, nullptr};

}  // namespace toma
