// Shared pieces of the libtorch binding: tensor handles and error translation.
//
// A tensor reaches JavaScript as a napi External that owns a heap `Handle`.
// `release()` (explicit dispose) drops the libtorch reference at once; the
// External's finalizer is only a backstop for handles JavaScript forgot.
#pragma once

#include <napi.h>

#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace mcldef {

struct Handle {
  at::Tensor tensor;
  bool live = true;
};

// Handles created and not yet released (explicitly or by a finalizer).
extern std::atomic<int64_t> g_live_handles;

Napi::Value wrap(Napi::Env env, at::Tensor tensor);
// The tensor behind a handle; throws a JS TypeError for anything else.
const at::Tensor& unwrap(const Napi::Value& value, const char* what = "tensor");
Handle* handleOf(const Napi::Value& value, const char* what = "tensor");

// Turns libtorch's and the standard library's exceptions into JS exceptions
// carrying the original message (without libtorch's C++ backtrace).
template <typename F>
Napi::Value guarded(const Napi::CallbackInfo& info, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& error) {
    throw Napi::Error::New(info.Env(), error.what_without_backtrace());
  } catch (const std::exception& error) {
    throw Napi::Error::New(info.Env(), error.what());
  }
}

#define MCLDEF_FN(name) Napi::Value name(const Napi::CallbackInfo& info)

// Registration entry points, one per source file.
void initTensor(Napi::Env env, Napi::Object exports);
void initDispatch(Napi::Env env, Napi::Object exports);
void initAutograd(Napi::Env env, Napi::Object exports);

}  // namespace mcldef
