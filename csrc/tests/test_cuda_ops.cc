// ops/cuda.h against the CPU path (the contract): region tiling, selection, soft and hard plans
// (tiles on the small-region path, larger tiles, stripes and global on the lazy path, prefix,
// shared batch, identity, adaptive), weight-only recompute, merge and unmerge for every dtype pair
// and both row layouts, plan upload/download round trips, the baselines' plans, shape errors.
// Without a device every case says so and passes; with one, all of them run.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "ops/assignment_plan.h"
#include "ops/cuda.h"
#include "ops/device.h"
#include "ops/greedy.h"
#include "ops/merge.h"
#include "ops/plan.h"
#include "ops/unmerge.h"
#include "tests/harness.h"
#include "tests/support.h"

using toma::DType;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

bool have_device() {
  const toma::DeviceInfo& d = toma::cuda_device_info();
  if (!d.available) tt::note("skipped: no usable CUDA device (" + d.reason + ")");
  return d.available;
}

bool small_run() {
  const char* s = std::getenv("TOMA_TEST_SMALL");
  return s && *s && std::string(s) != "0";
}

// A host tensor's bytes on the device.
struct OnDevice {
  toma::cuda::DeviceBuffer buf;
  DType dtype;
  int B, T, C;
  explicit OnDevice(const tt::Tensor& t)
      : buf(t.bytes.size(), "test tensor"), dtype(t.dtype), B(t.B), T(t.T), C(t.C) {
    toma::cuda::copy_to_device(buf.data(), t.bytes.data(), t.bytes.size(), "test");
  }
  // An output: filled with 0xff bytes, NaN in every dtype, so a value the op does not write fails.
  OnDevice(DType dt, int b, int t, int c)
      : buf((size_t)b * t * c * toma::dtype_size(dt), "test tensor"), dtype(dt), B(b), T(t), C(c) {
    const std::vector<uint8_t> nan(buf.bytes(), 0xff);
    toma::cuda::copy_to_device(buf.data(), nan.data(), nan.size(), "test");
  }
  toma::ConstTokens view() const { return {buf.data(), dtype, B, T, C}; }
  toma::Tokens mview() { return {buf.data(), dtype, B, T, C}; }
  tt::Tensor host() const {
    tt::Tensor t(dtype, B, T, C);
    toma::cuda::copy_to_host(t.bytes.data(), buf.data(), t.bytes.size(), "test");
    return t;
  }
};

toma::PlanOptions options(int H, int W, toma::RegionSpec::Kind kind, int a, int b, double ratio, double tau, int P,
                          bool share = false) {
  toma::PlanOptions o;
  o.H = H;
  o.W = W;
  o.region.kind = kind;
  o.region.th = a;
  o.region.tw = b;
  o.region.rows = a;
  o.ratio = ratio;
  o.tau = tau;
  o.prefix = P;
  o.share_batch = share;
  return o;
}

std::string describe(const toma::PlanOptions& o, int B, int C, DType dt) {
  const char* kinds[] = {"tile", "stripe", "global"};
  std::string s = std::string(kinds[o.region.kind]);
  if (o.region.kind == toma::RegionSpec::Tile) s += "(" + std::to_string(o.region.th) + "x" + std::to_string(o.region.tw) + ")";
  if (o.region.kind == toma::RegionSpec::Stripe) s += "(" + std::to_string(o.region.rows) + ")";
  return s + " grid " + std::to_string(o.H) + "x" + std::to_string(o.W) + " B=" + std::to_string(B) + " P=" +
         std::to_string(o.prefix) + " C=" + std::to_string(C) + " ratio=" + tt::str(o.ratio) + " tau=" + tt::str(o.tau) +
         (o.share_batch ? " shared" : "") + (o.similarity > 0 ? " similarity=" + tt::str(o.similarity) : "") + " " +
         toma::dtype_name(dt);
}

// f(S) of the destinations of region r, from float64 cosines of x's values.
double coverage(const std::vector<double>& xv, int T, int C, int P, const toma::Regions& R, int r, int b,
                const int32_t* dest, int k) {
  const int n = R.size(r);
  const int32_t* tok = R.tokens.data() + R.offsets[r];
  auto row = [&](int t) { return &xv[((size_t)b * T + P + t) * C]; };
  auto cosine = [&](int s, int t) {
    double d = 0, ns = 0, nt = 0;
    for (int c = 0; c < C; ++c) d += row(s)[c] * row(t)[c], ns += row(s)[c] * row(s)[c], nt += row(t)[c] * row(t)[c];
    return d / std::max(std::sqrt(ns), 1e-6) / std::max(std::sqrt(nt), 1e-6);
  };
  double f = 0;
  for (int i = 0; i < n; ++i) {
    double m = -kInf;
    for (int d = 0; d < k; ++d) m = std::max(m, cosine(tok[i], dest[d]));
    f += m;
  }
  return f;
}

// Destinations equal to the CPU's, or (a near-tie met differently) the same count with f(S)
// within 1e-5 relative (SPEC section 9). Returns whether they were equal.
bool same_destinations(const toma::Plan& cpu, const std::vector<int32_t>& got, const tt::Tensor& x,
                       const std::string& what) {
  if (got == cpu.dest) return true;
  CHECK_EQ(got.size(), cpu.dest.size());
  if (got.size() != cpu.dest.size()) return false;
  const std::vector<double> xv = x.values();
  const toma::Regions& R = cpu.regions;
  for (int b = 0; b < cpu.B; ++b)
    for (int r = 0; r < R.count(); ++r) {
      const int k0 = cpu.k_offsets[r], k = cpu.k_offsets[r + 1] - k0;
      const int32_t* want = cpu.dest.data() + (size_t)b * cpu.K + k0;
      const int32_t* have = got.data() + (size_t)b * cpu.K + k0;
      if (std::equal(want, want + k, have)) continue;
      const double fw = coverage(xv, x.T, x.C, cpu.P, R, r, b, want, k);
      const double fh = coverage(xv, x.T, x.C, cpu.P, R, r, b, have, k);
      CHECK_MSG(std::fabs(fw - fh) <= 1e-5 * std::fabs(fw),
                what + ": destinations of element " + std::to_string(b) + " region " + std::to_string(r) +
                    " differ from the CPU's with f(S) " + tt::str(fh) + " vs " + tt::str(fw));
    }
  tt::note(what + ": destinations differ from the CPU's on a near-tie (f(S) within 1e-5)");
  return false;
}

// A device plan read back against the CPU plan: destinations, then M and U of every element.
void compare_plans(const toma::Plan& cpu, const toma::DevicePlan& dev, const tt::Tensor& x, const std::string& what) {
  auto back = toma::download_plan(dev);
  // The device's own masses (what merge divides by), not only those the download recomputes.
  std::vector<float> dmass((size_t)dev.B * dev.K);
  toma::cuda::copy_to_host(dmass.data(), dev.mass.data(), dmass.size() * 4, "test");
  for (int b = 0; b < dev.B && dev.K == back->K; ++b) {
    std::vector<double> have(dmass.begin() + (size_t)b * dev.K, dmass.begin() + (size_t)(b + 1) * dev.K);
    std::vector<double> want(back->weights[b].mass.begin(), back->weights[b].mass.end());
    CHECK_REL(have, want, 1e-6, what + " device mass of element " + std::to_string(b));
  }
  CHECK_EQ(back->K, cpu.K);
  CHECK_EQ(back->B, cpu.B);
  CHECK_EQ(back->P, cpu.P);
  CHECK(back->k_offsets == cpu.k_offsets);
  if (back->K != cpu.K || back->k_offsets != cpu.k_offsets) return;
  tt::check_plan_structure(*back);
  if (!same_destinations(cpu, back->dest, x, what)) {
    // Compare weights on the device's destinations: the CPU recomputes them there.
    auto again = toma::compute_plan_with_destinations_cpu(x.view(), cpu.opts, back->dest.data(), cpu.B, cpu.K);
    for (int b = 0; b < cpu.B; ++b) {
      CHECK_REL(tt::dense_M(*back, b), tt::dense_M(*again, b), 1e-5, what + " M (near-tie destinations)");
      CHECK_REL(tt::dense_U(*back, b), tt::dense_U(*again, b), 1e-5, what + " U (near-tie destinations)");
    }
    return;
  }
  for (int b = 0; b < cpu.B; ++b) {
    CHECK_REL(tt::dense_M(*back, b), tt::dense_M(cpu, b), 1e-5, what + " M of element " + std::to_string(b));
    CHECK_REL(tt::dense_U(*back, b), tt::dense_U(cpu, b), 1e-5, what + " U of element " + std::to_string(b));
    std::vector<double> mc(cpu.weights[b].mass.begin(), cpu.weights[b].mass.end());
    std::vector<double> md(back->weights[b].mass.begin(), back->weights[b].mass.end());
    CHECK_REL(md, mc, 1e-5, what + " mass of element " + std::to_string(b));
  }
}

struct PlanCase {
  int B, H, W, C;
  toma::RegionSpec::Kind kind;
  int a, b;
  double ratio, tau;
  int P;
  bool share;
  DType dt;
};

void run_plan_case(const PlanCase& c, uint32_t seed) {
  tt::Rng rng(seed);
  const toma::PlanOptions o = options(c.H, c.W, c.kind, c.a, c.b, c.ratio, c.tau, c.P, c.share);
  const std::string what = describe(o, c.B, c.C, c.dt);
  const int T = c.P + c.H * c.W;
  const tt::Tensor x = tt::random_tensor(rng, c.dt, c.B, T, c.C);
  const OnDevice xd(x);
  auto cpu = toma::compute_plan_cpu(x.view(), o);
  auto dev = toma::compute_plan_cuda(xd.view(), o);
  REQUIRE(dev != nullptr);
  CHECK_EQ(dev->K, cpu->K);
  compare_plans(*cpu, *dev, x, what);
  CHECK_MSG(xd.host().bytes == x.bytes, what + ": input modified on the device");
  // selectDestinations alone.
  int K = 0;
  const std::vector<int32_t> sel = toma::select_destinations_cuda(xd.view(), o, &K);
  CHECK_EQ(K, cpu->K);
  if (K == cpu->K) same_destinations(*cpu, sel, x, what + " (selectDestinations)");
  // Weight-only recompute on other data, with the CPU's destinations.
  const tt::Tensor x2 = tt::random_tensor(rng, c.dt, c.B, T, c.C);
  const OnDevice x2d(x2);
  auto cpu2 = toma::compute_plan_with_destinations_cpu(x2.view(), o, cpu->dest.data(), c.B, cpu->K);
  auto dev2 = toma::compute_plan_with_destinations_cuda(x2d.view(), o, cpu->dest.data(), c.B, cpu->K);
  compare_plans(*cpu2, *dev2, x2, what + " (given destinations)");
}

}  // namespace

TEST_CASE(cuda, regions_match_the_cpu_layout) {
  if (!have_device()) return;
  using K = toma::RegionSpec;
  const int grids[][2] = {{1, 1}, {1, 7}, {7, 1}, {4, 4}, {5, 7}, {13, 9}, {16, 16}, {64, 64}, {37, 53}, {144, 112}};
  struct Spec {
    K::Kind kind;
    int a, b;
  } specs[] = {{K::Tile, 4, 4}, {K::Tile, 3, 5}, {K::Tile, 1, 1}, {K::Tile, 8, 8}, {K::Tile, 100, 3},
               {K::Stripe, 1, 0}, {K::Stripe, 3, 0}, {K::Stripe, 1000, 0}, {K::Global, 0, 0}};
  for (auto& g : grids)
    for (auto& s : specs) {
      K spec;
      spec.kind = s.kind;
      spec.th = s.a;
      spec.tw = s.b;
      spec.rows = s.a;
      const toma::Regions want = toma::make_regions(g[0], g[1], spec);
      toma::cuda::DeviceBuffer tok((size_t)g[0] * g[1] * 4, "test"), off((size_t)(want.count() + 1) * 4, "test");
      const int R = toma::cuda::make_regions_cuda(g[0], g[1], spec, tok.as<int32_t>(), off.as<int32_t>());
      REQUIRE_EQ(R, want.count());
      std::vector<int32_t> t(want.tokens.size()), o(want.offsets.size());
      toma::cuda::copy_to_host(t.data(), tok.data(), t.size() * 4, "test");
      toma::cuda::copy_to_host(o.data(), off.data(), o.size() * 4, "test");
      CHECK_MSG(t == want.tokens && o == want.offsets,
                "grid " + std::to_string(g[0]) + "x" + std::to_string(g[1]) + " kind " + std::to_string(s.kind) +
                    " " + std::to_string(s.a) + "x" + std::to_string(s.b));
    }
  K bad;
  bad.th = 0;
  CHECK_THROWS(toma::cuda::make_regions_cuda(4, 4, bad, nullptr, nullptr), toma::ArgError);
}

TEST_CASE(cuda, plans_match_the_cpu_on_small_regions) {
  if (!have_device()) return;
  using K = toma::RegionSpec;
  const PlanCase cases[] = {
      {2, 16, 16, 64, K::Tile, 4, 4, 0.5, 1000, 0, false, DType::F32},
      {1, 13, 9, 40, K::Tile, 3, 5, 0.25, 1000, 0, false, DType::F32},   // remainder tiles, C % 4 != 0
      {3, 8, 8, 96, K::Tile, 8, 8, 0.75, 1000, 5, false, DType::F16},    // n = 64, the small path's limit
      {2, 10, 6, 48, K::Tile, 4, 4, 0.5, kInf, 3, false, DType::BF16},   // hard
      {2, 12, 12, 32, K::Tile, 2, 2, 0.5, 30, 0, true, DType::F32},      // shareBatch, a soft tau
      {1, 6, 6, 16, K::Tile, 4, 4, 0.0, 1000, 0, false, DType::F32},     // ratio 0: identity
      {2, 4, 16, 64, K::Stripe, 1, 0, 0.5, 1000, 2, false, DType::F32},  // stripe of 16 tokens
      {1, 5, 7, 24, K::Global, 0, 0, 0.6, 1000, 0, false, DType::F16},   // global of 35 tokens
      {2, 13, 9, 32, K::Tile, 4, 4, 0.75, 1000, 0, false, DType::F32},   // k = 1 in the remainder tiles
  };
  uint32_t seed = 100;
  for (const auto& c : cases) run_plan_case(c, seed++);
}

TEST_CASE(cuda, plans_match_the_cpu_on_large_regions) {
  if (!have_device()) return;
  using K = toma::RegionSpec;
  std::vector<PlanCase> cases = {
      {2, 18, 18, 64, K::Tile, 9, 9, 0.5, 1000, 0, false, DType::F32},     // n = 81: lazy path
      {1, 16, 24, 48, K::Stripe, 4, 0, 0.5, 1000, 7, false, DType::F32},   // stripes of 96
      {2, 12, 11, 40, K::Global, 0, 0, 0.5, 1000, 0, false, DType::BF16},  // global of 132, k > 64
      {1, 16, 16, 32, K::Global, 0, 0, 0.75, kInf, 0, false, DType::F32},  // global hard
      {2, 10, 10, 32, K::Tile, 10, 10, 0.3, 1000, 4, true, DType::F16},    // shared batch
      {1, 20, 19, 32, K::Tile, 9, 9, 0.5, 1000, 0, false, DType::F32},     // regions of 81, 18, 9 and 2
      {2, 13, 24, 40, K::Stripe, 4, 0, 0.5, kInf, 1, false, DType::F32},   // a short last stripe, hard
  };
  if (!small_run()) {
    cases.push_back({1, 32, 32, 64, K::Global, 0, 0, 0.5, 1000, 0, false, DType::F32});  // k = 512
    cases.push_back({2, 64, 64, 640, K::Tile, 4, 4, 0.5, 1000, 0, false, DType::F16});   // SDXL 64x64
    cases.push_back({1, 64, 64, 128, K::Stripe, 2, 0, 0.5, 1000, 16, false, DType::BF16});
  }
  uint32_t seed = 200;
  for (const auto& c : cases) run_plan_case(c, seed++);
}

TEST_CASE(cuda, batches_beyond_the_grid_limit) {
  if (!have_device()) return;
  // gridDim.y/z stop at 65535: the batch is launched in slices.
  run_plan_case({70001, 2, 3, 4, toma::RegionSpec::Tile, 2, 2, 0.5, 1000, 1, false, DType::F32}, 350);
  tt::Rng rng(351);
  const toma::PlanOptions o = options(2, 3, toma::RegionSpec::Tile, 2, 2, 0.5, 1000, 1);
  const tt::Tensor x = tt::random_tensor(rng, DType::F16, 70001, 7, 8);
  auto plan = toma::compute_plan_cpu(x.view(), o);
  auto dplan = toma::upload_plan(*plan);
  const OnDevice xd(x);
  OnDevice yd(DType::F16, x.B, 1 + plan->K, 8);
  toma::merge_cuda(*dplan, xd.view(), yd.mview());
  tt::Tensor y = tt::poisoned_tensor(DType::F16, x.B, 1 + plan->K, 8);
  toma::merge_cpu(*plan, x.view(), y.mview());
  CHECK_REL(yd.host().values(), y.values(), 2e-3, "merge of 70001 elements");
  OnDevice xo(DType::F16, x.B, 7, 8);
  toma::unmerge_cuda(*dplan, yd.view(), xo.mview());
  tt::Tensor xc = tt::poisoned_tensor(DType::F16, x.B, 7, 8);
  toma::unmerge_cpu(*plan, y.view(), xc.mview());
  CHECK_REL(xo.host().values(), xc.values(), 2e-3, "unmerge of 70001 elements");
}

TEST_CASE(cuda, adaptive_plans_run_through_the_cpu_path) {
  if (!have_device()) return;
  tt::Rng rng(300);
  toma::PlanOptions o = options(12, 12, toma::RegionSpec::Tile, 4, 4, 0.5, 1000, 2);
  o.similarity = 0.9;
  const tt::Tensor x = tt::random_tensor(rng, DType::F32, 2, 2 + 144, 32);
  const OnDevice xd(x);
  auto cpu = toma::compute_plan_cpu(x.view(), o);
  auto dev = toma::compute_plan_cuda(xd.view(), o);
  compare_plans(*cpu, *dev, x, describe(o, 2, 32, DType::F32));
}

TEST_CASE(cuda, merge_and_unmerge_match_the_cpu) {
  if (!have_device()) return;
  using K = toma::RegionSpec;
  struct Case {
    int B, H, W, C, P;
    K::Kind kind;
    int a;
    double tau;
  } cases[] = {{2, 16, 16, 64, 0, K::Tile, 4, 1000},  {1, 13, 9, 37, 3, K::Tile, 3, 1000},
               {2, 9, 9, 40, 5, K::Stripe, 2, kInf}, {1, 12, 11, 24, 0, K::Global, 0, 1000},
               {2, 10, 10, 8, 1, K::Tile, 5, 50}};
  const DType dts[] = {DType::F32, DType::F16, DType::BF16};
  uint32_t seed = 400;
  for (const auto& c : cases)
    for (DType in : dts)
      for (DType out : dts) {
        tt::Rng rng(seed++);
        const toma::PlanOptions o = options(c.H, c.W, c.kind, c.a, c.a, 0.5, c.tau, c.P);
        const std::string what = describe(o, c.B, c.C, in) + " -> " + toma::dtype_name(out);
        const int T = c.P + c.H * c.W;
        const tt::Tensor h = tt::random_tensor(rng, DType::F32, c.B, T, c.C);
        auto plan = toma::compute_plan_cpu(h.view(), o);
        auto dplan = toma::upload_plan(*plan);
        const tt::Tensor x = tt::random_tensor(rng, in, c.B, T, c.C);
        const OnDevice xd(x);
        tt::Tensor ycpu = tt::poisoned_tensor(out, c.B, c.P + plan->K, c.C);
        toma::merge_cpu(*plan, x.view(), ycpu.mview());
        OnDevice yd(out, c.B, c.P + plan->K, c.C);
        toma::merge_cuda(*dplan, xd.view(), yd.mview());
        const tt::Tensor ygpu = yd.host();
        CHECK_REL(ygpu.values(), ycpu.values(), tt::dtype_tol({in, out}, 1e-6), what + " merge");
        // Prefix rows exactly.
        bool exact = true;
        for (int b = 0; b < c.B; ++b)
          for (size_t i = 0; i < (size_t)c.P * c.C; ++i)
            exact &= ygpu.get((size_t)b * (c.P + plan->K) * c.C + i) == ycpu.get((size_t)b * (c.P + plan->K) * c.C + i);
        CHECK_MSG(exact, what + ": prefix rows not copied exactly");
        const tt::Tensor y = tt::random_tensor(rng, in, c.B, c.P + plan->K, c.C);
        const OnDevice yd2(y);
        tt::Tensor xcpu = tt::poisoned_tensor(out, c.B, T, c.C);
        toma::unmerge_cpu(*plan, y.view(), xcpu.mview());
        OnDevice xo(out, c.B, T, c.C);
        toma::unmerge_cuda(*dplan, yd2.view(), xo.mview());
        CHECK_REL(xo.host().values(), xcpu.values(), tt::dtype_tol({in, out}, 1e-6), what + " unmerge");
      }
}

TEST_CASE(cuda, plans_survive_upload_and_download) {
  if (!have_device()) return;
  tt::Rng rng(500);
  const toma::PlanOptions o = options(11, 7, toma::RegionSpec::Tile, 3, 4, 0.5, 1000, 2);
  const tt::Tensor x = tt::random_tensor(rng, DType::F32, 2, 2 + 77, 24);
  auto cpu = toma::compute_plan_cpu(x.view(), o);
  auto back = toma::download_plan(*toma::upload_plan(*cpu));
  CHECK(back->dest == cpu->dest);
  CHECK(back->k_offsets == cpu->k_offsets);
  for (int b = 0; b < 2; ++b) {
    CHECK(back->weights[b].mptr == cpu->weights[b].mptr);
    CHECK(back->weights[b].midx == cpu->weights[b].midx);
    CHECK(back->weights[b].mw == cpu->weights[b].mw);
    CHECK(back->weights[b].uptr == cpu->weights[b].uptr);
    CHECK(back->weights[b].uidx == cpu->weights[b].uidx);
    CHECK(back->weights[b].uw == cpu->weights[b].uw);
    CHECK(back->weights[b].mass == cpu->weights[b].mass);
  }
}

TEST_CASE(cuda, baseline_plans_merge_on_the_device) {
  if (!have_device()) return;
  tt::Rng rng(600);
  const int B = 2, H = 6, W = 10, N = H * W, K = 17, C = 20, P = 1;
  std::vector<int32_t> assign((size_t)B * N);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < N; ++t) assign[(size_t)b * N + t] = t < K ? t : rng.uniform_int(0, K - 1);
  auto plan = toma::assignment_plan_cpu(B, H, W, P, K, assign.data(), nullptr);
  auto dplan = toma::upload_plan(*plan);
  const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, P + N, C);
  const OnDevice xd(x);
  tt::Tensor ycpu = tt::poisoned_tensor(DType::F32, B, P + K, C);
  toma::merge_cpu(*plan, x.view(), ycpu.mview());
  OnDevice yd(DType::F32, B, P + K, C);
  toma::merge_cuda(*dplan, xd.view(), yd.mview());
  CHECK_REL(yd.host().values(), ycpu.values(), 1e-6, "assignment plan merge");
  OnDevice xo(DType::F32, B, P + N, C);
  toma::unmerge_cuda(*dplan, yd.view(), xo.mview());
  tt::Tensor xcpu = tt::poisoned_tensor(DType::F32, B, P + N, C);
  toma::unmerge_cpu(*plan, ycpu.view(), xcpu.mview());
  CHECK_REL(xo.host().values(), xcpu.values(), 1e-6, "assignment plan unmerge");
}

TEST_CASE(cuda, shape_errors_are_argument_errors) {
  if (!have_device()) return;
  tt::Rng rng(700);
  const toma::PlanOptions o = options(8, 8, toma::RegionSpec::Tile, 4, 4, 0.5, 1000, 0);
  const tt::Tensor x = tt::random_tensor(rng, DType::F32, 1, 64, 16);
  const OnDevice xd(x);
  auto dplan = toma::compute_plan_cuda(xd.view(), o);
  OnDevice wrong(DType::F32, 1, 63, 16), y(DType::F32, 1, dplan->K, 16);
  CHECK_THROWS(toma::merge_cuda(*dplan, wrong.view(), y.mview()), toma::ArgError);
  CHECK_THROWS(toma::unmerge_cuda(*dplan, xd.view(), wrong.mview()), toma::ArgError);
  toma::PlanOptions bad = o;
  bad.ratio = 1.0;
  CHECK_THROWS(toma::compute_plan_cuda(xd.view(), bad), toma::ArgError);
  bad = o;
  bad.H = 7;
  CHECK_THROWS(toma::compute_plan_cuda(xd.view(), bad), toma::ArgError);
  std::vector<int32_t> dest = {5, 1};  // not ascending, misses regions
  CHECK_THROWS(toma::compute_plan_with_destinations_cuda(xd.view(), o, dest.data(), 1, 2), toma::ArgError);
  // Out of device memory is an error, not an abort.
  CHECK_THROWS(toma::cuda::DeviceBuffer((size_t)1 << 50, "test"), toma::DeviceError);
}
