// Steps of plan construction shared by greedy.cu (selection) and plan.cu (layout, weights).
#pragma once
#include <memory>
#include <vector>

#include "cuda/common.cuh"
#include "ops/cuda.h"

namespace toma {
namespace cuda {

// Regions up to this size select in one block with their similarities in shared memory.
constexpr int kSmallRegion = 64;

// 1 / max(||x[b, P + t]||, 1e-6) in float64 for every image token: inv [B, N].
void inverse_norms(ConstTokens x, int P, int N, double* inv);

// Greedy facility location (SPEC section 4) for batch elements [0, Bsel) into plan.dest
// (rows b < Bsel; sorted inside each region). plan's layout buffers must be filled.
// (inv is read only by the path of regions larger than kSmallRegion.)
void select_on_device(ConstTokens x, DevicePlan& plan, const double* inv, int Bsel);

// Regions of at most kSmallRegion tokens (plan.max_n), each batch element selecting its own
// destinations: selection, weights and masses of the whole plan in one kernel (dest, A and mass
// all written; A needs no memset). hard: one-hot weights (tau infinite, or the identity plan).
void plan_small_on_device(ConstTokens x, DevicePlan& plan, bool hard);

// A plan's layout and buffers (dest, A and mass allocated, not filled) for regions with `counts`
// destinations each. tile_on_device: the regions are those of o.region, made by the tiling kernel.
std::shared_ptr<DevicePlan> plan_layout(const PlanOptions& o, int B, const Regions& regions,
                                        const std::vector<int>& counts, bool tile_on_device);

}  // namespace cuda
}  // namespace toma
