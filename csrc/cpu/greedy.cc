#include "ops/greedy.h"

#include <algorithm>
#include <queue>
#include <vector>

namespace toma {

namespace {

double gain_of(const float* S, int n, int c, const double* m) {
  // S is symmetric, so column c is row c: contiguous.
  const float* col = S + (size_t)c * n;
  double g = 0;
  for (int i = 0; i < n; ++i) {
    const double d = col[i] - m[i];
    g += d > 0 ? d : 0;
  }
  return g;
}

}  // namespace

int greedy_facility_location(const float* S, int n, int k, int32_t* picked, double* gains, double stop_at) {
  std::vector<double> m(n);
  std::vector<char> taken(n, 0);
  // First pick: the token with the largest total similarity (SPEC section 4).
  int j0 = 0;
  double best = -1e300;
  for (int j = 0; j < n; ++j) {
    const float* row = S + (size_t)j * n;
    double s = 0;
    for (int i = 0; i < n; ++i) s += row[i];
    if (s > best) best = s, j0 = j;
  }
  picked[0] = j0;
  taken[j0] = 1;
  if (gains) gains[0] = best;
  for (int i = 0; i < n; ++i) m[i] = S[(size_t)j0 * n + i];
  double f = best;
  if (k <= 1 || f >= stop_at) return 1;

  auto take = [&](int c, double g, int t) {
    f += g;
    picked[t] = c;
    taken[c] = 1;
    if (gains) gains[t] = g;
    const float* col = S + (size_t)c * n;
    for (int i = 0; i < n; ++i) m[i] = std::max(m[i], (double)col[i]);
  };

  if (n <= 64) {
    // All candidates' gains in one sweep over i: the inner loop runs over candidates c with
    // independent sums, so it vectorises, and each gain is still summed over i in order (the
    // same value gain_of gives).
    double g[64];
    for (int t = 1; t < k; ++t) {
      for (int c = 0; c < n; ++c) g[c] = 0;
      for (int i = 0; i < n; ++i) {
        const float* row = S + (size_t)i * n;  // S symmetric: row i holds s_ic for every c
        const double mi = m[i];
        for (int c = 0; c < n; ++c) {
          const double d = row[c] - mi;
          g[c] += d > 0 ? d : 0;
        }
      }
      int c_best = -1;
      double g_best = -1;
      for (int c = 0; c < n; ++c) {
        if (taken[c]) continue;
        if (g[c] > g_best) g_best = g[c], c_best = c;  // strict: ties keep the lowest index
      }
      take(c_best, g_best, t);
      if (f >= stop_at) return t + 1;
    }
    return k;
  }

  // Lazy greedy: gains only shrink as m grows, so a stale gain is an upper bound. A candidate
  // whose fresh gain beats every other bound (or ties it with a lower index) is the exact argmax.
  struct Entry {
    double bound;
    int idx;
  };
  auto worse = [](const Entry& a, const Entry& b) {
    return a.bound < b.bound || (a.bound == b.bound && a.idx > b.idx);
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  for (int c = 0; c < n; ++c)
    if (!taken[c]) heap.push({gain_of(S, n, c, m.data()), c});
  for (int t = 1; t < k; ++t) {
    for (;;) {
      const Entry top = heap.top();
      heap.pop();
      const double g = gain_of(S, n, top.idx, m.data());
      if (heap.empty() || g > heap.top().bound ||
          (g == heap.top().bound && top.idx < heap.top().idx)) {
        take(top.idx, g, t);
        break;
      }
      heap.push({g, top.idx});
    }
    if (f >= stop_at) return t + 1;
  }
  return k;
}

}  // namespace toma
