// Fine-tuning on the defender's clean data with cross-entropy: the FT baseline itself, and
// the last step of Fine-Pruning and Neural Cleanse's unlearning. BackdoorBench's CIFAR-10
// setting (defense/ft.py, config/defense/ft/cifar10.yaml): SGD 0.01, momentum 0.9, weight
// decay 5e-4, cosine over the epochs, batch 256, random crop (padding 4) and flip.
import type { AugmentOptions } from '../data/augment.js';
import type { ImageSplit } from '../data/dataset.js';
import type { Classifier } from '../nn/models/classifier.js';
import { trainModel } from '../train/trainer.js';
import { type DefenseContext, type DefenseEpoch, endEpoch } from './defense.js';
import type { OptionSpecs, OptionValues } from './options.js';

export interface FineTuneSettings {
  epochs: number;
  batchSize: number;
  lr: number;
  momentum: number;
  weightDecay: number;
}

/** The fine-tuning options, as every method that ends with fine-tuning declares them. */
export function fineTuneOptions(defaults: FineTuneSettings, group?: string): OptionSpecs {
  const spec = <T extends object>(value: T): T & { group?: string } =>
    group === undefined ? value : { ...value, group };
  return {
    epochs: spec({ type: 'integer', min: 1, default: defaults.epochs, help: 'fine-tuning epochs' }),
    batchSize: spec({ type: 'integer', min: 1, default: defaults.batchSize, help: 'fine-tuning batch size' }),
    lr: spec({ type: 'number', min: 0, default: defaults.lr, help: 'SGD learning rate (cosine to 0 over the epochs)' }),
    momentum: spec({ type: 'number', min: 0, max: 1, default: defaults.momentum, help: 'SGD momentum' }),
    weightDecay: spec({ type: 'number', min: 0, default: defaults.weightDecay, help: 'SGD weight decay' }),
  };
}

/** The fine-tuning settings from checked option values (unset: `defaults`). */
export function fineTuneSettings(values: OptionValues, defaults: FineTuneSettings): FineTuneSettings {
  const read = (name: keyof FineTuneSettings): number => (values[name] as number | undefined) ?? defaults[name];
  return {
    epochs: read('epochs'),
    batchSize: read('batchSize'),
    lr: read('lr'),
    momentum: read('momentum'),
    weightDecay: read('weightDecay'),
  };
}

/** BackdoorBench's fine-tuning for CIFAR-10. */
export const BACKDOORBENCH_FINE_TUNING: FineTuneSettings = {
  epochs: 100,
  batchSize: 256,
  lr: 0.01,
  momentum: 0.9,
  weightDecay: 5e-4,
};

/**
 * The defenses' training augmentation: random crop with padding H/8 (4 on 32×32) and, on
 * natural images only, a horizontal flip (a mirrored digit or traffic sign is another class).
 */
export function defenseAugmentation(clean: Pick<ImageSplit, 'height'>, dataKind: string): AugmentOptions {
  const natural = dataKind === 'cifar10' || dataKind === 'cifar100' || dataKind === 'imagefolder';
  return { cropPadding: Math.round(clean.height / 8), horizontalFlip: natural };
}

/**
 * Fine-tunes every layer on `clean` with cross-entropy; `afterStep` runs after each optimizer
 * step (Fine-Pruning keeps its pruned channels at zero there). Returns the epochs for the report.
 */
export function fineTune(
  model: Classifier,
  clean: ImageSplit,
  settings: FineTuneSettings,
  context: Pick<DefenseContext, 'seed' | 'dataKind' | 'progress' | 'monitor'>,
  stage = 'fine-tuning',
  afterStep?: () => void,
  schedule: 'cosine' | 'constant' = 'cosine',
): DefenseEpoch[] {
  const epochs: DefenseEpoch[] = [];
  trainModel({
    model,
    train: clean,
    config: {
      epochs: settings.epochs,
      batchSize: Math.min(settings.batchSize, clean.count),
      optimizer: 'sgd',
      lr: settings.lr,
      momentum: settings.momentum,
      weightDecay: settings.weightDecay,
      schedule,
      augment: defenseAugmentation(clean, context.dataKind),
      seed: context.seed,
    },
    ...(afterStep === undefined ? {} : { onBatch: afterStep }),
    onEpoch: (record) =>
      endEpoch(epochs, model, context, {
        stage,
        label: `${stage} epoch`,
        index: record.epoch,
        total: settings.epochs,
        lr: record.lr,
        loss: record.loss,
        mode: 'train',
      }),
  });
  model.eval();
  return epochs;
}
