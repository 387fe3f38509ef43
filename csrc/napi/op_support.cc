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

namespace {

// Scanned on the thread pool in 256 Ki-element slices: every result is scanned, and one thread
// alone costs several ms on an SDXL-sized tensor (a tenth of a 64x64 plan + merge + unmerge).
bool all_finite_parallel(const void* data, DType t, size_t n) {
  const size_t slice = (size_t)1 << 18;
  std::atomic<bool> bad{false};
  parallel_for((int64_t)((n + slice - 1) / slice), 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1 && !bad.load(std::memory_order_relaxed); ++s) {
      const size_t i0 = (size_t)s * slice, m = std::min(slice, n - i0);
      if (!all_finite(static_cast<const char*>(data) + i0 * dtype_size(t), t, m)) bad = true;
    }
  });
  return !bad;
}

}  // namespace

void check_finite(const TensorArg& t) {
  if (t.on_device()) return;
  if (!all_finite_parallel(t.data, t.dtype, t.bytes / dtype_size(t.dtype)))
    throw range_error(t.name + ".data contains NaN or Infinity");
}

void check_finite(std::initializer_list<const TensorArg*> inputs) {
  for (const TensorArg* in : inputs) check_finite(*in);
}

void check_result(const void* out, DType t, size_t n, std::initializer_list<const TensorArg*> inputs,
                  const std::string& hint) {
  if (all_finite_parallel(out, t, n)) return;
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
  if (o.array_ref) return o.ref->Value();
  return tensor_object(env, o.ref->Value().As<Napi::TypedArray>(), o.shape, o.dtype);
}

namespace {

Napi::Value out_option(Napi::Value options) {
  if (!options.IsObject() || options.IsArray()) return Napi::Value();
  Napi::Value v = options.As<Napi::Object>().Get("out");
  return v.IsUndefined() ? Napi::Value() : v;
}

}  // namespace

Output make_output(Napi::Env env, DType t, std::vector<int64_t> shape, Napi::Value options,
                   const std::string& options_name, std::initializer_list<const TensorArg*> inputs) {
  Napi::Value ov = out_option(options);
  if (ov.IsEmpty()) return make_output(env, t, std::move(shape));
  const std::string name = options_name + ".out";
  if (DeviceTensorObject::Is(ov))
    throw_type(env, name + " must be a host tensor { data, shape, dtype }, got a toma.DeviceTensor");
  HostTensor h = parse_tensor(env, ov, name);
  if (h.dtype != t)
    throw_type(env, name + ".dtype '" + dtype_name(h.dtype) + "' must be the result's dtype '" + dtype_name(t) + "'");
  if (h.shape != shape)
    throw_range(env, name + ".shape " + shape_str(h.shape) + " must be the result's shape " + shape_str(shape));
  const char* o0 = static_cast<const char*>(h.data);
  for (const TensorArg* in : inputs) {
    if (in->on_device()) continue;
    const char* i0 = static_cast<const char*>(in->data);
    if (o0 < i0 + in->bytes && i0 < o0 + h.bytes)
      throw_range(env, name + " shares memory with " + in->name + ": inputs are never written to");
  }
  Output o;
  o.data = const_cast<void*>(h.data);
  o.ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(Napi::Value(h.object)));
  o.array_ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(h.array));
  o.shape = std::move(shape);
  o.dtype = t;
  return o;
}

void reject_out(Napi::Env env, Napi::Value options, const std::string& options_name, const char* op) {
  if (!out_option(options).IsEmpty())
    throw_type(env, options_name + ".out is supported by the CPU backend only (" + op +
                        " on CUDA returns a new tensor); leave it out or use { backend: 'cpu' }");
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
