// Errors raised below the N-API layer. The binding turns ArgError into a JavaScript TypeError or
// RangeError and any other std::exception into an Error, so no C++ exception reaches V8 unhandled.
#pragma once
#include <stdexcept>
#include <string>

namespace toma {

struct ArgError : std::runtime_error {
  enum Kind { Type, Range };
  Kind kind;
  ArgError(Kind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
};

inline ArgError type_error(const std::string& m) { return ArgError(ArgError::Type, m); }
inline ArgError range_error(const std::string& m) { return ArgError(ArgError::Range, m); }

}  // namespace toma

namespace toma {

// A failure on the device (a CUDA call or launch, out of device memory). The message names the op
// and the CUDA error; the binding raises it as a plain Error.
struct DeviceError : std::runtime_error {
  explicit DeviceError(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace toma
