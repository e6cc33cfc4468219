// Making tensors: from JS data, and PyTorch's factory functions.
import { type DType, dtypeCode, dtypeOfTypedArray } from './dtype.js';
import { getDefaultDevice } from './device.js';
import { native } from './native.js';
import { callOp, type Device, type NestedArray, Tensor } from './tensor.js';

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

function finish(tensor: Tensor, options: TensorOptions): Tensor {
  if (options.requiresGrad === true) tensor.requiresGrad_(true);
  return tensor;
}

function factoryArgs(options: TensorOptions, defaultDType: DType | null = 'float32'): [number | null, null, string] {
  const dtype = options.dtype ?? defaultDType;
  return [dtype === null ? null : dtypeCode[dtype], null, options.device ?? getDefaultDevice()];
}

function flatten(data: NestedArray, shape: number[], values: (number | boolean)[], level: number): void {
  if (typeof data === 'number' || typeof data === 'boolean') {
    if (level !== shape.length) throw new TypeError('tensor: ragged nested array');
    values.push(data);
    return;
  }
  if (level === shape.length) {
    if (values.length > 0) throw new TypeError('tensor: ragged nested array');
    shape.push(data.length);
  } else if (shape[level] !== data.length) {
    throw new TypeError(`tensor: ragged nested array (length ${data.length} where ${shape[level]} was expected)`);
  }
  for (const element of data) flatten(element, shape, values, level + 1);
}

function typedArrayOf(dtype: DType, values: readonly (number | boolean)[]): ArrayBufferView {
  const numbers = values.map(Number);
  switch (dtype) {
    case 'float32':
      return Float32Array.from(numbers);
    case 'float64':
      return Float64Array.from(numbers);
    case 'int32':
      return Int32Array.from(numbers);
    case 'int64':
      return BigInt64Array.from(numbers, (value) => BigInt(Math.trunc(value)));
    case 'int16':
      return Int16Array.from(numbers);
    case 'int8':
      return Int8Array.from(numbers);
    case 'uint8':
      return Uint8Array.from(numbers);
    case 'bool':
      return Uint8Array.from(numbers, (value) => (value !== 0 ? 1 : 0));
    case 'float16':
    case 'bfloat16':
      throw new TypeError(`tensor: build ${dtype} tensors from float32 with .to("${dtype}")`);
  }
}

/**
 * A tensor from a typed array (with an explicit shape; dtype follows the array) or from
 * nested JS arrays (float32 unless `dtype` says otherwise; booleans give bool).
 */
export function tensor(
  data: NestedArray | ArrayBufferView,
  options: TensorOptions & { shape?: readonly number[] } = {},
): Tensor {
  let shape: readonly number[];
  let bytes: ArrayBufferView;
  let dtype: DType;
  if (ArrayBuffer.isView(data)) {
    const natural = dtypeOfTypedArray(data);
    dtype = options.dtype ?? natural;
    const length = (data as unknown as ArrayLike<unknown>).length;
    shape = options.shape ?? [length];
    if (dtype === natural || (dtype === 'bool' && natural === 'uint8')) {
      bytes = data;
    } else {
      const values = Array.from(data as unknown as ArrayLike<number | bigint>, Number);
      bytes = typedArrayOf(dtype, values);
    }
  } else {
    const dims: number[] = [];
    const values: (number | boolean)[] = [];
    flatten(data, dims, values, 0);
    dtype = options.dtype ?? (values.length > 0 && typeof values[0] === 'boolean' ? 'bool' : 'float32');
    shape = options.shape ?? dims;
    bytes = typedArrayOf(dtype, values);
  }
  return finish(
    new Tensor(native.fromBuffer(bytes, shape, dtypeCode[dtype], options.device ?? getDefaultDevice())),
    options,
  );
}

/** A 0-d tensor holding one number. */
export function scalar(value: number, options: TensorOptions = {}): Tensor {
  return tensor([value], { ...options, shape: [] });
}

export function zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return finish(callOp('zeros', shape, ...factoryArgs(options), null), options);
}

export function ones(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return finish(callOp('ones', shape, ...factoryArgs(options), null), options);
}

export function full(shape: readonly number[], value: number, options: TensorOptions = {}): Tensor {
  return finish(callOp('full', shape, value, ...factoryArgs(options), null), options);
}

/** Uninitialized memory: fill it before reading. */
export function empty(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return finish(callOp('empty.memory_format', shape, ...factoryArgs(options), null, null), options);
}

export function zerosLike(like: Tensor, options: TensorOptions = {}): Tensor {
  return zeros(like.shape, { dtype: like.dtype, device: like.device, ...options });
}

export function onesLike(like: Tensor, options: TensorOptions = {}): Tensor {
  return ones(like.shape, { dtype: like.dtype, device: like.device, ...options });
}

/** [start, end) in steps; int64 when every bound is an integer, like PyTorch. */
export function arange(start: number, end?: number, step = 1, options: TensorOptions = {}): Tensor {
  const [from, to] = end === undefined ? [0, start] : [start, end];
  return finish(callOp('arange.start_step', from, to, step, ...factoryArgs(options, null), null), options);
}

export function linspace(start: number, end: number, steps: number, options: TensorOptions = {}): Tensor {
  return finish(callOp('linspace', start, end, steps, ...factoryArgs(options), null), options);
}

/** Uniform on [0, 1). */
export function rand(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return finish(callOp('rand', shape, ...factoryArgs(options), null), options);
}

/** Standard normal. */
export function randn(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return finish(callOp('randn', shape, ...factoryArgs(options), null), options);
}

/** Integers uniform on [low, high), int64 by default. */
export function randint(low: number, high: number, shape: readonly number[], options: TensorOptions = {}): Tensor {
  return finish(callOp('randint.low', low, high, shape, ...factoryArgs(options, 'int64'), null), options);
}

/** A random permutation of 0..n-1 (int64). */
export function randperm(n: number, options: TensorOptions = {}): Tensor {
  return finish(callOp('randperm', n, ...factoryArgs(options, 'int64'), null), options);
}
