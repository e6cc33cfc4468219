// Resumable defenses: a defense that runs for hours (SAU's 100 rounds) saves its state after
// every round to a file the caller names (DefenseContext.checkpoint), and a later run of the
// same defense on the same model, data and settings continues from there with the same
// result. The file is safetensors, written atomically (a kill mid-write leaves the previous
// round's). It belongs to one run: an identity over the settings, seed, clean data and input
// weights; a file another run wrote is ignored and then replaced.
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import { noGrad } from '../engine/autograd.js';
import { dispose } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import type { Optimizer } from '../engine/optim/optimizer.js';
import type { ImageSplit } from '../data/dataset.js';
import { prefixed, safetensorsStore, unprefixed } from '../io/index.js';
import type { Classifier } from '../nn/models/classifier.js';
import type { DefenseEpoch } from './defense.js';

/** What a checkpoint needs of an optimizer (SGD, Adam...). */
export type ResumableOptimizer = Pick<Optimizer<{ lr: number }>, 'exportState' | 'importState'>;

/** Where a run stands after a round. */
export interface RoundState {
  /** Rounds done. */
  rounds: number;
  epochs: DefenseEpoch[];
  /** The defense's seconds so far, over every process that worked on it. */
  seconds: number;
}

/** A digest of tensors' exact values (bytes) and shapes. */
function digest(hash: ReturnType<typeof createHash>, tensors: Iterable<readonly [string, Tensor]>): void {
  for (const [name, tensor] of tensors) {
    const values = tensor.toTypedArray();
    hash.update(`${name}:${tensor.dtype}:[${tensor.shape.join(',')}]`);
    hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
}

/** Identifies a defense run: its method and settings, seed, clean data and the weights it starts from. */
export function defenseRunIdentity(
  method: string,
  settings: unknown,
  seed: number,
  model: Classifier,
  clean: ImageSplit,
): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ method, settings, seed, count: clean.count }));
  const state = model.stateDict();
  try {
    digest(hash, state);
  } finally {
    dispose([...state.values()]);
  }
  digest(hash, [
    ['images', clean.images],
    ['labels', clean.labels],
  ]);
  return hash.digest('hex').slice(0, 16);
}

export class RoundCheckpoint {
  constructor(
    readonly path: string,
    /** From defenseRunIdentity: a file whose identity differs is not resumed. */
    readonly identity: string,
  ) {}

  /**
   * Puts the saved model weights and optimizer state back and returns where the run stood, or
   * undefined (and changes nothing) where there is no file of this run.
   */
  restore(model: Classifier, optimizer: ResumableOptimizer): RoundState | undefined {
    if (!safetensorsStore.exists(this.path)) return undefined;
    let saved;
    try {
      saved = safetensorsStore.load(this.path);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`defense checkpoint ${this.path}: ${message.split('\n')[0]}`);
    }
    try {
      if (saved.metadata.run !== this.identity) return undefined;
      noGrad(() => model.loadStateDict(unprefixed(saved.tensors, 'model.')));
      optimizer.importState({
        tensors: unprefixed(saved.tensors, 'optimizer.'),
        numbers: JSON.parse(saved.metadata.optimizer ?? '{}') as Record<string, number>,
      });
      return JSON.parse(saved.metadata.state ?? 'null') as RoundState;
    } finally {
      dispose([...saved.tensors.values()]);
    }
  }

  save(model: Classifier, optimizer: ResumableOptimizer, state: RoundState): void {
    const weights = model.stateDict();
    const optimizerState = optimizer.exportState();
    const tensors = new Map<string, Tensor>([
      ...prefixed(weights, 'model.'),
      ...prefixed(optimizerState.tensors, 'optimizer.'),
    ]);
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      safetensorsStore.save(this.path, tensors, {
        run: this.identity,
        optimizer: JSON.stringify(optimizerState.numbers),
        state: JSON.stringify(state),
      });
    } finally {
      dispose([...tensors.values()]);
    }
  }
}
