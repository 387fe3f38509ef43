// Registration only: every function and class lives in the file named after it.
#include "napi/addon.h"

#include "napi/backend_info.h"
#include "napi/baseline_ops.h"
#include "napi/device_tensor.h"
#include "napi/ops.h"
#include "napi/plan_object.h"

namespace toma {

TomaAddon::TomaAddon(Napi::Env env, Napi::Object exports) {
  plan_ctor = PlanObject::Init(env, exports);
  device_tensor_ctor = DeviceTensorObject::Init(env, exports);
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo, "backendInfo"));
  exports.Set("toDevice", Napi::Function::New(env, ToDevice, "toDevice"));
  exports.Set("selectDestinations", Napi::Function::New(env, SelectDestinations, "selectDestinations"));
  exports.Set("computePlan", Napi::Function::New(env, ComputePlan, "computePlan"));
  exports.Set("merge", Napi::Function::New(env, Merge, "merge"));
  exports.Set("unmerge", Napi::Function::New(env, Unmerge, "unmerge"));
  exports.Set("attention", Napi::Function::New(env, Attention, "attention"));
  exports.Set("assignmentPlan", Napi::Function::New(env, AssignmentPlan, "assignmentPlan"));
  exports.Set("tomesdPlan", Napi::Function::New(env, TomesdPlan, "tomesdPlan"));
  exports.Set("mergeAttentionUnmerge", Napi::Function::New(env, MergeAttentionUnmerge, "mergeAttentionUnmerge"));
}

}  // namespace toma

using TomaAddonClass = toma::TomaAddon;
NODE_API_NAMED_ADDON(toma, TomaAddonClass)
