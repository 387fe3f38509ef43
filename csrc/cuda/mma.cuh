// The warp-level tensor-core instructions of flash.cuh's mma kernel (sm_80+): ldmatrix and
// mma.sync.m16n8k16 with fp32 accumulators. Unlike WMMA, their register layouts are specified by
// the PTX ISA, which is what lets the kernel keep scores, probabilities and the output in
// registers: lane l (g = l / 4, t = l % 4) holds
//   A 16x16 (4 regs of 2 halves): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B 16x8  (2 regs):             b0 = (2t..2t+1, g),  b1 = (2t+8..2t+9, g)
//   C 16x8  (4 floats):           c0, c1 = (g, 2t..2t+1), c2, c3 = (g+8, 2t..2t+1)
// with the lower column (or row, for B) in the low 16 bits. csrc/tests/emu/wmma_emu.h emulates
// exactly this contract on the CPU.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace toma {
namespace flash {

__device__ __forceinline__ unsigned smem_addr(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

// Four 8x8 matrices of 2-byte elements; lane l gives the address of row l % 8 of matrix l / 8 (16
// bytes, 16-byte aligned) and gets, in r[i], elements (l / 4, 2(l % 4) .. +1) of matrix i.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
// The same with each matrix transposed: r[i] holds elements (2(l % 4) .. +1, l / 4) of matrix i.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += A B for a 16x16 A and a 16x8 B of T (fp16 or bf16).
template <class T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1);
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                                         unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace flash
}  // namespace toma
