// Argument checking for every entry point: each failure is a TypeError (wrong kind of value) or a
// RangeError (right kind, wrong value) whose message names the argument, the value and what was
// expected. Nothing here touches tensor contents except the non-finite scan done off-thread.
#pragma once
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "ops/plan.h"
#include "ops/tensor.h"

namespace toma {

// What the shape and dtype checks read: the same for host tensors and toma.DeviceTensors.
struct TensorInfo {
  size_t bytes = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // [B, T, C]
  std::string name;            // the argument's name in error messages
};

struct HostTensor : TensorInfo {
  Napi::Object object;  // pinned by the worker for the call's duration
  // The typed array `data` points into: pinned too, or `x.data = other` during the call would let
  // the collector free the memory the worker reads. Empty for a toma.DeviceTensor.
  Napi::Value array;
  const void* data = nullptr;
  ConstTokens tokens() const {
    return ConstTokens{data, dtype, (int)shape[0], (int)shape[1], (int)shape[2]};
  }
};

namespace cuda {
class DeviceBuffer;
}

// An op's tensor argument: host memory, or a toma.DeviceTensor (then `device` is set, `data` is
// null and `object` is the DeviceTensor). Either way shape, dtype and name are filled.
struct TensorArg : HostTensor {
  std::shared_ptr<cuda::DeviceBuffer> device;
  bool on_device() const { return device != nullptr; }
};

[[noreturn]] void throw_type(Napi::Env env, const std::string& msg);
[[noreturn]] void throw_range(Napi::Env env, const std::string& msg);
std::string describe(Napi::Value v);

// A { data, shape, dtype } tensor of rank 3 ([B, T, C]).
HostTensor parse_tensor(Napi::Env env, Napi::Value v, const std::string& name);
Napi::Object options_object(Napi::Env env, Napi::Value v, const std::string& name, bool required);
double number_option(Napi::Env env, Napi::Object o, const std::string& path, const char* key,
                     double def, bool required);
int int_option(Napi::Env env, Napi::Object o, const std::string& path, const char* key, int def,
               int min, bool required);
bool bool_option(Napi::Env env, Napi::Object o, const std::string& path, const char* key, bool def);
PlanOptions parse_plan_options(Napi::Env env, Napi::Value v, const std::string& name);
// "cpu" unless the options ask for "cuda"; anything else is an error.
std::string backend_option(Napi::Env env, Napi::Value options, const std::string& name);

// New typed array for a [B, T, C] result of the given dtype.
Napi::TypedArray new_data(Napi::Env env, DType t, size_t n);
void* data_pointer(Napi::TypedArray a);
Napi::Object tensor_object(Napi::Env env, Napi::TypedArray data, const std::vector<int64_t>& shape, DType t);

}  // namespace toma
