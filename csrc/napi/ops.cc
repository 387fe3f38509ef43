#include "napi/ops.h"

#include <cmath>
#include <memory>

#include "napi/args.h"
#include "napi/device_tensor.h"
#include "napi/op_support.h"
#include "napi/plan_object.h"
#include "napi/worker.h"
#include "ops/attention.h"
#include "ops/cuda.h"
#include "ops/greedy.h"
#include "ops/merge.h"
#include "ops/merge_attention_unmerge.h"
#include "ops/plan.h"
#include "ops/unmerge.h"

namespace toma {

namespace {

struct AttnOptions {
  int heads;
  float scale;
  bool merge_queries;
  bool proportional;
};

// The scale multiplies every score: with finite inputs an overflow may be its doing.
std::string scale_hint(const AttnOptions& a, int C) {
  const double s = a.scale > 0 ? a.scale : 1.0 / std::sqrt((double)C / a.heads);
  return " at options.scale = " + std::to_string(s) + (a.scale > 0 ? "" : " (the default 1/sqrt(head dim))");
}

AttnOptions parse_attention_options(Napi::Env env, Napi::Value v, int C, const std::string& name) {
  Napi::Object o = options_object(env, v, name, true);
  AttnOptions a;
  a.heads = int_option(env, o, name, "heads", 1, 1, true);
  if (C % a.heads != 0)
    throw_range(env, name + ".heads = " + std::to_string(a.heads) + " must divide the channel count C = " +
                         std::to_string(C));
  const double s = number_option(env, o, name, "scale", 0, false);
  // Finite as float32 too: the kernels compute in float32, where 1e300 is infinity.
  if (!o.Get("scale").IsUndefined() && !(s > 0 && s <= 3.4028234663852886e38))
    throw_range(env, name + ".scale must be a finite number > 0, got " + describe(o.Get("scale")));
  a.scale = (float)s;
  a.merge_queries = bool_option(env, o, name, "mergeQueries", true);
  a.proportional = bool_option(env, o, name, "proportional", false);
  return a;
}

void check_grid(Napi::Env env, const TensorInfo& x, const PlanOptions& o) {
  const int64_t N = (int64_t)o.H * o.W;
  if (x.shape[1] != o.prefix + N)
    throw_range(env, "x.shape[1] = " + std::to_string(x.shape[1]) + " must equal options.prefix + H * W = " +
                         std::to_string(o.prefix + N));
}

// Optional fixed destinations of computePlan: the weight-only recompute of the reuse schedule.
// Returns the rows (B, or 1 shared by the batch; 0 when absent) and fills *dest.
int parse_destinations(Napi::Env env, Napi::Value dv, const PlanOptions& o, int B, std::vector<int32_t>* dest) {
  if (dv.IsUndefined()) return 0;
  if (!dv.IsTypedArray() || dv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_type(env, "options.destinations must be an Int32Array (plan.destinations), got " + describe(dv));
  Napi::Int32Array da = dv.As<Napi::Int32Array>();
  if (da.ArrayBuffer().IsDetached()) throw_type(env, "options.destinations is backed by a detached ArrayBuffer");
  const Regions R = make_regions(o.H, o.W, o.region);
  const size_t L = da.ElementLength();
  // [B, K] when that reads as B valid rows, else one row [K] shared by the batch.
  std::vector<int> counts;
  std::string why;
  int rows = 0;
  if (L > 0 && L % B == 0 && L / B <= (size_t)o.H * o.W &&
      check_destinations(R, da.Data(), B, (int)(L / B), &counts, &why)) {
    rows = B;
  } else if (L > 0 && L <= (size_t)o.H * o.W && check_destinations(R, da.Data(), 1, (int)L, &counts, &why)) {
    rows = 1;
  } else {
    throw_range(env, "options.destinations does not fit the grid and region: " +
                         (why.empty() ? "expected [K] or [B, K] image-token indices" : why));
  }
  dest->assign(da.Data(), da.Data() + L);
  return rows;
}

AttentionParams attention_params(ConstTokens q, ConstTokens k, ConstTokens v, Tokens out, const AttnOptions& a) {
  AttentionParams p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.heads = a.heads;
  p.scale = a.scale;
  return p;
}

MergeAttentionParams mau_params(ConstTokens q, ConstTokens k, ConstTokens v, Tokens out, const AttnOptions& a) {
  MergeAttentionParams p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.heads = a.heads;
  p.scale = a.scale;
  p.merge_queries = a.merge_queries;
  p.proportional = a.proportional;
  return p;
}

// A conversion of the plan made during the op is reported to V8 when the op settles.
template <class F>
OpWorker::Done reporting(std::shared_ptr<PlanHolder> plan, F f) {
  return [plan, f](Napi::Env env) -> Napi::Value {
    plan->report(env);
    return f(env);
  };
}

}  // namespace

// Every op: on the CPU the inputs must be host tensors; on CUDA host inputs are staged (copied in,
// the result copied back to a new host tensor) and a DeviceTensor main input gives a DeviceTensor.

Napi::Value SelectDestinations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg x = parse_tensor_arg(env, info[0], "x");
  PlanOptions o = parse_plan_options(env, info[1], "options");
  check_grid(env, x, o);  // shape errors first: a RangeError whatever the backend
  const bool cuda = use_cuda(env, info[1], "options", "selectDestinations", {&x});
  auto out = std::make_shared<std::vector<int32_t>>();
  return OpWorker::Queue(
      env, "selectDestinations", {x.object, x.array},
      [x, o, out, cuda] {
        check_finite(x);
        int K = 0;
        if (cuda) {
          DeviceStage stage("selectDestinations");
          *out = select_destinations_cuda(stage.input(x), o, &K);
        } else {
          *out = select_destinations_cpu(SelectParams{x.tokens(), o}, &K);
        }
      },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Int32Array a = Napi::Int32Array::New(env, out->size());
        std::copy(out->begin(), out->end(), a.Data());
        return a;
      });
}

Napi::Value ComputePlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg x = parse_tensor_arg(env, info[0], "x");
  PlanOptions o = parse_plan_options(env, info[1], "options");
  check_grid(env, x, o);
  const bool cuda = use_cuda(env, info[1], "options", "computePlan", {&x});
  auto dest = std::make_shared<std::vector<int32_t>>();
  const int rows =
      parse_destinations(env, info[1].As<Napi::Object>().Get("destinations"), o, (int)x.shape[0], dest.get());
  // A plan computed on CUDA stays there; the host form is made only if a CPU op asks for it.
  auto host = std::make_shared<std::shared_ptr<const Plan>>();
  auto device = std::make_shared<std::shared_ptr<const DevicePlan>>();
  return OpWorker::Queue(
      env, "computePlan", {x.object, x.array},
      [x, o, dest, rows, cuda, host, device] {
        check_finite(x);
        const int K = rows ? (int)(dest->size() / rows) : 0;
        if (cuda) {
          DeviceStage stage("computePlan");
          const ConstTokens xt = stage.input(x);
          *device = rows ? compute_plan_with_destinations_cuda(xt, o, dest->data(), rows, K) : compute_plan_cuda(xt, o);
        } else {
          *host = rows ? compute_plan_with_destinations_cpu(x.tokens(), o, dest->data(), rows, K)
                       : compute_plan_cpu(x.tokens(), o);
        }
      },
      [host, device](Napi::Env env) -> Napi::Value {
        return *device ? PlanObject::Wrap(env, *device) : PlanObject::Wrap(env, *host);
      });
}

// merge and unmerge: one tensor through the plan's weights, [B, P + from, C] to [B, P + to, C]
// (from, to = N, K for merge and K, N for unmerge).
Napi::Value PlanRows(const Napi::CallbackInfo& info, const char* op, const char* arg, bool merging,
                     void (*cpu)(const Plan&, ConstTokens, Tokens),
                     void (*gpu)(const DevicePlan&, ConstTokens, Tokens)) {
  Napi::Env env = info.Env();
  TensorArg x = parse_tensor_arg(env, info[0], arg);
  std::shared_ptr<PlanHolder> plan = PlanObject::FromValue(env, info[1], "plan");
  const int from = merging ? plan->N : plan->K, to = merging ? plan->K : plan->N;
  check_plan_fit(env, x, plan->B, plan->P + from, merging ? "prefix + N tokens" : "prefix + K merged tokens");
  const bool cuda = use_cuda(env, info[2], "options", op, {&x});
  const std::vector<int64_t> shape{x.shape[0], plan->P + to, x.shape[2]};
  if (cuda) {
    reject_out(env, info[2], "options", op);
    DeviceResult out(env, x.on_device(), x.dtype, shape);
    return OpWorker::Queue(
        env, op, {x.object, x.array, info[1]},
        [x, plan, out, op, gpu] {
          out.check_inputs_first({&x});
          DeviceStage stage(op);
          gpu(*plan->device(), stage.input(x), out.tokens(stage));
          out.finish(op, {&x});
        },
        reporting(plan, [out](Napi::Env env) { return out.value(env); }));
  }
  Output out = make_output(env, x.dtype, shape, info[2], "options", {&x});
  return OpWorker::Queue(
      env, op, {x.object, x.array, info[1]},
      [x, plan, out, cpu] {
        cpu(*plan->host(), x.tokens(), out.tokens());
        check_result(out.data, out.dtype, out.count(), {&x});
      },
      reporting(plan, [out](Napi::Env env) { return resolve_tensor(env, out); }));
}

Napi::Value Merge(const Napi::CallbackInfo& info) {
  return PlanRows(info, "merge", "x", true, merge_cpu, merge_cuda);
}

Napi::Value Unmerge(const Napi::CallbackInfo& info) {
  return PlanRows(info, "unmerge", "y", false, unmerge_cpu, unmerge_cuda);
}

Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg q = parse_tensor_arg(env, info[0], "q");
  TensorArg k = parse_tensor_arg(env, info[1], "k");
  TensorArg v = parse_tensor_arg(env, info[2], "v");
  check_same(env, k, q, false);
  check_same(env, v, k, true);
  AttnOptions a = parse_attention_options(env, info[3], (int)q.shape[2], "options");
  const bool cuda = use_cuda(env, info[3], "options", "attention", {&q, &k, &v});
  if (cuda) {
    reject_out(env, info[3], "options", "attention");
    DeviceResult out(env, q.on_device(), q.dtype, q.shape);
    return OpWorker::Queue(
        env, "attention", {q.object, q.array, k.object, k.array, v.object, v.array},
        [q, k, v, a, out] {
          check_finite({&q, &k});  // see the CPU path
          out.check_inputs_first({&q, &k, &v});
          DeviceStage stage("attention");
          attention_cuda(attention_params(stage.input(q), stage.input(k), stage.input(v), out.tokens(stage), a));
          out.finish("attention", {&q, &k, &v}, scale_hint(a, (int)q.shape[2]));
        },
        [out](Napi::Env env) { return out.value(env); });
  }
  Output out = make_output(env, q.dtype, q.shape, info[3], "options", {&q, &k, &v});
  return OpWorker::Queue(
      env, "attention", {q.object, q.array, k.object, k.array, v.object, v.array},
      [q, k, v, a, out] {
        // A NaN score can vanish in the softmax (max and the exp clamps drop NaN) and leave a
        // finite, wrong result: the kernel notes non-finite q / k rows as it loads them, and only
        // then are q and k scanned, to name the culprit. v's NaN always reaches the output.
        bool qk_bad = false;
        AttentionParams ap = attention_params(q.tokens(), k.tokens(), v.tokens(), out.tokens(), a);
        ap.qk_nonfinite = &qk_bad;
        attention_cpu(ap);
        if (qk_bad) {
          check_finite({&q, &k});
          throw range_error("q or k rows overflowed to infinity (finite inputs too large for float32)");
        }
        check_result(out.data, out.dtype, out.count(), {&q, &k, &v}, scale_hint(a, (int)q.shape[2]));
      },
      [out](Napi::Env env) { return resolve_tensor(env, out); });
}

Napi::Value MergeAttentionUnmerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg q = parse_tensor_arg(env, info[0], "q");
  TensorArg k = parse_tensor_arg(env, info[1], "k");
  TensorArg v = parse_tensor_arg(env, info[2], "v");
  std::shared_ptr<PlanHolder> plan = PlanObject::FromValue(env, info[3], "plan");
  check_same(env, k, q, true);
  check_same(env, v, q, true);
  check_plan_fit(env, q, plan->B, plan->P + plan->N, "prefix + N tokens");
  AttnOptions a = parse_attention_options(env, info[4], (int)q.shape[2], "options");
  const bool cuda = use_cuda(env, info[4], "options", "mergeAttentionUnmerge", {&q, &k, &v});
  if (cuda) {
    reject_out(env, info[4], "options", "mergeAttentionUnmerge");
    DeviceResult out(env, q.on_device(), q.dtype, q.shape);
    return OpWorker::Queue(
        env, "mergeAttentionUnmerge", {q.object, q.array, k.object, k.array, v.object, v.array, info[3]},
        [q, k, v, a, plan, out] {
          check_finite({&q, &k});  // see Attention's CPU path
          out.check_inputs_first({&q, &k, &v});
          DeviceStage stage("mergeAttentionUnmerge");
          merge_attention_unmerge_cuda(*plan->device(),
                                       mau_params(stage.input(q), stage.input(k), stage.input(v), out.tokens(stage), a));
          out.finish("mergeAttentionUnmerge", {&q, &k, &v}, scale_hint(a, (int)q.shape[2]));
        },
        reporting(plan, [out](Napi::Env env) { return out.value(env); }));
  }
  Output out = make_output(env, q.dtype, q.shape, info[4], "options", {&q, &k, &v});
  return OpWorker::Queue(
      env, "mergeAttentionUnmerge", {q.object, q.array, k.object, k.array, v.object, v.array, info[3]},
      [q, k, v, a, plan, out] {
        bool qk_bad = false;  // see Attention's CPU path
        MergeAttentionParams mp = mau_params(q.tokens(), k.tokens(), v.tokens(), out.tokens(), a);
        mp.qk_nonfinite = &qk_bad;
        merge_attention_unmerge_cpu(*plan->host(), mp);
        if (qk_bad) {
          check_finite({&q, &k});
          throw range_error("q or k rows overflowed to infinity (finite inputs too large for float32)");
        }
        check_result(out.data, out.dtype, out.count(), {&q, &k, &v}, scale_hint(a, (int)q.shape[2]));
      },
      reporting(plan, [out](Napi::Env env) { return resolve_tensor(env, out); }));
}

}  // namespace toma
