#include "napi/op_support.h"

#include <atomic>

#include "core/thread_pool.h"

#include "napi/device_tensor.h"
#include "ops/device.h"

namespace toma {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void check_same(Napi::Env env, const TensorInfo& a, const TensorInfo& ref, bool tokens_too) {
  if (a.dtype != ref.dtype)
    throw_type(env, a.name + ".dtype '" + dtype_name(a.dtype) + "' does not match " + ref.name + ".dtype '" +
                        dtype_name(ref.dtype) + "'");
  if (a.shape[0] != ref.shape[0] || a.shape[2] != ref.shape[2] || (tokens_too && a.shape[1] != ref.shape[1]))
    throw_range(env, a.name + ".shape " + shape_str(a.shape) + " does not match " + ref.name + ".shape " +
                         shape_str(ref.shape));
}

void check_plan_fit(Napi::Env env, const TensorInfo& t, int B, int tokens, const char* what) {
  if (t.shape[0] != B || t.shape[1] != tokens)
    throw_range(env, t.name + ".shape " + shape_str(t.shape) + " does not fit the plan: expected [" +
                         std::to_string(B) + ", " + std::to_string(tokens) + ", C] (" + what + ")");
}

void check_finite(const TensorArg& t) {
  if (t.on_device()) return;
  // Scanned on the thread pool in 1 Mi-element slices: attention scans q and k on every call, and
  // one thread alone costs about 3% of an SDXL-sized merge-attention-unmerge.
  const size_t n = t.bytes / dtype_size(t.dtype), slice = (size_t)1 << 20;
  std::atomic<bool> bad{false};
  parallel_for((int64_t)((n + slice - 1) / slice), 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1 && !bad.load(std::memory_order_relaxed); ++s) {
      const size_t i0 = (size_t)s * slice, m = std::min(slice, n - i0);
      if (!all_finite(static_cast<const char*>(t.data) + i0 * dtype_size(t.dtype), t.dtype, m)) bad = true;
    }
  });
  if (bad) throw range_error(t.name + ".data contains NaN or Infinity");
}

void check_finite(std::initializer_list<const TensorArg*> inputs) {
  for (const TensorArg* in : inputs) check_finite(*in);
}

void check_result(const void* out, DType t, size_t n, std::initializer_list<const TensorArg*> inputs,
                  const std::string& hint) {
  if (all_finite(out, t, n)) return;
  check_finite(inputs);
  // Device inputs are not scanned here (a device result kept from an earlier op may carry NaN).
  std::string unscanned;
  for (const TensorArg* in : inputs)
    if (in->on_device()) unscanned += (unscanned.empty() ? "" : ", ") + in->name;
  if (!unscanned.empty())
    throw range_error("the result is not finite: NaN or Infinity in a device input (" + unscanned +
                      ", not scanned on the host) or finite inputs too large for " + std::string(dtype_name(t)) + hint);
  throw range_error("the result overflowed to infinity (finite inputs too large for " +
                    std::string(dtype_name(t)) + hint + ")");
}

Output make_output(Napi::Env env, DType t, std::vector<int64_t> shape) {
  Output o;
  Napi::TypedArray a = new_data(env, t, (size_t)shape[0] * shape[1] * shape[2]);
  o.data = data_pointer(a);
  o.ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(Napi::Value(a)));
  o.shape = std::move(shape);
  o.dtype = t;
  return o;
}

Napi::Value resolve_tensor(Napi::Env env, const Output& o) {
  return tensor_object(env, o.ref->Value().As<Napi::TypedArray>(), o.shape, o.dtype);
}

bool use_cuda(Napi::Env env, Napi::Value options, const std::string& options_name, const char* op,
              std::initializer_list<const TensorArg*> inputs) {
  const bool given = options.IsObject() && !options.As<Napi::Object>().Get("backend").IsUndefined();
  const std::string asked = backend_option(env, options, options_name);
  const TensorArg* on_device = nullptr;
  for (const TensorArg* in : inputs)
    if (in->on_device() && !on_device) on_device = in;
  if (on_device && given && asked == "cpu")
    throw_type(env, on_device->name + " is a toma.DeviceTensor but " + options_name +
                        ".backend is 'cpu': call " + on_device->name +
                        ".toHost() first, or use { backend: 'cuda' }");
  const bool cuda = given ? asked == "cuda" : on_device != nullptr;
  if (cuda) {
    const DeviceInfo& d = cuda_device_info();
    if (!d.available)
      throw Napi::Error::New(env, std::string(op) + ": the CUDA backend is unavailable: " +
                                      (d.reason.empty() ? "unknown reason" : d.reason));
  }
  return cuda;
}

ConstTokens DeviceStage::input(const TensorArg& t) {
  const void* p = nullptr;
  if (t.on_device()) {
    p = t.device->data();
  } else {
    temps_.emplace_back(t.bytes, (t.name + " (staged host tensor)").c_str());
    cuda::copy_to_device(temps_.back().data(), t.data, t.bytes, op_);
    p = temps_.back().data();
  }
  return ConstTokens{p, t.dtype, (int)t.shape[0], (int)t.shape[1], (int)t.shape[2]};
}

Tokens DeviceStage::scratch(DType t, const std::vector<int64_t>& shape) {
  temps_.emplace_back((size_t)shape[0] * shape[1] * shape[2] * dtype_size(t), op_);
  return Tokens{temps_.back().data(), t, (int)shape[0], (int)shape[1], (int)shape[2]};
}

DeviceResult::DeviceResult(Napi::Env env, bool on_device, DType t, std::vector<int64_t> shape)
    : s_(std::make_shared<State>()), shape_(shape), dtype_(t) {
  s_->on_device = on_device;
  if (!on_device) s_->host = make_output(env, t, std::move(shape));
}

Tokens DeviceResult::tokens(DeviceStage& stage) const {
  if (!s_->on_device) return s_->view = stage.scratch(dtype_, shape_);
  const size_t bytes = (size_t)shape_[0] * shape_[1] * shape_[2] * dtype_size(dtype_);
  s_->buffer = std::make_shared<cuda::DeviceBuffer>(bytes, "the result DeviceTensor");
  return s_->view = Tokens{s_->buffer->data(), dtype_, (int)shape_[0], (int)shape_[1], (int)shape_[2]};
}

void DeviceResult::check_inputs_first(std::initializer_list<const TensorArg*> inputs) const {
  if (s_->on_device) check_finite(inputs);
}

void DeviceResult::finish(const char* op, std::initializer_list<const TensorArg*> inputs,
                          const std::string& hint) const {
  if (s_->on_device) return;
  const Output& h = s_->host;
  cuda::copy_to_host(h.data, s_->view.data, h.count() * dtype_size(h.dtype), op);
  check_result(h.data, h.dtype, h.count(), inputs, hint);
}

Napi::Value DeviceResult::value(Napi::Env env) const {
  if (!s_->on_device) return resolve_tensor(env, s_->host);
  return DeviceTensorObject::Wrap(env, s_->buffer, shape_, dtype_);
}

}  // namespace toma
