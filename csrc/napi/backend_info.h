#pragma once
#include <napi.h>

namespace toma {
// backendInfo() -> { cudaCompiled, cudaAvailable, device?, reason?, cpuIsa, threads, ... }
Napi::Value BackendInfo(const Napi::CallbackInfo& info);
}  // namespace toma
