// The Tensor class: a JS owner of one libtorch tensor, with PyTorch's methods.
// Every op goes through libtorch's dispatcher (native/dispatch.cc), so autograd,
// broadcasting, type promotion and error messages are PyTorch's own.
import { inspect } from 'node:util';

import { type DType, dtypeCode, dtypeFromCode, type TypedArrayOf, typedArrayFor } from './dtype.js';
import { type NativeArg, type NativeHandle, native, op } from './native.js';
import { track } from './scope.js';
// Applies the host memory policy before the first tensor exists.
import './memory.js';

/** One dimension or several. */
export type Dims = number | readonly number[];
/** PyTorch device string: 'cpu', 'cuda', 'cuda:1'. */
export type Device = string;
/** Row-major ('contiguous', NCHW) or NHWC-strided ('channels_last') storage of a 4-D tensor. */
export type MemoryFormat = 'contiguous' | 'channels_last';
/** Nested JS arrays as returned by `toArray()`. */
export type NestedArray = number | boolean | readonly NestedArray[];

/** Runs an ATen op and wraps its tensor result. */
export function callOp(name: string, ...args: NativeArg[]): Tensor {
  return new Tensor(native.call(op(name), ...args) as NativeHandle);
}

/** Runs an ATen op returning several tensors (a tuple or a Tensor[]). */
export function callOpMany(name: string, ...args: NativeArg[]): Tensor[] {
  return (native.call(op(name), ...args) as NativeHandle[]).map((handle) => new Tensor(handle));
}

function dimList(dims: Dims): readonly number[] {
  return typeof dims === 'number' ? [dims] : dims;
}

export const Reduction = { none: 0, mean: 1, sum: 2 } as const;

/**
 * Backstop for tensors that are garbage-collected without dispose(): frees their native
 * handle. It runs only when the event loop turns, so it is no substitute for dispose().
 */
const forgotten = new FinalizationRegistry<NativeHandle>((handle) => native.release(handle));
export type ReductionName = keyof typeof Reduction;

export class Tensor implements Disposable {
  #handle: NativeHandle | null;
  #shape: readonly number[] | undefined;
  #dtype: DType | undefined;

  /** Takes ownership of a native handle; prefer the creation functions. */
  constructor(handle: NativeHandle) {
    this.#handle = handle;
    forgotten.register(this, handle, this);
    track(this);
  }

  // ---- identity, lifetime ----------------------------------------------------

  get handle(): NativeHandle {
    if (this.#handle === null) throw new Error('tensor used after dispose');
    return this.#handle;
  }

  get isDisposed(): boolean {
    return this.#handle === null;
  }

  /** Frees the libtorch reference now. Safe to call twice. */
  dispose(): void {
    if (this.#handle !== null) {
      forgotten.unregister(this);
      native.release(this.#handle);
      this.#handle = null;
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * Makes this object hold `source`'s data instead of its own (which is freed), and
   * disposes `source`'s wrapper. Everything referring to this Tensor sees the new data:
   * this is how modules move parameters between devices and dtypes in place.
   */
  replaceData(source: Tensor): this {
    if (source === this) return this;
    const handle = source.handle;
    forgotten.unregister(source);
    source.#handle = null;
    this.dispose();
    this.#handle = handle;
    forgotten.register(this, handle, this);
    this.#shape = undefined;
    this.#dtype = undefined;
    return this;
  }

  // ---- metadata ----------------------------------------------------------------

  get shape(): readonly number[] {
    return (this.#shape ??= Object.freeze(native.shape(this.handle)));
  }

  get dtype(): DType {
    return (this.#dtype ??= dtypeFromCode(native.dtype(this.handle)));
  }

  get device(): Device {
    return native.device(this.handle);
  }

  get ndim(): number {
    return this.shape.length;
  }

  get numel(): number {
    return this.shape.reduce((product, size) => product * size, 1);
  }

  /** Size of one dimension (negative counts from the end). */
  size(dim: number): number {
    const size = this.shape[dim < 0 ? dim + this.ndim : dim];
    if (size === undefined) throw new RangeError(`dimension ${dim} out of range for shape [${this.shape.join(', ')}]`);
    return size;
  }

  // ---- autograd --------------------------------------------------------------

  get requiresGrad(): boolean {
    return native.requiresGrad(this.handle);
  }

  set requiresGrad(value: boolean) {
    native.setRequiresGrad(this.handle, value);
  }

  requiresGrad_(value = true): this {
    native.setRequiresGrad(this.handle, value);
    return this;
  }

  /** The accumulated gradient (a new handle sharing its storage), or null. */
  get grad(): Tensor | null {
    const handle = native.gradOf(this.handle);
    return handle === null ? null : new Tensor(handle);
  }

  set grad(value: Tensor | null) {
    native.setGrad(this.handle, value === null ? null : value.handle);
  }

  get isLeaf(): boolean {
    return native.isLeaf(this.handle);
  }

  /** Name of the autograd node that made this tensor, or null for leaves. */
  get gradFn(): string | null {
    return native.gradFnName(this.handle);
  }

  /** Accumulates gradients into the leaves (`gradient` for non-scalar outputs). */
  backward(gradient?: Tensor, options: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    native.backward(
      [this.handle],
      gradient === undefined ? null : [gradient.handle],
      options.retainGraph,
      options.createGraph ?? false,
    );
  }

  detach(): Tensor {
    return callOp('detach', this.handle);
  }

  // ---- data out ------------------------------------------------------------------

  /** A copy of the elements in row-major order (bool as 0/1 bytes, int64 as BigInt64Array). */
  toTypedArray(): TypedArrayOf[DType] {
    return typedArrayFor(this.dtype, native.toBuffer(this.handle));
  }

  /** Float copy of the elements as a Float64Array of plain numbers, whatever the dtype. */
  toFloat64Array(): Float64Array {
    const data = this.toTypedArray();
    return data instanceof BigInt64Array ? Float64Array.from(data, Number) : Float64Array.from(data);
  }

  /** Nested JS arrays (a number for 0-d tensors). */
  toArray(): NestedArray {
    const flat = this.toTypedArray();
    const read = (i: number): number | boolean =>
      this.dtype === 'bool' ? flat[i] !== 0 : Number((flat as ArrayLike<number | bigint>)[i]);
    const shape = this.shape;
    let offset = 0;
    const build = (level: number): NestedArray => {
      if (level === shape.length) return read(offset++);
      const out: NestedArray[] = [];
      for (let i = 0; i < (shape[level] ?? 0); i++) out.push(build(level + 1));
      return out;
    };
    return build(0);
  }

  /** The single element of a one-element tensor. */
  item(): number {
    const value = native.item(this.handle);
    return typeof value === 'boolean' ? Number(value) : value;
  }

  toString(): string {
    if (this.isDisposed) return 'Tensor(disposed)';
    const body = this.numel <= 20 ? ` ${JSON.stringify(this.toArray())}` : '';
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device}${body})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }

  // ---- copies and conversion ---------------------------------------------------

  clone(): Tensor {
    return callOp('clone', this.handle);
  }

  /**
   * This tensor's data in row-major order, or (with 'channels_last') NHWC-strided for a
   * 4-D tensor: the same values and shape, the layout oneDNN's fastest convolutions take.
   */
  contiguous(memoryFormat: MemoryFormat = 'contiguous'): Tensor {
    return callOp('contiguous', this.handle, memoryFormat === 'channels_last' ? 2 : 0);
  }

  /** A copy (or this tensor's data, if nothing changes) with another dtype and/or device. */
  to(target: DType | Device | { dtype?: DType; device?: Device; copy?: boolean }): Tensor {
    const options =
      typeof target === 'string' ? (target in dtypeCode ? { dtype: target as DType } : { device: target }) : target;
    return callOp(
      'to.dtype_layout',
      this.handle,
      options.dtype === undefined ? null : dtypeCode[options.dtype],
      null,
      options.device ?? null,
      null,
      false,
      options.copy ?? false,
    );
  }

  float(): Tensor {
    return this.to('float32');
  }

  double(): Tensor {
    return this.to('float64');
  }

  long(): Tensor {
    return this.to('int64');
  }

  bool(): Tensor {
    return this.to('bool');
  }

  cpu(): Tensor {
    return this.to({ device: 'cpu' });
  }

  // ---- arithmetic (broadcasting; numbers are Python-style scalars) ----------------

  add(other: Tensor | number, alpha = 1): Tensor {
    return typeof other === 'number'
      ? callOp('add.Scalar', this.handle, other, alpha)
      : callOp('add.Tensor', this.handle, other.handle, alpha);
  }

  sub(other: Tensor | number, alpha = 1): Tensor {
    return typeof other === 'number'
      ? callOp('sub.Scalar', this.handle, other, alpha)
      : callOp('sub.Tensor', this.handle, other.handle, alpha);
  }

  mul(other: Tensor | number): Tensor {
    return typeof other === 'number'
      ? callOp('mul.Scalar', this.handle, other)
      : callOp('mul.Tensor', this.handle, other.handle);
  }

  /** True division, or 'trunc'/'floor' rounding. */
  div(other: Tensor | number, roundingMode?: 'trunc' | 'floor'): Tensor {
    if (roundingMode !== undefined) {
      return typeof other === 'number'
        ? callOp('div.Scalar_mode', this.handle, other, roundingMode)
        : callOp('div.Tensor_mode', this.handle, other.handle, roundingMode);
    }
    return typeof other === 'number'
      ? callOp('div.Scalar', this.handle, other)
      : callOp('div.Tensor', this.handle, other.handle);
  }

  remainder(other: Tensor | number): Tensor {
    return typeof other === 'number'
      ? callOp('remainder.Scalar', this.handle, other)
      : callOp('remainder.Tensor', this.handle, other.handle);
  }

  pow(exponent: Tensor | number): Tensor {
    return typeof exponent === 'number'
      ? callOp('pow.Tensor_Scalar', this.handle, exponent)
      : callOp('pow.Tensor_Tensor', this.handle, exponent.handle);
  }

  /** Right-hand forms, for `2 - x` and `1 / x`. */
  rsub(other: number): Tensor {
    return callOp('rsub.Scalar', this.handle, other);
  }

  neg(): Tensor {
    return callOp('neg', this.handle);
  }

  reciprocal(): Tensor {
    return callOp('reciprocal', this.handle);
  }

  matmul(other: Tensor): Tensor {
    return callOp('matmul', this.handle, other.handle);
  }

  maximum(other: Tensor): Tensor {
    return callOp('maximum', this.handle, other.handle);
  }

  minimum(other: Tensor): Tensor {
    return callOp('minimum', this.handle, other.handle);
  }

  // ---- in-place (no new tensor; returns this) --------------------------------------

  #inPlace(name: string, ...args: NativeArg[]): this {
    native.call(op(name), this.handle, ...args);
    return this;
  }

  add_(other: Tensor | number, alpha = 1): this {
    return typeof other === 'number'
      ? this.#inPlace('add_.Scalar', other, alpha)
      : this.#inPlace('add_.Tensor', other.handle, alpha);
  }

  sub_(other: Tensor | number, alpha = 1): this {
    return typeof other === 'number'
      ? this.#inPlace('sub_.Scalar', other, alpha)
      : this.#inPlace('sub_.Tensor', other.handle, alpha);
  }

  mul_(other: Tensor | number): this {
    return typeof other === 'number' ? this.#inPlace('mul_.Scalar', other) : this.#inPlace('mul_.Tensor', other.handle);
  }

  div_(other: Tensor | number): this {
    return typeof other === 'number' ? this.#inPlace('div_.Scalar', other) : this.#inPlace('div_.Tensor', other.handle);
  }

  pow_(exponent: number): this {
    return this.#inPlace('pow_.Scalar', exponent);
  }

  /** this += value * t1 * t2 */
  addcmul_(t1: Tensor, t2: Tensor, value = 1): this {
    return this.#inPlace('addcmul_', t1.handle, t2.handle, value);
  }

  /** this += value * t1 / t2 */
  addcdiv_(t1: Tensor, t2: Tensor, value = 1): this {
    return this.#inPlace('addcdiv_', t1.handle, t2.handle, value);
  }

  lerp_(end: Tensor, weight: number): this {
    return this.#inPlace('lerp_.Scalar', end.handle, weight);
  }

  clamp_(min?: number | null, max?: number | null): this {
    return this.#inPlace('clamp_', min ?? null, max ?? null);
  }

  sqrt_(): this {
    return this.#inPlace('sqrt_');
  }

  relu_(): this {
    return this.#inPlace('relu_');
  }

  zero_(): this {
    return this.#inPlace('zero_');
  }

  fill_(value: number): this {
    return this.#inPlace('fill_.Scalar', value);
  }

  /** Copies `source` (broadcast, converted) into this tensor's storage. */
  copy_(source: Tensor): this {
    return this.#inPlace('copy_', source.handle, false);
  }

  uniform_(from = 0, to = 1): this {
    return this.#inPlace('uniform_', from, to);
  }

  normal_(mean = 0, std = 1): this {
    return this.#inPlace('normal_', mean, std);
  }

  maskedFill_(mask: Tensor, value: number): this {
    return this.#inPlace('masked_fill_.Scalar', mask.handle, value);
  }

  // ---- comparisons and selection -----------------------------------------------------

  #compare(name: string, other: Tensor | number): Tensor {
    return typeof other === 'number'
      ? callOp(`${name}.Scalar`, this.handle, other)
      : callOp(`${name}.Tensor`, this.handle, other.handle);
  }

  eq(other: Tensor | number): Tensor {
    return this.#compare('eq', other);
  }

  ne(other: Tensor | number): Tensor {
    return this.#compare('ne', other);
  }

  lt(other: Tensor | number): Tensor {
    return this.#compare('lt', other);
  }

  le(other: Tensor | number): Tensor {
    return this.#compare('le', other);
  }

  gt(other: Tensor | number): Tensor {
    return this.#compare('gt', other);
  }

  ge(other: Tensor | number): Tensor {
    return this.#compare('ge', other);
  }

  logicalNot(): Tensor {
    return callOp('logical_not', this.handle);
  }

  logicalAnd(other: Tensor): Tensor {
    return callOp('logical_and', this.handle, other.handle);
  }

  logicalOr(other: Tensor): Tensor {
    return callOp('logical_or', this.handle, other.handle);
  }

  /** Elements where `mask` is true replaced by `value`. */
  maskedFill(mask: Tensor, value: Tensor | number): Tensor {
    return typeof value === 'number'
      ? callOp('masked_fill.Scalar', this.handle, mask.handle, value)
      : callOp('masked_fill.Tensor', this.handle, mask.handle, value.handle);
  }

  /** Elements where `mask` is true, as a 1-d tensor. */
  maskedSelect(mask: Tensor): Tensor {
    return callOp('masked_select', this.handle, mask.handle);
  }

  clamp(min?: Tensor | number | null, max?: Tensor | number | null): Tensor {
    if (typeof min === 'object' || typeof max === 'object') {
      const toHandle = (bound: Tensor | number | null | undefined): NativeHandle | null => {
        if (bound === null || bound === undefined) return null;
        if (typeof bound === 'number') throw new TypeError('clamp: give both bounds as tensors, or both as numbers');
        return bound.handle;
      };
      return callOp('clamp.Tensor', this.handle, toHandle(min), toHandle(max));
    }
    return callOp('clamp', this.handle, min ?? null, max ?? null);
  }

  clampMin(min: number): Tensor {
    return callOp('clamp_min', this.handle, min);
  }

  clampMax(max: number): Tensor {
    return callOp('clamp_max', this.handle, max);
  }

  // ---- elementwise functions -------------------------------------------------------

  abs(): Tensor {
    return callOp('abs', this.handle);
  }

  sign(): Tensor {
    return callOp('sign', this.handle);
  }

  sqrt(): Tensor {
    return callOp('sqrt', this.handle);
  }

  rsqrt(): Tensor {
    return callOp('rsqrt', this.handle);
  }

  square(): Tensor {
    return callOp('square', this.handle);
  }

  exp(): Tensor {
    return callOp('exp', this.handle);
  }

  log(): Tensor {
    return callOp('log', this.handle);
  }

  tanh(): Tensor {
    return callOp('tanh', this.handle);
  }

  sigmoid(): Tensor {
    return callOp('sigmoid', this.handle);
  }

  relu(): Tensor {
    return callOp('relu', this.handle);
  }

  leakyRelu(negativeSlope = 0.01): Tensor {
    return callOp('leaky_relu', this.handle, negativeSlope);
  }

  floor(): Tensor {
    return callOp('floor', this.handle);
  }

  ceil(): Tensor {
    return callOp('ceil', this.handle);
  }

  round(): Tensor {
    return callOp('round', this.handle);
  }

  softmax(dim: number): Tensor {
    return callOp('softmax.int', this.handle, dim, null);
  }

  logSoftmax(dim: number): Tensor {
    return callOp('log_softmax.int', this.handle, dim, null);
  }

  // ---- reductions ----------------------------------------------------------------

  /** Sum of all elements, or over `dim`. */
  sum(dim?: Dims, keepdim = false): Tensor {
    return dim === undefined
      ? callOp('sum', this.handle, null)
      : callOp('sum.dim_IntList', this.handle, dimList(dim), keepdim, null);
  }

  mean(dim?: Dims, keepdim = false): Tensor {
    return dim === undefined
      ? callOp('mean', this.handle, null)
      : callOp('mean.dim', this.handle, dimList(dim), keepdim, null);
  }

  /** Standard deviation; unbiased (Bessel's correction) by default, like PyTorch. */
  std(dim?: Dims, options: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return callOp(
      'std.correction',
      this.handle,
      dim === undefined ? null : dimList(dim),
      options.unbiased === false ? 0 : 1,
      options.keepdim ?? false,
    );
  }

  var(dim?: Dims, options: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return callOp(
      'var.correction',
      this.handle,
      dim === undefined ? null : dimList(dim),
      options.unbiased === false ? 0 : 1,
      options.keepdim ?? false,
    );
  }

  prod(): Tensor {
    return callOp('prod', this.handle, null);
  }

  /** Largest element (0-d). For the per-dimension form with indices use `maxDim`. */
  max(): Tensor {
    return callOp('max', this.handle);
  }

  min(): Tensor {
    return callOp('min', this.handle);
  }

  /** [values, indices] of the maximum along `dim`. */
  maxDim(dim: number, keepdim = false): [Tensor, Tensor] {
    return callOpMany('max.dim', this.handle, dim, keepdim) as [Tensor, Tensor];
  }

  minDim(dim: number, keepdim = false): [Tensor, Tensor] {
    return callOpMany('min.dim', this.handle, dim, keepdim) as [Tensor, Tensor];
  }

  /** Max over several dims at once (values only). */
  amax(dim: Dims, keepdim = false): Tensor {
    return callOp('amax', this.handle, dimList(dim), keepdim);
  }

  amin(dim: Dims, keepdim = false): Tensor {
    return callOp('amin', this.handle, dimList(dim), keepdim);
  }

  argmax(dim?: number, keepdim = false): Tensor {
    return callOp('argmax', this.handle, dim ?? null, keepdim);
  }

  argmin(dim?: number, keepdim = false): Tensor {
    return callOp('argmin', this.handle, dim ?? null, keepdim);
  }

  /** [values, indices] of the k largest (or smallest) along `dim`. */
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] {
    return callOpMany('topk', this.handle, k, dim, largest, sorted) as [Tensor, Tensor];
  }

  /** [values, indices] sorted along `dim`. */
  sort(dim = -1, descending = false): [Tensor, Tensor] {
    return callOpMany('sort', this.handle, dim, descending) as [Tensor, Tensor];
  }

  argsort(dim = -1, descending = false): Tensor {
    return callOp('argsort', this.handle, dim, descending);
  }

  /** Vector p-norm (p = 1, 2, Infinity, ...) over all elements or `dim`. */
  norm(p = 2, dim?: Dims, keepdim = false): Tensor {
    return callOp('linalg_vector_norm', this.handle, p, dim === undefined ? null : dimList(dim), keepdim, null);
  }

  all(): Tensor {
    return callOp('all', this.handle);
  }

  any(): Tensor {
    return callOp('any', this.handle);
  }

  cumsum(dim: number): Tensor {
    return callOp('cumsum', this.handle, dim, null);
  }

  // ---- shape and indexing ------------------------------------------------------------

  reshape(shape: readonly number[]): Tensor {
    return callOp('reshape', this.handle, shape);
  }

  view(shape: readonly number[]): Tensor {
    return callOp('view', this.handle, shape);
  }

  flatten(startDim = 0, endDim = -1): Tensor {
    return callOp('flatten.using_ints', this.handle, startDim, endDim);
  }

  permute(dims: readonly number[]): Tensor {
    return callOp('permute', this.handle, dims);
  }

  transpose(dim0: number, dim1: number): Tensor {
    return callOp('transpose.int', this.handle, dim0, dim1);
  }

  /** Matrix transpose of a 2-d tensor. */
  t(): Tensor {
    return callOp('t', this.handle);
  }

  squeeze(dim?: number): Tensor {
    return dim === undefined ? callOp('squeeze', this.handle) : callOp('squeeze.dim', this.handle, dim);
  }

  unsqueeze(dim: number): Tensor {
    return callOp('unsqueeze', this.handle, dim);
  }

  /** Broadcast view to `shape` (-1 keeps a dimension). */
  expand(shape: readonly number[]): Tensor {
    return callOp('expand', this.handle, shape, false);
  }

  expandAs(other: Tensor): Tensor {
    return this.expand(other.shape);
  }

  repeat(repeats: readonly number[]): Tensor {
    return callOp('repeat', this.handle, repeats);
  }

  narrow(dim: number, start: number, length: number): Tensor {
    return callOp('narrow', this.handle, dim, start, length);
  }

  /** The sub-tensor at `index` along `dim` (that dimension removed). */
  select(dim: number, index: number): Tensor {
    return callOp('select.int', this.handle, dim, index);
  }

  /** Python's t[start:end:step] along `dim`. */
  slice(dim: number, start?: number, end?: number, step = 1): Tensor {
    return callOp('slice.Tensor', this.handle, dim, start ?? null, end ?? null, step);
  }

  /** Pieces of `size` each (or of the given sizes) along `dim`. */
  split(sizes: number | readonly number[], dim = 0): Tensor[] {
    return typeof sizes === 'number'
      ? callOpMany('split.Tensor', this.handle, sizes, dim)
      : callOpMany('split_with_sizes', this.handle, sizes, dim);
  }

  chunk(chunks: number, dim = 0): Tensor[] {
    return callOpMany('chunk', this.handle, chunks, dim);
  }

  indexSelect(dim: number, index: Tensor): Tensor {
    return callOp('index_select', this.handle, dim, index.handle);
  }

  gather(dim: number, index: Tensor): Tensor {
    return callOp('gather', this.handle, dim, index.handle, false);
  }

  /** Out-of-place scatter: a copy with `src` (or `value`) written at `index` along `dim`. */
  scatter(dim: number, index: Tensor, source: Tensor | number): Tensor {
    return typeof source === 'number'
      ? callOp('scatter.value', this.handle, dim, index.handle, source)
      : callOp('scatter.src', this.handle, dim, index.handle, source.handle);
  }

  /** Advanced indexing, like t[idx0, idx1, ...] with tensors (null means ':'). */
  index(indices: readonly (Tensor | null)[]): Tensor {
    return callOp(
      'index.Tensor',
      this.handle,
      indices.map((index) => (index === null ? null : index.handle)),
    );
  }

  flip(dims: Dims): Tensor {
    return callOp('flip', this.handle, dimList(dims));
  }

  roll(shifts: Dims, dims: Dims): Tensor {
    return callOp('roll', this.handle, dimList(shifts), dimList(dims));
  }

  // ---- sampling --------------------------------------------------------------------

  /** 0/1 draws with this tensor's values as probabilities. */
  bernoulli(): Tensor {
    return callOp('bernoulli', this.handle, null);
  }

  /** `numSamples` indices per row, drawn with this tensor's (unnormalized) weights. */
  multinomial(numSamples: number, replacement = false): Tensor {
    return callOp('multinomial', this.handle, numSamples, replacement, null);
  }
}

/** Is `value` a tensor that has not been disposed? */
export function isTensor(value: unknown): value is Tensor {
  return value instanceof Tensor;
}
