// toma.DeviceTensor: a [B, T, C] tensor resident on the CUDA device, made by toma.toDevice() or
// returned by an op whose main input was one. Ops hold the device buffer themselves while they
// run, so dispose() drops this object's hold at once and the memory goes when the last op using
// it ends. The bytes are reported to V8 as external memory, added once and removed once.
#pragma once
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "napi/args.h"
#include "ops/cuda.h"

namespace toma {

class DeviceTensorObject : public Napi::ObjectWrap<DeviceTensorObject> {
 public:
  static constexpr napi_type_tag kTag = {0x746f6d6164657674ULL, 0x3b9e27c4d1a86f52ULL};
  static constexpr const char* kClass = "DeviceTensor";
  static constexpr const char* kMadeBy = "toma.toDevice()";

  static Napi::FunctionReference Init(Napi::Env env, Napi::Object exports);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<cuda::DeviceBuffer> buffer, std::vector<int64_t> shape,
                           DType dtype);
  static bool Is(Napi::Value v);

  explicit DeviceTensorObject(const Napi::CallbackInfo& info);
  void Finalize(Napi::BasicEnv env) override;

  // The argument view of a live tensor; a disposed one is a TypeError naming `name`.
  TensorArg Arg(Napi::Env env, Napi::Object self, const std::string& name) const;

 private:
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value ToHost(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void Release(Napi::BasicEnv env);

  std::shared_ptr<cuda::DeviceBuffer> buffer_;
  std::vector<int64_t> shape_;
  DType dtype_ = DType::F32;
  size_t bytes_ = 0;
  int64_t reported_ = 0;
};

// A host tensor or a live toma.DeviceTensor (TypeError / RangeError naming `name` otherwise).
TensorArg parse_tensor_arg(Napi::Env env, Napi::Value v, const std::string& name);

// toDevice(tensor) -> Promise<DeviceTensor>: checks the tensor (finite values included) and copies
// it to the device off the JavaScript thread. Where CUDA is unavailable it rejects with the reason.
Napi::Value ToDevice(const Napi::CallbackInfo& info);

}  // namespace toma
