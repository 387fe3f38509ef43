// What the CUDA side can do on this machine. Plain data: safe to cache for the process.
#pragma once
#include <cstddef>
#include <string>

namespace toma {

struct DeviceInfo {
  bool compiled = false;   // CUDA kernels are in this binary
  bool available = false;  // a device answered
  int count = 0;
  int driver_version = 0, runtime_version = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  size_t memory = 0;
  size_t smem_optin = 0;   // shared memory a block may opt in to (bytes): it, not the capability, says what fits
  std::string reason;  // why not available
};

// Probed once per process; never throws, never aborts.
const DeviceInfo& cuda_device_info();

}  // namespace toma
