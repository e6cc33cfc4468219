// Autograd (backward, grad, requires_grad, grad mode) and global settings
// (seed, threads, available devices).
#include "common.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/version.h>

#include <mutex>

namespace mcldef {

namespace {

std::vector<at::Tensor> tensorList(const Napi::Value& value, const char* what, bool allowNull) {
  std::vector<at::Tensor> list;
  if (value.IsUndefined() || value.IsNull()) return list;
  auto array = value.As<Napi::Array>();
  list.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value element = array.Get(i);
    if (allowNull && (element.IsNull() || element.IsUndefined())) {
      list.emplace_back();
    } else {
      list.push_back(unwrap(element, what));
    }
  }
  return list;
}

c10::optional<bool> optionalBool(const Napi::Value& value) {
  if (value.IsUndefined() || value.IsNull()) return c10::nullopt;
  return value.ToBoolean().Value();
}

// backward(outputs[], gradOutputs[]|null, retainGraph?, createGraph?)
MCLDEF_FN(backward) {
  return guarded(info, [&]() -> Napi::Value {
    auto outputs = tensorList(info[0], "outputs", false);
    auto grads = tensorList(info[1], "gradOutputs", true);
    torch::autograd::backward(outputs, grads, optionalBool(info[2]), info[3].ToBoolean().Value());
    return info.Env().Undefined();
  });
}

// grad(outputs[], inputs[], gradOutputs[]|null, retainGraph?, createGraph?, allowUnused?) -> (tensor|null)[]
MCLDEF_FN(grad) {
  return guarded(info, [&]() -> Napi::Value {
    auto outputs = tensorList(info[0], "outputs", false);
    auto inputs = tensorList(info[1], "inputs", false);
    auto grads = tensorList(info[2], "gradOutputs", true);
    auto results = torch::autograd::grad(outputs, inputs, grads, optionalBool(info[3]), info[4].ToBoolean().Value(),
                                         info[5].ToBoolean().Value());
    auto array = Napi::Array::New(info.Env(), results.size());
    for (size_t i = 0; i < results.size(); ++i) {
      array.Set(i, wrap(info.Env(), results[i]));
    }
    return array;
  });
}

// gradOf(t) -> handle to t.grad, or null.
MCLDEF_FN(gradOf) {
  const at::Tensor& tensor = unwrap(info[0]);
  const at::Tensor& gradient = tensor.grad();
  return wrap(info.Env(), gradient);
}

// setGrad(t, g|null): replaces or clears t.grad.
MCLDEF_FN(setGrad) {
  return guarded(info, [&]() -> Napi::Value {
    const at::Tensor& tensor = unwrap(info[0]);
    if (info[1].IsNull() || info[1].IsUndefined()) {
      tensor.mutable_grad().reset();
    } else {
      tensor.mutable_grad() = unwrap(info[1], "grad");
    }
    return info.Env().Undefined();
  });
}

MCLDEF_FN(requiresGrad) { return Napi::Boolean::New(info.Env(), unwrap(info[0]).requires_grad()); }

MCLDEF_FN(setRequiresGrad) {
  return guarded(info, [&]() -> Napi::Value {
    unwrap(info[0]).set_requires_grad(info[1].ToBoolean().Value());
    return info.Env().Undefined();
  });
}

MCLDEF_FN(isLeaf) { return Napi::Boolean::New(info.Env(), unwrap(info[0]).is_leaf()); }

MCLDEF_FN(gradFnName) {
  const auto& function = unwrap(info[0]).grad_fn();
  if (!function) return info.Env().Null();
  return Napi::String::New(info.Env(), function->name());
}

MCLDEF_FN(isGradEnabled) { return Napi::Boolean::New(info.Env(), c10::GradMode::is_enabled()); }

MCLDEF_FN(setGradEnabled) {
  c10::GradMode::set_enabled(info[0].ToBoolean().Value());
  return info.Env().Undefined();
}

MCLDEF_FN(isAutocastEnabled) { return Napi::Boolean::New(info.Env(), at::autocast::is_cpu_enabled()); }

// CPU autocast to bfloat16: matrix products and convolutions run in bfloat16 (oneDNN's
// AMX/AVX-512 kernels), the rest in float32, as torch.autocast('cpu') does. Enter and exit
// come in pairs (the JS side wraps a function); leaving the outermost region drops the
// cast-weight cache, as the Python context manager does. Enter returns the previous state.
MCLDEF_FN(enterAutocast) {
  return guarded(info, [&]() -> Napi::Value {
    bool previous = at::autocast::is_cpu_enabled();
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::increment_nesting();
    at::autocast::set_cpu_enabled(true);
    return Napi::Boolean::New(info.Env(), previous);
  });
}

MCLDEF_FN(exitAutocast) {
  return guarded(info, [&]() -> Napi::Value {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_cpu_enabled(info[0].ToBoolean().Value());
    return info.Env().Undefined();
  });
}

MCLDEF_FN(manualSeed) {
  return guarded(info, [&]() -> Napi::Value {
    auto seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
    auto generator = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_current_seed(seed);
    }
    if (at::globalContext().hasCUDA()) {
      // CUDA builds seed their device generators through the same context call.
      at::Generator cudaGenerator = at::globalContext().defaultGenerator(at::Device(at::kCUDA, 0));
      std::lock_guard<std::mutex> lock(cudaGenerator.mutex());
      cudaGenerator.set_current_seed(seed);
    }
    return info.Env().Undefined();
  });
}

MCLDEF_FN(setNumThreads) {
  return guarded(info, [&]() -> Napi::Value {
    int threads = info[0].As<Napi::Number>().Int32Value();
    if (threads < 1) throw Napi::RangeError::New(info.Env(), "setNumThreads: thread count must be at least 1");
    at::set_num_threads(threads);
    return info.Env().Undefined();
  });
}

MCLDEF_FN(getNumThreads) { return Napi::Number::New(info.Env(), at::get_num_threads()); }

MCLDEF_FN(cudaAvailable) { return Napi::Boolean::New(info.Env(), at::globalContext().hasCUDA()); }

// CUDA devices visible to this libtorch (0 in a CPU-only build, through the hooks that a CUDA
// build registers).
MCLDEF_FN(cudaDeviceCount) {
  return Napi::Number::New(info.Env(), at::globalContext().hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0);
}

MCLDEF_FN(version) { return Napi::String::New(info.Env(), TORCH_VERSION); }

}  // namespace

void initAutograd(Napi::Env env, Napi::Object exports) {
  exports.Set("backward", Napi::Function::New(env, backward, "backward"));
  exports.Set("grad", Napi::Function::New(env, grad, "grad"));
  exports.Set("gradOf", Napi::Function::New(env, gradOf, "gradOf"));
  exports.Set("setGrad", Napi::Function::New(env, setGrad, "setGrad"));
  exports.Set("requiresGrad", Napi::Function::New(env, requiresGrad, "requiresGrad"));
  exports.Set("setRequiresGrad", Napi::Function::New(env, setRequiresGrad, "setRequiresGrad"));
  exports.Set("isLeaf", Napi::Function::New(env, isLeaf, "isLeaf"));
  exports.Set("gradFnName", Napi::Function::New(env, gradFnName, "gradFnName"));
  exports.Set("isGradEnabled", Napi::Function::New(env, isGradEnabled, "isGradEnabled"));
  exports.Set("setGradEnabled", Napi::Function::New(env, setGradEnabled, "setGradEnabled"));
  exports.Set("isAutocastEnabled", Napi::Function::New(env, isAutocastEnabled, "isAutocastEnabled"));
  exports.Set("enterAutocast", Napi::Function::New(env, enterAutocast, "enterAutocast"));
  exports.Set("exitAutocast", Napi::Function::New(env, exitAutocast, "exitAutocast"));
  exports.Set("manualSeed", Napi::Function::New(env, manualSeed, "manualSeed"));
  exports.Set("setNumThreads", Napi::Function::New(env, setNumThreads, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New(env, getNumThreads, "getNumThreads"));
  exports.Set("cudaAvailable", Napi::Function::New(env, cudaAvailable, "cudaAvailable"));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, cudaDeviceCount, "cudaDeviceCount"));
  exports.Set("version", Napi::Function::New(env, version, "version"));
}

}  // namespace mcldef
