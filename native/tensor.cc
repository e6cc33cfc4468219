// Tensor handles: wrapping, release, metadata and copies to and from JS memory.
#include "common.h"

#include <cstring>

namespace mcldef {

std::atomic<int64_t> g_live_handles{0};

namespace {
std::vector<at::Tensor> g_slots;   // handle id -> tensor; undefined when free
std::vector<uint32_t> g_free_slots;
}  // namespace

Napi::Value wrap(Napi::Env env, at::Tensor tensor) {
  if (!tensor.defined()) return env.Null();
  uint32_t id;
  if (g_free_slots.empty()) {
    id = static_cast<uint32_t>(g_slots.size());
    g_slots.push_back(std::move(tensor));
  } else {
    id = g_free_slots.back();
    g_free_slots.pop_back();
    g_slots[id] = std::move(tensor);
  }
  g_live_handles.fetch_add(1, std::memory_order_relaxed);
  return Napi::Number::New(env, id);
}

const at::Tensor& unwrap(const Napi::Value& value, const char* what) {
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(value.Env(), std::string("expected a tensor for ") + what);
  }
  uint32_t id = value.As<Napi::Number>().Uint32Value();
  if (id >= g_slots.size() || !g_slots[id].defined()) {
    throw Napi::Error::New(value.Env(), std::string("tensor used after dispose (") + what + ")");
  }
  return g_slots[id];
}

// release(handle): drops libtorch's reference now. Releasing a free slot is a no-op.
static MCLDEF_FN(release) {
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id < g_slots.size() && g_slots[id].defined()) {
    g_slots[id].reset();
    g_free_slots.push_back(id);
    g_live_handles.fetch_sub(1, std::memory_order_relaxed);
  }
  return info.Env().Undefined();
}

static MCLDEF_FN(liveCount) {
  return Napi::Number::New(info.Env(), static_cast<double>(g_live_handles.load()));
}

static MCLDEF_FN(isLive) {
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  return Napi::Boolean::New(info.Env(), id < g_slots.size() && g_slots[id].defined());
}

// fromBuffer(bytes: ArrayBuffer|TypedArray, shape: number[], dtype: number, device: string)
static MCLDEF_FN(fromBuffer) {
  return guarded(info, [&]() -> Napi::Value {
    const uint8_t* data = nullptr;
    size_t byteLength = 0;
    if (info[0].IsTypedArray()) {
      auto array = info[0].As<Napi::TypedArray>();
      data = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
      byteLength = array.ByteLength();
    } else if (info[0].IsArrayBuffer()) {
      auto buffer = info[0].As<Napi::ArrayBuffer>();
      data = static_cast<const uint8_t*>(buffer.Data());
      byteLength = buffer.ByteLength();
    } else {
      throw Napi::TypeError::New(info.Env(), "fromBuffer: expected a typed array or ArrayBuffer");
    }
    auto shapeArray = info[1].As<Napi::Array>();
    std::vector<int64_t> shape(shapeArray.Length());
    for (uint32_t i = 0; i < shapeArray.Length(); ++i) {
      shape[i] = shapeArray.Get(i).As<Napi::Number>().Int64Value();
    }
    auto dtype = static_cast<at::ScalarType>(info[2].As<Napi::Number>().Int32Value());
    at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(dtype));
    size_t expected = tensor.numel() * tensor.element_size();
    if (expected != byteLength) {
      throw Napi::RangeError::New(info.Env(), "fromBuffer: shape " + c10::str(tensor.sizes()) + " of " +
                                                  c10::toString(dtype) + " needs " + std::to_string(expected) +
                                                  " bytes, got " + std::to_string(byteLength));
    }
    if (expected > 0) std::memcpy(tensor.data_ptr(), data, expected);
    if (info.Length() > 3 && info[3].IsString()) {
      std::string device = info[3].As<Napi::String>();
      if (device != "cpu") tensor = tensor.to(at::Device(device));
    }
    return wrap(info.Env(), std::move(tensor));
  });
}

// toBuffer(handle) -> ArrayBuffer holding the elements in row-major order.
static MCLDEF_FN(toBuffer) {
  return guarded(info, [&]() -> Napi::Value {
    at::Tensor tensor = unwrap(info[0]).detach();
    if (!tensor.device().is_cpu()) tensor = tensor.cpu();
    tensor = tensor.contiguous();
    size_t bytes = tensor.numel() * tensor.element_size();
    auto buffer = Napi::ArrayBuffer::New(info.Env(), bytes);
    if (bytes > 0) std::memcpy(buffer.Data(), tensor.data_ptr(), bytes);
    return buffer;
  });
}

static MCLDEF_FN(shape) {
  const at::Tensor& tensor = unwrap(info[0]);
  auto sizes = tensor.sizes();
  auto result = Napi::Array::New(info.Env(), sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) result.Set(i, Napi::Number::New(info.Env(), sizes[i]));
  return result;
}

static MCLDEF_FN(dtype) {
  return Napi::Number::New(info.Env(), static_cast<int>(unwrap(info[0]).scalar_type()));
}

static MCLDEF_FN(device) { return Napi::String::New(info.Env(), unwrap(info[0]).device().str()); }

static MCLDEF_FN(item) {
  return guarded(info, [&]() -> Napi::Value {
    c10::Scalar value = unwrap(info[0]).item();
    if (value.isBoolean()) return Napi::Boolean::New(info.Env(), value.toBool());
    if (value.isIntegral(false)) return Napi::Number::New(info.Env(), static_cast<double>(value.toLong()));
    return Napi::Number::New(info.Env(), value.toDouble());
  });
}

static MCLDEF_FN(sameStorage) {
  const at::Tensor& a = unwrap(info[0]);
  const at::Tensor& b = unwrap(info[1]);
  return Napi::Boolean::New(info.Env(), a.is_alias_of(b));
}

void initTensor(Napi::Env env, Napi::Object exports) {
  exports.Set("release", Napi::Function::New(env, release, "release"));
  exports.Set("liveCount", Napi::Function::New(env, liveCount, "liveCount"));
  exports.Set("isLive", Napi::Function::New(env, isLive, "isLive"));
  exports.Set("fromBuffer", Napi::Function::New(env, fromBuffer, "fromBuffer"));
  exports.Set("toBuffer", Napi::Function::New(env, toBuffer, "toBuffer"));
  exports.Set("shape", Napi::Function::New(env, shape, "shape"));
  exports.Set("dtype", Napi::Function::New(env, dtype, "dtype"));
  exports.Set("device", Napi::Function::New(env, device, "device"));
  exports.Set("item", Napi::Function::New(env, item, "item"));
  exports.Set("sameStorage", Napi::Function::New(env, sameStorage, "sameStorage"));
}

}  // namespace mcldef
