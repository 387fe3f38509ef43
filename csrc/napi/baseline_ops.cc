#include "napi/baseline_ops.h"

#include <cmath>
#include <memory>

#include "napi/args.h"
#include "napi/plan_object.h"
#include "napi/worker.h"
#include "ops/assignment_plan.h"
#include "ops/tomesd_plan.h"

namespace toma {

namespace {

void grid_option(Napi::Env env, Napi::Object o, const std::string& name, int* H, int* W) {
  Napi::Value g = o.Get("grid");
  if (!g.IsArray()) throw_type(env, name + ".grid must be an array [H, W], got " + describe(g));
  Napi::Array a = g.As<Napi::Array>();
  int hw[2] = {0, 0};
  for (uint32_t i = 0; i < 2 && a.Length() == 2; ++i) {
    Napi::Value d = a.Get(i);
    const double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : std::nan("");
    if (x >= 1 && x <= 65536 && std::floor(x) == x) hw[i] = (int)x;
  }
  if (hw[0] == 0 || hw[1] == 0) throw_range(env, name + ".grid must be [H, W] with integers in [1, 65536]");
  *H = hw[0];
  *W = hw[1];
}

Napi::Int32Array int32_array(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_type(env, name + " must be an Int32Array, got " + describe(v));
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  if (a.ArrayBuffer().IsDetached()) throw_type(env, name + " is backed by a detached ArrayBuffer");
  return a;
}

}  // namespace

Napi::Value AssignmentPlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Int32Array assign = int32_array(env, info[0], "assignment");
  Napi::Object o = options_object(env, info[1], "options", true);
  int H = 0, W = 0;
  grid_option(env, o, "options", &H, &W);
  const int N = H * W;
  const int K = int_option(env, o, "options", "K", 1, 1, true);
  const int P = int_option(env, o, "options", "prefix", 0, 0, false);
  if (assign.ElementLength() == 0 || assign.ElementLength() % N != 0)
    throw_range(env, "assignment has " + std::to_string(assign.ElementLength()) + " entries; expected B * N with N = " +
                         std::to_string(N));
  const int B = (int)(assign.ElementLength() / N);
  auto a = std::make_shared<std::vector<int32_t>>(assign.Data(), assign.Data() + assign.ElementLength());
  auto reps = std::make_shared<std::vector<int32_t>>();
  Napi::Value rv = o.Get("representatives");
  if (!rv.IsUndefined()) {
    Napi::Int32Array r = int32_array(env, rv, "options.representatives");
    if (r.ElementLength() != (size_t)B * K)
      throw_range(env, "options.representatives must have B * K = " + std::to_string((size_t)B * K) + " entries, got " +
                           std::to_string(r.ElementLength()));
    reps->assign(r.Data(), r.Data() + r.ElementLength());
  }
  auto plan = std::make_shared<std::shared_ptr<Plan>>();
  return OpWorker::Queue(
      env, "assignmentPlan", {},
      [=] { *plan = assignment_plan_cpu(B, H, W, P, K, a->data(), reps->empty() ? nullptr : reps->data()); },
      [plan](Napi::Env env) -> Napi::Value { return PlanObject::Wrap(env, *plan); });
}

Napi::Value TomesdPlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HostTensor x = parse_tensor(env, info[0], "x");
  Napi::Object o = options_object(env, info[1], "options", true);
  TomesdOptions t;
  grid_option(env, o, "options", &t.H, &t.W);
  t.ratio = number_option(env, o, "options", "ratio", 0, true);
  if (!(t.ratio >= 0 && t.ratio < 1))
    throw_range(env, "options.ratio must be a finite number in [0, 1), got " + describe(o.Get("ratio")));
  t.prefix = int_option(env, o, "options", "prefix", 0, 0, false);
  t.sx = int_option(env, o, "options", "sx", 2, 1, false);
  t.sy = int_option(env, o, "options", "sy", 2, 1, false);
  t.random = bool_option(env, o, "options", "random", true);
  t.seed = (uint64_t)int_option(env, o, "options", "seed", 0, 0, false);
  if (x.shape[1] != t.prefix + (int64_t)t.H * t.W)
    throw_range(env, "x.shape[1] = " + std::to_string(x.shape[1]) + " must equal options.prefix + H * W = " +
                         std::to_string(t.prefix + (int64_t)t.H * t.W));
  const int r = (int)std::floor(t.ratio * t.H * t.W), cap = tomesd_max_merges(t.H, t.W, t.sx, t.sy);
  if (r > cap)
    throw_range(env, "options.ratio = " + describe(o.Get("ratio")) + " asks ToMeSD to merge " + std::to_string(r) +
                         " tokens, but this grid has only " + std::to_string(cap) + " sources (max ratio " +
                         std::to_string((double)cap / (t.H * t.W)) + "; tomesd caps silently, toma does not)");
  auto plan = std::make_shared<std::shared_ptr<Plan>>();
  return OpWorker::Queue(
      env, "tomesdPlan", {x.object, x.array},
      [x, t, plan] {
        if (!all_finite(x.data, x.dtype, x.bytes / dtype_size(x.dtype))) throw range_error("x.data contains NaN or Infinity");
        *plan = tomesd_plan_cpu(x.tokens(), t);
      },
      [plan](Napi::Env env) -> Napi::Value { return PlanObject::Wrap(env, *plan); });
}

}  // namespace toma
