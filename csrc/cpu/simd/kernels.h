// The float32 inner loops of the CPU ops, one implementation per instruction set, chosen once at
// run time so the binary stays portable across x86-64 CPUs (and builds on others, scalar only).
#pragma once

namespace toma {

struct CpuKernels {
  const char* isa;
  int mr, nr;  // register tile of `gemm`
  // C[mr x nr] = (accumulate ? C : 0) + A[mr x kc] * B[kc x nr].
  // A: rows at stride lda. B: packed, kc rows of nr contiguous floats. C: rows at stride ldc.
  void (*gemm)(int kc, const float* A, int lda, const float* B, float* C, int ldc, int accumulate);
  float (*dot)(const float* a, const float* b, int n);
  // Float64 accumulation: similarities that a large temperature amplifies (SPEC section 5).
  double (*dot_f64)(const float* a, const float* b, int n);
  void (*axpy)(float* y, float a, const float* x, int n);  // y += a * x
  // out[0..C) = sum_e w[e] * rows[e][0..C), accumulated in registers (out is written once; zero
  // for n = 0): the sparse row sums of merge, unmerge and the merged attention's gathers.
  void (*wsum)(float* out, const float* const* rows, const float* w, int n, int C);
  void (*scale)(float* x, float a, int n);                 // x *= a
  float (*max)(const float* x, int n);
  // x[i] = 2^(x[i] - m), returns the sum; -inf maps to 0.
  float (*exp2_sum)(float* x, float m, int n);
  // G = X X^T in float64 for n float32 rows of C channels (full symmetric n x n): each product is
  // exact in float64, so only the sums round. May be null: callers then use dot_f64 pair by pair.
  void (*gram_f64)(const float* const* rows, int n, int C, double* G);
};

// The best set for this CPU; TOMA_CPU_ISA=scalar|avx2|avx512 forces one (if the CPU has it).
const CpuKernels& cpu_kernels();

extern const CpuKernels kScalarKernels;
#if defined(__x86_64__)
extern const CpuKernels kAvx2Kernels;
extern const CpuKernels kAvx512Kernels;
#endif

}  // namespace toma
