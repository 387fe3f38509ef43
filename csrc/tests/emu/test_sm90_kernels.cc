// The sm_90a attention kernel (csrc/cuda/flash_sm90.cuh: TMA producer, mbarrier ring, wgmma
// consumers, with and without pingpong) run from its real source on the Hopper emulation
// (gen_sm90.py, hopper_emu.h) against float64:
//  - attention: softmax(q k^T * scale + bias) v at head dims 64 and 128, fp16 and bf16, every
//    output dtype, key counts that leave partial tiles and wrap the stage ring several times;
//  - fused merge-attention-unmerge: against unmerge(attention(merge q, merge k, merge v)) in
//    float64, and bit for bit against the unfused composition on the same kernel (merged q in the
//    input dtype with merge_kernel's arithmetic, the dense kernel into float32, unmerge in float).
// The tensor maps come from sm90_tensor_map (the kernel's own host code) through the emulated
// cuTensorMapEncodeTiled. usage: emu_sm90 SEED
#include "hopper_emu.h"

#include "flash_sm90_emu.h"
#include "random_plan.h"

#include <random>
#include <string>

using namespace toma;
using namespace toma::flash;

namespace {

int fails = 0;

template <class T> float tf(T h);
template <> float tf(__half h) { return __half2float(h); }
template <> float tf(__nv_bfloat16 h) { return __bfloat162float(h); }
template <class T> T ft(float f);
template <> __half ft(float f) { return __float2half_rn(f); }
template <> __nv_bfloat16 ft(float f) { return __float2bfloat16_rn(f); }
template <class T> constexpr bool is_bf16() { return std::is_same<T, __nv_bfloat16>::value; }

// 16-byte aligned storage (TMA needs aligned global bases), element offset `off` into it.
template <class E>
struct Aligned {
  std::vector<uint4> raw;
  E* p;
  Aligned(size_t n, size_t off = 0) : raw((n + off) * sizeof(E) / 16 + 2) { p = reinterpret_cast<E*>(raw.data()) + off; }
};

double round_to(DType d, float f) {
  if (d == DType::F32) return f;
  if (d == DType::F16) return __half2float(__float2half_rn(f));
  return __bfloat162float(__float2bfloat16_rn(f));
}
double read_out(const void* p, DType d, size_t i) {
  if (d == DType::F32) return static_cast<const float*>(p)[i];
  if (d == DType::F16) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

template <class E, int D>
void launch(const Args& a, const MauArgs& m, const CUtensorMap& tq, const CUtensorMap& tk, const CUtensorMap& tv,
            dim3 grid, bool fused, bool pp) {
  const size_t smem = Sm90Layout<D>::kBytes;
  if (fused && pp) emu::launch([&] { sm90_attention<E, D, true, true>(tq, tk, tv, a, m); }, grid, kSm90Threads, smem);
  else if (fused) emu::launch([&] { sm90_attention<E, D, true, false>(tq, tk, tv, a, m); }, grid, kSm90Threads, smem);
  else if (pp) emu::launch([&] { sm90_attention<E, D, false, true>(tq, tk, tv, a, m); }, grid, kSm90Threads, smem);
  else emu::launch([&] { sm90_attention<E, D, false, false>(tq, tk, tv, a, m); }, grid, kSm90Threads, smem);
}

// out (Tq rows, dtype od) = attention(q, k, v) on the sm90 kernel; q, k, v [B, T, C] of E.
template <class E, int D>
void dense(const E* q, const E* k, const E* v, void* out, DType od, int B, int Tq, int Tk, int H, const float* bias,
           float sl2, bool pp) {
  const int C = H * D;
  CUtensorMap tq, tk, tv;
  if (sm90_tensor_map(emu::encode_tiled, &tq, q, is_bf16<E>(), B, Tq, C, kSm90Rows) != CUDA_SUCCESS ||
      sm90_tensor_map(emu::encode_tiled, &tk, k, is_bf16<E>(), B, Tk, C, Sm90Layout<D>::kBN) != CUDA_SUCCESS ||
      sm90_tensor_map(emu::encode_tiled, &tv, v, is_bf16<E>(), B, Tk, C, Sm90Layout<D>::kBN) != CUDA_SUCCESS)
    emu::fail("sm90_tensor_map refused the test's tensors");
  Args a{};
  a.q = q, a.k = k, a.v = v, a.out = out;
  a.qdt = a.kdt = a.vdt = (int)(is_bf16<E>() ? DType::BF16 : DType::F16);
  a.odt = (int)od;
  a.Tq = Tq, a.Tk = Tk, a.C = C, a.D = D, a.sl2 = sl2, a.bias = bias, a.vec = true;
  launch<E, D>(a, MauArgs{}, tq, tk, tv, dim3((Tq + kSm90Rows - 1) / kSm90Rows, H, B), false, pp);
}

template <class E, int D>
void run_dense(std::mt19937& g, int B, int Tq, int Tk, int H, DType od, bool with_bias, size_t ooff, bool pp) {
  const int C = H * D;
  std::normal_distribution<double> nd(0, 1);
  Aligned<E> q((size_t)B * Tq * C), k((size_t)B * Tk * C), v((size_t)B * Tk * C);
  for (size_t i = 0; i < (size_t)B * Tq * C; ++i) q.p[i] = ft<E>((float)nd(g));
  for (size_t i = 0; i < (size_t)B * Tk * C; ++i) k.p[i] = ft<E>((float)nd(g)), v.p[i] = ft<E>((float)nd(g));
  std::vector<float> bias;
  if (with_bias) {
    bias.resize((size_t)B * Tk);
    for (auto& x : bias) x = (float)(2 * nd(g));
  }
  const size_t osz = dtype_size(od), n = (size_t)B * Tq * C;
  std::vector<unsigned char> out((n + ooff) * osz + 16, 0xff);
  const float sc = 1.0f / std::sqrt((float)D);
  dense<E, D>(q.p, k.p, v.p, out.data() + ooff * osz, od, B, Tq, Tk, H, with_bias ? bias.data() : nullptr, sc * kLog2e, pp);
  double num = 0, den = 0;
  bool finite = true;
  std::vector<double> s(Tk);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < Tq; ++i) {
        double mx = -1e300;
        for (int j = 0; j < Tk; ++j) {
          double d = 0;
          for (int c = 0; c < D; ++c)
            d += (double)tf(q.p[((size_t)b * Tq + i) * C + h * D + c]) * tf(k.p[((size_t)b * Tk + j) * C + h * D + c]);
          s[j] = d * sc + (with_bias ? bias[(size_t)b * Tk + j] : 0.0);
          mx = std::max(mx, s[j]);
        }
        double l = 0;
        for (int j = 0; j < Tk; ++j) l += (s[j] = std::exp(s[j] - mx));
        for (int c = 0; c < D; ++c) {
          double r = 0;
          for (int j = 0; j < Tk; ++j) r += s[j] * tf(v.p[((size_t)b * Tk + j) * C + h * D + c]);
          r /= l;
          const double got = read_out(out.data() + ooff * osz, od, ((size_t)b * Tq + i) * C + h * D + c);
          if (!std::isfinite(got)) finite = false;
          num += (got - r) * (got - r), den += r * r;
        }
      }
  for (size_t i = 0; i < ooff * osz; ++i)
    if (out[i] != 0xff) finite = false;  // nothing written before out
  const double err = finite ? std::sqrt(num / den) : INFINITY;
  const double tol = (!is_bf16<E>() && od != DType::BF16) ? 2e-3 : 1e-2;
  const bool ok = err <= tol;
  if (!ok) ++fails;
  std::printf("%s sm90%s %s D=%d B=%d Tq=%d Tk=%d H=%d ->%s bias=%d ooff=%zu err=%.3g tol=%.g\n", ok ? "ok  " : "FAIL",
              pp ? "-pingpong" : "", is_bf16<E>() ? "bf16" : "f16 ", D, B, Tq, Tk, H, dtype_name(od), with_bias, ooff,
              err, tol);
}

template <class E, int D>
void run_fused(std::mt19937& g, int B, int P, int N, int H, int maxn, int maxk, bool hard, bool prop, bool allow_zero,
               DType od, size_t qoff, size_t ooff, bool pp) {
  const HostPlan pl = random_plan(g, B, P, N, maxn, maxk, hard, allow_zero);
  const int C = H * D, T = P + N, Tm = P + pl.K;
  std::normal_distribution<double> nd(0, 1);
  Aligned<E> q((size_t)B * T * C, qoff), k((size_t)B * T * C), v((size_t)B * T * C);
  for (size_t i = 0; i < (size_t)B * T * C; ++i)
    q.p[i] = ft<E>((float)nd(g)), k.p[i] = ft<E>((float)nd(g)), v.p[i] = ft<E>((float)nd(g));
  // merge in float with merge_kernel's arithmetic, rounded to E (as the device's merged k / v / q)
  auto merge_t = [&](const E* x, E* y) {
    for (int b = 0; b < B; ++b) {
      for (int j = 0; j < P; ++j)
        for (int c = 0; c < C; ++c) y[((size_t)b * Tm + j) * C + c] = x[((size_t)b * T + j) * C + c];
      for (int r = 0; r < pl.R; ++r) {
        const int off = pl.offsets[r], n = pl.offsets[r + 1] - off;
        for (int j = pl.k_off[r]; j < pl.k_off[r + 1]; ++j) {
          const float* w = pl.A.data() + (size_t)b * pl.a_total + pl.a_off[r] + (size_t)(j - pl.k_off[r]) * n;
          const float mm = pl.mass[(size_t)b * pl.K + j];
          for (int c = 0; c < C; ++c) {
            float acc = 0.f;
            for (int s = 0; s < n; ++s) {
              if (w[s] == 0.f) continue;
              const float wm = w[s] / mm;
              acc += wm * tf(x[((size_t)b * T + P + pl.tokens[off + s]) * C + c]);
            }
            y[((size_t)b * Tm + P + j) * C + c] = ft<E>(acc);
          }
        }
      }
    }
  };
  Aligned<E> mk((size_t)B * Tm * C), mv((size_t)B * Tm * C), mq((size_t)B * Tm * C);
  merge_t(k.p, mk.p);
  merge_t(v.p, mv.p);
  merge_t(q.p, mq.p);
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
  if (!query_groups(pl.k_off, pl.R, kSm90Rows, groups)) emu::fail("no fusion for this plan");
  const int G = (int)groups.size() - 1;
  std::vector<unsigned char> out_f(((size_t)B * T * C + ooff) * osz + 16, 0xff);
  CUtensorMap tq{}, tk, tv;
  if (sm90_tensor_map(emu::encode_tiled, &tk, mk.p, is_bf16<E>(), B, Tm, C, Sm90Layout<D>::kBN) != CUDA_SUCCESS ||
      sm90_tensor_map(emu::encode_tiled, &tv, mv.p, is_bf16<E>(), B, Tm, C, Sm90Layout<D>::kBN) != CUDA_SUCCESS)
    emu::fail("sm90_tensor_map refused the merged k / v");
  Args a{};
  a.q = q.p, a.k = mk.p, a.v = mv.p, a.out = out_f.data() + ooff * osz;
  a.qdt = a.kdt = a.vdt = (int)(is_bf16<E>() ? DType::BF16 : DType::F16);
  a.odt = (int)od;
  a.Tq = -12345;  // unused by the fused kernel
  // The proportional bias from the masses in the kernel (Args::mass), as merge_attention_unmerge.cu
  // launches it; the unfused composition below uses the bias array.
  a.Tk = Tm, a.C = C, a.D = D, a.sl2 = sc * kLog2e, a.bias = nullptr;
  a.mass = prop ? pl.mass.data() : nullptr, a.mass_P = P;
  a.vec = ((uintptr_t)q.p & 15) == 0;
  MauArgs m{};
  m.groups = groups.data(), m.tokens = pl.tokens.data(), m.offsets = pl.offsets.data(), m.k_off = pl.k_off.data();
  m.a_off = pl.a_off.data(), m.A = pl.A.data(), m.mass = pl.mass.data(), m.a_total = pl.a_total;
  m.P = P, m.K = pl.K, m.T = T, m.prefix_blocks = (P + kSm90Rows - 1) / kSm90Rows;
  m.out_vec = ((uintptr_t)a.out & 15) == 0;
  launch<E, D>(a, m, tq, tk, tv, dim3(m.prefix_blocks + G, H, B), true, pp);

  // ---- unfused on the same kernel: merged q, dense into float32, unmerge in float
  std::vector<float> mo((size_t)B * Tm * C, NAN);
  dense<E, D>(mq.p, mk.p, mv.p, mo.data(), DType::F32, B, Tm, Tm, H, prop ? bias.data() : nullptr, sc * kLog2e, pp);
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

  // ---- float64 reference from the E inputs (merged tensors not rounded)
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
  const std::vector<double> Q = merge_d(q.p), Kd = merge_d(k.p), Vd = merge_d(v.p);
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
  double num = 0, den = 0, maxdiff = 0;
  size_t mismatched = 0;
  bool finite = true;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double f = read_out(out_f.data() + ooff * osz, od, i), u = round_to(od, out_u[i]);
    if (!std::isfinite(f)) finite = false;
    num += (f - ref[i]) * (f - ref[i]), den += ref[i] * ref[i];
    if (f != u) ++mismatched, maxdiff = std::max(maxdiff, std::fabs(f - u));
  }
  for (size_t i = 0; i < ooff * osz; ++i)
    if (out_f[i] != 0xff) finite = false;
  const double err = finite ? std::sqrt(num / den) : INFINITY;
  const double tol = (!is_bf16<E>() && od != DType::BF16) ? 2e-3 : 1e-2;
  const bool ok = err <= tol && mismatched == 0;
  if (!ok) ++fails;
  int maxk_seen = 0;
  for (int r = 0; r < pl.R; ++r) maxk_seen = std::max(maxk_seen, pl.k_off[r + 1] - pl.k_off[r]);
  std::printf("%s sm90%s fused %s D=%d B=%d P=%d N=%d H=%d R=%d K=%d maxk=%d G=%d %s%s%s->%s qoff=%zu ooff=%zu | err %.3g "
              "(tol %.g) fused!=unfused: %zu (max %.3g)\n",
              ok ? "ok  " : "FAIL", pp ? "-pingpong" : "", is_bf16<E>() ? "bf16" : "f16 ", D, B, P, N, H, pl.R, pl.K,
              maxk_seen, G, hard ? "hard " : "soft ", prop ? "prop " : "", allow_zero ? "k0 " : "", dtype_name(od), qoff,
              ooff, err, tol, mismatched, maxdiff);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SEED\n", argv[0]);
    return 2;
  }
  const uint32_t sweep = (uint32_t)std::stoul(argv[1]);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  const DType F32 = DType::F32, F16 = DType::F16, BF16 = DType::BF16;
  std::mt19937 g(1);
  std::printf("== attention (fixed cases)\n");
  for (int pp = 0; pp < 2; ++pp) {
    run_dense<__half, 64>(g, 1, 1, 1, 1, F16, false, 0, pp);              // one query, one key
    run_dense<__half, 64>(g, 2, 130, 700, 2, F16, true, 0, pp);           // 6 key tiles: the 4-stage ring wraps
    run_dense<__nv_bfloat16, 128>(g, 1, 77, 300, 1, BF16, false, 1, pp);  // 3 tiles over 2 stages; odd out offset
    run_dense<__half, 128>(g, 1, 200, 129, 2, F32, true, 0, pp);          // a 1-key last tile
    run_dense<__nv_bfloat16, 64>(g, 1, 64, 128, 1, F32, true, 0, pp);     // whole tiles
  }
  std::printf("== merge-attention-unmerge (fixed cases)\n");
  // B, P, N, H, maxn, maxk, hard, prop, allow_zero, out dtype, q offset, out offset, pingpong
  run_fused<__half, 64>(g, 1, 0, 64, 1, 4, 2, false, false, false, F16, 0, 0, false);
  run_fused<__half, 64>(g, 2, 7, 300, 2, 9, 5, false, true, false, F16, 0, 0, true);
  run_fused<__nv_bfloat16, 128>(g, 1, 150, 260, 1, 16, 12, false, true, true, BF16, 0, 1, false);  // prefix > 128
  run_fused<__nv_bfloat16, 64>(g, 1, 0, 400, 1, 200, 128, false, false, false, F32, 1, 0, true);  // k up to 128, q unaligned
  run_fused<__half, 128>(g, 1, 3, 250, 1, 70, 64, true, true, false, F16, 1, 1, true);             // hard
  run_fused<__nv_bfloat16, 64>(g, 1, 64, 180, 1, 3, 1, false, true, true, F32, 0, 0, false);       // tiny regions
  std::printf("== random sweep, seed %u\n", sweep);
  std::mt19937 rg(sweep);
  auto ri = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rg); };
  const DType dts[] = {F32, F16, BF16};
  for (int it = 0; it < 4; ++it) {
    const int B = ri(1, 2), Tq = ri(1, 300), Tk = ri(1, 600), H = ri(1, 2);
    const DType od = dts[ri(0, 2)];
    const bool bias = ri(0, 1), pp = ri(0, 1);
    const size_t oo = ri(0, 3) == 0;
    switch (ri(0, 3)) {
      case 0: run_dense<__half, 64>(rg, B, Tq, Tk, H, od, bias, oo, pp); break;
      case 1: run_dense<__nv_bfloat16, 64>(rg, B, Tq, Tk, H, od, bias, oo, pp); break;
      case 2: run_dense<__half, 128>(rg, B, Tq, Tk, H, od, bias, oo, pp); break;
      default: run_dense<__nv_bfloat16, 128>(rg, B, Tq, Tk, H, od, bias, oo, pp); break;
    }
  }
  for (int it = 0; it < 4; ++it) {
    const int B = ri(1, 2), P = ri(0, 1) ? ri(0, 200) : 0, N = ri(20, 400), H = ri(1, 2), maxn = ri(1, 150),
              maxk = ri(1, 128);
    const bool hard = ri(0, 3) == 0, prop = ri(0, 1), k0 = ri(0, 3) == 0, pp = ri(0, 1);
    const DType od = dts[ri(0, 2)];
    const size_t qo = ri(0, 3) == 0, oo = ri(0, 3) == 0;
    switch (ri(0, 3)) {
      case 0: run_fused<__half, 64>(rg, B, P, N, H, maxn, maxk, hard, prop, k0, od, qo, oo, pp); break;
      case 1: run_fused<__nv_bfloat16, 64>(rg, B, P, N, H, maxn, maxk, hard, prop, k0, od, qo, oo, pp); break;
      case 2: run_fused<__half, 128>(rg, B, P, N, H, maxn, maxk, hard, prop, k0, od, qo, oo, pp); break;
      default: run_fused<__nv_bfloat16, 128>(rg, B, P, N, H, maxn, maxk, hard, prop, k0, od, qo, oo, pp); break;
    }
  }
  std::printf("%s: %d failures, %ld blocks\n", fails ? "FAILED" : "PASSED", fails, emu::blocks_run);
  return fails ? 1 : 0;
}
