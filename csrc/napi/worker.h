// The one way ops leave the JavaScript thread: an AsyncWorker that owns a Promise, pins every
// JavaScript value it reads or writes until it settles, and maps C++ failures to the right error
// class (ArgError -> TypeError/RangeError, bad_alloc -> a clear out-of-memory Error, DeviceError
// and any other exception -> an Error whose message starts with the op's name).
#pragma once
#include <napi.h>

#include <functional>
#include <string>
#include <vector>

#include "core/error.h"

namespace toma {

class OpWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  static Napi::Promise Queue(Napi::Env env, const char* op, const std::vector<Napi::Value>& pin,
                             Work work, Done done) {
    auto* w = new OpWorker(env, op, std::move(work), std::move(done));
    for (const auto& v : pin)
      if (!v.IsEmpty()) w->pins_.push_back(Napi::Persistent(v));
    Napi::Promise p = w->deferred_.Promise();
    w->Napi::AsyncWorker::Queue();
    return p;
  }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const ArgError& e) {
      kind_ = e.kind == ArgError::Type ? 1 : 2;
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      SetError(op_ + ": out of memory (the inputs need more host memory than is available)");
    } catch (const std::exception& e) {
      SetError(prefixed(e.what()));
    } catch (...) {
      SetError(op_ + ": unknown native error");
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Value result;
    try {
      result = done_(env);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
      return;
    } catch (const std::exception& e) {  // not one may escape into node-addon-api (terminate)
      deferred_.Reject(Napi::Error::New(env, prefixed(e.what())).Value());
      return;
    }
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& e) override {
    Napi::Env env = Env();
    const std::string msg = e.Message();
    if (kind_ == 1) deferred_.Reject(Napi::TypeError::New(env, msg).Value());
    else if (kind_ == 2) deferred_.Reject(Napi::RangeError::New(env, msg).Value());
    else deferred_.Reject(Napi::Error::New(env, msg).Value());
  }

 private:
  OpWorker(Napi::Env env, const char* op, Work work, Done done)
      : Napi::AsyncWorker(env, op), deferred_(Napi::Promise::Deferred::New(env)), op_(op),
        work_(std::move(work)), done_(std::move(done)) {}

  // Messages start with the op's name once: a DeviceError from below usually names it already.
  std::string prefixed(const std::string& msg) const {
    if (msg.compare(0, op_.size(), op_) == 0 && msg.size() > op_.size() && msg[op_.size()] == ':') return msg;
    return op_ + ": " + msg;
  }

  Napi::Promise::Deferred deferred_;
  std::string op_;
  Work work_;
  Done done_;
  std::vector<Napi::Reference<Napi::Value>> pins_;
  int kind_ = 0;
};

}  // namespace toma
