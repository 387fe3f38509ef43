// ops/unmerge.h (SPEC 5): unmerge_cpu against the reference U applied in float64, for every dtype
// pair, odd channel counts, prefixes, soft and hard plans; prefix rows copied exactly; M U = I for
// hard plans (unmerge is merge's right inverse).
#include <cmath>
#include <limits>

#include "ops/merge.h"
#include "ops/plan.h"
#include "ops/unmerge.h"
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
  int Cy;  // channels of the unmerged tensor
};

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
  const std::string what = tt::describe(s) + ", B=" + std::to_string(c.B) + ", C=" + std::to_string(c.Cy) + ", " +
                           toma::dtype_name(c.in) + " -> " + toma::dtype_name(c.out);
  const int T = c.P + c.H * c.W;
  const tt::Tensor h = tt::random_tensor(rng, DType::F32, c.B, T, c.C);
  const std::vector<double> hv = h.values();
  auto plan = toma::compute_plan_cpu(h.view(), tt::lib_options(s));
  const ref::Plan want = tt::reconcile(*plan, ref::plan(hv, c.B, T, c.C, s), hv, T, c.C, s);
  const int Tm = c.P + plan->K;
  const tt::Tensor y = tt::random_tensor(rng, c.in, c.B, Tm, c.Cy);
  const std::vector<uint8_t> before = y.bytes;
  tt::Tensor x = tt::poisoned_tensor(c.out, c.B, T, c.Cy);
  toma::unmerge_cpu(*plan, y.view(), x.mview());
  CHECK_MSG(y.bytes == before, what + ": input modified");
  const std::vector<double> yv = y.values(), xv = x.values();
  CHECK_REL(xv, ref::unmerge(want, yv, c.Cy), tt::dtype_tol(c.out, 1e-5), what);
  ref::Plan own = want;
  for (int b = 0; b < c.B; ++b) own.U[b] = tt::dense_U(*plan, b);
  CHECK_REL(xv, ref::unmerge(own, yv, c.Cy), tt::dtype_tol(c.out, 1e-6), what + " (own weights)");
  int bad = 0;
  tt::Tensor expect(c.out, 1, 1, 1);
  for (int b = 0; b < c.B; ++b)
    for (int t = 0; t < c.P; ++t)
      for (int ch = 0; ch < c.Cy; ++ch) {
        expect.set(0, y.get(((size_t)b * Tm + t) * c.Cy + ch));
        if (!(x.get(((size_t)b * T + t) * c.Cy + ch) == expect.get(0))) ++bad;
      }
  CHECK_MSG(bad == 0, what + ": " + std::to_string(bad) + " prefix values not copied exactly");
}

}  // namespace

TEST_CASE(unmerge, float32_against_reference) {
  const Case cases[] = {
      {2, 8, 8, 16, 0, ref::RegionKind::Tile, 4, 4, 0.5, 1000, DType::F32, DType::F32, 16},
      {2, 7, 9, 16, 7, ref::RegionKind::Tile, 4, 4, 0.75, 1000, DType::F32, DType::F32, 33},
      {3, 9, 5, 8, 0, ref::RegionKind::Tile, 2, 3, 0.5, 10, DType::F32, DType::F32, 1},
      {1, 10, 10, 16, 3, ref::RegionKind::Global, 0, 0, 0.5, kInf, DType::F32, DType::F32, 3},
      {2, 11, 6, 12, 7, ref::RegionKind::Stripe, 0, 4, 0.6, 10, DType::F32, DType::F32, 17},
      {2, 6, 6, 16, 1, ref::RegionKind::Tile, 4, 4, 0.5, kInf, DType::F32, DType::F32, 130},
      {1, 16, 16, 16, 0, ref::RegionKind::Tile, 4, 4, 0.75, 1000, DType::F32, DType::F32, 64},
      {2, 5, 7, 8, 2, ref::RegionKind::Tile, 4, 4, 0.0, 10, DType::F32, DType::F32, 8},
  };
  uint32_t seed = 300;
  for (const Case& c : cases) run_case(c, seed++);
}

TEST_CASE(unmerge, half_and_mixed_dtypes) {
  const DType pairs[][2] = {{DType::F16, DType::F16},  {DType::BF16, DType::BF16}, {DType::F16, DType::F32},
                            {DType::F32, DType::F16},  {DType::F32, DType::BF16},  {DType::BF16, DType::F16},
                            {DType::BF16, DType::F32}};
  uint32_t seed = 400;
  for (const auto& pr : pairs)
    for (double tau : {1000.0, 10.0, kInf}) {
      const Case c{2, 7, 6, 16, 5, ref::RegionKind::Tile, 4, 4, 0.5, tau, pr[0], pr[1], 40};
      run_case(c, seed++);
    }
}

TEST_CASE(unmerge, is_a_right_inverse_of_merge) {
  // Hard plan: M U = I exactly, so merge(unmerge(y)) = y. (Soft tau = 1000 is one-hot only where
  // a source's best destination beats the second by much more than 1 / tau: not on random data.)
  for (double tau : {kInf}) {
    tt::Rng rng(61);
    const int B = 2, H = 9, W = 7, C = 16, P = 4;
    const tt::Tensor h = tt::random_tensor(rng, DType::F32, B, P + H * W, C);
    toma::PlanOptions o;
    o.H = H;
    o.W = W;
    o.ratio = 0.6;
    o.tau = tau;
    o.prefix = P;
    auto plan = toma::compute_plan_cpu(h.view(), o);
    const int Tm = P + plan->K;
    const tt::Tensor y = tt::random_tensor(rng, DType::F32, B, Tm, 24);
    tt::Tensor x(DType::F32, B, P + H * W, 24), y2(DType::F32, B, Tm, 24);
    toma::unmerge_cpu(*plan, y.view(), x.mview());
    toma::merge_cpu(*plan, x.view(), y2.mview());
    CHECK_REL(y2.values(), y.values(), 1e-5, std::string("merge(unmerge(y)) with tau ") + tt::str(tau));
    // Each unmerged image token is a copy of its destination's merged token (hard).
    if (std::isinf(tau)) {
      const std::vector<double> U = tt::dense_U(*plan, 1);
      for (int t = 0; t < plan->N; ++t) {
        int j = -1;
        for (int k = 0; k < plan->K; ++k)
          if (U[(size_t)t * plan->K + k] == 1.0) j = k;
        REQUIRE(j >= 0);
        for (int c = 0; c < 24; ++c)
          CHECK_EQ(x.get(((size_t)1 * (P + H * W) + P + t) * 24 + c), y.get(((size_t)1 * Tm + P + j) * 24 + c));
      }
    }
  }
}

TEST_CASE(unmerge, identity_plan_is_a_copy) {
  tt::Rng rng(9);
  const int B = 2, H = 4, W = 6, C = 5, P = 3;
  const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, P + H * W, C);
  toma::PlanOptions o;
  o.H = H;
  o.W = W;
  o.ratio = 0;
  o.tau = kInf;
  o.prefix = P;
  auto plan = toma::compute_plan_cpu(x.view(), o);
  // Ratio 0, hard: unmerge(merge(x)) is x exactly, also through bfloat16.
  const tt::Tensor xb = [&] {
    tt::Tensor t(DType::BF16, B, P + H * W, C);
    for (size_t i = 0; i < t.numel(); ++i) t.set(i, x.get(i));
    return t;
  }();
  tt::Tensor m(DType::BF16, B, P + H * W, C), y(DType::BF16, B, P + H * W, C);
  toma::merge_cpu(*plan, xb.view(), m.mview());
  toma::unmerge_cpu(*plan, m.view(), y.mview());
  CHECK(y.bytes == xb.bytes);
  CHECK(m.bytes != xb.bytes);  // 4 x 6 in 4 x 4 tiles: region order is not token order
}
