// BA, ASR, RA and DER exactly as SPEC §3 defines them, batched and without gradients.
import { noGrad } from '../engine/autograd.js';
import { tensor } from '../engine/creation.js';
import { tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import type { Trigger } from '../attacks/trigger.js';
import type { ImageSplit, Normalization } from '../data/dataset.js';
import { normalize, toUnitRange } from '../data/normalization.js';
import type { Module } from '../nn/module.js';

/**
 * What evaluation needs of an attack: its trigger (stamped with the images' positions in
 * the test split as `indices`) and the labels it aims at.
 */
export interface TestTimeTrigger extends Trigger {
  /** The label the attacker wants for an image of true label y. */
  targetOf(trueLabel: number, numClasses: number): number;
  /** All-to-one attacks skip images that already belong to the target. */
  readonly mode: 'all-to-one' | 'all-to-all';
}

export interface Metrics {
  /** Top-1 accuracy on the whole clean test split, percent. */
  ba: number;
  /** Accuracy over the test images whose label is not the target (the authors' print), percent. */
  ba_non_target?: number;
  /** Triggered images classified as the attacker's target, percent (NaN without a trigger). */
  asr: number;
  /** Triggered images still classified as their true label, percent. */
  ra: number;
  /**
   * The same images as ASR, without the trigger: the percentage the model already sends to
   * the attacker's target (NaN without a trigger). A model that confuses classes puts some
   * images there anyway, so ASR cannot fall far below this.
   */
  asr_no_trigger: number;
  clean_n: number;
  poison_n: number;
}

export interface EvaluateOptions {
  normalization: Normalization;
  trigger?: TestTimeTrigger;
  /**
   * Images per forward pass (default 128). Larger batches are slower on CPU: at 500 a WRN-16-1
   * forward took 0.67–0.97 ms an image against 0.46–0.57 ms at 64–128 on an AMD EPYC (2 cores),
   * as the activations outgrow the caches.
   */
  batchSize?: number;
}

/** Predicted labels for float [0, 1] images. */
function predict(model: Module, images: Tensor, normalization: Normalization): Int32Array {
  return tidy(() => model.forward(normalize(images, normalization)).argmax(1).to('int32').toTypedArray() as Int32Array);
}

export function evaluate(model: Module, split: ImageSplit, options: EvaluateOptions): Metrics {
  const batchSize = options.batchSize ?? 128;
  const wasTraining = model.training;
  model.eval();
  let correct = 0;
  let nonTargetTotal = 0;
  let nonTargetCorrect = 0;
  let poisoned = 0;
  let hits = 0;
  let robust = 0;
  let hitsWithoutTrigger = 0;
  const trigger = options.trigger;
  const numClasses = split.numClasses;
  try {
    noGrad(() => {
      for (let start = 0; start < split.count; start += batchSize) {
        const count = Math.min(batchSize, split.count - start);
        const labels = split.labelArray.subarray(start, start + count);
        tidy(() => {
          const images = toUnitRange(split.images.narrow(0, start, count));
          const clean = predict(model, images, options.normalization);
          clean.forEach((prediction, i) => (correct += prediction === labels[i] ? 1 : 0));
          if (trigger === undefined) return;
          // Which images count for ASR: all-to-one skips those already of the target class.
          const chosen: number[] = [];
          labels.forEach((label, i) => {
            const target = trigger.targetOf(label, numClasses);
            if (trigger.mode === 'all-to-all' || label !== target) chosen.push(i);
            if (trigger.mode === 'all-to-one' && label !== target) {
              nonTargetTotal++;
              nonTargetCorrect += clean[i] === label ? 1 : 0;
            }
          });
          if (chosen.length === 0) return;
          const subset = images.indexSelect(0, tensor(Int32Array.from(chosen), { dtype: 'int64' }));
          const positions = tensor(
            Int32Array.from(chosen, (i) => start + i),
            { dtype: 'int64' },
          );
          const stamped = predict(model, trigger.apply(subset, positions), options.normalization);
          stamped.forEach((prediction, k) => {
            const label = labels[chosen[k]!]!;
            const target = trigger.targetOf(label, numClasses);
            poisoned++;
            if (prediction === target) hits++;
            if (clean[chosen[k]!] === target) hitsWithoutTrigger++;
            if (prediction === label) robust++;
          });
        });
      }
    });
  } finally {
    model.train(wasTraining);
  }
  const percent = (part: number, whole: number): number => (whole === 0 ? NaN : (100 * part) / whole);
  const metrics: Metrics = {
    ba: percent(correct, split.count),
    asr: percent(hits, poisoned),
    ra: percent(robust, poisoned),
    asr_no_trigger: percent(hitsWithoutTrigger, poisoned),
    clean_n: split.count,
    poison_n: poisoned,
  };
  if (trigger?.mode === 'all-to-one') metrics.ba_non_target = percent(nonTargetCorrect, nonTargetTotal);
  return metrics;
}

/** Defense effectiveness rating: (max(0, ΔASR) − max(0, ΔBA) + 1) / 2, Δ = before − after, in fractions. */
export function defenseEffectivenessRating(
  before: Pick<Metrics, 'ba' | 'asr'>,
  after: Pick<Metrics, 'ba' | 'asr'>,
): number {
  const deltaAsr = (before.asr - after.asr) / 100;
  const deltaBa = (before.ba - after.ba) / 100;
  return (Math.max(0, deltaAsr) - Math.max(0, deltaBa) + 1) / 2;
}
