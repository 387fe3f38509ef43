// ops/merge.h (SPEC 5): merge_cpu against the reference M applied in float64, for every dtype pair,
// odd channel counts, prefixes, soft and hard plans; prefix rows copied exactly; linearity.
#include <cmath>
#include <limits>

#include "ops/merge.h"
#include "ops/plan.h"
#include "tests/harness.h"
#include "tests/reference.h"
#include "tests/support.h"

using toma::DType;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

struct Case {
  int B, H, W, C, P;
  ref::RegionKind kind;
  int a, b;
  double ratio, tau;
  DType in, out;
  int Cx;  // channels of the merged tensor (the plan is computed on C channels)
};

std::string describe(const Case& c, const ref::PlanSpec& s) {
  return tt::describe(s) + ", B=" + std::to_string(c.B) + ", C=" + std::to_string(c.Cx) + ", " +
         toma::dtype_name(c.in) + " -> " + toma::dtype_name(c.out);
}

ref::PlanSpec spec_of(const Case& c) {
  ref::PlanSpec s;
  s.H = c.H;
  s.W = c.W;
  s.region.kind = c.kind;
  s.region.th = c.a;
  s.region.tw = c.b;
  s.region.rows = c.b;
  s.ratio = c.ratio;
  s.tau = c.tau;
  s.prefix = c.P;
  return s;
}

void run_case(const Case& c, uint32_t seed) {
  tt::Rng rng(seed);
  const ref::PlanSpec s = spec_of(c);
  const std::string what = describe(c, s);
  const int T = c.P + c.H * c.W;
  // The plan from one tensor (C channels), applied to another (Cx channels): as in attention,
  // where the plan comes from the hidden states and merges q, k and v.
  const tt::Tensor h = tt::random_tensor(rng, c.in, c.B, T, c.C);
  const std::vector<double> hv = h.values();
  auto plan = toma::compute_plan_cpu(h.view(), tt::lib_options(s));
  const ref::Plan want = tt::reconcile(*plan, ref::plan(hv, c.B, T, c.C, s), hv, T, c.C, s);
  const tt::Tensor x = c.Cx == c.C ? h : tt::random_tensor(rng, c.in, c.B, T, c.Cx);
  const std::vector<uint8_t> before = x.bytes;
  tt::Tensor y = tt::poisoned_tensor(c.out, c.B, c.P + plan->K, c.Cx);
  toma::merge_cpu(*plan, x.view(), y.mview());
  CHECK_MSG(x.bytes == before, what + ": input modified");
  const std::vector<double> xv = x.values(), yv = y.values();
  CHECK_REL(yv, ref::merge(want, xv, c.Cx), tt::dtype_tol(c.out, 1e-5), what);
  // Against the plan's own weights too: isolates the kernel from the weights.
  ref::Plan own = want;
  for (int b = 0; b < c.B; ++b) own.M[b] = tt::dense_M(*plan, b);
  CHECK_REL(yv, ref::merge(own, xv, c.Cx), tt::dtype_tol(c.out, 1e-6), what + " (own weights)");
  // Prefix rows: the input rounded to the output dtype, nothing else.
  int bad = 0;
  tt::Tensor expect(c.out, 1, 1, 1);
  for (int b = 0; b < c.B; ++b)
    for (int t = 0; t < c.P; ++t)
      for (int ch = 0; ch < c.Cx; ++ch) {
        expect.set(0, x.get(((size_t)b * T + t) * c.Cx + ch));
        const double got = y.get(((size_t)b * (c.P + plan->K) + t) * c.Cx + ch);
        if (!(got == expect.get(0))) ++bad;
      }
  CHECK_MSG(bad == 0, what + ": " + std::to_string(bad) + " prefix values not copied exactly");
}

}  // namespace

TEST_CASE(merge, float32_against_reference) {
  const Case cases[] = {
      {2, 8, 8, 16, 0, ref::RegionKind::Tile, 4, 4, 0.5, 1000, DType::F32, DType::F32, 16},
      {2, 7, 9, 16, 7, ref::RegionKind::Tile, 4, 4, 0.75, 1000, DType::F32, DType::F32, 16},
      {3, 9, 5, 8, 0, ref::RegionKind::Tile, 2, 3, 0.5, 10, DType::F32, DType::F32, 1},
      {1, 10, 10, 16, 3, ref::RegionKind::Global, 0, 0, 0.5, kInf, DType::F32, DType::F32, 3},
      {2, 11, 6, 12, 7, ref::RegionKind::Stripe, 0, 4, 0.6, 10, DType::F32, DType::F32, 17},
      {2, 6, 6, 16, 1, ref::RegionKind::Tile, 4, 4, 0.5, kInf, DType::F32, DType::F32, 130},
      {1, 16, 16, 16, 0, ref::RegionKind::Tile, 4, 4, 0.75, 1000, DType::F32, DType::F32, 64},
      {2, 5, 7, 8, 2, ref::RegionKind::Tile, 4, 4, 0.0, 1000, DType::F32, DType::F32, 8},
      {2, 32, 32, 640, 0, ref::RegionKind::Tile, 4, 4, 0.75, 1000, DType::F32, DType::F32, 640},  // SDXL 32x32 block
  };
  uint32_t seed = 100;
  for (const Case& c : cases) run_case(c, seed++);
}

TEST_CASE(merge, half_and_mixed_dtypes) {
  const DType pairs[][2] = {{DType::F16, DType::F16},  {DType::BF16, DType::BF16}, {DType::F16, DType::F32},
                            {DType::F32, DType::F16},  {DType::F32, DType::BF16},  {DType::BF16, DType::F16},
                            {DType::BF16, DType::F32}};
  uint32_t seed = 200;
  for (const auto& pr : pairs)
    for (double tau : {1000.0, 10.0, kInf}) {
      const Case c{2, 7, 6, 16, 5, ref::RegionKind::Tile, 4, 4, 0.5, tau, pr[0], pr[1], 40};
      run_case(c, seed++);
    }
}

TEST_CASE(merge, hard_plan_averages_assigned_tokens) {
  // A hard plan's merged token is the plain mean of the tokens assigned to its destination.
  tt::Rng rng(17);
  const int B = 2, H = 6, W = 6, C = 24;
  const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, H * W, C);
  toma::PlanOptions o;
  o.H = H;
  o.W = W;
  o.ratio = 0.5;
  o.tau = kInf;
  auto plan = toma::compute_plan_cpu(x.view(), o);
  tt::Tensor y(DType::F32, B, plan->K, C);
  toma::merge_cpu(*plan, x.view(), y.mview());
  for (int b = 0; b < B; ++b) {
    const std::vector<double> U = tt::dense_U(*plan, b);
    std::vector<double> got, want;
    for (int j = 0; j < plan->K; ++j) {
      std::vector<double> sum(C, 0.0);
      int n = 0;
      for (int t = 0; t < plan->N; ++t)
        if (U[(size_t)t * plan->K + j] == 1.0) {
          ++n;
          for (int c = 0; c < C; ++c) sum[c] += x.get(((size_t)b * H * W + t) * C + c);
        }
      CHECK_GE(n, 1);
      for (int c = 0; c < C; ++c) {
        got.push_back(y.get(((size_t)b * plan->K + j) * C + c));
        want.push_back(sum[c] / std::max(n, 1));
      }
    }
    CHECK_REL(got, want, 1e-6, "hard merge = mean of assigned tokens");
  }
}

TEST_CASE(merge, commutes_with_linear_projections) {
  // SPEC 5: merge(x W + bias) = merge(x) W + bias, since M's rows sum to 1.
  for (double tau : {1000.0, 10.0}) {
    tt::Rng rng(23);
    const int B = 2, H = 6, W = 7, C = 16, C2 = 20, P = 3, T = P + H * W;
    const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, T, C);
    std::vector<double> Wm((size_t)C * C2), bias(C2);
    for (double& v : Wm) v = rng.normal() / 4;
    for (double& v : bias) v = rng.normal();
    tt::Tensor z(DType::F32, B, T, C2);
    for (int bt = 0; bt < B * T; ++bt)
      for (int o = 0; o < C2; ++o) {
        double s = bias[o];
        for (int i = 0; i < C; ++i) s += x.get((size_t)bt * C + i) * Wm[(size_t)i * C2 + o];
        z.set((size_t)bt * C2 + o, s);
      }
    toma::PlanOptions opt;
    opt.H = H;
    opt.W = W;
    opt.tau = tau;
    opt.prefix = P;
    auto plan = toma::compute_plan_cpu(x.view(), opt);
    const int Tm = P + plan->K;
    tt::Tensor mx(DType::F32, B, Tm, C), mz(DType::F32, B, Tm, C2);
    toma::merge_cpu(*plan, x.view(), mx.mview());
    toma::merge_cpu(*plan, z.view(), mz.mview());
    std::vector<double> proj((size_t)B * Tm * C2);
    for (int bt = 0; bt < B * Tm; ++bt)
      for (int o = 0; o < C2; ++o) {
        double s = bias[o];
        for (int i = 0; i < C; ++i) s += mx.get((size_t)bt * C + i) * Wm[(size_t)i * C2 + o];
        proj[(size_t)bt * C2 + o] = s;
      }
    CHECK_REL(mz.values(), proj, 1e-5, "merge(xW + b) vs merge(x)W + b");
  }
}

TEST_CASE(merge, identity_plan_is_a_copy) {
  // Ratio 0, hard: merged token j is image token regions.tokens[j], copied exactly.
  tt::Rng rng(4);
  const int B = 2, H = 5, W = 7, C = 9, P = 2;
  const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, P + H * W, C);
  toma::PlanOptions o;
  o.H = H;
  o.W = W;
  o.ratio = 0;
  o.tau = kInf;
  o.prefix = P;
  auto plan = toma::compute_plan_cpu(x.view(), o);
  REQUIRE_EQ(plan->K, H * W);
  tt::Tensor y(DType::F32, B, P + H * W, C);
  toma::merge_cpu(*plan, x.view(), y.mview());
  const int T = P + H * W;
  int bad = 0;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const int src = t < P ? t : P + plan->regions.tokens[t - P];
      for (int c = 0; c < C; ++c) bad += y.get(((size_t)b * T + t) * C + c) != x.get(((size_t)b * T + src) * C + c);
    }
  CHECK_EQ(bad, 0);
}
