// Per-environment state of the addon (one per Node environment: main thread, each worker
// thread, each Jest realm). Nothing here is static, so several environments never share handles.
#pragma once
#include <napi.h>

namespace toma {

class TomaAddon : public Napi::Addon<TomaAddon> {
 public:
  TomaAddon(Napi::Env env, Napi::Object exports);
  Napi::FunctionReference plan_ctor;
  Napi::FunctionReference device_tensor_ctor;
};

inline TomaAddon& addon(Napi::Env env) { return *env.GetInstanceData<TomaAddon>(); }

}  // namespace toma
