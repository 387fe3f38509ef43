// A merge plan (SPEC sections 3-5): per batch element the destinations of every region and the
// merge/unmerge weights, stored sparsely so a global region costs O(N) memory, not O(N*K).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ops/regions.h"
#include "ops/tensor.h"

namespace toma {

struct PlanOptions {
  int H = 0, W = 0;
  double ratio = 0.5;
  RegionSpec region;
  double tau = 1000.0;  // +infinity selects the hard plan
  int prefix = 0;
  bool share_batch = false;
  // Adaptive mode when > 0: per region, the fewest destinations whose facility-location coverage
  // f(S) / f(V) reaches this value (the same count for every batch element); ratio is unused.
  double similarity = 0;
};

// Weights of one batch element. Merge rows are destinations j in [0, K): merged token j is
// sum over e in [mptr[j], mptr[j+1]) of mw[e] * x[P + midx[e]]. Unmerge rows are image tokens
// t in [0, N): x'[P + t] = sum over e in [uptr[t], uptr[t+1]) of uw[e] * y[P + uidx[e]].
struct PlanWeights {
  std::vector<int64_t> mptr;
  std::vector<int32_t> midx;
  std::vector<float> mw;
  std::vector<int64_t> uptr;
  std::vector<int32_t> uidx;
  std::vector<float> uw;
  // How many tokens each merged token stands for: sum_s A[j, s] (a count for hard plans). The
  // proportional attention option adds log(mass) to merged keys' scores.
  std::vector<float> mass;
  size_t bytes() const;
};

struct Plan {
  PlanOptions opts;
  int B = 0, P = 0, N = 0, K = 0;
  bool hard = false;
  Regions regions;
  std::vector<int32_t> k_offsets;  // region r owns merged tokens [k_offsets[r], k_offsets[r+1])
  std::vector<int32_t> dest;       // [B, K] image-token indices, region order, ascending inside
  std::vector<PlanWeights> weights;  // B entries
  size_t bytes() const;
};

// Softmax entries below this fraction of a source's largest weight are dropped from the sparse
// weights; their total effect is below 1e-12 relative, far under SPEC section 9's tolerances.
constexpr double kWeightCutoff = 1e-12;

// The option and shape checks every plan construction makes (both backends); ArgError (range).
void check_plan_options(ConstTokens x, const PlanOptions& opts);

// Selects destinations and computes weights (SPEC 4-5) on the image tokens of x.
std::shared_ptr<Plan> compute_plan_cpu(ConstTokens x, const PlanOptions& opts);

// Keeps the given destinations ([B, K], or [1, K] shared by every element) and computes the
// weights on x: the scheduler's weight-only recompute. The count per region is read from the
// destinations (so ratio and similarity are not used). Throws ArgError when they do not fit.
std::shared_ptr<Plan> compute_plan_with_destinations_cpu(ConstTokens x, const PlanOptions& opts,
                                                         const int32_t* dest, int dest_rows, int K);

// Whether dest ([rows, K]) lists, per row and region by region, at least one ascending token of
// each region, with the same count per region in every row; fills *counts or *why.
bool check_destinations(const Regions& R, const int32_t* dest, int rows, int K, std::vector<int>* counts,
                        std::string* why);

}  // namespace toma
