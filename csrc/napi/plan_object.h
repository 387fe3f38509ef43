// toma.Plan: a native object holding an immutable plan (destinations and weights) that many
// merges can share, also concurrently. Its memory, host and device, is reported to V8.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>

#include "ops/cuda.h"
#include "ops/plan.h"

namespace toma {

// The plan behind a toma.Plan: a host Plan, a DevicePlan, or both. A backend that needs the form
// the plan lacks makes it from the other once (upload_plan / download_plan, off the JavaScript
// thread inside the op's worker) and keeps it; the mutex makes concurrent ops convert it once.
class PlanHolder {
 public:
  explicit PlanHolder(std::shared_ptr<const Plan> host);
  explicit PlanHolder(std::shared_ptr<const DevicePlan> device);

  std::shared_ptr<const Plan> host();
  std::shared_ptr<const DevicePlan> device();
  bool on_device() const;
  size_t bytes() const;
  // [B, K]: the host plan's, else copied from the device (small; the weights stay there).
  std::vector<int32_t> destinations() const;
  // Brings V8's external-memory count to bytes() (0 once finalized). JavaScript thread only.
  void report(Napi::BasicEnv env, bool finalized = false);

  // The same in both forms, fixed at creation.
  PlanOptions opts;
  int B = 0, P = 0, N = 0, K = 0;
  bool hard = false;

 private:
  mutable std::mutex mu_;          // guards the pointers below, held only briefly
  mutable std::mutex convert_mu_;  // one conversion at a time
  std::shared_ptr<const Plan> host_;
  std::shared_ptr<const DevicePlan> device_;
  mutable std::shared_ptr<const std::vector<int32_t>> dest_;  // a device plan's destinations, once read
  int64_t reported_ = 0;
};

class PlanObject : public Napi::ObjectWrap<PlanObject> {
 public:
  static constexpr napi_type_tag kTag = {0x746f6d61706c616eULL, 0x8c1f2b7e5a3d9e01ULL};
  static constexpr const char* kClass = "Plan";
  static constexpr const char* kMadeBy = "toma.computePlan()";

  static Napi::FunctionReference Init(Napi::Env env, Napi::Object exports);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<const Plan> plan);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<const DevicePlan> plan);
  // The plan behind a JS value, or a TypeError naming `name`.
  static std::shared_ptr<PlanHolder> FromValue(Napi::Env env, Napi::Value v, const std::string& name);

  explicit PlanObject(const Napi::CallbackInfo& info);
  void Finalize(Napi::BasicEnv env) override;

 private:
  Napi::Value K(const Napi::CallbackInfo& info);
  Napi::Value B(const Napi::CallbackInfo& info);
  Napi::Value N(const Napi::CallbackInfo& info);
  Napi::Value P(const Napi::CallbackInfo& info);
  Napi::Value Grid(const Napi::CallbackInfo& info);
  Napi::Value Ratio(const Napi::CallbackInfo& info);
  Napi::Value Tau(const Napi::CallbackInfo& info);
  Napi::Value Hard(const Napi::CallbackInfo& info);
  Napi::Value Region(const Napi::CallbackInfo& info);
  Napi::Value ShareBatch(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Destinations(const Napi::CallbackInfo& info);
  Napi::Value Matrices(const Napi::CallbackInfo& info);

  std::shared_ptr<PlanHolder> plan_;
};

}  // namespace toma
