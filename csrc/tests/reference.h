// The double-precision reference the suites check against, written from SPEC.md sections 2-6 and
// 9, independent of the code under test: it includes no toma header and shares no code with
// csrc/core, csrc/cpu or csrc/ops. Slow and simple on purpose (dense matrices, plain loops).
#pragma once
#include <cstdint>
#include <vector>

namespace ref {

// ---- element types (IEEE 754 binary16 and bfloat16, round to nearest even) ----------------------

double f16_decode(uint16_t h);
double bf16_decode(uint16_t h);
// Rounds a float32 value (given as float) to the nearest binary16 / bfloat16, ties to even;
// overflow gives infinity, NaN gives a quiet NaN of the same sign.
uint16_t f16_encode(float f);
uint16_t bf16_encode(float f);

// ---- regions (SPEC 2) ----------------------------------------------------------------------------

enum class RegionKind { Tile, Stripe, Global };
struct RegionSpec {
  RegionKind kind = RegionKind::Tile;
  int th = 4, tw = 4, rows = 1;
};
// Regions in row-major order, each the ascending list of its token indices t = r * W + c.
std::vector<std::vector<int>> regions(int H, int W, const RegionSpec& spec);

// ---- destination count (SPEC 3) ------------------------------------------------------------------

int destination_count(int n, double ratio);

// ---- greedy facility location (SPEC 4) -----------------------------------------------------------

struct GreedyResult {
  std::vector<int> picked;    // local indices in pick order
  std::vector<double> gains;  // gains[0] = sum_i s_{i, j0}; then each pick's gain
  // Over all steps, the smallest distance from the best score to a score not tied with it (ties:
  // within a few ulps, decided by the lowest index). +inf when no step had such a candidate. A
  // near-tie where this is tiny.
  double min_gap = 0;
};
// S: n x n row-major similarities (need not be symmetric: column j holds s_{., j}).
GreedyResult greedy(const std::vector<double>& S, int n, int k);
// f(S) = sum_i max_{j in set} s_ij.
double facility_value(const std::vector<double>& S, int n, const std::vector<int>& set);

// Unit rows u_i = x_i / max(||x_i||, 1e-6) and their cosine similarities.
std::vector<double> cosine_matrix(const std::vector<std::vector<double>>& rows);

// ---- plans (SPEC 3-5) ----------------------------------------------------------------------------

struct PlanSpec {
  int H = 0, W = 0;
  double ratio = 0.5;
  RegionSpec region;
  double tau = 1000;  // +inf: hard
  int prefix = 0;
  bool share_batch = false;
  // Adaptive count (toma's extension, ops/plan.h): when > 0, per region the fewest greedy picks
  // whose coverage f(S) / f(V) reaches it, the largest count over the batch; ratio unused.
  double similarity = 0;
};

struct Plan {
  int B = 0, P = 0, N = 0, K = 0;
  std::vector<std::vector<int>> regions;
  std::vector<int> k_offsets;           // region r owns merged tokens [k_offsets[r], k_offsets[r+1])
  std::vector<std::vector<int>> dest;   // [B][K]: image-token indices
  std::vector<std::vector<double>> M;   // [B]: K x N row-major
  std::vector<std::vector<double>> U;   // [B]: N x K row-major
  // [B][region]: the greedy's smallest best-vs-runner-up gap while selecting that region
  // (SPEC 9's near-ties), +inf where destinations were given rather than selected.
  std::vector<std::vector<double>> gap;
};

// x: [B, T, C] row-major doubles with T = prefix + H * W.
Plan plan(const std::vector<double>& x, int B, int T, int C, const PlanSpec& spec);
// Weights only, for the given destinations ([B][K]); the count per region is read from them.
Plan plan_with_destinations(const std::vector<double>& x, int B, int T, int C, const PlanSpec& spec,
                            const std::vector<std::vector<int>>& dest);
// f(S) of a destination set of one region (token indices), on the reference similarities of x.
double region_value(const std::vector<double>& x, int b, int T, int C, int P,
                    const std::vector<int>& region_tokens, const std::vector<int>& dest_tokens);

// ---- ops (SPEC 5-6) ------------------------------------------------------------------------------

// [B, P+N, C] -> [B, P+K, C]
std::vector<double> merge(const Plan& p, const std::vector<double>& x, int C);
// [B, P+K, C] -> [B, P+N, C]
std::vector<double> unmerge(const Plan& p, const std::vector<double>& y, int C);
// Softmax attention per head; scale <= 0 means 1 / sqrt(C / heads). q: [B, Tq, C], k, v: [B, Tk, C].
std::vector<double> attention(const std::vector<double>& q, const std::vector<double>& k,
                              const std::vector<double>& v, int B, int Tq, int Tk, int C, int heads,
                              double scale);
// unmerge(attention(merge(q), merge(k), merge(v))); with merge_queries false,
// attention(q, merge(k), merge(v)).
std::vector<double> merge_attention_unmerge(const Plan& p, const std::vector<double>& q,
                                            const std::vector<double>& k,
                                            const std::vector<double>& v, int C, int heads,
                                            double scale, bool merge_queries);

}  // namespace ref
