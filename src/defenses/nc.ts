// NC (Neural Cleanse, Wang et al., S&P 2019): invert a mask-and-pattern trigger towards every
// class, flag the classes whose mask is anomalously small (MAD index above 2, below the
// median), and unlearn: stamp the flagged trigger on a fifth of the clean images under their
// true labels and fine-tune. Nothing flagged: the model is returned unchanged.
// BackdoorBench defense/nc.py and config/defense/nc/cifar10.yaml.
import { tensor } from '../engine/creation.js';
import { noGrad } from '../engine/autograd.js';
import { tidy } from '../engine/scope.js';
import { ImageSplit } from '../data/dataset.js';
import { toUnitRange } from '../data/normalization.js';
import { permutation } from '../data/rng.js';
import type { Classifier } from '../nn/models/classifier.js';
import type { Defense, DefenseContext, DefenseEntry, DefenseOutcome } from './defense.js';
import { summarizeScan } from './evidence.js';
import {
  BACKDOORBENCH_FINE_TUNING,
  type FineTuneSettings,
  fineTune,
  fineTuneOptions,
  fineTuneSettings,
} from './finetune.js';
import { flagTarget } from './mcldef/detect.js';
import { type CostScheduleOptions, invertMask } from './mcldef/mask.js';
import type { InvertedTrigger } from './mcldef/trigger.js';
import type { OptionSpecs, OptionValues } from './options.js';

export interface NeuralCleanseSettings extends FineTuneSettings {
  /** Passes of each class's inversion (nc_epoch: 80). */
  inversionPasses: number;
  /** Adam learning rate of the mask and pattern (mask_lr: 0.1). */
  maskLr: number;
  /** Images per inversion step. */
  inversionBatchSize: number;
  /** Attack accuracy a mask must reach (atk_succ_threshold: 98 %). */
  attackThreshold: number;
  schedule: CostScheduleOptions;
  /** Flag a class whose mask's anomaly index exceeds this (2). */
  threshold: number;
  /** Fraction of the clean images stamped for unlearning (unlearning_ratio: 0.2). */
  unlearningRatio: number;
}

export const NC_DEFAULTS: NeuralCleanseSettings = {
  ...BACKDOORBENCH_FINE_TUNING,
  inversionPasses: 80,
  maskLr: 0.1,
  inversionBatchSize: 256,
  attackThreshold: 0.98,
  schedule: { init: 1e-3, multiplier: 2, patience: 5, earlyStopThreshold: 0.99, earlyStopPatience: 25 },
  threshold: 2,
  unlearningRatio: 0.2,
};

const NC_OPTIONS: OptionSpecs = {
  inversionPasses: { type: 'integer', min: 1, default: 80, help: "passes of each class's mask inversion" },
  maskLr: { type: 'number', min: 0, default: 0.1, help: 'Adam learning rate of the mask and pattern' },
  inversionBatchSize: { type: 'integer', min: 1, default: 256, help: 'images per inversion step' },
  attackThreshold: {
    type: 'number',
    min: 0,
    max: 1,
    default: 0.98,
    help: 'attack accuracy a mask must reach to count',
  },
  initCost: { type: 'number', min: 0, default: 1e-3, help: 'the first weight of |m|₁ (it adapts)' },
  threshold: { type: 'number', min: 0, default: 2, help: 'flag a class whose anomaly index exceeds this' },
  unlearningRatio: {
    type: 'number',
    min: 0,
    max: 1,
    default: 0.2,
    help: 'fraction of the clean images stamped with the flagged trigger (true labels) for unlearning',
  },
  ...fineTuneOptions(BACKDOORBENCH_FINE_TUNING, 'unlearning'),
};

function ncSettings(values: OptionValues): NeuralCleanseSettings {
  const read = (name: string, fallback: number): number => (values[name] as number | undefined) ?? fallback;
  return {
    ...fineTuneSettings(values, BACKDOORBENCH_FINE_TUNING),
    inversionPasses: read('inversionPasses', NC_DEFAULTS.inversionPasses),
    maskLr: read('maskLr', NC_DEFAULTS.maskLr),
    inversionBatchSize: read('inversionBatchSize', NC_DEFAULTS.inversionBatchSize),
    attackThreshold: read('attackThreshold', NC_DEFAULTS.attackThreshold),
    schedule: { ...NC_DEFAULTS.schedule, init: read('initCost', NC_DEFAULTS.schedule.init) },
    threshold: read('threshold', NC_DEFAULTS.threshold),
    unlearningRatio: read('unlearningRatio', NC_DEFAULTS.unlearningRatio),
  };
}

/**
 * The unlearning set: the clean images with a seeded `ratio` of them stamped by the triggers
 * (image n of the chosen ones by trigger n mod K), all under their true labels. Also returns
 * the stamped positions.
 */
export function unlearningSet(
  clean: ImageSplit,
  triggers: readonly InvertedTrigger[],
  ratio: number,
  seed: number,
): { split: ImageSplit; stamped: number[] } {
  const count = Math.round(ratio * clean.count);
  const stamped = Array.from(permutation(clean.count, seed).subarray(0, count)).sort((a, b) => a - b);
  const pixels = new Uint8Array(clean.images.toTypedArray() as Uint8Array);
  const size = clean.channels * clean.height * clean.width;
  noGrad(() =>
    triggers.forEach((trigger, k) => {
      const mine = stamped.filter((_, i) => i % triggers.length === k);
      if (mine.length === 0) return;
      const bytes = tidy(() => {
        const images = toUnitRange(clean.images.indexSelect(0, tensor(Int32Array.from(mine), { dtype: 'int64' })));
        return trigger.apply(images).clamp(0, 1).mul(255).round().to('uint8').toTypedArray() as Uint8Array;
      });
      mine.forEach((index, j) => pixels.set(bytes.subarray(j * size, (j + 1) * size), index * size));
    }),
  );
  return {
    split: new ImageSplit({
      pixels,
      labels: Int32Array.from(clean.labelArray),
      channels: clean.channels,
      height: clean.height,
      width: clean.width,
      classNames: clean.classNames,
      normalization: clean.normalization,
      source: `${clean.source}, ${count} stamped for unlearning`,
    }),
    stamped,
  };
}

export class NeuralCleanse implements Defense {
  readonly name = 'nc';

  constructor(readonly settings: NeuralCleanseSettings = NC_DEFAULTS) {}

  run(model: Classifier, clean: ImageSplit, context: DefenseContext): DefenseOutcome {
    const s = this.settings;
    const started = performance.now();
    const triggers: InvertedTrigger[] = [];
    let handedOver: InvertedTrigger | undefined;
    try {
      for (let label = 0; label < clean.numClasses; label++) {
        const classStarted = performance.now();
        const trigger = invertMask(model, clean, label, {
          passes: s.inversionPasses,
          batchSize: Math.min(s.inversionBatchSize, clean.count),
          lr: s.maskLr,
          attackThreshold: s.attackThreshold,
          costSchedule: s.schedule,
          seed: context.seed,
        });
        triggers.push(trigger);
        context.progress({
          stage: 'inversion',
          done: label + 1,
          total: clean.numClasses,
          message: `class ${label}: mask L1 ${trigger.size.toFixed(1)}, attack accuracy ${(100 * trigger.attackAccuracy).toFixed(1)}% (${trigger.passes} passes, ${((performance.now() - classStarted) / 1000).toFixed(1)} s)`,
        });
      }
      const norms = triggers.map((t) => t.size);
      const { indices, median } = flagTarget(norms, s.threshold, 'linear');
      const flagged = norms
        .map((norm, label) => ({ norm, label, index: indices[label]! }))
        .filter((c) => c.norm < median && c.index > s.threshold)
        .sort((a, b) => b.index - a.index)
        .map((c) => c.label);
      const inversionSeconds = (performance.now() - started) / 1000;
      const scan = summarizeScan({
        classes: triggers.map((t, label) => ({
          label,
          size: t.size,
          anomalyIndex: indices[label]!,
          warp: null,
          signal: null,
          warpIndex: null,
          signalIndex: null,
        })),
        target: flagged[0] ?? null,
        flaggedBy: flagged.length === 0 ? null : 'size',
        decidedBy:
          flagged.length === 0
            ? `No mask's anomaly index exceeds ${s.threshold} below the median.`
            : `Flagged by the mask's L1 norm: ${flagged.map((c) => `class ${c} (index ${indices[c]!.toFixed(2)})`).join(', ')}.`,
        seconds: inversionSeconds,
      });
      const details = {
        neural_cleanse: {
          mask_norms: norms,
          anomaly_indices: indices,
          median,
          flagged,
          passes: triggers.map((t) => t.passes),
        },
      };
      if (flagged.length === 0) {
        context.log('Neural Cleanse: no class flagged; the model is left unchanged');
        return {
          model,
          scan,
          report: {
            target: null,
            detected_target: null,
            changed: false,
            reason: 'no backdoor found',
            epochs: [],
            seconds: { inversion: inversionSeconds, detection: inversionSeconds, total: inversionSeconds },
            details,
          },
        };
      }
      context.log(
        `Neural Cleanse: flagged ${flagged.join(', ')}; unlearning with ${s.unlearningRatio} of the clean images stamped`,
      );
      const unlearning = unlearningSet(
        clean,
        flagged.map((label) => triggers[label]!),
        s.unlearningRatio,
        context.seed,
      );
      let epochs;
      try {
        epochs = fineTune(model, unlearning.split, s, context, 'unlearning');
      } finally {
        unlearning.split.dispose();
      }
      handedOver = triggers[flagged[0]!]!;
      const seconds = (performance.now() - started) / 1000;
      return {
        model,
        trigger: handedOver,
        scan,
        report: {
          target: flagged[0]!,
          detected_target: flagged[0]!,
          changed: true,
          epochs,
          seconds: {
            inversion: inversionSeconds,
            detection: inversionSeconds,
            unlearning: seconds - inversionSeconds,
            total: seconds,
          },
          details: { ...details, unlearning: { stamped: unlearning.stamped.length } },
        },
      };
    } finally {
      for (const trigger of triggers) if (trigger !== handedOver) trigger.dispose();
    }
  }
}

export const ncEntry: DefenseEntry = {
  name: 'nc',
  summary: 'Neural Cleanse (NC): invert a trigger for every class, flag the anomalously small one, unlearn it',
  options: NC_OPTIONS,
  scansModel: 'always',
  create: (values) => new NeuralCleanse(ncSettings(values)),
};
