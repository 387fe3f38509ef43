// ops/plan.h (SPEC 3-5): compute_plan_cpu and compute_plan_with_destinations_cpu against the
// reference: destinations, k offsets, and the dense M / U rebuilt from the sparse CSR weights, for
// soft (tau 1000, 10) and hard (tau = inf) plans, prefix 0 and 7, shareBatch, half inputs.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "ops/plan.h"
#include "tests/harness.h"
#include "tests/reference.h"
#include "tests/support.h"

using toma::DType;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

ref::PlanSpec spec_of(int H, int W, ref::RegionKind kind, int a, int b, double ratio, double tau, int prefix,
                      bool share) {
  ref::PlanSpec s;
  s.H = H;
  s.W = W;
  s.region.kind = kind;
  s.region.th = a;
  s.region.tw = b;
  s.region.rows = b;
  s.ratio = ratio;
  s.tau = tau;
  s.prefix = prefix;
  s.share_batch = share;
  return s;
}

// Computes the plan and compares everything with the reference; returns the library plan.
std::shared_ptr<toma::Plan> check_plan(const tt::Tensor& x, const ref::PlanSpec& spec) {
  const std::string what = tt::describe(spec) + ", " + toma::dtype_name(x.dtype) + ", B=" + std::to_string(x.B) +
                           ", C=" + std::to_string(x.C);
  const std::vector<double> xv = x.values();
  const std::vector<uint8_t> before = x.bytes;
  auto p = toma::compute_plan_cpu(x.view(), tt::lib_options(spec));
  CHECK_MSG(x.bytes == before, what + ": input modified");
  REQUIRE(p != nullptr);
  const ref::Plan want0 = ref::plan(xv, x.B, x.T, x.C, spec);
  CHECK_EQ(p->B, x.B);
  CHECK_EQ(p->P, spec.prefix);
  CHECK_EQ(p->N, spec.H * spec.W);
  REQUIRE_EQ(p->K, want0.K);
  CHECK_EQ(p->hard, std::isinf(spec.tau));
  CHECK_EQ(std::vector<int>(p->k_offsets.begin(), p->k_offsets.end()), want0.k_offsets);
  REQUIRE_EQ(p->regions.count(), (int)want0.regions.size());
  tt::check_plan_structure(*p);
  const ref::Plan want = tt::reconcile(*p, want0, xv, x.T, x.C, spec);
  for (int b = 0; b < p->B; ++b) {
    CHECK_REL(tt::dense_M(*p, b), want.M[b], 1e-5, what + ": M of b=" + std::to_string(b));
    CHECK_REL(tt::dense_U(*p, b), want.U[b], 1e-5, what + ": U of b=" + std::to_string(b));
  }
  if (spec.share_batch)
    for (int b = 1; b < p->B; ++b) CHECK_MSG(tt::lib_dest(*p, b) == tt::lib_dest(*p, 0), what + ": shareBatch rows differ");
  CHECK_GT(p->bytes(), 0u);
  return p;
}

}  // namespace

TEST_CASE(plan, soft_and_hard_weights_match_reference) {
  struct G {
    int H, W;
    ref::RegionKind kind;
    int a, b;
    double ratio;
  };
  const G grids[] = {
      {8, 8, ref::RegionKind::Tile, 4, 4, 0.5},     {7, 9, ref::RegionKind::Tile, 4, 4, 0.75},
      {9, 5, ref::RegionKind::Tile, 2, 3, 0.5},     {10, 10, ref::RegionKind::Global, 0, 0, 0.5},
      {11, 6, ref::RegionKind::Stripe, 0, 4, 0.6},  {1, 13, ref::RegionKind::Tile, 4, 4, 0.5},
      {12, 12, ref::RegionKind::Tile, 8, 8, 0.9},
  };
  int seed = 0, count = 0;
  for (const G& g : grids)
    for (double tau : {1000.0, 10.0, kInf})
      for (int prefix : {0, 7}) {
        tt::Rng rng(9000 + seed++);
        const int B = 2, C = 16, T = prefix + g.H * g.W;
        const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, T, C);
        check_plan(x, spec_of(g.H, g.W, g.kind, g.a, g.b, g.ratio, tau, prefix, false));
        ++count;
      }
  tt::note(std::to_string(count) + " plans");
}

TEST_CASE(plan, large_regions) {
  // Regions of 256+ tokens (parallel similarity rows, lazy greedy) and over 1024 tokens (weights
  // recompute the cosines instead of keeping the region's similarity matrix).
  int seed = 0;
  for (double tau : {1000.0, kInf}) {
    tt::Rng rng(2024 + seed++);
    const tt::Tensor x = tt::random_tensor(rng, DType::F32, 1, 33 * 32, 8);
    check_plan(x, spec_of(33, 32, ref::RegionKind::Global, 0, 0, 0.97, tau, 0, false));
    const tt::Tensor y = tt::random_tensor(rng, DType::F32, 2, 2 + 20 * 16, 12);
    check_plan(y, spec_of(20, 16, ref::RegionKind::Stripe, 0, 16, 0.8, tau, 2, false));
  }
}

TEST_CASE(plan, share_batch) {
  for (double tau : {1000.0, 10.0, kInf}) {
    tt::Rng rng(31 + (int)std::min(tau, 1e6));
    const int B = 3, C = 12, H = 6, W = 8, P = 7;
    const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, P + H * W, C);
    const ref::PlanSpec s = spec_of(H, W, ref::RegionKind::Tile, 4, 4, 0.5, tau, P, true);
    auto p = check_plan(x, s);
    // The weights are still each element's own: element 1 differs from element 0.
    CHECK(tt::dense_U(*p, 1) != tt::dense_U(*p, 0) || std::isinf(tau));
    // Without shareBatch, elements generally select different destinations.
    ref::PlanSpec s2 = s;
    s2.share_batch = false;
    auto q = toma::compute_plan_cpu(x.view(), tt::lib_options(s2));
    CHECK(tt::lib_dest(*q, 0) == tt::lib_dest(*p, 0));
    CHECK(tt::lib_dest(*q, 1) != tt::lib_dest(*q, 0));
  }
}

TEST_CASE(plan, half_inputs) {
  int seed = 0;
  for (DType dt : {DType::F16, DType::BF16})
    for (double tau : {1000.0, 10.0, kInf}) {
      tt::Rng rng(700 + seed++);
      const tt::Tensor x = tt::random_tensor(rng, dt, 2, 3 + 9 * 7, 20);
      check_plan(x, spec_of(9, 7, ref::RegionKind::Tile, 4, 4, 0.5, tau, 3, false));
    }
}

TEST_CASE(plan, ratio_zero_keeps_every_token) {
  for (double tau : {1000.0, kInf}) {
    tt::Rng rng(5);
    const int H = 5, W = 7, C = 16;
    const tt::Tensor x = tt::random_tensor(rng, DType::F32, 2, H * W, C);
    auto p = check_plan(x, spec_of(H, W, ref::RegionKind::Tile, 4, 4, 0.0, tau, 0, false));
    REQUIRE_EQ(p->K, H * W);
    // Identity plan (SPEC 3): merged token j is image token regions.tokens[j] (region order), so
    // M is that permutation and U its transpose (up to exp(-tau * (1 - cos)) for the soft one).
    std::vector<double> Pm((size_t)p->N * p->N, 0.0), Pu((size_t)p->N * p->N, 0.0);
    for (int j = 0; j < p->K; ++j) {
      Pm[(size_t)j * p->N + p->regions.tokens[j]] = 1;
      Pu[(size_t)p->regions.tokens[j] * p->K + j] = 1;
    }
    for (int b = 0; b < 2; ++b) {
      for (int t = 0; t < p->K; ++t) CHECK_EQ(p->dest[(size_t)b * p->K + t], p->regions.tokens[t]);
      CHECK_REL(tt::dense_M(*p, b), Pm, 1e-6, "identity M");
      CHECK_REL(tt::dense_U(*p, b), Pu, 1e-6, "identity U");
    }
  }
}

TEST_CASE(plan, hard_plan_ties_and_duplicates) {
  // Tokens 0, 1 and 2 of a 1 x 6 grid are identical; destinations {0, 1, 4} given. Hard: token 2
  // goes to 0 (lowest of two equal similarities), 1 keeps itself. Soft: 2 splits evenly between 0
  // and 1, and so do 0 and 1 themselves (each destination's own softmax sees its twin).
  tt::Rng rng(8);
  const int C = 8, N = 6;
  tt::Tensor x(DType::F32, 1, N, C);
  std::vector<double> v0(C);
  for (double& v : v0) v = rng.normal();
  for (int t = 0; t < N; ++t)
    for (int c = 0; c < C; ++c) x.set((size_t)t * C + c, t < 3 ? v0[c] : rng.normal());
  const int32_t dest[] = {0, 1, 4};
  for (double tau : {kInf, 1000.0}) {
    ref::PlanSpec s = spec_of(1, N, ref::RegionKind::Global, 0, 0, 0.5, tau, 0, false);
    auto p = toma::compute_plan_with_destinations_cpu(x.view(), tt::lib_options(s), dest, 1, 3);
    const ref::Plan want = ref::plan_with_destinations(x.values(), 1, N, C, s, {{0, 1, 4}});
    tt::check_plan_structure(*p);
    const std::vector<double> U = tt::dense_U(*p, 0), M = tt::dense_M(*p, 0);
    CHECK_REL(U, want.U[0], 1e-6, "U");
    CHECK_REL(M, want.M[0], 1e-6, "M");
    if (std::isinf(tau)) {
      CHECK_EQ(U[0 * 3 + 0], 1.0);
      CHECK_EQ(U[1 * 3 + 1], 1.0);
      CHECK_EQ(U[2 * 3 + 0], 1.0);
      CHECK_EQ(U[4 * 3 + 2], 1.0);
    } else {
      CHECK_NEAR(U[2 * 3 + 0], 0.5, 1e-6);
      CHECK_NEAR(U[2 * 3 + 1], 0.5, 1e-6);
      CHECK_NEAR(U[0 * 3 + 0], 0.5, 1e-6);
      CHECK_NEAR(U[1 * 3 + 0], 0.5, 1e-6);
    }
  }
  // Zero tokens have similarity 0 with every destination: hard sends them to the first
  // destination of the region, soft spreads them evenly.
  tt::Tensor z(DType::F32, 1, 8, 4);
  for (int t = 0; t < 8; ++t)
    for (int c = 0; c < 4; ++c) z.set((size_t)t * 4 + c, t == 5 ? 0.0 : rng.normal());
  const int32_t d2[] = {1, 3, 6, 7};
  for (double tau : {kInf, 1000.0}) {
    ref::PlanSpec s = spec_of(2, 4, ref::RegionKind::Global, 0, 0, 0.5, tau, 0, false);
    auto p = toma::compute_plan_with_destinations_cpu(z.view(), tt::lib_options(s), d2, 1, 4);
    const ref::Plan want = ref::plan_with_destinations(z.values(), 1, 8, 4, s, {{1, 3, 6, 7}});
    CHECK_REL(tt::dense_U(*p, 0), want.U[0], 1e-6, "U with a zero token");
    CHECK_REL(tt::dense_M(*p, 0), want.M[0], 1e-6, "M with a zero token");
    const std::vector<double> U = tt::dense_U(*p, 0);
    if (std::isinf(tau)) CHECK_EQ(U[5 * 4 + 0], 1.0);
    else CHECK_NEAR(U[5 * 4 + 2], 0.25, 1e-6);
  }
}

TEST_CASE(plan, with_destinations) {
  int seed = 0;
  for (double tau : {1000.0, 10.0, kInf})
    for (int prefix : {0, 7}) {
      tt::Rng rng(555 + seed++);
      const int B = 3, H = 7, W = 6, C = 12, T = prefix + H * W;
      const ref::PlanSpec s = spec_of(H, W, ref::RegionKind::Tile, 4, 4, 0.5, tau, prefix, false);
      const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, T, C);
      const std::vector<double> xv = x.values();
      // Random valid destinations: per region, k random tokens, ascending.
      const auto regions = ref::regions(H, W, s.region);
      auto random_row = [&]() {
        std::vector<int> row;
        for (const auto& r : regions) {
          std::vector<int> t = r;
          std::shuffle(t.begin(), t.end(), rng.gen);
          t.resize(ref::destination_count((int)r.size(), s.ratio));
          std::sort(t.begin(), t.end());
          row.insert(row.end(), t.begin(), t.end());
        }
        return row;
      };
      for (int rows : {1, B}) {
        std::vector<std::vector<int>> d;
        for (int r = 0; r < rows; ++r) d.push_back(random_row());
        const int K = (int)d[0].size();
        std::vector<int32_t> flat;
        for (const auto& r : d) flat.insert(flat.end(), r.begin(), r.end());
        auto p = toma::compute_plan_with_destinations_cpu(x.view(), tt::lib_options(s), flat.data(), rows, K);
        std::vector<std::vector<int>> full;
        for (int b = 0; b < B; ++b) full.push_back(d[rows == 1 ? 0 : b]);
        const ref::Plan want = ref::plan_with_destinations(xv, B, T, C, s, full);
        tt::check_plan_structure(*p);
        REQUIRE_EQ(p->K, K);
        for (int b = 0; b < B; ++b) {
          CHECK_EQ(tt::lib_dest(*p, b), full[b]);
          CHECK_REL(tt::dense_M(*p, b), want.M[b], 1e-5, "M with given destinations");
          CHECK_REL(tt::dense_U(*p, b), want.U[b], 1e-5, "U with given destinations");
        }
      }
      // The plan's own destinations give back the plan (weight-only recompute = full compute).
      auto full_plan = toma::compute_plan_cpu(x.view(), tt::lib_options(s));
      auto again = toma::compute_plan_with_destinations_cpu(x.view(), tt::lib_options(s), full_plan->dest.data(), B,
                                                            full_plan->K);
      for (int b = 0; b < B; ++b) {
        CHECK_REL(tt::dense_M(*again, b), tt::dense_M(*full_plan, b), 1e-7, "recomputed M");
        CHECK_REL(tt::dense_U(*again, b), tt::dense_U(*full_plan, b), 1e-7, "recomputed U");
      }
    }
}

TEST_CASE(plan, with_destinations_rejects_bad_destinations) {
  tt::Rng rng(12);
  const int B = 2, H = 4, W = 6, C = 8;
  const ref::PlanSpec s = spec_of(H, W, ref::RegionKind::Tile, 4, 4, 0.5, 1000, 0, false);
  const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, H * W, C);
  // Regions: tile 0 = columns 0..3 (16 tokens), tile 1 = columns 4..5 (8 tokens).
  const auto regions = ref::regions(H, W, s.region);
  std::vector<int32_t> good;
  for (int i = 0; i < 8; ++i) good.push_back(regions[0][i]);
  for (int i = 0; i < 4; ++i) good.push_back(regions[1][i]);
  const int K = 12;
  auto opts = tt::lib_options(s);
  CHECK_NOTHROW(toma::compute_plan_with_destinations_cpu(x.view(), opts, good.data(), 1, K));
  // The count per region comes from the destinations (ops/plan.h): other counts are accepted.
  {
    std::vector<int32_t> d{regions[0][3], regions[1][0], regions[1][2], regions[1][7]};
    std::shared_ptr<toma::Plan> p;
    CHECK_NOTHROW(p = toma::compute_plan_with_destinations_cpu(x.view(), opts, d.data(), 1, 4));
    if (p) {
      CHECK_EQ(p->K, 4);
      CHECK_EQ(std::vector<int>(p->k_offsets.begin(), p->k_offsets.end()), (std::vector<int>{0, 1, 4}));
    }
  }
  auto expect_bad = [&](std::vector<int32_t> d, int rows, int k, const char* what) {
    try {
      toma::compute_plan_with_destinations_cpu(x.view(), opts, d.data(), rows, k);
      CHECK_MSG(false, std::string(what) + ": accepted");
    } catch (const toma::ArgError& e) {
      CHECK_MSG(std::string(e.what()).size() > 10, what);
    } catch (const std::exception& e) {
      CHECK_MSG(false, std::string(what) + ": wrong exception " + e.what());
    }
  };
  expect_bad(std::vector<int32_t>(good.begin(), good.begin() + 8), 1, 8, "no destination in region 1");
  expect_bad(std::vector<int32_t>(good.begin() + 8, good.end()), 1, 4, "no destination in region 0");
  {
    auto d = good;
    d.insert(d.end(), good.begin(), good.end());
    d.insert(d.end(), good.begin(), good.end());
    expect_bad(d, 3, K, "3 rows for B = 2");
    expect_bad(d, 0, K, "0 rows");
  }
  {
    auto d = good;
    d[3] = -1;
    expect_bad(d, 1, K, "negative token");
  }
  {
    auto d = good;
    d[K - 1] = H * W;
    expect_bad(d, 1, K, "token = N");
  }
  {
    auto d = good;
    d[3] = regions[1][0];  // region 1's token inside region 0's run
    expect_bad(d, 1, K, "token in the wrong region");
  }
  {
    auto d = good;
    std::swap(d[8], d[0]);  // regions out of order
    expect_bad(d, 1, K, "regions out of order");
  }
  {
    auto d = good;
    std::swap(d[2], d[3]);
    expect_bad(d, 1, K, "not ascending");
  }
  {
    auto d = good;
    d[3] = d[2];
    expect_bad(d, 1, K, "duplicate");
  }
  {
    // The second row is bad while the first is fine.
    auto d = good;
    d.insert(d.end(), good.begin(), good.end());
    d[K + 9] = regions[0][15];
    expect_bad(d, 2, K, "bad second row");
  }
  {
    // Rows with different counts per region (same K).
    auto d = good;
    std::vector<int32_t> r2;
    for (int i = 0; i < 9; ++i) r2.push_back(regions[0][i]);
    for (int i = 0; i < 3; ++i) r2.push_back(regions[1][i]);
    d.insert(d.end(), r2.begin(), r2.end());
    expect_bad(d, 2, K, "rows with different counts per region");
  }
}

TEST_CASE(plan, with_destinations_variable_counts) {
  // Per-region counts other than the ratio's (the adaptive mode's plans re-weighed), rows per
  // element, soft and hard, ratio 0 or not in the options (unused here).
  int seed = 0;
  for (double tau : {10.0, 1000.0, kInf})
    for (double ratio : {0.5, 0.0}) {
      tt::Rng rng(808 + seed++);
      const int B = 2, H = 6, W = 7, C = 10;
      ref::PlanSpec s = spec_of(H, W, ref::RegionKind::Tile, 4, 4, ratio, tau, 0, false);
      const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, H * W, C);
      const auto regions = ref::regions(H, W, s.region);
      std::vector<int> counts;
      for (const auto& r : regions) counts.push_back(rng.uniform_int(1, (int)r.size()));
      std::vector<std::vector<int>> d(B);
      for (int b = 0; b < B; ++b)
        for (size_t r = 0; r < regions.size(); ++r) {
          std::vector<int> t = regions[r];
          std::shuffle(t.begin(), t.end(), rng.gen);
          t.resize(counts[r]);
          std::sort(t.begin(), t.end());
          d[b].insert(d[b].end(), t.begin(), t.end());
        }
      std::vector<int32_t> flat;
      for (const auto& r : d) flat.insert(flat.end(), r.begin(), r.end());
      const int K = (int)d[0].size();
      auto p = toma::compute_plan_with_destinations_cpu(x.view(), tt::lib_options(s), flat.data(), B, K);
      tt::check_plan_structure(*p);
      const ref::Plan want = ref::plan_with_destinations(x.values(), B, H * W, C, s, d);
      REQUIRE_EQ(p->K, want.K);
      const std::string what = tt::describe(s) + " with " + tt::str(counts) + " destinations per region";
      for (int b = 0; b < B; ++b) {
        CHECK_REL(tt::dense_M(*p, b), want.M[b], 1e-5, what + ": M");
        CHECK_REL(tt::dense_U(*p, b), want.U[b], 1e-5, what + ": U");
      }
    }
}

TEST_CASE(plan, adaptive_similarity_mode) {
  // ops/plan.h's adaptive count: per region the fewest greedy picks reaching coverage
  // f(S) / f(V) >= similarity, the largest over the batch. Weights follow tau as usual. The N-API
  // layer leaves ratio at 0 in this mode, so ratio 0 here must not turn the plan into the identity.
  int seed = 0;
  for (double sim : {0.6, 0.8, 0.95})
    for (double tau : {10.0, 1000.0, kInf})
      for (bool share : {false, true}) {
        tt::Rng rng(4100 + seed++);
        const int B = 2, H = 8, W = 9, C = 12, P = 3;
        ref::PlanSpec s = spec_of(H, W, ref::RegionKind::Tile, 4, 4, 0.0, tau, P, share);
        s.similarity = sim;
        const tt::Tensor x = tt::random_tensor(rng, DType::F32, B, P + H * W, C);
        const std::vector<double> xv = x.values();
        auto opts = tt::lib_options(s);
        opts.similarity = sim;
        auto p = toma::compute_plan_cpu(x.view(), opts);
        const ref::Plan want0 = ref::plan(xv, B, P + H * W, C, s);
        const std::string what = tt::describe(s) + ", similarity " + tt::str(sim);
        REQUIRE_EQ(p->K, want0.K);
        CHECK_MSG(std::vector<int>(p->k_offsets.begin(), p->k_offsets.end()) == want0.k_offsets,
                  what + ": counts " + tt::str(std::vector<int>(p->k_offsets.begin(), p->k_offsets.end())) + " vs " +
                      tt::str(want0.k_offsets));
        CHECK_LT(p->K, p->N);
        tt::check_plan_structure(*p);
        const ref::Plan want = tt::reconcile(*p, want0, xv, P + H * W, C, s);
        for (int b = 0; b < B; ++b) {
          CHECK_REL(tt::dense_M(*p, b), want.M[b], 1e-5, what + ": M");
          CHECK_REL(tt::dense_U(*p, b), want.U[b], 1e-5, what + ": U");
        }
      }
}

TEST_CASE(plan, rejects_bad_options) {
  tt::Rng rng(2);
  const tt::Tensor x = tt::random_tensor(rng, DType::F32, 1, 3 + 16, 4);
  ref::PlanSpec s = spec_of(4, 4, ref::RegionKind::Tile, 2, 2, 0.5, 1000, 3, false);
  CHECK_NOTHROW(toma::compute_plan_cpu(x.view(), tt::lib_options(s)));
  for (double r : {-0.01, 1.0, 2.0, std::nan(""), kInf, -kInf}) {
    ref::PlanSpec b = s;
    b.ratio = r;
    CHECK_THROWS(toma::compute_plan_cpu(x.view(), tt::lib_options(b)), toma::ArgError);
  }
  for (double tau : {0.0, -1.0, std::nan(""), -kInf}) {
    ref::PlanSpec b = s;
    b.tau = tau;
    CHECK_THROWS(toma::compute_plan_cpu(x.view(), tt::lib_options(b)), toma::ArgError);
  }
  {
    ref::PlanSpec b = s;
    b.prefix = 2;  // T = 19 != 2 + 16
    CHECK_THROWS(toma::compute_plan_cpu(x.view(), tt::lib_options(b)), toma::ArgError);
    b.prefix = -1;
    CHECK_THROWS(toma::compute_plan_cpu(x.view(), tt::lib_options(b)), toma::ArgError);
  }
  {
    ref::PlanSpec b = s;
    b.H = 0;
    CHECK_THROWS(toma::compute_plan_cpu(x.view(), tt::lib_options(b)), toma::ArgError);
    b = s;
    b.region.th = 0;
    CHECK_THROWS(toma::compute_plan_cpu(x.view(), tt::lib_options(b)), toma::ArgError);
  }
}
