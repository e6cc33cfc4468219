// Generic operator calls through libtorch's dispatcher.
//
// Instead of one hand-written binding per op, JS looks an ATen operator up once
// by schema name (`lookup("aten::conv2d", "")`) and then calls it by index. The
// schema decides how each JS argument becomes an IValue, so every ATen op is
// reachable, autograd included (the call goes through the Autograd dispatch key).
#include "common.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/jit_type.h>
#include <ATen/core/stack.h>

#include <memory>
#include <vector>

namespace mcldef {

namespace {

enum class ArgKind { Tensor, Int, Float, Bool, Scalar, IntList, FloatList, BoolList, TensorList, OptTensorList, Device, String, Generator, Unsupported };
enum class RetKind { Tensor, TensorWritten, TensorList, Number, Bool, Unsupported };

struct ArgSpec {
  std::string name;
  ArgKind kind;
  bool optional;
  size_t fixedLength;  // int[2] and friends: a single number is repeated this many times
  c10::optional<c10::IValue> defaultValue;
};

struct OpEntry {
  c10::OperatorHandle handle;
  std::string name;
  std::vector<ArgSpec> args;
  std::vector<RetKind> returns;
};

std::vector<std::unique_ptr<OpEntry>> g_ops;

ArgKind argKindOf(const c10::TypePtr& type) {
  switch (type->kind()) {
    case c10::TypeKind::TensorType: return ArgKind::Tensor;
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType: return ArgKind::Int;
    case c10::TypeKind::FloatType: return ArgKind::Float;
    case c10::TypeKind::BoolType: return ArgKind::Bool;
    case c10::TypeKind::NumberType: return ArgKind::Scalar;
    case c10::TypeKind::DeviceObjType: return ArgKind::Device;
    case c10::TypeKind::StringType: return ArgKind::String;
    case c10::TypeKind::GeneratorType: return ArgKind::Generator;
    case c10::TypeKind::ListType: {
      const auto& element = type->expectRef<c10::ListType>().getElementType();
      switch (element->kind()) {
        case c10::TypeKind::IntType:
        case c10::TypeKind::SymIntType: return ArgKind::IntList;
        case c10::TypeKind::FloatType: return ArgKind::FloatList;
        case c10::TypeKind::BoolType: return ArgKind::BoolList;
        case c10::TypeKind::TensorType: return ArgKind::TensorList;
        case c10::TypeKind::OptionalType: return ArgKind::OptTensorList;
        default: return ArgKind::Unsupported;
      }
    }
    default: return ArgKind::Unsupported;
  }
}

RetKind retKindOf(const c10::Argument& ret) {
  switch (ret.type()->kind()) {
    case c10::TypeKind::TensorType:
      return (ret.alias_info() && ret.alias_info()->isWrite()) ? RetKind::TensorWritten : RetKind::Tensor;
    case c10::TypeKind::ListType: return RetKind::TensorList;
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType:
    case c10::TypeKind::FloatType:
    case c10::TypeKind::NumberType: return RetKind::Number;
    case c10::TypeKind::BoolType: return RetKind::Bool;
    default: return RetKind::Unsupported;
  }
}

[[noreturn]] void badArgument(Napi::Env env, const OpEntry& op, const ArgSpec& arg, const char* expected) {
  throw Napi::TypeError::New(env, op.name + ": argument '" + arg.name + "' must be " + expected);
}

int64_t toInt(Napi::Env env, const OpEntry& op, const ArgSpec& arg, const Napi::Value& value) {
  if (value.IsNumber()) return value.As<Napi::Number>().Int64Value();
  if (value.IsBoolean()) return value.As<Napi::Boolean>().Value() ? 1 : 0;
  badArgument(env, op, arg, "an integer");
}

double toFloat(Napi::Env env, const OpEntry& op, const ArgSpec& arg, const Napi::Value& value) {
  if (value.IsNumber()) return value.As<Napi::Number>().DoubleValue();
  badArgument(env, op, arg, "a number");
}

c10::IValue toIValue(Napi::Env env, const OpEntry& op, const ArgSpec& arg, const Napi::Value& value) {
  switch (arg.kind) {
    case ArgKind::Tensor: return unwrap(value, arg.name.c_str());
    case ArgKind::Int: return toInt(env, op, arg, value);
    case ArgKind::Float: return toFloat(env, op, arg, value);
    case ArgKind::Bool:
      if (value.IsBoolean()) return value.As<Napi::Boolean>().Value();
      if (value.IsNumber()) return value.As<Napi::Number>().DoubleValue() != 0;
      badArgument(env, op, arg, "a boolean");
    case ArgKind::Scalar: {
      // Mirrors Python: an integral JS number is an int scalar, others are float.
      if (value.IsBoolean()) return c10::Scalar(value.As<Napi::Boolean>().Value());
      if (!value.IsNumber()) badArgument(env, op, arg, "a number");
      double number = value.As<Napi::Number>().DoubleValue();
      if (std::nearbyint(number) == number && std::fabs(number) < 9007199254740992.0) {
        return c10::Scalar(static_cast<int64_t>(number));
      }
      return c10::Scalar(number);
    }
    case ArgKind::IntList: {
      if (value.IsNumber()) {
        int64_t single = toInt(env, op, arg, value);
        return std::vector<int64_t>(arg.fixedLength > 0 ? arg.fixedLength : 1, single);
      }
      if (!value.IsArray()) badArgument(env, op, arg, "an array of integers");
      auto array = value.As<Napi::Array>();
      std::vector<int64_t> list(array.Length());
      for (uint32_t i = 0; i < list.size(); ++i) list[i] = toInt(env, op, arg, array.Get(i));
      return list;
    }
    case ArgKind::FloatList: {
      if (value.IsNumber()) return std::vector<double>(arg.fixedLength > 0 ? arg.fixedLength : 1, toFloat(env, op, arg, value));
      if (!value.IsArray()) badArgument(env, op, arg, "an array of numbers");
      auto array = value.As<Napi::Array>();
      std::vector<double> list(array.Length());
      for (uint32_t i = 0; i < list.size(); ++i) list[i] = toFloat(env, op, arg, array.Get(i));
      return list;
    }
    case ArgKind::BoolList: {
      if (!value.IsArray()) badArgument(env, op, arg, "an array of booleans");
      auto array = value.As<Napi::Array>();
      c10::List<bool> list;
      for (uint32_t i = 0; i < array.Length(); ++i) list.push_back(array.Get(i).ToBoolean().Value());
      return list;
    }
    case ArgKind::TensorList: {
      if (!value.IsArray()) badArgument(env, op, arg, "an array of tensors");
      auto array = value.As<Napi::Array>();
      c10::List<at::Tensor> list;
      list.reserve(array.Length());
      for (uint32_t i = 0; i < array.Length(); ++i) list.push_back(unwrap(array.Get(i), arg.name.c_str()));
      return list;
    }
    case ArgKind::OptTensorList: {
      if (!value.IsArray()) badArgument(env, op, arg, "an array of tensors or nulls");
      auto array = value.As<Napi::Array>();
      c10::List<c10::optional<at::Tensor>> list;
      for (uint32_t i = 0; i < array.Length(); ++i) {
        Napi::Value element = array.Get(i);
        if (element.IsNull() || element.IsUndefined()) {
          list.push_back(c10::nullopt);
        } else {
          list.push_back(unwrap(element, arg.name.c_str()));
        }
      }
      return list;
    }
    case ArgKind::Device:
      if (!value.IsString()) badArgument(env, op, arg, "a device string such as 'cpu' or 'cuda:0'");
      return c10::Device(value.As<Napi::String>().Utf8Value());
    case ArgKind::String:
      if (!value.IsString()) badArgument(env, op, arg, "a string");
      return value.As<Napi::String>().Utf8Value();
    case ArgKind::Generator: badArgument(env, op, arg, "omitted (explicit generators are not supported)");
    case ArgKind::Unsupported: badArgument(env, op, arg, "omitted (its type is not supported by the binding)");
  }
  badArgument(env, op, arg, "valid");
}

Napi::Value fromIValue(Napi::Env env, RetKind kind, c10::IValue& value) {
  switch (kind) {
    case RetKind::Tensor: return wrap(env, std::move(value).toTensor());
    case RetKind::TensorWritten: return env.Undefined();  // in place: JS keeps its own handle
    case RetKind::TensorList: {
      auto list = value.toTensorList();
      auto array = Napi::Array::New(env, list.size());
      for (size_t i = 0; i < list.size(); ++i) array.Set(i, wrap(env, list.get(i)));
      return array;
    }
    case RetKind::Number:
      if (value.isInt()) return Napi::Number::New(env, static_cast<double>(value.toInt()));
      if (value.isBool()) return Napi::Number::New(env, value.toBool() ? 1 : 0);
      return Napi::Number::New(env, value.toScalar().toDouble());
    case RetKind::Bool: return Napi::Boolean::New(env, value.toBool());
    case RetKind::Unsupported: return env.Undefined();
  }
  return env.Undefined();
}

// lookup(name, overload) -> operator index, for call().
MCLDEF_FN(lookup) {
  return guarded(info, [&]() -> Napi::Value {
    std::string name = info[0].As<Napi::String>();
    std::string overload = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    auto found = c10::Dispatcher::singleton().findSchema({name, overload});
    if (!found) {
      throw Napi::Error::New(info.Env(), "no ATen operator " + name + (overload.empty() ? "" : "." + overload));
    }
    auto entry = std::make_unique<OpEntry>(OpEntry{*found, name + (overload.empty() ? "" : "." + overload), {}, {}});
    for (const auto& argument : found->schema().arguments()) {
      ArgSpec spec{argument.name(), ArgKind::Unsupported, false, 0, argument.default_value()};
      c10::TypePtr type = argument.type();
      if (type->kind() == c10::TypeKind::OptionalType) {
        spec.optional = true;
        type = type->expectRef<c10::OptionalType>().getElementType();
      }
      spec.kind = argKindOf(type);
      if (argument.N()) spec.fixedLength = *argument.N();
      entry->args.push_back(std::move(spec));
    }
    for (const auto& ret : found->schema().returns()) entry->returns.push_back(retKindOf(ret));
    g_ops.push_back(std::move(entry));
    return Napi::Number::New(info.Env(), static_cast<double>(g_ops.size() - 1));
  });
}

MCLDEF_FN(schemaOf) {
  size_t index = info[0].As<Napi::Number>().Uint32Value();
  if (index >= g_ops.size()) throw Napi::RangeError::New(info.Env(), "schemaOf: unknown operator index");
  return Napi::String::New(info.Env(), c10::toString(g_ops[index]->handle.schema()));
}

// call(index, ...args): arguments in schema order; undefined takes the schema's default.
MCLDEF_FN(call) {
  Napi::Env env = info.Env();
  size_t index = info[0].As<Napi::Number>().Uint32Value();
  if (index >= g_ops.size()) throw Napi::RangeError::New(env, "call: unknown operator index");
  const OpEntry& op = *g_ops[index];
  size_t given = info.Length() - 1;
  if (given > op.args.size()) {
    throw Napi::TypeError::New(env, op.name + ": takes " + std::to_string(op.args.size()) + " arguments, got " +
                                        std::to_string(given));
  }
  return guarded(info, [&]() -> Napi::Value {
    torch::jit::Stack stack;
    stack.reserve(op.args.size());
    for (size_t i = 0; i < op.args.size(); ++i) {
      const ArgSpec& arg = op.args[i];
      Napi::Value value = i < given ? info[i + 1] : env.Undefined();
      if (value.IsUndefined()) {
        if (arg.defaultValue) {
          stack.push_back(*arg.defaultValue);
        } else if (arg.optional) {
          stack.emplace_back();
        } else {
          throw Napi::TypeError::New(env, op.name + ": missing argument '" + arg.name + "'");
        }
      } else if (value.IsNull() && arg.optional) {
        stack.emplace_back();
      } else {
        stack.push_back(toIValue(env, op, arg, value));
      }
    }
    op.handle.callBoxed(&stack);
    if (op.returns.size() == 1) return fromIValue(env, op.returns[0], stack[0]);
    if (op.returns.empty()) return env.Undefined();
    auto results = Napi::Array::New(env, op.returns.size());
    for (size_t i = 0; i < op.returns.size(); ++i) results.Set(i, fromIValue(env, op.returns[i], stack[i]));
    return results;
  });
}

}  // namespace

void initDispatch(Napi::Env env, Napi::Object exports) {
  exports.Set("lookup", Napi::Function::New(env, lookup, "lookup"));
  exports.Set("schemaOf", Napi::Function::New(env, schemaOf, "schemaOf"));
  exports.Set("call", Napi::Function::New(env, call, "call"));
}

}  // namespace mcldef
