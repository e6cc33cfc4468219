// Setting up a run from names and paths: the data splits, a model with its weights, the
// attack whose ASR is measured. The CLI and the library's file-level functions share these,
// so both build exactly the same objects in the same order.
import { manualSeed } from '../engine/autograd.js';
import { tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import { type Attack, type AttackMode, createAttack } from '../attacks/index.js';
import type { ImageSplit } from '../data/dataset.js';
import { loadDataset } from '../data/load.js';
import { createModel, loadClassifier, modelNames } from '../nn/models/index.js';
import type { Classifier } from '../nn/models/classifier.js';

export function loadSplit(spec: string, split: 'train' | 'test', cacheDir?: string): ImageSplit {
  return loadDataset(spec, split, cacheDir === undefined ? {} : { cacheDir });
}

/**
 * A model shaped for the split's images and classes, with `weights` loaded if given; `arch`
 * unset: the checkpoint's recorded architecture, else the zoo model its keys fit (wrn-16-1
 * without weights). A file that fits no model, or not the given one, is a one-line error naming
 * the keys and the model it fits. Telling the architecture builds zoo models, which draws from
 * libtorch's generator, so with `seed` the generator is seeded again just before the model is
 * built: the run is the same with --arch or without.
 */
export function buildModel(
  arch: string | undefined,
  split: ImageSplit,
  weights?: string,
  seed?: number,
): { model: Classifier; arch: string } {
  if (arch !== undefined && !modelNames().includes(arch)) {
    throw new Error(`unknown architecture '${arch}'; known: ${modelNames().join(', ')}`);
  }
  const options = { numClasses: split.numClasses, inChannels: split.channels };
  const reseed = (): void => {
    if (seed !== undefined) manualSeed(seed);
  };
  if (weights === undefined) {
    reseed();
    const chosen = arch ?? 'wrn-16-1';
    return { model: createModel(chosen, options), arch: chosen };
  }
  const loaded = loadClassifier({ weights, ...(arch === undefined ? {} : { arch }), ...options, beforeCreate: reseed });
  return { model: loaded.model, arch: loaded.arch };
}

/** The names of AttackSettings' fields. */
export const ATTACK_SETTINGS = [
  'mode',
  'poisonRate',
  'alpha',
  'pattern',
  'trigger',
  'mask',
  'trojanWatermark',
  'trojanModel',
] as const;

/** The attack settings that `source` defines. */
export function attackSettings(source: AttackSettings): AttackSettings {
  const settings: Record<string, unknown> = {};
  for (const name of ATTACK_SETTINGS) if (source[name] !== undefined) settings[name] = source[name];
  return settings as AttackSettings;
}

/** An attack's settings besides its name, target and seed (the CLI's attack flags). */
export interface AttackSettings {
  mode?: AttackMode;
  poisonRate?: number;
  /** blended: blend weight; sig: signal scale. */
  alpha?: number;
  /** blended: trigger image file. */
  pattern?: string;
  /** patch: trigger image and mask files. */
  trigger?: string;
  mask?: string;
  /** trojan: the watermark image, or clean weights to generate it against. */
  trojanWatermark?: string;
  trojanModel?: string;
}

/** An attack by name with its settings. */
export interface AttackSpec extends AttackSettings {
  attack: string;
  target: number;
  /** Seed of the trigger and of the poisoned-sample choice. */
  attackSeed: number;
}

/**
 * The images a trojan watermark is generated on: the first 256 test images. train, eval
 * and defend all use these, so `--trojan-model` regenerates the very watermark the model
 * was trained with (the generation has no randomness).
 */
function trojanImages(test: ImageSplit): Tensor {
  return tidy(() => test.images.narrow(0, 0, Math.min(256, test.count)).to('float32').div(255));
}

/**
 * The attack a spec names, checked against the data. `test` is the test split, used to
 * generate a trojan watermark against `trojanModel` (of architecture `arch`).
 */
export function buildAttack(spec: AttackSpec, split: ImageSplit, arch: string, test: ImageSplit = split): Attack {
  const geometry = { channels: split.channels, height: split.height, width: split.width };
  let trojanSource;
  if (spec.attack === 'trojan' && spec.trojanWatermark === undefined) {
    if (spec.trojanModel === undefined) {
      throw new Error('trojan needs --trojan-watermark FILE, or --trojan-model FILE (clean weights) to generate one');
    }
    trojanSource = {
      model: buildModel(arch, split, spec.trojanModel).model,
      images: trojanImages(test),
      normalization: split.normalization,
    };
  }
  try {
    return createAttack({
      name: spec.attack,
      target: spec.target,
      mode: spec.mode ?? 'all-to-one',
      poisonRate: spec.poisonRate ?? 0.1,
      seed: spec.attackSeed,
      numClasses: split.numClasses,
      geometry,
      options: {
        ...(spec.alpha === undefined ? {} : { alpha: spec.alpha }),
        ...(spec.pattern === undefined ? {} : { patternFile: spec.pattern }),
        ...(spec.trigger === undefined ? {} : { triggerFile: spec.trigger }),
        ...(spec.mask === undefined ? {} : { maskFile: spec.mask }),
        ...(spec.trojanWatermark === undefined ? {} : { watermarkFile: spec.trojanWatermark }),
        ...(trojanSource === undefined ? {} : { trojanSource }),
      },
    });
  } finally {
    trojanSource?.model.dispose();
    trojanSource?.images.dispose();
  }
}
