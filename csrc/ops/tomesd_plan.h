// ToMeSD (Bolya & Hoffman 2023) as a plan: one destination per sy x sx cell (random position from
// a seed, or top-left), every other token a source matched to its most similar destination; the
// r = floor(ratio * N) best-matched sources merge into their destination by mean, the rest stay.
#pragma once
#include <cstdint>
#include <memory>

#include "ops/plan.h"

namespace toma {

struct TomesdOptions {
  int H = 0, W = 0, prefix = 0;
  double ratio = 0.5;
  int sx = 2, sy = 2;
  bool random = true;
  uint64_t seed = 0;
};

// Throws ArgError when ratio asks for more merges than there are sources (tomesd silently caps).
std::shared_ptr<Plan> tomesd_plan_cpu(ConstTokens x, const TomesdOptions& o);

// The most r sources ToMeSD can merge on this grid: N minus the number of cells.
int tomesd_max_merges(int H, int W, int sx, int sy);

}  // namespace toma
