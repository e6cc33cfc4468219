// The attack interface: one class per attack, registered by name (registry.ts). An attack
// poisons training samples (which ones, and their new labels, by its PoisonPolicy) and
// stamps its test-time trigger. Triggers work on float images in [0, 1] (N×C×H×W), before
// normalization, as batched tensor ops.
import type { Tensor } from '../engine/tensor.js';
import type { TestTimeTrigger } from '../eval/metrics.js';
import { permutation } from '../data/rng.js';
import { type AttackMode, type PoisonPolicy, attackTarget, modeOf, poisonLabel, poisonable } from './policy.js';
import type { AttackTrainingHook } from './training-hook.js';

export type { AttackMode, PoisonPolicy } from './policy.js';

export interface AttackConfig {
  /** Target class for all-to-one and clean-label (ignored by all-to-all: y → (y + 1) mod K). */
  target: number;
  /** all-to-all for the all-to-all policy, all-to-one for the other two. */
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
  readonly policy: PoisonPolicy;

  /** `policy` defaults to the config's mode; clean-label attacks pass 'clean-label'. */
  constructor(
    readonly config: AttackConfig,
    readonly geometry: ImageGeometry,
    policy: PoisonPolicy = config.mode,
  ) {
    if (!(config.poisonRate >= 0 && config.poisonRate <= 1)) {
      throw new RangeError(`poison rate must be in [0, 1], got ${config.poisonRate}`);
    }
    // The config's mode is what identifies a run and what evaluation reads: it must agree.
    if (modeOf(policy) !== config.mode) {
      throw new Error(`a ${policy} attack needs mode ${modeOf(policy)}, got ${config.mode}`);
    }
    this.policy = policy;
  }

  /** Clean-label attacks poison only target-class images and keep every label. */
  get cleanLabel(): boolean {
    return this.policy === 'clean-label';
  }

  get mode(): AttackMode {
    return modeOf(this.policy);
  }

  /**
   * Stamps the trigger on float images in [0, 1]; returns new images in [0, 1]. `indices`
   * are the images' positions in their split (see Trigger); the built-in attacks ignore them.
   */
  abstract apply(images: Tensor, indices?: Tensor): Tensor;

  targetOf(trueLabel: number, numClasses: number): number {
    return attackTarget(this.policy, trueLabel, this.config.target, numClasses);
  }

  /** Sorted indices of the training samples to poison (seeded). */
  poisonIndices(labels: Int32Array, _numClasses: number): Int32Array {
    const wanted = Math.round(this.config.poisonRate * labels.length);
    const order = permutation(labels.length, this.config.seed ^ 0x2545f491);
    const chosen: number[] = [];
    for (const index of order) {
      if (chosen.length >= wanted) break;
      if (poisonable(this.policy, labels[index]!, this.config.target)) chosen.push(index);
    }
    return Int32Array.from(chosen).sort();
  }

  /** The label a poisoned training sample gets. */
  poisonedLabel(trueLabel: number, numClasses: number): number {
    return poisonLabel(this.policy, trueLabel, this.config.target, numClasses);
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

  /**
   * What the trainer must do besides poisoning for an attack that learns its trigger while
   * the classifier trains (see AttackTrainingHook); fixed triggers have none. Return the
   * attack's own hook, the same tensors on every call.
   */
  trainingHook(): AttackTrainingHook | undefined {
    return undefined;
  }

  /** Frees tensors the attack holds (patterns, grids). */
  dispose(): void {}
}
