// toma.Plan: a native object holding an immutable plan (destinations and sparse weights) that
// many merges can share, also concurrently. Its memory is reported to V8.
#pragma once
#include <napi.h>

#include <memory>

#include "ops/plan.h"

namespace toma {

class PlanObject : public Napi::ObjectWrap<PlanObject> {
 public:
  static Napi::FunctionReference Init(Napi::Env env, Napi::Object exports);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<const Plan> plan);
  // The plan behind a JS value, or a TypeError naming `name`.
  static std::shared_ptr<const Plan> FromValue(Napi::Env env, Napi::Value v, const std::string& name);

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
  Napi::Value Destinations(const Napi::CallbackInfo& info);
  Napi::Value Matrices(const Napi::CallbackInfo& info);

  // Accessors go through this guard: one called with a `this` that is not a Plan
  // (a borrowed getter, Object.create(Plan.prototype)) throws a TypeError naming the member
  // instead of node-addon-api's bare Error 'Invalid argument'.
  template <Napi::Value (PlanObject::*M)(const Napi::CallbackInfo&)>
  static napi_value Guarded(napi_env env, napi_callback_info cbinfo);
  template <Napi::Value (PlanObject::*M)(const Napi::CallbackInfo&)>
  static Napi::ClassPropertyDescriptor<PlanObject> Getter(const char* name);

  std::shared_ptr<const Plan> plan_;
  int64_t reported_ = 0;
};

}  // namespace toma
