// What every inversion shares: a target check, the clean images in a seeded order per pass,
// and a model frozen for the passes (eval mode, no parameter gradients).
import { tensor } from '../../engine/creation.js';
import { tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import type { ImageSplit } from '../../data/dataset.js';
import { toUnitRange } from '../../data/normalization.js';
import { permutation } from '../../data/rng.js';
import type { Module } from '../../nn/module.js';

/** Throws unless `target` is one of the split's classes. */
export function checkTarget(clean: ImageSplit, target: number): void {
  if (!Number.isInteger(target) || target < 0 || target >= clean.numClasses) {
    throw new RangeError(`target class ${target} is out of range for ${clean.numClasses} classes`);
  }
}

/**
 * Batches of clean [0, 1] images in a seeded order per pass. With `dropLast` the last partial
 * batch is left out, as the published code's DataLoader does (drop_last=True), unless no full
 * batch exists.
 */
export function* passBatches(
  clean: ImageSplit,
  batchSize: number,
  seed: number,
  pass: number,
  dropLast = false,
): Generator<Tensor> {
  const order = permutation(clean.count, (seed * 7919 + pass * 104729) >>> 0);
  for (let start = 0; start < batchEnd(order.length, batchSize, dropLast); start += batchSize) {
    const indices = order.subarray(start, Math.min(start + batchSize, order.length));
    yield tidy(() => toUnitRange(clean.images.indexSelect(0, tensor(indices, { dtype: 'int64' }))));
  }
}

/** Where batching stops: the whole set, or the last full batch's end with `dropLast`. */
export function batchEnd(count: number, batchSize: number, dropLast: boolean): number {
  return dropLast && count >= batchSize ? count - (count % batchSize) : count;
}

/** Freezes a model for inversion (eval mode, no parameter gradients); returns the undo. */
export function freezeForInversion(model: Module): () => void {
  const wasTraining = model.training;
  const flags = model.parameters().map((p) => [p, p.requiresGrad] as const);
  model.eval();
  model.requiresGrad_(false);
  return () => {
    for (const [parameter, requiresGrad] of flags) parameter.requiresGrad_(requiresGrad);
    model.train(wasTraining);
  };
}
