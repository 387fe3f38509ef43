#include "ops/tomesd_plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "cpu/similarity.h"
#include "ops/assignment_plan.h"

namespace toma {

int tomesd_max_merges(int H, int W, int sx, int sy) {
  const int cells = (H / sy) * (W / sx);
  return cells == 0 ? 0 : H * W - cells;  // no whole cell: no destination to merge into
}

std::shared_ptr<Plan> tomesd_plan_cpu(ConstTokens x, const TomesdOptions& o) {
  if (o.sx < 1 || o.sy < 1) throw range_error("options.sx and options.sy must be integers >= 1");
  if (!(o.ratio >= 0 && o.ratio < 1)) throw range_error("options.ratio must be a finite number in [0, 1)");
  const int H = o.H, W = o.W, N = H * W, P = o.prefix, C = x.C, B = x.B;
  if (x.T != P + N) throw range_error("x.shape[1] must be prefix + H * W = " + std::to_string(P + N));
  const int r = (int)std::floor(o.ratio * N);
  const int cap = tomesd_max_merges(H, W, o.sx, o.sy);
  if (r > cap)
    throw range_error("options.ratio = " + std::to_string(o.ratio) + " asks ToMeSD to merge " + std::to_string(r) +
                      " tokens, but a " + std::to_string(H) + "x" + std::to_string(W) + " grid with " +
                      std::to_string(o.sy) + "x" + std::to_string(o.sx) + " cells has only " + std::to_string(cap) +
                      " sources (tomesd caps this silently; toma does not)");
  // One destination per whole cell; leftover rows and columns are sources, as in tomesd.
  const int hs = H / o.sy, ws = W / o.sx;
  std::mt19937_64 rng(o.seed);
  std::vector<char> is_dst(N, 0);
  for (int cy = 0; cy < hs; ++cy)
    for (int cx = 0; cx < ws; ++cx) {
      const int k = o.random ? (int)(rng() % (uint64_t)(o.sx * o.sy)) : 0;
      is_dst[(cy * o.sy + k / o.sx) * W + cx * o.sx + k % o.sx] = 1;
    }
  std::vector<int32_t> dst, src;
  for (int t = 0; t < N; ++t) (is_dst[t] ? dst : src).push_back(t);
  const int nd = (int)dst.size(), ns = (int)src.size(), K = N - r;
  std::vector<int32_t> assign((size_t)B * N), reps((size_t)B * K);
  std::vector<float> U((size_t)N * C);
  std::vector<int32_t> best(ns);
  std::vector<float> score(ns);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < N; ++t)
      for (int c = 0; c < C; ++c) U[(size_t)t * C + c] = x.at(b, P + t, c);
    normalize_rows(U.data(), N, C);
    std::vector<float> S((size_t)ns * C), D((size_t)nd * C);
    for (int i = 0; i < ns; ++i) std::copy_n(U.data() + (size_t)src[i] * C, C, S.data() + (size_t)i * C);
    for (int i = 0; i < nd; ++i) std::copy_n(U.data() + (size_t)dst[i] * C, C, D.data() + (size_t)i * C);
    if (ns > 0 && nd > 0) best_match(S.data(), ns, D.data(), nd, C, best.data(), score.data());
    // The r best-matched sources merge (stable order: ties keep the lower token first).
    std::vector<int32_t> order(ns);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return score[a] > score[c]; });
    std::vector<char> merged(ns, 0);
    for (int i = 0; i < r; ++i) merged[order[i]] = 1;
    // Merged sequence: the unmerged sources in token order, then the destinations.
    int32_t* a = assign.data() + (size_t)b * N;
    int32_t* rep = reps.data() + (size_t)b * K;
    int j = 0;
    for (int i = 0; i < ns; ++i)
      if (!merged[i]) a[src[i]] = j, rep[j++] = src[i];
    const int base = j;
    for (int d = 0; d < nd; ++d) a[dst[d]] = base + d, rep[base + d] = dst[d];
    for (int i = 0; i < ns; ++i)
      if (merged[i]) a[src[i]] = base + best[i];
  }
  auto plan = assignment_plan_cpu(B, H, W, P, K, assign.data(), reps.data());
  plan->opts.ratio = o.ratio;
  return plan;
}

}  // namespace toma
