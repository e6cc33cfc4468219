// safetensors: an 8-byte little-endian header length, a JSON header
// ({name: {dtype, shape, data_offsets: [begin, end]}, __metadata__: {string: string}}),
// then the tensors' bytes. Reading checks every entry against the buffer before copying:
// offsets inside it, sizes matching shape × dtype, and the entries tiling it exactly
// (as the reference implementation requires).
import type { Tensor } from '../engine/tensor.js';
import { type Checkpoint, type CheckpointSource, disposeOnError, readSource, writeFileAtomic } from './checkpoint.js';
import { CheckpointError, namingSource } from './errors.js';
import { MAX_TENSOR_DIMS } from './pickle.js';
import { ELEMENT_SIZE, type FileDType, numelOf, tensorBytes, tensorFromBytes } from './tensors.js';

/** The reference implementation refuses headers above 100 MB. */
const MAX_HEADER_BYTES = 100_000_000;

const FILE_DTYPES: Readonly<Record<string, FileDType>> = {
  F32: 'float32',
  F64: 'float64',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};

const DTYPE_NAMES: Readonly<Record<FileDType, string>> = {
  float32: 'F32',
  float64: 'F64',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

interface HeaderEntry {
  name: string;
  dtype: FileDType;
  shape: number[];
  begin: number;
  end: number;
}

function badHeader(problem: string): never {
  throw new CheckpointError('bad-header', `safetensors header: ${problem}`);
}

/** Whether bytes start like a safetensors file: a sane header length and a '{'. */
export function looksLikeSafetensors(bytes: Uint8Array): boolean {
  if (bytes.length < 10) return false;
  const length = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  return length >= 2n && length <= BigInt(bytes.length - 8) && bytes[8] === 0x7b;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseEntry(name: string, value: unknown): HeaderEntry {
  if (!isRecord(value)) badHeader(`entry '${name}' is not an object`);
  const { dtype: dtypeName, shape, data_offsets: offsets } = value;
  if (typeof dtypeName !== 'string') badHeader(`entry '${name}' has no dtype`);
  const dtype = FILE_DTYPES[dtypeName];
  if (dtype === undefined) {
    throw new CheckpointError('unsupported-dtype', `safetensors entry '${name}' has dtype ${dtypeName.slice(0, 20)}`);
  }
  if (!Array.isArray(shape) || shape.length > MAX_TENSOR_DIMS) badHeader(`entry '${name}' has a bad shape`);
  for (const size of shape) {
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      badHeader(`entry '${name}' has a bad shape [${shape.join(', ').slice(0, 80)}]`);
    }
  }
  if (!Array.isArray(offsets) || offsets.length !== 2) badHeader(`entry '${name}' has no data_offsets pair`);
  const [begin, end] = offsets as unknown[];
  if (
    typeof begin !== 'number' ||
    typeof end !== 'number' ||
    !Number.isSafeInteger(begin) ||
    !Number.isSafeInteger(end) ||
    begin < 0 ||
    end < begin
  ) {
    badHeader(`entry '${name}' has bad data_offsets`);
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/** Reads a safetensors file; `metadata` is its `__metadata__` string map. */
export function readSafetensors(source: CheckpointSource): Checkpoint {
  const { bytes, name } = readSource(source);
  return namingSource(name, () => parseSafetensors(bytes));
}

/** readSafetensors on bytes, with messages that do not name a file. */
export function parseSafetensors(bytes: Uint8Array): Checkpoint {
  if (bytes.length < 8) throw new CheckpointError('truncated', `a safetensors file of ${bytes.length} bytes`);
  const declared = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (declared > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError('too-large', `safetensors header of ${declared} bytes (at most ${MAX_HEADER_BYTES})`);
  }
  const headerLength = Number(declared);
  if (8 + headerLength > bytes.length) {
    throw new CheckpointError(
      'truncated',
      `safetensors header declares ${headerLength} bytes but the file has ${bytes.length - 8} after the length`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLength)));
  } catch (error) {
    throw new CheckpointError('bad-header', 'safetensors header is not valid UTF-8 JSON', { cause: error });
  }
  if (!isRecord(header)) badHeader('not a JSON object');
  const metadata: Record<string, unknown> = {};
  const entries: HeaderEntry[] = [];
  for (const [key, value] of Object.entries(header)) {
    if (key === '__metadata__') {
      if (!isRecord(value)) badHeader('__metadata__ is not an object');
      for (const [metaKey, metaValue] of Object.entries(value)) {
        if (typeof metaValue !== 'string') badHeader(`__metadata__ value '${metaKey}' is not a string`);
        Object.defineProperty(metadata, metaKey, {
          value: metaValue,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
    } else {
      entries.push(parseEntry(key, value));
    }
  }
  const data = bytes.subarray(8 + headerLength);
  // The entries must tile the data buffer: no gaps, no overlaps, nothing past its end.
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expectedBegin = 0;
  for (const entry of byOffset) {
    if (entry.begin !== expectedBegin) {
      badHeader(`entry '${entry.name}' starts at ${entry.begin}, expected ${expectedBegin} (gap or overlap)`);
    }
    const expectedLength = numelOf(entry.shape) * ELEMENT_SIZE[entry.dtype];
    if (entry.end - entry.begin !== expectedLength) {
      badHeader(
        `entry '${entry.name}' spans ${entry.end - entry.begin} bytes but shape [${entry.shape.join(', ')}] needs ${expectedLength}`,
      );
    }
    expectedBegin = entry.end;
  }
  if (expectedBegin !== data.length) {
    if (expectedBegin > data.length) {
      throw new CheckpointError(
        'truncated',
        `safetensors data needs ${expectedBegin} bytes but the file holds ${data.length} (truncated)`,
      );
    }
    badHeader(`the tensors cover ${expectedBegin} bytes of a ${data.length}-byte buffer`);
  }
  const stateDict = new Map<string, Tensor>();
  const widened: string[] = [];
  disposeOnError(stateDict, () => {
    for (const entry of entries) {
      stateDict.set(entry.name, tensorFromBytes(data.subarray(entry.begin, entry.end), entry.dtype, entry.shape));
      if (entry.dtype === 'bfloat16') widened.push(entry.name);
    }
  });
  const notes = widened.length > 0 ? [`bfloat16 tensors widened to float32 (exactly): ${widened.join(', ')}`] : [];
  return { stateDict, metadata, format: 'safetensors', omittedKeys: [], notes };
}

/** A safetensors file as parts to write in order (tensor bytes in state-dict order). */
export function safetensorsParts(
  stateDict: ReadonlyMap<string, Tensor>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new CheckpointError('bad-metadata', `safetensors metadata '${key}' must be a string`);
      }
    }
    header.__metadata__ = metadata;
  }
  const buffers: Uint8Array[] = [];
  let offset = 0;
  for (const [name, value] of stateDict) {
    if (name === '__metadata__') throw new CheckpointError('bad-metadata', "a tensor may not be named '__metadata__'");
    const bytes = tensorBytes(value);
    buffers.push(bytes);
    const entry = {
      dtype: DTYPE_NAMES[value.dtype],
      shape: value.shape,
      data_offsets: [offset, offset + bytes.length],
    };
    // defineProperty: a tensor named '__proto__' stays a key instead of replacing the prototype.
    Object.defineProperty(header, name, { value: entry, enumerable: true, writable: true, configurable: true });
    offset += bytes.length;
  }
  // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
  const json = JSON.stringify(header);
  const headerLength = Math.ceil(Buffer.byteLength(json) / 8) * 8;
  const headerBytes = new Uint8Array(8 + headerLength).fill(0x20);
  new DataView(headerBytes.buffer).setBigUint64(0, BigInt(headerLength), true);
  new TextEncoder().encodeInto(json, headerBytes.subarray(8));
  return [headerBytes, ...buffers];
}

/** Writes a safetensors file atomically (temporary file, then rename). Metadata values are strings. */
export function saveSafetensors(
  path: string,
  stateDict: ReadonlyMap<string, Tensor>,
  metadata?: Readonly<Record<string, string>>,
): void {
  writeFileAtomic(path, safetensorsParts(stateDict, metadata));
}
