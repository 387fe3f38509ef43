// ops/merge_attention_unmerge.h (SPEC 6): unmerge(attention(merge(q), merge(k), merge(v))) against
// the reference composition in float64, with and without a prefix, soft and hard plans, half dtypes,
// and merge_queries = false (only keys and values merged). Repeated for every ISA in child processes.
#include <cmath>
#include <limits>

#include "cpu/simd/kernels.h"
#include "ops/attention.h"
#include "ops/merge.h"
#include "ops/merge_attention_unmerge.h"
#include "ops/plan.h"
#include "ops/unmerge.h"
#include "tests/harness.h"
#include "tests/reference.h"
#include "tests/support.h"

using toma::DType;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

struct Case {
  int B, H, W, P, heads, D;
  ref::RegionKind kind;
  int a, b;
  double ratio, tau, scale;
  DType dt;
  bool merge_queries;
};

void run_case(const Case& c, uint32_t seed) {
  tt::Rng rng(seed);
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
  const int C = c.heads * c.D, T = c.P + c.H * c.W;
  const std::string what = std::string(toma::cpu_kernels().isa) + " " + tt::describe(s) + ", B=" + std::to_string(c.B) +
                           ", heads=" + std::to_string(c.heads) + "x" + std::to_string(c.D) + ", " +
                           toma::dtype_name(c.dt) + (c.merge_queries ? "" : ", merge_queries=false") +
                           (c.scale > 0 ? ", scale " + tt::str(c.scale) : "");
  // The plan comes from the block's hidden states, then merges q, k and v.
  const tt::Tensor h = tt::random_tensor(rng, c.dt, c.B, T, C);
  const std::vector<double> hv = h.values();
  auto plan = toma::compute_plan_cpu(h.view(), tt::lib_options(s));
  const ref::Plan want_plan = tt::reconcile(*plan, ref::plan(hv, c.B, T, C, s), hv, T, C, s);
  const tt::Tensor q = tt::random_tensor(rng, c.dt, c.B, T, C), k = tt::random_tensor(rng, c.dt, c.B, T, C),
                   v = tt::random_tensor(rng, c.dt, c.B, T, C);
  const auto bq = q.bytes, bk = k.bytes, bv = v.bytes;
  tt::Tensor out = tt::poisoned_tensor(c.dt, c.B, T, C);
  toma::MergeAttentionParams p;
  p.q = q.view();
  p.k = k.view();
  p.v = v.view();
  p.out = out.mview();
  p.heads = c.heads;
  p.scale = (float)c.scale;
  p.merge_queries = c.merge_queries;
  toma::merge_attention_unmerge_cpu(*plan, p);
  CHECK_MSG(q.bytes == bq && k.bytes == bk && v.bytes == bv, what + ": input modified");
  const std::vector<double> want = ref::merge_attention_unmerge(want_plan, q.values(), k.values(), v.values(), C,
                                                                c.heads, c.scale, c.merge_queries);
  CHECK_REL(out.values(), want, tt::dtype_tol(c.dt, 1e-4), what);
}

}  // namespace

TEST_CASE(merge_attention_unmerge, float32_against_reference) {
  const Case cases[] = {
      {2, 8, 8, 0, 2, 64, ref::RegionKind::Tile, 4, 4, 0.5, 1000, 0, DType::F32, true},
      {1, 16, 16, 0, 2, 64, ref::RegionKind::Tile, 4, 4, 0.75, 1000, 0, DType::F32, true},   // SDXL-like
      {2, 8, 8, 16, 3, 80, ref::RegionKind::Tile, 4, 4, 0.5, 1000, 0, DType::F32, true},    // Flux-like prefix
      {1, 9, 7, 7, 4, 32, ref::RegionKind::Tile, 4, 4, 0.5, kInf, 0, DType::F32, true},
      {2, 7, 9, 0, 1, 128, ref::RegionKind::Global, 0, 0, 0.6, 10, 0, DType::F32, true},
      {1, 11, 6, 5, 8, 8, ref::RegionKind::Stripe, 0, 3, 0.5, 1000, 0.2, DType::F32, true},
      {1, 6, 6, 0, 2, 16, ref::RegionKind::Tile, 4, 4, 0.0, 1000, 0, DType::F32, true},     // identity plan
  };
  uint32_t seed = 1;
  for (const Case& c : cases) run_case(c, seed++);
}

TEST_CASE(merge_attention_unmerge, merge_queries_false) {
  const Case cases[] = {
      {2, 8, 8, 0, 2, 64, ref::RegionKind::Tile, 4, 4, 0.75, 1000, 0, DType::F32, false},
      {1, 9, 7, 7, 4, 32, ref::RegionKind::Tile, 4, 4, 0.5, kInf, 0, DType::F32, false},
      {2, 10, 10, 16, 2, 80, ref::RegionKind::Global, 0, 0, 0.5, 10, 0, DType::F32, false},
      {1, 8, 8, 3, 2, 64, ref::RegionKind::Tile, 4, 4, 0.5, 1000, 0, DType::F16, false},
  };
  uint32_t seed = 20;
  for (const Case& c : cases) run_case(c, seed++);
}

TEST_CASE(merge_attention_unmerge, half_dtypes) {
  uint32_t seed = 40;
  for (DType dt : {DType::F16, DType::BF16})
    for (double tau : {1000.0, kInf}) {
      run_case({2, 8, 8, 4, 2, 64, ref::RegionKind::Tile, 4, 4, 0.5, tau, 0, dt, true}, seed++);
      run_case({1, 9, 11, 0, 3, 80, ref::RegionKind::Tile, 4, 4, 0.75, tau, 0, dt, true}, seed++);
    }
}

TEST_CASE(merge_attention_unmerge, equals_the_library_composition) {
  // The op is documented as exactly merge -> attention -> unmerge on float32 intermediates.
  tt::Rng rng(77);
  const int B = 2, H = 8, W = 8, P = 4, heads = 2, D = 32, C = heads * D, T = P + H * W;
  const tt::Tensor h = tt::random_tensor(rng, DType::F32, B, T, C);
  toma::PlanOptions o;
  o.H = H;
  o.W = W;
  o.prefix = P;
  auto plan = toma::compute_plan_cpu(h.view(), o);
  const int Tm = P + plan->K;
  const tt::Tensor q = tt::random_tensor(rng, DType::F32, B, T, C), k = tt::random_tensor(rng, DType::F32, B, T, C),
                   v = tt::random_tensor(rng, DType::F32, B, T, C);
  tt::Tensor mq(DType::F32, B, Tm, C), mk(DType::F32, B, Tm, C), mv(DType::F32, B, Tm, C), mo(DType::F32, B, Tm, C),
      o2(DType::F32, B, T, C), o1(DType::F32, B, T, C);
  toma::merge_cpu(*plan, q.view(), mq.mview());
  toma::merge_cpu(*plan, k.view(), mk.mview());
  toma::merge_cpu(*plan, v.view(), mv.mview());
  toma::AttentionParams a;
  a.q = mq.view();
  a.k = mk.view();
  a.v = mv.view();
  a.out = mo.mview();
  a.heads = heads;
  toma::attention_cpu(a);
  toma::unmerge_cpu(*plan, mo.view(), o2.mview());
  toma::MergeAttentionParams p;
  p.q = q.view();
  p.k = k.view();
  p.v = v.view();
  p.out = o1.mview();
  p.heads = heads;
  toma::merge_attention_unmerge_cpu(*plan, p);
  CHECK_REL(o1.values(), o2.values(), 1e-6, "fused vs composed");
}

TEST_CASE(merge_attention_unmerge, other_isas) {
  if (tt::is_child()) return;
  const std::string current = toma::cpu_kernels().isa;
  for (const std::string& isa : tt::available_isas()) {
    if (isa == current) continue;
    const int rc = tt::run_self({"merge_attention_unmerge"}, {{"TOMA_CPU_ISA", isa}});
    CHECK_MSG(rc == 0, "merge_attention_unmerge with TOMA_CPU_ISA=" + isa + " exited " + std::to_string(rc));
  }
}
