#include "napi/ops.h"

#include <cmath>
#include <memory>

#include "napi/args.h"
#include "napi/plan_object.h"
#include "napi/worker.h"
#include "ops/attention.h"
#include "ops/greedy.h"
#include "ops/merge.h"
#include "ops/merge_attention_unmerge.h"
#include "ops/plan.h"
#include "ops/unmerge.h"

namespace toma {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Off-thread check: NaN and Infinity are rejected, never propagated.
void check_finite(const HostTensor& t) {
  if (!all_finite(t.data, t.dtype, t.bytes / dtype_size(t.dtype)))
    throw range_error(t.name + ".data contains NaN or Infinity");
}

// For the ops whose every input element reaches the output (merge, unmerge, attention: a NaN or
// infinity anywhere in an input makes some output non-finite, even through a zero weight), the
// output is scanned instead of each input: one pass instead of three. Only when it is not finite
// are the inputs scanned, to name the culprit; finite inputs that overflow are named as such.
void check_result(const void* out, DType t, size_t n, std::initializer_list<const HostTensor*> inputs) {
  if (all_finite(out, t, n)) return;
  for (const HostTensor* in : inputs) check_finite(*in);
  throw range_error("the result overflowed to infinity (finite inputs too large for " +
                    std::string(dtype_name(t)) + ")");
}

void require_cpu(Napi::Env env, Napi::Value options, const std::string& name, const char* op) {
  if (backend_option(env, options, name) == "cuda")
    throw Napi::Error::New(env, std::string(op) + ": the CUDA backend has no kernel for this op in this build "
                                "(use { backend: 'cpu' })");
}

void check_plan_fit(Napi::Env env, const HostTensor& t, const Plan& p, int tokens, const char* what) {
  if (t.shape[0] != p.B || t.shape[1] != tokens)
    throw_range(env, t.name + ".shape " + shape_str(t.shape) + " does not fit the plan: expected [" +
                         std::to_string(p.B) + ", " + std::to_string(tokens) + ", C] (" + what + ")");
}

// The result array is made on the JavaScript thread and filled off it; a reference carries it
// to OnOK (a napi_value does not outlive the call's handle scope).
struct Output {
  std::shared_ptr<Napi::Reference<Napi::Value>> ref;
  void* data;
  std::vector<int64_t> shape;
  DType dtype;
  Tokens tokens() const { return Tokens{data, dtype, (int)shape[0], (int)shape[1], (int)shape[2]}; }
  size_t count() const { return (size_t)shape[0] * shape[1] * shape[2]; }
};

Output make_output(Napi::Env env, DType t, std::vector<int64_t> shape) {
  Output o;
  Napi::TypedArray a = new_data(env, t, (size_t)shape[0] * shape[1] * shape[2]);
  o.data = data_pointer(a);
  o.ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(Napi::Value(a)));
  o.shape = std::move(shape);
  o.dtype = t;
  return o;
}

Napi::Value resolve_tensor(Napi::Env env, const Output& o) {
  return tensor_object(env, o.ref->Value().As<Napi::TypedArray>(), o.shape, o.dtype);
}

struct AttnOptions {
  int heads;
  float scale;
  bool merge_queries;
  bool proportional;
};

AttnOptions parse_attention_options(Napi::Env env, Napi::Value v, int C, const std::string& name) {
  Napi::Object o = options_object(env, v, name, true);
  AttnOptions a;
  a.heads = int_option(env, o, name, "heads", 1, 1, true);
  if (C % a.heads != 0)
    throw_range(env, name + ".heads = " + std::to_string(a.heads) + " must divide the channel count C = " +
                         std::to_string(C));
  const double s = number_option(env, o, name, "scale", 0, false);
  if (!o.Get("scale").IsUndefined() && !(s > 0 && std::isfinite(s)))
    throw_range(env, name + ".scale must be a finite number > 0, got " + describe(o.Get("scale")));
  a.scale = (float)s;
  a.merge_queries = bool_option(env, o, name, "mergeQueries", true);
  a.proportional = bool_option(env, o, name, "proportional", false);
  return a;
}

void check_same(Napi::Env env, const HostTensor& a, const HostTensor& ref, bool tokens_too) {
  if (a.dtype != ref.dtype)
    throw_type(env, a.name + ".dtype '" + dtype_name(a.dtype) + "' does not match " + ref.name + ".dtype '" +
                        dtype_name(ref.dtype) + "'");
  if (a.shape[0] != ref.shape[0] || a.shape[2] != ref.shape[2] || (tokens_too && a.shape[1] != ref.shape[1]))
    throw_range(env, a.name + ".shape " + shape_str(a.shape) + " does not match " + ref.name + ".shape " +
                         shape_str(ref.shape));
}

}  // namespace

Napi::Value SelectDestinations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HostTensor x = parse_tensor(env, info[0], "x");
  PlanOptions o = parse_plan_options(env, info[1], "options");
  require_cpu(env, info[1], "options", "selectDestinations");
  const int64_t N = (int64_t)o.H * o.W;
  if (x.shape[1] != o.prefix + N)
    throw_range(env, "x.shape[1] = " + std::to_string(x.shape[1]) + " must equal options.prefix + H * W = " +
                         std::to_string(o.prefix + N));
  auto out = std::make_shared<std::vector<int32_t>>();
  auto K = std::make_shared<int>(0);
  return OpWorker::Queue(
      env, "selectDestinations", {x.object},
      [x, o, out, K] {
        check_finite(x);
        SelectParams p{x.tokens(), o};
        *out = select_destinations_cpu(p, K.get());
      },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Int32Array a = Napi::Int32Array::New(env, out->size());
        std::copy(out->begin(), out->end(), a.Data());
        return a;
      });
}

Napi::Value ComputePlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HostTensor x = parse_tensor(env, info[0], "x");
  PlanOptions o = parse_plan_options(env, info[1], "options");
  require_cpu(env, info[1], "options", "computePlan");
  const int64_t N = (int64_t)o.H * o.W;
  if (x.shape[1] != o.prefix + N)
    throw_range(env, "x.shape[1] = " + std::to_string(x.shape[1]) + " must equal options.prefix + H * W = " +
                         std::to_string(o.prefix + N));
  // Optional fixed destinations: the weight-only recompute of the reuse schedule.
  auto dest = std::make_shared<std::vector<int32_t>>();
  int dest_rows = 0;
  Napi::Value dv = info[1].As<Napi::Object>().Get("destinations");
  std::vector<Napi::Value> pin{x.object};
  if (!dv.IsUndefined()) {
    if (!dv.IsTypedArray() || dv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw_type(env, "options.destinations must be an Int32Array (plan.destinations), got " + describe(dv));
    Napi::Int32Array da = dv.As<Napi::Int32Array>();
    if (da.ArrayBuffer().IsDetached()) throw_type(env, "options.destinations is backed by a detached ArrayBuffer");
    const Regions R = make_regions(o.H, o.W, o.region);
    const size_t L = da.ElementLength();
    const int B = (int)x.shape[0];
    // [B, K] when that reads as B valid rows, else one row [K] shared by the batch.
    std::vector<int> counts;
    std::string why;
    if (L > 0 && L % B == 0 && L / B <= (size_t)o.H * o.W &&
        check_destinations(R, da.Data(), B, (int)(L / B), &counts, &why)) {
      dest_rows = B;
    } else if (L > 0 && L <= (size_t)o.H * o.W && check_destinations(R, da.Data(), 1, (int)L, &counts, &why)) {
      dest_rows = 1;
    } else {
      throw_range(env, "options.destinations does not fit the grid and region: " +
                           (why.empty() ? "expected [K] or [B, K] image-token indices" : why));
    }
    dest->assign(da.Data(), da.Data() + L);
  }
  auto plan = std::make_shared<std::shared_ptr<Plan>>();
  return OpWorker::Queue(
      env, "computePlan", pin,
      [x, o, plan, dest, dest_rows] {
        check_finite(x);
        if (dest_rows == 0) *plan = compute_plan_cpu(x.tokens(), o);
        else *plan = compute_plan_with_destinations_cpu(x.tokens(), o, dest->data(), dest_rows,
                                                        (int)(dest->size() / dest_rows));
      },
      [plan](Napi::Env env) -> Napi::Value { return PlanObject::Wrap(env, *plan); });
}

Napi::Value Merge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HostTensor x = parse_tensor(env, info[0], "x");
  std::shared_ptr<const Plan> plan = PlanObject::FromValue(env, info[1], "plan");
  require_cpu(env, info[2], "options", "merge");
  check_plan_fit(env, x, *plan, plan->P + plan->N, "prefix + N tokens");
  Output out = make_output(env, x.dtype, {x.shape[0], plan->P + plan->K, x.shape[2]});
  return OpWorker::Queue(
      env, "merge", {x.object, info[1]},
      [x, plan, out] {
        merge_cpu(*plan, x.tokens(), out.tokens());
        check_result(out.data, out.dtype, out.count(), {&x});
      },
      [out](Napi::Env env) { return resolve_tensor(env, out); });
}

Napi::Value Unmerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HostTensor y = parse_tensor(env, info[0], "y");
  std::shared_ptr<const Plan> plan = PlanObject::FromValue(env, info[1], "plan");
  require_cpu(env, info[2], "options", "unmerge");
  check_plan_fit(env, y, *plan, plan->P + plan->K, "prefix + K merged tokens");
  Output out = make_output(env, y.dtype, {y.shape[0], plan->P + plan->N, y.shape[2]});
  return OpWorker::Queue(
      env, "unmerge", {y.object, info[1]},
      [y, plan, out] {
        unmerge_cpu(*plan, y.tokens(), out.tokens());
        check_result(out.data, out.dtype, out.count(), {&y});
      },
      [out](Napi::Env env) { return resolve_tensor(env, out); });
}

Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HostTensor q = parse_tensor(env, info[0], "q");
  HostTensor k = parse_tensor(env, info[1], "k");
  HostTensor v = parse_tensor(env, info[2], "v");
  check_same(env, k, q, false);
  check_same(env, v, k, true);
  AttnOptions a = parse_attention_options(env, info[3], (int)q.shape[2], "options");
  require_cpu(env, info[3], "options", "attention");
  Output out = make_output(env, q.dtype, q.shape);
  return OpWorker::Queue(
      env, "attention", {q.object, k.object, v.object},
      [q, k, v, a, out] {
        AttentionParams p;
        p.q = q.tokens();
        p.k = k.tokens();
        p.v = v.tokens();
        p.out = out.tokens();
        p.heads = a.heads;
        p.scale = a.scale;
        attention_cpu(p);
        check_result(out.data, out.dtype, out.count(), {&q, &k, &v});
      },
      [out](Napi::Env env) { return resolve_tensor(env, out); });
}

Napi::Value MergeAttentionUnmerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HostTensor q = parse_tensor(env, info[0], "q");
  HostTensor k = parse_tensor(env, info[1], "k");
  HostTensor v = parse_tensor(env, info[2], "v");
  std::shared_ptr<const Plan> plan = PlanObject::FromValue(env, info[3], "plan");
  check_same(env, k, q, true);
  check_same(env, v, q, true);
  check_plan_fit(env, q, *plan, plan->P + plan->N, "prefix + N tokens");
  AttnOptions a = parse_attention_options(env, info[4], (int)q.shape[2], "options");
  require_cpu(env, info[4], "options", "mergeAttentionUnmerge");
  Output out = make_output(env, q.dtype, q.shape);
  return OpWorker::Queue(
      env, "mergeAttentionUnmerge", {q.object, k.object, v.object, info[3]},
      [q, k, v, a, plan, out] {
        MergeAttentionParams p;
        p.q = q.tokens();
        p.k = k.tokens();
        p.v = v.tokens();
        p.out = out.tokens();
        p.heads = a.heads;
        p.scale = a.scale;
        p.merge_queries = a.merge_queries;
        p.proportional = a.proportional;
        merge_attention_unmerge_cpu(*plan, p);
        check_result(out.data, out.dtype, out.count(), {&q, &k, &v});
      },
      [out](Napi::Env env) { return resolve_tensor(env, out); });
}

}  // namespace toma
