// A tiny test harness for toma_tests: cases registered per suite, CHECK macros that report
// file:line and keep going, REQUIRE macros that end the case, and helpers shared by the suites
// (seeded random data, typed tensor buffers, relative Frobenius error, re-running this executable
// with another environment). No external framework: these tests build offline.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "ops/tensor.h"

namespace tt {

// ---- registration and reporting ------------------------------------------------------------------

using CaseFn = void (*)();
int register_case(const char* suite, const char* name, CaseFn fn);

// Records a failed check of the running case (printed at once with file:line).
void fail(const char* file, int line, const std::string& what);
// Failures of the running case so far.
int failures();

struct RequireFailed {};  // thrown by REQUIRE: ends the case, already counted

// Prints a note under the running case (not a failure).
void note(const std::string& what);

template <class T>
std::string str(const T& v) {
  std::ostringstream o;
  o.precision(17);
  o << v;
  return o.str();
}
inline std::string str(const std::string& v) { return "\"" + v + "\""; }
inline std::string str(const char* v) { return "\"" + std::string(v) + "\""; }
inline std::string str(bool v) { return v ? "true" : "false"; }
inline std::string str(int8_t v) { return std::to_string(v); }
inline std::string str(uint8_t v) { return std::to_string(v); }
template <class T>
std::string str(const std::vector<T>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    if (i == 24 && v.size() > 32) {
      s += "... (" + std::to_string(v.size()) + " in all)";
      break;
    }
    s += str(v[i]);
  }
  return s + "]";
}

}  // namespace tt

#define TT_CAT2(a, b) a##b
#define TT_CAT(a, b) TT_CAT2(a, b)

// TEST_CASE(suite, name) { ... } — suite is the ctest name (argv[1]).
#define TEST_CASE(suite, name)                                                           \
  static void TT_CAT(tt_case_, TT_CAT(suite, TT_CAT(_, name)))();                        \
  static const int TT_CAT(tt_reg_, TT_CAT(suite, TT_CAT(_, name))) =                     \
      tt::register_case(#suite, #name, &TT_CAT(tt_case_, TT_CAT(suite, TT_CAT(_, name)))); \
  static void TT_CAT(tt_case_, TT_CAT(suite, TT_CAT(_, name)))()

#define CHECK(cond)                                                \
  do {                                                             \
    if (!(cond)) tt::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

#define CHECK_MSG(cond, msg)                                                                  \
  do {                                                                                        \
    if (!(cond)) tt::fail(__FILE__, __LINE__, std::string("CHECK(" #cond "): ") + (msg));     \
  } while (0)

#define TT_CHECK_OP(a, b, op)                                                                 \
  do {                                                                                        \
    const auto tt_a_ = (a); /* copies: (a) may refer into a temporary */                      \
    const auto tt_b_ = (b);                                                                   \
    if (!(tt_a_ op tt_b_))                                                                    \
      tt::fail(__FILE__, __LINE__,                                                            \
               std::string("CHECK(" #a " " #op " " #b "): ") + tt::str(tt_a_) + " vs " +      \
                   tt::str(tt_b_));                                                           \
  } while (0)

#define CHECK_EQ(a, b) TT_CHECK_OP(a, b, ==)
#define CHECK_NE(a, b) TT_CHECK_OP(a, b, !=)
#define CHECK_LT(a, b) TT_CHECK_OP(a, b, <)
#define CHECK_LE(a, b) TT_CHECK_OP(a, b, <=)
#define CHECK_GT(a, b) TT_CHECK_OP(a, b, >)
#define CHECK_GE(a, b) TT_CHECK_OP(a, b, >=)

// |a - b| <= tol, NaN fails.
#define CHECK_NEAR(a, b, tol)                                                                  \
  do {                                                                                         \
    const double tt_a_ = (double)(a), tt_b_ = (double)(b), tt_t_ = (double)(tol);              \
    if (!(std::fabs(tt_a_ - tt_b_) <= tt_t_))                                                  \
      tt::fail(__FILE__, __LINE__,                                                             \
               std::string("CHECK_NEAR(" #a ", " #b "): ") + tt::str(tt_a_) + " vs " +         \
                   tt::str(tt_b_) + ", tolerance " + tt::str(tt_t_));                          \
  } while (0)

// Relative Frobenius error of `out` against `ref` <= tol; NaN and infinity fail. `what` names it.
#define CHECK_REL(out, ref, tol, what)                                                         \
  do {                                                                                         \
    const double tt_e_ = tt::rel_err((out), (ref));                                            \
    if (!(tt_e_ <= (double)(tol)))                                                             \
      tt::fail(__FILE__, __LINE__,                                                             \
               std::string("relative error of ") + (what) + " = " + tt::str(tt_e_) +           \
                   " > " + tt::str((double)(tol)));                                            \
  } while (0)

// The expression throws an exception of type `type` (or derived).
#define CHECK_THROWS(expr, type)                                                              \
  do {                                                                                        \
    bool tt_ok_ = false;                                                                      \
    std::string tt_got_ = "nothing";                                                          \
    try {                                                                                     \
      (void)(expr);                                                                           \
    } catch (const type&) {                                                                   \
      tt_ok_ = true;                                                                          \
    } catch (const std::exception& tt_e_) {                                                   \
      tt_got_ = std::string("std::exception: ") + tt_e_.what();                               \
    } catch (...) {                                                                           \
      tt_got_ = "an unknown exception";                                                       \
    }                                                                                         \
    if (!tt_ok_)                                                                              \
      tt::fail(__FILE__, __LINE__, "CHECK_THROWS(" #expr ", " #type "): threw " + tt_got_);   \
  } while (0)

#define CHECK_NOTHROW(expr)                                                                   \
  do {                                                                                        \
    try {                                                                                     \
      (void)(expr);                                                                           \
    } catch (const std::exception& tt_e_) {                                                   \
      tt::fail(__FILE__, __LINE__, std::string("CHECK_NOTHROW(" #expr "): ") + tt_e_.what()); \
    }                                                                                         \
  } while (0)

// As CHECK, but ends the case on failure.
#define REQUIRE(cond)                                                                \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      tt::fail(__FILE__, __LINE__, "REQUIRE(" #cond ")");                            \
      throw tt::RequireFailed{};                                                     \
    }                                                                                \
  } while (0)

#define REQUIRE_EQ(a, b)                                                             \
  do {                                                                               \
    const int tt_before_ = tt::failures();                                           \
    CHECK_EQ(a, b);                                                                  \
    if (tt::failures() != tt_before_) throw tt::RequireFailed{};                     \
  } while (0)

namespace tt {

// ---- numbers -------------------------------------------------------------------------------------

// ||out - ref||_F / ||ref||_F (absolute when ref is all zero); +inf when any value is not finite
// or the sizes differ.
double rel_err(const std::vector<double>& out, const std::vector<double>& ref);

// Seeded Gaussian data; every case makes its own generator.
struct Rng {
  std::mt19937 gen;
  explicit Rng(uint32_t seed) : gen(seed) {}
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(gen); }
  int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(gen); }
  uint32_t bits() { return (uint32_t)gen(); }
};

// ---- typed [B, T, C] tensors ---------------------------------------------------------------------

// A buffer of B*T*C elements of one dtype. Values are set from doubles through the reference
// encoders (independent of core/dtype.h) and read back through the reference decoders.
struct Tensor {
  toma::DType dtype = toma::DType::F32;
  int B = 0, T = 0, C = 0;
  std::vector<uint8_t> bytes;

  Tensor() = default;
  Tensor(toma::DType dt, int b, int t, int c);
  size_t numel() const { return (size_t)B * T * C; }
  void set(size_t i, double v);  // rounds to the dtype (nearest even)
  double get(size_t i) const;    // exact
  std::vector<double> values() const;
  toma::ConstTokens view() const { return {bytes.data(), dtype, B, T, C}; }
  toma::Tokens mview() { return {bytes.data(), dtype, B, T, C}; }
};

// Gaussian values times `scale`, stored in `dt`.
Tensor random_tensor(Rng& rng, toma::DType dt, int B, int T, int C, double scale = 1.0);
// A tensor of NaN bit patterns (so anything not written by the op shows up).
Tensor poisoned_tensor(toma::DType dt, int B, int T, int C);

inline double dtype_tol(toma::DType dt, double f32_tol) {
  return dt == toma::DType::F32 ? f32_tol : dt == toma::DType::F16 ? 2e-3 : 1e-2;
}
// The loosest tolerance among the dtypes involved.
inline double dtype_tol(std::initializer_list<toma::DType> dts, double f32_tol) {
  double t = f32_tol;
  for (auto d : dts) t = std::max(t, dtype_tol(d, f32_tol));
  return t;
}

// ---- processes -----------------------------------------------------------------------------------

// Runs this executable again with `args` (argv[1..]) and the extra environment `env`; returns its
// exit status (or 128 + signal). Output goes to the same stdout/stderr.
int run_self(const std::vector<std::string>& args,
             const std::vector<std::pair<std::string, std::string>>& env);

// True when this process was started by run_self (set in the child's environment).
bool is_child();

// The ISAs this CPU can run, in the order scalar, avx2, avx512.
std::vector<std::string> available_isas();

}  // namespace tt
