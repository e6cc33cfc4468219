// Stage 2 of MCLDef: model-contrastive purification (SPEC §2). The anchor is the model
// being purified (train mode) on stamped images; the positive and negative are the frozen
// backdoored model's features of the clean and the stamped image. The loss is the
// cross-entropy over [cos(a,p), cos(a,n)]/τ with label 0. SGD 0.9, weight decay 1e-4,
// the published per-epoch learning rates, 20 epochs, batch 64, no augmentation.
//
// The frozen model is deterministic (eval mode, fixed images, fixed trigger), so its
// features are computed once before training instead of twice per batch: the same loss
// as the published code without a second model or 2×20 extra forward passes.
import { type Precision, atPrecision, noGrad } from '../../engine/autograd.js';
import { arange, tensor, zeros } from '../../engine/creation.js';
import * as F from '../../engine/functional.js';
import { FunctionLR } from '../../engine/optim/lr-scheduler.js';
import { Adam } from '../../engine/optim/adam.js';
import { SGD } from '../../engine/optim/sgd.js';
import { keep, tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import type { Trigger } from '../../attacks/trigger.js';
import type { ImageSplit } from '../../data/dataset.js';
import { normalize, toUnitRange } from '../../data/normalization.js';
import { permutation } from '../../data/rng.js';
import { recalibrateBatchNorm } from '../../nn/layers.js';
import type { Classifier } from '../../nn/models/classifier.js';
import { batchEnd } from './passes.js';

export type LrScheduleName = 'cifar' | 'gtsrb';

/** The published per-epoch learning rates. */
export function publishedLr(schedule: LrScheduleName, epoch: number): number {
  if (schedule === 'gtsrb') return epoch < 2 ? 0.01 : epoch < 10 ? 0.001 : 0.0001;
  return epoch < 1 ? 0.1 : epoch < 10 ? 0.01 : 0.001;
}

export interface PurifyOptions {
  epochs?: number;
  batchSize?: number;
  temperature?: number;
  momentum?: number;
  weightDecay?: number;
  /** 'cifar' (default), 'gtsrb', or a function epoch → lr. */
  lrSchedule?: LrScheduleName | ((epoch: number) => number);
  /** Weight λ of an optional clean cross-entropy term (0: the published loss alone). */
  cleanWeight?: number;
  /** First epoch (0-based) in which the clean cross-entropy term applies (default 0). */
  cleanWeightFrom?: number;
  /**
   * Weight of an optional cross-entropy term on the stamped images with their true labels
   * (0: the published loss alone). It reuses the anchor's forward pass, so it costs no
   * extra pass over the data.
   */
  stampedWeight?: number;
  /**
   * Weight of an optional term that keeps the model's features of the clean images close to
   * the frozen model's (1 − cos(f(x), f₀(x))); one extra forward and backward pass per batch,
   * shared with the clean cross-entropy term when both are on.
   */
  cleanFeatureWeight?: number;
  /**
   * After training, re-estimate the BatchNorm running statistics on the clean images. The
   * published loss updates them on stamped images only (the anchor), which the model
   * never sees at test time; one extra forward pass over the clean data.
   */
  recalibrateBatchNorm?: boolean;
  /**
   * After training, re-fit the classification head on the clean images' features with the
   * backbone frozen (`refitHead`): the contrastive loss moves the features but never trains
   * the head that reads them.
   */
  refitHead?: boolean;
  /**
   * The head re-fit (`refitHead` or the guard's) also sees the frozen trigger stamped on the
   * clean images, under their true labels: a head fitted on clean features alone can read what
   * is left of the trigger's direction in the purified features and send stamped images back
   * to the target.
   */
  refitStamped?: boolean;
  /**
   * Leave out each epoch's last partial batch, as the published DataLoader does (drop_last;
   * default true). With 2,500 images and batch 64 that batch holds 4 images: its batch-norm
   * statistics would enter the running averages with weight 0.1 at the end of every epoch.
   */
  dropLast?: boolean;
  /**
   * Clean-accuracy guard, in points (off by default: the published loss alone). The published
   * loss never reads the labels, so the clean images' accuracy tracks BA. If, after the last
   * epoch, it has fallen by more than this from the frozen model's, the head is re-fitted
   * (`refitHead`).
   */
  accuracyGuard?: number;
  /** Stop when the epoch loss has not fallen by 1 % for this many epochs (off by default). */
  earlyStopPatience?: number;
  seed?: number;
  /**
   * 'bfloat16' runs every forward and backward pass of the model under bfloat16 autocast
   * (`atPrecision`), about 2× faster on CPUs with AMX; weights, optimizer state and the loss
   * stay float32. Default 'float32', as the published code.
   */
  precision?: Precision;
  /** Called after each epoch, e.g. to measure BA/ASR on held-out data. */
  onEpoch?: (record: PurifyEpoch) => void;
  /** Extra per-epoch monitoring whose results are merged into the record. */
  monitor?: (model: Classifier, epoch: number) => { ba?: number; asr?: number };
}

export interface PurifyEpoch {
  epoch: number;
  lr: number;
  loss: number;
  ba?: number;
  asr?: number;
  seconds: number;
}

/** What the accuracy guard measured and did. */
export interface AccuracyGuardRecord {
  tolerance: number;
  /** The frozen model's accuracy on the clean images, %. */
  before: number;
  /** After the last epoch, before any re-fit, %. */
  after: number;
  refitHead: boolean;
}

export interface PurifyResult {
  epochs: PurifyEpoch[];
  /** Everything, including the frozen model's features and the monitor. */
  seconds: number;
  /** The frozen model's features of the clean and stamped images, computed once. */
  featureSeconds: number;
  /** Time spent in `monitor` (not the defense itself). */
  monitorSeconds: number;
  stoppedEarly: boolean;
  /** Set when `accuracyGuard` was on. */
  guard?: AccuracyGuardRecord;
}

/** −log(e^{cos(a,p)/τ} / (e^{cos(a,p)/τ} + e^{cos(a,n)/τ})), averaged over the batch. */
export function contrastiveLoss(anchor: Tensor, positive: Tensor, negative: Tensor, temperature = 0.5): Tensor {
  return tidy(() => {
    const logits = F.stack([F.cosineSimilarity(anchor, positive, 1), F.cosineSimilarity(anchor, negative, 1)], 1).div(
      temperature,
    );
    return F.crossEntropy(logits, zeros([anchor.size(0)], { dtype: 'int64' }));
  });
}

/** The model's features of normalized images, at `precision`. */
function featuresAt(model: Classifier, precision: Precision, input: Tensor): Tensor {
  return atPrecision(precision, input, (images) => model.features(images));
}

/**
 * The clean images in order, normalized, `batchSize` at a time (the consumer disposes each);
 * with `trigger`, stamped (the trigger gets each image's position in the clean set).
 */
function* cleanBatches(clean: ImageSplit, batchSize: number, trigger?: Trigger): Generator<Tensor> {
  for (let start = 0; start < clean.count; start += batchSize) {
    const count = Math.min(batchSize, clean.count - start);
    yield tidy(() => {
      const images = toUnitRange(clean.images.narrow(0, start, count));
      const stamped =
        trigger === undefined ? images : trigger.apply(images, arange(start, start + count, 1, { dtype: 'int64' }));
      return normalize(stamped, clean.normalization);
    });
  }
}

/**
 * The model's features of every clean image (stamped with `trigger` when given), in eval
 * mode, without gradient (the caller disposes).
 */
export function cleanFeatures(
  model: Classifier,
  clean: ImageSplit,
  precision: Precision,
  trigger?: Trigger,
  batchSize = 128,
): Tensor {
  const wasTraining = model.training;
  model.eval();
  const parts: Tensor[] = [];
  try {
    return noGrad(() => {
      for (const batch of cleanBatches(clean, batchSize, trigger)) {
        try {
          parts.push(tidy(() => featuresAt(model, precision, batch)));
        } finally {
          batch.dispose();
        }
      }
      return keep(F.cat(parts, 0));
    });
  } finally {
    for (const part of parts) part.dispose();
    model.train(wasTraining);
  }
}

/** Accuracy (%) of the model's head on `features` against `labels`. */
function headAccuracy(model: Classifier, features: Tensor, labels: Tensor): number {
  return noGrad(() => tidy(() => (100 * model.classify(features).argmax(1).eq(labels).sum().item()) / labels.size(0)));
}

/** Full-batch Adam on cross-entropy of classify(features); only the head's parameters move. */
/** The head: the parameters that receive a gradient from classify(features). */
export function headParameters(model: Classifier, features: Tensor): Tensor[] {
  model.zeroGrad();
  tidy(() => model.classify(features).sum().backward());
  const head = model.parameters().filter((parameter) => {
    const grad = parameter.grad;
    grad?.dispose();
    return grad !== null;
  });
  model.zeroGrad();
  return head;
}

function fitHead(model: Classifier, features: Tensor, labels: Tensor, options: { steps?: number; lr?: number }): void {
  const wasTraining = model.training;
  model.eval();
  const head = headParameters(model, features);
  const optimizer = new Adam(head, { lr: options.lr ?? 0.01 });
  try {
    for (let step = 0; step < (options.steps ?? 200); step++) {
      tidy(() => {
        const loss = F.crossEntropy(model.classify(features), labels);
        optimizer.zeroGrad();
        loss.backward();
        optimizer.step();
      });
    }
  } finally {
    optimizer.dispose();
    model.zeroGrad();
    model.train(wasTraining);
  }
}

/**
 * Re-fits the head (the parameters `classify` uses) by full-batch Adam on cross-entropy over
 * the clean images' features, computed once in eval mode; the backbone does not change. With
 * `trigger`, the stamped clean images' features join them under the same (true) labels.
 */
export function refitHead(
  model: Classifier,
  clean: ImageSplit,
  options: { steps?: number; lr?: number; precision?: Precision; trigger?: Trigger } = {},
): void {
  const features = cleanFeatures(model, clean, options.precision ?? 'float32');
  try {
    refitOn(model, clean, features, options.precision ?? 'float32', options.trigger, options);
  } finally {
    features.dispose();
  }
}

/** fitHead on the given clean features, plus the stamped images' where `trigger` is given. */
function refitOn(
  model: Classifier,
  clean: ImageSplit,
  features: Tensor,
  precision: Precision,
  trigger: Trigger | undefined,
  options: { steps?: number; lr?: number },
): void {
  if (trigger === undefined) {
    fitHead(model, features, clean.labels, options);
    return;
  }
  const stamped = cleanFeatures(model, clean, precision, trigger);
  const both = tidy(() => ({
    features: keep(F.cat([features, stamped], 0)),
    labels: keep(F.cat([clean.labels, clean.labels], 0)),
  }));
  stamped.dispose();
  try {
    fitHead(model, both.features, both.labels, options);
  } finally {
    both.features.dispose();
    both.labels.dispose();
  }
}

/**
 * The frozen model's features of every clean image and of its stamped copy. The trigger gets
 * the images' positions in the clean set, so that a trigger that stamps images differently (a
 * stack: image n gets pattern n mod K) stamps an image's anchor and its frozen negative alike.
 */
function frozenFeatures(
  model: Classifier,
  clean: ImageSplit,
  trigger: Trigger,
  batchSize: number,
  precision: Precision,
): { positive: Tensor; negative: Tensor } {
  const positive = cleanFeatures(model, clean, precision, undefined, batchSize);
  try {
    return { positive, negative: cleanFeatures(model, clean, precision, trigger, batchSize) };
  } catch (error) {
    positive.dispose();
    throw error;
  }
}

/** Purifies `model` in place with the clean data and an (inverted) trigger. */
export function purify(
  model: Classifier,
  clean: ImageSplit,
  trigger: Trigger,
  options: PurifyOptions = {},
): PurifyResult {
  const started = performance.now();
  const epochs = options.epochs ?? 20;
  const batchSize = options.batchSize ?? 64;
  const temperature = options.temperature ?? 0.5;
  const cleanWeightFrom = options.cleanWeightFrom ?? 0;
  const stampedWeight = options.stampedWeight ?? 0;
  const cleanFeatureWeight = options.cleanFeatureWeight ?? 0;
  const schedule = options.lrSchedule ?? 'cifar';
  const lrOf = typeof schedule === 'function' ? schedule : (epoch: number) => publishedLr(schedule, epoch);
  const precision = options.precision ?? 'float32';
  const dropLast = options.dropLast ?? true;
  const stampedTrigger = options.refitStamped === true ? trigger : undefined;
  const { positive, negative } = frozenFeatures(model, clean, trigger, 256, precision);
  // The frozen features are freed and the model left in eval mode, whether training ends or throws.
  try {
    const guardTolerance = options.accuracyGuard;
    // The frozen model's clean accuracy comes free from the positive features.
    const accuracyBefore = guardTolerance === undefined ? 0 : headAccuracy(model, positive, clean.labels);
    let guard: AccuracyGuardRecord | undefined;
    const featureSeconds = (performance.now() - started) / 1000;
    let monitorSeconds = 0;
    const optimizer = new SGD(model.parameters(), {
      lr: lrOf(0),
      momentum: options.momentum ?? 0.9,
      weightDecay: options.weightDecay ?? 1e-4,
    });
    const lrSchedule = new FunctionLR(optimizer, lrOf);
    const records: PurifyEpoch[] = [];
    let bestLoss = Infinity;
    let flat = 0;
    let stoppedEarly = false;
    try {
      for (let epoch = 0; epoch < epochs; epoch++) {
        const epochStart = performance.now();
        model.train();
        const order = permutation(clean.count, ((options.seed ?? 0) * 31337 + epoch * 2654435761) >>> 0);
        const cleanWeight = epoch >= cleanWeightFrom ? (options.cleanWeight ?? 0) : 0;
        let lossSum = 0;
        let seen = 0;
        for (let start = 0; start < batchEnd(order.length, batchSize, dropLast); start += batchSize) {
          const indices = order.subarray(start, Math.min(start + batchSize, order.length));
          const loss = tidy(() => {
            const index = tensor(indices, { dtype: 'int64' });
            const images = toUnitRange(clean.images.indexSelect(0, index));
            const anchor = featuresAt(model, precision, normalize(trigger.apply(images, index), clean.normalization));
            let loss = contrastiveLoss(
              anchor,
              positive.indexSelect(0, index),
              negative.indexSelect(0, index),
              temperature,
            );
            const labels = cleanWeight > 0 || stampedWeight > 0 ? clean.labels.indexSelect(0, index) : null;
            // Both clean terms share one forward pass of the clean images.
            const cleanFeatures =
              cleanWeight > 0 || cleanFeatureWeight > 0
                ? featuresAt(model, precision, normalize(images, clean.normalization))
                : null;
            if (cleanWeight > 0) {
              loss = loss.add(F.crossEntropy(model.classify(cleanFeatures!), labels!).mul(cleanWeight));
            }
            if (cleanFeatureWeight > 0) {
              const similarity = F.cosineSimilarity(cleanFeatures!, positive.indexSelect(0, index), 1).mean();
              loss = loss.add(similarity.neg().add(1).mul(cleanFeatureWeight));
            }
            if (stampedWeight > 0) {
              loss = loss.add(F.crossEntropy(model.classify(anchor), labels!).mul(stampedWeight));
            }
            optimizer.zeroGrad();
            loss.backward();
            optimizer.step();
            return loss.item();
          });
          if (!Number.isFinite(loss)) throw new Error(`purification diverged: loss ${loss} at epoch ${epoch}`);
          lossSum += loss * indices.length;
          seen += indices.length;
        }
        const record: PurifyEpoch = {
          epoch,
          lr: optimizer.paramGroups[0]!.lr,
          loss: lossSum / seen,
          seconds: (performance.now() - epochStart) / 1000,
        };
        lrSchedule.step();
        if (options.monitor !== undefined) {
          const monitorStart = performance.now();
          Object.assign(record, options.monitor(model, epoch));
          monitorSeconds += (performance.now() - monitorStart) / 1000;
        }
        records.push(record);
        options.onEpoch?.(record);
        if (options.earlyStopPatience !== undefined) {
          if (record.loss < bestLoss * 0.99) {
            bestLoss = record.loss;
            flat = 0;
          } else if (++flat >= options.earlyStopPatience) {
            stoppedEarly = true;
            break;
          }
        }
      }
      if (options.recalibrateBatchNorm === true) {
        recalibrateBatchNorm(model, cleanBatches(clean, 256));
      }
      if (guardTolerance !== undefined) {
        // One feature pass serves both the measurement and, where the guard acts, the re-fit.
        const features = cleanFeatures(model, clean, precision);
        try {
          const after = headAccuracy(model, features, clean.labels);
          const acts = accuracyBefore - after > guardTolerance;
          guard = { tolerance: guardTolerance, before: accuracyBefore, after, refitHead: acts };
          if (acts || options.refitHead === true) refitOn(model, clean, features, precision, stampedTrigger, {});
        } finally {
          features.dispose();
        }
      } else if (options.refitHead === true) {
        refitHead(model, clean, { precision, ...(stampedTrigger === undefined ? {} : { trigger: stampedTrigger }) });
      }
    } finally {
      optimizer.dispose();
    }
    return {
      epochs: records,
      seconds: (performance.now() - started) / 1000,
      featureSeconds,
      monitorSeconds,
      stoppedEarly,
      ...(guard === undefined ? {} : { guard }),
    };
  } finally {
    positive.dispose();
    negative.dispose();
    model.eval();
  }
}
