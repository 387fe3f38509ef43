#include "ops/assignment_plan.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"

namespace toma {

std::shared_ptr<Plan> assignment_plan_cpu(int B, int H, int W, int prefix, int K, const int32_t* assign,
                                          const int32_t* representatives) {
  if (H < 1 || W < 1) throw range_error("options.grid must hold two integers >= 1");
  const int N = H * W;
  if (K < 1 || K > N) throw range_error("options.K must be in [1, N = " + std::to_string(N) + "], got " + std::to_string(K));
  auto plan = std::make_shared<Plan>();
  plan->opts.H = H;
  plan->opts.W = W;
  plan->opts.prefix = prefix;
  plan->opts.ratio = 1.0 - (double)K / N;
  plan->opts.tau = INFINITY;
  plan->opts.region.kind = RegionSpec::Global;
  plan->B = B;
  plan->P = prefix;
  plan->N = N;
  plan->K = K;
  plan->hard = true;
  plan->regions = make_regions(H, W, plan->opts.region);
  plan->k_offsets = {0, K};
  plan->dest.assign((size_t)B * K, -1);
  plan->weights.resize(B);
  for (int b = 0; b < B; ++b) {
    const int32_t* a = assign + (size_t)b * N;
    PlanWeights& w = plan->weights[b];
    std::vector<int32_t> count(K, 0);
    for (int t = 0; t < N; ++t) {
      if (a[t] < 0 || a[t] >= K)
        throw range_error("assignment[" + std::to_string(b) + "][" + std::to_string(t) + "] = " + std::to_string(a[t]) +
                          " is outside [0, K = " + std::to_string(K) + ")");
      count[a[t]]++;
    }
    w.mptr.assign(K + 1, 0);
    for (int j = 0; j < K; ++j) {
      if (count[j] == 0)
        throw range_error("assignment: no token of batch element " + std::to_string(b) + " goes to merged index " +
                          std::to_string(j));
      w.mptr[j + 1] = w.mptr[j] + count[j];
    }
    w.midx.resize(N);
    w.mw.resize(N);
    std::vector<int64_t> fill(w.mptr.begin(), w.mptr.end() - 1);
    for (int t = 0; t < N; ++t) {  // ascending t: each row lists its tokens in order
      const int j = a[t];
      w.midx[fill[j]] = t;
      w.mw[fill[j]++] = 1.0f / (float)count[j];
      if (plan->dest[(size_t)b * K + j] < 0) plan->dest[(size_t)b * K + j] = t;
    }
    w.uptr.resize(N + 1);
    w.uidx.resize(N);
    w.uw.assign(N, 1.0f);
    w.mass.assign(count.begin(), count.end());
    for (int t = 0; t <= N; ++t) w.uptr[t] = t;
    for (int t = 0; t < N; ++t) w.uidx[t] = a[t];
    if (representatives) {
      for (int j = 0; j < K; ++j) {
        const int32_t r = representatives[(size_t)b * K + j];
        if (r < 0 || r >= N || a[r] != j)
          throw range_error("representatives[" + std::to_string(b) + "][" + std::to_string(j) + "] = " +
                            std::to_string(r) + " is not a token assigned to merged index " + std::to_string(j));
        plan->dest[(size_t)b * K + j] = r;
      }
    }
  }
  return plan;
}

}  // namespace toma
