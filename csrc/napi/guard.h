// Members of the wrapped classes (toma.Plan, toma.DeviceTensor) go through this guard: one called
// with a `this` that is not an instance (a borrowed getter, Object.create(X.prototype)) throws a
// TypeError naming the member instead of node-addon-api's bare Error 'Invalid argument'.
// T supplies kTag (its type tag), kClass ("Plan") and kMadeBy ("toma.computePlan()").
#pragma once
#include <napi.h>

#include <string>

#include "napi/args.h"

namespace toma {

template <class T, Napi::Value (T::*M)(const Napi::CallbackInfo&)>
napi_value guarded_call(napi_env env, napi_callback_info cbinfo) {
  return Napi::details::WrapCallback(env, [&]() -> napi_value {
    Napi::CallbackInfo info(env, cbinfo);
    Napi::Value self = info.This();
    if (!self.IsObject() || !self.As<Napi::Object>().CheckTypeTag(&T::kTag))
      throw_type(info.Env(), std::string(T::kClass) + "." + static_cast<const char*>(info.Data()) +
                                 ": `this` must be a toma." + T::kClass + " from " + T::kMadeBy + ", got " +
                                 describe(self));
    return (Napi::ObjectWrap<T>::Unwrap(self.As<Napi::Object>())->*M)(info);
  });
}

template <class T, Napi::Value (T::*M)(const Napi::CallbackInfo&)>
Napi::ClassPropertyDescriptor<T> guarded_getter(const char* name) {
  napi_property_descriptor d = {name, nullptr, nullptr, &guarded_call<T, M>, nullptr, nullptr, napi_default,
                                const_cast<char*>(name)};
  return Napi::ClassPropertyDescriptor<T>(d);
}

template <class T, Napi::Value (T::*M)(const Napi::CallbackInfo&)>
Napi::ClassPropertyDescriptor<T> guarded_method(const char* name) {
  napi_property_descriptor d = {name, nullptr, &guarded_call<T, M>, nullptr, nullptr, nullptr, napi_default,
                                const_cast<char*>(name)};
  return Napi::ClassPropertyDescriptor<T>(d);
}

}  // namespace toma
