// Unit tests of the emulated Hopper instructions themselves (hopper_emu.h), each against a plain
// reference written here from the PTX ISA / CUDA driver documentation, independently of the
// emulator's own code:
//  - wgmma m64nNk16 (N = 64, 128; f16, bf16) with A and B from 128-byte-swizzled K-major tiles
//    addressed by descriptors, stepping K by moving the start address, equals a float64 matmul;
//  - A from registers (the ISA's fragment layout) times an MN-major (transposed) swizzled B, two
//    64-column atoms apart by LBO, equals a float64 matmul;
//  - cp.async.bulk.tensor 2-D and 3-D (boxes, strides, out-of-bounds zero fill, no / 64 / 128-byte
//    swizzle, the driver's argument checks)
//    places every element where the swizzle formula says, and TMA-loaded tiles feed wgmma;
//  - mbarrier phases, parity waits and tx-counts;
// and planted bugs: each must make its check fail (run in a child process, since the emulator
// aborts on a broken rule). usage: emu_hopper_isa SEED [CASE]
#include "hopper_emu.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

using namespace toma::sm90;

namespace {

int fails = 0;
std::mt19937 rng;

// try_wait's answer without yielding (the single-thread phase test).
int mbar_try_wait_probe(uint32_t bar, unsigned parity) {
  emu::Mbar& b = emu::mbar_at(bar, "probe");
  return (b.phase & 1u) != (parity & 1u);
}
std::string plant;  // the planted bug this process runs with ("" = none)

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++fails;
}

uint16_t to_bits(float f, bool bf16) {
  if (bf16) {
    __nv_bfloat16 h = __float2bfloat16_rn(f);
    uint16_t b;
    std::memcpy(&b, &h, 2);
    return b;
  }
  __half h = __float2half_rn(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
float from_bits(uint16_t b, bool bf16) { return emu::half_bits(b, bf16); }

// Random matrix, rounded to the input type, kept as the values the hardware would see.
std::vector<float> rand_mat(int rows, int cols, bool bf16) {
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> m((size_t)rows * cols);
  for (auto& x : m) x = from_bits(to_bits(nd(rng), bf16), bf16);
  return m;
}

// Row r, 2-byte column c of a K-major tile stored as 64-column atoms of `rows` rows of 128 bytes,
// 128-byte swizzle: the 16-byte chunk c / 8 of row r moves to chunk (c / 8) ^ (r % 8). (The CUDA
// driver's CU_TENSOR_MAP_SWIZZLE_128B pattern for 1024-byte aligned tiles.)
size_t sw128_offset(int r, int c, int rows) {
  const int atom = c / 64, cc = c % 64;
  int chunk = cc / 8;
  if (plant == "swizzle") chunk ^= (r % 4);  // planted: a 64-byte pattern where 128 is declared
  else chunk ^= (r % 8);
  return (size_t)atom * rows * 128 + (size_t)r * 128 + chunk * 16 + (cc % 8) * 2;
}

uint64_t desc128(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)(addr >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) | (1ull << 62);
}

// One 384-thread block whose shared memory starts 1024-aligned at `base` (past the emulator's
// misaligned buffer start).
uint32_t aligned_base(unsigned char* smem_raw, unsigned char** p) {
  const uint32_t a = smem_u32(smem_raw), b = (a + 1023) & ~1023u;
  *p = smem_raw + (b - a);
  return b;
}

// ---- wgmma, A and B from shared memory, K-major, 128-byte swizzle --------------------------------
template <int N>
void test_wgmma_ss(bool bf16, int K) {
  const std::vector<float> A = rand_mat(64, K, bf16), B = rand_mat(N, K, bf16);
  std::vector<double> got(64 * N, NAN);
  const size_t a_bytes = (size_t)64 * K * 2, b_bytes = (size_t)N * K * 2;
  emu::launch(
      [&] {
        unsigned char* s;
        const uint32_t base = aligned_base(emu::smem(), &s);
        const int t = threadIdx.x;
        if (t == 0) {
          for (int r = 0; r < 64; ++r)
            for (int c = 0; c < K; ++c) {
              const uint16_t b = to_bits(A[r * K + c], bf16);
              std::memcpy(s + sw128_offset(r, c, 64), &b, 2);
            }
          for (int r = 0; r < N; ++r)
            for (int c = 0; c < K; ++c) {
              const uint16_t b = to_bits(B[r * K + c], bf16);
              std::memcpy(s + a_bytes + sw128_offset(r, c, N), &b, 2);
            }
        }
        if (plant != "proxy") fence_proxy_async();
        __syncthreads();
        float d[N / 2];
        for (auto& x : d) x = 0.f;
        if (plant != "nofence") wgmma_fence();
        for (int kk = 0; kk < K / 16; ++kk) {
          // k-slice kk: 32 bytes further into the row, 64-column atoms rows * 128 bytes apart.
          const uint32_t a = base + (kk / 4) * 64 * 128 + (kk % 4) * 32;
          const uint32_t b = base + (uint32_t)a_bytes + (kk / 4) * N * 128 + (kk % 4) * 32;
          if (bf16) wgmma_ss<__nv_bfloat16, N, false>(d, desc128(a, 16, 1024), desc128(b, 16, 1024), kk > 0);
          else wgmma_ss<__half, N, false>(d, desc128(a, 16, 1024), desc128(b, 16, 1024), kk > 0);
        }
        wgmma_commit();
        if (plant != "nowait") wgmma_wait<0>();
        const int w = t / 32, l = t % 32, g = l / 4, q = l % 4;
        // d[4j + 0, 1]: row g, columns 8j + 2q, +1; d[4j + 2, 3]: row g + 8 (of warp w's 16)
        for (int j = 0; j < N / 8; ++j) {
          got[(16 * w + g) * N + 8 * j + 2 * q] = d[4 * j];
          got[(16 * w + g) * N + 8 * j + 2 * q + 1] = d[4 * j + 1];
          got[(16 * w + g + 8) * N + 8 * j + 2 * q] = d[4 * j + 2];
          got[(16 * w + g + 8) * N + 8 * j + 2 * q + 1] = d[4 * j + 3];
        }
        if (plant == "nowait") wgmma_wait<0>();
      },
      dim3(1), 128, a_bytes + b_bytes + 1024);
  double num = 0, den = 0;
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < N; ++n) {
      double r = 0;
      for (int k = 0; k < K; ++k) r += (double)A[m * K + k] * B[n * K + k];
      num += (got[m * N + n] - r) * (got[m * N + n] - r), den += r * r;
    }
  const double err = std::sqrt(num / den);
  check(err < 1e-6, "wgmma ss m64n" + std::to_string(N) + " K=" + std::to_string(K) + (bf16 ? " bf16" : " f16") +
                        " (K-major, 128B swizzle, descriptors): rel err " + std::to_string(err));
}

// ---- wgmma, A from registers, B MN-major (transposed), 128-byte swizzle ---------------------------
template <int N>
void test_wgmma_rs(bool bf16) {
  constexpr int K = 64;
  const std::vector<float> P = rand_mat(64, K, bf16), V = rand_mat(K, N, bf16);  // O = P V, V [K][N]
  std::vector<double> got(64 * N, NAN);
  emu::launch(
      [&] {
        unsigned char* s;
        const uint32_t base = aligned_base(emu::smem(), &s);
        const int t = threadIdx.x;
        if (t == 0)
          for (int k = 0; k < K; ++k)
            for (int n = 0; n < N; ++n) {
              // V rows (keys) of 128 bytes per 64-column atom: the K-major formula with the roles swapped
              const uint16_t b = to_bits(V[k * N + n], bf16);
              std::memcpy(s + sw128_offset(k, n, K), &b, 2);
            }
        fence_proxy_async();
        __syncthreads();
        const int w = t / 32, l = t % 32, g = l / 4, q = l % 4;
        float d[N / 2];
        for (auto& x : d) x = 0.f;
        wgmma_fence();
        unsigned a[K / 16][4];
        for (int kk = 0; kk < K / 16; ++kk) {
          // a0: (g, 2q..2q+1), a1: (g+8, 2q..), a2: (g, 2q+8..), a3: (g+8, 2q+8..), low half first
          const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * q, 2 * q, 2 * q + 8, 2 * q + 8};
          for (int r = 0; r < 4; ++r) {
            int rr = r;
            if (plant == "fragment") rr = r == 1 ? 2 : r == 2 ? 1 : r;  // planted: a1 and a2 swapped
            const int row = 16 * w + rows[rr], col = 16 * kk + cols[rr];
            a[kk][r] = (unsigned)to_bits(P[row * K + col], bf16) | ((unsigned)to_bits(P[row * K + col + 1], bf16) << 16);
          }
          // k-slice kk: keys 16kk.. = 16 rows of 128 bytes further; next 8 keys SBO = 1024 bytes;
          // the second 64-column atom LBO = K * 128 bytes further.
          uint32_t lbo = K * 128, sbo = 1024;
          if (plant == "lbo") std::swap(lbo, sbo);
          const uint64_t db = desc128(base + kk * 16 * 128, lbo, sbo);
          if (bf16) wgmma_rs<__nv_bfloat16, N, true>(d, a[kk], db, 1);
          else wgmma_rs<__half, N, true>(d, a[kk], db, 1);
        }
        wgmma_commit();
        wgmma_wait<0>();
        for (int j = 0; j < N / 8; ++j)
          for (int h = 0; h < 2; ++h)
            for (int e = 0; e < 2; ++e) got[(16 * w + g + 8 * h) * N + 8 * j + 2 * q + e] = d[4 * j + 2 * h + e];
      },
      dim3(1), 128, (size_t)K * N * 2 + 1024);
  double num = 0, den = 0;
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < N; ++n) {
      double r = 0;
      for (int k = 0; k < K; ++k) r += (double)P[m * K + k] * V[k * N + n];
      num += (got[m * N + n] - r) * (got[m * N + n] - r), den += r * r;
    }
  const double err = std::sqrt(num / den);
  check(err < 1e-6, "wgmma rs m64n" + std::to_string(N) + (bf16 ? " bf16" : " f16") +
                        " (A in registers, B MN-major, 128B swizzle): rel err " + std::to_string(err));
}

// ---- cp.async.bulk.tensor 3-D ----------------------------------------------------------------------
void test_tma(CUtensorMapSwizzle sw) {
  const int C = 192, T = 50, B = 2, box0 = sw == CU_TENSOR_MAP_SWIZZLE_64B ? 32 : 64, box1 = 40;
  std::vector<uint16_t> g((size_t)B * T * C);
  for (auto& x : g) x = (uint16_t)(rng() & 0x7bff);  // finite fp16 bit patterns
  CUtensorMap map;
  const cuuint64_t dim[3] = {(cuuint64_t)C, (cuuint64_t)T, (cuuint64_t)B};
  const cuuint64_t strides[2] = {(cuuint64_t)C * 2, (cuuint64_t)T * C * 2};
  const cuuint32_t box[3] = {(cuuint32_t)box0, (cuuint32_t)box1, 1}, es[3] = {1, 1, 1};
  const CUresult r = emu::encode_tiled(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3, g.data(), dim, strides, box, es,
                                       CU_TENSOR_MAP_INTERLEAVE_NONE, sw, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                                       CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  check(r == CUDA_SUCCESS, "tensor map encodes");
  // coordinates: in range, rows past the end (zero fill), negative rows, the second batch
  const int coords[4][3] = {{64, 0, 0}, {128, 30, 0}, {0, -7, 1}, {160, 45, 1}};
  const int bits = sw == CU_TENSOR_MAP_SWIZZLE_128B ? 3 : sw == CU_TENSOR_MAP_SWIZZLE_64B ? 2 : 0;
  const size_t tile = (size_t)box0 * box1 * 2;
  std::vector<uint16_t> got(4 * tile / 2);
  emu::launch(
      [&] {
        unsigned char* s;
        const uint32_t base = aligned_base(emu::smem(), &s);
        const uint32_t bar = base + 4 * (uint32_t)tile;
        if (threadIdx.x == 0) {
          mbar_init(bar, 1);
          fence_barrier_init();
        }
        __syncthreads();
        if (threadIdx.x == 0) {
          mbar_arrive_expect_tx(bar, plant == "expect_tx" ? 3 * (unsigned)tile : 4 * (unsigned)tile);
          for (int i = 0; i < 4; ++i)
            tma_load_3d(base + i * (uint32_t)tile, &map, coords[i][0], coords[i][1], coords[i][2], bar);
        }
        if (plant != "nowait") mbar_wait(bar, plant == "parity" ? 1 : 0);
        if (threadIdx.x == 0) std::memcpy(got.data(), s, 4 * tile);
        if (plant == "nowait") mbar_wait(bar, 0);
      },
      dim3(1), 32, 4 * tile + 1024 + 64);
  size_t bad = 0;
  for (int i = 0; i < 4; ++i)
    for (int r = 0; r < box1; ++r)
      for (int c = 0; c < box0; ++c) {
        const int gc = coords[i][0] + c, gr = coords[i][1] + r, gb = coords[i][2];
        const uint16_t want = (gc < C && gr >= 0 && gr < T) ? g[((size_t)gb * T + gr) * C + gc] : 0;
        // row r of box0 * 2 bytes; 16-byte chunk bits [4, 4 + b) XOR address bits [7, 7 + b)
        size_t off = (size_t)r * box0 * 2 + c * 2;
        if (bits) off ^= ((off >> 7) & ((1u << bits) - 1)) << 4;
        if (got[(i * tile + off) / 2] != want) ++bad;
      }
  check(bad == 0, std::string("cp.async.bulk.tensor 3-D, swizzle ") +
                      (bits == 3 ? "128B" : bits == 2 ? "64B" : "none") + ": " + std::to_string(bad) + " misplaced elements");
}

// ---- cp.async.bulk.tensor 2-D: a [rows, cols] matrix with a row pitch wider than its columns ------
void test_tma_2d(CUtensorMapSwizzle sw) {
  const int cols = 72, rows = 33, pitch = 80, box0 = 64, box1 = 16;  // elements; pitch * 2 bytes: 16-byte multiple
  std::vector<uint16_t> g((size_t)rows * pitch);
  for (auto& x : g) x = (uint16_t)(rng() & 0x7bff);
  CUtensorMap map;
  const cuuint64_t dim[2] = {(cuuint64_t)cols, (cuuint64_t)rows}, strides[1] = {(cuuint64_t)pitch * 2};
  const cuuint32_t box[2] = {(cuuint32_t)box0, (cuuint32_t)box1}, es[2] = {1, 1};
  check(emu::encode_tiled(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, g.data(), dim, strides, box, es,
                          CU_TENSOR_MAP_INTERLEAVE_NONE, sw, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS,
        "2-D tensor map encodes");
  // the driver's checks: a stride not a multiple of 16 bytes, a box row wider than the swizzle
  const cuuint64_t bad_stride[1] = {(cuuint64_t)pitch * 2 + 2};
  const cuuint32_t wide[2] = {128, 16};
  check(emu::encode_tiled(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, g.data(), dim, bad_stride, box, es,
                          CU_TENSOR_MAP_INTERLEAVE_NONE, sw, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_ERROR_INVALID_VALUE &&
            emu::encode_tiled(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, g.data(), dim, strides, wide, es,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_ERROR_INVALID_VALUE,
        "tensor map arguments the driver refuses are refused");
  emu::encode_tiled(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, g.data(), dim, strides, box, es,
                    CU_TENSOR_MAP_INTERLEAVE_NONE, sw, CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  const int coords[3][2] = {{0, 0}, {40, 25}, {-8, -3}};  // in range; past both ends; before both starts
  const size_t tile = (size_t)box0 * box1 * 2;
  const int bits = sw == CU_TENSOR_MAP_SWIZZLE_128B ? 3 : 0;
  std::vector<uint16_t> got(3 * tile / 2);
  emu::launch(
      [&] {
        unsigned char* s;
        const uint32_t base = aligned_base(emu::smem(), &s), bar = base + 3 * 2048;
        if (threadIdx.x == 0) {
          mbar_init(bar, 1);
          mbar_arrive_expect_tx(bar, 3 * (unsigned)tile);
          for (int i = 0; i < 3; ++i) tma_load_2d(base + i * 2048, &map, coords[i][0], coords[i][1], bar);
        }
        mbar_wait(bar, 0);
        if (threadIdx.x == 0)
          for (int i = 0; i < 3; ++i) std::memcpy(got.data() + i * tile / 2, s + i * 2048, tile);
      },
      dim3(1), 32, 3 * 2048 + 1024 + 64);
  size_t bad = 0;
  for (int i = 0; i < 3; ++i)
    for (int r = 0; r < box1; ++r)
      for (int c = 0; c < box0; ++c) {
        const int gc = coords[i][0] + c, gr = coords[i][1] + r;
        const uint16_t want = (gc >= 0 && gc < cols && gr >= 0 && gr < rows) ? g[(size_t)gr * pitch + gc] : 0;
        size_t off = (size_t)r * box0 * 2 + c * 2;
        if (bits) off ^= ((off >> 7) & 7) << 4;
        if (got[(i * tile + off) / 2] != want) ++bad;
      }
  check(bad == 0, std::string("cp.async.bulk.tensor 2-D (row pitch, zero fill on all sides), swizzle ") +
                      (bits ? "128B" : "none") + ": " + std::to_string(bad) + " misplaced elements");
}

// ---- TMA-loaded swizzled tiles into wgmma ---------------------------------------------------------
void test_tma_wgmma(bool bf16) {
  const int T = 100, C = 128, row0 = 20;  // Q rows row0 .. row0 + 63 against K rows 0..63 (all head dims)
  const std::vector<float> X = rand_mat(T, C, bf16);
  std::vector<uint16_t> g((size_t)T * C);
  for (size_t i = 0; i < g.size(); ++i) g[i] = to_bits(X[i], bf16);
  CUtensorMap map;
  const cuuint64_t dim[3] = {(cuuint64_t)C, (cuuint64_t)T, 1}, strides[2] = {(cuuint64_t)C * 2, (cuuint64_t)T * C * 2};
  const cuuint32_t box[3] = {64, 64, 1}, es[3] = {1, 1, 1};
  emu::encode_tiled(&map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3, g.data(), dim,
                    strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                    CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  std::vector<double> got(64 * 64, NAN);
  emu::launch(
      [&] {
        unsigned char* s;
        const uint32_t base = aligned_base(emu::smem(), &s);
        const uint32_t q = base, k = base + 2 * 8192, bar = base + 4 * 8192;
        if (threadIdx.x == 0) mbar_init(bar, 1), fence_barrier_init();
        __syncthreads();
        if (threadIdx.x == 0) {
          mbar_arrive_expect_tx(bar, 4 * 8192);
          for (int h = 0; h < 2; ++h) {  // two 64-column atoms of each 64 x 128 tile
            tma_load_3d(q + h * 8192, &map, 64 * h, row0, 0, bar);
            tma_load_3d(k + h * 8192, &map, 64 * h, 0, 0, bar);
          }
        }
        mbar_wait(bar, 0);
        float d[32];
        wgmma_fence();
        for (int kk = 0; kk < C / 16; ++kk) {
          const uint32_t off = (kk / 4) * 8192 + (kk % 4) * 32;
          if (bf16) wgmma_ss<__nv_bfloat16, 64, false>(d, desc128(q + off, 16, 1024), desc128(k + off, 16, 1024), kk > 0);
          else wgmma_ss<__half, 64, false>(d, desc128(q + off, 16, 1024), desc128(k + off, 16, 1024), kk > 0);
        }
        wgmma_commit();
        wgmma_wait<0>();
        const int t = threadIdx.x, w = t / 32, l = t % 32, gg = l / 4, qq = l % 4;
        for (int v = 0; v < 32; ++v) got[(16 * w + gg + 8 * ((v / 2) % 2)) * 64 + 8 * (v / 4) + 2 * qq + v % 2] = d[v];
      },
      dim3(1), 128, 4 * 8192 + 1024 + 64);
  double num = 0, den = 0;
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < 64; ++n) {
      double r = 0;
      for (int c = 0; c < C; ++c) r += (double)X[(row0 + m) * C + c] * X[n * C + c];
      num += (got[m * 64 + n] - r) * (got[m * 64 + n] - r), den += r * r;
    }
  const double err = std::sqrt(num / den);
  check(err < 1e-6, std::string("TMA (128B swizzle) tiles into wgmma Q K^T, D=128") + (bf16 ? " bf16" : " f16") +
                        ": rel err " + std::to_string(err));
}

// ---- mbarrier phases ------------------------------------------------------------------------------
void test_mbarrier() {
  std::vector<int> log;
  emu::launch(
      [&] {
        unsigned char* s;
        const uint32_t base = aligned_base(emu::smem(), &s), bar = base;
        const int t = threadIdx.x;
        if (t == 0) {
          mbar_init(bar, 2);
          // fresh: phase 0 incomplete; the phase "before" it (parity 1) counts as complete
          log.push_back(mbar_try_wait_probe(bar, 0));
          log.push_back(mbar_try_wait_probe(bar, 1));
          mbar_arrive(bar);
          log.push_back(mbar_try_wait_probe(bar, 0));  // one of two arrivals: still 0
          mbar_arrive(bar);
          log.push_back(mbar_try_wait_probe(bar, 0));  // phase 0 complete: 1
          log.push_back(mbar_try_wait_probe(bar, 1));  // phase 1 not: 0
          mbar_arrive_expect_tx(bar, 100);
          mbar_arrive(bar);
          log.push_back(mbar_try_wait_probe(bar, 1));  // arrivals done, 100 bytes outstanding: 0
          emu::Mbar& b = emu::mbars[bar];
          b.tx -= 100;  // the bytes land
          emu::mbar_check_phase(b);
          log.push_back(mbar_try_wait_probe(bar, 1));  // 1
          log.push_back(mbar_try_wait_probe(bar, 0));  // phase 2 (parity 0) not yet: 0
        }
      },
      dim3(1), 32, 2048);
  const std::vector<int> want = {0, 1, 0, 1, 0, 0, 1, 0};
  check(log == want, "mbarrier phases, parity waits and tx-count");
}

void run_all() {
  for (int bf = 0; bf < 2; ++bf) {
    test_wgmma_ss<64>(bf, 64);
    test_wgmma_ss<128>(bf, 128);
    test_wgmma_rs<64>(bf);
    test_wgmma_rs<128>(bf);
    test_tma_wgmma(bf);
  }
  test_tma(CU_TENSOR_MAP_SWIZZLE_NONE);
  test_tma(CU_TENSOR_MAP_SWIZZLE_64B);
  test_tma(CU_TENSOR_MAP_SWIZZLE_128B);
  test_tma_2d(CU_TENSOR_MAP_SWIZZLE_NONE);
  test_tma_2d(CU_TENSOR_MAP_SWIZZLE_128B);
  test_mbarrier();
}

// Runs one check with a planted bug in a child; the bug is caught when the child fails its check
// or the emulator aborts on a broken rule.
// why: the child's last line (its failed check, or the emulator's error).
bool caught(const char* bug, uint32_t seed, std::string& why) {
  std::fflush(stdout);
  char path[] = "/tmp/emu_hopper_isa_XXXXXX";
  const int fd = mkstemp(path);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    plant = bug;
    rng.seed(seed);
    if (plant == "swizzle" || plant == "nowait" || plant == "nofence" || plant == "proxy") test_wgmma_ss<64>(false, 64);
    if (plant == "fragment" || plant == "lbo") test_wgmma_rs<128>(false);
    if (plant == "parity" || plant == "expect_tx") test_tma(CU_TENSOR_MAP_SWIZZLE_128B);
    _exit(fails ? 1 : 0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  why.clear();
  if (FILE* f = std::fopen(path, "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "ok  ", 4)) why = line;
    std::fclose(f);
  }
  if (!why.empty() && why.back() == '\n') why.pop_back();
  close(fd);
  unlink(path);
  return !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s SEED\n", argv[0]);
    return 2;
  }
  const uint32_t seed = (uint32_t)std::stoul(argv[1]);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  rng.seed(seed);
  run_all();
  const char* bugs[] = {"swizzle", "fragment", "lbo", "nowait", "nofence", "proxy", "parity", "expect_tx"};
  for (const char* b : bugs) {
    std::string why;
    const bool c = caught(b, seed, why);
    check(c, std::string("planted bug '") + b + "' is caught: " + why);
  }
  std::printf("%s: %d failures, %ld blocks\n", fails ? "FAILED" : "PASSED", fails, emu::blocks_run);
  return fails ? 1 : 0;
}
