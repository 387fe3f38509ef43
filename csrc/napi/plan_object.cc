#include "napi/plan_object.h"

#include "napi/addon.h"
#include "napi/args.h"

namespace toma {

namespace {
// Marks objects made by this class, so a look-alike object is never unwrapped.
const napi_type_tag kPlanTag = {0x746f6d61706c616eULL, 0x8c1f2b7e5a3d9e01ULL};
}  // namespace

template <Napi::Value (PlanObject::*M)(const Napi::CallbackInfo&)>
napi_value PlanObject::Guarded(napi_env env, napi_callback_info cbinfo) {
  return Napi::details::WrapCallback(env, [&]() -> napi_value {
    Napi::CallbackInfo info(env, cbinfo);
    Napi::Value self = info.This();
    if (!self.IsObject() || !self.As<Napi::Object>().CheckTypeTag(&kPlanTag))
      throw_type(info.Env(), std::string("Plan.") + static_cast<const char*>(info.Data()) +
                                 ": `this` must be a toma.Plan from toma.computePlan(), got " + describe(self));
    return (Unwrap(self.As<Napi::Object>())->*M)(info);
  });
}

template <Napi::Value (PlanObject::*M)(const Napi::CallbackInfo&)>
Napi::ClassPropertyDescriptor<PlanObject> PlanObject::Getter(const char* name) {
  napi_property_descriptor d = {name, nullptr, nullptr, &Guarded<M>, nullptr, nullptr, napi_default,
                                const_cast<char*>(name)};
  return Napi::ClassPropertyDescriptor<PlanObject>(d);
}

Napi::FunctionReference PlanObject::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "Plan", {
      Getter<&PlanObject::K>("K"),
      Getter<&PlanObject::B>("B"),
      Getter<&PlanObject::N>("N"),
      Getter<&PlanObject::P>("prefix"),
      Getter<&PlanObject::Grid>("grid"),
      Getter<&PlanObject::Ratio>("ratio"),
      Getter<&PlanObject::Tau>("tau"),
      Getter<&PlanObject::Hard>("hard"),
      Getter<&PlanObject::Region>("region"),
      Getter<&PlanObject::ShareBatch>("shareBatch"),
      Getter<&PlanObject::Bytes>("bytes"),
      Getter<&PlanObject::Destinations>("destinations"),
      InstanceMethod<&PlanObject::Matrices>("matrices"),  // V8 checks its receiver (TypeError)
  });
  exports.Set("Plan", ctor);
  return Napi::Persistent(ctor);
}

PlanObject::PlanObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PlanObject>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    throw_type(env, "toma.Plan cannot be constructed directly; use toma.computePlan(x, options)");
  auto* sp = info[0].As<Napi::External<std::shared_ptr<const Plan>>>().Data();
  plan_ = *sp;
  info.This().As<Napi::Object>().TypeTag(&kPlanTag);
  reported_ = (int64_t)plan_->bytes();
  Napi::MemoryManagement::AdjustExternalMemory(env, reported_);
}

void PlanObject::Finalize(Napi::BasicEnv env) {
  if (reported_) Napi::MemoryManagement::AdjustExternalMemory(env, -reported_);
  reported_ = 0;
  plan_.reset();
}

Napi::Object PlanObject::Wrap(Napi::Env env, std::shared_ptr<const Plan> plan) {
  std::shared_ptr<const Plan> holder = std::move(plan);
  Napi::Value ext = Napi::External<std::shared_ptr<const Plan>>::New(env, &holder);
  return addon(env).plan_ctor.New({ext});
}

std::shared_ptr<const Plan> PlanObject::FromValue(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kPlanTag))
    throw_type(env, name + " must be a toma.Plan from toma.computePlan(), got " + describe(v));
  return Napi::ObjectWrap<PlanObject>::Unwrap(v.As<Napi::Object>())->plan_;
}

Napi::Value PlanObject::K(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), plan_->K); }
Napi::Value PlanObject::B(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), plan_->B); }
Napi::Value PlanObject::N(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), plan_->N); }
Napi::Value PlanObject::P(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), plan_->P); }
Napi::Value PlanObject::Ratio(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), plan_->opts.ratio); }
Napi::Value PlanObject::Tau(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), plan_->opts.tau); }
Napi::Value PlanObject::Hard(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), plan_->hard); }
Napi::Value PlanObject::ShareBatch(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), plan_->opts.share_batch); }
Napi::Value PlanObject::Bytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), (double)plan_->bytes()); }

Napi::Value PlanObject::Grid(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set(0u, plan_->opts.H);
  a.Set(1u, plan_->opts.W);
  return a;
}

Napi::Value PlanObject::Region(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  const RegionSpec& r = plan_->opts.region;
  if (r.kind == RegionSpec::Tile) {
    o.Set("kind", "tile");
    o.Set("th", r.th);
    o.Set("tw", r.tw);
  } else if (r.kind == RegionSpec::Stripe) {
    o.Set("kind", "stripe");
    o.Set("rows", r.rows);
  } else {
    o.Set("kind", "global");
  }
  return o;
}

Napi::Value PlanObject::Destinations(const Napi::CallbackInfo& info) {
  Napi::Int32Array a = Napi::Int32Array::New(info.Env(), plan_->dest.size());
  std::copy(plan_->dest.begin(), plan_->dest.end(), a.Data());
  return a;
}

// matrices(b = 0): per region { tokens, destinations, M [k x n], U [n x k] } as dense
// Float32Arrays, rebuilt from the sparse weights; for inspection and tests.
Napi::Value PlanObject::Matrices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int b = 0;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    const double x = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    if (!(x >= 0 && x < plan_->B && (double)(int)x == x))
      throw_range(env, "matrices(b): b must be an integer in [0, " + std::to_string(plan_->B) + "), got " + describe(info[0]));
    b = (int)x;
  }
  const Plan& p = *plan_;
  const Regions& R = p.regions;
  const PlanWeights& W = p.weights[b];
  Napi::Array out = Napi::Array::New(env, R.count());
  for (int r = 0; r < R.count(); ++r) {
    const int n = R.size(r), k0 = p.k_offsets[r], k = p.k_offsets[r + 1] - k0;
    const int32_t* tok = R.tokens.data() + R.offsets[r];
    Napi::Int32Array tokens = Napi::Int32Array::New(env, n);
    std::copy(tok, tok + n, tokens.Data());
    Napi::Int32Array dests = Napi::Int32Array::New(env, k);
    std::copy(p.dest.begin() + (size_t)b * p.K + k0, p.dest.begin() + (size_t)b * p.K + k0 + k, dests.Data());
    Napi::Float32Array M = Napi::Float32Array::New(env, (size_t)k * n);
    Napi::Float32Array U = Napi::Float32Array::New(env, (size_t)n * k);
    std::fill(M.Data(), M.Data() + (size_t)k * n, 0.f);
    std::fill(U.Data(), U.Data() + (size_t)n * k, 0.f);
    // Token -> local position inside this region.
    std::vector<int32_t> local(p.N, -1);
    for (int i = 0; i < n; ++i) local[tok[i]] = i;
    for (int j = 0; j < k; ++j)
      for (int64_t e = W.mptr[k0 + j]; e < W.mptr[k0 + j + 1]; ++e) M.Data()[(size_t)j * n + local[W.midx[e]]] = W.mw[e];
    for (int i = 0; i < n; ++i)
      for (int64_t e = W.uptr[tok[i]]; e < W.uptr[tok[i] + 1]; ++e) U.Data()[(size_t)i * k + (W.uidx[e] - k0)] = W.uw[e];
    Napi::Object o = Napi::Object::New(env);
    o.Set("tokens", tokens);
    o.Set("destinations", dests);
    o.Set("M", M);
    o.Set("U", U);
    out.Set((uint32_t)r, o);
  }
  return out;
}

}  // namespace toma
