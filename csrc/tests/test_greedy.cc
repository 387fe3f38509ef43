// ops/greedy.h (SPEC 4): greedy facility location against the reference on random similarity
// matrices (n <= 64 takes the exhaustive path, n > 64 the lazy one), lowest-index tie breaking on
// constructed ties, and select_destinations_cpu on random tokens.
#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "ops/greedy.h"
#include "tests/harness.h"
#include "tests/reference.h"
#include "tests/support.h"

using toma::DType;

namespace {

// Cosine similarities of n random Gaussian C-vectors, rounded to float32 as the plan stores them.
std::vector<float> random_cosines(tt::Rng& rng, int n, int C) {
  std::vector<std::vector<double>> rows(n, std::vector<double>(C));
  for (auto& r : rows)
    for (double& v : r) v = rng.normal();
  const std::vector<double> S = ref::cosine_matrix(rows);
  return std::vector<float>(S.begin(), S.end());
}

std::vector<float> random_symmetric(tt::Rng& rng, int n) {
  std::vector<float> S((size_t)n * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j <= i; ++j) S[(size_t)i * n + j] = S[(size_t)j * n + i] = (float)rng.normal();
  return S;
}

std::vector<int> ks_for(int n) {
  std::set<int> ks{1, 2, std::max(1, n / 4), std::max(1, n / 2), std::max(1, n - 1), n};
  std::vector<int> v;
  for (int k : ks)
    if (k <= n) v.push_back(k);
  return v;
}

// Runs the library on S and compares picks (order included) and gains with the reference run on
// the same float matrix; returns the picks.
std::vector<int> compare(const std::vector<float>& S, int n, int k, const std::string& what) {
  std::vector<int32_t> picked(k, -1);
  std::vector<double> gains(k, std::nan(""));
  toma::greedy_facility_location(S.data(), n, k, picked.data(), gains.data());
  const ref::GreedyResult want = ref::greedy(std::vector<double>(S.begin(), S.end()), n, k);
  const std::vector<int> got(picked.begin(), picked.end());
  // Same matrix: only the order of the float64 sums differs, so a gap this small is a real tie.
  const double tie = 1e-12 * n;
  if (got != want.picked) {
    if (want.min_gap < tie) {
      tt::note(what + ": exact-tie difference, comparing f(S)");
      const double fg = ref::facility_value(std::vector<double>(S.begin(), S.end()), n, got);
      const double fw = ref::facility_value(std::vector<double>(S.begin(), S.end()), n, want.picked);
      CHECK_MSG(std::fabs(fg - fw) <= 1e-9 * std::max(1.0, std::fabs(fw)), what);
    } else {
      CHECK_MSG(false, what + ": picks " + tt::str(got) + ", want " + tt::str(want.picked));
    }
  } else {
    for (int t = 0; t < k; ++t)
      if (!(std::fabs(gains[t] - want.gains[t]) <= 1e-9 * std::max(1.0, std::fabs(want.gains[t])))) {
        CHECK_MSG(false, what + ": gain " + tt::str(t) + " = " + tt::str(gains[t]) + ", want " + tt::str(want.gains[t]));
        break;
      }
  }
  std::set<int> uniq(got.begin(), got.end());
  CHECK_MSG((int)uniq.size() == k && *uniq.begin() >= 0 && *uniq.rbegin() < n, what + ": picks not distinct / in range");
  return got;
}

}  // namespace

TEST_CASE(greedy, random_cosine_matrices) {
  int cases = 0;
  for (int n : {1, 2, 3, 5, 8, 16, 31, 33, 63, 64, 65, 66, 100, 150, 256, 300})
    for (int C : {4, 16, 64})
      for (int k : ks_for(n)) {
        tt::Rng rng(1000 * n + 10 * C + k);
        compare(random_cosines(rng, n, C), n, k, "n=" + std::to_string(n) + " C=" + std::to_string(C) + " k=" + std::to_string(k));
        ++cases;
      }
  tt::note(std::to_string(cases) + " matrices");
}

TEST_CASE(greedy, random_symmetric_matrices_with_negative_entries) {
  for (int n : {2, 7, 40, 64, 65, 97, 200})
    for (int k : ks_for(n)) {
      tt::Rng rng(77 + 31 * n + k);
      compare(random_symmetric(rng, n), n, k, "symmetric n=" + std::to_string(n) + " k=" + std::to_string(k));
    }
}

TEST_CASE(greedy, gains_are_optional) {
  tt::Rng rng(3);
  for (int n : {20, 90}) {
    const std::vector<float> S = random_cosines(rng, n, 8);
    std::vector<int32_t> a(n / 2), b(n / 2);
    std::vector<double> g(n / 2);
    toma::greedy_facility_location(S.data(), n, n / 2, a.data(), g.data());
    toma::greedy_facility_location(S.data(), n, n / 2, b.data(), nullptr);
    CHECK_EQ(a, b);
  }
}

TEST_CASE(greedy, ties_go_to_the_lowest_index) {
  for (int n : {1, 5, 20, 64, 65, 100}) {
    const std::string sn = "n=" + std::to_string(n);
    std::vector<int> seq(n);
    for (int i = 0; i < n; ++i) seq[i] = i;
    // All similarities equal: every step is a tie, so the picks are 0, 1, 2, ...
    for (float v : {1.0f, 0.0f, -0.5f}) {
      std::vector<float> S((size_t)n * n, v);
      std::vector<int32_t> p(n);
      toma::greedy_facility_location(S.data(), n, n, p.data(), nullptr);
      CHECK_MSG(std::vector<int>(p.begin(), p.end()) == seq, sn + " constant " + tt::str(v) + ": " + tt::str(std::vector<int>(p.begin(), p.end())));
    }
    // Identity: every column sums to 1 and every later gain is 1.
    {
      std::vector<float> S((size_t)n * n, 0.f);
      for (int i = 0; i < n; ++i) S[(size_t)i * n + i] = 1.f;
      std::vector<int32_t> p(n);
      toma::greedy_facility_location(S.data(), n, n, p.data(), nullptr);
      CHECK_MSG(std::vector<int>(p.begin(), p.end()) == seq, sn + " identity");
    }
  }
  // Duplicated tokens: n tokens drawn from G distinct random vectors. Identical tokens have
  // identical rows, so every step ties between the copies: always the lowest copy, never twice.
  for (int n : {12, 40, 64, 65, 130})
    for (int G : {3, 7, 16}) {
      if (G > n) continue;
      tt::Rng rng(5 * n + G);
      std::vector<std::vector<double>> base(G, std::vector<double>(8));
      for (auto& r : base)
        for (double& v : r) v = rng.normal();
      std::vector<int> group(n);
      for (int i = 0; i < n; ++i) group[i] = rng.uniform_int(0, G - 1);
      for (int g = 0; g < G; ++g) group[(size_t)(g * 7) % n] = g;  // every group present (mostly)
      std::vector<std::vector<double>> rows;
      for (int i = 0; i < n; ++i) rows.push_back(base[group[i]]);
      const std::vector<double> Sd = ref::cosine_matrix(rows);
      const std::vector<float> S(Sd.begin(), Sd.end());
      std::set<int> present(group.begin(), group.end());
      const int k = (int)present.size();
      const std::string what = "duplicates n=" + std::to_string(n) + " G=" + std::to_string(G);
      const std::vector<int> got = compare(S, n, k, what);
      // One pick per group, each the group's first token.
      std::set<int> groups;
      for (int j : got) {
        groups.insert(group[j]);
        for (int i = 0; i < j; ++i)
          if (group[i] == group[j]) {
            CHECK_MSG(false, what + ": picked " + std::to_string(j) + " but " + std::to_string(i) + " is identical and lower");
            break;
          }
      }
      CHECK_MSG((int)groups.size() == k, what + ": a group picked twice");
      // Asking for every token: the copies follow in ascending order once all gains are 0.
      compare(S, n, n, what + " k=n");
    }
  // A constructed tie in the first pick between tokens 2 and 5 (same column sums), lower wins.
  {
    const int n = 6;
    std::vector<float> S((size_t)n * n, 0.1f);
    for (int i = 0; i < n; ++i) S[(size_t)i * n + i] = 1.f;
    for (int t : {2, 5})
      for (int i = 0; i < n; ++i)
        if (i != t) S[(size_t)i * n + t] = S[(size_t)t * n + i] = 0.5f;
    S[2 * n + 5] = S[5 * n + 2] = 0.5f;
    std::vector<int32_t> p(2);
    toma::greedy_facility_location(S.data(), n, 2, p.data(), nullptr);
    CHECK_EQ(p[0], 2);
  }
}

TEST_CASE(greedy, select_destinations_cpu) {
  struct Cfg {
    int B, H, W, C;
    ref::RegionKind kind;
    int a, b;
    double ratio;
    int prefix;
    bool share;
    DType dt;
  };
  const Cfg cfgs[] = {
      {2, 8, 8, 16, ref::RegionKind::Tile, 4, 4, 0.5, 0, false, DType::F32},
      {3, 7, 9, 8, ref::RegionKind::Tile, 4, 4, 0.75, 0, false, DType::F32},
      {2, 9, 13, 24, ref::RegionKind::Tile, 3, 5, 0.6, 7, false, DType::F32},
      {2, 10, 10, 16, ref::RegionKind::Global, 0, 0, 0.5, 0, false, DType::F32},    // n = 100: lazy
      {2, 12, 11, 12, ref::RegionKind::Stripe, 0, 6, 0.7, 3, false, DType::F32},    // n = 66: lazy
      {3, 8, 8, 16, ref::RegionKind::Tile, 4, 4, 0.5, 0, true, DType::F32},
      {2, 6, 10, 32, ref::RegionKind::Tile, 4, 4, 0.5, 0, false, DType::F16},
      {2, 6, 10, 32, ref::RegionKind::Tile, 8, 8, 0.25, 2, false, DType::BF16},
      {1, 5, 5, 8, ref::RegionKind::Tile, 2, 2, 0.0, 0, false, DType::F32},         // ratio 0: every token
      {1, 16, 16, 16, ref::RegionKind::Global, 0, 0, 0.9, 0, false, DType::F32},    // n = 256
  };
  int i = 0;
  for (const Cfg& c : cfgs) {
    tt::Rng rng(4242 + i++);
    ref::PlanSpec spec;
    spec.H = c.H;
    spec.W = c.W;
    spec.ratio = c.ratio;
    spec.region.kind = c.kind;
    spec.region.th = c.a;
    spec.region.tw = c.b;
    spec.region.rows = c.b;
    spec.prefix = c.prefix;
    spec.share_batch = c.share;
    const int T = c.prefix + c.H * c.W;
    const tt::Tensor x = tt::random_tensor(rng, c.dt, c.B, T, c.C);
    const std::vector<double> xv = x.values();
    toma::SelectParams sp;
    sp.x = x.view();
    sp.opts = tt::lib_options(spec);
    const toma::Regions R = toma::make_regions(c.H, c.W, sp.opts.region);
    int K = -1;
    const std::vector<int32_t> dest = toma::select_destinations_cpu(sp, &K);
    const ref::Plan want = ref::plan(xv, c.B, T, c.C, spec);
    REQUIRE_EQ(K, want.K);
    tt::check_destinations(dest, c.B, K, want, xv, T, c.C, spec);
    if (c.share)
      for (int b = 1; b < c.B; ++b)
        CHECK(std::equal(dest.begin(), dest.begin() + K, dest.begin() + (size_t)b * K));
    if (c.ratio == 0)  // every token, in region order
      for (int t = 0; t < K; ++t) CHECK_EQ(dest[t], R.tokens[t]);
  }
}

TEST_CASE(greedy, select_destinations_rejects_bad_options) {
  tt::Rng rng(1);
  const tt::Tensor x = tt::random_tensor(rng, DType::F32, 1, 16, 4);
  toma::SelectParams sp;
  sp.x = x.view();
  sp.opts.H = sp.opts.W = 4;
  int K = 0;
  for (double r : {-0.1, 1.0, 1.5, std::nan(""), (double)INFINITY}) {
    sp.opts.ratio = r;
    CHECK_THROWS(toma::select_destinations_cpu(sp, &K), toma::ArgError);
  }
  sp.opts.ratio = 0.5;
  sp.opts.W = 5;  // N != H * W
  CHECK_THROWS(toma::select_destinations_cpu(sp, &K), toma::ArgError);
}
