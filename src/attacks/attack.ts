// The attack interface: one class per attack, registered by name. An attack poisons
// training samples (which ones, and their new labels) and stamps its test-time trigger.
// Triggers work on float images in [0, 1] (N×C×H×W), before normalization, as batched
// tensor ops.
import type { Tensor } from '../engine/tensor.js';
import type { TestTimeTrigger } from '../eval/metrics.js';
import { permutation } from '../data/rng.js';

export type AttackMode = 'all-to-one' | 'all-to-all';

export interface AttackConfig {
  /** Target class for all-to-one (ignored by all-to-all: y → (y + 1) mod K). */
  target: number;
  mode: AttackMode;
  /** Fraction of the training set poisoned (clean-label attacks: drawn from the target class only). */
  poisonRate: number;
  seed: number;
}

export interface ImageGeometry {
  channels: number;
  height: number;
  width: number;
}

export abstract class Attack implements TestTimeTrigger {
  abstract readonly name: string;
  /** Clean-label attacks poison only target-class images and keep every label. */
  readonly cleanLabel: boolean = false;

  constructor(
    readonly config: AttackConfig,
    readonly geometry: ImageGeometry,
  ) {
    if (!(config.poisonRate >= 0 && config.poisonRate <= 1)) {
      throw new RangeError(`poison rate must be in [0, 1], got ${config.poisonRate}`);
    }
  }

  get mode(): AttackMode {
    return this.config.mode;
  }

  /** Stamps the trigger on float images in [0, 1]; returns new images in [0, 1]. */
  abstract apply(images: Tensor): Tensor;

  targetOf(trueLabel: number, numClasses: number): number {
    return this.config.mode === 'all-to-one' ? this.config.target : (trueLabel + 1) % numClasses;
  }

  /** Sorted indices of the training samples to poison (seeded). */
  poisonIndices(labels: Int32Array, numClasses: number): Int32Array {
    const wanted = Math.round(this.config.poisonRate * labels.length);
    const order = permutation(labels.length, this.config.seed ^ 0x2545f491);
    const chosen: number[] = [];
    for (const index of order) {
      if (chosen.length >= wanted) break;
      const label = labels[index]!;
      if (this.cleanLabel) {
        if (label === this.config.target) chosen.push(index);
      } else if (this.config.mode === 'all-to-all' || label !== this.targetOf(label, numClasses)) {
        chosen.push(index);
      }
    }
    return Int32Array.from(chosen).sort();
  }

  /** The label a poisoned training sample gets. */
  poisonedLabel(trueLabel: number, numClasses: number): number {
    return this.cleanLabel ? trueLabel : this.targetOf(trueLabel, numClasses);
  }

  /**
   * Extra training-time samples that keep their labels (WaNet's noise mode); the base
   * attack has none. Returns indices into the training set.
   */
  crossIndices(_labels: Int32Array, _poisoned: Int32Array): Int32Array {
    return new Int32Array(0);
  }

  /** The transformation applied to cross samples. */
  applyCross(images: Tensor): Tensor {
    return images.clone();
  }

  /** Frees tensors the attack holds (patterns, grids). */
  dispose(): void {}
}
