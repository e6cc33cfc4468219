// Raw bytes ⇄ engine tensors for the checkpoint formats: element types, strided views of
// storages (checked against the storage before anything is allocated), bfloat16 widening.
import { endianness } from 'node:os';

import { tensor } from '../engine/creation.js';
import { type DType, dtypeCode, typedArrayFor } from '../engine/dtype.js';
import { tidy } from '../engine/scope.js';
import { callOp, type Tensor } from '../engine/tensor.js';
import { CheckpointError } from './errors.js';
import type { StorageRef, TensorRef } from './pickle.js';

/** Element types as files hold them: the engine's, plus bfloat16 (widened to float32 on read). */
export type FileDType = DType | 'bfloat16';

/** Bytes per element of every storage class a checkpoint may name, the unreadable ones included. */
const STORAGE_ELEMENT_SIZES: Readonly<Record<string, number>> = {
  FloatStorage: 4,
  DoubleStorage: 8,
  HalfStorage: 2,
  BFloat16Storage: 2,
  LongStorage: 8,
  IntStorage: 4,
  ShortStorage: 2,
  CharStorage: 1,
  ByteStorage: 1,
  BoolStorage: 1,
  UntypedStorage: 1,
  ComplexFloatStorage: 8,
  ComplexDoubleStorage: 16,
  QInt8Storage: 1,
  QUInt8Storage: 1,
  QInt32Storage: 4,
  QUInt4x2Storage: 1,
  QUInt2x4Storage: 1,
};

const STORAGE_DTYPES: Readonly<Record<string, FileDType>> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
  UntypedStorage: 'uint8',
};

/** The storage class PyTorch pickles for each engine dtype. */
export const STORAGE_TYPE_OF: Readonly<Record<DType, string>> = {
  float32: 'FloatStorage',
  float64: 'DoubleStorage',
  float16: 'HalfStorage',
  bfloat16: 'BFloat16Storage',
  int64: 'LongStorage',
  int32: 'IntStorage',
  int16: 'ShortStorage',
  int8: 'CharStorage',
  uint8: 'ByteStorage',
  bool: 'BoolStorage',
};

export const ELEMENT_SIZE: Readonly<Record<FileDType, number>> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** Tensors that are larger than their storage (stride-0 broadcasts) may not exceed this many elements. */
const MAX_BROADCAST_NUMEL = 2 ** 24;

export function storageElementSize(storageType: string): number {
  const size = STORAGE_ELEMENT_SIZES[storageType];
  if (size === undefined) throw new CheckpointError('unsupported-dtype', `unknown storage type ${storageType}`);
  return size;
}

export function storageDType(storageType: string): FileDType {
  const dtype = STORAGE_DTYPES[storageType];
  if (dtype === undefined) {
    throw new CheckpointError('unsupported-dtype', `${storageType} tensors have no dtype in this engine`);
  }
  return dtype;
}

function checkHostIsLittleEndian(): void {
  // Every format here is little-endian and the typed arrays use the host's order.
  if (endianness() !== 'LE') throw new CheckpointError('io', 'checkpoints are only read on little-endian hosts');
}

/** Product of sizes, as a float (exact up to 2^53, and only compared against sane bounds). */
export function numelOf(size: readonly number[]): number {
  return size.reduce((product, dim) => product * dim, 1);
}

function isContiguous(size: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let dim = size.length - 1; dim >= 0; dim--) {
    if (size[dim] !== 1 && stride[dim] !== expected) return false;
    expected *= size[dim]!;
  }
  return true;
}

/** A copy of little-endian element bytes as a tensor of `shape` (bfloat16 becomes float32). */
export function tensorFromBytes(bytes: Uint8Array, dtype: FileDType, shape: readonly number[]): Tensor {
  checkHostIsLittleEndian();
  // A fresh, aligned buffer the typed arrays can view (Buffer#slice would not copy).
  const aligned = new Uint8Array(bytes.length);
  aligned.set(bytes);
  const copy = aligned.buffer;
  if (dtype === 'bfloat16') {
    // bfloat16 is the top half of a float32: widening is exact.
    const halves = new Uint16Array(copy);
    const widened = new Uint32Array(halves.length);
    for (let i = 0; i < halves.length; i++) widened[i] = halves[i]! << 16;
    return tensor(new Float32Array(widened.buffer), { shape });
  }
  if (dtype === 'float16') {
    // The engine takes float16 bits as int16 and reinterprets them (no conversion).
    return tidy(() => callOp('view.dtype', tensor(new Int16Array(copy), { shape }).handle, dtypeCode.float16));
  }
  return tensor(typedArrayFor(dtype, copy), { shape, dtype });
}

/** A tensor's elements as little-endian bytes (row-major, on the CPU). */
export function tensorBytes(source: Tensor): Uint8Array {
  checkHostIsLittleEndian();
  return tidy(() => {
    let data = source.device === 'cpu' ? source : source.to('cpu');
    data = data.contiguous();
    const values = data.toTypedArray();
    return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  });
}

/**
 * Checks a tensor's window on its storage: offset, sizes and strides must stay inside the
 * storage's declared elements, and a tensor may only be much larger than its storage
 * (stride-0 broadcast) up to a sane size. Runs before any storage byte is read or copied.
 */
export function checkTensorGeometry(ref: TensorRef, rootNumel: number): { first: number; end: number } {
  const { storage, storageOffset, size, stride } = ref;
  const base = storage.view?.offset ?? 0;
  const storageNumel = storage.view?.numel ?? rootNumel;
  if (base + storageNumel > rootNumel) {
    throw new CheckpointError(
      'bad-storage',
      `storage view [${base}, ${base + storageNumel}) lies outside storage '${storage.key}' of ${rootNumel} elements`,
    );
  }
  const numel = numelOf(size);
  const describeTensor = (): string =>
    `size [${size.join(', ')}], stride [${stride.join(', ')}], offset ${storageOffset}`;
  if (numel === 0) return { first: base, end: base };
  let last = storageOffset;
  for (let dim = 0; dim < size.length; dim++) last += (size[dim]! - 1) * stride[dim]!;
  if (last >= storageNumel) {
    throw new CheckpointError(
      'bad-tensor',
      `tensor (${describeTensor()}) reaches element ${last} of a storage with ${storageNumel} elements`,
    );
  }
  if (numel > storageNumel && numel > MAX_BROADCAST_NUMEL) {
    throw new CheckpointError(
      'bad-tensor',
      `tensor (${describeTensor()}) has ${numel} elements from a storage of ${storageNumel}: refused as absurd`,
    );
  }
  return { first: base + storageOffset, end: base + last + 1 };
}

/**
 * The tensor `ref` describes, copied out of its storage's bytes (`rootBytes`: the whole root
 * storage) into memory of its own, row-major.
 */
export function materializeTensor(ref: TensorRef, rootBytes: Uint8Array, rootNumel: number): Tensor {
  const dtype = storageDType(ref.storage.storageType);
  const elementSize = storageElementSize(ref.storage.storageType);
  const { first, end } = checkTensorGeometry(ref, rootNumel);
  if (rootBytes.length !== rootNumel * elementSize) {
    throw new CheckpointError(
      'bad-storage',
      `storage '${ref.storage.key}' holds ${rootBytes.length} bytes, not ${rootNumel} × ${elementSize}`,
    );
  }
  const numel = numelOf(ref.size);
  const window = rootBytes.subarray(first * elementSize, end * elementSize);
  if (numel === end - first && isContiguous(ref.size, ref.stride)) return tensorFromBytes(window, dtype, ref.size);
  return tidy(() => {
    const flat = tensorFromBytes(window, dtype, [end - first]);
    if (numel === 0) return callOp('reshape', flat.handle, ref.size);
    // A fresh row-major copy, so the result owns its memory whatever the strides were.
    return callOp('as_strided', flat.handle, ref.size, ref.stride, 0).contiguous();
  });
}

/** Describes where a storage is, for messages. */
export function storageLabel(storage: StorageRef): string {
  return `storage '${storage.key}' (${storage.storageType}, ${storage.numel} elements)`;
}
