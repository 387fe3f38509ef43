// AVX-512 set: a 12 x 32 register tile (24 accumulators), masked tails, exp2 by scalef.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/simd/kernels.h"

namespace toma {

namespace {

constexpr int MR = 12, NR = 32;

void gemm(int kc, const float* A, int lda, const float* B, float* C, int ldc, int accumulate) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    c0[r] = accumulate ? _mm512_loadu_ps(C + r * ldc) : _mm512_setzero_ps();
    c1[r] = accumulate ? _mm512_loadu_ps(C + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (int p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(B + (size_t)p * NR);
    const __m512 b1 = _mm512_loadu_ps(B + (size_t)p * NR + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(A[(size_t)r * lda + p]);
      c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(C + r * ldc, c0[r]);
    _mm512_storeu_ps(C + r * ldc + 16, c1[r]);
  }
}

inline __mmask16 tail_mask(int rem) { return (__mmask16)((1u << rem) - 1u); }

float dot(const float* a, const float* b, int n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask(n - i);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

double dot_f64(const float* a, const float* b, int n) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 va = _mm512_loadu_ps(a + i), vb = _mm512_loadu_ps(b + i);
    s0 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(va)),
                         _mm512_cvtps_pd(_mm512_castps512_ps256(vb)), s0);
    s1 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(va), 1))),
                         _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vb), 1))), s1);
  }
  double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < n; ++i) s += (double)a[i] * b[i];
  return s;
}

void axpy(float* y, float a, const float* x, int n) {
  const __m512 va = _mm512_set1_ps(a);
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 r = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
    _mm512_mask_storeu_ps(y + i, m, r);
  }
}

void wsum(float* out, const float* const* rows, const float* w, int n, int C) {
  int c = 0;
  for (; c + 64 <= C; c += 64) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int e = 0; e < n; ++e) {
      const __m512 we = _mm512_set1_ps(w[e]);
      const float* r = rows[e] + c;
      a0 = _mm512_fmadd_ps(we, _mm512_loadu_ps(r), a0);
      a1 = _mm512_fmadd_ps(we, _mm512_loadu_ps(r + 16), a1);
      a2 = _mm512_fmadd_ps(we, _mm512_loadu_ps(r + 32), a2);
      a3 = _mm512_fmadd_ps(we, _mm512_loadu_ps(r + 48), a3);
    }
    _mm512_storeu_ps(out + c, a0);
    _mm512_storeu_ps(out + c + 16, a1);
    _mm512_storeu_ps(out + c + 32, a2);
    _mm512_storeu_ps(out + c + 48, a3);
  }
  for (; c < C; c += 16) {
    const __mmask16 m = C - c >= 16 ? (__mmask16)0xffff : tail_mask(C - c);
    __m512 a = _mm512_setzero_ps();
    for (int e = 0; e < n; ++e) a = _mm512_fmadd_ps(_mm512_set1_ps(w[e]), _mm512_maskz_loadu_ps(m, rows[e] + c), a);
    _mm512_mask_storeu_ps(out + c, m, a);
  }
}

void scale(float* x, float a, int n) {
  const __m512 va = _mm512_set1_ps(a);
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(va, _mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, x + i)));
  }
}

float max(const float* x, int n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  __m512 m = _mm512_set1_ps(ninf);
  int i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
  if (i < n) m = _mm512_mask_max_ps(m, tail_mask(n - i), m, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
  return _mm512_reduce_max_ps(m);
}

// 2^x for x <= 0 (softmax arguments): round to the nearest integer n, degree-6 Taylor polynomial
// of 2^f on [-0.5, 0.5] (relative error < 1.3e-7 before float rounding), then scale by 2^n.
inline __m512 exp2_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-160.f));  // -inf and deep underflow scale to exactly 0
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.540353039338161e-04f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618129107628477e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550410866482158e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402265069591007e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471805599453e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

float exp2_sum(float* x, float m, int n) {
  const __m512 vm = _mm512_set1_ps(m);
  __m512 s = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp2_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    _mm512_storeu_ps(x + i, e);
    s = _mm512_add_ps(s, e);
  }
  if (i < n) {
    const __mmask16 k = tail_mask(n - i);
    const __m512 e = exp2_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
    _mm512_mask_storeu_ps(x + i, k, e);
    s = _mm512_mask_add_ps(s, k, s, e);
  }
  return _mm512_reduce_add_ps(s);
}

// Register-blocked 4 x 4 tiles of the lower triangle, mirrored; 16 accumulators of 8 doubles.
// The rows are widened to float64 once, into a per-thread buffer that stays in L2: widening
// inside the tiles costs each row one conversion per tile it meets (4 for a 16-token region),
// and the conversions, not the FMAs, then bound the loop.
void gram_f64(const float* const* rows, int n, int C, double* G) {
  const int Cp = (C + 7) / 8 * 8;
  thread_local std::vector<double> wide;
  wide.resize((size_t)n * Cp);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < Cp; c += 8) {
      const __mmask8 m = C - c >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (C - c)) - 1u);
      _mm512_storeu_pd(wide.data() + (size_t)i * Cp + c, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, rows[i] + c)));
    }
  const double* X = wide.data();
  for (int i0 = 0; i0 < n; i0 += 4)
    for (int j0 = 0; j0 <= i0; j0 += 4) {
      const double* a[4];
      const double* b[4];
      for (int r = 0; r < 4; ++r) {
        a[r] = X + (size_t)std::min(i0 + r, n - 1) * Cp;  // rows past n repeat the last: ignored
        b[r] = X + (size_t)std::min(j0 + r, n - 1) * Cp;
      }
      __m512d acc[4][4];
      for (int r = 0; r < 4; ++r)
        for (int s = 0; s < 4; ++s) acc[r][s] = _mm512_setzero_pd();
      for (int c = 0; c < Cp; c += 8) {  // the padding is zero
        __m512d va[4], vb[4];
        for (int r = 0; r < 4; ++r) {
          va[r] = _mm512_loadu_pd(a[r] + c);
          vb[r] = _mm512_loadu_pd(b[r] + c);
        }
        for (int r = 0; r < 4; ++r)
          for (int s = 0; s < 4; ++s) acc[r][s] = _mm512_fmadd_pd(va[r], vb[s], acc[r][s]);
      }
      for (int r = 0; r < 4 && i0 + r < n; ++r)
        for (int s = 0; s < 4 && j0 + s < n; ++s) {
          const double v = _mm512_reduce_add_pd(acc[r][s]);
          G[(size_t)(i0 + r) * n + j0 + s] = v;
          G[(size_t)(j0 + s) * n + i0 + r] = v;
        }
    }
}

}  // namespace

const CpuKernels kAvx512Kernels = {"avx512", MR, NR, gemm, dot, dot_f64, axpy, wsum, scale, max, exp2_sum, gram_f64};

}  // namespace toma
#endif
