#include "napi/device_tensor.h"

#include "napi/addon.h"
#include "napi/guard.h"
#include "napi/op_support.h"
#include "napi/worker.h"
#include "ops/device.h"

namespace toma {

namespace {

struct NewTensor {
  std::shared_ptr<cuda::DeviceBuffer> buffer;
  std::vector<int64_t> shape;
  DType dtype;
};

std::string disposed_message(const std::string& name) {
  return name + " is a disposed toma.DeviceTensor (dispose() was called); make a new one with toma.toDevice()";
}

}  // namespace

Napi::FunctionReference DeviceTensorObject::Init(Napi::Env env, Napi::Object exports) {
  using T = DeviceTensorObject;
  Napi::Function ctor = DefineClass(env, "DeviceTensor", {
      guarded_getter<T, &T::Shape>("shape"),
      guarded_getter<T, &T::Dtype>("dtype"),
      guarded_getter<T, &T::Bytes>("bytes"),
      guarded_getter<T, &T::Disposed>("disposed"),
      guarded_method<T, &T::ToHost>("toHost"),
      guarded_method<T, &T::Dispose>("dispose"),
  });
  exports.Set("DeviceTensor", ctor);
  return Napi::Persistent(ctor);
}

DeviceTensorObject::DeviceTensorObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceTensorObject>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    throw_type(env, "toma.DeviceTensor cannot be constructed directly; use toma.toDevice(tensor)");
  const NewTensor* t = info[0].As<Napi::External<NewTensor>>().Data();
  buffer_ = t->buffer;
  shape_ = t->shape;
  dtype_ = t->dtype;
  bytes_ = buffer_ ? buffer_->bytes() : 0;
  info.This().As<Napi::Object>().TypeTag(&kTag);
  reported_ = (int64_t)bytes_;
  Napi::MemoryManagement::AdjustExternalMemory(env, reported_);
}

void DeviceTensorObject::Release(Napi::BasicEnv env) {
  if (reported_) Napi::MemoryManagement::AdjustExternalMemory(env, -reported_);
  reported_ = 0;
  buffer_.reset();
}

void DeviceTensorObject::Finalize(Napi::BasicEnv env) { Release(env); }

Napi::Object DeviceTensorObject::Wrap(Napi::Env env, std::shared_ptr<cuda::DeviceBuffer> buffer,
                                      std::vector<int64_t> shape, DType dtype) {
  NewTensor t{std::move(buffer), std::move(shape), dtype};
  Napi::Value ext = Napi::External<NewTensor>::New(env, &t);
  return addon(env).device_tensor_ctor.New({ext});
}

bool DeviceTensorObject::Is(Napi::Value v) { return v.IsObject() && v.As<Napi::Object>().CheckTypeTag(&kTag); }

TensorArg DeviceTensorObject::Arg(Napi::Env env, Napi::Object self, const std::string& name) const {
  if (!buffer_) throw_type(env, disposed_message(name));
  TensorArg a;
  a.object = self;
  a.name = name;
  a.dtype = dtype_;
  a.shape = shape_;
  a.bytes = bytes_;
  a.device = buffer_;
  return a;
}

Napi::Value DeviceTensorObject::Shape(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env(), shape_.size());
  for (size_t i = 0; i < shape_.size(); ++i) a.Set((uint32_t)i, Napi::Number::New(info.Env(), (double)shape_[i]));
  return a;
}

Napi::Value DeviceTensorObject::Dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtype_name(dtype_));
}

// The size it had: a disposed tensor still says how large it was.
Napi::Value DeviceTensorObject::Bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), (double)bytes_);
}

Napi::Value DeviceTensorObject::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !buffer_);
}

Napi::Value DeviceTensorObject::Dispose(const Napi::CallbackInfo& info) {
  Release(info.Env());
  return info.Env().Undefined();
}

Napi::Value DeviceTensorObject::ToHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!buffer_) {  // a rejection, as every other Promise-returning call reports its errors
    auto d = Napi::Promise::Deferred::New(env);
    d.Reject(Napi::TypeError::New(env, "DeviceTensor.toHost: this tensor was disposed (dispose() was called)").Value());
    return d.Promise();
  }
  TensorArg t = Arg(env, info.This().As<Napi::Object>(), "this");
  Output out = make_output(env, dtype_, shape_);
  return OpWorker::Queue(
      env, "toHost", {info.This()},
      [t, out] { cuda::copy_to_host(out.data, t.device->data(), t.bytes, "toHost"); },
      [out](Napi::Env env) { return resolve_tensor(env, out); });
}

TensorArg parse_tensor_arg(Napi::Env env, Napi::Value v, const std::string& name) {
  if (DeviceTensorObject::Is(v)) {
    Napi::Object o = v.As<Napi::Object>();
    return DeviceTensorObject::Unwrap(o)->Arg(env, o, name);
  }
  // Something made from the prototype (or with its own toHost) that was never a real one.
  if (v.IsObject() && v.As<Napi::Object>().InstanceOf(addon(env).device_tensor_ctor.Value()))
    throw_type(env, name + " must be a tensor { data, shape, dtype } or a toma.DeviceTensor from toma.toDevice(), got " +
                        "an object that only looks like a DeviceTensor");
  TensorArg a;
  static_cast<HostTensor&>(a) = parse_tensor(env, v, name);
  return a;
}

Napi::Value ToDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (DeviceTensorObject::Is(info[0]))
    throw_type(env, "tensor is already a toma.DeviceTensor; toDevice() takes a host tensor { data, shape, dtype }");
  TensorArg t;
  static_cast<HostTensor&>(t) = parse_tensor(env, info[0], "tensor");
  auto buffer = std::make_shared<std::shared_ptr<cuda::DeviceBuffer>>();
  return OpWorker::Queue(
      env, "toDevice", {t.object, t.array},
      [t, buffer] {
        check_finite(t);
        const DeviceInfo& d = cuda_device_info();
        if (!d.available)
          throw DeviceError("toDevice: CUDA is unavailable: " + (d.reason.empty() ? std::string("unknown reason") : d.reason));
        *buffer = std::make_shared<cuda::DeviceBuffer>(t.bytes, "toDevice");
        cuda::copy_to_device((*buffer)->data(), t.data, t.bytes, "toDevice");
      },
      [t, buffer](Napi::Env env) -> Napi::Value { return DeviceTensorObject::Wrap(env, *buffer, t.shape, t.dtype); });
}

}  // namespace toma
