// What a class's inverted trigger does to the model's features. A backdoor trigger sends
// images of every class to one tight cluster of features, apart from the clean images of
// the target class (the separation MCLDef's purification rests on); a small adversarial
// pattern towards a clean class moves images to the class's clean features, no tighter.
import { tensor } from '../../engine/creation.js';
import { atPrecision, noGrad, type Precision } from '../../engine/autograd.js';
import * as F from '../../engine/functional.js';
import { keep, tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import type { Trigger } from '../../attacks/trigger.js';
import type { ImageSplit } from '../../data/dataset.js';
import { normalize, toUnitRange } from '../../data/normalization.js';
import type { Classifier } from '../../nn/models/classifier.js';
import type { Module } from '../../nn/module.js';
import { freezeForInversion } from './passes.js';

export interface FeatureEvidence {
  /** Fraction of the other classes' scan images the trigger sends to the class. */
  reach: number;
  /** Mean cosine of the stamped images' features to their mean: 1 is one point. */
  stampedTightness: number;
  /** The same for the class's own clean scan images. */
  cleanTightness: number;
  /** RMS distance of the stamped features from their mean over that of the clean class's. */
  spreadRatio: number;
  /** Distance between the stamped and the clean class's mean features over the clean RMS spread. */
  separation: number;
  /** The smallest such distance to any class's clean mean features (each over its class's spread). */
  nearestSeparation: number;
  /** The class whose clean features the stamped images' mean is nearest to. */
  nearestClass: number;
}

export function isClassifier(model: Module): model is Classifier {
  return typeof (model as unknown as Partial<Classifier>).features === 'function';
}

/** The features of `indices` of the split, stamped by `trigger` when given, in chunks. */
function featuresOf(
  model: Classifier,
  split: ImageSplit,
  indices: readonly number[],
  trigger: Trigger | null,
  precision: Precision,
  chunk = 250,
): { features: Tensor; hits: (label: number) => number } {
  const parts: Tensor[] = [];
  const predictions: number[] = [];
  try {
    for (let start = 0; start < indices.length; start += chunk) {
      const index = tensor(Int32Array.from(indices.slice(start, start + chunk)), { dtype: 'int64' });
      const [features, predicted] = tidy(() => {
        let images = toUnitRange(split.images.indexSelect(0, index));
        if (trigger !== null) images = trigger.apply(images);
        const features = atPrecision(precision, normalize(images, split.normalization), (input) =>
          model.features(input),
        );
        return [features, model.classify(features).argmax(1)] as const;
      });
      index.dispose();
      parts.push(features);
      predictions.push(...Array.from(predicted.toFloat64Array()));
      predicted.dispose();
    }
    const features = tidy(() => (parts.length === 1 ? parts[0]!.clone() : F.cat(parts)));
    return { features, hits: (label) => predictions.filter((p) => p === label).length };
  } finally {
    for (const part of parts) part.dispose();
  }
}

/** Mean cosine of the rows to their mean, and the RMS distance of the rows from their mean. */
function spread(features: Tensor): { tightness: number; rms: number; mean: Tensor } {
  return tidy(() => {
    const mean = features.mean(0, true);
    const cosine = F.cosineSimilarity(features, mean.expand(features.shape), 1).mean().item();
    const rms = Math.sqrt(features.sub(mean).square().sum(1).mean().item());
    return { tightness: cosine, rms, mean: keep(mean) };
  });
}

/** Each class's clean scan images in feature space: mean, RMS spread, tightness (dispose it). */
export interface CleanFeatureStats {
  /** Indexed by class; undefined for a class with fewer than 2 scan images. */
  readonly classes: readonly ({ tightness: number; rms: number; mean: Tensor } | undefined)[];
  dispose(): void;
}

/** Eval mode and no gradients for `fn`: batch-norm statistics of a batch would hide what is measured. */
function measured<T>(model: Classifier, fn: () => T): T {
  const unfreeze = freezeForInversion(model);
  try {
    return noGrad(fn);
  } finally {
    unfreeze();
  }
}

/** The clean classes' statistics, once per scan: every class's evidence is measured against them. */
export function cleanFeatureStats(
  model: Classifier,
  scanSet: ImageSplit,
  precision: Precision = 'float32',
): CleanFeatureStats {
  const classes: ({ tightness: number; rms: number; mean: Tensor } | undefined)[] = [];
  const dispose = (): void => {
    for (const c of classes) c?.mean.dispose();
  };
  try {
    measured(model, () => {
      for (let c = 0; c < scanSet.numClasses; c++) {
        const members: number[] = [];
        scanSet.labelArray.forEach((value, index) => value === c && members.push(index));
        if (members.length < 2) {
          classes.push(undefined);
          continue;
        }
        const clean = featuresOf(model, scanSet, members, null, precision);
        try {
          classes.push(spread(clean.features));
        } finally {
          clean.features.dispose();
        }
      }
    });
  } catch (error) {
    dispose();
    throw error;
  }
  return { classes, dispose };
}

/**
 * The features' evidence for one class: its scan images' clean features against the other
 * classes' images stamped by the class's inverted trigger. `clean`: the scan's
 * cleanFeatureStats, computed here when not given.
 */
export function featureEvidence(
  model: Classifier,
  scanSet: ImageSplit,
  label: number,
  trigger: Trigger,
  precision: Precision = 'float32',
  clean?: CleanFeatureStats,
): FeatureEvidence {
  const others: number[] = [];
  scanSet.labelArray.forEach((value, index) => value !== label && others.push(index));
  const stats = clean ?? cleanFeatureStats(model, scanSet, precision);
  try {
    const own = stats.classes[label];
    if (own === undefined || others.length === 0) {
      throw new Error(
        `featureEvidence: class ${label} needs 2 or more scan images and other classes' images beside them`,
      );
    }
    return measured(model, () => {
      const stamped = featuresOf(model, scanSet, others, trigger, precision);
      const s = spread(stamped.features);
      try {
        const distanceTo = (c: number): number =>
          tidy(() => s.mean.sub(stats.classes[c]!.mean).norm().item()) / stats.classes[c]!.rms;
        let nearestClass = label;
        let nearestSeparation = Infinity;
        stats.classes.forEach((c, index) => {
          if (c === undefined) return;
          const distance = distanceTo(index);
          if (distance < nearestSeparation) {
            nearestSeparation = distance;
            nearestClass = index;
          }
        });
        return {
          reach: stamped.hits(label) / others.length,
          stampedTightness: s.tightness,
          cleanTightness: own.tightness,
          spreadRatio: s.rms / own.rms,
          separation: distanceTo(label),
          nearestSeparation,
          nearestClass,
        };
      } finally {
        stamped.features.dispose();
        s.mean.dispose();
      }
    });
  } finally {
    if (clean === undefined) stats.dispose();
  }
}
