// attention_cuda and merge_attention_unmerge_cuda (ops/cuda.h) against the CPU path on fresh
// random data: fp16 / bf16 on the tensor-core kernel (head dims 16..128), float32, mixed dtypes
// and the other head dims on the float32 kernel, Tq / Tk off the 64- and 32-row tiles, B > 1,
// several heads, key bias, explicit scales, bases not 16-byte aligned; then merge-attention-unmerge
// with plans from compute_plan_cpu uploaded by upload_plan: prefixes, odd grids with remainder
// tiles, stripes, global regions, hard plans, the identity plan, merge_queries = false and
// proportional attention. fp16 / bf16 merge-attention-unmerge with regions of at most 64
// destinations runs fused (merge of q and unmerge inside the attention launch): those cases are
// also compared with the unfused composition of the public ops (merge_cuda, attention_cuda,
// unmerge_cuda), which should agree to the bit, and plans with larger regions check the fallback.
// The CPU reference writes float32, so the only rounding to the output dtype is the device's.
// Every case without a usable device notes it and passes.
// TOMA_TEST_SMALL=1 (compute-sanitizer runs) keeps only the small shapes.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "ops/attention.h"
#include "ops/cuda.h"
#include "ops/device.h"
#include "ops/merge_attention_unmerge.h"
#include "ops/plan.h"
#include "tests/harness.h"

using toma::DType;

namespace {

const double kInf = std::numeric_limits<double>::infinity();
const DType F32 = DType::F32, F16 = DType::F16, BF16 = DType::BF16;

bool small_run() {
  const char* s = std::getenv("TOMA_TEST_SMALL");
  return s && *s && std::strcmp(s, "0") != 0;
}

bool device_or_note() {
  const toma::DeviceInfo& d = toma::cuda_device_info();
  if (!d.available) {
    tt::note("no usable CUDA device, skipped: " + d.reason);
    return false;
  }
  return true;
}

// Runs one sub-case; an exception fails it (with its description) without ending the case.
template <class F>
void guarded(const std::string& what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    tt::fail(__FILE__, __LINE__, what + ": unexpected exception: " + e.what());
  }
}

// A device copy of a host tensor, `offset` elements into its allocation (offset 1 leaves the base
// 2-byte aligned only, which the kernels must handle without 16-byte loads).
struct DeviceTensor {
  toma::cuda::DeviceBuffer buf;
  DType dtype;
  int B, T, C;
  size_t offset;
  explicit DeviceTensor(const tt::Tensor& t, size_t off = 0)
      : buf(t.bytes.size() + off * toma::dtype_size(t.dtype), "test tensor"),
        dtype(t.dtype),
        B(t.B),
        T(t.T),
        C(t.C),
        offset(off) {
    toma::cuda::copy_to_device(data(), t.bytes.data(), t.bytes.size(), "test upload");
  }
  void* data() const { return buf.as<char>() + offset * toma::dtype_size(dtype); }
  toma::ConstTokens view() const { return {data(), dtype, B, T, C}; }
  toma::Tokens mview() { return {data(), dtype, B, T, C}; }
  tt::Tensor download() const {
    tt::Tensor t(dtype, B, T, C);
    toma::cuda::copy_to_host(t.bytes.data(), data(), t.bytes.size(), "test download");
    return t;
  }
};

// ---- attention_cuda -------------------------------------------------------------------------------

struct Att {
  int B, Tq, Tk, heads, D;
  DType q, k, v, out;
  bool bias = false;
  double scale = 0;
  size_t offset = 0;
  double mag = 1;
};

std::string describe(const Att& c) {
  return "B=" + std::to_string(c.B) + " Tq=" + std::to_string(c.Tq) + " Tk=" + std::to_string(c.Tk) +
         " heads=" + std::to_string(c.heads) + " D=" + std::to_string(c.D) + " " + toma::dtype_name(c.q) + "/" +
         toma::dtype_name(c.k) + "/" + toma::dtype_name(c.v) + "->" + toma::dtype_name(c.out) +
         (c.bias ? " key_bias" : "") + (c.scale > 0 ? " scale=" + tt::str(c.scale) : "") +
         (c.offset ? " offset=" + std::to_string(c.offset) : "") + (c.mag != 1 ? " mag=" + tt::str(c.mag) : "");
}

bool too_big_for_small(const Att& c) { return small_run() && ((double)c.Tq * c.Tk * c.B * c.heads > 40000 || c.D > 128); }

void run_attention(const Att& c, uint32_t seed) {
  if (too_big_for_small(c)) return;
  const std::string what = describe(c);
  guarded(what, [&] {
    tt::Rng rng(seed);
    const int C = c.heads * c.D;
    const tt::Tensor q = tt::random_tensor(rng, c.q, c.B, c.Tq, C, c.mag);
    const tt::Tensor k = tt::random_tensor(rng, c.k, c.B, c.Tk, C, c.mag);
    const tt::Tensor v = tt::random_tensor(rng, c.v, c.B, c.Tk, C);
    std::vector<float> bias;
    if (c.bias) {
      bias.resize((size_t)c.B * c.Tk);
      for (float& x : bias) x = (float)(2.0 * rng.normal());
    }
    tt::Tensor want(F32, c.B, c.Tq, C);
    toma::AttentionParams p;
    p.q = q.view();
    p.k = k.view();
    p.v = v.view();
    p.out = want.mview();
    p.heads = c.heads;
    p.scale = (float)c.scale;
    p.key_bias = c.bias ? bias.data() : nullptr;
    toma::attention_cpu(p);

    DeviceTensor dq(q, c.offset), dk(k, c.offset), dv(v, c.offset);
    DeviceTensor dout(tt::poisoned_tensor(c.out, c.B, c.Tq, C), c.offset);
    toma::cuda::DeviceBuffer dbias;
    if (c.bias) {
      dbias = toma::cuda::DeviceBuffer(bias.size() * sizeof(float), "test bias");
      toma::cuda::copy_to_device(dbias.data(), bias.data(), bias.size() * sizeof(float), "test upload");
    }
    toma::AttentionParams g = p;
    g.q = dq.view();
    g.k = dk.view();
    g.v = dv.view();
    g.out = dout.mview();
    g.key_bias = c.bias ? dbias.as<float>() : nullptr;
    toma::attention_cuda(g);
    CHECK_MSG(dq.download().bytes == q.bytes && dk.download().bytes == k.bytes && dv.download().bytes == v.bytes,
              what + ": input modified");
    CHECK_REL(dout.download().values(), want.values(), tt::dtype_tol({c.q, c.k, c.v, c.out}, 1e-4), what);
  });
}

// ---- merge_attention_unmerge_cuda ---------------------------------------------------------------

struct Mau {
  int B, H, W, P, heads, D;
  toma::RegionSpec::Kind kind;
  int a, b;  // tile th x tw, or stripe rows b
  double ratio, tau;
  DType dt, out;
  bool merge_queries = true, proportional = false;
};

std::string describe(const Mau& c) {
  const std::string region = c.kind == toma::RegionSpec::Tile ? "tile " + std::to_string(c.a) + "x" + std::to_string(c.b)
                             : c.kind == toma::RegionSpec::Stripe ? "stripe " + std::to_string(c.b)
                                                                  : std::string("global");
  return "B=" + std::to_string(c.B) + " grid " + std::to_string(c.H) + "x" + std::to_string(c.W) + " P=" +
         std::to_string(c.P) + " heads=" + std::to_string(c.heads) + "x" + std::to_string(c.D) + " " + region +
         " ratio=" + tt::str(c.ratio) + " tau=" + tt::str(c.tau) + " " + toma::dtype_name(c.dt) + "->" +
         toma::dtype_name(c.out) + (c.merge_queries ? "" : " merge_queries=false") +
         (c.proportional ? " proportional" : "");
}

// What a case expects of the plan: nothing, every region fits a query tile (the fused path for
// fp16 / bf16), or some region does not (the unfused fallback).
enum class Path { Any, Fusable, Fallback };

// unmerge(attention(merge(q), merge(k), merge(v))) from the public device ops: the unfused path.
void mau_unfused(const toma::Plan& plan, const toma::DevicePlan& dplan, const toma::MergeAttentionParams& g, DType dt,
                 std::vector<toma::cuda::DeviceBuffer>& keep, DeviceTensor& out) {
  const int B = plan.B, Tm = plan.P + plan.K, C = g.q.C;
  auto buffer = [&](size_t bytes) -> void* {
    keep.emplace_back(std::max<size_t>(bytes, 1), "test temporaries");
    return keep.back().data();
  };
  const size_t n = (size_t)B * Tm * C;
  const size_t es = toma::dtype_size(dt);
  const toma::Tokens mq{buffer(n * es), dt, B, Tm, C}, mk{buffer(n * es), dt, B, Tm, C};
  const toma::Tokens mv{buffer(n * es), dt, B, Tm, C}, mo{buffer(n * 4), F32, B, Tm, C};
  toma::merge_cuda(dplan, g.q, mq);
  toma::merge_cuda(dplan, g.k, mk);
  toma::merge_cuda(dplan, g.v, mv);
  toma::AttentionParams a;
  a.q = mq;
  a.k = mk;
  a.v = mv;
  a.out = mo;
  a.heads = g.heads;
  a.scale = g.scale;
  if (g.proportional) {
    std::vector<float> bias((size_t)B * Tm, 0.f);
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < plan.K; ++j)
        bias[(size_t)b * Tm + plan.P + j] = std::log(std::max(plan.weights[b].mass[j], 1e-30f));
    float* d = static_cast<float*>(buffer(bias.size() * 4));
    toma::cuda::copy_to_device(d, bias.data(), bias.size() * 4, "test upload");
    a.key_bias = d;
  }
  toma::attention_cuda(a);
  toma::unmerge_cuda(dplan, mo, out.mview());
}

void run_mau(const Mau& c, uint32_t seed, Path path = Path::Any) {
  const int T = c.P + c.H * c.W, C = c.heads * c.D;
  if (small_run() && (double)T * T * c.B * c.heads > 60000) return;
  const std::string what = describe(c);
  guarded(what, [&] {
    tt::Rng rng(seed);
    toma::PlanOptions o;
    o.H = c.H;
    o.W = c.W;
    o.ratio = c.ratio;
    o.region.kind = c.kind;
    o.region.th = c.a;
    o.region.tw = c.b;
    o.region.rows = c.b;
    o.tau = c.tau;
    o.prefix = c.P;
    const tt::Tensor h = tt::random_tensor(rng, c.dt, c.B, T, C);
    const std::shared_ptr<toma::Plan> plan = toma::compute_plan_cpu(h.view(), o);
    const std::shared_ptr<toma::DevicePlan> dplan = toma::upload_plan(*plan);
    const tt::Tensor q = tt::random_tensor(rng, c.dt, c.B, T, C), k = tt::random_tensor(rng, c.dt, c.B, T, C),
                     v = tt::random_tensor(rng, c.dt, c.B, T, C);
    tt::Tensor want(F32, c.B, T, C);
    toma::MergeAttentionParams p;
    p.q = q.view();
    p.k = k.view();
    p.v = v.view();
    p.out = want.mview();
    p.heads = c.heads;
    p.merge_queries = c.merge_queries;
    p.proportional = c.proportional;
    toma::merge_attention_unmerge_cpu(*plan, p);

    DeviceTensor dq(q), dk(k), dv(v), dout(tt::poisoned_tensor(c.out, c.B, T, C));
    toma::MergeAttentionParams g = p;
    g.q = dq.view();
    g.k = dk.view();
    g.v = dv.view();
    g.out = dout.mview();
    toma::merge_attention_unmerge_cuda(*dplan, g);
    CHECK_MSG(dq.download().bytes == q.bytes && dk.download().bytes == k.bytes && dv.download().bytes == v.bytes,
              what + ": input modified");
    const tt::Tensor got = dout.download();
    CHECK_REL(got.values(), want.values(), tt::dtype_tol({c.dt, c.out}, 1e-4), what + " (K=" +
              std::to_string(plan->K) + ")");
    if (path == Path::Any) return;
    CHECK_MSG(path == Path::Fusable ? dplan->max_k <= 64 : dplan->max_k > 64,
              what + ": the plan's largest region has " + std::to_string(dplan->max_k) + " destinations");
    if (!c.merge_queries) return;
    std::vector<toma::cuda::DeviceBuffer> keep;
    DeviceTensor uout(tt::poisoned_tensor(c.out, c.B, T, C));
    mau_unfused(*plan, *dplan, g, c.dt, keep, uout);
    const tt::Tensor unfused = uout.download();
    size_t differ = 0;
    for (size_t i = 0; i < got.bytes.size(); ++i) differ += got.bytes[i] != unfused.bytes[i];
    if (differ) tt::note(what + ": " + std::to_string(differ) + " output bytes differ from the unfused composition");
    // Same kernels' arithmetic on both paths (the log of the mass may differ by an ulp between
    // the device and the host): far inside the dtype tolerance.
    CHECK_REL(got.values(), unfused.values(), 1e-4, what + " against the unfused composition");
  });
}

const auto Tile = toma::RegionSpec::Tile;
const auto Stripe = toma::RegionSpec::Stripe;
const auto Global = toma::RegionSpec::Global;

}  // namespace

TEST_CASE(cuda, attention_errors) {
  // Raised before any device work, so these hold in every build, with or without a device.
  toma::AttentionParams p;
  p.q = p.k = p.v = toma::ConstTokens{nullptr, F16, 1, 4, 64};
  p.out = toma::Tokens{nullptr, F16, 1, 4, 64};
  p.heads = 1;
  toma::RowGather g;
  p.k_rows = &g;
  CHECK_THROWS(toma::attention_cuda(p), toma::DeviceError);
  p.k_rows = nullptr;
  p.q = p.k = p.v = toma::ConstTokens{nullptr, F16, 1, 4, 264};
  p.out = toma::Tokens{nullptr, F16, 1, 4, 264};
  CHECK_THROWS(toma::attention_cuda(p), toma::DeviceError);  // head dim 264 > 256
  if (!device_or_note()) return;
  p.out = toma::Tokens{nullptr, F16, 1, 5, 264};
  CHECK_THROWS(toma::attention_cuda(p), toma::ArgError);  // out rows != q rows
}

TEST_CASE(cuda, attention_tensor_cores_f16_bf16) {
  if (!device_or_note()) return;
  const Att cases[] = {
      {1, 1, 1, 1, 64, F16, F16, F16, F16},
      {2, 17, 77, 3, 64, F16, F16, F16, F16, true},
      {2, 77, 17, 2, 128, BF16, BF16, BF16, BF16},
      {2, 64, 128, 2, 64, F16, F16, F16, F16},  // whole tiles
      {1, 65, 63, 1, 64, BF16, BF16, BF16, BF16, true},
      {1, 130, 65, 4, 128, F16, F16, F16, F32},
      {2, 100, 300, 2, 64, BF16, BF16, BF16, BF16, false, 0.3},
      {1, 50, 129, 2, 128, F16, F16, F16, BF16, true, 0.05},
      {1, 1000, 1000, 2, 64, F16, F16, F16, F16},
      {1, 300, 1000, 1, 128, BF16, BF16, BF16, BF16, true},
      {1, 200, 700, 2, 64, F16, F16, F16, F16, false, 0, 0, 3.0},  // large scores: peaked softmax
      {1, 77, 1000, 3, 128, BF16, BF16, BF16, F32, true, 0, 0, 2.0},
  };
  uint32_t seed = 1000;
  for (const Att& c : cases) run_attention(c, seed++);
}

TEST_CASE(cuda, attention_tensor_core_head_dims) {
  if (!device_or_note()) return;
  uint32_t seed = 1100;
  for (int D = 16; D <= 128; D += 16) {
    run_attention({1, 45, 100, 2, D, F16, F16, F16, F16, D % 32 == 0}, seed++);
    run_attention({2, 70, 33, 1, D, BF16, BF16, BF16, BF16, D % 32 != 0}, seed++);
  }
}

TEST_CASE(cuda, attention_unaligned_bases) {
  if (!device_or_note()) return;
  // Bases 2 bytes past a 16-byte boundary: the tensor-core kernel's element-wise load path.
  run_attention({2, 33, 70, 2, 64, F16, F16, F16, F16, false, 0, 1}, 1200);
  run_attention({1, 50, 90, 2, 128, BF16, BF16, BF16, BF16, true, 0, 1}, 1201);
  run_attention({1, 20, 40, 1, 80, F32, F32, F32, F32, false, 0, 1}, 1202);
}

TEST_CASE(cuda, attention_float32) {
  if (!device_or_note()) return;
  const Att cases[] = {
      {1, 1, 1, 1, 64, F32, F32, F32, F32},
      {2, 17, 77, 3, 64, F32, F32, F32, F32, true},
      {2, 50, 70, 2, 80, F32, F32, F32, F32},
      {1, 33, 45, 3, 17, F32, F32, F32, F32, true},
      {1, 20, 30, 2, 8, F32, F32, F32, F32, false, 0.5},
      {1, 31, 33, 1, 3, F32, F32, F32, F32},
      {1, 77, 1000, 2, 128, F32, F32, F32, F32, true},
      {2, 300, 200, 2, 64, F32, F32, F32, F16},
      {1, 40, 50, 1, 248, F32, F32, F32, F32},
      {1, 100, 700, 2, 64, F32, F32, F32, F32, false, 0, 0, 2.0},
  };
  uint32_t seed = 1300;
  for (const Att& c : cases) run_attention(c, seed++);
}

TEST_CASE(cuda, attention_other_head_dims_and_mixed_dtypes) {
  if (!device_or_note()) return;
  const Att cases[] = {
      // Half inputs with head dims off the tensor-core set run on the float32 kernel.
      {1, 37, 90, 2, 8, F16, F16, F16, F16},
      {2, 40, 70, 2, 40, F16, F16, F16, F16, true},
      {1, 50, 60, 3, 72, BF16, BF16, BF16, BF16},
      {1, 64, 100, 1, 160, F16, F16, F16, F16},
      {1, 40, 80, 2, 248, BF16, BF16, BF16, F32, true},
      // Mixed input dtypes.
      {1, 100, 300, 2, 64, F16, BF16, F32, F16},
      {2, 50, 70, 4, 80, BF16, F32, F16, F32, true},
      {1, 60, 90, 2, 128, F16, F16, BF16, BF16},
  };
  uint32_t seed = 1400;
  for (const Att& c : cases) run_attention(c, seed++);
  // Head dim 256 needs 102656 bytes of shared memory per block on the float32 kernel: the device's
  // opt-in limit (not its capability: sm_86/89/120 allow about 99 KB) says whether it runs or is a
  // DeviceError saying so.
  const toma::DeviceInfo& d = toma::cuda_device_info();
  if (d.smem_optin >= 102656) {
    run_attention({1, 40, 50, 1, 256, F32, F32, F32, F32, true}, seed++);
    run_attention({1, 40, 50, 2, 256, F16, F16, F16, F16}, seed++);
  } else {
    tt::Rng rng(seed++);
    const tt::Tensor q = tt::random_tensor(rng, F32, 1, 8, 256), k = tt::random_tensor(rng, F32, 1, 8, 256);
    toma::cuda::DeviceBuffer dq(q.bytes.size(), "test"), dk(k.bytes.size(), "test"), dout(q.bytes.size(), "test");
    toma::cuda::copy_to_device(dq.data(), q.bytes.data(), q.bytes.size(), "test");
    toma::cuda::copy_to_device(dk.data(), k.bytes.data(), k.bytes.size(), "test");
    toma::AttentionParams p;
    p.q = {dq.data(), F32, 1, 8, 256};
    p.k = p.v = {dk.data(), F32, 1, 8, 256};
    p.out = {dout.data(), F32, 1, 8, 256};
    p.heads = 1;
    CHECK_THROWS(toma::attention_cuda(p), toma::DeviceError);
  }
}

TEST_CASE(cuda, merge_attention_unmerge_against_cpu) {
  if (!device_or_note()) return;
  const Mau cases[] = {
      {2, 8, 8, 0, 2, 64, Tile, 4, 4, 0.5, 1000, F16, F16},
      {1, 9, 7, 7, 4, 32, Tile, 4, 4, 0.5, kInf, BF16, BF16},  // odd grid, remainder tiles, prefix
      {2, 16, 16, 16, 2, 128, Tile, 4, 4, 0.75, 1000, F16, F32},
      {1, 11, 6, 5, 3, 64, Stripe, 0, 3, 0.5, 1000, F32, F32},
      {2, 7, 9, 0, 1, 128, Global, 0, 0, 0.6, 10, BF16, BF16},
      {1, 6, 6, 0, 2, 16, Tile, 4, 4, 0.0, 1000, F16, F16},  // identity plan
      {2, 10, 10, 3, 2, 80, Tile, 3, 3, 0.5, 1000, F32, F32},
      {1, 13, 11, 2, 2, 64, Tile, 5, 3, 0.25, kInf, F16, BF16},
      {2, 32, 32, 77, 4, 64, Tile, 4, 4, 0.5, 1000, F16, F16},
      {1, 24, 24, 64, 2, 128, Tile, 4, 4, 0.75, 1000, BF16, BF16},
  };
  uint32_t seed = 1500;
  for (const Mau& c : cases) run_mau(c, seed++);
}

TEST_CASE(cuda, merge_attention_unmerge_keys_only_and_proportional) {
  if (!device_or_note()) return;
  Mau cases[] = {
      {2, 8, 8, 3, 2, 64, Tile, 4, 4, 0.75, 1000, F16, F16, false, false},
      {1, 10, 10, 16, 2, 80, Global, 0, 0, 0.5, 10, F32, F32, false, false},
      {1, 9, 7, 0, 2, 64, Tile, 4, 4, 0.5, kInf, BF16, BF16, false, true},
      {2, 8, 8, 4, 2, 64, Tile, 4, 4, 0.5, 1000, F16, F16, true, true},
      {1, 12, 12, 0, 2, 128, Tile, 4, 4, 0.75, kInf, BF16, F32, true, true},
      {1, 9, 9, 5, 3, 32, Stripe, 0, 2, 0.5, 1000, F32, F32, true, true},
      {1, 33, 31, 10, 2, 64, Tile, 4, 4, 0.25, 1000, F16, F16, false, true},
      {2, 20, 20, 32, 2, 128, Tile, 4, 4, 0.5, kInf, F16, F16, true, true},
  };
  uint32_t seed = 1600;
  for (const Mau& c : cases) run_mau(c, seed++);
}

TEST_CASE(cuda, merge_attention_unmerge_fused) {
  if (!device_or_note()) return;
  const Path Fusable = Path::Fusable, Fallback = Path::Fallback;
  struct Case {
    Mau c;
    Path path;
  };
  const Case cases[] = {
      // Odd grids: remainder tiles give regions of different k, so groups end off the tile edge.
      {{2, 9, 7, 7, 2, 64, Tile, 4, 4, 0.5, 1000, F16, F16}, Fusable},
      {{2, 9, 7, 7, 2, 64, Tile, 4, 4, 0.5, 1000, F16, F16, true, true}, Fusable},
      {{1, 13, 11, 70, 2, 128, Tile, 4, 4, 0.5, kInf, BF16, BF16, true, true}, Fusable},  // prefix over a tile
      {{1, 13, 11, 70, 2, 128, Tile, 4, 4, 0.5, kInf, BF16, BF16}, Fusable},
      {{2, 17, 15, 0, 2, 64, Tile, 3, 5, 0.75, 1000, BF16, F32, true, true}, Fusable},
      {{1, 20, 19, 5, 3, 128, Tile, 4, 4, 0.25, 1000, F16, BF16}, Fusable},
      {{1, 24, 22, 64, 2, 64, Tile, 8, 8, 0.5, 1000, F16, F16, true, true}, Fusable},  // two regions a group
      {{1, 30, 31, 1, 1, 64, Tile, 16, 16, 0.75, 1000, F16, F16}, Fusable},            // k = 64: one a group
      {{1, 30, 31, 1, 1, 128, Tile, 16, 16, 0.75, kInf, BF16, F16, true, true}, Fusable},
      {{2, 12, 12, 3, 2, 64, Tile, 4, 4, 0.0, 1000, F16, F16}, Fusable},  // identity plan
      {{1, 33, 31, 10, 2, 64, Tile, 4, 4, 0.25, 1000, F16, F16, false, true}, Fusable},  // keys only
      // Regions over 64 destinations: the unfused fallback.
      {{1, 12, 12, 3, 2, 64, Stripe, 0, 12, 0.5, 1000, F16, F16, true, true}, Fallback},
      {{1, 12, 12, 0, 2, 128, Global, 0, 0, 0.5, 10, BF16, BF16}, Fallback},
      {{1, 14, 20, 5, 2, 64, Tile, 10, 14, 0.5, 1000, BF16, F16, true, true}, Fallback},
  };
  uint32_t seed = 1700;
  for (const Case& k : cases) run_mau(k.c, seed++, k.path);
}
