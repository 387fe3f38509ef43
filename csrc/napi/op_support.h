// What the op entry points share: the shape/dtype checks (the same for host tensors and
// DeviceTensors), the non-finite scans, host results, the backend choice, and the device memory
// of a CUDA call (host inputs staged in, results copied back or kept as a DeviceTensor).
#pragma once
#include <napi.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "napi/args.h"
#include "ops/cuda.h"

namespace toma {

std::string shape_str(const std::vector<int64_t>& s);
void check_same(Napi::Env env, const TensorInfo& a, const TensorInfo& ref, bool tokens_too);
void check_plan_fit(Napi::Env env, const TensorInfo& t, int B, int tokens, const char* what);

// Off-thread. NaN and Infinity in host data are rejected, never propagated. DeviceTensors are not
// scanned: toDevice() checked them on the way in (results of ops kept on the device are not).
void check_finite(const TensorArg& t);
void check_finite(std::initializer_list<const TensorArg*> inputs);
// For the ops whose every input element reaches the output (merge, unmerge, attention: a NaN or
// infinity anywhere in an input makes some output non-finite, even through a zero weight), the
// output is scanned instead of each input: one pass instead of three. Only when it is not finite
// are the host inputs scanned, to name the culprit; otherwise finite inputs overflowed.
// `hint` names what else can make a finite input overflow (attention: the scale).
void check_result(const void* out, DType t, size_t n, std::initializer_list<const TensorArg*> inputs,
                  const std::string& hint = "");

// The result array is made on the JavaScript thread and filled off it; a reference carries it
// to OnOK (a napi_value does not outlive the call's handle scope).
struct Output {
  std::shared_ptr<Napi::Reference<Napi::Value>> ref;
  // options.out: ref holds the caller's tensor object (returned as the result) and this its
  // typed array, so `out.data = other` during the call cannot free the memory being written.
  std::shared_ptr<Napi::Reference<Napi::Value>> array_ref;
  void* data = nullptr;
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  Tokens tokens() const { return Tokens{data, dtype, (int)shape[0], (int)shape[1], (int)shape[2]}; }
  size_t count() const { return (size_t)shape[0] * shape[1] * shape[2]; }
};
Output make_output(Napi::Env env, DType t, std::vector<int64_t> shape);
// The result goes to options.out when given (a host tensor of the result's dtype and shape whose
// memory overlaps no input; the op resolves to that same object), else to a new tensor. A
// repeated call with the same `out` allocates nothing.
Output make_output(Napi::Env env, DType t, std::vector<int64_t> shape, Napi::Value options,
                   const std::string& options_name, std::initializer_list<const TensorArg*> inputs);
// options.out on the CUDA backend: not supported there (TypeError naming it).
void reject_out(Napi::Env env, Napi::Value options, const std::string& options_name, const char* op);
Napi::Value resolve_tensor(Napi::Env env, const Output& o);

// Whether the op runs on CUDA: options.backend when given, else CUDA when an input is a
// DeviceTensor (lib/ resolves the default before calling). A DeviceTensor with backend 'cpu' is
// a TypeError naming it; CUDA where no device answers is an Error with the probe's reason.
bool use_cuda(Napi::Env env, Napi::Value options, const std::string& options_name, const char* op,
              std::initializer_list<const TensorArg*> inputs);

// Device memory of one CUDA call, made and freed off the JavaScript thread: a host input is
// copied to a temporary buffer, a DeviceTensor is used in place.
class DeviceStage {
 public:
  explicit DeviceStage(const char* op) : op_(op) {}
  ConstTokens input(const TensorArg& t);
  Tokens scratch(DType t, const std::vector<int64_t>& shape);

 private:
  const char* op_;
  std::vector<cuda::DeviceBuffer> temps_;
};

// A CUDA op's result: a new DeviceTensor when the op's main input was one, else a host tensor
// copied back and checked like the CPU path's. Copies share the off-thread state.
class DeviceResult {
 public:
  DeviceResult(Napi::Env env, bool on_device, DType t, std::vector<int64_t> shape);
  // Off-thread: the device tokens to write (kept for a DeviceTensor, scratch otherwise).
  Tokens tokens(DeviceStage& stage) const;
  // Off-thread, before the kernel: a result kept on the device is never read back, so the host
  // inputs are scanned up front instead.
  void check_inputs_first(std::initializer_list<const TensorArg*> inputs) const;
  // Off-thread, after the kernel: a host result is copied back and checked like the CPU path's.
  void finish(const char* op, std::initializer_list<const TensorArg*> inputs, const std::string& hint = "") const;
  Napi::Value value(Napi::Env env) const;

 private:
  struct State {
    bool on_device;
    Output host;
    std::shared_ptr<cuda::DeviceBuffer> buffer;
    Tokens view;
  };
  std::shared_ptr<State> s_;
  std::vector<int64_t> shape_;
  DType dtype_;
};

}  // namespace toma
