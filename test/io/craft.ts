// Hand-made pickles and checkpoints for the reader tests: raw opcode bytes, one-tensor
// zip checkpoints with chosen geometry, and fixture archives with records swapped out.
import { readFileSync } from 'node:fs';

import { PickleWriter } from '../../src/io/pickle.js';
import { ZipReader, zipBytes } from '../../src/io/zip.js';

/** Bytes from latin-1 strings, byte arrays and single bytes, concatenated. */
export function raw(...parts: (string | number | readonly number[] | Uint8Array)[]): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === 'string') for (let i = 0; i < part.length; i++) out.push(part.charCodeAt(i) & 0xff);
    else if (typeof part === 'number') out.push(part);
    else out.push(...part);
  }
  return Uint8Array.from(out);
}

/** Little-endian bytes of an unsigned integer. */
export function le(value: number | bigint, bytes: number): number[] {
  const out: number[] = [];
  let rest = BigInt(value);
  for (let i = 0; i < bytes; i++) {
    out.push(Number(rest & 0xffn));
    rest >>= 8n;
  }
  return out;
}

export interface TensorSpec {
  key?: string;
  storageType?: string;
  storageKey?: string;
  /** Elements the persistent id declares for the storage. */
  numel: number;
  offset?: number;
  size: readonly number[];
  stride: readonly number[];
}

/** data.pkl of `{name: tensor}` (an OrderedDict), optionally inside `{state_dict, ...extra}`. */
export function statePickle(tensors: readonly TensorSpec[], extra?: (writer: PickleWriter) => void): Uint8Array {
  const writer = new PickleWriter().proto(2);
  if (extra !== undefined) writer.emptyDict().mark().string('state_dict');
  writer.global('collections', 'OrderedDict').emptyTuple().reduce().mark();
  tensors.forEach((spec, i) => {
    writer
      .string(spec.key ?? `t${i}`)
      .global('torch._utils', '_rebuild_tensor_v2')
      .mark();
    writer
      .mark()
      .string('storage')
      .global('torch', spec.storageType ?? 'FloatStorage');
    writer
      .string(spec.storageKey ?? String(i))
      .string('cpu')
      .int(spec.numel)
      .tuple();
    writer
      .binPersId()
      .int(spec.offset ?? 0)
      .mark();
    for (const size of spec.size) writer.int(size);
    writer.tuple().mark();
    for (const stride of spec.stride) writer.int(stride);
    writer.tuple().bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
  });
  writer.setItems();
  if (extra !== undefined) {
    extra(writer);
    writer.setItems();
  }
  return writer.stop().bytes();
}

/** A zip checkpoint of `pickle` and storage records `data/<key>`. */
export function zipCheckpoint(pickle: Uint8Array, storages: Record<string, Uint8Array> = {}): Uint8Array {
  return zipBytes([
    { name: 'archive/data.pkl', data: pickle },
    ...Object.entries(storages).map(([key, data]) => ({ name: `archive/data/${key}`, data })),
    { name: 'archive/version', data: raw('3\n') },
  ]);
}

/** A fixture zip archive's records, to rebuild with changes (valid CRCs). */
export function zipRecords(path: string): { name: string; data: Uint8Array }[] {
  const bytes = new Uint8Array(readFileSync(path));
  const archive = new ZipReader(bytes);
  return archive.names.map((name) => ({ name, data: archive.read(name).slice() }));
}

/** Float32 values as little-endian bytes. */
export function floats(...values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}
