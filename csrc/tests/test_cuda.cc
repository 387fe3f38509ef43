// ops/device.h: the CUDA probe. Without a device the suite says so and passes; with one, the
// device-info fields must be coherent. (There are no CUDA ops yet; when they land, their checks
// against the CPU path belong here and must run whenever a device is present.)
#include <cstdio>
#include <string>

#include "ops/device.h"
#include "tests/harness.h"

TEST_CASE(cuda, device_info_is_coherent) {
  const toma::DeviceInfo& d = toma::cuda_device_info();
  CHECK(&d == &toma::cuda_device_info());  // probed once, cached
#if defined(TOMA_WITH_CUDA)
  CHECK_MSG(d.compiled, "built with TOMA_WITH_CUDA but DeviceInfo.compiled is false");
  CHECK_GT(d.runtime_version, 0);
#else
  CHECK_MSG(!d.compiled, "built without CUDA but DeviceInfo.compiled is true");
  CHECK(!d.available);
  CHECK_EQ(d.count, 0);
#endif
  if (!d.available) {
    std::printf("  no usable CUDA device: %s\n", d.reason.c_str());
    CHECK_MSG(!d.reason.empty(), "unavailable without a reason");
    // A device that answered but is too old still has a name and capability; otherwise none.
    if (d.count == 0) {
      CHECK(d.name.empty());
      CHECK_EQ(d.memory, 0u);
    } else {
      CHECK(!d.name.empty());
      CHECK_LT(d.cc_major, 8);
    }
    return;
  }
  std::printf("  CUDA device: %s, compute capability %d.%d, %.1f GiB, %d device(s), driver %d, runtime %d\n",
              d.name.c_str(), d.cc_major, d.cc_minor, d.memory / 1073741824.0, d.count, d.driver_version,
              d.runtime_version);
  CHECK(d.compiled);
  CHECK_GE(d.count, 1);
  CHECK(!d.name.empty());
  CHECK_GE(d.cc_major, 8);
  CHECK(d.cc_minor >= 0 && d.cc_minor < 10);
  CHECK_GT(d.memory, (size_t)1 << 30);
  CHECK_GT(d.driver_version, 0);
  CHECK_GT(d.runtime_version, 0);
  // A driver of an older major version than the runtime reports cudaErrorInsufficientDriver, not
  // a device (minor-version compatibility allows an older minor).
  CHECK_GE(d.driver_version / 1000, d.runtime_version / 1000);
}
