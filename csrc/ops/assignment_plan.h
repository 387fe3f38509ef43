// Plans given by an explicit hard assignment, for the baselines measured on toma's own merge and
// unmerge ops: ToDo's 2x2 pooling, ToMeSD's bipartite matching (tomesd_plan.h), any user scheme.
#pragma once
#include <cstdint>
#include <memory>

#include "ops/plan.h"

namespace toma {

// Token t of element b goes to merged index assign[b * N + t] in [0, K). Merge takes the mean of
// the tokens assigned to an index, unmerge copies it back. `representatives` ([B, K], may be null)
// names the token whose position each merged index takes (default: its lowest assigned token).
// Throws ArgError for an index out of range or a merged index no token is assigned to.
std::shared_ptr<Plan> assignment_plan_cpu(int B, int H, int W, int prefix, int K, const int32_t* assign,
                                          const int32_t* representatives);

}  // namespace toma
