// Built instead of the .cu files when no CUDA compiler was found (binding.gyp, TOMA_CUDA=OFF):
// the probe says why, and every CUDA entry point throws a DeviceError the binding reports.
#include "ops/cuda.h"
#include "ops/device.h"

namespace toma {

const DeviceInfo& cuda_device_info() {
  static const DeviceInfo info = [] {
    DeviceInfo d;
    d.reason = "this build has no CUDA kernels (built without nvcc)";
    return d;
  }();
  return info;
}

namespace {
[[noreturn]] void no_cuda(const char* op) {
  throw DeviceError(std::string(op) + ": this build has no CUDA kernels (built without nvcc)");
}
}  // namespace

namespace cuda {
DeviceBuffer::DeviceBuffer(size_t, const char* what) { no_cuda(what); }
DeviceBuffer::~DeviceBuffer() = default;
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  std::swap(p_, o.p_);
  std::swap(n_, o.n_);
  std::swap(owner_, o.owner_);
  return *this;
}
void enqueue_merge(const DevicePlan&, ConstTokens, Tokens) { no_cuda("merge"); }
void enqueue_unmerge(const DevicePlan&, ConstTokens, Tokens) { no_cuda("unmerge"); }
void copy_to_device(void*, const void*, size_t, const char* op) { no_cuda(op); }
void copy_to_host(void*, const void*, size_t, const char* op) { no_cuda(op); }
void copy_on_device(void*, const void*, size_t, const char* op) { no_cuda(op); }
void synchronize(const char* op) { no_cuda(op); }
void enqueue_copy_on_device(void*, const void*, size_t, const char* op) { no_cuda(op); }
double time_ms(void (*)(void*), void*, int, int) { no_cuda("time_ms"); }
int make_regions_cuda(int, int, const RegionSpec&, int32_t*, int32_t*) { no_cuda("regions"); }
}  // namespace cuda

std::shared_ptr<DevicePlan> compute_plan_cuda(ConstTokens, const PlanOptions&) { no_cuda("computePlan"); }
std::shared_ptr<DevicePlan> compute_plan_with_destinations_cuda(ConstTokens, const PlanOptions&, const int32_t*,
                                                                int, int) {
  no_cuda("computePlan");
}
std::vector<int32_t> select_destinations_cuda(ConstTokens, const PlanOptions&, int*) {
  no_cuda("selectDestinations");
}
std::shared_ptr<DevicePlan> upload_plan(const Plan&) { no_cuda("plan upload"); }
std::shared_ptr<Plan> download_plan(const DevicePlan&) { no_cuda("plan download"); }
void merge_cuda(const DevicePlan&, ConstTokens, Tokens) { no_cuda("merge"); }
void unmerge_cuda(const DevicePlan&, ConstTokens, Tokens) { no_cuda("unmerge"); }
void attention_cuda(const AttentionParams&) { no_cuda("attention"); }
void merge_attention_unmerge_cuda(const DevicePlan&, const MergeAttentionParams&) {
  no_cuda("mergeAttentionUnmerge");
}

}  // namespace toma
