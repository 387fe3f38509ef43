#include "napi/args.h"

#include "core/result_memory.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

namespace toma {

namespace {

constexpr napi_typedarray_type kFloat16ArrayType = (napi_typedarray_type)11;  // newer Node only

std::string join_shape(Napi::Array a) {
  std::string s = "[";
  for (uint32_t i = 0; i < a.Length() && i < 8; ++i) {
    if (i) s += ", ";
    s += describe(a.Get(i));
  }
  if (a.Length() > 8) s += ", ...";
  return s + "]";
}

}  // namespace

void throw_type(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
void throw_range(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

std::string describe(Napi::Value v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return v.As<Napi::Boolean>().Value() ? "true" : "false";
    case napi_number: {
      const double d = v.As<Napi::Number>().DoubleValue();
      if (std::isnan(d)) return "NaN";
      if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
      char buf[32];
      for (int prec = 1; prec <= 17; ++prec) {  // shortest text that reads back as the same double
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (std::strtod(buf, nullptr) == d) break;
      }
      return buf;
    }
    case napi_string: {
      std::string s = v.As<Napi::String>().Utf8Value();
      if (s.size() > 40) s = s.substr(0, 40) + "...";
      return "'" + s + "'";
    }
    case napi_object:
      if (v.IsArray()) return "an array of length " + std::to_string(v.As<Napi::Array>().Length());
      if (v.IsTypedArray()) return "a typed array of length " + std::to_string(v.As<Napi::TypedArray>().ElementLength());
      return "an object";
    case napi_function: return "a function";
    case napi_symbol: return "a symbol";
    case napi_bigint: return "a bigint";
    default: return "a value of another type";
  }
}

HostTensor parse_tensor(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsObject() || v.IsArray() || v.IsTypedArray())
    throw_type(env, name + " must be a tensor { data, shape, dtype }, got " + describe(v));
  HostTensor t;
  t.object = v.As<Napi::Object>();
  t.name = name;
  Napi::Value data = t.object.Get("data");
  t.array = data;
  if (!data.IsTypedArray())
    throw_type(env, name + ".data must be a Float32Array (float32) or Uint16Array (float16/bfloat16), got " + describe(data));
  Napi::TypedArray arr = data.As<Napi::TypedArray>();
  napi_typedarray_type at = (napi_typedarray_type)-1;  // some runtimes leave it unwritten
  size_t length = 0;
  void* raw = nullptr;
  napi_value ab = nullptr;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, arr, &at, &length, &raw, &ab, &offset) != napi_ok)
    throw_type(env, name + ".data could not be read as a typed array");
  bool detached = false;
  if (ab != nullptr) napi_is_detached_arraybuffer(env, ab, &detached);
  if (detached) throw_type(env, name + ".data is backed by a detached ArrayBuffer");

  Napi::Value dt = t.object.Get("dtype");
  std::string dts;
  if (dt.IsUndefined()) {
    if (at != napi_float32_array)
      throw_type(env, name + ".dtype is required for a " + std::string(at == napi_uint16_array ? "Uint16Array" : "typed array") +
                          " ('float16' or 'bfloat16')");
    dts = "float32";
  } else if (!dt.IsString()) {
    throw_type(env, name + ".dtype must be 'float32', 'float16' or 'bfloat16', got " + describe(dt));
  } else {
    dts = dt.As<Napi::String>().Utf8Value();
  }
  if (dts == "float32") t.dtype = DType::F32;
  else if (dts == "float16") t.dtype = DType::F16;
  else if (dts == "bfloat16") t.dtype = DType::BF16;
  else throw_type(env, name + ".dtype must be 'float32', 'float16' or 'bfloat16', got " + describe(dt));
  const bool ok_type = t.dtype == DType::F32 ? at == napi_float32_array
                                             : (at == napi_uint16_array || (t.dtype == DType::F16 && at == kFloat16ArrayType));
  if (!ok_type)
    throw_type(env, name + ".data must be a " +
                        std::string(t.dtype == DType::F32 ? "Float32Array" : "Uint16Array") + " for dtype '" + dts + "'");

  Napi::Value sh = t.object.Get("shape");
  if (!sh.IsArray()) throw_type(env, name + ".shape must be an array [B, T, C], got " + describe(sh));
  Napi::Array sa = sh.As<Napi::Array>();
  if (sa.Length() != 3)
    throw_range(env, name + ".shape must have 3 dimensions [B, T, C], got " + join_shape(sa));
  double total = 1;
  for (uint32_t i = 0; i < 3; ++i) {
    Napi::Value d = sa.Get(i);
    const double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : std::nan("");
    if (!(x >= 1 && x <= std::numeric_limits<int32_t>::max() && std::floor(x) == x))
      throw_range(env, name + ".shape[" + std::to_string(i) + "] must be an integer >= 1, got " + join_shape(sa));
    t.shape.push_back((int64_t)x);
    total *= x;
  }
  if (total > 9007199254740991.0 || (double)length != total)
    throw_range(env, name + ".data has " + std::to_string(length) + " elements but " + name + ".shape " +
                         join_shape(sa) + " needs " + std::to_string((long long)total));
  t.data = raw;
  t.bytes = length * dtype_size(t.dtype);
  return t;
}

Napi::Object options_object(Napi::Env env, Napi::Value v, const std::string& name, bool required) {
  if (v.IsUndefined() && !required) return Napi::Object::New(env);
  if (!v.IsObject() || v.IsArray()) throw_type(env, name + " must be an object, got " + describe(v));
  return v.As<Napi::Object>();
}

double number_option(Napi::Env env, Napi::Object o, const std::string& path, const char* key,
                     double def, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) {
    if (required) throw_type(env, path + "." + key + " is required");
    return def;
  }
  if (!v.IsNumber()) throw_type(env, path + "." + key + " must be a number, got " + describe(v));
  return v.As<Napi::Number>().DoubleValue();
}

int int_option(Napi::Env env, Napi::Object o, const std::string& path, const char* key, int def,
               int min, bool required) {
  const double x = number_option(env, o, path, key, def, required);
  if (!(x >= min && x <= std::numeric_limits<int32_t>::max() && std::floor(x) == x))
    throw_range(env, path + "." + key + " must be an integer >= " + std::to_string(min) + ", got " +
                         describe(Napi::Number::New(env, x)));
  return (int)x;
}

bool bool_option(Napi::Env env, Napi::Object o, const std::string& path, const char* key, bool def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsBoolean()) throw_type(env, path + "." + key + " must be a boolean, got " + describe(v));
  return v.As<Napi::Boolean>().Value();
}

PlanOptions parse_plan_options(Napi::Env env, Napi::Value v, const std::string& name) {
  Napi::Object o = options_object(env, v, name, true);
  PlanOptions p;
  Napi::Value grid = o.Get("grid");
  if (!grid.IsArray()) throw_type(env, name + ".grid must be an array [H, W], got " + describe(grid));
  Napi::Array ga = grid.As<Napi::Array>();
  if (ga.Length() != 2) throw_range(env, name + ".grid must be [H, W], got " + join_shape(ga));
  int hw[2];
  for (uint32_t i = 0; i < 2; ++i) {
    Napi::Value d = ga.Get(i);
    const double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : std::nan("");
    if (!(x >= 1 && x <= 65536 && std::floor(x) == x))
      throw_range(env, name + ".grid must be [H, W] with integers in [1, 65536], got " + join_shape(ga));
    hw[i] = (int)x;
  }
  p.H = hw[0];
  p.W = hw[1];
  Napi::Value sim = o.Get("similarity");
  if (!sim.IsUndefined()) {
    p.similarity = number_option(env, o, name, "similarity", 0, true);
    if (!(p.similarity > 0 && p.similarity <= 1))
      throw_range(env, name + ".similarity must be a number in (0, 1], got " + describe(sim));
  }
  p.ratio = number_option(env, o, name, "ratio", 0, sim.IsUndefined());
  if (!(p.ratio >= 0 && p.ratio < 1))
    throw_range(env, name + ".ratio must be a finite number in [0, 1), got " + describe(o.Get("ratio")) +
                         " (it is never clamped)");
  p.tau = number_option(env, o, name, "tau", 1000.0, false);
  if (!(p.tau > 0))
    throw_range(env, name + ".tau must be > 0 (Infinity gives the hard plan), got " + describe(o.Get("tau")));
  p.prefix = int_option(env, o, name, "prefix", 0, 0, false);
  p.share_batch = bool_option(env, o, name, "shareBatch", false);
  Napi::Value rv = o.Get("region");
  if (!rv.IsUndefined()) {
    const std::string rn = name + ".region";
    Napi::Object r = options_object(env, rv, rn, true);
    Napi::Value kind = r.Get("kind");
    const std::string k = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "";
    if (k == "tile") {
      p.region.kind = RegionSpec::Tile;
      p.region.th = int_option(env, r, rn, "th", 4, 1, true);
      p.region.tw = int_option(env, r, rn, "tw", 4, 1, true);
    } else if (k == "stripe") {
      p.region.kind = RegionSpec::Stripe;
      p.region.rows = int_option(env, r, rn, "rows", 1, 1, true);
    } else if (k == "global") {
      p.region.kind = RegionSpec::Global;
    } else {
      throw_type(env, rn + ".kind must be 'tile', 'stripe' or 'global', got " + describe(kind));
    }
  }
  return p;
}

std::string backend_option(Napi::Env env, Napi::Value options, const std::string& name) {
  if (!options.IsObject()) return "cpu";
  Napi::Value b = options.As<Napi::Object>().Get("backend");
  if (b.IsUndefined()) return "cpu";
  const std::string s = b.IsString() ? b.As<Napi::String>().Utf8Value() : "";
  if (s != "cpu" && s != "cuda")
    throw_type(env, name + ".backend must be 'cpu' or 'cuda', got " + describe(b));
  return s;
}

Napi::TypedArray new_data(Napi::Env env, DType t, size_t n) {
  const size_t bytes = n * dtype_size(t);
  // TOMA_RESULT_POOL=0: plain typed arrays (external buffers are copied, not moved, when
  // transferred to a worker, and some runtimes refuse to transfer them at all).
  static const bool pooled = [] {
    const char* e = std::getenv("TOMA_RESULT_POOL");
    return !(e && std::string(e) == "0");
  }();
  if (pooled && bytes >= kPooledResultBytes) {
    // An external ArrayBuffer over pooled memory; its finalizer (at GC) gives the block back.
    // Runtimes that forbid external buffers (a V8 sandbox) get an ordinary typed array.
    void* block = result_alloc(bytes);
    napi_value ab = nullptr;
    if (block) {
      const napi_status st = napi_create_external_arraybuffer(
          env, block, bytes,
          [](napi_env, void* data, void* hint) { result_free(data, reinterpret_cast<size_t>(hint)); },
          reinterpret_cast<void*>(bytes), &ab);
      if (st == napi_ok) {
        // No napi_adjust_external_memory: V8 counts array buffers' backing stores itself, and
        // the extra pressure made it run a full mark-compact every few calls.
        Napi::ArrayBuffer buf(env, ab);
        if (t == DType::F32) return Napi::Float32Array::New(env, n, buf, 0);
        return Napi::Uint16Array::New(env, n, buf, 0);
      }
      result_free(block, bytes);
      // A failed call may leave a pending exception (a sandbox's refusal): clear it, fall back.
      bool pending = false;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
        napi_value ignored;
        napi_get_and_clear_last_exception(env, &ignored);
      }
    }
  }
  if (t == DType::F32) return Napi::Float32Array::New(env, n);
  return Napi::Uint16Array::New(env, n);
}

void* data_pointer(Napi::TypedArray a) {
  return static_cast<char*>(a.ArrayBuffer().Data()) + a.ByteOffset();
}

Napi::Object tensor_object(Napi::Env env, Napi::TypedArray data, const std::vector<int64_t>& shape, DType t) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array s = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) s.Set((uint32_t)i, Napi::Number::New(env, (double)shape[i]));
  o.Set("data", data);
  o.Set("shape", s);
  o.Set("dtype", dtype_name(t));
  return o;
}

}  // namespace toma
