// Device probe. cudart is linked statically and loads libcuda itself at the first call, so a
// machine without a driver gets an error code here, never a loader failure.
#include <cuda_runtime.h>

#include <string>

#include "ops/device.h"

namespace toma {

namespace {

std::string version_string(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

DeviceInfo probe() {
  DeviceInfo d;
  d.compiled = true;
  cudaRuntimeGetVersion(&d.runtime_version);
  cudaDriverGetVersion(&d.driver_version);
  const cudaError_t e = cudaGetDeviceCount(&d.count);
  if (e != cudaSuccess || d.count == 0) {
    const std::string versions = " (driver " +
        (d.driver_version ? version_string(d.driver_version) : std::string("none")) +
        ", CUDA runtime " + version_string(d.runtime_version) + ")";
    if (e == cudaErrorInsufficientDriver && d.driver_version == 0)
      d.reason = "no CUDA driver (cudaErrorInsufficientDriver)" + versions;
    else if (e == cudaErrorInsufficientDriver)
      d.reason = "the CUDA driver is older than this build needs (cudaErrorInsufficientDriver)" + versions;
    else if (e == cudaErrorNoDevice || d.count == 0)
      d.reason = "no CUDA device (cudaErrorNoDevice)" + versions;
    else
      d.reason = std::string("CUDA unavailable: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + versions;
    cudaGetLastError();  // clear the sticky-free error so later probes start clean
    d.count = 0;
    return d;
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    d.reason = "cudaGetDeviceProperties failed";
    cudaGetLastError();
    return d;
  }
  d.available = true;
  d.name = prop.name;
  d.cc_major = prop.major;
  d.cc_minor = prop.minor;
  d.memory = prop.totalGlobalMem;
  d.smem_optin = prop.sharedMemPerBlockOptin;
  if (prop.major < 8) {
    d.available = false;
    d.reason = std::string(prop.name) + " has compute capability " + std::to_string(prop.major) + "." +
               std::to_string(prop.minor) + "; toma's CUDA kernels need 8.0 or newer";
  }
  return d;
}

}  // namespace

const DeviceInfo& cuda_device_info() {
  static const DeviceInfo info = probe();
  return info;
}

}  // namespace toma
