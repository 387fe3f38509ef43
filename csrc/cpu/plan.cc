// Plan construction (SPEC sections 3-5): per (batch element, region), load the region's tokens,
// select destinations by greedy facility location, then compute the soft or hard weights.
#include "ops/plan.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/simd/kernels.h"
#include "ops/greedy.h"

namespace toma {

size_t PlanWeights::bytes() const {
  return mptr.size() * 8 + midx.size() * 4 + mw.size() * 4 + uptr.size() * 8 + uidx.size() * 4 +
         uw.size() * 4 + mass.size() * 4;
}

size_t Plan::bytes() const {
  size_t b = dest.size() * 4 + regions.tokens.size() * 4 + sizeof(Plan);
  for (const auto& w : weights) b += w.bytes();
  return b;
}

namespace {

// A region's tokens as float32 rows, with 1 / max(||x||, 1e-6) in float64.
struct RegionRows {
  int n = 0, C = 0;
  std::vector<float> X;          // converted rows (half inputs only)
  std::vector<const float*> rp;  // row pointers: into x itself for float32 inputs, else into X
  std::vector<double> inv;
  // Cosine similarities in float64 when selection computed them (small regions), so the weights
  // reuse them instead of computing the dot products again.
  std::vector<double> S;
  const float* row(int i) const { return rp[i]; }
};

// norms = false leaves inv to the caller (the Gram path reads the norms off its diagonal).
void load_region(ConstTokens x, int P, const Regions& R, int r, int b, RegionRows& out, bool norms = true) {
  const CpuKernels& K = cpu_kernels();
  const int n = R.size(r), C = x.C;
  out.n = n;
  out.C = C;
  out.rp.resize(n);
  out.inv.resize(n);
  if (x.dtype != DType::F32) out.X.resize((size_t)n * C);
  const int32_t* tok = R.tokens.data() + R.offsets[r];
  const size_t esz = dtype_size(x.dtype);
  for (int i = 0; i < n; ++i) {
    const char* src = static_cast<const char*>(x.data) + (((size_t)b * x.T + P + tok[i]) * C) * esz;
    if (x.dtype == DType::F32) {
      out.rp[i] = reinterpret_cast<const float*>(src);  // read in place: no copy of x
    } else {
      float* dst = out.X.data() + (size_t)i * C;
      to_f32(src, x.dtype, dst, C);
      out.rp[i] = dst;
    }
    if (norms) out.inv[i] = 1.0 / std::max(std::sqrt(K.dot_f64(out.rp[i], out.rp[i], C)), 1e-6);
  }
}

double cosine(const RegionRows& rr, int i, int j) {
  return cpu_kernels().dot_f64(rr.row(i), rr.row(j), rr.C) * rr.inv[i] * rr.inv[j];
}

constexpr int kKeepSimilarityUpTo = 1024;  // 8 MB of float64 similarities per region at most

// Small regions (the tiles) get their similarities from one float64 Gram matrix.
bool uses_gram(int n) { return cpu_kernels().gram_f64 != nullptr && n <= 64; }

// Sorted local indices of the region's destinations: k of them, or with coverage > 0 the fewest
// (at most k) whose facility-location coverage f(S) / f(V) reaches it.
std::vector<int32_t> select_in_region(RegionRows& rr, int k, double coverage) {
  const int n = rr.n;
  const bool keep = n <= kKeepSimilarityUpTo;
  std::vector<float> S((size_t)n * n);
  if (keep) rr.S.assign((size_t)n * n, 0.0);
  const CpuKernels& K = cpu_kernels();
  if (uses_gram(n)) {
    // Small regions (the tiles): one register-blocked float64 Gram matrix instead of n^2 / 2
    // separate dot products.
    std::vector<double> G((size_t)n * n);
    K.gram_f64(rr.rp.data(), n, rr.C, G.data());
    for (int i = 0; i < n; ++i) rr.inv[i] = 1.0 / std::max(std::sqrt(G[(size_t)i * n + i]), 1e-6);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        const double c = G[(size_t)i * n + j] * rr.inv[i] * rr.inv[j];
        S[(size_t)i * n + j] = (float)c;
        if (keep) rr.S[(size_t)i * n + j] = c;
      }
  } else {
    auto rows = [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        for (int j = 0; j <= (int)i; ++j) {
          const double c = cosine(rr, (int)i, j);
          S[(size_t)i * n + j] = S[(size_t)j * n + i] = (float)c;
          if (keep) rr.S[(size_t)i * n + j] = rr.S[(size_t)j * n + i] = c;
        }
    };
    if (n >= 256) parallel_for(n, 16, rows);
    else rows(0, n);
  }
  double stop_at = INFINITY;
  if (coverage > 0) {
    double fV = 0;  // f(V) = sum_i max_j s_ij
    for (int i = 0; i < n; ++i) {
      float m = S[(size_t)i * n];
      for (int j = 1; j < n; ++j) m = std::max(m, S[(size_t)i * n + j]);
      fV += m;
    }
    stop_at = coverage * fV - 1e-9 * std::abs(fV);
  }
  std::vector<int32_t> picked(k);
  picked.resize(greedy_facility_location(S.data(), n, k, picked.data(), nullptr, stop_at));
  std::sort(picked.begin(), picked.end());
  return picked;
}

// Weights of a region by source: for local source i, entries [ptr[i], ptr[i+1]) of (j, a).
struct RegionWeights {
  std::vector<int32_t> ptr, j;
  std::vector<float> a;
};

double similarity(const RegionRows& rr, int i, int j) {
  return rr.S.empty() ? cosine(rr, i, j) : rr.S[(size_t)i * rr.n + j];
}

void weigh_region(const RegionRows& rr, const int32_t* dl, int k, double tau, bool hard,
                  RegionWeights& w) {
  const int n = rr.n;
  w.ptr.assign(1, 0);
  w.j.clear();
  w.a.clear();
  std::vector<double> logit(k);
  int next_dest = 0;  // dl is ascending: walk it to know whether source i is a destination
  for (int i = 0; i < n; ++i) {
    const bool is_dest = next_dest < k && dl[next_dest] == i;
    if (hard) {
      int best = 0;
      if (is_dest) {
        best = next_dest;  // destinations keep themselves, even when another is identical
      } else {
        double bs = -1e300;
        for (int d = 0; d < k; ++d) {
          const double s = similarity(rr, dl[d], i);
          if (s > bs) bs = s, best = d;
        }
      }
      w.j.push_back(best);
      w.a.push_back(1.f);
    } else {
      double mx = -1e300;
      for (int d = 0; d < k; ++d) {
        logit[d] = tau * similarity(rr, dl[d], i);
        mx = std::max(mx, logit[d]);
      }
      // Terms below exp(-40) = 4e-18 are under half an ulp of the sum (>= 1: the largest term is
      // 1) and far under the weight cutoff (1e-12): they are left at 0 instead of computed, which
      // with tau = 1000 skips most of the exps and moves the weights by at most one double ulp.
      double sum = 0;
      for (int d = 0; d < k; ++d) sum += (logit[d] = logit[d] - mx > -40.0 ? std::exp(logit[d] - mx) : 0.0);
      for (int d = 0; d < k; ++d)
        if (logit[d] >= kWeightCutoff) {
          w.j.push_back(d);
          w.a.push_back((float)(logit[d] / sum));
        }
    }
    if (is_dest) ++next_dest;
    w.ptr.push_back((int32_t)w.j.size());
  }
}


std::shared_ptr<Plan> start_plan(ConstTokens x, const PlanOptions& o) {
  check_plan_options(x, o);
  auto plan = std::make_shared<Plan>();
  plan->opts = o;
  plan->B = x.B;
  plan->P = o.prefix;
  plan->N = o.H * o.W;
  plan->hard = std::isinf(o.tau);
  plan->regions = make_regions(o.H, o.W, o.region);
  return plan;
}

// Weights of every (b, region) given plan->dest, then the CSR assembly per batch element.
void finish_plan(ConstTokens x, Plan& plan, std::vector<RegionRows>* loaded) {
  const Regions& R = plan.regions;
  const int nR = R.count(), B = plan.B, K = plan.K, N = plan.N;
  std::vector<RegionWeights> rw((size_t)B * nR);
  parallel_for((int64_t)B * nR, 1, [&](int64_t t0, int64_t t1) {
    RegionRows local;
    for (int64_t t = t0; t < t1; ++t) {
      const int b = (int)(t / nR), r = (int)(t % nR);
      const RegionRows* rr = nullptr;
      if (loaded && !(*loaded)[t].S.empty()) {
        rr = &(*loaded)[t];  // similarities kept from selection: no need to read x again
      } else {
        load_region(x, plan.P, R, r, b, local);
        rr = &local;
      }
      // Region-local destination indices: positions of the destinations in the region's list.
      const int k = plan.k_offsets[r + 1] - plan.k_offsets[r];
      std::vector<int32_t> dl(k);
      const int32_t* tok = R.tokens.data() + R.offsets[r];
      const int32_t* dg = plan.dest.data() + (size_t)b * K + plan.k_offsets[r];
      for (int d = 0; d < k; ++d)
        dl[d] = (int32_t)(std::lower_bound(tok, tok + rr->n, dg[d]) - tok);
      // SPEC 3: ratio 0 keeps every token and the plan is the identity, whatever tau. Every
      // token is then a destination, and the hard rule assigns each destination to itself.
      // Only then: the adaptive mode and given destinations leave ratio at 0 unused, K < N.
      const bool identity = plan.opts.ratio == 0 && plan.opts.similarity == 0 && K == N;
      weigh_region(*rr, dl.data(), k, plan.opts.tau, plan.hard || identity, rw[t]);
      if (loaded) (*loaded)[t] = RegionRows();  // free early
    }
  });
  plan.weights.assign(B, PlanWeights());
  parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      PlanWeights& W = plan.weights[b];
      W.mptr.assign(K + 1, 0);
      W.uptr.assign(N + 1, 0);
      std::vector<double> rowsum(K, 0.0);
      for (int r = 0; r < nR; ++r) {
        const RegionWeights& w = rw[(size_t)b * nR + r];
        const int32_t* tok = R.tokens.data() + R.offsets[r];
        for (int i = 0; i < R.size(r); ++i)
          for (int e = w.ptr[i]; e < w.ptr[i + 1]; ++e) {
            const int jg = plan.k_offsets[r] + w.j[e];
            W.mptr[jg + 1]++;
            W.uptr[tok[i] + 1]++;
            rowsum[jg] += w.a[e];
          }
      }
      W.mass.assign(rowsum.begin(), rowsum.end());
      for (int j = 0; j < K; ++j) W.mptr[j + 1] += W.mptr[j];
      for (int t = 0; t < N; ++t) W.uptr[t + 1] += W.uptr[t];
      W.midx.resize(W.mptr[K]);
      W.mw.resize(W.mptr[K]);
      W.uidx.resize(W.uptr[N]);
      W.uw.resize(W.uptr[N]);
      std::vector<int64_t> mfill(W.mptr.begin(), W.mptr.end() - 1);
      for (int r = 0; r < nR; ++r) {
        const RegionWeights& w = rw[(size_t)b * nR + r];
        const int32_t* tok = R.tokens.data() + R.offsets[r];
        for (int i = 0; i < R.size(r); ++i) {
          int64_t u = W.uptr[tok[i]];
          for (int e = w.ptr[i]; e < w.ptr[i + 1]; ++e) {
            const int jg = plan.k_offsets[r] + w.j[e];
            const int64_t m = mfill[jg]++;
            W.midx[m] = tok[i];
            W.mw[m] = (float)(w.a[e] / rowsum[jg]);
            W.uidx[u] = jg;
            W.uw[u] = w.a[e];
            ++u;
          }
        }
      }
    }
  });
}

void set_counts(Plan& plan, const std::vector<int>& k) {
  plan.k_offsets.assign(1, 0);
  for (int kr : k) plan.k_offsets.push_back(plan.k_offsets.back() + kr);
  plan.K = plan.k_offsets.back();
}

std::vector<int> fixed_counts(const Regions& R, double ratio) {
  std::vector<int> k(R.count());
  for (int r = 0; r < R.count(); ++r) k[r] = destination_count(R.size(r), ratio);
  return k;
}

// Selects destinations into plan.dest (and sets K); keeps the loaded rows for weighing.
void select_into(ConstTokens x, Plan& plan, std::vector<RegionRows>* keep) {
  const Regions& R = plan.regions;
  const int nR = R.count();
  const int Bsel = plan.opts.share_batch ? 1 : plan.B;
  const double coverage = plan.opts.similarity;
  std::vector<int> kr = coverage > 0 ? std::vector<int>() : fixed_counts(R, plan.opts.ratio);
  std::vector<std::vector<int32_t>> picks((size_t)Bsel * nR);
  if (keep) keep->assign((size_t)plan.B * nR, RegionRows());
  // Rows are loaded into a per-thread scratch; only the small similarity matrix of a region is
  // kept for the weights (a copy of all of x would cost more in page faults than it saves).
  auto select = [&](int64_t t, int k, double cov, RegionRows& scratch) {
    const int b = (int)(t / nR), r = (int)(t % nR);
    load_region(x, plan.P, R, r, b, scratch, !uses_gram(R.size(r)));
    picks[t] = select_in_region(scratch, k, cov);
    if (keep && !scratch.S.empty()) {
      (*keep)[t].n = scratch.n;
      (*keep)[t].C = scratch.C;
      (*keep)[t].S = std::move(scratch.S);
    }
    scratch.S.clear();
  };
  parallel_for((int64_t)Bsel * nR, 1, [&](int64_t t0, int64_t t1) {
    RegionRows scratch;
    for (int64_t t = t0; t < t1; ++t) {
      const int r = (int)(t % nR);
      select(t, coverage > 0 ? R.size(r) : kr[r], coverage, scratch);
    }
  });
  if (coverage > 0) {
    // One count per region for the whole batch: the largest any element needed. Greedy picks are
    // a sequence, so an element that stopped earlier continues its own sequence to that count.
    kr.assign(nR, 1);
    for (int64_t t = 0; t < (int64_t)Bsel * nR; ++t) kr[t % nR] = std::max(kr[t % nR], (int)picks[t].size());
    parallel_for((int64_t)Bsel * nR, 1, [&](int64_t t0, int64_t t1) {
      RegionRows scratch;
      for (int64_t t = t0; t < t1; ++t)
        if ((int)picks[t].size() < kr[t % nR]) select(t, kr[t % nR], 0, scratch);
    });
  }
  set_counts(plan, kr);
  const int K = plan.K;
  plan.dest.assign((size_t)plan.B * K, 0);
  for (int64_t t = 0; t < (int64_t)Bsel * nR; ++t) {
    const int b = (int)(t / nR), r = (int)(t % nR);
    const int32_t* tok = R.tokens.data() + R.offsets[r];
    int32_t* out = plan.dest.data() + (size_t)b * K + plan.k_offsets[r];
    for (size_t d = 0; d < picks[t].size(); ++d) out[d] = tok[picks[t][d]];
  }
  for (int b = Bsel; b < plan.B; ++b)
    std::copy(plan.dest.begin(), plan.dest.begin() + K, plan.dest.begin() + (size_t)b * K);
}

}  // namespace

void check_plan_options(ConstTokens x, const PlanOptions& o) {
  if (!(o.similarity >= 0 && o.similarity <= 1))
    throw range_error("options.similarity must be in (0, 1], got " + std::to_string(o.similarity));
  if (!(o.ratio >= 0 && o.ratio < 1))
    throw range_error("options.ratio must be a finite number in [0, 1), got " + std::to_string(o.ratio));
  if (!(o.tau > 0))
    throw range_error("options.tau must be > 0 (Infinity for the hard plan), got " + std::to_string(o.tau));
  if (o.prefix < 0) throw range_error("options.prefix must be >= 0, got " + std::to_string(o.prefix));
  if (o.H < 1 || o.W < 1) throw range_error("options.grid must hold two integers >= 1");
  const long long N = (long long)o.H * o.W;
  if (x.T != o.prefix + N)
    throw range_error("x.shape[1] must be prefix + H * W = " + std::to_string(o.prefix + N) +
                      ", got " + std::to_string(x.T));
}

std::vector<int32_t> select_destinations_cpu(const SelectParams& p, int* K) {
  auto plan = start_plan(p.x, p.opts);
  select_into(p.x, *plan, nullptr);
  *K = plan->K;
  return std::move(plan->dest);
}

std::shared_ptr<Plan> compute_plan_cpu(ConstTokens x, const PlanOptions& opts) {
  auto plan = start_plan(x, opts);
  std::vector<RegionRows> keep;
  select_into(x, *plan, &keep);
  finish_plan(x, *plan, &keep);
  return plan;
}

bool check_destinations(const Regions& R, const int32_t* dest, int rows, int K, std::vector<int>* counts,
                        std::string* why) {
  const int N = (int)R.tokens.size();
  std::vector<int32_t> region_of(N);
  for (int r = 0; r < R.count(); ++r)
    for (int i = R.offsets[r]; i < R.offsets[r + 1]; ++i) region_of[R.tokens[i]] = r;
  std::vector<int> first(R.count(), 0);
  for (int row = 0; row < rows; ++row) {
    // A row lists, region by region in order, at least one ascending token of each region.
    std::vector<int> c(R.count(), 0);
    int prev_region = -1;
    for (int d = 0; d < K; ++d) {
      const int32_t t = dest[(size_t)row * K + d];
      const int32_t prev = d ? dest[(size_t)row * K + d - 1] : -1;
      const int rg = t >= 0 && t < N ? region_of[t] : -1;
      const bool ok = rg >= 0 && rg >= prev_region && (rg > prev_region || t > prev);
      if (!ok) {
        *why = "destinations[" + std::to_string(row) + "][" + std::to_string(d) + "] = " + std::to_string(t) +
               " is not an image token after the previous one in region order (tokens ascending inside each region)";
        return false;
      }
      prev_region = rg;
      c[rg]++;
    }
    for (int r = 0; r < R.count(); ++r)
      if (c[r] == 0) {
        *why = "destinations row " + std::to_string(row) + " has no token of region " + std::to_string(r) +
               " (every region keeps at least one)";
        return false;
      }
    if (row == 0) *counts = c;
    else if (c != *counts) {
      *why = "destinations row " + std::to_string(row) + " keeps a different number of tokens per region than row 0";
      return false;
    }
  }
  return true;
}

std::shared_ptr<Plan> compute_plan_with_destinations_cpu(ConstTokens x, const PlanOptions& opts,
                                                         const int32_t* dest, int dest_rows, int K) {
  auto plan = start_plan(x, opts);
  if (dest_rows != 1 && dest_rows != plan->B)
    throw range_error("destinations must have 1 or B = " + std::to_string(plan->B) + " rows, got " +
                      std::to_string(dest_rows));
  // The counts per region come from the destinations themselves, so plans of the adaptive mode
  // can be re-weighed too.
  std::vector<int> counts;
  std::string why;
  if (!check_destinations(plan->regions, dest, dest_rows, K, &counts, &why)) throw range_error(why);
  set_counts(*plan, counts);
  plan->dest.resize((size_t)plan->B * K);
  for (int b = 0; b < plan->B; ++b)
    std::copy(dest + (size_t)(dest_rows == 1 ? 0 : b) * K, dest + (size_t)(dest_rows == 1 ? 0 : b) * K + K,
              plan->dest.begin() + (size_t)b * K);
  finish_plan(x, *plan, nullptr);
  return plan;
}

}  // namespace toma
