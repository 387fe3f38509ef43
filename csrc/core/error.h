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
