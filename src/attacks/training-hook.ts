// What an attack that learns its trigger while the classifier trains gives the trainer:
// extra trainable tensors, an extra loss term per batch, and start/end calls. The trainer
// knows nothing else about the attack, so such an attack is one file like any other.
import type { Tensor } from '../engine/tensor.js';
import type { Normalization } from '../data/dataset.js';
import type { Module } from '../nn/module.js';

/** One training batch as the trainer saw it, for the hook's extra loss. */
export interface AttackTrainingContext {
  readonly model: Module;
  /** The model's input: augmented, normalized, poisoned samples already stamped by `apply`. */
  readonly images: Tensor;
  /** Labels after poisoning (int64, N). */
  readonly labels: Tensor;
  /** The model's logits on `images`, still in the graph: reuse them instead of a second forward. */
  readonly logits: Tensor;
  /** Each sample's index in the training split (N). */
  readonly indices: Int32Array;
  /** Batch positions of the poisoned samples (ascending). */
  readonly poisoned: Int32Array;
  /** Batch positions of the cross samples (WaNet's noise mode; ascending). */
  readonly cross: Int32Array;
  /** Maps [0, 1] images to the model's input, e.g. to stamp the batch's clean samples anew. */
  readonly normalization: Normalization;
  readonly numClasses: number;
  readonly epoch: number;
  /** Batch index within the epoch, from 0. */
  readonly batch: number;
}

export interface AttackTrainingStart {
  readonly model: Module;
  readonly epochs: number;
  /** The epoch training starts from (more than 0 when a checkpoint was resumed). */
  readonly firstEpoch: number;
  readonly batchesPerEpoch: number;
}

/**
 * Returned by `Attack.trainingHook()`. The trainer steps `parameters()` with an optimizer
 * of their own (Adam at `lr`, no weight decay, no schedule), because a trigger's scale has
 * nothing to do with the model's learning rate, schedule or weight decay. Both optimizers
 * are zeroed before and stepped after the same backward pass; gradients reach the trigger
 * through the poisoned samples `apply` stamped and through `loss`. The parameters and their
 * optimizer state are saved in the run's checkpoints and restored on resume.
 */
export interface AttackTrainingHook {
  /** Trainable tensors (requiresGrad, kept), the same ones on every call. */
  parameters(): Tensor[];
  /** Adam learning rate for `parameters()` (default 1e-3, as torch.optim.Adam). */
  readonly lr?: number;
  /** Called once before the first epoch, after a resume restored the parameters. */
  start?(run: AttackTrainingStart): void;
  /**
   * An extra scalar loss term added to the batch's cross-entropy before the backward pass,
   * or undefined for none this batch. Created inside the trainer's scope: it is freed after
   * the step.
   */
  loss?(context: AttackTrainingContext): Tensor | undefined;
  /** Called once when training ends: after the last epoch, after a stop, or on an error. */
  end?(): void;
}
