#include <cstdlib>
#include <cstring>

#include "cpu/simd/kernels.h"

namespace toma {

namespace {

const CpuKernels& choose() {
  const char* want = std::getenv("TOMA_CPU_ISA");
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (want && std::strcmp(want, "scalar") == 0) return kScalarKernels;
  if (want && std::strcmp(want, "avx2") == 0 && has2) return kAvx2Kernels;
  if (has512 && !(want && std::strcmp(want, "avx2") == 0)) return kAvx512Kernels;
  if (has2) return kAvx2Kernels;
#else
  (void)want;
#endif
  return kScalarKernels;
}

}  // namespace

const CpuKernels& cpu_kernels() {
  static const CpuKernels& k = choose();
  return k;
}

}  // namespace toma
