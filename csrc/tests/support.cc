#include "tests/support.h"

#include <cmath>

namespace tt {

toma::RegionSpec lib_region(const ref::RegionSpec& r) {
  toma::RegionSpec s;
  s.kind = r.kind == ref::RegionKind::Tile     ? toma::RegionSpec::Tile
           : r.kind == ref::RegionKind::Stripe ? toma::RegionSpec::Stripe
                                               : toma::RegionSpec::Global;
  s.th = r.th;
  s.tw = r.tw;
  s.rows = r.rows;
  return s;
}

toma::PlanOptions lib_options(const ref::PlanSpec& s) {
  toma::PlanOptions o;
  o.H = s.H;
  o.W = s.W;
  o.ratio = s.ratio;
  o.region = lib_region(s.region);
  o.tau = s.tau;
  o.prefix = s.prefix;
  o.share_batch = s.share_batch;
  return o;
}

std::string describe(const ref::PlanSpec& s) {
  std::string r = s.region.kind == ref::RegionKind::Tile
                      ? "tile " + std::to_string(s.region.th) + "x" + std::to_string(s.region.tw)
                  : s.region.kind == ref::RegionKind::Stripe ? "stripe " + std::to_string(s.region.rows)
                                                             : std::string("global");
  return "grid " + std::to_string(s.H) + "x" + std::to_string(s.W) + ", " + r + ", ratio " + str(s.ratio) +
         ", tau " + str(s.tau) + ", prefix " + std::to_string(s.prefix) +
         (s.share_batch ? ", shareBatch" : "");
}

std::vector<double> dense_M(const toma::Plan& p, int b) {
  std::vector<double> M((size_t)p.K * p.N, 0.0);
  const auto& w = p.weights[b];
  for (int j = 0; j < p.K; ++j)
    for (int64_t e = w.mptr[j]; e < w.mptr[j + 1]; ++e) M[(size_t)j * p.N + w.midx[e]] += w.mw[e];
  return M;
}

std::vector<double> dense_U(const toma::Plan& p, int b) {
  std::vector<double> U((size_t)p.N * p.K, 0.0);
  const auto& w = p.weights[b];
  for (int t = 0; t < p.N; ++t)
    for (int64_t e = w.uptr[t]; e < w.uptr[t + 1]; ++e) U[(size_t)t * p.K + w.uidx[e]] += w.uw[e];
  return U;
}

std::vector<int> lib_dest(const toma::Plan& p, int b) {
  return std::vector<int>(p.dest.begin() + (size_t)b * p.K, p.dest.begin() + (size_t)(b + 1) * p.K);
}

void check_plan_structure(const toma::Plan& p) {
  REQUIRE_EQ((int)p.weights.size(), p.B);
  REQUIRE_EQ(p.dest.size(), (size_t)p.B * p.K);
  REQUIRE_EQ((int)p.k_offsets.size(), p.regions.count() + 1);
  std::vector<int> region_of(p.N, -1);
  for (int r = 0; r < p.regions.count(); ++r)
    for (int i = p.regions.offsets[r]; i < p.regions.offsets[r + 1]; ++i) region_of[p.regions.tokens[i]] = r;
  std::vector<int> region_of_j(p.K, -1);
  for (int r = 0; r < p.regions.count(); ++r)
    for (int j = p.k_offsets[r]; j < p.k_offsets[r + 1]; ++j) region_of_j[j] = r;
  int bad = 0;
  for (int b = 0; b < p.B && bad < 5; ++b) {
    const auto& w = p.weights[b];
    REQUIRE_EQ(w.mptr.size(), (size_t)p.K + 1);
    REQUIRE_EQ(w.uptr.size(), (size_t)p.N + 1);
    REQUIRE_EQ(w.mptr[0], 0);
    REQUIRE_EQ(w.uptr[0], 0);
    REQUIRE_EQ(w.midx.size(), (size_t)w.mptr[p.K]);
    REQUIRE_EQ(w.mw.size(), (size_t)w.mptr[p.K]);
    REQUIRE_EQ(w.uidx.size(), (size_t)w.uptr[p.N]);
    REQUIRE_EQ(w.uw.size(), (size_t)w.uptr[p.N]);
    for (int j = 0; j < p.K; ++j) {
      CHECK_LE(w.mptr[j], w.mptr[j + 1]);
      double sum = 0;
      for (int64_t e = w.mptr[j]; e < w.mptr[j + 1]; ++e) {
        const int s = w.midx[e];
        if (!(s >= 0 && s < p.N && region_of[s] == region_of_j[j] && w.mw[e] >= 0 && w.mw[e] <= 1)) {
          if (++bad <= 5)
            fail(__FILE__, __LINE__, "merge entry b=" + str(b) + " j=" + str(j) + " idx=" + str(s) +
                                         " w=" + str(w.mw[e]) + " is out of range or region");
          continue;
        }
        sum += w.mw[e];
      }
      if (!(std::fabs(sum - 1) <= 1e-5) && ++bad <= 5)
        fail(__FILE__, __LINE__, "merge row b=" + str(b) + " j=" + str(j) + " sums to " + str(sum));
      // The destination itself must receive weight: a merged token is never empty.
      if (w.mptr[j] == w.mptr[j + 1] && ++bad <= 5)
        fail(__FILE__, __LINE__, "merge row b=" + str(b) + " j=" + str(j) + " is empty");
    }
    for (int t = 0; t < p.N; ++t) {
      CHECK_LE(w.uptr[t], w.uptr[t + 1]);
      double sum = 0;
      for (int64_t e = w.uptr[t]; e < w.uptr[t + 1]; ++e) {
        const int j = w.uidx[e];
        if (!(j >= 0 && j < p.K && region_of_j[j] == region_of[t] && w.uw[e] >= 0 && w.uw[e] <= 1)) {
          if (++bad <= 5)
            fail(__FILE__, __LINE__, "unmerge entry b=" + str(b) + " t=" + str(t) + " idx=" + str(j) +
                                         " w=" + str(w.uw[e]) + " is out of range or region");
          continue;
        }
        sum += w.uw[e];
      }
      if (!(std::fabs(sum - 1) <= 1e-5) && ++bad <= 5)
        fail(__FILE__, __LINE__, "unmerge row b=" + str(b) + " t=" + str(t) + " sums to " + str(sum));
    }
  }
}

bool check_destinations(const std::vector<int32_t>& flat, int B, int K, const ref::Plan& r,
                        const std::vector<double>& x, int T, int C, const ref::PlanSpec& spec) {
  REQUIRE_EQ(K, r.K);
  REQUIRE_EQ(B, r.B);
  REQUIRE_EQ(flat.size(), (size_t)B * K);
  bool all_equal = true;
  for (int b = 0; b < B; ++b) {
    const std::vector<int> row(flat.begin() + (size_t)b * K, flat.begin() + (size_t)(b + 1) * K);
    for (size_t reg = 0; reg < r.regions.size(); ++reg) {
      const int k0 = r.k_offsets[reg], k1 = r.k_offsets[reg + 1];
      const std::vector<int> got(row.begin() + k0, row.begin() + k1);
      const std::vector<int> want(r.dest[b].begin() + k0, r.dest[b].begin() + k1);
      if (got == want) continue;
      all_equal = false;
      const int n = (int)r.regions[reg].size();
      // Float32 similarities move each gain by at most n * 2 * 2^-25, a gap by twice that.
      const double near_tie = 1.2e-7 * n;
      const std::string where = "b=" + str(b) + " region " + str(reg) + " (" + describe(spec) + ")";
      if (!(r.gap[b][reg] < near_tie)) {
        fail(__FILE__, __LINE__, "destinations differ at " + where + " without a near-tie (reference gap " +
                                     str(r.gap[b][reg]) + "): got " + str(got) + ", want " + str(want));
        continue;
      }
      const int P = spec.prefix;
      const double fg = ref::region_value(x, b, T, C, P, r.regions[reg], got);
      const double fw = ref::region_value(x, b, T, C, P, r.regions[reg], want);
      note("near-tie (gap " + str(r.gap[b][reg]) + ") at " + where + ": destinations differ, f(S) " + str(fg) +
           " vs " + str(fw));
      if (!(std::fabs(fg - fw) <= 1e-5 * std::fabs(fw)))
        fail(__FILE__, __LINE__, "near-tie at " + where + " but f(S) differs by more than 1e-5 relative: " +
                                     str(fg) + " vs " + str(fw));
    }
  }
  return all_equal;
}

ref::Plan reconcile(const toma::Plan& p, const ref::Plan& r, const std::vector<double>& x, int T, int C,
                    const ref::PlanSpec& spec) {
  if (check_destinations(p.dest, p.B, p.K, r, x, T, C, spec)) return r;
  std::vector<std::vector<int>> dest(p.B);
  for (int b = 0; b < p.B; ++b) dest[b] = lib_dest(p, b);
  return ref::plan_with_destinations(x, p.B, T, C, spec, dest);
}

}  // namespace tt
