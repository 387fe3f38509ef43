// Plan construction on the device (SPEC sections 3-5): the layout (regions by the tiling kernel,
// counts per region on the host, as the CPU path), inverse norms, selection (greedy.cu), then the
// weights of every (batch element, region) as a dense k x n block and each merged token's mass.
#include <algorithm>
#include <cmath>
#include <list>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/plan_internal.cuh"
#include "cuda/reduce.cuh"

namespace toma {

namespace cuda {

namespace {

template <class T>
__global__ void inverse_norms_kernel(const T* __restrict__ x, int T_, int C, int P, int N, int64_t rows,
                                     double* __restrict__ inv) {
  const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  const int64_t b = row / N, t = row % N;
  const T* xr = x + ((size_t)b * T_ + P + t) * C;
  double s = 0;
  for (int c = lane; c < C; c += 32) {
    const double v = to_f(xr[c]);
    s += v * v;
  }
  s = warp_sum(s);
  if (lane == 0) inv[row] = 1.0 / fmax(sqrt(s), 1e-6);
}

constexpr int kWeightWarps = 4;
constexpr int kLocalDests = 64;  // a region with at most this many destinations keeps its logits in registers

// One warp per source token s of region r in batch element b: logits tau * cos(d, s) over the
// region's destinations, softmax in float64, entries below kWeightCutoff of the largest set to 0
// (as the CPU path drops them). Hard plans: 1 at the most similar destination (ties to the lowest),
// a destination always to itself. A is zeroed before the launch.
template <class T>
__device__ void weigh_source(const T* __restrict__ xb, int C, int n, int k, int s, int ts, const int32_t* __restrict__ dg,
                             const double* __restrict__ invb, double tau, bool hard, float* __restrict__ Ar) {
  const int lane = threadIdx.x & 31;
  const T* xs = xb + (size_t)ts * C;
  auto cosine = [&](int d) {
    const T* xd = xb + (size_t)dg[d] * C;
    double p = 0;
    for (int c = lane; c < C; c += 32) p += (double)to_f(xd[c]) * (double)to_f(xs[c]);
    return warp_sum(p) * invb[dg[d]] * invb[ts];
  };
  // Is s a destination? Destinations are ascending: at most one d matches.
  int self = -1;
  for (int d0 = 0; d0 < k; d0 += 32) {
    const unsigned hit = __ballot_sync(0xffffffffu, d0 + lane < k && dg[d0 + lane] == ts);
    if (hit) {
      self = d0 + __ffs(hit) - 1;
      break;
    }
  }
  if (hard) {
    int best = self;
    if (best < 0) {
      double bs = -INFINITY;
      best = 0;  // stays 0 only for non-finite cosines, which the binding rejects first
      for (int d = 0; d < k; ++d) {
        const double c = cosine(d);
        if (c > bs) bs = c, best = d;
      }
    }
    if (lane == 0) Ar[(size_t)best * n + s] = 1.f;
    return;
  }
  if (k <= kLocalDests) {
    double l0 = -INFINITY, l1 = -INFINITY;  // logits of d = lane and d = lane + 32
    for (int d = 0; d < k; ++d) {
      const double l = tau * cosine(d);
      if (d == lane) l0 = l;
      if (d == lane + 32) l1 = l;
    }
    const double mx = warp_max(fmax(l0, l1));
    const double e0 = lane < k ? exp(l0 - mx) : 0, e1 = lane + 32 < k ? exp(l1 - mx) : 0;
    const double sum = warp_sum(e0 + e1);
    if (lane < k && e0 >= kWeightCutoff) Ar[(size_t)lane * n + s] = (float)(e0 / sum);
    if (lane + 32 < k && e1 >= kWeightCutoff) Ar[(size_t)(lane + 32) * n + s] = (float)(e1 / sum);
    return;
  }
  // Many destinations (stripes, global): three passes recompute the cosines instead of holding
  // k logits per warp.
  double mx = -INFINITY;
  for (int d = 0; d < k; ++d) mx = fmax(mx, tau * cosine(d));
  double sum = 0;
  for (int d = 0; d < k; ++d) sum += exp(tau * cosine(d) - mx);
  for (int d = 0; d < k; ++d) {
    const double e = exp(tau * cosine(d) - mx);
    if (lane == 0 && e >= kWeightCutoff) Ar[(size_t)d * n + s] = (float)(e / sum);
  }
}

// Block (r, source slice, batch element b0 + z); warps stride over the region's sources.
template <class T>
__global__ void __launch_bounds__(kWeightWarps * 32)
    weights_kernel(const T* __restrict__ x, int T_, int C, int P, int N, int K, int b0, double tau, bool hard,
                   const int32_t* __restrict__ tokens, const int32_t* __restrict__ offsets,
                   const int32_t* __restrict__ k_off, const int64_t* __restrict__ a_off, int64_t a_total,
                   const int32_t* __restrict__ dest, const double* __restrict__ inv, float* __restrict__ A) {
  const int r = blockIdx.x, b = b0 + blockIdx.z;
  const int off = offsets[r], n = offsets[r + 1] - off, k = k_off[r + 1] - k_off[r];
  const int32_t* dg = dest + (size_t)b * K + k_off[r];
  const T* xb = x + ((size_t)b * T_ + P) * C;
  const double* invb = inv + (size_t)b * N;
  float* Ar = A + (size_t)b * a_total + a_off[r];
  for (int s = blockIdx.y * kWeightWarps + threadIdx.x / 32; s < n; s += gridDim.y * kWeightWarps)
    weigh_source(xb, C, n, k, s, tokens[off + s], dg, invb, tau, hard, Ar);
}

// mass[b, j] = sum_s A[j, s] in float64, one warp per merged token. (The CPU sums in source
// order; the order here differs only in rounding, far below the float result's precision.)
__global__ void mass_kernel(const float* __restrict__ A, int64_t a_total, const int32_t* __restrict__ offsets,
                            const int32_t* __restrict__ k_off, const int64_t* __restrict__ a_off,
                            const int32_t* __restrict__ dest_region, int B, int K, float* __restrict__ mass) {
  const int64_t e = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (e >= (int64_t)B * K) return;
  const int lane = threadIdx.x & 31;
  const int b = (int)(e / K), j = (int)(e % K), r = dest_region[j];
  const int n = offsets[r + 1] - offsets[r], d = j - k_off[r];
  const float* row = A + (size_t)b * a_total + a_off[r] + (size_t)d * n;
  double s = 0;
  for (int i = lane; i < n; i += 32) s += row[i];
  s = warp_sum(s);
  if (lane == 0) mass[e] = (float)s;
}


}  // namespace

void inverse_norms(ConstTokens x, int P, int N, double* inv) {
  const int64_t rows = (int64_t)x.B * N;
  if (rows == 0) return;
  with_dtype(x.dtype, [&](auto t) {
    using T = decltype(t);
    inverse_norms_kernel<T><<<blocks_for(rows, 8), 256, 0, kStream>>>(static_cast<const T*>(x.data), x.T, x.C, P, N,
                                                                      rows, inv);
  });
  TOMA_CUDA_LAUNCHED("computePlan (norms)");
}

namespace {

// The index buffers of a plan depend only on the grid, the regions and the counts per region:
// they are made once and shared by every plan that has them (the reuse schedule makes thousands
// of plans of a few layouts), so computePlan itself allocates only dest, A and mass.
struct Layout {
  Regions regions;
  std::vector<int32_t> k_offsets;
  std::vector<int64_t> a_offsets;
  int max_n = 0, max_k = 0;
  std::shared_ptr<const DeviceBuffer> tokens, offsets, k_off, a_off, dest_region, token_slot, token_region;
};

template <class V>
std::shared_ptr<const DeviceBuffer> shared_upload(const std::vector<V>& v, const char* what) {
  auto d = std::make_shared<DeviceBuffer>(v.size() * sizeof(V), what);
  copy_to_device(d->data(), v.data(), v.size() * sizeof(V), what);
  return d;
}

std::shared_ptr<const Layout> build_layout(const PlanOptions& o, const Regions& regions, const std::vector<int>& counts,
                                           bool tile_on_device) {
  auto L = std::make_shared<Layout>();
  L->regions = regions;
  const int R = regions.count(), N = (int)regions.tokens.size();
  L->k_offsets.assign(1, 0);
  L->a_offsets.assign(1, 0);
  for (int r = 0; r < R; ++r) {
    L->k_offsets.push_back(L->k_offsets.back() + counts[r]);
    L->a_offsets.push_back(L->a_offsets.back() + (int64_t)counts[r] * regions.size(r));
    L->max_n = std::max(L->max_n, regions.size(r));
    L->max_k = std::max(L->max_k, counts[r]);
  }
  std::vector<int32_t> dest_region(L->k_offsets.back()), token_slot(N), token_region(N);
  for (int r = 0; r < R; ++r) {
    for (int j = L->k_offsets[r]; j < L->k_offsets[r + 1]; ++j) dest_region[j] = r;
    for (int i = regions.offsets[r]; i < regions.offsets[r + 1]; ++i) {
      token_slot[regions.tokens[i]] = i;
      token_region[regions.tokens[i]] = r;
    }
  }
  if (tile_on_device) {
    auto tokens = std::make_shared<DeviceBuffer>((size_t)N * 4, "plan (region tokens)");
    auto offsets = std::make_shared<DeviceBuffer>((size_t)(R + 1) * 4, "plan (region offsets)");
    make_regions_cuda(o.H, o.W, o.region, tokens->as<int32_t>(), offsets->as<int32_t>());
    L->tokens = tokens;
    L->offsets = offsets;
  } else {
    L->tokens = shared_upload(regions.tokens, "plan (region tokens)");
    L->offsets = shared_upload(regions.offsets, "plan (region offsets)");
  }
  L->k_off = shared_upload(L->k_offsets, "plan (destination offsets)");
  L->a_off = shared_upload(L->a_offsets, "plan (weight offsets)");
  L->dest_region = shared_upload(dest_region, "plan (destination regions)");
  L->token_slot = shared_upload(token_slot, "plan (token slots)");
  L->token_region = shared_upload(token_region, "plan (token regions)");
  return L;
}

// A small LRU of layouts made on the device's tiling (uploaded layouts of other regions are not
// cached). Never destroyed: freeing device memory while the runtime unloads at exit is unsafe.
class LayoutCache {
 public:
  std::shared_ptr<const Layout> get(const PlanOptions& o, const Regions& regions, const std::vector<int>& counts) {
    const Key key{o.H, o.W, (int)o.region.kind, o.region.th, o.region.tw, o.region.rows, counts};
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = entries_.begin(); it != entries_.end(); ++it)
        if (it->first == key) {
          entries_.splice(entries_.begin(), entries_, it);
          return it->second;
        }
    }
    auto L = build_layout(o, regions, counts, true);
    std::lock_guard<std::mutex> lock(mu_);
    entries_.emplace_front(key, L);
    if (entries_.size() > kEntries) entries_.pop_back();
    return L;
  }

 private:
  struct Key {
    int H, W, kind, th, tw, rows;
    std::vector<int> counts;
    bool operator==(const Key& k) const {
      return H == k.H && W == k.W && kind == k.kind && th == k.th && tw == k.tw && rows == k.rows && counts == k.counts;
    }
  };
  static constexpr size_t kEntries = 32;
  std::mutex mu_;
  std::list<std::pair<Key, std::shared_ptr<const Layout>>> entries_;
};

LayoutCache& layouts() {
  static LayoutCache* cache = new LayoutCache();
  return *cache;
}

// Host regions by grid and region spec (make_regions is O(N) and runs before every plan).
std::shared_ptr<const Regions> cached_regions(const PlanOptions& o) {
  static std::mutex mu;
  static auto* entries = new std::list<std::pair<std::string, std::shared_ptr<const Regions>>>();
  const std::string key = std::to_string(o.H) + "x" + std::to_string(o.W) + ":" + std::to_string((int)o.region.kind) +
                          ":" + std::to_string(o.region.th) + "," + std::to_string(o.region.tw) + "," +
                          std::to_string(o.region.rows);
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = entries->begin(); it != entries->end(); ++it)
      if (it->first == key) {
        entries->splice(entries->begin(), *entries, it);
        return it->second;
      }
  }
  auto R = std::make_shared<const Regions>(make_regions(o.H, o.W, o.region));  // throws on a bad spec
  std::lock_guard<std::mutex> lock(mu);
  entries->emplace_front(key, R);
  if (entries->size() > 32) entries->pop_back();
  return R;
}

}  // namespace

// The layout of a plan with the given destinations per region: regions (tiled on the device),
// offsets of every region's weights, the region and slot of every token, and the buffers.
std::shared_ptr<DevicePlan> plan_layout(const PlanOptions& o, int B, const Regions& regions,
                                        const std::vector<int>& counts, bool tile_on_device) {
  auto L = tile_on_device ? layouts().get(o, regions, counts) : build_layout(o, regions, counts, false);
  auto p = std::make_shared<DevicePlan>();
  p->opts = o;
  p->B = B;
  p->P = o.prefix;
  p->N = o.H * o.W;
  p->hard = std::isinf(o.tau);
  p->regions = L->regions;
  p->R = L->regions.count();
  p->k_offsets = L->k_offsets;
  p->a_offsets = L->a_offsets;
  p->max_n = L->max_n;
  p->max_k = L->max_k;
  p->K = p->k_offsets.back();
  p->a_total = p->a_offsets.back();
  p->tokens = DeviceBuffer::view_of(L->tokens);
  p->offsets = DeviceBuffer::view_of(L->offsets);
  p->k_off = DeviceBuffer::view_of(L->k_off);
  p->a_off = DeviceBuffer::view_of(L->a_off);
  p->dest_region = DeviceBuffer::view_of(L->dest_region);
  p->token_slot = DeviceBuffer::view_of(L->token_slot);
  p->token_region = DeviceBuffer::view_of(L->token_region);
  p->dest = DeviceBuffer((size_t)B * p->K * 4, "plan (destinations)");
  p->A = DeviceBuffer((size_t)B * p->a_total * 4, "plan (weights)");
  p->mass = DeviceBuffer((size_t)B * p->K * 4, "plan (mass)");
  return p;
}

// Weights and masses of every (b, region) from plan.dest.
void weigh_on_device(ConstTokens x, DevicePlan& p, const double* inv) {
  if (p.a_total > 0)
    TOMA_CUDA_CHECK("computePlan", cudaMemsetAsync(p.A.data(), 0, p.A.bytes(), kStream));
  const bool identity = p.opts.ratio == 0 && p.opts.similarity == 0 && p.K == p.N;  // as identity_plan
  const int slices = std::min(kMaxGridYZ, (p.max_n + kWeightWarps - 1) / kWeightWarps);
  for (int b0 = 0; b0 < p.B; b0 += kMaxGridYZ) {
    const dim3 grid(p.R, slices, std::min(kMaxGridYZ, p.B - b0));
    with_dtype(x.dtype, [&](auto t) {
      using T = decltype(t);
      weights_kernel<T><<<grid, kWeightWarps * 32, 0, kStream>>>(
          static_cast<const T*>(x.data), x.T, x.C, p.P, p.N, p.K, b0, p.opts.tau, p.hard || identity,
          p.tokens.as<int32_t>(), p.offsets.as<int32_t>(), p.k_off.as<int32_t>(), p.a_off.as<int64_t>(), p.a_total,
          p.dest.as<int32_t>(), inv, p.A.as<float>());
    });
    TOMA_CUDA_LAUNCHED("computePlan (weights)");
  }
  const int64_t BK = (int64_t)p.B * p.K;
  mass_kernel<<<blocks_for(BK, 8), 256, 0, kStream>>>(p.A.as<float>(), p.a_total, p.offsets.as<int32_t>(),
                                                       p.k_off.as<int32_t>(), p.a_off.as<int64_t>(),
                                                       p.dest_region.as<int32_t>(), p.B, p.K, p.mass.as<float>());
  TOMA_CUDA_LAUNCHED("computePlan (mass)");
}

namespace {

// The adaptive mode's counts depend on coverage sums the CPU path computes; it runs there on a
// host copy of x and the plan is uploaded.
std::shared_ptr<DevicePlan> adaptive_plan(ConstTokens x, const PlanOptions& o) {
  std::vector<uint8_t> host((size_t)x.B * x.T * x.C * dtype_size(x.dtype));
  copy_to_host(host.data(), x.data, host.size(), "computePlan");
  auto cpu = compute_plan_cpu(ConstTokens{host.data(), x.dtype, x.B, x.T, x.C}, o);
  return upload_plan(*cpu);
}

// The plan's layout for x and o (regions and counts cached on the host, layout buffers on the
// device): nothing is synchronised or copied once the layout of these options is cached.
std::shared_ptr<DevicePlan> layout_for(ConstTokens x, const PlanOptions& o) {
  check_plan_options(x, o);
  const auto held = cached_regions(o);  // the cache may drop it meanwhile
  const Regions& regions = *held;
  std::vector<int> counts(regions.count());
  for (int r = 0; r < regions.count(); ++r) counts[r] = destination_count(regions.size(r), o.ratio);
  return plan_layout(o, x.B, regions, counts, true);
}

bool identity_plan(const DevicePlan& p) { return p.opts.ratio == 0 && p.opts.similarity == 0 && p.K == p.N; }

// Destinations of every batch element into p.dest; norms into *inv (allocated here) when the
// weights will need them or the selection does (regions above kSmallRegion).
void select_into(ConstTokens x, const PlanOptions& o, DevicePlan& p, DeviceBuffer* inv, bool norms_for_weights) {
  if (norms_for_weights || p.max_n > kSmallRegion) {  // the small-region selection reads its Gram diagonal
    *inv = DeviceBuffer((size_t)x.B * p.N * sizeof(double), "computePlan (norms)");
    inverse_norms(x, p.P, p.N, inv->as<double>());
  }
  const int Bsel = o.share_batch ? 1 : x.B;
  select_on_device(x, p, inv->as<double>(), Bsel);
  for (int b = Bsel; b < x.B; ++b)
    TOMA_CUDA_CHECK("computePlan", cudaMemcpyAsync(p.dest.as<int32_t>() + (size_t)b * p.K, p.dest.data(),
                                                   (size_t)p.K * 4, cudaMemcpyDeviceToDevice, kStream));
}

std::shared_ptr<DevicePlan> selected(ConstTokens x, const PlanOptions& o, DeviceBuffer* inv) {
  auto p = layout_for(x, o);
  select_into(x, o, *p, inv, false);
  return p;
}

}  // namespace

}  // namespace cuda

std::shared_ptr<DevicePlan> compute_plan_cuda(ConstTokens x, const PlanOptions& o) {
  if (o.similarity > 0) return cuda::adaptive_plan(x, o);
  auto p = cuda::layout_for(x, o);
  if (p->max_n <= cuda::kSmallRegion && (!o.share_batch || x.B == 1)) {
    // Tiles: one launch selects, weighs and sums the masses (no norms, no memset, no scratch).
    cuda::plan_small_on_device(x, *p, p->hard || cuda::identity_plan(*p));
  } else {
    cuda::DeviceBuffer inv;
    cuda::select_into(x, o, *p, &inv, true);
    cuda::weigh_on_device(x, *p, inv.as<double>());
  }
  cuda::synchronize("computePlan");  // the contract of ops/cuda.h: the plan is complete on return
  return p;
}

std::vector<int32_t> select_destinations_cuda(ConstTokens x, const PlanOptions& o, int* K) {
  if (o.similarity > 0) {
    auto p = cuda::adaptive_plan(x, o);
    std::vector<int32_t> d((size_t)p->B * p->K);
    cuda::copy_to_host(d.data(), p->dest.data(), d.size() * 4, "selectDestinations");
    *K = p->K;
    return d;
  }
  cuda::DeviceBuffer inv;
  auto p = cuda::selected(x, o, &inv);
  std::vector<int32_t> d((size_t)p->B * p->K);
  cuda::copy_to_host(d.data(), p->dest.data(), d.size() * 4, "selectDestinations");  // synchronises
  *K = p->K;
  return d;
}

std::shared_ptr<DevicePlan> compute_plan_with_destinations_cuda(ConstTokens x, const PlanOptions& o,
                                                                const int32_t* dest, int rows, int K) {
  check_plan_options(x, o);
  if (rows != 1 && rows != x.B)
    throw range_error("destinations must have 1 or B = " + std::to_string(x.B) + " rows, got " + std::to_string(rows));
  const auto held = cuda::cached_regions(o);
  const Regions& regions = *held;
  std::vector<int> counts;
  std::string why;
  if (!check_destinations(regions, dest, rows, K, &counts, &why)) throw range_error(why);
  auto p = cuda::plan_layout(o, x.B, regions, counts, true);
  for (int b = 0; b < x.B; ++b)
    cuda::copy_to_device(p->dest.as<int32_t>() + (size_t)b * K, dest + (size_t)(rows == 1 ? 0 : b) * K,
                         (size_t)K * 4, "computePlan");
  cuda::DeviceBuffer inv((size_t)x.B * p->N * sizeof(double), "computePlan (norms)");
  cuda::inverse_norms(x, p->P, p->N, inv.as<double>());
  cuda::weigh_on_device(x, *p, inv.as<double>());
  cuda::synchronize("computePlan");
  return p;
}

}  // namespace toma
