// Shared pieces of the libtorch binding: tensor handles and error translation.
//
// A tensor reaches JavaScript as a small integer: its slot in a table of libtorch
// tensors. `release(id)` drops the reference at once and recycles the slot. There is
// deliberately no N-API finalizer per tensor: those run only when the event loop turns,
// so a synchronous training loop would pile up millions of pending finalizers (measured:
// ~6 KB of RSS per step). The JS side keeps a FinalizationRegistry as the backstop.
#pragma once

#include <napi.h>

#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace mcldef {

// Handles created and not yet released.
extern std::atomic<int64_t> g_live_handles;

// A new handle for `tensor` (null for an undefined tensor).
Napi::Value wrap(Napi::Env env, at::Tensor tensor);
// The tensor behind a handle; throws a JS error for a non-handle or a released one.
const at::Tensor& unwrap(const Napi::Value& value, const char* what = "tensor");

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

#ifndef MCLDEF_FN
#define MCLDEF_FN(name) Napi::Value name(const Napi::CallbackInfo& info)
#endif

// Registration entry points, one per source file.
void initTensor(Napi::Env env, Napi::Object exports);
void initDispatch(Napi::Env env, Napi::Object exports);
void initAutograd(Napi::Env env, Napi::Object exports);
void initImage(Napi::Env env, Napi::Object exports);
void initMemory(Napi::Env env, Napi::Object exports);

}  // namespace mcldef
