// Element types, with libtorch's ScalarType codes and the JS typed arrays that hold them.

export type DType =
  'uint8' | 'int8' | 'int16' | 'int32' | 'int64' | 'float16' | 'bfloat16' | 'float32' | 'float64' | 'bool';

/** c10::ScalarType enum values. */
export const dtypeCode: Readonly<Record<DType, number>> = {
  uint8: 0,
  int8: 1,
  int16: 2,
  int32: 3,
  int64: 4,
  float16: 5,
  float32: 6,
  float64: 7,
  bool: 11,
  bfloat16: 15,
};

const codeToDType = new Map<number, DType>(Object.entries(dtypeCode).map(([name, code]) => [code, name as DType]));

export function dtypeFromCode(code: number): DType {
  const dtype = codeToDType.get(code);
  if (dtype === undefined) throw new Error(`unsupported libtorch scalar type code ${code}`);
  return dtype;
}

export interface TypedArrayOf {
  uint8: Uint8Array;
  int8: Int8Array;
  int16: Int16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  float16: Uint16Array;
  /** Raw bfloat16 bits (the upper half of a float32). */
  bfloat16: Uint16Array;
  float32: Float32Array;
  float64: Float64Array;
  bool: Uint8Array;
}

export type AnyTypedArray = TypedArrayOf[DType];

export function typedArrayFor<D extends DType>(dtype: D, buffer: ArrayBuffer): TypedArrayOf[D] {
  const views: { [K in DType]: (b: ArrayBuffer) => TypedArrayOf[K] } = {
    uint8: (b) => new Uint8Array(b),
    int8: (b) => new Int8Array(b),
    int16: (b) => new Int16Array(b),
    int32: (b) => new Int32Array(b),
    int64: (b) => new BigInt64Array(b),
    float16: (b) => new Uint16Array(b),
    bfloat16: (b) => new Uint16Array(b),
    float32: (b) => new Float32Array(b),
    float64: (b) => new Float64Array(b),
    bool: (b) => new Uint8Array(b),
  };
  return views[dtype](buffer);
}

/** The dtype a typed array naturally holds (Uint8Array means uint8, not bool). */
export function dtypeOfTypedArray(array: ArrayBufferView): DType {
  if (array instanceof Float32Array) return 'float32';
  if (array instanceof Float64Array) return 'float64';
  if (array instanceof Int32Array) return 'int32';
  if (array instanceof BigInt64Array) return 'int64';
  if (array instanceof Uint8Array || array instanceof Uint8ClampedArray) return 'uint8';
  if (array instanceof Int8Array) return 'int8';
  if (array instanceof Int16Array) return 'int16';
  throw new TypeError(`no tensor dtype for ${array.constructor.name}`);
}

export function isFloating(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64' || dtype === 'float16';
}
