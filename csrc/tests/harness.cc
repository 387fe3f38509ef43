// main() of toma_tests: `toma_tests <suite> [case-substring]` runs the cases of one suite and
// exits non-zero when any check failed; `toma_tests --list` prints the suites and cases.
#include "tests/harness.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <map>

#include "tests/reference.h"

extern char** environ;

namespace tt {

namespace {

struct Case {
  std::string suite, name;
  CaseFn fn;
};

std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}

int g_failures = 0;
std::string g_current;

}  // namespace

int register_case(const char* suite, const char* name, CaseFn fn) {
  cases().push_back({suite, name, fn});
  return (int)cases().size();
}

void fail(const char* file, int line, const std::string& what) {
  ++g_failures;
  // Keep the log readable when a loop fails many times.
  if (g_failures <= 30) std::printf("  %s:%d: FAILED in %s: %s\n", file, line, g_current.c_str(), what.c_str());
  else if (g_failures == 31) std::printf("  (further failures of %s not printed)\n", g_current.c_str());
  std::fflush(stdout);
}

int failures() { return g_failures; }

void note(const std::string& what) {
  std::printf("  note (%s): %s\n", g_current.c_str(), what.c_str());
  std::fflush(stdout);
}

double rel_err(const std::vector<double>& out, const std::vector<double>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i]) || !std::isfinite(ref[i])) return std::numeric_limits<double>::infinity();
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

Tensor::Tensor(toma::DType dt, int b, int t, int c) : dtype(dt), B(b), T(t), C(c) {
  bytes.assign(numel() * toma::dtype_size(dt), 0);
}

void Tensor::set(size_t i, double v) {
  const float f = (float)v;
  switch (dtype) {
    case toma::DType::F32: std::memcpy(bytes.data() + 4 * i, &f, 4); break;
    case toma::DType::F16: {
      const uint16_t h = ref::f16_encode(f);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
      break;
    }
    default: {
      const uint16_t h = ref::bf16_encode(f);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
      break;
    }
  }
}

double Tensor::get(size_t i) const {
  if (dtype == toma::DType::F32) {
    float f;
    std::memcpy(&f, bytes.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, bytes.data() + 2 * i, 2);
  return dtype == toma::DType::F16 ? ref::f16_decode(h) : ref::bf16_decode(h);
}

std::vector<double> Tensor::values() const {
  std::vector<double> v(numel());
  for (size_t i = 0; i < v.size(); ++i) v[i] = get(i);
  return v;
}

Tensor random_tensor(Rng& rng, toma::DType dt, int B, int T, int C, double scale) {
  Tensor t(dt, B, T, C);
  for (size_t i = 0; i < t.numel(); ++i) t.set(i, rng.normal() * scale);
  return t;
}

Tensor poisoned_tensor(toma::DType dt, int B, int T, int C) {
  Tensor t(dt, B, T, C);
  for (size_t i = 0; i < t.numel(); ++i) t.set(i, std::numeric_limits<double>::quiet_NaN());
  return t;
}

static std::string g_self = "/proc/self/exe";

// Where this executable is: argv[0] resolved at start (falls back to /proc/self/exe).
static const std::string& self_path() { return g_self; }

int run_self(const std::vector<std::string>& args,
             const std::vector<std::pair<std::string, std::string>>& env) {
  std::string line = "---- child process: toma_tests";
  for (const auto& a : args) line += " " + a;
  for (const auto& kv : env) line += ", " + kv.first + "=" + kv.second;
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  // Everything the child needs is built before fork: only async-signal-safe calls after it.
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    bool replaced = false;
    for (const auto& kv : env)
      if (std::strncmp(*e, (kv.first + "=").c_str(), kv.first.size() + 1) == 0) replaced = true;
    if (!replaced) envs.push_back(*e);
  }
  for (const auto& kv : env) envs.push_back(kv.first + "=" + kv.second);
  envs.push_back("TOMA_TESTS_CHILD=1");
  std::vector<std::string> argv_s{"toma_tests"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (auto& s : argv_s) argv.push_back(&s[0]);
  argv.push_back(nullptr);
  for (auto& s : envs) envp.push_back(&s[0]);
  envp.push_back(nullptr);
  // The executable's own path, from main(): under valgrind /proc/self/exe names valgrind's tool,
  // which cannot be exec'd like that (the child then runs natively, outside valgrind).
  const std::string self = self_path();
  const pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    execve(self.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return 127;
  std::printf("---- end of child process\n");
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 127;
}

bool is_child() {
  const char* c = std::getenv("TOMA_TESTS_CHILD");
  return c && std::strcmp(c, "1") == 0;
}

std::vector<std::string> available_isas() {
  std::vector<std::string> v{"scalar"};
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) v.push_back("avx2");
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    v.push_back("avx512");
#endif
  return v;
}

}  // namespace tt

int main(int argc, char** argv) {
  using namespace tt;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (char* real = realpath(argv[0], nullptr)) {
    g_self = real;
    std::free(real);
  }
  std::map<std::string, int> per_suite;
  for (const auto& c : cases()) per_suite[c.suite]++;
  if (argc < 2 || std::strcmp(argv[1], "--list") == 0) {
    if (argc < 2) std::printf("usage: toma_tests <suite> [case-substring] | --list\n");
    for (const auto& s : per_suite) {
      std::printf("%s (%d cases):", s.first.c_str(), s.second);
      for (const auto& c : cases())
        if (c.suite == s.first) std::printf(" %s", c.name.c_str());
      std::printf("\n");
    }
    return argc < 2 ? 2 : 0;
  }
  const std::string suite = argv[1];
  const std::string filter = argc > 2 ? argv[2] : "";
  if (!per_suite.count(suite)) {
    std::printf("toma_tests: no suite named '%s' (try --list)\n", suite.c_str());
    return 2;
  }
  int ran = 0, failed_cases = 0;
  const auto t_suite = std::chrono::steady_clock::now();
  for (const auto& c : cases()) {
    if (c.suite != suite || (!filter.empty() && c.name.find(filter) == std::string::npos)) continue;
    g_current = suite + "." + c.name;
    g_failures = 0;
    std::printf("[ RUN  ] %s\n", g_current.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    try {
      c.fn();
    } catch (const RequireFailed&) {
    } catch (const std::exception& e) {
      fail("(case)", 0, std::string("unexpected exception: ") + e.what());
    } catch (...) {
      fail("(case)", 0, "unexpected non-standard exception");
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ++ran;
    if (g_failures) ++failed_cases;
    std::printf("[ %s ] %s (%.0f ms%s)\n", g_failures ? "FAIL" : " OK ", g_current.c_str(), ms,
                g_failures ? (", " + std::to_string(g_failures) + " failed checks").c_str() : "");
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_suite).count();
  if (ran == 0) {
    std::printf("toma_tests: no case of '%s' matches '%s'\n", suite.c_str(), filter.c_str());
    return 2;
  }
  std::printf("%s: %d cases, %d failed, %.2f s\n", suite.c_str(), ran, failed_cases, s);
  return failed_cases ? 1 : 0;
}
