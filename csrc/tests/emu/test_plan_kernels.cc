// The plan, merge and unmerge ops of csrc/cuda, host code and kernels together, run from their
// real source on the CPU (gen_launches.py, kernel_emu.h, runtime_stubs.cc) against the CPU ops:
// destinations bit for bit, plan weights and mass to 1e-5, merge / unmerge to rounding.
// usage: emu_plan SEED [all|regions|select|plan|rows|san]
//   san: a few small cases, for a build under -fsanitize=thread with EMU_THREADS=1
#include <chrono>
#include <cmath>
#include <limits>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "ops/cuda.h"
#include "cuda/rows.cuh"
#include "ops/greedy.h"
#include "ops/merge.h"
#include "ops/plan.h"
#include "ops/regions.h"
#include "ops/unmerge.h"

using namespace toma;

static std::mt19937_64 rng;
static long failures = 0;
static long checks = 0;

#define CHECK(cond, ...)                                      \
  do {                                                        \
    ++checks;                                                 \
    if (!(cond)) {                                            \
      ++failures;                                             \
      std::printf("  MISMATCH: " __VA_ARGS__);                \
      std::printf("\n");                                      \
    }                                                         \
  } while (0)

static std::vector<uint8_t> random_tokens(DType dt, size_t count) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<uint8_t> v(count * dtype_size(dt));
  for (size_t i = 0; i < count; ++i) {
    const float f = nd(rng);
    if (dt == DType::F32) std::memcpy(v.data() + 4 * i, &f, 4);
    else {
      const uint16_t h = dt == DType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
      std::memcpy(v.data() + 2 * i, &h, 2);
    }
  }
  return v;
}

struct Dev {  // device copy of host bytes (with an optional element offset to misalign)
  cuda::DeviceBuffer buf;
  void* p = nullptr;
  Dev(const void* host, size_t bytes, size_t pad = 0) : buf(bytes + pad + 16, "test") {
    p = (char*)buf.data() + pad;
    cuda::copy_to_device(p, host, bytes, "test");
  }
  Dev(size_t bytes, size_t pad = 0) : buf(bytes + pad + 16, "test") { p = (char*)buf.data() + pad; }
};

static const char* spec_name(const RegionSpec& s, char* buf) {
  if (s.kind == RegionSpec::Tile) std::snprintf(buf, 64, "tile %dx%d", s.th, s.tw);
  else if (s.kind == RegionSpec::Stripe) std::snprintf(buf, 64, "stripe %d", s.rows);
  else std::snprintf(buf, 64, "global");
  return buf;
}

static RegionSpec tile(int th, int tw) { RegionSpec s; s.kind = RegionSpec::Tile; s.th = th; s.tw = tw; return s; }
static RegionSpec stripe(int r) { RegionSpec s; s.kind = RegionSpec::Stripe; s.rows = r; return s; }
static RegionSpec global() { RegionSpec s; s.kind = RegionSpec::Global; return s; }

// ---------------------------------------------------------------------------------------------
static void test_regions() {
  std::printf("== regions (place_tokens)\n");
  std::uniform_int_distribution<int> ud(1, 23);
  int cases = 0;
  for (int it = 0; it < 60; ++it) {
    const int H = ud(rng), W = ud(rng);
    RegionSpec specs[] = {tile(ud(rng) % 9 + 1, ud(rng) % 9 + 1), tile(4, 4), tile(2, 2), stripe(ud(rng) % 7 + 1), global(),
                          tile(30, 1), stripe(40)};
    for (auto& s : specs) {
      const Regions R = make_regions(H, W, s);
      cuda::DeviceBuffer tok((size_t)H * W * 4, "t"), off((size_t)(R.count() + 1) * 4, "o");
      const int nR = cuda::make_regions_cuda(H, W, s, tok.as<int32_t>(), off.as<int32_t>());
      std::vector<int32_t> t(H * W), o(nR + 1);
      cuda::copy_to_host(t.data(), tok.data(), t.size() * 4, "t");
      cuda::copy_to_host(o.data(), off.data(), o.size() * 4, "o");
      char b[64];
      CHECK(nR == R.count() && t == R.tokens && o == R.offsets, "regions %dx%d %s", H, W, spec_name(s, b));
      ++cases;
    }
  }
  std::printf("  %d layouts compared\n", cases);
}

// ---------------------------------------------------------------------------------------------
struct Case {
  int H, W;
  RegionSpec spec;
  double ratio;
  int P, B, C;
  DType dt;
  bool share = false;
};

static void test_select(const Case& c) {
  char sb[64];
  const int N = c.H * c.W, T = c.P + N;
  auto host = random_tokens(c.dt, (size_t)c.B * T * c.C);
  Dev dx(host.data(), host.size());
  PlanOptions o;
  o.H = c.H, o.W = c.W, o.ratio = c.ratio, o.region = c.spec, o.prefix = c.P, o.share_batch = c.share;
  SelectParams sp{ConstTokens{host.data(), c.dt, c.B, T, c.C}, o};
  int Kc = 0, Kg = 0;
  auto ref = select_destinations_cpu(sp, &Kc);
  const auto t0 = std::chrono::steady_clock::now();
  auto got = select_destinations_cuda(ConstTokens{dx.p, c.dt, c.B, T, c.C}, o, &Kg);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const Regions R = make_regions(c.H, c.W, c.spec);
  int diff = 0;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) diff += ref[i] != got[i];
  std::printf("  select %2dx%-2d %-10s ratio %.2f P %d B %d C %3d %s%s: K %d max_n %d -> %s (%.0f ms)\n", c.H, c.W,
              spec_name(c.spec, sb), c.ratio, c.P, c.B, c.C, dtype_name(c.dt), c.share ? " share" : "", Kc,
              R.max_size(), (Kc == Kg && ref == got) ? "same" : "DIFFERENT", ms);
  CHECK(Kc == Kg && ref == got, "destinations differ in %d of %zu entries", diff, ref.size());
  if (!(ref == got)) {
    for (int b = 0; b < c.B; ++b) {
      std::printf("    b%d cpu:", b);
      for (int j = 0; j < std::min(Kc, 40); ++j) std::printf(" %d", ref[(size_t)b * Kc + j]);
      std::printf("\n    b%d gpu:", b);
      for (int j = 0; j < std::min(Kg, 40); ++j) std::printf(" %d", got[(size_t)b * Kg + j]);
      std::printf("\n");
    }
  }
}

// Non-finite input (which the binding rejects before any kernel sees it): the small-region kernel
// must still leave a valid plan behind, every destination a token of its region and every weight
// and mass written and finite, never unwritten memory (the pool's poison here).
static void test_nonfinite(bool hard) {
  const int H = 8, W = 8, N = H * W, C = 40;
  auto host = random_tokens(DType::F32, (size_t)N * C);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(host.data() + 4 * ((size_t)5 * C + 3), &nan, 4);  // token 5: region 1 of the 4x4 tiles
  Dev dx(host.data(), host.size());
  PlanOptions o;
  o.H = H, o.W = W, o.ratio = 0.5, o.region = tile(4, 4), o.tau = hard ? INFINITY : 30.0;
  auto dp = compute_plan_cuda(ConstTokens{dx.p, DType::F32, 1, N, C}, o);
  std::vector<int32_t> dest((size_t)dp->K);
  std::vector<float> A((size_t)dp->a_total), mass((size_t)dp->K);
  cuda::copy_to_host(dest.data(), dp->dest.data(), dest.size() * 4, "t");
  cuda::copy_to_host(A.data(), dp->A.data(), A.size() * 4, "t");
  cuda::copy_to_host(mass.data(), dp->mass.data(), mass.size() * 4, "t");
  bool dest_ok = true, finite = true;
  for (int r = 0; r < dp->R; ++r)
    for (int j = dp->k_offsets[r]; j < dp->k_offsets[r + 1]; ++j) {
      bool in_region = false;
      for (int i = dp->regions.offsets[r]; i < dp->regions.offsets[r + 1]; ++i) in_region |= dp->regions.tokens[i] == dest[j];
      dest_ok &= in_region;
      finite &= std::isfinite(mass[j]);
    }
  for (float a : A) finite &= std::isfinite(a);
  std::printf("  non-finite input, %s: destinations %s, weights and masses %s\n", hard ? "hard" : "soft",
              dest_ok ? "in their regions" : "OUT OF THEIR REGIONS", finite ? "finite" : "NOT FINITE");
  CHECK(dest_ok, "a destination outside its region after non-finite input");
  CHECK(finite, "an unwritten or non-finite weight or mass after non-finite input");
}

// ---------------------------------------------------------------------------------------------
static double g_max_w_abs = 0, g_max_m_abs = 0, g_max_mass_rel = 0;

// The device plan keeps A dense per region block ([k][n]); the CPU plan keeps the unmerge and merge
// weights as CSR (M = A / mass): both are laid out densely here and compared entry by entry.
static void test_plan(const Case& c, double tau) {
  char sb[64];
  const int N = c.H * c.W, T = c.P + N;
  auto host = random_tokens(c.dt, (size_t)c.B * T * c.C);
  Dev dx(host.data(), host.size());
  PlanOptions o;
  o.H = c.H, o.W = c.W, o.ratio = c.ratio, o.region = c.spec, o.prefix = c.P, o.tau = tau, o.share_batch = c.share;
  auto cpu = compute_plan_cpu(ConstTokens{host.data(), c.dt, c.B, T, c.C}, o);
  const auto t0 = std::chrono::steady_clock::now();
  auto dp = compute_plan_cuda(ConstTokens{dx.p, c.dt, c.B, T, c.C}, o);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::vector<int32_t> dest((size_t)dp->B * dp->K);
  std::vector<float> A((size_t)dp->B * dp->a_total), mass((size_t)dp->B * dp->K);
  cuda::copy_to_host(dest.data(), dp->dest.data(), dest.size() * 4, "t");
  cuda::copy_to_host(A.data(), dp->A.data(), A.size() * 4, "t");
  cuda::copy_to_host(mass.data(), dp->mass.data(), mass.size() * 4, "t");
  const bool same_dest = dp->K == cpu->K && dest == cpu->dest;
  double wabs = 0, mabs = 0, massrel = 0;
  long nz_cpu = 0, nz_gpu = 0;
  bool nan = false;
  const Regions& R = cpu->regions;
  if (same_dest) {
    // Region and slot of every token.
    std::vector<int> region(N), slot(N), dreg(cpu->K);
    for (int r = 0; r < R.count(); ++r) {
      for (int i = R.offsets[r]; i < R.offsets[r + 1]; ++i) region[R.tokens[i]] = r, slot[R.tokens[i]] = i - R.offsets[r];
      for (int j = cpu->k_offsets[r]; j < cpu->k_offsets[r + 1]; ++j) dreg[j] = r;
    }
    for (int b = 0; b < c.B; ++b) {
      const PlanWeights& w = cpu->weights[b];
      std::vector<float> Ac(dp->a_total, 0.f), Mc(dp->a_total, 0.f);
      for (int t = 0; t < N; ++t)
        for (int64_t e = w.uptr[t]; e < w.uptr[t + 1]; ++e) {
          const int j = w.uidx[e], r = region[t], n = R.size(r);
          Ac[dp->a_offsets[r] + (size_t)(j - cpu->k_offsets[r]) * n + slot[t]] = w.uw[e];
          ++nz_cpu;
        }
      for (int j = 0; j < cpu->K; ++j)
        for (int64_t e = w.mptr[j]; e < w.mptr[j + 1]; ++e) {
          const int t = w.midx[e], r = dreg[j], n = R.size(r);
          Mc[dp->a_offsets[r] + (size_t)(j - cpu->k_offsets[r]) * n + slot[t]] = w.mw[e];
        }
      const float* Ag = A.data() + (size_t)b * dp->a_total;
      for (int r = 0; r < R.count(); ++r) {
        const int n = R.size(r);
        for (int j = cpu->k_offsets[r]; j < cpu->k_offsets[r + 1]; ++j) {
          const float mg = mass[(size_t)b * dp->K + j];
          if (!std::isfinite(mg)) nan = true;
          massrel = std::max(massrel, std::fabs((double)mg - w.mass[j]) / std::max(1e-30, (double)std::fabs(w.mass[j])));
          for (int s = 0; s < n; ++s) {
            const size_t e = dp->a_offsets[r] + (size_t)(j - cpu->k_offsets[r]) * n + s;
            if (!std::isfinite(Ag[e])) nan = true;
            nz_gpu += Ag[e] != 0.f;
            wabs = std::max(wabs, (double)std::fabs(Ag[e] - Ac[e]));
            const double mgpu = (double)Ag[e] / mg;  // what merge_kernel uses (w / m)
            mabs = std::max(mabs, std::fabs(mgpu - Mc[e]) / std::max(1e-30, std::fabs((double)Mc[e]) > 0 ? (double)std::fabs(Mc[e]) : 1.0));
          }
        }
      }
    }
  }
  g_max_w_abs = std::max(g_max_w_abs, wabs);
  g_max_m_abs = std::max(g_max_m_abs, mabs);
  g_max_mass_rel = std::max(g_max_mass_rel, massrel);
  std::printf("  plan %2dx%-2d %-10s ratio %.2f tau %-5g P %d B %d C %3d %s: K %d max_k %d dest %s |dA| %.2e "
              "relM %.2e relmass %.2e nnz %ld/%ld (%.0f ms)\n",
              c.H, c.W, spec_name(c.spec, sb), c.ratio, tau, c.P, c.B, c.C, dtype_name(c.dt), cpu->K, dp->max_k,
              same_dest ? "same" : "DIFFERENT", wabs, mabs, massrel, nz_gpu, nz_cpu, ms);
  CHECK(same_dest, "plan destinations differ");
  CHECK(!nan, "non-finite weight or mass");
  CHECK(wabs <= 1e-5, "weights differ by %.3e", wabs);
  CHECK(mabs <= 1e-5, "merge weights differ by %.3e relative", mabs);
  CHECK(massrel <= 1e-5, "mass differs by %.3e relative", massrel);
}

// ---------------------------------------------------------------------------------------------
static float elem(const std::vector<uint8_t>& v, DType t, size_t i) { return load_as_f32(v.data(), t, i); }

static double g_merge_f32 = 0, g_unmerge_f32 = 0;

static void test_rows(const Case& c, DType out, size_t misalign, double tau) {
  char sb[64];
  const int N = c.H * c.W, T = c.P + N;
  PlanOptions o;
  o.H = c.H, o.W = c.W, o.ratio = c.ratio, o.region = c.spec, o.prefix = c.P, o.tau = tau;
  auto host = random_tokens(c.dt, (size_t)c.B * T * c.C);
  auto plan = compute_plan_cpu(ConstTokens{host.data(), c.dt, c.B, T, c.C}, o);
  auto dp = upload_plan(*plan);  // the same weights on both sides: the row kernels alone
  const int K = plan->K, TY = c.P + K;
  const size_t ein = dtype_size(c.dt), eout = dtype_size(out);
  // merge
  std::vector<uint8_t> yref((size_t)c.B * TY * c.C * eout), ygot(yref.size());
  merge_cpu(*plan, ConstTokens{host.data(), c.dt, c.B, T, c.C}, Tokens{yref.data(), out, c.B, TY, c.C});
  Dev dx(host.data(), host.size(), misalign * ein), dy(ygot.size(), misalign * eout);
  merge_cuda(*dp, ConstTokens{dx.p, c.dt, c.B, T, c.C}, Tokens{dy.p, out, c.B, TY, c.C});
  cuda::copy_to_host(ygot.data(), dy.p, ygot.size(), "t");
  // The pair launch (merge-attention-unmerge's k and v): bit for bit the two single merges.
  bool pair_same = true;
  {
    auto host2 = random_tokens(c.dt, (size_t)c.B * T * c.C);
    Dev dx2(host2.data(), host2.size(), misalign * ein), dya(ygot.size(), misalign * eout),
        dyb(ygot.size(), misalign * eout), dys(ygot.size(), misalign * eout);
    merge_cuda(*dp, ConstTokens{dx2.p, c.dt, c.B, T, c.C}, Tokens{dys.p, out, c.B, TY, c.C});
    cuda::enqueue_merge2(*dp, ConstTokens{dx.p, c.dt, c.B, T, c.C}, Tokens{dya.p, out, c.B, TY, c.C},
                         ConstTokens{dx2.p, c.dt, c.B, T, c.C}, Tokens{dyb.p, out, c.B, TY, c.C});
    cuda::synchronize("t");
    std::vector<uint8_t> ya(ygot.size()), yb(ygot.size()), ys(ygot.size());
    cuda::copy_to_host(ya.data(), dya.p, ya.size(), "t");
    cuda::copy_to_host(yb.data(), dyb.p, yb.size(), "t");
    cuda::copy_to_host(ys.data(), dys.p, ys.size(), "t");
    pair_same = ya == ygot && yb == ys;
  }
  CHECK(pair_same, "the pair merge (enqueue_merge2) differs from two single merges");
  const cuda::RowLaunch l = cuda::row_launch(c.C, dx.p, dy.p, ein == 2 && eout == 2);
  double me = 0, mref = 0, pe = 0;
  for (int b = 0; b < c.B; ++b)
    for (int t = 0; t < TY; ++t)
      for (int ch = 0; ch < c.C; ++ch) {
        const size_t i = ((size_t)b * TY + t) * c.C + ch;
        const double d = std::fabs((double)elem(ygot, out, i) - elem(yref, out, i));
        if (!(d == d)) me = INFINITY;
        if (t < c.P) pe = std::max(pe, d);
        me = std::max(me, d);
        mref = std::max(mref, (double)std::fabs(elem(yref, out, i)));
      }
  // unmerge of the reference merge output (any y works: linear)
  std::vector<uint8_t> xref((size_t)c.B * T * c.C * eout), xgot(xref.size());
  unmerge_cpu(*plan, ConstTokens{yref.data(), out, c.B, TY, c.C}, Tokens{xref.data(), out, c.B, T, c.C});
  // the unmerge input is y in dtype `out`; the output dtype is the case's input dtype (another combo)
  std::vector<uint8_t> xref2((size_t)c.B * T * c.C * ein), xgot2(xref2.size());
  unmerge_cpu(*plan, ConstTokens{yref.data(), out, c.B, TY, c.C}, Tokens{xref2.data(), c.dt, c.B, T, c.C});
  Dev dyin(yref.data(), yref.size(), misalign * eout), dxo(xgot2.size(), misalign * ein);
  unmerge_cuda(*dp, ConstTokens{dyin.p, out, c.B, TY, c.C}, Tokens{dxo.p, c.dt, c.B, T, c.C});
  cuda::copy_to_host(xgot2.data(), dxo.p, xgot2.size(), "t");
  double ue = 0, upe = 0;
  for (int b = 0; b < c.B; ++b)
    for (int t = 0; t < T; ++t)
      for (int ch = 0; ch < c.C; ++ch) {
        const size_t i = ((size_t)b * T + t) * c.C + ch;
        const double d = std::fabs((double)elem(xgot2, c.dt, i) - elem(xref2, c.dt, i));
        if (!(d == d)) ue = INFINITY;
        if (t < c.P) upe = std::max(upe, d);
        ue = std::max(ue, d);
      }
  // Tolerance relative to the output scale: float32 4e-6 (a sum of up to n products each 1 ulp
  // apart from the CPU's, measured up to 4.8e-7; a wrong weight or row is ~1e-1), halves a few ulps.
  auto tol = [&](DType t) { return t == DType::F32 ? 4e-6 * std::max(1.0, mref) : t == DType::F16 ? 2e-3 * std::max(1.0, mref) : 1.6e-2 * std::max(1.0, mref); };
  if (out == DType::F32) g_merge_f32 = std::max(g_merge_f32, me);
  if (c.dt == DType::F32) g_unmerge_f32 = std::max(g_unmerge_f32, ue);
  std::printf("  rows %-10s tau %-5g P %d B %d C %3d %s->%s misalign %zu: V=%d thr %d chunks %d | merge max %.2e prefix %.1e | "
              "unmerge(%s->%s) max %.2e prefix %.1e\n",
              spec_name(c.spec, sb), tau, c.P, c.B, c.C, dtype_name(c.dt), dtype_name(out), misalign, l.vec, l.threads,
              l.chunks, me, pe, dtype_name(out), dtype_name(c.dt), ue, upe);
  CHECK(pe == 0 && upe == 0, "prefix rows not copied exactly");
  CHECK(me <= tol(out), "merge error %.3e", me);
  CHECK(ue <= tol(c.dt), "unmerge error %.3e", ue);
}

int main(int argc, char** argv) {
  const unsigned long seed = argc > 1 ? std::stoul(argv[1]) : (unsigned long)std::random_device{}();
  const std::string what = argc > 2 ? argv[2] : "all";
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (std::getenv("EMU_THREADS")) emu::fiber_mode = false;
  std::printf("mode: %s\n", emu::fiber_mode ? "fibers" : "threads");
  rng.seed(seed);
  std::printf("seed %lu\n", seed);
  const bool all = what == "all";
  if (all || what == "regions") test_regions();
  if (all || what == "select") {
    std::printf("== selection\n");
    const Case cs[] = {
        {8, 8, tile(2, 2), 0.5, 0, 2, 40, DType::F32},
        {16, 16, tile(4, 4), 0.5, 2, 2, 64, DType::F32},
        {16, 16, tile(4, 4), 0.75, 0, 1, 48, DType::F16},
        {16, 16, tile(8, 8), 0.5, 1, 2, 40, DType::F32},
        {16, 16, tile(8, 8), 0.9, 0, 1, 72, DType::BF16},
        {13, 11, tile(4, 4), 0.5, 3, 2, 40, DType::F32},  // remainder tiles
        {13, 11, tile(8, 8), 0.3, 0, 1, 33, DType::F16},  // remainder tiles, C not a multiple of 32
        {8, 8, tile(2, 2), 0.9, 0, 2, 40, DType::F32},    // k = 1
        {9, 9, tile(9, 9), 0.5, 1, 1, 40, DType::F32},  // lazy path, n = 81
        {20, 19, tile(9, 9), 0.5, 0, 1, 40, DType::F16},  // lazy + remainder regions down to n = 2
        {16, 16, stripe(5), 0.5, 2, 1, 40, DType::F32},   // stripes with a remainder band
        {12, 12, global(), 0.5, 0, 2, 40, DType::F32},    // global, k = 72 > 64
        {12, 12, global(), 0.95, 1, 1, 40, DType::F16},   // global, k small
        {10, 10, global(), 0.99, 0, 1, 40, DType::F32},   // global, k = 1
        {16, 16, tile(4, 4), 0.5, 0, 3, 40, DType::F32, true},  // shareBatch
    };
    for (const auto& c : cs) test_select(c);
  }
  if (what == "san") {  // a few small cases for the sanitizers
    test_select({8, 8, tile(4, 4), 0.5, 1, 1, 40, DType::F32});
    test_select({9, 8, global(), 0.5, 0, 1, 36, DType::F16});  // lazy, n = 72, k = 36
    test_plan({9, 8, global(), 0.3, 1, 1, 36, DType::F32}, 30.0);  // k = 50 of n = 72: the three-pass weights
    test_plan({8, 8, tile(4, 4), 0.5, 1, 1, 40, DType::BF16}, INFINITY);
    test_rows({8, 8, tile(4, 4), 0.5, 2, 1, 40, DType::F16}, DType::F16, 0, 30.0);
    test_rows({8, 8, tile(4, 4), 0.5, 1, 1, 44, DType::F32}, DType::BF16, 0, 30.0);
    test_rows({8, 8, tile(4, 4), 0.5, 1, 1, 41, DType::BF16}, DType::F32, 0, 30.0);
  }
  if (all || what == "plan") {
    std::printf("== plan weights + mass\n");
    const double taus[] = {1000.0, 30.0, INFINITY};
    const Case cs[] = {
        {8, 8, tile(4, 4), 0.5, 1, 2, 40, DType::F32},
        {13, 11, tile(4, 4), 0.5, 0, 1, 48, DType::F16},
        {12, 12, global(), 0.5, 2, 1, 40, DType::F32},   // k = 72: three-pass weights
        {18, 18, tile(9, 9), 0.5, 0, 1, 40, DType::F32}, // lazy, k <= 64
        {10, 10, stripe(3), 0.6, 1, 2, 36, DType::BF16},
    };
    for (const auto& c : cs)
      for (double tau : taus) test_plan(c, tau);
    test_nonfinite(false);
    test_nonfinite(true);
    test_plan({8, 8, tile(4, 4), 0.0, 1, 2, 40, DType::F32}, 30.0);   // identity
    test_plan({12, 12, global(), 0.0, 0, 1, 40, DType::F32}, 1000.0); // identity, k = n = 144
    std::printf("  max |A_gpu - A_cpu| %.3e, max rel M %.3e, max rel mass %.3e\n", g_max_w_abs, g_max_m_abs,
                g_max_mass_rel);
  }
  if (all || what == "rows") {
    std::printf("== merge / unmerge\n");
    const DType dts[] = {DType::F32, DType::F16, DType::BF16};
    for (DType in : dts)
      for (DType out : dts) {
        test_rows({8, 8, tile(4, 4), 0.5, 2, 2, 40, in}, out, 0, 30.0);   // V 8 (halves) / 4
        test_rows({8, 8, tile(4, 4), 0.5, 1, 1, 44, in}, out, 0, 30.0);   // V 4
        test_rows({8, 8, tile(4, 4), 0.5, 1, 1, 41, in}, out, 0, 1000.0); // V 1 (odd C)
        test_rows({8, 8, tile(4, 4), 0.5, 1, 1, 40, in}, out, 1, 30.0);   // V 1 (misaligned)
      }
    test_rows({12, 12, global(), 0.5, 3, 2, 128, DType::F32}, DType::F32, 0, 30.0);
    test_rows({12, 12, global(), 0.5, 1, 1, 600, DType::F16}, DType::F16, 0, 30.0);  // lanes 75: 96 threads
    test_rows({6, 6, global(), 0.5, 1, 1, 2052, DType::F32}, DType::F32, 0, 30.0);   // 2 chunks
    test_rows({8, 8, tile(4, 4), 0.5, 2, 2, 40, DType::F32}, DType::F32, 0, INFINITY);
    std::printf("  max merge err (f32 out) %.3e, max unmerge err (f32 out) %.3e\n", g_merge_f32, g_unmerge_f32);
  }
  std::printf("launches:");
  for (auto& [k, v] : emu::launch_count) std::printf(" %s=%ld", k.c_str(), v);
  std::printf("\nsync-after-exit barriers: %ld\n", emu::sync_after_exit.load());
  std::printf("%ld checks, %ld failures\n", checks, failures);
  return failures ? 1 : 0;
}
