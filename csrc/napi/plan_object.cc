#include "napi/plan_object.h"

#include "napi/addon.h"
#include "napi/args.h"
#include "napi/guard.h"

namespace toma {

PlanHolder::PlanHolder(std::shared_ptr<const Plan> host)
    : opts(host->opts), B(host->B), P(host->P), N(host->N), K(host->K), hard(host->hard), host_(std::move(host)) {}

PlanHolder::PlanHolder(std::shared_ptr<const DevicePlan> device)
    : opts(device->opts), B(device->B), P(device->P), N(device->N), K(device->K), hard(device->hard),
      device_(std::move(device)) {}

// Conversions run under convert_mu_ only, so the JavaScript thread (bytes(), on_device() from
// completion callbacks and getters) never waits for a conversion in a worker.
std::shared_ptr<const Plan> PlanHolder::host() {
  std::lock_guard<std::mutex> convert(convert_mu_);
  std::shared_ptr<const DevicePlan> d;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (host_) return host_;
    d = device_;
  }
  std::shared_ptr<const Plan> h = download_plan(*d);
  std::lock_guard<std::mutex> lock(mu_);
  host_ = h;
  return h;
}

std::shared_ptr<const DevicePlan> PlanHolder::device() {
  std::lock_guard<std::mutex> convert(convert_mu_);
  std::shared_ptr<const Plan> h;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (device_) return device_;
    h = host_;
  }
  std::shared_ptr<const DevicePlan> d = upload_plan(*h);
  std::lock_guard<std::mutex> lock(mu_);
  device_ = d;
  return d;
}

bool PlanHolder::on_device() const {
  std::lock_guard<std::mutex> lock(mu_);
  return device_ != nullptr;
}

size_t PlanHolder::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return (host_ ? host_->bytes() : 0) + (device_ ? device_->bytes() : 0);
}

std::vector<int32_t> PlanHolder::destinations() const {
  std::shared_ptr<const DevicePlan> d;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (host_) return host_->dest;
    if (dest_) return *dest_;
    d = device_;
  }
  // The destinations alone (small; the weights stay on the device), copied once and kept: the
  // reuse schedule reads them every step.
  auto v = std::make_shared<std::vector<int32_t>>((size_t)B * K);
  cuda::copy_to_host(v->data(), d->dest.data(), v->size() * sizeof(int32_t), "plan.destinations");
  std::lock_guard<std::mutex> lock(mu_);
  dest_ = v;
  return *v;
}

void PlanHolder::report(Napi::BasicEnv env, bool finalized) {
  const int64_t now = finalized ? 0 : (int64_t)bytes();
  if (now != reported_) Napi::MemoryManagement::AdjustExternalMemory(env, now - reported_);
  reported_ = now;
}

namespace {

// A DeviceError from a conversion on the JavaScript thread (a getter) becomes a plain Error.
template <class F>
auto on_js_thread(Napi::Env env, const char* what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string(what) + ": " + e.what());
  }
}

}  // namespace

Napi::FunctionReference PlanObject::Init(Napi::Env env, Napi::Object exports) {
  using T = PlanObject;
  Napi::Function ctor = DefineClass(env, "Plan", {
      guarded_getter<T, &T::K>("K"),
      guarded_getter<T, &T::B>("B"),
      guarded_getter<T, &T::N>("N"),
      guarded_getter<T, &T::P>("prefix"),
      guarded_getter<T, &T::Grid>("grid"),
      guarded_getter<T, &T::Ratio>("ratio"),
      guarded_getter<T, &T::Tau>("tau"),
      guarded_getter<T, &T::Hard>("hard"),
      guarded_getter<T, &T::Region>("region"),
      guarded_getter<T, &T::ShareBatch>("shareBatch"),
      guarded_getter<T, &T::Bytes>("bytes"),
      guarded_getter<T, &T::Device>("device"),
      guarded_getter<T, &T::Destinations>("destinations"),
      guarded_method<T, &T::Matrices>("matrices"),
  });
  exports.Set("Plan", ctor);
  return Napi::Persistent(ctor);
}

PlanObject::PlanObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PlanObject>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    throw_type(env, "toma.Plan cannot be constructed directly; use toma.computePlan(x, options)");
  plan_ = *info[0].As<Napi::External<std::shared_ptr<PlanHolder>>>().Data();
  info.This().As<Napi::Object>().TypeTag(&kTag);
  plan_->report(env);
}

void PlanObject::Finalize(Napi::BasicEnv env) {
  plan_->report(env, true);
  plan_.reset();
}

Napi::Object PlanObject::Wrap(Napi::Env env, std::shared_ptr<const Plan> plan) {
  auto holder = std::make_shared<PlanHolder>(std::move(plan));
  Napi::Value ext = Napi::External<std::shared_ptr<PlanHolder>>::New(env, &holder);
  return addon(env).plan_ctor.New({ext});
}

Napi::Object PlanObject::Wrap(Napi::Env env, std::shared_ptr<const DevicePlan> plan) {
  auto holder = std::make_shared<PlanHolder>(std::move(plan));
  Napi::Value ext = Napi::External<std::shared_ptr<PlanHolder>>::New(env, &holder);
  return addon(env).plan_ctor.New({ext});
}

std::shared_ptr<PlanHolder> PlanObject::FromValue(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kTag))
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
Napi::Value PlanObject::Device(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), plan_->on_device()); }

// Host plus device bytes; a conversion made by an op is reported here at the latest.
Napi::Value PlanObject::Bytes(const Napi::CallbackInfo& info) {
  plan_->report(info.Env());
  return Napi::Number::New(info.Env(), (double)plan_->bytes());
}

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

// A device plan's destinations are copied from the device (synchronously: a getter cannot wait).
Napi::Value PlanObject::Destinations(const Napi::CallbackInfo& info) {
  const std::vector<int32_t> d = on_js_thread(info.Env(), "plan.destinations", [&] { return plan_->destinations(); });
  Napi::Int32Array a = Napi::Int32Array::New(info.Env(), d.size());
  std::copy(d.begin(), d.end(), a.Data());
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
  // A device plan is downloaded once, on this thread (a method returning arrays cannot wait), and
  // the host copy is kept for the CPU backend too.
  const std::shared_ptr<const Plan> host = on_js_thread(env, "plan.matrices", [&] { return plan_->host(); });
  plan_->report(env);
  const Plan& p = *host;
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
