// FP (Fine-Pruning, Liu et al., RAID 2018): a backdoor hides in channels that clean images
// leave dormant. Rank the channels that feed the classifier head by their mean activation on
// the clean data, prune the most dormant ones for as long as held-out clean accuracy stays
// within `accRatio` of the original's, then fine-tune with the pruned channels held at zero.
// As BackdoorBench's defense/fp.py prunes the input of the final linear layer; it picks the
// amount by accuracy on the test split, here on a held-out part of the defender's clean data.
import { tensor, zeros } from '../engine/creation.js';
import { noGrad } from '../engine/autograd.js';
import { keep, tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import type { ImageSplit } from '../data/dataset.js';
import type { Classifier } from '../nn/models/classifier.js';
import {
  type Defense,
  type DefenseContext,
  type DefenseEntry,
  type DefenseOutcome,
  untargetedOutcome,
} from './defense.js';
import {
  BACKDOORBENCH_FINE_TUNING,
  type FineTuneSettings,
  fineTune,
  fineTuneOptions,
  fineTuneSettings,
} from './finetune.js';
import { cleanFeatures, headParameters } from './mcldef/purify.js';
import type { OptionSpecs } from './options.js';

export interface FinePruningSettings extends FineTuneSettings {
  /** Prune while held-out accuracy ≥ (1 − accRatio) × the unpruned model's (BackdoorBench: 0.1). */
  accRatio: number;
  /** Channels pruned per step, as a fraction of all, rounded up (BackdoorBench: 0.01). */
  step: number;
}

export const FP_DEFAULTS: FinePruningSettings = { ...BACKDOORBENCH_FINE_TUNING, accRatio: 0.1, step: 0.01 };

const FP_OPTIONS: OptionSpecs = {
  accRatio: {
    type: 'number',
    min: 0,
    max: 1,
    default: FP_DEFAULTS.accRatio,
    help: 'prune while held-out clean accuracy stays within this fraction of the unpruned accuracy',
  },
  step: {
    type: 'number',
    min: 0,
    max: 1,
    default: FP_DEFAULTS.step,
    help: 'fraction of the channels pruned per step (at least one)',
  },
  ...fineTuneOptions(FP_DEFAULTS, 'fine-tuning'),
};

/** The head's weight matrix (classes × feature channels): the 2-D parameter `classify` reads. */
export function headWeight(model: Classifier, channels: number): Tensor {
  const refused = (): Error =>
    new Error(`fine-pruning needs a linear head on the ${channels} feature channels; this model's head has none`);
  const probe = zeros([1, channels], { device: model.parameters()[0]!.device });
  let head: Tensor[];
  try {
    head = headParameters(model, probe);
  } catch {
    model.zeroGrad();
    throw refused();
  } finally {
    probe.dispose();
  }
  const weight = head.find((p) => p.shape.length === 2 && p.shape[1] === channels);
  if (weight === undefined) throw refused();
  return weight;
}

/** Channels by mean activation over the features' rows, most dormant first (ties: lower index first). */
export function pruningOrder(features: Tensor): number[] {
  const means = tidy(() => Array.from(features.mean(0).toFloat64Array()));
  return means
    .map((mean, channel) => ({ mean, channel }))
    .sort((a, b) => a.mean - b.mean || a.channel - b.channel)
    .map((c) => c.channel);
}

/** The accuracy (%) of the head on `features` with the first `count` channels of `order` zeroed. */
function prunedAccuracy(
  model: Classifier,
  features: Tensor,
  labels: Tensor,
  order: readonly number[],
  count: number,
): number {
  return noGrad(() =>
    tidy(() => {
      const keepMask = new Float32Array(features.shape[1]!).fill(1);
      for (const channel of order.slice(0, count)) keepMask[channel] = 0;
      const masked = features.mul(tensor(keepMask, { shape: [1, keepMask.length], device: features.device }));
      return (100 * model.classify(masked).argmax(1).eq(labels).sum().item()) / labels.size(0);
    }),
  );
}

/** One step of the pruning curve. */
export interface PruningStep {
  pruned: number;
  held_out_accuracy: number;
}

/**
 * How many channels to prune: the largest count on the curve (steps of `step`) whose held-out
 * accuracy stays ≥ (1 − accRatio) × the unpruned one, stopping at the first that does not.
 */
export function choosePruning(
  curve: (count: number) => number,
  channels: number,
  settings: Pick<FinePruningSettings, 'accRatio' | 'step'>,
): { pruned: number; steps: PruningStep[] } {
  const stepSize = Math.max(1, Math.ceil(settings.step * channels));
  const base = curve(0);
  const steps: PruningStep[] = [{ pruned: 0, held_out_accuracy: base }];
  let pruned = 0;
  for (let count = stepSize; count < channels; count += stepSize) {
    const accuracy = curve(count);
    steps.push({ pruned: count, held_out_accuracy: accuracy });
    if (accuracy < (1 - settings.accRatio) * base) break;
    pruned = count;
  }
  return { pruned, steps };
}

export class FinePruning implements Defense {
  readonly name = 'fp';

  constructor(readonly settings: FinePruningSettings = FP_DEFAULTS) {}

  run(model: Classifier, clean: ImageSplit, context: DefenseContext): DefenseOutcome {
    const heldOut = context.heldOut;
    if (heldOut === undefined)
      throw new Error('fine-pruning needs a held-out part of the clean data (heldOutFraction)');
    const started = performance.now();
    const activations = cleanFeatures(model, clean, 'float32');
    const channels = activations.shape[1]!;
    const order = pruningOrder(activations);
    activations.dispose();
    const weight = headWeight(model, channels);
    const heldFeatures = cleanFeatures(model, heldOut, 'float32');
    let choice;
    try {
      choice = choosePruning(
        (count) => prunedAccuracy(model, heldFeatures, heldOut.labels, order, count),
        channels,
        this.settings,
      );
    } finally {
      heldFeatures.dispose();
    }
    const prunedChannels = order.slice(0, choice.pruned).sort((a, b) => a - b);
    const last = choice.steps.at(-1)!;
    context.log(
      `pruning ${choice.pruned} of ${channels} channels feeding the head (held-out accuracy ${choice.steps[0]!.held_out_accuracy.toFixed(2)}% → ${(choice.steps.find((s) => s.pruned === choice.pruned) ?? last).held_out_accuracy.toFixed(2)}%)`,
    );
    const keepMask = tidy(() => {
      const values = new Float32Array(channels).fill(1);
      for (const channel of prunedChannels) values[channel] = 0;
      return keep(tensor(values, { shape: [1, channels], device: weight.device }));
    });
    const prune = (): void => noGrad(() => void weight.mul_(keepMask));
    let epochs;
    try {
      prune();
      const pruningSeconds = (performance.now() - started) / 1000;
      // The pruned channels stay at zero through fine-tuning: re-zeroed after every step.
      epochs = fineTune(model, clean, this.settings, context, 'fine-tuning', prune);
      const seconds = (performance.now() - started) / 1000;
      return untargetedOutcome(model, {
        epochs,
        seconds: { pruning: pruningSeconds, fine_tuning: seconds - pruningSeconds },
        details: {
          pruning: {
            channels,
            pruned: choice.pruned,
            pruned_channels: prunedChannels,
            curve: choice.steps,
            held_out_images: heldOut.count,
          },
          settings: { ...this.settings },
        },
      });
    } finally {
      keepMask.dispose();
    }
  }
}

export const fpEntry: DefenseEntry = {
  name: 'fp',
  summary: 'Fine-Pruning (FP): prune the channels clean data leaves dormant, then fine-tune',
  options: FP_OPTIONS,
  heldOutFraction: 0.1,
  create: (values) =>
    new FinePruning({
      ...fineTuneSettings(values, FP_DEFAULTS),
      accRatio: (values.accRatio as number | undefined) ?? FP_DEFAULTS.accRatio,
      step: (values.step as number | undefined) ?? FP_DEFAULTS.step,
    }),
};
