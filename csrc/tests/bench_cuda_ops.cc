// Timings of the CUDA plan, merge and unmerge (suite bench_cuda; bench/gpu-check.sh runs it, ctest
// does not): CUDA-event medians after warm-up. The peer for merge and unmerge is the card's own
// device-to-device copy bandwidth, measured in the same run (of_copy: against a 512 MiB copy;
// of_same_copy: against a copy of the op's own bytes, timed right after it); computePlan is timed as a caller sees
// it (host work, launches and the final synchronisation included).
#include <string>
#include <vector>

#include "ops/cuda.h"
#include "ops/device.h"
#include "tests/bench_support.h"
#include "tests/harness.h"

using toma::DType;

namespace {

bool have_device() {
  const toma::DeviceInfo& d = toma::cuda_device_info();
  if (!d.available) tt::note("skipped: no usable CUDA device (" + d.reason + ")");
  return d.available;
}

toma::cuda::DeviceBuffer random_on_device(tt::Rng& rng, DType dt, int B, int T, int C) {
  const tt::Tensor t = tt::random_tensor(rng, dt, B, T, C);
  toma::cuda::DeviceBuffer d(t.bytes.size(), "bench tensor");
  toma::cuda::copy_to_device(d.data(), t.bytes.data(), t.bytes.size(), "bench");
  return d;
}

double copy_bandwidth_gbs() {
  const size_t bytes = (size_t)512 << 20;
  toma::cuda::DeviceBuffer a(bytes, "bench copy"), b(bytes, "bench copy");
  struct Ctx {
    void *dst, *src;
    size_t n;
  } ctx{b.data(), a.data(), bytes};
  const double ms = toma::cuda::time_ms(
      [](void* p) {
        auto* c = static_cast<Ctx*>(p);
        toma::cuda::enqueue_copy_on_device(c->dst, c->src, c->n, "bench copy");
      },
      &ctx, 3, 20);
  const double gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;  // read + write
  tt::bench_row("device copy 512 MiB (peer: read + write bandwidth)", ms, {{"GB/s", gbs}});
  return gbs;
}

// The same-size peer of a merge or unmerge row: a device-to-device copy moving the bytes the op
// reads plus writes (traffic / 2 copied: read once, written once), timed as the op (same warm-up,
// iterations and median, in the same run). of_same_copy = copy ms / op ms: 1 is the copy's speed
// at this size, launch and tail latency included, which a 5 MB op cannot avoid either.
double same_size_copy_ms(const void* src, void* dst, size_t traffic) {
  struct Ctx {
    void* dst;
    const void* src;
    size_t n;
  } ctx{dst, src, traffic / 2};
  return toma::cuda::time_ms(
      [](void* p) {
        auto* c = static_cast<Ctx*>(p);
        toma::cuda::enqueue_copy_on_device(c->dst, c->src, c->n, "bench same-size copy");
      },
      &ctx, 5, 50);
}

toma::PlanOptions tile_options(int H, int W, int t, double ratio, int P = 0) {
  toma::PlanOptions o;
  o.H = H;
  o.W = W;
  o.region.kind = toma::RegionSpec::Tile;
  o.region.th = o.region.tw = t;
  o.ratio = ratio;
  o.prefix = P;
  return o;
}

}  // namespace

TEST_CASE(bench_cuda, plan_merge_unmerge) {
  if (!have_device()) return;
  const double copy = copy_bandwidth_gbs();
  tt::Rng rng(1);
  struct Shape {
    const char* name;
    int B, P, H, W, C;
    DType dt;
  } shapes[] = {{"SDXL 64x64", 1, 0, 64, 64, 640, DType::F16},
                {"SDXL 64x64", 2, 0, 64, 64, 640, DType::F16},
                {"SDXL 64x64", 2, 0, 64, 64, 640, DType::F32},
                {"SDXL 32x32", 2, 0, 32, 32, 1280, DType::F16},
                {"Flux 64x64 + 512 text", 1, 512, 64, 64, 3072, DType::BF16}};
  for (const auto& s : shapes) {
    const int T = s.P + s.H * s.W;
    toma::cuda::DeviceBuffer x = random_on_device(rng, s.dt, s.B, T, s.C);
    const toma::ConstTokens xv{x.data(), s.dt, s.B, T, s.C};
    const std::string tag = std::string(s.name) + " B=" + std::to_string(s.B) + " C=" + std::to_string(s.C) + " " +
                            toma::dtype_name(s.dt);
    for (double ratio : {0.25, 0.5, 0.75}) {
      const toma::PlanOptions o = tile_options(s.H, s.W, 4, ratio, s.P);
      struct PlanCtx {
        toma::ConstTokens x;
        toma::PlanOptions o;
      } pc{xv, o};
      const double plan_ms = toma::cuda::time_ms(
          [](void* p) {
            auto* c = static_cast<PlanCtx*>(p);
            toma::compute_plan_cuda(c->x, c->o);
          },
          &pc, 3, 30);
      tt::bench_row("computePlan " + tag + " 4x4 ratio " + tt::str(ratio), plan_ms, {{"us", plan_ms * 1e3}});
      auto plan = toma::compute_plan_cuda(xv, o);
      const int K = plan->K;
      toma::cuda::DeviceBuffer y((size_t)s.B * (s.P + K) * s.C * toma::dtype_size(s.dt), "bench merged");
      toma::cuda::DeviceBuffer back(x.bytes(), "bench unmerged");
      struct MergeCtx {
        const toma::DevicePlan* plan;
        toma::ConstTokens in;
        toma::Tokens out;
      } mc{plan.get(), xv, toma::Tokens{y.data(), s.dt, s.B, s.P + K, s.C}},
          uc{plan.get(), toma::ConstTokens{y.data(), s.dt, s.B, s.P + K, s.C},
             toma::Tokens{back.data(), s.dt, s.B, T, s.C}};
      const double esz = toma::dtype_size(s.dt);
      const double merged_bytes = (double)s.B * (s.P + K) * s.C * esz, full_bytes = (double)s.B * T * s.C * esz;
      const double mms = toma::cuda::time_ms(
          [](void* p) {
            auto* c = static_cast<MergeCtx*>(p);
            toma::cuda::enqueue_merge(*c->plan, c->in, c->out);
          },
          &mc, 5, 50);
      const double mgbs = (full_bytes + merged_bytes) / (mms * 1e-3) / 1e9;
      const double mcopy = same_size_copy_ms(x.data(), back.data(), (size_t)(full_bytes + merged_bytes));
      tt::bench_row("merge " + tag + " ratio " + tt::str(ratio), mms,
                    {{"GB/s", mgbs}, {"of_copy", mgbs / copy}, {"of_same_copy", mcopy / mms}, {"same_copy_us", mcopy * 1e3}});
      const double ums = toma::cuda::time_ms(
          [](void* p) {
            auto* c = static_cast<MergeCtx*>(p);
            toma::cuda::enqueue_unmerge(*c->plan, c->in, c->out);
          },
          &uc, 5, 50);
      const double ugbs = (full_bytes + merged_bytes) / (ums * 1e-3) / 1e9;
      const double ucopy = same_size_copy_ms(x.data(), back.data(), (size_t)(full_bytes + merged_bytes));
      tt::bench_row("unmerge " + tag + " ratio " + tt::str(ratio), ums,
                    {{"GB/s", ugbs}, {"of_copy", ugbs / copy}, {"of_same_copy", ucopy / ums}, {"same_copy_us", ucopy * 1e3}});
    }
  }
}

TEST_CASE(bench_cuda, plan_regions) {
  if (!have_device()) return;
  tt::Rng rng(2);
  const int H = 64, W = 64, C = 640;
  toma::cuda::DeviceBuffer x = random_on_device(rng, DType::F16, 1, H * W, C);
  const toma::ConstTokens xv{x.data(), DType::F16, 1, H * W, C};
  struct Spec {
    const char* name;
    toma::RegionSpec::Kind kind;
    int a;
  } specs[] = {{"tile 2x2", toma::RegionSpec::Tile, 2}, {"tile 8x8", toma::RegionSpec::Tile, 8},
               {"tile 16x16", toma::RegionSpec::Tile, 16}, {"stripe 4", toma::RegionSpec::Stripe, 4},
               {"global", toma::RegionSpec::Global, 0}};
  for (const auto& s : specs) {
    toma::PlanOptions o = tile_options(H, W, s.a, 0.5);
    o.region.kind = s.kind;
    o.region.rows = s.a;
    struct Ctx {
      toma::ConstTokens x;
      toma::PlanOptions o;
    } c{xv, o};
    const bool slow = s.kind == toma::RegionSpec::Global;
    const double ms = toma::cuda::time_ms(
        [](void* p) {
          auto* c = static_cast<Ctx*>(p);
          toma::compute_plan_cuda(c->x, c->o);
        },
        &c, 1, slow ? 3 : 20);
    tt::bench_row(std::string("computePlan SDXL 64x64 B=1 C=640 float16 ") + s.name + " ratio 0.5", ms, {{"us", ms * 1e3}});
  }
}
