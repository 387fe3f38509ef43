// ops/attention.h and the SIMD kernel sets of cpu/simd/kernels.h: every available kernel set's
// gemm / dot / dot_f64 / axpy / scale / max / exp2_sum against float64 loops, then attention_cpu
// against the reference at shapes off the 96-query / 256-key blocks, Tq != Tk, 1..8 heads, head dims
// 8 / 64 / 80 / 128, half dtypes. The attention_cpu cases ("cpu_*") run once per ISA: in this
// process with the dispatcher's choice, then in child processes with TOMA_CPU_ISA forced.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "cpu/simd/kernels.h"
#include "ops/attention.h"
#include "tests/harness.h"
#include "tests/reference.h"

using toma::DType;

namespace {

const float kNegInf = -std::numeric_limits<float>::infinity();

std::vector<const toma::CpuKernels*> kernel_sets() {
  std::vector<const toma::CpuKernels*> v;
  for (const std::string& isa : tt::available_isas()) {
    if (isa == "scalar") v.push_back(&toma::kScalarKernels);
#if defined(__x86_64__)
    if (isa == "avx2") v.push_back(&toma::kAvx2Kernels);
    if (isa == "avx512") v.push_back(&toma::kAvx512Kernels);
#endif
  }
  return v;
}

std::vector<float> gaussian(tt::Rng& rng, size_t n, double scale = 1.0) {
  std::vector<float> v(n);
  for (float& x : v) x = (float)(rng.normal() * scale);
  return v;
}

const int kLengths[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 100, 127, 1000, 4097};

}  // namespace

TEST_CASE(attention, kernel_sets_available) {
  const auto sets = kernel_sets();
  std::string names;
  for (auto* k : sets) names += std::string(" ") + k->isa;
  tt::note("kernel sets on this CPU:" + names + "; dispatcher picks " + toma::cpu_kernels().isa);
  CHECK_GE(sets.size(), 1u);
  for (auto* k : sets) {
    CHECK(k->gemm && k->dot && k->dot_f64 && k->axpy && k->wsum && k->scale && k->max && k->exp2_sum);
    // attention.cc's blocks must be multiples of the register tile.
    CHECK_EQ(96 % k->mr, 0);
    CHECK_EQ(256 % k->nr, 0);
  }
  CHECK_EQ(std::string(toma::kScalarKernels.isa), std::string("scalar"));
}

// wsum against a float64 loop: row counts 0 (zeros), 1, a 4x4 region's 16, 70; channel counts off
// every vector width; rows that alias each other; out written whatever it held.
TEST_CASE(attention, kernel_wsum) {
  for (auto* K : kernel_sets()) {
    tt::Rng rng(23);
    for (int n : {0, 1, 3, 16, 70})
      for (int C : {1, 7, 8, 15, 16, 33, 64, 100, 640}) {
        const std::vector<float> pool = gaussian(rng, (size_t)(n + 2) * C);
        const std::vector<float> w = gaussian(rng, (size_t)n + 1);
        std::vector<const float*> rows;
        for (int e = 0; e < n; ++e) rows.push_back(pool.data() + (size_t)((e * 7) % (n + 2)) * C);
        std::vector<float> out(C + 1, std::numeric_limits<float>::quiet_NaN());
        K->wsum(out.data(), rows.data(), w.data(), n, C);
        int bad = 0;
        for (int c = 0; c < C; ++c) {
          double ref = 0, mag = 0;
          for (int e = 0; e < n; ++e) {
            ref += (double)w[e] * rows[e][c];
            mag += std::fabs((double)w[e] * rows[e][c]);
          }
          if (!(std::fabs(out[c] - ref) <= 1e-6 * mag + 1e-30)) ++bad;
        }
        CHECK_MSG(bad == 0, std::string(K->isa) + " wsum n=" + std::to_string(n) + " C=" + std::to_string(C));
        CHECK(std::isnan(out[C]));  // nothing past C written
      }
  }
}

TEST_CASE(attention, kernel_gemm) {
  for (auto* K : kernel_sets()) {
    tt::Rng rng(11);
    const int MR = K->mr, NR = K->nr;
    for (int kc : {0, 1, 2, 7, 16, 64, 100, 257})
      for (int acc : {0, 1}) {
        const int lda = kc + 3, ldc = NR + 5;
        const std::vector<float> A = gaussian(rng, (size_t)MR * lda + 1);
        const std::vector<float> B = gaussian(rng, (size_t)kc * NR + 1);
        std::vector<float> C = gaussian(rng, (size_t)(MR + 1) * ldc);
        const std::vector<float> C0 = C;
        K->gemm(kc, A.data(), lda, B.data(), C.data(), ldc, acc);
        int bad = 0;
        for (int r = 0; r < MR + 1; ++r)
          for (int c = 0; c < ldc; ++c) {
            const size_t i = (size_t)r * ldc + c;
            if (r >= MR || c >= NR) {  // outside the tile: untouched
              bad += C[i] != C0[i];
              continue;
            }
            double want = acc ? C0[i] : 0.0, mag = std::fabs(want);
            for (int p = 0; p < kc; ++p) {
              want += (double)A[(size_t)r * lda + p] * B[(size_t)p * NR + c];
              mag += std::fabs((double)A[(size_t)r * lda + p] * B[(size_t)p * NR + c]);
            }
            if (!(std::fabs(C[i] - want) <= (kc + 2) * 6e-8 * mag + 1e-30)) ++bad;
          }
        CHECK_MSG(bad == 0, std::string(K->isa) + " gemm kc=" + std::to_string(kc) + " accumulate=" + std::to_string(acc) +
                                ": " + std::to_string(bad) + " bad values");
      }
  }
}

TEST_CASE(attention, kernel_dot_and_dot_f64) {
  for (auto* K : kernel_sets()) {
    tt::Rng rng(12);
    for (int n : kLengths)
      for (int off : {0, 1, 3}) {  // unaligned starts
        const std::vector<float> a = gaussian(rng, n + off + 1), b = gaussian(rng, n + off + 1);
        double want = 0, mag = 0;
        for (int i = 0; i < n; ++i) {
          want += (double)a[off + i] * b[off + i];
          mag += std::fabs((double)a[off + i] * b[off + i]);
        }
        const float got = K->dot(a.data() + off, b.data() + off, n);
        CHECK_MSG(std::fabs(got - want) <= (n + 2) * 6e-8 * mag + 1e-30,
                  std::string(K->isa) + " dot n=" + std::to_string(n) + ": " + tt::str(got) + " vs " + tt::str(want));
        const double got64 = K->dot_f64(a.data() + off, b.data() + off, n);
        CHECK_MSG(std::fabs(got64 - want) <= (n + 2) * 2.3e-16 * mag + 1e-300,
                  std::string(K->isa) + " dot_f64 n=" + std::to_string(n) + ": " + tt::str(got64) + " vs " + tt::str(want));
      }
    // dot_f64 keeps what float32 loses: 1e8 + 1 - 1e8.
    const float a[] = {1e8f, 1.f, -1e8f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    const float ones[17] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK_MSG(K->dot_f64(a, ones, 17) == 1.0, std::string(K->isa) + " dot_f64 cancellation");
  }
}

TEST_CASE(attention, kernel_axpy_scale_max) {
  for (auto* K : kernel_sets()) {
    tt::Rng rng(13);
    const std::string isa = K->isa;
    for (int n : kLengths) {
      const int off = 1;
      const float alpha = (float)rng.normal();
      const std::vector<float> x = gaussian(rng, n + 2);
      std::vector<float> y = gaussian(rng, n + 2);
      const std::vector<float> y0 = y;
      K->axpy(y.data() + off, alpha, x.data() + off, n);
      int bad = y[0] != y0[0] || y[n + 1] != y0[n + 1];  // neighbours untouched
      for (int i = 0; i < n; ++i) {
        const double want = (double)y0[off + i] + (double)alpha * x[off + i];
        bad += !(std::fabs(y[off + i] - want) <= 1.2e-7 * (std::fabs(y0[off + i]) + std::fabs(alpha * x[off + i])));
      }
      CHECK_MSG(bad == 0, isa + " axpy n=" + std::to_string(n));
      std::vector<float> s = y0;
      K->scale(s.data() + off, alpha, n);
      bad = s[0] != y0[0] || s[n + 1] != y0[n + 1];
      for (int i = 0; i < n; ++i) bad += s[off + i] != (float)(alpha * y0[off + i]);  // one rounding: exact
      CHECK_MSG(bad == 0, isa + " scale n=" + std::to_string(n));
      // max: exact, with -inf entries and all-negative data; the maximum at every position class.
      std::vector<float> m = gaussian(rng, n + 2, 10);
      for (int i = 0; i < n + 2; ++i) m[i] -= 100;
      if (n > 3) m[off + n / 3] = kNegInf;
      float want = kNegInf;
      for (int i = 0; i < n; ++i) want = std::max(want, m[off + i]);
      CHECK_MSG(K->max(m.data() + off, n) == want, isa + " max n=" + std::to_string(n));
      if (n > 0) {
        m[off + n - 1] = 5.f;  // in the tail
        CHECK_MSG(K->max(m.data() + off, n) == 5.f, isa + " max in the tail n=" + std::to_string(n));
        m[off] = 6.f;
        CHECK_MSG(K->max(m.data() + off, n) == 6.f, isa + " max at the start n=" + std::to_string(n));
        m[0] = m[n + 1] = 1e30f;  // neighbours are not read
        CHECK_MSG(K->max(m.data() + off, n) == 6.f, isa + " max reads outside n=" + std::to_string(n));
      }
    }
  }
}

TEST_CASE(attention, kernel_exp2_sum) {
  for (auto* K : kernel_sets()) {
    tt::Rng rng(14);
    const std::string isa = K->isa;
    for (int n : kLengths)
      for (float m : {0.f, 3.5f, -20.25f}) {
        std::vector<float> x(n + 2);
        for (int i = 0; i < n + 2; ++i) x[i] = m + (float)rng.uniform(-40, 0);
        // Extremes: exactly the max, deep underflow, -inf (masked keys).
        if (n > 0) x[1] = m;
        if (n > 2) x[3] = kNegInf;
        if (n > 5) x[5] = m - 130.f;
        if (n > 6) x[6] = m - 1000.f;
        if (n > 7) x[n] = m - 0.5f;
        const std::vector<float> x0 = x;
        const float s = K->exp2_sum(x.data() + 1, m, n);
        int bad = x[0] != x0[0] || x[n + 1] != x0[n + 1];
        double want_sum = 0;
        for (int i = 1; i <= n; ++i) {
          const double want = std::exp2((double)x0[i] - m);
          want_sum += want;
          if (std::isinf(x0[i])) {
            bad += x[i] != 0.f;
            continue;
          }
          const bool ok = want > std::ldexp(1.0, -120) ? std::fabs(x[i] - want) <= 2e-6 * want
                                                       : std::fabs(x[i] - want) <= std::ldexp(1.0, -120);
          bad += !ok;
        }
        CHECK_MSG(bad == 0, isa + " exp2_sum n=" + std::to_string(n) + " m=" + tt::str(m) + ": " + std::to_string(bad) + " bad");
        // Float32 accumulation of n positive terms: (n - 1) ulps at most, on top of each term's error.
        CHECK_MSG(std::fabs(s - want_sum) <= (2e-6 + n * 6e-8) * want_sum + 1e-37,
                  isa + " exp2_sum sum n=" + std::to_string(n) + ": " + tt::str(s) + " vs " + tt::str(want_sum));
      }
  }
}

// ---- attention_cpu --------------------------------------------------------------------------------

namespace {

struct Shape {
  int B, Tq, Tk, heads, D;
};

struct Types {
  DType q, k, v, out;
};

// q, k, v Gaussian times `mag`; keys optionally growing (or shrinking) along the sequence so the
// online softmax has to rescale between key blocks.
void run_attention(const Shape& s, const Types& t, double scale, uint32_t seed, double mag = 1.0, int ramp = 0) {
  tt::Rng rng(seed);
  const int C = s.heads * s.D;
  const tt::Tensor q = tt::random_tensor(rng, t.q, s.B, s.Tq, C, mag);
  tt::Tensor k = tt::random_tensor(rng, t.k, s.B, s.Tk, C, mag);
  if (ramp)
    for (int b = 0; b < s.B; ++b)
      for (int j = 0; j < s.Tk; ++j) {
        const double f = ramp > 0 ? 1 + j / 128.0 : 1 + (s.Tk - j) / 128.0;
        for (int c = 0; c < C; ++c) {
          const size_t i = ((size_t)b * s.Tk + j) * C + c;
          k.set(i, k.get(i) * f);
        }
      }
  const tt::Tensor v = tt::random_tensor(rng, t.v, s.B, s.Tk, C);
  const auto bq = q.bytes, bk = k.bytes, bv = v.bytes;
  tt::Tensor out = tt::poisoned_tensor(t.out, s.B, s.Tq, C);
  toma::AttentionParams p;
  p.q = q.view();
  p.k = k.view();
  p.v = v.view();
  p.out = out.mview();
  p.heads = s.heads;
  p.scale = (float)scale;
  toma::attention_cpu(p);
  const std::string what = std::string(toma::cpu_kernels().isa) + " B=" + std::to_string(s.B) + " Tq=" +
                           std::to_string(s.Tq) + " Tk=" + std::to_string(s.Tk) + " heads=" + std::to_string(s.heads) +
                           " D=" + std::to_string(s.D) + " " + toma::dtype_name(t.q) + "/" + toma::dtype_name(t.k) + "/" +
                           toma::dtype_name(t.v) + "->" + toma::dtype_name(t.out) + " scale=" + tt::str(scale) +
                           (mag != 1 ? " mag=" + tt::str(mag) : "") + (ramp ? " ramp=" + tt::str(ramp) : "");
  CHECK_MSG(q.bytes == bq && k.bytes == bk && v.bytes == bv, what + ": input modified");
  const std::vector<double> want =
      ref::attention(q.values(), k.values(), v.values(), s.B, s.Tq, s.Tk, C, s.heads, scale);
  // Accumulation is float32 whatever the inputs: the tolerance follows the output dtype.
  CHECK_REL(out.values(), want, tt::dtype_tol(t.out, 1e-4), what);
}

const Types kF32{DType::F32, DType::F32, DType::F32, DType::F32};

}  // namespace

TEST_CASE(attention, cpu_dispatch_isa) {
  const char* want = std::getenv("TOMA_CPU_ISA");
  const std::string got = toma::cpu_kernels().isa;
  tt::note(std::string("attention_cpu runs on ") + got);
  if (want) {
    bool available = false;
    for (const auto& i : tt::available_isas()) available |= i == want;
    if (available) CHECK_EQ(got, std::string(want));
  } else {
    CHECK_EQ(got, tt::available_isas().back());  // the best this CPU has
  }
}

TEST_CASE(attention, cpu_shapes_off_the_blocks) {
  const Shape shapes[] = {
      {1, 1, 1, 1, 8},      {1, 1, 300, 2, 64},  {2, 97, 257, 3, 64}, {1, 200, 300, 8, 8},
      {1, 95, 513, 2, 80},  {1, 193, 129, 1, 128}, {2, 33, 7, 4, 64},  {1, 96, 256, 2, 64},
      {1, 192, 512, 1, 64}, {1, 300, 20, 2, 80},  {3, 5, 3, 1, 128},   {1, 13, 1, 2, 8},
  };
  uint32_t seed = 1;
  for (const Shape& s : shapes) run_attention(s, kF32, 0, seed++);
}

TEST_CASE(attention, cpu_heads_1_to_8_and_head_dims) {
  uint32_t seed = 50;
  for (int heads = 1; heads <= 8; ++heads) run_attention({1, 50, 70, heads, 8}, kF32, 0, seed++);
  for (int D : {8, 64, 80, 128}) run_attention({2, 41, 103, 3, D}, kF32, 0, seed++);
}

TEST_CASE(attention, cpu_half_dtypes) {
  const Types types[] = {
      {DType::F16, DType::F16, DType::F16, DType::F16},   {DType::BF16, DType::BF16, DType::BF16, DType::BF16},
      {DType::F16, DType::F16, DType::F16, DType::F32},   {DType::F32, DType::F32, DType::F32, DType::BF16},
      {DType::F16, DType::BF16, DType::F32, DType::F16},  {DType::BF16, DType::F32, DType::F16, DType::F32},
  };
  uint32_t seed = 70;
  for (const Types& t : types) {
    run_attention({1, 100, 300, 2, 64}, t, 0, seed++);
    run_attention({2, 50, 70, 4, 80}, t, 0, seed++);
  }
}

TEST_CASE(attention, cpu_scale_and_online_softmax) {
  uint32_t seed = 90;
  // Explicit scales, larger scores, and keys growing / shrinking across the three key blocks.
  run_attention({1, 60, 300, 2, 64}, kF32, 0.05, seed++);
  run_attention({1, 60, 300, 2, 64}, kF32, 0.5, seed++);
  run_attention({1, 100, 700, 2, 64}, kF32, 0, seed++, 2.0);
  run_attention({1, 100, 700, 2, 64}, kF32, 0, seed++, 1.0, +1);
  run_attention({1, 100, 700, 2, 64}, kF32, 0, seed++, 1.0, -1);
  run_attention({1, 100, 700, 1, 80}, {DType::BF16, DType::BF16, DType::BF16, DType::BF16}, 0, seed++, 1.5, +1);
}

// qk_nonfinite: set for a NaN or infinity anywhere in q or k (a NaN score can vanish in the
// softmax and leave a finite output), never for finite data, and not for v (which reaches the
// output by itself).
TEST_CASE(attention, cpu_flags_nonfinite_q_and_k) {
  tt::Rng rng(95);
  const int B = 2, Tq = 37, Tk = 70, C = 32;
  for (int which = 0; which < 3; ++which)
    for (int trial = 0; trial < 4; ++trial) {
      tt::Tensor q = tt::random_tensor(rng, DType::F32, B, Tq, C), k = tt::random_tensor(rng, DType::F32, B, Tk, C),
                 v = tt::random_tensor(rng, DType::F32, B, Tk, C), out(DType::F32, B, Tq, C);
      tt::Tensor& bad = which == 0 ? q : which == 1 ? k : v;
      const size_t at = (size_t)rng.uniform_int(0, (int)bad.numel() - 1);
      const double value = trial % 2 ? std::numeric_limits<double>::infinity() : std::nan("");
      toma::AttentionParams p;
      p.q = q.view();
      p.k = k.view();
      p.v = v.view();
      p.out = out.mview();
      p.heads = 4;
      bool flag = false;
      p.qk_nonfinite = &flag;
      toma::attention_cpu(p);
      CHECK_MSG(!flag, "flag set on finite data");
      bad.set(at, value);
      p.q = q.view();
      p.k = k.view();
      p.v = v.view();
      toma::attention_cpu(p);
      CHECK_MSG(flag == (which != 2), std::string("flag ") + (flag ? "set" : "not set") + " for a non-finite " +
                                          "qkv"[which] + " at element " + std::to_string(at));
    }
}

TEST_CASE(attention, other_isas) {
  if (tt::is_child()) return;
  const std::string current = toma::cpu_kernels().isa;
  for (const std::string& isa : tt::available_isas()) {
    if (isa == current) continue;
    const int rc = tt::run_self({"attention", "cpu_"}, {{"TOMA_CPU_ISA", isa}});
    CHECK_MSG(rc == 0, "attention_cpu cases with TOMA_CPU_ISA=" + isa + " exited " + std::to_string(rc));
  }
}
