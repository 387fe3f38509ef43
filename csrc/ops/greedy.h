// Greedy facility-location selection (SPEC section 4).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/plan.h"

namespace toma {

struct SelectParams {
  ConstTokens x;  // [B, P + N, C]; selection reads the image tokens only
  PlanOptions opts;
};

// Picks up to k of the n tokens of one region given their n x n similarity matrix (row-major).
// `picked` receives local indices in pick order; `gains`, when not null, the gain of each pick
// (gains[0] is f of the first pick alone). Ties go to the lowest local index (= token index).
// Stops early once f(S) >= stop_at (the adaptive mode); returns how many were picked.
int greedy_facility_location(const float* S, int n, int k, int32_t* picked, double* gains,
                             double stop_at = INFINITY);

// Destinations [B, K], region order, ascending inside a region; K is returned in *K.
std::vector<int32_t> select_destinations_cpu(const SelectParams& p, int* K);

}  // namespace toma
