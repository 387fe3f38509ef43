// Entry points of the plans behind the baselines (ToMeSD, ToDo) and user-defined assignments.
#pragma once
#include <napi.h>

namespace toma {
Napi::Value AssignmentPlan(const Napi::CallbackInfo& info);  // (assign: Int32Array [B*N], options)
Napi::Value TomesdPlan(const Napi::CallbackInfo& info);      // (x, options)
}  // namespace toma
