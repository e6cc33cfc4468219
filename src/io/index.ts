// Checkpoints in and out: PyTorch's zip and legacy formats (read), its zip format (write),
// and safetensors (both ways). `loadWeights` picks the format from the file's content.
import { existsSync, rmSync } from 'node:fs';

import { dispose } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import { type LoadResult, type Module, StateDictError } from '../nn/module.js';
import { type Checkpoint, type CheckpointSource, readSource } from './checkpoint.js';
import { CheckpointError, namingSource } from './errors.js';
import { looksLikeLegacy, parseCheckpoint, saveCheckpoint, unknownFormatMessage } from './pth.js';
import { looksLikeSafetensors, parseSafetensors, readSafetensors, saveSafetensors } from './safetensors.js';
import { looksLikeZip } from './zip.js';

export { CheckpointError, type CheckpointErrorCode } from './errors.js';
export type { Checkpoint, CheckpointFormat, CheckpointSource } from './checkpoint.js';
export { readCheckpoint, saveCheckpoint } from './pth.js';
export { readSafetensors, saveSafetensors } from './safetensors.js';

/** Which reader a file's first bytes call for, or null. */
export function detectFormat(bytes: Uint8Array): 'zip' | 'legacy' | 'safetensors' | null {
  if (looksLikeZip(bytes)) return 'zip';
  if (looksLikeLegacy(bytes)) return 'legacy';
  if (looksLikeSafetensors(bytes)) return 'safetensors';
  return null;
}

/** Reads any supported weights file (PyTorch zip or legacy, or safetensors), chosen by content. */
export function readWeights(source: CheckpointSource): Checkpoint {
  const { bytes, name } = readSource(source);
  return namingSource(name, () => {
    switch (detectFormat(bytes)) {
      case 'safetensors':
        return parseSafetensors(bytes);
      case 'zip':
      case 'legacy':
        return parseCheckpoint(bytes);
      default:
        throw new CheckpointError('bad-format', unknownFormatMessage(bytes));
    }
  });
}

export interface LoadWeightsResult extends LoadResult {
  metadata: Record<string, unknown>;
  format: Checkpoint['format'];
  notes: string[];
}

/**
 * Loads a weights file into `model` (format chosen by content) and frees the loaded tensors.
 * Strict (default): missing, unexpected or mis-shaped keys throw a StateDictError naming
 * them all, and the model is left unchanged.
 */
export function loadWeights(
  model: Module,
  path: CheckpointSource,
  options: { strict?: boolean } = {},
): LoadWeightsResult {
  const checkpoint = readWeights(path);
  try {
    const result = model.loadStateDict(checkpoint.stateDict, { strict: options.strict ?? true });
    return { ...result, metadata: checkpoint.metadata, format: checkpoint.format, notes: checkpoint.notes };
  } catch (error) {
    if (error instanceof StateDictError && typeof path === 'string') error.message = `${path}: ${error.message}`;
    throw error;
  } finally {
    dispose(checkpoint.stateDict);
  }
}

/**
 * Saves a model's (or a state dict's) weights: safetensors when `path` ends in
 * `.safetensors` (metadata values that are not strings are written as JSON), a PyTorch zip
 * checkpoint otherwise (metadata may hold numbers, strings, booleans, arrays and objects).
 */
export function saveWeights(
  path: string,
  source: Module | ReadonlyMap<string, Tensor>,
  metadata?: Record<string, unknown>,
): void {
  const stateDict = source instanceof Map ? (source as ReadonlyMap<string, Tensor>) : (source as Module).stateDict();
  try {
    if (path.endsWith('.safetensors')) {
      const strings: Record<string, string> = {};
      for (const [key, value] of Object.entries(metadata ?? {})) {
        strings[key] =
          typeof value === 'string'
            ? value
            : JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? item.toString() : item));
      }
      saveSafetensors(path, stateDict, strings);
    } else {
      saveCheckpoint(path, stateDict, metadata);
    }
  } finally {
    if (stateDict !== source) dispose(stateDict);
  }
}

/**
 * Training checkpoints as safetensors files: tensors by name plus string metadata
 * (the shape the trainer's resumable checkpoints use).
 */
export const safetensorsStore = {
  exists(path: string): boolean {
    return existsSync(path);
  },
  remove(path: string): void {
    rmSync(path, { force: true });
  },
  save(path: string, tensors: ReadonlyMap<string, Tensor>, metadata: Record<string, string>): void {
    saveSafetensors(path, tensors, metadata);
  },
  load(path: string): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
    const { stateDict, metadata } = readSafetensors(path);
    return { tensors: stateDict, metadata: metadata as Record<string, string> };
  },
};

/** Names of a checkpoint part: `prefix` put before each (e.g. 'model.'); the tensors are the same. */
export function prefixed(tensors: ReadonlyMap<string, Tensor>, prefix: string): [string, Tensor][] {
  return [...tensors].map(([key, tensor]) => [`${prefix}${key}`, tensor]);
}

/** The part of a checkpoint under `prefix`, the prefix taken off the names; the tensors are the same. */
export function unprefixed(tensors: ReadonlyMap<string, Tensor>, prefix: string): Map<string, Tensor> {
  return new Map(
    [...tensors].filter(([key]) => key.startsWith(prefix)).map(([key, tensor]) => [key.slice(prefix.length), tensor]),
  );
}
