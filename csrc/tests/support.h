// Glue between the code under test and the reference: option conversion, dense matrices from a
// plan's sparse weights, and SPEC 9's destination rule (exact, or f(S) within 1e-5 on near-ties).
#pragma once
#include <string>
#include <vector>

#include "ops/plan.h"
#include "tests/harness.h"
#include "tests/reference.h"

namespace tt {

toma::RegionSpec lib_region(const ref::RegionSpec& r);
toma::PlanOptions lib_options(const ref::PlanSpec& s);
std::string describe(const ref::PlanSpec& s);

// Dense K x N merge matrix / N x K unmerge matrix of batch element b, from Plan::weights.
std::vector<double> dense_M(const toma::Plan& p, int b);
std::vector<double> dense_U(const toma::Plan& p, int b);

// Structural checks of a plan's CSR weights: pointers monotone, indices in range and inside the
// right region, weights finite and in [0, 1], merge rows and unmerge rows summing to 1.
void check_plan_structure(const toma::Plan& p);

// SPEC 9's rule for destinations [B, K] (flat) selected on x against the reference plan; true when
// all equal exactly (a legitimate near-tie difference is noted, anything else fails).
bool check_destinations(const std::vector<int32_t>& flat, int B, int K, const ref::Plan& r,
                        const std::vector<double>& x, int T, int C, const ref::PlanSpec& spec);

// Checks the plan's destinations against the reference (SPEC 9: equal, unless the reference's
// greedy met a near-tie in that region, then f(S) within 1e-5 relative). Returns the reference
// plan whose destinations are the plan's own: `r` itself when they all matched, else the reference
// weights recomputed on the plan's destinations, so later comparisons stay like for like.
// x: the values of the tensor the plan was computed on.
ref::Plan reconcile(const toma::Plan& p, const ref::Plan& r, const std::vector<double>& x, int T, int C,
                    const ref::PlanSpec& spec);

// The library's destinations of element b as a vector.
std::vector<int> lib_dest(const toma::Plan& p, int b);

}  // namespace tt
