// Double-precision reference, from SPEC.md only. See reference.h.
#include "tests/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace ref {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Round to nearest integer, ties to even, whatever the FPU rounding mode.
double rne(double v) {
  const double f = std::floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0 ? f : f + 1;
}

// Rounds |a| (finite, > 0) to `mbits` mantissa bits with exponent range [emin, emax];
// returns the biased bit pattern without sign, or all-ones exponent (infinity) on overflow.
uint32_t encode_mag(double a, int mbits, int emin, int emax, int bias) {
  const double sub_scale = std::ldexp(1.0, mbits - emin);  // subnormal spacing 2^(emin - mbits)
  if (a < std::ldexp(1.0, emin)) {
    // Subnormal (or zero): integer mantissa; reaching 2^mbits is the smallest normal, same bits.
    return (uint32_t)rne(a * sub_scale);
  }
  int e;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  int E = e - 1;
  double m = rne(std::ldexp(a, mbits - E));  // in [2^mbits, 2^(mbits+1)]
  if (m == std::ldexp(1.0, mbits + 1)) {
    m = std::ldexp(1.0, mbits);
    ++E;
  }
  if (E > emax) return (uint32_t)((2 * bias + 1) << mbits);  // infinity
  return ((uint32_t)(E + bias) << mbits) | (uint32_t)(m - std::ldexp(1.0, mbits));
}

double decode(uint16_t h, int mbits, int ebits, int bias) {
  const int emask = (1 << ebits) - 1;
  const bool neg = (h >> 15) & 1;
  const int e = (h >> mbits) & emask;
  const int m = h & ((1 << mbits) - 1);
  double v;
  if (e == emask) v = m ? std::numeric_limits<double>::quiet_NaN() : kInf;
  else if (e == 0) v = std::ldexp((double)m, 1 - bias - mbits);
  else v = std::ldexp((double)((1 << mbits) + m), e - bias - mbits);
  return neg ? -v : v;
}

}  // namespace

double f16_decode(uint16_t h) { return decode(h, 10, 5, 15); }
double bf16_decode(uint16_t h) { return decode(h, 7, 8, 127); }

uint16_t f16_encode(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (std::isnan(f)) return sign | 0x7e00;
  if (std::isinf(f)) return sign | 0x7c00;
  return sign | (uint16_t)encode_mag(std::fabs((double)f), 10, -14, 15, 15);
}

uint16_t bf16_encode(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (std::isnan(f)) return sign | 0x7fc0;
  if (std::isinf(f)) return sign | 0x7f80;
  return sign | (uint16_t)encode_mag(std::fabs((double)f), 7, -126, 127, 127);
}

// ---- regions -------------------------------------------------------------------------------------

std::vector<std::vector<int>> regions(int H, int W, const RegionSpec& spec) {
  // Region id of each token, from the definitions: tile (r / th, c / tw) row-major over
  // ceil(W / tw) tile columns; stripe r / rows; global 0.
  int count = 1;
  auto id = [&](int r, int c) {
    switch (spec.kind) {
      case RegionKind::Tile: return (r / spec.th) * ((W + spec.tw - 1) / spec.tw) + c / spec.tw;
      case RegionKind::Stripe: return r / spec.rows;
      default: return 0;
    }
  };
  if (spec.kind == RegionKind::Tile) count = ((H + spec.th - 1) / spec.th) * ((W + spec.tw - 1) / spec.tw);
  if (spec.kind == RegionKind::Stripe) count = (H + spec.rows - 1) / spec.rows;
  std::vector<std::vector<int>> out(count);
  for (int t = 0; t < H * W; ++t) out[id(t / W, t % W)].push_back(t);  // ascending by construction
  return out;
}

int destination_count(int n, double ratio) {
  const double k = std::floor((1 - ratio) * n + 0.5);
  if (k < 1) return 1;
  if (k > n) return n;
  return (int)k;
}

// ---- greedy --------------------------------------------------------------------------------------

GreedyResult greedy(const std::vector<double>& S, int n, int k) {
  GreedyResult g;
  g.min_gap = kInf;
  std::vector<char> taken(n, 0);
  std::vector<double> m(n);
  // SPEC 4: argmax, ties to the lowest index. Ties are ties of exact arithmetic: two tokens that are
  // each other's best match have equal gains, which float64 sums in different orders miss by a
  // few ulps; scores within `tol` of the best count as tied. min_gap records the closest score
  // outside that band (a near-tie, where float32 similarities may legitimately choose otherwise).
  auto pick = [&](const std::vector<double>& score) {
    double best = -kInf;
    for (int c = 0; c < n; ++c)
      if (!taken[c]) best = std::max(best, score[c]);
    const double tol = 1e-14 * (n + 1) * (1 + std::fabs(best));
    int win = -1;
    for (int c = 0; c < n; ++c) {
      if (taken[c]) continue;
      if (score[c] >= best - tol) {
        if (win < 0) win = c;
      } else {
        g.min_gap = std::min(g.min_gap, best - score[c]);
      }
    }
    return win;
  };
  std::vector<double> score(n, 0);
  for (int j = 0; j < n; ++j) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += S[(size_t)i * n + j];
    score[j] = s;
  }
  int j = pick(score);
  for (int t = 0; t < k; ++t) {
    if (t > 0) {
      for (int c = 0; c < n; ++c) {
        if (taken[c]) continue;
        double s = 0;
        for (int i = 0; i < n; ++i) s += std::max(S[(size_t)i * n + c] - m[i], 0.0);
        score[c] = s;
      }
      j = pick(score);
    }
    g.picked.push_back(j);
    g.gains.push_back(score[j]);
    taken[j] = 1;
    for (int i = 0; i < n; ++i) m[i] = t == 0 ? S[(size_t)i * n + j] : std::max(m[i], S[(size_t)i * n + j]);
  }
  return g;
}

double facility_value(const std::vector<double>& S, int n, const std::vector<int>& set) {
  double f = 0;
  for (int i = 0; i < n; ++i) {
    double m = -kInf;
    for (int j : set) m = std::max(m, S[(size_t)i * n + j]);
    f += m;
  }
  return f;
}

std::vector<double> cosine_matrix(const std::vector<std::vector<double>>& rows) {
  const int n = (int)rows.size();
  std::vector<std::vector<double>> u(rows);
  for (auto& r : u) {
    double s = 0;
    for (double v : r) s += v * v;
    const double d = std::max(std::sqrt(s), 1e-6);
    for (double& v : r) v /= d;
  }
  std::vector<double> S((size_t)n * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (size_t c = 0; c < u[i].size(); ++c) s += u[i][c] * u[j][c];
      S[(size_t)i * n + j] = s;
    }
  return S;
}

// ---- plans ---------------------------------------------------------------------------------------

namespace {

std::vector<std::vector<double>> region_rows(const std::vector<double>& x, int b, int T, int C, int P,
                                             const std::vector<int>& tokens) {
  std::vector<std::vector<double>> rows;
  for (int t : tokens) {
    const double* p = x.data() + ((size_t)b * T + P + t) * C;
    rows.emplace_back(p, p + C);
  }
  return rows;
}

Plan start(int B, int T, const PlanSpec& spec) {
  if (!(spec.ratio >= 0 && spec.ratio < 1)) throw std::invalid_argument("ratio");
  Plan p;
  p.B = B;
  p.P = spec.prefix;
  p.N = spec.H * spec.W;
  if (T != p.P + p.N) throw std::invalid_argument("T");
  p.regions = regions(spec.H, spec.W, spec.region);
  p.k_offsets.push_back(0);
  for (const auto& r : p.regions)
    p.k_offsets.push_back(p.k_offsets.back() + destination_count((int)r.size(), spec.ratio));
  p.K = p.k_offsets.back();
  p.gap.assign(B, std::vector<double>(p.regions.size(), kInf));
  return p;
}

void set_counts(Plan& p, const std::vector<int>& k) {
  p.k_offsets.assign(1, 0);
  for (int kr : k) p.k_offsets.push_back(p.k_offsets.back() + kr);
  p.K = p.k_offsets.back();
}

void weigh(Plan& p, const std::vector<double>& x, int T, int C, const PlanSpec& spec) {
  // SPEC 3: ratio 0 keeps every token and the plan is the identity, whatever tau (toma reads the
  // SPEC so; the hard rule gives exactly that, every destination keeping itself).
  const bool hard = std::isinf(spec.tau) || (spec.similarity == 0 && spec.ratio == 0 && p.K == p.N);
  p.M.assign(p.B, std::vector<double>((size_t)p.K * p.N, 0.0));
  p.U.assign(p.B, std::vector<double>((size_t)p.N * p.K, 0.0));
  for (int b = 0; b < p.B; ++b)
    for (size_t r = 0; r < p.regions.size(); ++r) {
      const auto& tok = p.regions[r];
      const int n = (int)tok.size(), k0 = p.k_offsets[r], k = p.k_offsets[r + 1] - k0;
      const std::vector<double> S = cosine_matrix(region_rows(x, b, T, C, p.P, tok));
      std::vector<int> dl(k);  // local index of each destination
      for (int d = 0; d < k; ++d) {
        auto it = std::find(tok.begin(), tok.end(), p.dest[b][k0 + d]);
        if (it == tok.end()) throw std::invalid_argument("destination outside its region");
        dl[d] = (int)(it - tok.begin());
      }
      std::vector<double> A((size_t)k * n, 0.0);  // A[d, s]
      for (int s = 0; s < n; ++s) {
        if (hard) {
          int best = -1;
          for (int d = 0; d < k; ++d)
            if (dl[d] == s) best = d;
          if (best < 0) {
            best = 0;
            for (int d = 1; d < k; ++d)
              if (S[(size_t)dl[d] * n + s] > S[(size_t)dl[best] * n + s]) best = d;
          }
          A[(size_t)best * n + s] = 1;
        } else {
          double mx = -kInf, sum = 0;
          for (int d = 0; d < k; ++d) mx = std::max(mx, spec.tau * S[(size_t)dl[d] * n + s]);
          for (int d = 0; d < k; ++d) sum += A[(size_t)d * n + s] = std::exp(spec.tau * S[(size_t)dl[d] * n + s] - mx);
          for (int d = 0; d < k; ++d) A[(size_t)d * n + s] /= sum;
        }
      }
      for (int d = 0; d < k; ++d) {
        double row = 0;
        for (int s = 0; s < n; ++s) row += A[(size_t)d * n + s];
        for (int s = 0; s < n; ++s) {
          p.M[b][(size_t)(k0 + d) * p.N + tok[s]] = A[(size_t)d * n + s] / row;
          p.U[b][(size_t)tok[s] * p.K + k0 + d] = A[(size_t)d * n + s];
        }
      }
    }
}

}  // namespace

Plan plan(const std::vector<double>& x, int B, int T, int C, const PlanSpec& spec) {
  Plan p = start(B, T, spec);
  p.dest.assign(B, std::vector<int>());
  if (spec.similarity > 0) {
    // Adaptive: each element's greedy sequence over the whole region, cut where the coverage
    // f(S) / f(V) first reaches `similarity`; the region keeps the largest cut of the batch.
    const int Bsel = spec.share_batch ? 1 : B, R = (int)p.regions.size();
    std::vector<std::vector<GreedyResult>> seq(Bsel, std::vector<GreedyResult>(R));
    std::vector<int> k(R, 1);
    for (int b = 0; b < Bsel; ++b)
      for (int r = 0; r < R; ++r) {
        const auto& tok = p.regions[r];
        const int n = (int)tok.size();
        const std::vector<double> S = cosine_matrix(region_rows(x, b, T, C, p.P, tok));
        seq[b][r] = greedy(S, n, n);
        double fV = 0;
        for (int i = 0; i < n; ++i) {
          double m = -kInf;
          for (int j = 0; j < n; ++j) m = std::max(m, S[(size_t)i * n + j]);
          fV += m;
        }
        double f = 0;
        int cut = n;
        for (int t = 0; t < n; ++t) {
          f += seq[b][r].gains[t];
          if (f >= spec.similarity * fV - 1e-9 * std::fabs(fV)) {  // slack: similarity 1 is reachable
            cut = t + 1;
            break;
          }
        }
        k[r] = std::max(k[r], cut);
      }
    set_counts(p, k);
    for (int b = 0; b < B; ++b) {
      const int bs = spec.share_batch ? 0 : b;
      for (int r = 0; r < R; ++r) {
        std::vector<int> d;
        for (int t = 0; t < k[r]; ++t) d.push_back(p.regions[r][seq[bs][r].picked[t]]);
        std::sort(d.begin(), d.end());
        p.dest[b].insert(p.dest[b].end(), d.begin(), d.end());
        p.gap[b][r] = seq[bs][r].min_gap;
      }
    }
    weigh(p, x, T, C, spec);
    return p;
  }
  for (int b = 0; b < B; ++b) {
    if (spec.share_batch && b > 0) {
      p.dest[b] = p.dest[0];
      p.gap[b] = p.gap[0];
      continue;
    }
    for (size_t r = 0; r < p.regions.size(); ++r) {
      const auto& tok = p.regions[r];
      const int n = (int)tok.size(), k = p.k_offsets[r + 1] - p.k_offsets[r];
      const GreedyResult g = greedy(cosine_matrix(region_rows(x, b, T, C, p.P, tok)), n, k);
      std::vector<int> d;
      for (int j : g.picked) d.push_back(tok[j]);
      std::sort(d.begin(), d.end());
      p.dest[b].insert(p.dest[b].end(), d.begin(), d.end());
      p.gap[b][r] = g.min_gap;
    }
  }
  weigh(p, x, T, C, spec);
  return p;
}

Plan plan_with_destinations(const std::vector<double>& x, int B, int T, int C, const PlanSpec& spec,
                            const std::vector<std::vector<int>>& dest) {
  Plan p = start(B, T, spec);
  if ((int)dest.size() != B) throw std::invalid_argument("dest rows");
  // Count per region from the destinations (row 0; every row must agree).
  std::vector<int> region_of(p.N);
  for (size_t r = 0; r < p.regions.size(); ++r)
    for (int t : p.regions[r]) region_of[t] = (int)r;
  std::vector<int> k(p.regions.size(), 0);
  for (int t : dest[0]) k[region_of[t]]++;
  set_counts(p, k);
  for (const auto& d : dest)
    if ((int)d.size() != p.K) throw std::invalid_argument("dest K");
  p.dest = dest;
  weigh(p, x, T, C, spec);
  return p;
}

double region_value(const std::vector<double>& x, int b, int T, int C, int P,
                    const std::vector<int>& region_tokens, const std::vector<int>& dest_tokens) {
  std::vector<int> set;
  for (int t : dest_tokens) {
    auto it = std::find(region_tokens.begin(), region_tokens.end(), t);
    if (it == region_tokens.end()) return std::numeric_limits<double>::quiet_NaN();
    set.push_back((int)(it - region_tokens.begin()));
  }
  return facility_value(cosine_matrix(region_rows(x, b, T, C, P, region_tokens)), (int)region_tokens.size(), set);
}

// ---- ops -----------------------------------------------------------------------------------------

namespace {

// out[b, P + i] = sum_j W[i, j] in[b, P + j] (W: rows x cols per batch element), prefix copied.
std::vector<double> apply(const std::vector<std::vector<double>>& W, int rows, int cols, int B, int P,
                          const std::vector<double>& in, int C) {
  const int Tin = P + cols, Tout = P + rows;
  if (in.size() != (size_t)B * Tin * C) throw std::invalid_argument("apply: input size");
  std::vector<double> out((size_t)B * Tout * C, 0.0);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < P; ++t)
      for (int c = 0; c < C; ++c) out[((size_t)b * Tout + t) * C + c] = in[((size_t)b * Tin + t) * C + c];
    for (int i = 0; i < rows; ++i) {
      double* o = out.data() + ((size_t)b * Tout + P + i) * C;
      for (int j = 0; j < cols; ++j) {
        const double w = W[b][(size_t)i * cols + j];
        if (w == 0) continue;
        const double* s = in.data() + ((size_t)b * Tin + P + j) * C;
        for (int c = 0; c < C; ++c) o[c] += w * s[c];
      }
    }
  }
  return out;
}

}  // namespace

std::vector<double> merge(const Plan& p, const std::vector<double>& x, int C) {
  return apply(p.M, p.K, p.N, p.B, p.P, x, C);
}

std::vector<double> unmerge(const Plan& p, const std::vector<double>& y, int C) {
  return apply(p.U, p.N, p.K, p.B, p.P, y, C);
}

std::vector<double> attention(const std::vector<double>& q, const std::vector<double>& k,
                              const std::vector<double>& v, int B, int Tq, int Tk, int C, int heads,
                              double scale) {
  const int D = C / heads;
  if (scale <= 0) scale = 1.0 / std::sqrt((double)D);
  std::vector<double> out((size_t)B * Tq * C, 0.0), s(Tk);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < Tq; ++i) {
        const double* qi = q.data() + ((size_t)b * Tq + i) * C + h * D;
        double mx = -kInf;
        for (int j = 0; j < Tk; ++j) {
          const double* kj = k.data() + ((size_t)b * Tk + j) * C + h * D;
          double d = 0;
          for (int c = 0; c < D; ++c) d += qi[c] * kj[c];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < Tk; ++j) sum += s[j] = std::exp(s[j] - mx);
        double* o = out.data() + ((size_t)b * Tq + i) * C + h * D;
        for (int j = 0; j < Tk; ++j) {
          const double* vj = v.data() + ((size_t)b * Tk + j) * C + h * D;
          const double w = s[j] / sum;
          for (int c = 0; c < D; ++c) o[c] += w * vj[c];
        }
      }
  return out;
}

std::vector<double> merge_attention_unmerge(const Plan& p, const std::vector<double>& q,
                                            const std::vector<double>& k,
                                            const std::vector<double>& v, int C, int heads,
                                            double scale, bool merge_queries) {
  const int Tm = p.P + p.K, T = p.P + p.N;
  const std::vector<double> mk = merge(p, k, C), mv = merge(p, v, C);
  if (!merge_queries) return attention(q, mk, mv, p.B, T, Tm, C, heads, scale);
  const std::vector<double> mq = merge(p, q, C);
  return unmerge(p, attention(mq, mk, mv, p.B, Tm, Tm, C, heads, scale), C);
}

}  // namespace ref
