// The op entry points: check arguments on the JavaScript thread, then run the kernel in an
// OpWorker and resolve a Promise. Synchronous throws are turned into rejections by lib/.
#pragma once
#include <napi.h>

namespace toma {
Napi::Value SelectDestinations(const Napi::CallbackInfo& info);  // (x, options)
Napi::Value ComputePlan(const Napi::CallbackInfo& info);         // (x, options)
Napi::Value Merge(const Napi::CallbackInfo& info);               // (x, plan, options?)
Napi::Value Unmerge(const Napi::CallbackInfo& info);             // (y, plan, options?)
Napi::Value Attention(const Napi::CallbackInfo& info);           // (q, k, v, options)
Napi::Value MergeAttentionUnmerge(const Napi::CallbackInfo& info);  // (q, k, v, plan, options)
}  // namespace toma
