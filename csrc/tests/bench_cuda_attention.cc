// Timings of the CUDA attention ops (suite bench_cuda: run by bench/gpu-check.sh, not by ctest):
// dense attention_cuda in fp16 and bf16, and merge_attention_unmerge_cuda at merge ratios 0.25 /
// 0.5 / 0.75 with the plan computed once beforehand (plus one row that times the plan as well), at
// SDXL 64x64 (B=2, N=4096, 10 x 64), SDXL 32x32 (B=2, N=1024, 20 x 64) and Flux (B=1, 512 text +
// 4096 image tokens, 24 x 128). Medians of CUDA-event timings (toma::cuda::time_ms). TFLOP/s
// counts 4 * B * heads * Tq * Tk * d for the attention actually run (merged sizes for the merged
// op, so it compares kernel efficiency; "x dense" compares wall time with the dense op). The
// fp16 merge rows run the fused path (merge of q and unmerge inside the attention launch); at
// SDXL 64x64 ratio 0.5 a "mergeAttentionUnmerge-unfused" row times the same work as separate
// merge, attention and unmerge launches (the fallback), named so bench/gpu/summarize.py does not
// take it for the default path.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "ops/attention.h"
#include "ops/cuda.h"
#include "ops/device.h"
#include "ops/merge_attention_unmerge.h"
#include "ops/plan.h"
#include "tests/bench_support.h"
#include "tests/harness.h"

using toma::DType;

namespace {

constexpr int kWarmup = 3, kIters = 15;

struct Shape {
  const char* name;
  int B, P, H, W, heads, D;
  int T() const { return P + H * W; }
  int C() const { return heads * D; }
};

const Shape kShapes[] = {
    {"SDXL 64x64 B=2 N=4096 10x64", 2, 0, 64, 64, 10, 64},
    {"SDXL 32x32 B=2 N=1024 20x64", 2, 0, 32, 32, 20, 64},
    {"Flux B=1 512+4096 24x128", 1, 512, 64, 64, 24, 128},
};

bool device_or_note() {
  const toma::DeviceInfo& d = toma::cuda_device_info();
  if (!d.available) {
    tt::note("no usable CUDA device, skipped: " + d.reason);
    return false;
  }
  return true;
}

// Device tokens filled with pseudo-random values in [-2, 2) (timing only: a cheap generator, so
// the Flux tensors do not take seconds to make).
struct DeviceTokens {
  toma::cuda::DeviceBuffer buf;
  toma::Tokens t;
  DeviceTokens(DType dt, int B, int T, int C, uint64_t seed) {
    const size_t n = (size_t)B * T * C, es = toma::dtype_size(dt);
    std::vector<uint8_t> host(n * es);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; ++i) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      const float f = (float)((s >> 40) * (1.0 / (1ull << 24))) * 4.f - 2.f;
      if (dt == DType::F32) {
        std::memcpy(&host[i * 4], &f, 4);
      } else {
        const uint16_t h = dt == DType::F16 ? toma::f32_to_f16(f) : toma::f32_to_bf16(f);
        std::memcpy(&host[i * 2], &h, 2);
      }
    }
    buf = toma::cuda::DeviceBuffer(host.size(), "bench tensor");
    toma::cuda::copy_to_device(buf.data(), host.data(), host.size(), "bench upload");
    t = toma::Tokens{buf.data(), dt, B, T, C};
  }
};

double tflops(double B, double heads, double Tq, double Tk, double d, double ms) {
  return 4.0 * B * heads * Tq * Tk * d / (ms * 1e-3) / 1e12;
}

struct DenseCtx {
  toma::AttentionParams p;
};
void run_dense(void* c) { toma::attention_cuda(static_cast<DenseCtx*>(c)->p); }

struct MauCtx {
  std::shared_ptr<toma::DevicePlan> plan;
  toma::MergeAttentionParams p;
  toma::ConstTokens x;
  toma::PlanOptions o;
};
void run_mau(void* c) {
  auto* m = static_cast<MauCtx*>(c);
  toma::merge_attention_unmerge_cuda(*m->plan, m->p);
}
void run_plan_and_mau(void* c) {
  auto* m = static_cast<MauCtx*>(c);
  const std::shared_ptr<toma::DevicePlan> plan = toma::compute_plan_cuda(m->x, m->o);
  toma::merge_attention_unmerge_cuda(*plan, m->p);
}

// The unfused path from the public ops: merged q / k / v and the float32 merged output in one
// temporary per call, as merge_attention_unmerge_cuda's fallback allocates them.
void run_mau_unfused(void* c) {
  auto* m = static_cast<MauCtx*>(c);
  const toma::DevicePlan& plan = *m->plan;
  const toma::MergeAttentionParams& p = m->p;
  const int B = plan.B, Tm = plan.P + plan.K, C = p.q.C;
  const size_t n = (size_t)B * Tm * C, es = toma::dtype_size(p.q.dtype), half = (n * es + 255) / 256 * 256;
  toma::cuda::DeviceBuffer tmp(3 * half + n * sizeof(float), "bench temporaries");
  char* const base = tmp.as<char>();
  const toma::Tokens mq{base, p.q.dtype, B, Tm, C}, mk{base + half, p.q.dtype, B, Tm, C},
      mv{base + 2 * half, p.q.dtype, B, Tm, C}, mo{base + 3 * half, DType::F32, B, Tm, C};
  toma::merge_cuda(plan, p.k, mk);
  toma::merge_cuda(plan, p.v, mv);
  toma::merge_cuda(plan, p.q, mq);
  toma::AttentionParams a;
  a.q = mq;
  a.k = mk;
  a.v = mv;
  a.out = mo;
  a.heads = p.heads;
  a.scale = p.scale;
  toma::attention_cuda(a);
  toma::unmerge_cuda(plan, mo, p.out);
}

const char* short_name(DType dt) { return dt == DType::F16 ? "f16" : dt == DType::BF16 ? "bf16" : "f32"; }

}  // namespace

TEST_CASE(bench_cuda, attention_dense) {
  if (!device_or_note()) return;
  for (const Shape& s : kShapes)
    for (DType dt : {DType::F16, DType::BF16}) {
      const int T = s.T(), C = s.C();
      DeviceTokens q(dt, s.B, T, C, 1), k(dt, s.B, T, C, 2), v(dt, s.B, T, C, 3), out(dt, s.B, T, C, 4);
      DenseCtx ctx;
      ctx.p.q = q.t;
      ctx.p.k = k.t;
      ctx.p.v = v.t;
      ctx.p.out = out.t;
      ctx.p.heads = s.heads;
      const double ms = toma::cuda::time_ms(run_dense, &ctx, kWarmup, kIters);
      tt::bench_row(std::string("attention_cuda ") + short_name(dt) + " " + s.name, ms,
                    {{"TFLOPs", tflops(s.B, s.heads, T, T, s.D, ms)}});
    }
}

TEST_CASE(bench_cuda, merge_attention_unmerge) {
  if (!device_or_note()) return;
  const DType dt = DType::F16;
  for (const Shape& s : kShapes) {
    const int T = s.T(), C = s.C();
    DeviceTokens q(dt, s.B, T, C, 11), k(dt, s.B, T, C, 12), v(dt, s.B, T, C, 13), out(dt, s.B, T, C, 14);
    DeviceTokens x(dt, s.B, T, C, 15);  // the block's hidden states the plan is computed on
    DenseCtx dense;
    dense.p.q = q.t;
    dense.p.k = k.t;
    dense.p.v = v.t;
    dense.p.out = out.t;
    dense.p.heads = s.heads;
    const double dense_ms = toma::cuda::time_ms(run_dense, &dense, kWarmup, kIters);
    for (double ratio : {0.25, 0.5, 0.75}) {
      MauCtx m;
      m.o.H = s.H;
      m.o.W = s.W;
      m.o.ratio = ratio;
      m.o.prefix = s.P;
      m.x = x.t;
      m.plan = toma::compute_plan_cuda(m.x, m.o);
      m.p.q = q.t;
      m.p.k = k.t;
      m.p.v = v.t;
      m.p.out = out.t;
      m.p.heads = s.heads;
      const double Tm = s.P + m.plan->K;
      const std::string name = std::string("mergeAttentionUnmerge ") + short_name(dt) + " r=" + tt::str(ratio) + " " + s.name;
      const double ms = toma::cuda::time_ms(run_mau, &m, kWarmup, kIters);
      tt::bench_row(name, ms, {{"TFLOPs", tflops(s.B, s.heads, Tm, Tm, s.D, ms)}, {"x_dense", dense_ms / ms}});
      if (ratio == 0.5) {
        const double ms2 = toma::cuda::time_ms(run_plan_and_mau, &m, kWarmup, kIters);
        tt::bench_row(name + " +plan", ms2, {{"TFLOPs", tflops(s.B, s.heads, Tm, Tm, s.D, ms2)}, {"x_dense", dense_ms / ms2}});
      }
      if (ratio == 0.5 && s.P == 0 && s.H == 64) {
        const double ms3 = toma::cuda::time_ms(run_mau_unfused, &m, kWarmup, kIters);
        const std::string unfused =
            std::string("mergeAttentionUnmerge-unfused ") + short_name(dt) + " r=" + tt::str(ratio) + " " + s.name;
        tt::bench_row(unfused, ms3, {{"TFLOPs", tflops(s.B, s.heads, Tm, Tm, s.D, ms3)}, {"x_dense", dense_ms / ms3},
                                     {"fused_speedup", ms3 / ms}});
      }
    }
  }
}
