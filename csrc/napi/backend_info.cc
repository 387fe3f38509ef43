#include "napi/backend_info.h"

#include "core/thread_pool.h"
#include "cpu/simd/kernels.h"
#include "ops/device.h"

namespace toma {

Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const DeviceInfo& d = cuda_device_info();
  Napi::Object o = Napi::Object::New(env);
  o.Set("cudaCompiled", d.compiled);
  o.Set("cudaAvailable", d.available);
  if (d.available) {
    o.Set("device", d.name);
    o.Set("computeCapability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor));
    o.Set("deviceMemory", (double)d.memory);
  }
  if (!d.reason.empty()) o.Set("reason", d.reason);
  o.Set("driverVersion", d.driver_version);
  o.Set("runtimeVersion", d.runtime_version);
  // Ops with CUDA kernels in this build; the others run on the CPU under any backend.
  Napi::Array ops = Napi::Array::New(env);
#ifdef TOMA_WITH_CUDA
  const char* const cuda_ops[] = {"selectDestinations", "computePlan", "merge", "unmerge", "attention",
                                  "mergeAttentionUnmerge"};
  for (uint32_t i = 0; i < sizeof cuda_ops / sizeof cuda_ops[0]; ++i) ops.Set(i, cuda_ops[i]);
#endif
  o.Set("cudaOps", ops);
  o.Set("cpuIsa", cpu_kernels().isa);
  o.Set("threads", ThreadPool::instance().size());
  return o;
}

}  // namespace toma
