// The attention kernels of csrc/cuda/flash.cuh (tc_attention, f32_attention, tc_mau_attention),
// run from their real source on the CPU (gen_flash.py, wmma_emu.h) against float64 references:
//  - attention: softmax(q k^T * scale + bias) v, for every dtype path and head dim;
//  - fused merge-attention-unmerge: (1) against unmerge(attention(merge q, merge k, merge v)) in
//    float64 and (2) bit for bit against the unfused composition: merge of q in float (merge_kernel's
//    arithmetic), the emulated tc_attention, and unmerge in float (unmerge_kernel's arithmetic).
// usage: emu_flash SEED   (fixed cases, then a random sweep drawn from SEED)
#include "wmma_emu.h"
#include "flash_emu.h"
#include "random_plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

using namespace toma;
using namespace toma::flash;

static int fails = 0;

struct Buf {
  DType dt; std::vector<unsigned char> bytes; size_t off;
  std::vector<double> vals;
  void* ptr() { return bytes.data() + off * dtype_size(dt); }
};

Buf make(std::mt19937& g, DType dt, size_t n, double mag, size_t off) {
  Buf b{dt, std::vector<unsigned char>((n + off) * dtype_size(dt)), off, std::vector<double>(n)};
  std::normal_distribution<double> nd(0, 1);
  for (size_t i = 0; i < n; ++i) {
    const float f = (float)(nd(g) * mag);
    if (dt == DType::F32) { std::memcpy(b.bytes.data() + (off + i) * 4, &f, 4); b.vals[i] = f; }
    else if (dt == DType::F16) { __half h = __float2half_rn(f); std::memcpy(b.bytes.data() + (off + i) * 2, &h, 2); b.vals[i] = __half2float(h); }
    else { __nv_bfloat16 h = __float2bfloat16_rn(f); std::memcpy(b.bytes.data() + (off + i) * 2, &h, 2); b.vals[i] = __bfloat162float(h); }
  }
  return b;
}

double getv(const Buf& b, size_t i) {
  const unsigned char* p = b.bytes.data() + (b.off + i) * dtype_size(b.dt);
  if (b.dt == DType::F32) { float f; std::memcpy(&f, p, 4); return f; }
  if (b.dt == DType::F16) { __half h; std::memcpy(&h, p, 2); return __half2float(h); }
  __nv_bfloat16 h; std::memcpy(&h, p, 2); return __bfloat162float(h);
}

// Which tensor-core kernel serves head dims 64 and 128: 0 = WMMA (tc_attention), else an mma
// variant {MT, BN} (mma_attention), as attention.cu's mma_choice would pick it.
struct Variant { int mt, bn; const char* name; };
const Variant kVariants[] = {{0, 0, "wmma"}, {1, 64, "mma1x64"}, {2, 32, "mma2x32"}, {1, 64, "mma1x64s3"}};
constexpr int kNumVariants = 4;
int g_variant = 0;
bool has_variant(int D, int v) { return v == 0 || D == 128 || (D == 64 && v != 2); }
int tile_rows(int D) { return g_variant && has_variant(D, g_variant) ? 16 * kVariants[g_variant].mt * kWarps : kBM; }

template <class E, int D>
void launch_dense(const Args& a, int Tq, int H, int B) {
  const int rows = tile_rows(D);
  const dim3 grid((Tq + rows - 1) / rows, H, B);
  if constexpr (D == 64 || D == 128) {
    if (g_variant == 1) return emu::launch([&] { mma_attention<E, D, 64, 1>(a); }, grid, MmaLayout<D, 64, 1>::kBytes);
    // three buffers, and the folded exp2 where there is no bias (attention.cu's choice)
    if (g_variant == 3 && mma_fold(a))
      return emu::launch([&] { mma_attention<E, D, 64, 1, 3, true>(a); }, grid, MmaLayout<D, 64, 1, 3>::kBytes);
    if (g_variant == 3) return emu::launch([&] { mma_attention<E, D, 64, 1, 3, false>(a); }, grid, MmaLayout<D, 64, 1, 3>::kBytes);
    if constexpr (D == 128)
      if (g_variant == 2) return emu::launch([&] { mma_attention<E, D, 32, 2>(a); }, grid, MmaLayout<D, 32, 2>::kBytes);
  }
  emu::launch([&] { tc_attention<E, D>(a); }, grid, TcLayout<D>::kBytes);
}

template <class E, int D>
void launch_fused(const Args& a, const MauArgs& m, int G, int H, int B) {
  const dim3 grid(m.prefix_blocks + G, H, B);
  if constexpr (D == 64 || D == 128) {
    if (g_variant == 1) return emu::launch([&] { mma_mau_attention<E, D, 64, 1>(a, m); }, grid, MmaLayout<D, 64, 1>::kBytes);
    if (g_variant == 3 && mma_fold(a))
      return emu::launch([&] { mma_mau_attention<E, D, 64, 1, 3, true>(a, m); }, grid, MmaLayout<D, 64, 1, 3>::kBytes);
    if (g_variant == 3)
      return emu::launch([&] { mma_mau_attention<E, D, 64, 1, 3, false>(a, m); }, grid, MmaLayout<D, 64, 1, 3>::kBytes);
    if constexpr (D == 128)
      if (g_variant == 2)
        return emu::launch([&] { mma_mau_attention<E, D, 32, 2>(a, m); }, grid, MmaLayout<D, 32, 2>::kBytes);
  }
  emu::launch([&] { tc_mau_attention<E, D>(a, m); }, grid, TcLayout<D>::kBytes);
}

void run_attention_once(int B, int Tq, int Tk, int H, int D, DType qd, DType kd, DType vd, DType od, bool bias, double scale, size_t off, double mag, uint32_t seed);

// Tensor-core cases at head dims 64 and 128 run on every kernel variant.
void run_attention(int B, int Tq, int Tk, int H, int D, DType qd, DType kd, DType vd, DType od, bool bias, double scale, size_t off, double mag, uint32_t seed) {
  const bool tc = qd != DType::F32 && kd == qd && vd == qd && D % 16 == 0 && D <= 128;
  for (int v = 0; v < kNumVariants; ++v) {
    if (!has_variant(D, v) || (v && !tc)) continue;
    g_variant = v;
    run_attention_once(B, Tq, Tk, H, D, qd, kd, vd, od, bias, scale, off, mag, seed);
  }
  g_variant = 0;
}

void run_attention_once(int B, int Tq, int Tk, int H, int D, DType qd, DType kd, DType vd, DType od, bool bias, double scale, size_t off, double mag, uint32_t seed) {
  std::mt19937 g(seed);
  const int C = H * D;
  Buf q = make(g, qd, (size_t)B * Tq * C, mag, off), k = make(g, kd, (size_t)B * Tk * C, mag, off), v = make(g, vd, (size_t)B * Tk * C, 1, off);
  Buf o{od, std::vector<unsigned char>(((size_t)B * Tq * C + off) * dtype_size(od), 0xff), off, {}};
  std::vector<float> kb;
  std::normal_distribution<double> nd(0, 1);
  if (bias) { kb.resize((size_t)B * Tk); for (auto& x : kb) x = (float)(2 * nd(g)); }
  Args a;
  a.q = q.ptr(); a.k = k.ptr(); a.v = v.ptr(); a.out = o.ptr();
  a.qdt = (int)qd; a.kdt = (int)kd; a.vdt = (int)vd; a.odt = (int)od;
  a.Tq = Tq; a.Tk = Tk; a.C = C; a.D = D;
  const float sc = scale > 0 ? (float)scale : 1.0f / std::sqrt((float)D);
  a.sl2 = sc * kLog2e;
  a.bias = bias ? kb.data() : nullptr;
  auto al = [](const void* p) { return ((uintptr_t)p & 15) == 0; };
  a.vec = al(a.q) && al(a.k) && al(a.v);
  const bool tc = qd != DType::F32 && kd == qd && vd == qd && D % 16 == 0 && D <= 128;
  if (tc) {
#define CASE(d)                                                                              \
  case d:                                                                                      \
    if (qd == DType::F16) launch_dense<__half, d>(a, Tq, H, B);                                \
    else launch_dense<__nv_bfloat16, d>(a, Tq, H, B);                                          \
    break;
    switch (D) { CASE(16) CASE(32) CASE(48) CASE(64) CASE(80) CASE(96) CASE(112) CASE(128) default: std::abort(); }
  } else {
    dim3 grid((Tq + kFQ - 1) / kFQ, H, B);
    if (D <= 64) emu::launch([&] { f32_attention<2>(a); }, grid, f32_smem(D));
    else if (D <= 128) emu::launch([&] { f32_attention<4>(a); }, grid, f32_smem(D));
    else emu::launch([&] { f32_attention<8>(a); }, grid, f32_smem(D));
  }
  // reference
  double num = 0, den = 0; bool finite = true;
  std::vector<double> s(Tk);
  for (int b = 0; b < B; ++b) for (int h = 0; h < H; ++h) for (int i = 0; i < Tq; ++i) {
    double mx = -1e300;
    for (int j = 0; j < Tk; ++j) {
      double d = 0;
      for (int c = 0; c < D; ++c) d += q.vals[((size_t)b * Tq + i) * C + h * D + c] * k.vals[((size_t)b * Tk + j) * C + h * D + c];
      s[j] = d * sc + (bias ? kb[(size_t)b * Tk + j] : 0.0);
      mx = std::max(mx, s[j]);
    }
    double l = 0; for (int j = 0; j < Tk; ++j) { s[j] = std::exp(s[j] - mx); l += s[j]; }
    for (int c = 0; c < D; ++c) {
      double r = 0; for (int j = 0; j < Tk; ++j) r += s[j] * v.vals[((size_t)b * Tk + j) * C + h * D + c];
      r /= l;
      const double got = getv(o, ((size_t)b * Tq + i) * C + h * D + c);
      if (!std::isfinite(got)) finite = false;
      num += (got - r) * (got - r); den += r * r;
    }
  }
  // padding before the output untouched
  if (off) for (size_t i = 0; i < off * dtype_size(od); ++i) if (o.bytes[i] != 0xff) { finite = false; }
  const double err = finite ? std::sqrt(num / den) : INFINITY;
  auto tolof = [](DType d) { return d == DType::F32 ? 1e-4 : d == DType::F16 ? 2e-3 : 1e-2; };
  const double tol = std::max({tolof(qd), tolof(kd), tolof(vd), tolof(od)});
  const bool ok = err <= tol;
  if (!ok) ++fails;
  std::printf("%s %s B=%d Tq=%d Tk=%d H=%d D=%d %s/%s/%s->%s bias=%d off=%zu mag=%g err=%.3g tol=%.g\n", ok ? "ok  " : "FAIL", tc ? kVariants[g_variant].name : "f32", B, Tq, Tk, H, D,
              dtype_name(qd), dtype_name(kd), dtype_name(vd), dtype_name(od), bias, off, mag, err, tol);
}

template <class T> float tf(T h);
template <> float tf(__half h) { return __half2float(h); }
template <> float tf(__nv_bfloat16 h) { return __bfloat162float(h); }
template <class T> T ft(float f);
template <> __half ft(float f) { return __float2half_rn(f); }
template <> __nv_bfloat16 ft(float f) { return __float2bfloat16_rn(f); }

template <class E, int D>
void run_fused_once(int B, int P, int N, int H, int maxn, int maxk, bool hard, bool prop, bool allow_zero, DType od,
                    size_t qoff, size_t ooff, uint32_t seed);

// Fused cases at head dims 64 and 128 run on every kernel variant (fused and unfused alike).
template <class E, int D>
void run_fused(int B, int P, int N, int H, int maxn, int maxk, bool hard, bool prop, bool allow_zero, DType od, size_t qoff,
         size_t ooff, uint32_t seed) {
  for (int v = 0; v < kNumVariants; ++v) {
    if (!has_variant(D, v)) continue;
    g_variant = v;
    run_fused_once<E, D>(B, P, N, H, maxn, maxk, hard, prop, allow_zero, od, qoff, ooff, seed);
  }
  g_variant = 0;
}

template <class E, int D>
void run_fused_once(int B, int P, int N, int H, int maxn, int maxk, bool hard, bool prop, bool allow_zero, DType od,
                    size_t qoff, size_t ooff, uint32_t seed) {
  std::mt19937 g(seed);
  const HostPlan pl = random_plan(g, B, P, N, maxn, maxk, hard, allow_zero);
  const int C = H * D, T = P + N, Tm = P + pl.K;
  std::normal_distribution<double> nd(0, 1);
  auto mk = [&](size_t n, size_t off) {
    std::vector<E> v(n + off);
    for (size_t i = 0; i < n; ++i) v[off + i] = ft<E>((float)nd(g));
    return v;
  };
  std::vector<E> q = mk((size_t)B * T * C, qoff), k = mk((size_t)B * T * C, 0), v = mk((size_t)B * T * C, 0);
  const E* qp = q.data() + qoff;
  // merge in float with merge_kernel's arithmetic, rounded to T (as the device's merged k / v / q)
  auto merge_t = [&](const E* x) {
    std::vector<E> y((size_t)B * Tm * C);
    for (int b = 0; b < B; ++b) {
      for (int j = 0; j < P; ++j)
        for (int c = 0; c < C; ++c) y[((size_t)b * Tm + j) * C + c] = x[((size_t)b * T + j) * C + c];
      for (int r = 0; r < pl.R; ++r) {
        const int off = pl.offsets[r], n = pl.offsets[r + 1] - off;
        for (int j = pl.k_off[r]; j < pl.k_off[r + 1]; ++j) {
          const float* a = pl.A.data() + (size_t)b * pl.a_total + pl.a_off[r] + (size_t)(j - pl.k_off[r]) * n;
          const float m = pl.mass[(size_t)b * pl.K + j];
          for (int c = 0; c < C; ++c) {
            float acc = 0.f;
            for (int s = 0; s < n; ++s) {
              if (a[s] == 0.f) continue;
              const float wm = a[s] / m;
              acc += wm * tf(x[((size_t)b * T + P + pl.tokens[off + s]) * C + c]);
            }
            y[((size_t)b * Tm + P + j) * C + c] = ft<E>(acc);
          }
        }
      }
    }
    return y;
  };
  std::vector<E> mkv = merge_t(k.data()), mvv = merge_t(v.data());
  std::vector<float> bias;
  if (prop) {
    bias.assign((size_t)B * Tm, 0.f);
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < pl.K; ++j) bias[(size_t)b * Tm + P + j] = logf(fmaxf(pl.mass[(size_t)b * pl.K + j], 1e-30f));
  }
  const float sc = 1.0f / std::sqrt((float)D);
  const size_t osz = dtype_size(od);

  // ---- fused
  std::vector<int32_t> groups;
  const int rows = tile_rows(D);
  if (!query_groups(pl.k_off, pl.R, rows, groups)) { std::printf("no fusion for this plan?\n"); std::abort(); }
  const int G = (int)groups.size() - 1;
  std::vector<unsigned char> out_f(((size_t)B * T * C + ooff) * osz, 0xff);
  Args a{};
  a.q = qp; a.k = mkv.data(); a.v = mvv.data(); a.out = out_f.data() + ooff * osz;
  a.qdt = a.kdt = a.vdt = (int)(std::is_same<E, __half>::value ? DType::F16 : DType::BF16);
  a.odt = (int)od;
  a.Tq = -12345;  // unused by the fused kernel
  // The proportional bias from the masses in the kernel (Args::mass), as merge_attention_unmerge.cu
  // launches it; the unfused composition below uses the bias array.
  a.Tk = Tm; a.C = C; a.D = D; a.sl2 = sc * kLog2e; a.bias = nullptr;
  a.mass = prop ? pl.mass.data() : nullptr; a.mass_P = P;
  a.vec = ((uintptr_t)qp & 15) == 0;
  MauArgs m{};
  m.groups = groups.data(); m.tokens = pl.tokens.data(); m.offsets = pl.offsets.data(); m.k_off = pl.k_off.data();
  m.a_off = pl.a_off.data(); m.A = pl.A.data(); m.mass = pl.mass.data(); m.a_total = pl.a_total;
  m.P = P; m.K = pl.K; m.T = T; m.prefix_blocks = (P + rows - 1) / rows;
  m.out_vec = ((uintptr_t)a.out & 15) == 0;
  launch_fused<E, D>(a, m, G, H, B);

  // ---- unfused: merged q, the same variant's dense kernel into float32, host unmerge (unmerge_kernel's arithmetic)
  std::vector<E> mq = merge_t(qp);
  std::vector<float> mo((size_t)B * Tm * C, NAN);
  Args u = a;
  u.q = mq.data(); u.out = mo.data(); u.odt = (int)DType::F32; u.Tq = Tm; u.vec = true;
  u.mass = nullptr; u.bias = prop ? bias.data() : nullptr;
  launch_dense<E, D>(u, Tm, H, B);
  std::vector<float> out_u((size_t)B * T * C);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < P; ++t)
      for (int c = 0; c < C; ++c) out_u[((size_t)b * T + t) * C + c] = mo[((size_t)b * Tm + t) * C + c];
    for (int r = 0; r < pl.R; ++r) {
      const int off = pl.offsets[r], n = pl.offsets[r + 1] - off, k0 = pl.k_off[r], kk = pl.k_off[r + 1] - k0;
      for (int s = 0; s < n; ++s)
        for (int c = 0; c < C; ++c) {
          float acc = 0.f;
          for (int d = 0; d < kk; ++d) {
            const float w = pl.A[(size_t)b * pl.a_total + pl.a_off[r] + (size_t)d * n + s];
            if (w == 0.f) continue;
            acc += w * mo[((size_t)b * Tm + P + k0 + d) * C + c];
          }
          out_u[((size_t)b * T + P + pl.tokens[off + s]) * C + c] = acc;
        }
    }
  }
  auto rnd = [&](float f) -> double {
    if (od == DType::F32) return f;
    if (od == DType::F16) return __half2float(__float2half_rn(f));
    return __bfloat162float(__float2bfloat16_rn(f));
  };
  auto got = [&](size_t i) -> double {
    const unsigned char* p = out_f.data() + (ooff + i) * osz;
    if (od == DType::F32) { float f; std::memcpy(&f, p, 4); return f; }
    if (od == DType::F16) { __half h; std::memcpy(&h, p, 2); return __half2float(h); }
    __nv_bfloat16 h; std::memcpy(&h, p, 2); return __bfloat162float(h);
  };

  // ---- float64 reference from the T inputs (merged tensors not rounded)
  auto merge_d = [&](const E* x) {
    std::vector<double> y((size_t)B * Tm * C, 0);
    for (int b = 0; b < B; ++b) {
      for (int j = 0; j < P; ++j)
        for (int c = 0; c < C; ++c) y[((size_t)b * Tm + j) * C + c] = tf(x[((size_t)b * T + j) * C + c]);
      for (int r = 0; r < pl.R; ++r) {
        const int off = pl.offsets[r], n = pl.offsets[r + 1] - off;
        for (int j = pl.k_off[r]; j < pl.k_off[r + 1]; ++j) {
          const float* w = pl.A.data() + (size_t)b * pl.a_total + pl.a_off[r] + (size_t)(j - pl.k_off[r]) * n;
          const double mm = pl.mass[(size_t)b * pl.K + j];
          for (int s = 0; s < n; ++s)
            for (int c = 0; c < C; ++c)
              y[((size_t)b * Tm + P + j) * C + c] += w[s] / mm * tf(x[((size_t)b * T + P + pl.tokens[off + s]) * C + c]);
        }
      }
    }
    return y;
  };
  const std::vector<double> Q = merge_d(qp), Kd = merge_d(k.data()), Vd = merge_d(v.data());
  std::vector<double> O((size_t)B * Tm * C), srow(Tm);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < Tm; ++i) {
        double mx = -1e300;
        for (int j = 0; j < Tm; ++j) {
          double d = 0;
          for (int c = 0; c < D; ++c) d += Q[((size_t)b * Tm + i) * C + h * D + c] * Kd[((size_t)b * Tm + j) * C + h * D + c];
          srow[j] = d * sc + (prop ? (double)bias[(size_t)b * Tm + j] : 0.0);
          mx = std::max(mx, srow[j]);
        }
        double l = 0;
        for (int j = 0; j < Tm; ++j) l += (srow[j] = std::exp(srow[j] - mx));
        for (int c = 0; c < D; ++c) {
          double r = 0;
          for (int j = 0; j < Tm; ++j) r += srow[j] * Vd[((size_t)b * Tm + j) * C + h * D + c];
          O[((size_t)b * Tm + i) * C + h * D + c] = r / l;
        }
      }
  std::vector<double> ref((size_t)B * T * C, 0);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < P; ++t)
      for (int c = 0; c < C; ++c) ref[((size_t)b * T + t) * C + c] = O[((size_t)b * Tm + t) * C + c];
    for (int r = 0; r < pl.R; ++r) {
      const int off = pl.offsets[r], n = pl.offsets[r + 1] - off, k0 = pl.k_off[r], kk = pl.k_off[r + 1] - k0;
      for (int s = 0; s < n; ++s)
        for (int d = 0; d < kk; ++d) {
          const double w = pl.A[(size_t)b * pl.a_total + pl.a_off[r] + (size_t)d * n + s];
          for (int c = 0; c < C; ++c)
            ref[((size_t)b * T + P + pl.tokens[off + s]) * C + c] += w * O[((size_t)b * Tm + P + k0 + d) * C + c];
        }
    }
  }
  double num = 0, den = 0, num_u = 0, den_u = 0, maxdiff_u = 0;
  size_t mismatched = 0;
  bool finite = true;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double f = got(i), uu = rnd(out_u[i]);
    if (!std::isfinite(f)) finite = false;
    num += (f - ref[i]) * (f - ref[i]), den += ref[i] * ref[i];
    num_u += (uu - ref[i]) * (uu - ref[i]), den_u += ref[i] * ref[i];
    if (f != uu) ++mismatched, maxdiff_u = std::max(maxdiff_u, std::fabs(f - uu));
  }
  for (size_t i = 0; i < ooff * osz; ++i) if (out_f[i] != 0xff) finite = false;  // nothing before out
  const double err = finite ? std::sqrt(num / den) : INFINITY, err_u = std::sqrt(num_u / den_u);
  const double tol = (std::is_same<E, __half>::value && od != DType::BF16) ? 2e-3 : 1e-2;
  const bool ok = err <= tol && mismatched == 0;
  if (!ok) ++fails;
  int maxk_seen = 0;
  for (int r = 0; r < pl.R; ++r) maxk_seen = std::max(maxk_seen, pl.k_off[r + 1] - pl.k_off[r]);
  std::printf("%s %s %s D=%d B=%d P=%d N=%d H=%d R=%d K=%d maxk=%d G=%d %s%s%s->%s qoff=%zu ooff=%zu | fused err %.3g (unfused %.3g, tol %.g) fused!=unfused: %zu (max %.3g)\n",
              ok ? "ok  " : "FAIL", kVariants[g_variant].name, std::is_same<E, __half>::value ? "f16 " : "bf16", D, B, P, N, H, pl.R, pl.K, maxk_seen, G,
              hard ? "hard " : "soft ", prop ? "prop " : "", allow_zero ? "k0 " : "", dtype_name(od), qoff, ooff, err, err_u, tol,
              mismatched, maxdiff_u);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SEED\n", argv[0]);
    return 2;
  }
  const uint32_t sweep_seed = (uint32_t)std::stoul(argv[1]);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  const DType F32 = DType::F32, F16 = DType::F16, BF16 = DType::BF16;
  uint32_t seed = 1;
  std::printf("== attention (fixed cases)\n");
  run_attention(1, 1, 1, 1, 64, F16, F16, F16, F16, false, 0, 0, 1, seed++);
  run_attention(2, 17, 77, 3, 64, F16, F16, F16, F16, true, 0, 0, 1, seed++);
  run_attention(1, 77, 17, 2, 128, BF16, BF16, BF16, BF16, false, 0, 0, 1, seed++);
  run_attention(1, 64, 128, 2, 64, F16, F16, F16, F16, false, 0, 0, 1, seed++);
  run_attention(1, 130, 65, 1, 128, F16, F16, F16, F32, true, 0, 0, 1, seed++);
  run_attention(1, 70, 200, 1, 64, BF16, BF16, BF16, BF16, false, 0.3, 0, 1, seed++);
  run_attention(1, 33, 70, 2, 64, F16, F16, F16, F16, false, 0, 1, 1, seed++);   // unaligned
  run_attention(1, 50, 90, 1, 128, BF16, BF16, BF16, BF16, true, 0, 1, 1, seed++);
  run_attention(1, 100, 300, 1, 64, F16, F16, F16, F16, false, 0, 0, 3.0, seed++);  // peaked
  for (int D = 16; D <= 128; D += 16) run_attention(1, 20, 70, 1, D, D % 32 ? F16 : BF16, D % 32 ? F16 : BF16, D % 32 ? F16 : BF16, D % 32 ? F16 : BF16, D % 48 == 0, 0, 0, 1, seed++);
  // f32_attention
  run_attention(1, 1, 1, 1, 64, F32, F32, F32, F32, false, 0, 0, 1, seed++);
  run_attention(2, 17, 77, 3, 64, F32, F32, F32, F32, true, 0, 0, 1, seed++);
  run_attention(1, 33, 45, 3, 17, F32, F32, F32, F32, true, 0, 0, 1, seed++);
  run_attention(1, 31, 33, 1, 3, F32, F32, F32, F32, false, 0, 0, 1, seed++);
  run_attention(1, 40, 70, 2, 80, F32, F32, F32, F16, false, 0, 1, 1, seed++);
  run_attention(1, 20, 50, 1, 248, F32, F32, F32, F32, true, 0, 0, 1, seed++);
  run_attention(1, 20, 40, 1, 256, F16, F16, F16, F16, false, 0, 0, 1, seed++);
  run_attention(1, 37, 90, 2, 40, F16, BF16, F32, F16, true, 0, 0, 1, seed++);
  run_attention(1, 50, 100, 1, 128, F16, F16, BF16, F32, false, 0, 0, 1, seed++);
  run_attention(1, 60, 200, 1, 64, F32, F32, F32, F32, false, 0, 0, 2.5, seed++);

  std::printf("== merge-attention-unmerge (fixed cases)\n");
  // B, P, N, H, maxn, maxk, hard, prop, allow_zero, out dtype, q offset, out offset
  // B, P, N, H, maxn, maxk, hard, prop, allow_zero, out dtype, q offset, out offset
  run_fused<__half, 64>(1, 0, 64, 1, 4, 2, false, false, false, F16, 0, 0, seed++);
  run_fused<__half, 64>(2, 7, 150, 2, 9, 5, false, false, false, F16, 0, 0, seed++);
  run_fused<__nv_bfloat16, 128>(2, 7, 150, 1, 9, 5, false, true, false, BF16, 0, 0, seed++);
  run_fused<__half, 128>(1, 77, 200, 1, 16, 12, false, true, true, F32, 0, 0, seed++);     // prefix > 64
  run_fused<__nv_bfloat16, 64>(1, 0, 300, 2, 130, 64, false, false, false, BF16, 0, 0, seed++);  // k up to 64
  run_fused<__half, 64>(1, 3, 250, 1, 70, 64, true, true, false, F16, 1, 1, seed++);       // hard, unaligned q / out
  run_fused<__half, 128>(2, 5, 120, 1, 4, 4, false, false, false, BF16, 1, 0, seed++);
  run_fused<__nv_bfloat16, 64>(1, 64, 180, 1, 3, 1, false, true, true, F32, 0, 1, seed++);  // many tiny regions (64-region cap)
  run_fused<__half, 64>(1, 1, 129, 1, 2, 1, true, false, false, F16, 0, 0, seed++);        // identity-like, k = n = 1
  run_fused<__nv_bfloat16, 128>(1, 0, 256, 1, 8, 4, false, true, false, F32, 0, 0, seed++);
  run_fused<__half, 32>(1, 10, 100, 3, 6, 3, false, false, false, F16, 0, 0, seed++);
  run_fused<__half, 16>(1, 10, 100, 2, 6, 3, false, true, false, F16, 0, 0, seed++);
  run_fused<__half, 48>(1, 9, 120, 2, 8, 5, false, true, false, F16, 0, 0, seed++);
  run_fused<__nv_bfloat16, 80>(2, 70, 90, 1, 5, 3, false, false, true, BF16, 0, 1, seed++);
  run_fused<__half, 96>(1, 0, 140, 1, 20, 17, true, true, false, F32, 1, 0, seed++);
  run_fused<__nv_bfloat16, 112>(1, 5, 100, 1, 6, 2, false, true, false, F16, 0, 0, seed++);

  std::printf("== random sweep, seed %u\n", sweep_seed);
  std::mt19937 rg(sweep_seed);
  auto ri = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rg); };
  const DType dts[] = {F32, F16, BF16};
  for (int it = 0; it < 8; ++it) {
    const bool tc = ri(0, 1);  // tensor-core eligible: one half dtype, D a multiple of 16 up to 128
    const DType qd = tc ? dts[ri(1, 2)] : dts[ri(0, 2)];
    const DType kd = tc ? qd : dts[ri(0, 2)];
    const DType vd = tc ? qd : dts[ri(0, 2)];
    const int D = tc ? 16 * ri(1, 8) : ri(1, 256);
    const int B = ri(1, 2), Tq = ri(1, 150), Tk = ri(1, 250), H = ri(1, 2);
    const DType od = dts[ri(0, 2)];
    const bool bias = ri(0, 1);
    const size_t off = ri(0, 3) == 0;
    run_attention(B, Tq, Tk, H, D, qd, kd, vd, od, bias, 0, off, 1, (uint32_t)rg());
  }
  for (int it = 0; it < 16; ++it) {
    const int B = ri(1, 2), P = ri(0, 1) ? ri(0, 140) : 0, N = ri(20, 260), H = ri(1, 2), maxn = ri(1, 90),
              maxk = ri(1, 64);
    const bool hard = ri(0, 3) == 0, prop = ri(0, 1), k0 = ri(0, 3) == 0;
    const DType od = ri(0, 2) == 0 ? F32 : ri(0, 1) ? F16 : BF16;
    const size_t qo = ri(0, 3) == 0, oo = ri(0, 3) == 0;
    switch (ri(0, 3)) {
      case 0: run_fused<__half, 64>(B, P, N, H, maxn, maxk, hard, prop, k0, od, qo, oo, (uint32_t)rg()); break;
      case 1: run_fused<__nv_bfloat16, 64>(B, P, N, H, maxn, maxk, hard, prop, k0, od, qo, oo, (uint32_t)rg()); break;
      case 2: run_fused<__half, 128>(B, P, N, H, maxn, maxk, hard, prop, k0, od, qo, oo, (uint32_t)rg()); break;
      default: run_fused<__nv_bfloat16, 128>(B, P, N, H, maxn, maxk, hard, prop, k0, od, qo, oo, (uint32_t)rg()); break;
    }
  }
  std::printf("%s: %d failures, %ld blocks\n", fails ? "FAILED" : "PASSED", fails, emu::blocks_run);
  return fails ? 1 : 0;
}
