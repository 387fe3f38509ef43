// A random plan in DevicePlan's layout for the fused-kernel tests (emu_flash, emu_sm90).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

struct HostPlan {
  int B, P, N, K, R;
  std::vector<int32_t> tokens, offsets, k_off;
  std::vector<int64_t> a_off;
  int64_t a_total;
  std::vector<float> A, mass;
};

// Random regions (a permutation of the image tokens cut into pieces), per region k destinations
// (a spread of sizes up to maxk, some 0 when allow_zero), soft or one-hot columns with exact zeros.
inline HostPlan random_plan(std::mt19937& g, int B, int P, int N, int maxn, int maxk, bool hard, bool allow_zero) {
  HostPlan p;
  p.B = B; p.P = P; p.N = N;
  p.tokens.resize(N);
  std::iota(p.tokens.begin(), p.tokens.end(), 0);
  std::shuffle(p.tokens.begin(), p.tokens.end(), g);
  p.offsets = {0}; p.k_off = {0}; p.a_off = {0};
  std::uniform_int_distribution<int> un(1, maxn);
  int at = 0;
  while (at < N) {
    const int n = std::min(un(g), N - at);
    int k = std::uniform_int_distribution<int>(allow_zero ? 0 : 1, std::min(n, maxk))(g);
    if (k == 0 && !allow_zero) k = 1;
    // sorted inside a region, as the layout rules have it
    std::sort(p.tokens.begin() + at, p.tokens.begin() + at + n);
    at += n;
    p.offsets.push_back(at);
    p.k_off.push_back(p.k_off.back() + k);
    p.a_off.push_back(p.a_off.back() + (int64_t)k * n);
  }
  p.R = (int)p.offsets.size() - 1;
  p.K = p.k_off.back();
  p.a_total = p.a_off.back();
  p.A.assign((size_t)B * p.a_total, 0.f);
  p.mass.assign((size_t)B * p.K, 0.f);
  std::uniform_real_distribution<double> u(0, 1);
  for (int b = 0; b < B; ++b)
    for (int r = 0; r < p.R; ++r) {
      const int n = p.offsets[r + 1] - p.offsets[r], k = p.k_off[r + 1] - p.k_off[r];
      float* A = p.A.data() + (size_t)b * p.a_total + p.a_off[r];
      for (int s = 0; s < n; ++s) {
        if (k == 0) break;
        if (hard || s < k) {  // destination s (s < k) holds itself; hard columns one-hot
          const int d = s < k ? s : std::uniform_int_distribution<int>(0, k - 1)(g);
          A[(size_t)d * n + s] = 1.f;
          continue;
        }
        std::vector<double> e(k);
        double mx = -1e300, sum = 0;
        for (int d = 0; d < k; ++d) { e[d] = 4 * u(g); mx = std::max(mx, e[d]); }
        for (int d = 0; d < k; ++d) sum += (e[d] = std::exp(e[d] - mx));
        for (int d = 0; d < k; ++d) {
          const double w = e[d] / sum;
          A[(size_t)d * n + s] = w < 0.05 ? 0.f : (float)w;  // exact zeros, as the cutoff makes
        }
      }
      for (int d = 0; d < k; ++d) {
        double m = 0;
        for (int s = 0; s < n; ++s) m += A[(size_t)d * n + s];
        p.mass[(size_t)b * p.K + p.k_off[r] + d] = (float)m;
      }
    }
  return p;
}
