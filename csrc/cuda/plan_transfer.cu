// Host (CSR) <-> device (dense per region) plans. A host plan whose weights do not follow its
// regions (the ToMeSD and assignment baselines) is laid out as one global region. The download
// assembles the CSR exactly as the CPU path does (same entry order, same float64 row sums), so a
// plan made on the device reads back as the CPU would have stored the same weights.
#include <cmath>
#include <string>
#include <vector>

#include "cuda/plan_internal.cuh"

namespace toma {

namespace {

// Dense A [B, a_total] of `p` in the given layout, or false when some weight leaves its region.
bool dense_weights(const Plan& p, const Regions& R, const std::vector<int32_t>& k_offsets,
                   const std::vector<int64_t>& a_offsets, std::vector<float>* A) {
  const int N = p.N, nR = R.count();
  const int64_t a_total = a_offsets.back();
  std::vector<int32_t> region(N), slot(N);
  for (int r = 0; r < nR; ++r)
    for (int i = R.offsets[r]; i < R.offsets[r + 1]; ++i) region[R.tokens[i]] = r, slot[R.tokens[i]] = i - R.offsets[r];
  A->assign((size_t)p.B * a_total, 0.f);
  for (int b = 0; b < p.B; ++b) {
    const PlanWeights& w = p.weights[b];
    for (int t = 0; t < N; ++t) {
      const int r = region[t], n = R.size(r);
      for (int64_t e = w.uptr[t]; e < w.uptr[t + 1]; ++e) {
        const int d = w.uidx[e] - k_offsets[r];
        if (d < 0 || d >= k_offsets[r + 1] - k_offsets[r]) return false;
        (*A)[(size_t)b * a_total + a_offsets[r] + (size_t)d * n + slot[t]] = w.uw[e];
      }
    }
    // The device merges with A / mass: the plan's merge weights must be exactly that.
    for (int j = 0; j < p.K; ++j) {
      const int r = [&] {
        int lo = 0;
        while (k_offsets[lo + 1] <= j) ++lo;
        return lo;
      }();
      const int n = R.size(r), d = j - k_offsets[r];
      for (int64_t e = w.mptr[j]; e < w.mptr[j + 1]; ++e) {
        const int t = w.midx[e];
        if (region[t] != r) return false;
        const double want = (double)(*A)[(size_t)b * a_total + a_offsets[r] + (size_t)d * n + slot[t]] / w.mass[j];
        if (!(std::fabs(want - w.mw[e]) <= 1e-6 * std::fmax(1.0, std::fabs(want))))
          throw DeviceError("plan upload: merge weights are not the unmerge weights over the mass, which the CUDA "
                            "kernels require");
      }
    }
  }
  return true;
}

}  // namespace

std::shared_ptr<DevicePlan> upload_plan(const Plan& p) {
  const PlanOptions& o = p.opts;
  const Regions own = make_regions(o.H, o.W, o.region);
  Regions R = p.regions;
  bool structured = R.count() > 0 && (int)p.k_offsets.size() == R.count() + 1 && (int)R.tokens.size() == p.N;
  std::vector<int> counts;
  auto layout = [&](const Regions& regions, const std::vector<int>& c, std::vector<int32_t>* k_off,
                    std::vector<int64_t>* a_off) {
    k_off->assign(1, 0);
    a_off->assign(1, 0);
    for (int r = 0; r < regions.count(); ++r) {
      k_off->push_back(k_off->back() + c[r]);
      a_off->push_back(a_off->back() + (int64_t)c[r] * regions.size(r));
    }
  };
  std::vector<int32_t> k_off;
  std::vector<int64_t> a_off;
  std::vector<float> A;
  if (structured) {
    for (int r = 0; r < R.count(); ++r) counts.push_back(p.k_offsets[r + 1] - p.k_offsets[r]);
    layout(R, counts, &k_off, &a_off);
    structured = dense_weights(p, R, k_off, a_off, &A);
  }
  if (!structured) {
    RegionSpec global;
    global.kind = RegionSpec::Global;
    R = make_regions(o.H, o.W, global);
    counts = {p.K};
    layout(R, counts, &k_off, &a_off);
    if (!dense_weights(p, R, k_off, a_off, &A)) throw DeviceError("plan upload: weights outside the grid");
  }
  const bool tile = R.offsets == own.offsets && R.tokens == own.tokens;
  PlanOptions lo = o;
  if (!tile) lo.region.kind = RegionSpec::Global;
  const Regions lr = make_regions(o.H, o.W, lo.region);
  auto d = cuda::plan_layout(lo, p.B, R, counts, R.offsets == lr.offsets && R.tokens == lr.tokens);
  d->opts = o;
  d->hard = p.hard;
  cuda::copy_to_device(d->dest.data(), p.dest.data(), p.dest.size() * 4, "plan upload");
  cuda::copy_to_device(d->A.data(), A.data(), A.size() * 4, "plan upload");
  std::vector<float> mass((size_t)p.B * p.K);
  for (int b = 0; b < p.B; ++b) std::copy(p.weights[b].mass.begin(), p.weights[b].mass.end(), mass.begin() + (size_t)b * p.K);
  cuda::copy_to_device(d->mass.data(), mass.data(), mass.size() * 4, "plan upload");
  return d;
}

std::shared_ptr<Plan> download_plan(const DevicePlan& d) {
  auto p = std::make_shared<Plan>();
  p->opts = d.opts;
  p->B = d.B;
  p->P = d.P;
  p->N = d.N;
  p->K = d.K;
  p->hard = d.hard;
  p->regions = d.regions;
  p->k_offsets = d.k_offsets;
  p->dest.resize((size_t)d.B * d.K);
  cuda::copy_to_host(p->dest.data(), d.dest.data(), p->dest.size() * 4, "plan download");
  std::vector<float> A((size_t)d.B * d.a_total);
  cuda::copy_to_host(A.data(), d.A.data(), A.size() * 4, "plan download");
  const Regions& R = d.regions;
  const int K = d.K, N = d.N, nR = R.count();
  p->weights.assign(d.B, PlanWeights());
  for (int b = 0; b < d.B; ++b) {
    PlanWeights& W = p->weights[b];
    const float* Ab = A.data() + (size_t)b * d.a_total;
    W.mptr.assign(K + 1, 0);
    W.uptr.assign(N + 1, 0);
    std::vector<double> rowsum(K, 0.0);
    for (int r = 0; r < nR; ++r) {
      const int n = R.size(r), k = d.k_offsets[r + 1] - d.k_offsets[r];
      const int32_t* tok = R.tokens.data() + R.offsets[r];
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < k; ++j) {
          const float a = Ab[d.a_offsets[r] + (size_t)j * n + i];
          if (a == 0.f) continue;
          W.mptr[d.k_offsets[r] + j + 1]++;
          W.uptr[tok[i] + 1]++;
          rowsum[d.k_offsets[r] + j] += a;
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
      const int n = R.size(r), k = d.k_offsets[r + 1] - d.k_offsets[r];
      const int32_t* tok = R.tokens.data() + R.offsets[r];
      for (int i = 0; i < n; ++i) {
        int64_t u = W.uptr[tok[i]];
        for (int j = 0; j < k; ++j) {
          const float a = Ab[d.a_offsets[r] + (size_t)j * n + i];
          if (a == 0.f) continue;
          const int jg = d.k_offsets[r] + j;
          const int64_t m = mfill[jg]++;
          W.midx[m] = tok[i];
          W.mw[m] = (float)(a / rowsum[jg]);
          W.uidx[u] = jg;
          W.uw[u] = a;
          ++u;
        }
      }
    }
  }
  return p;
}

}  // namespace toma
