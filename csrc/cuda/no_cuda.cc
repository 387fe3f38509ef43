// Built instead of the .cu files when no CUDA compiler was found (binding.gyp, TOMA_CUDA=OFF).
#include "ops/device.h"

namespace toma {

const DeviceInfo& cuda_device_info() {
  static const DeviceInfo info = [] {
    DeviceInfo d;
    d.reason = "this build has no CUDA kernels (built without nvcc)";
    return d;
  }();
  return info;
}

}  // namespace toma
