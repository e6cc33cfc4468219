// What every reader returns, and what the readers and writers share: reading the input,
// atomic writes, DataParallel prefixes and metadata as plain JS values.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

import { dispose } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import { CheckpointError } from './errors.js';
import { describe, PickleGlobal, type PickleValue, StorageRef, TensorRef } from './pickle.js';

export type CheckpointFormat = 'zip' | 'legacy' | 'safetensors';

/** Where a checkpoint comes from: a file path, or its bytes. */
export type CheckpointSource = string | Uint8Array;

export interface Checkpoint {
  /** Parameter and buffer names (without DataParallel's `module.`) to tensors you now own: dispose them. */
  stateDict: Map<string, Tensor>;
  /**
   * The checkpoint's other top-level entries as plain JS values (e.g. `epoch`); dicts become
   * objects, tuples and sets arrays, big ints bigints. safetensors: its `__metadata__` strings.
   */
  metadata: Record<string, unknown>;
  format: CheckpointFormat;
  /** Top-level entries left out of `metadata` because they hold tensors (e.g. `optimizer`). */
  omittedKeys: string[];
  /** Conversions made on the way (bfloat16 widened to float32, entries skipped). */
  notes: string[];
}

/** The bytes of a source and a name for messages. */
export function readSource(source: CheckpointSource): { bytes: Uint8Array; name: string } {
  if (typeof source !== 'string') {
    return { bytes: new Uint8Array(source.buffer, source.byteOffset, source.byteLength), name: '<checkpoint bytes>' };
  }
  try {
    const file = readFileSync(source);
    // A plain Uint8Array view: Buffer's slice() shares memory where Uint8Array's copies.
    return { bytes: new Uint8Array(file.buffer, file.byteOffset, file.byteLength), name: source };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CheckpointError('io', `${source}: cannot read the file (${reason})`, { cause: error });
  }
}

/**
 * Writes `parts` to `path` through a temporary file in the same folder, flushed and then
 * renamed over `path`, so a crash or error never leaves a half-written checkpoint there.
 */
export function writeFileAtomic(path: string, parts: readonly Uint8Array[]): void {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let descriptor: number | undefined;
  try {
    descriptor = openSync(temporary, 'wx');
    for (const part of parts) {
      let written = 0;
      while (written < part.length) written += writeSync(descriptor, part, written, part.length - written);
    }
    fsyncSync(descriptor);
    closeSync(descriptor);
    descriptor = undefined;
    renameSync(temporary, path);
  } catch (error) {
    if (descriptor !== undefined) closeSync(descriptor);
    try {
      unlinkSync(temporary);
    } catch {
      // Never created, or already renamed.
    }
    const reason = error instanceof Error ? error.message : String(error);
    throw new CheckpointError('io', `${path}: cannot write the file (${reason})`, { cause: error });
  }
}

/** Drops DataParallel's `module.` prefix from every key that has it. */
export function stripModulePrefix<T>(entries: Iterable<[string, T]>): Map<string, T> {
  const result = new Map<string, T>();
  for (const [key, value] of entries) {
    const name = key.startsWith('module.') ? key.slice('module.'.length) : key;
    if (result.has(name)) {
      throw new CheckpointError('bad-state-dict', `state dict holds both '${name}' and 'module.${name}'`);
    }
    result.set(name, value);
  }
  return result;
}

/** Frees the tensors made so far when building a state dict fails. */
export function disposeOnError<T>(made: Map<string, Tensor>, build: () => T): T {
  try {
    return build();
  } catch (error) {
    dispose(made);
    throw error;
  }
}

// ---- metadata ----------------------------------------------------------------------------

/** Deepest nesting converted to plain values (a checkpoint's metadata is a few levels deep). */
const MAX_METADATA_DEPTH = 100;

/** Marks values that hold tensors, storages or classes: not metadata. */
const NOT_DATA = Symbol('not data');

/** Sets a key as an own property, so that '__proto__' stays a plain key. */
function setProperty(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function keyText(key: PickleValue): string {
  if (typeof key === 'string') return key;
  if (key === null) return 'None';
  if (typeof key === 'number' || typeof key === 'bigint' || typeof key === 'boolean') return String(key);
  if (Array.isArray(key)) return `(${key.map(keyText).join(', ')})`;
  return describe(key);
}

/**
 * A pickled value as plain JS data, or NOT_DATA where it holds tensors. Shared values are
 * converted once (a pickle can reference one object from many places); cycles and absurd
 * nesting are refused.
 */
function toPlain(value: PickleValue, depth: number, converted: Map<object, unknown>, open: Set<object>): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Uint8Array) return value;
  if (value instanceof TensorRef || value instanceof StorageRef || value instanceof PickleGlobal) return NOT_DATA;
  if (converted.has(value)) return converted.get(value);
  if (open.has(value)) throw new CheckpointError('bad-pickle', 'checkpoint metadata refers to itself (a cycle)');
  if (depth > MAX_METADATA_DEPTH) {
    throw new CheckpointError('too-deep', `checkpoint metadata is nested more than ${MAX_METADATA_DEPTH} levels deep`);
  }
  open.add(value);
  let result: unknown;
  if (value instanceof Map) {
    const object: Record<string, unknown> = {};
    result = object;
    for (const [key, item] of value) {
      const plain = toPlain(item, depth + 1, converted, open);
      if (plain === NOT_DATA) {
        result = NOT_DATA;
        break;
      }
      setProperty(object, keyText(key), plain);
    }
  } else {
    const items: unknown[] = [];
    result = items;
    for (const item of value) {
      const plain = toPlain(item, depth + 1, converted, open);
      if (plain === NOT_DATA) {
        result = NOT_DATA;
        break;
      }
      items.push(plain);
    }
  }
  open.delete(value);
  converted.set(value, result);
  return result;
}

/** Top-level entries as plain metadata; those holding tensors are named in `omitted`. */
export function plainMetadata(entries: Iterable<[PickleValue, PickleValue]>): {
  metadata: Record<string, unknown>;
  omitted: string[];
} {
  const metadata: Record<string, unknown> = {};
  const omitted: string[] = [];
  const converted = new Map<object, unknown>();
  for (const [key, value] of entries) {
    const plain = toPlain(value, 1, converted, new Set());
    if (plain === NOT_DATA) omitted.push(keyText(key));
    else setProperty(metadata, keyText(key), plain);
  }
  return { metadata, omitted };
}
