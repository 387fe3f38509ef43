// The CUDA side of the ops, callable from plain C++ (no CUDA headers here). Every entry point runs
// on the calling thread's per-thread stream (cudaStreamPerThread), synchronises before it returns,
// and throws DeviceError naming the op on any CUDA failure (out of memory included): nothing
// aborts, and the napi layer turns it into a JavaScript Error. In a build without CUDA
// (csrc/cuda/no_cuda.cc) every entry point throws DeviceError("... built without CUDA").
//
// Tokens views passed to these functions hold DEVICE pointers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "ops/attention.h"
#include "ops/merge_attention_unmerge.h"
#include "ops/plan.h"
#include "ops/regions.h"
#include "ops/tensor.h"

namespace toma {
namespace cuda {

// Device memory from the stream-ordered pool of the calling thread's stream (allocation is cheap
// once the pool is warm). Move-only; frees on destruction (errors there are swallowed: a
// destructor must not throw). Every op synchronises before it returns, so nothing still reads a
// buffer when its owner lets it go. A view shares another buffer's memory and keeps it alive.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // `what` names the allocation in the out-of-memory message.
  DeviceBuffer(size_t bytes, const char* what);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_), owner_(std::move(o.owner_)) { o.p_ = nullptr, o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  static DeviceBuffer view_of(const std::shared_ptr<const DeviceBuffer>& owner) {
    DeviceBuffer v;
    v.p_ = owner->p_;
    v.n_ = owner->n_;
    v.owner_ = owner;
    return v;
  }
  bool is_view() const { return owner_ != nullptr; }
  void* data() const { return p_; }
  size_t bytes() const { return n_; }
  template <class T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
  std::shared_ptr<const DeviceBuffer> owner_;
};

// Synchronous copies on the calling thread's stream.
void copy_to_device(void* dst, const void* src, size_t bytes, const char* op);
void copy_to_host(void* dst, const void* src, size_t bytes, const char* op);
void copy_on_device(void* dst, const void* src, size_t bytes, const char* op);
// Enqueued only (no synchronisation): for timing the card's copy bandwidth.
void enqueue_copy_on_device(void* dst, const void* src, size_t bytes, const char* op);
// Waits for the calling thread's stream and turns a pending error into DeviceError(op).
void synchronize(const char* op);

// Median milliseconds of fn (which launches work on the calling thread's stream) over `iters`
// runs after `warmup`, each timed by a pair of CUDA events. For the benchmarks.
double time_ms(void (*fn)(void*), void* ctx, int warmup, int iters);

// Region layout on the device (SPEC section 2), computed by a kernel: tokens [N] region by
// region, ascending inside; offsets [R + 1]. Returns R. The buffers must hold N and R + 1 int32.
int make_regions_cuda(int H, int W, const RegionSpec& spec, int32_t* tokens, int32_t* offsets);

}  // namespace cuda

// A plan resident on the device. Per batch element b and region r (n_r tokens, k_r destinations)
// the weights are the dense k_r x n_r block A_r[d, s] (SPEC section 5: column s is the softmax of
// source s over the region's destinations; one-hot for hard plans; entries below kWeightCutoff of
// the column's largest are exactly 0, as on the CPU) at A + b * a_total + a_off[r], row-major.
//   merge:   y[P + k_off[r] + d] = sum_s A_r[d, s] / mass[b, k_off[r] + d] * x[P + tokens[off[r] + s]]
//   unmerge: x[P + tokens[off[r] + s]] = sum_d A_r[d, s] * y[P + k_off[r] + d]
struct DevicePlan {
  PlanOptions opts;
  int B = 0, P = 0, N = 0, K = 0, R = 0;
  bool hard = false;
  int max_n = 0, max_k = 0;      // largest region, most destinations in a region
  Regions regions;                // host copy
  std::vector<int32_t> k_offsets;  // host copy, R + 1
  std::vector<int64_t> a_offsets;  // host copy, R + 1
  int64_t a_total = 0;            // floats of A per batch element
  cuda::DeviceBuffer tokens;       // int32 [N]
  cuda::DeviceBuffer offsets;      // int32 [R + 1]
  cuda::DeviceBuffer k_off;        // int32 [R + 1]
  cuda::DeviceBuffer a_off;        // int64 [R + 1]
  cuda::DeviceBuffer dest_region;  // int32 [K]: the region of merged token j
  cuda::DeviceBuffer token_slot;   // int32 [N]: for image token t, its position in `tokens`
  cuda::DeviceBuffer token_region; // int32 [N]: for image token t, its region
  cuda::DeviceBuffer dest;         // int32 [B, K]: image-token index of merged token j
  cuda::DeviceBuffer A;            // float [B, a_total]
  cuda::DeviceBuffer mass;         // float [B, K]
  // merge_attention_unmerge_cuda's query groups (whole regions filling at most `rows` merged
  // tokens) per query-tile height, made on first use: a plan serves every block of a denoising
  // step, so the host grouping and its upload happen once, not per call. Under mau_mu (plans
  // are shared by concurrent calls).
  struct MauGroups {
    int rows = 0;
    bool ok = false;  // every region fits one tile
    int count = 0;    // groups
    cuda::DeviceBuffer groups;  // int32 [count + 1]
  };
  mutable std::mutex mau_mu;
  mutable std::vector<std::unique_ptr<const MauGroups>> mau_groups;
  // Device bytes this plan owns (what the binding reports to V8 as external memory). The layout
  // buffers (tokens .. token_region) are views shared by every plan of the same grid, regions and
  // counts, held by a cache: not counted.
  size_t bytes() const {
    size_t n = 0;
    for (const cuda::DeviceBuffer* b : {&tokens, &offsets, &k_off, &a_off, &dest_region, &token_slot, &token_region,
                                        &dest, &A, &mass})
      n += b->is_view() ? 0 : b->bytes();
    return n;
  }
};

// SPEC sections 3-5 on the device. x: [B, P + N, C] device tokens (f32/f16/bf16). Adaptive
// (opts.similarity > 0) plans are computed by the CPU path on a host copy and uploaded.
std::shared_ptr<DevicePlan> compute_plan_cuda(ConstTokens x, const PlanOptions& opts);
// Keeps host destinations ([rows, K], rows 1 or B; checked by the caller with check_destinations)
// and computes the weights on x.
std::shared_ptr<DevicePlan> compute_plan_with_destinations_cuda(ConstTokens x, const PlanOptions& opts,
                                                                const int32_t* dest, int rows, int K);
// Destinations only, [B, K] on the host (K in *K).
std::vector<int32_t> select_destinations_cuda(ConstTokens x, const PlanOptions& opts, int* K);

// Conversions between the host (CSR) and device (dense per region) forms of a plan.
std::shared_ptr<DevicePlan> upload_plan(const Plan& p);
std::shared_ptr<Plan> download_plan(const DevicePlan& p);

// x, y, out are device tokens; input and output dtypes may differ (accumulation in float32).
void merge_cuda(const DevicePlan& plan, ConstTokens x, Tokens y);
void unmerge_cuda(const DevicePlan& plan, ConstTokens y, Tokens x);

namespace cuda {
// The same, enqueued on the calling thread's stream without synchronising: for pipelines of
// several kernels (merge-attention-unmerge) and the benchmarks. A launch error throws at once,
// a fault at the next synchronize().
void enqueue_merge(const DevicePlan& plan, ConstTokens x, Tokens y);
void enqueue_unmerge(const DevicePlan& plan, ConstTokens y, Tokens x);
// Two merges with one plan in one launch (merge-attention-unmerge's k and v): x1 and x2 of one
// dtype and shape, y1 and y2 likewise; the same arithmetic as two enqueue_merge calls.
void enqueue_merge2(const DevicePlan& plan, ConstTokens x1, Tokens y1, ConstTokens x2, Tokens y2);
// attention_cuda without its final synchronisation.
void enqueue_attention(const AttentionParams& p);
}  // namespace cuda

// Dense attention (SPEC section 6 without the plan) on device tokens. q/k/v/out f16, bf16 or f32
// (f32 converted on the way in, accumulation f32). RowGather fields of AttentionParams are not
// supported here (they are host-plan pointers); key_bias, when set, is a DEVICE float [B, Tk].
void attention_cuda(const AttentionParams& p);
// unmerge(attention(merge(q), merge(k), merge(v))) on the device, or with merge_queries = false
// attention(q, merge(k), merge(v)) (every query kept, nothing unmerged).
void merge_attention_unmerge_cuda(const DevicePlan& plan, const MergeAttentionParams& p);

}  // namespace toma
