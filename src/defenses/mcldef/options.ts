// MCLDef's options: the specs the CLI and config files read, the shipped defaults, the two
// presets (`default`, `published`) and how each setting resolves. docs/mcldef.md gives the
// evidence for each default that differs from the paper.
import { type Precision, type PrecisionChoice, resolvePrecision } from '../../engine/autograd.js';
import { type OptionSpecs, type OptionValues, withDefaults } from '../options.js';
import {
  type AnomalyScale,
  DEFAULT_ANOMALY_SCALE,
  DEFAULT_MAX_SIZE_FRACTION,
  DEFAULT_MIN_SEPARATION_RATIO,
  DEFAULT_MIN_STABILITY,
  DEFAULT_STRONG_SIZE_FRACTION,
  DEFAULT_SCAN_RESTARTS,
  DEFAULT_SCAN_PASSES,
  type DetectOptions,
} from './detect.js';
import type { InversionMethod } from './trigger.js';
import { DEFAULT_SIGNAL_AMPLITUDE } from './signal.js';
import { DEFAULT_WARP_PASSES, DEFAULT_WARP_SHIFT } from './warp.js';

/**
 * A default that differs from the published configuration: the pattern inversion stops once
 * 10 passes in a row found no better pattern (docs/mcldef.md, "Inversion patience").
 */
export const DEFAULT_INVERSION_PATIENCE = 10;

/**
 * A default that differs from the published configuration: 12 epochs of the published
 * schedule instead of 20 (docs/mcldef.md, "Purification epochs").
 */
export const DEFAULT_PURIFICATION_EPOCHS = 12;

/**
 * A default that differs from the published configuration: re-fit the head when purification
 * cost more than 2 points of the clean images' accuracy (docs/mcldef.md, "Keeping BA").
 */
export const DEFAULT_ACCURACY_GUARD = 2;

/**
 * A default that differs from the published configuration: the clean-feature term with weight 1
 * (docs/mcldef.md, "Keeping BA").
 */
export const DEFAULT_CLEAN_FEATURE_WEIGHT = 1;

/** The published purification settings. */
export const PUBLISHED_PURIFICATION = { epochs: 20, batchSize: 64, temperature: 0.5 } as const;

export type McldefPreset = 'default' | 'published';

/** MCLDef's options; unset ones take the preset's value. */
export interface McldefOptions {
  preset: McldefPreset;
  /** Unset: 'pattern', or the kind of the universal scan that flagged the target. */
  inversion?: InversionMethod;
  passes?: number;
  scanPasses: number;
  anomalyScale: AnomalyScale;
  maxSizeFraction: number;
  scanRestarts: number;
  minStability: number;
  minSeparationRatio: number;
  strongSizeFraction: number;
  warpShift: number;
  warpPasses: number;
  signalAmplitude: number;
  inversionPrecision: Precision;
  inversionPatience?: number;
  epochs?: number;
  batchSize: number;
  temperature: number;
  cleanWeight: number;
  cleanWeightFrom: number;
  stampedWeight: number;
  cleanFeatureWeight?: number;
  precision?: PrecisionChoice;
  refitHead: boolean;
  refitStamped: boolean;
  stackScanPatterns: boolean;
  accuracyGuard?: number | 'off';
  recalibrateBn: boolean;
  dropLast: boolean;
}

export const MCLDEF_OPTIONS: OptionSpecs = {
  preset: {
    type: 'choice',
    choices: ['default', 'published'],
    default: 'default',
    help: `published: the authors' configuration exactly; default: the same, except that the inversion stops after ${DEFAULT_INVERSION_PATIENCE} passes without a better pattern, purification runs ${DEFAULT_PURIFICATION_EPOCHS} epochs with the clean-feature term, in bfloat16 where the CPU has it natively, against the inverted trigger and the detection scan's patterns for the target, and the head is re-fitted on the clean and stamped images if purification cost more than ${DEFAULT_ACCURACY_GUARD} points of the clean images' accuracy`,
  },
  inversion: {
    type: 'choice',
    choices: ['pattern', 'mask', 'warp', 'signal'],
    group: 'scan',
    help: 'pattern (published; the default), mask (Neural Cleanse, the older code), warp (a smooth universal warp; the default for a target the warp scan flagged) or signal (the sinusoidal stripes that reach the target; the default for a target the signal scan flagged); the detection scan inverts with mask when mask is asked, else pattern',
  },
  passes: {
    type: 'integer',
    min: 1,
    help: 'inversion passes over the clean data (pattern, mask: 100, as published; warp: 10)',
  },
  scanPasses: {
    type: 'integer',
    min: 1,
    default: DEFAULT_SCAN_PASSES,
    group: 'scan',
    help: 'detection: inversion passes per class over 500 clean images',
  },
  anomalyScale: {
    type: 'choice',
    choices: ['linear', 'log'],
    default: DEFAULT_ANOMALY_SCALE,
    group: 'scan',
    help: 'detection: MAD anomaly index on the logarithms of the trigger sizes (log) or on the sizes (linear, Neural Cleanse)',
  },
  scanRestarts: {
    type: 'integer',
    min: 0,
    default: DEFAULT_SCAN_RESTARTS,
    group: 'scan',
    help: `detection: extra inversions, from other random starts, of each class whose trigger is anomalously small; a backdoor's trigger is found again, an easy class's pattern wanders (0: the size index alone, under a half-median rule)`,
  },
  minStability: {
    type: 'number',
    min: -1,
    max: 1,
    default: DEFAULT_MIN_STABILITY,
    group: 'scan',
    help: "detection: a flagged class counts if the largest cosine between two of its inverted patterns reaches this, or (next option) if its trigger's images form a cluster of their own",
  },
  strongSizeFraction: {
    type: 'number',
    min: 0,
    max: 1,
    default: DEFAULT_STRONG_SIZE_FRACTION,
    group: 'scan',
    help: "detection: a flagged class whose trigger is at most this fraction of the classes' median trigger size needs neither confirmation (0: every flag needs one)",
  },
  minSeparationRatio: {
    type: 'number',
    min: 0,
    default: DEFAULT_MIN_SEPARATION_RATIO,
    group: 'scan',
    help: "detection: or if the images its trigger stamps sit at least this many times the median class's distance from the class's clean images in feature space (0: restarts alone)",
  },
  maxSizeFraction: {
    type: 'number',
    min: 0,
    max: 1,
    default: 1,
    group: 'scan',
    help: `detection: a flagged trigger must also be at most this fraction of the classes' median trigger size (1: no such rule; where nothing confirms a flag, at most ${DEFAULT_MAX_SIZE_FRACTION})`,
  },
  warpShift: {
    type: 'number',
    min: 0,
    default: DEFAULT_WARP_SHIFT,
    group: 'scan',
    help: 'detection: largest shift of the warp scan (4×4 control grid), in pixels; flags a warping backdoor such as WaNet (0: no warp scan); also the warp inversion bound',
  },
  warpPasses: {
    type: 'integer',
    min: 1,
    default: DEFAULT_WARP_PASSES,
    group: 'scan',
    help: 'detection: passes of the warp scan per class over 500 clean images',
  },
  signalAmplitude: {
    type: 'number',
    min: 0,
    max: 255,
    default: DEFAULT_SIGNAL_AMPLITUDE,
    group: 'scan',
    help: 'detection: amplitude, in 255ths, of the signal scan (sinusoidal stripes along rows or columns); flags a full-image periodic backdoor such as SIG (0: no signal scan); also the signal inversion amplitude',
  },
  inversionPrecision: {
    type: 'choice',
    choices: ['float32', 'bfloat16'],
    default: 'float32',
    group: 'scan',
    help: "the model's passes in the inversion and the detection scan: float32 (published) or bfloat16 autocast (about 2.2× faster with AMX / AVX-512 BF16, but it finds a different trigger)",
  },
  inversionPatience: {
    type: 'integer',
    min: 1,
    help: `stop inverting after N passes without a better pattern (default ${DEFAULT_INVERSION_PATIENCE}; published: never)`,
  },
  epochs: {
    type: 'integer',
    min: 1,
    help: `purification epochs (default ${DEFAULT_PURIFICATION_EPOCHS} of the published schedule; published: 20)`,
  },
  batchSize: {
    type: 'integer',
    min: 1,
    default: PUBLISHED_PURIFICATION.batchSize,
    group: 'scan',
    help: 'batch size of the scan, the inversion and purification',
  },
  temperature: {
    type: 'number',
    min: 1e-6,
    default: PUBLISHED_PURIFICATION.temperature,
    help: 'contrastive temperature τ',
  },
  cleanWeight: {
    type: 'number',
    min: 0,
    default: 0,
    help: 'weight of an optional clean cross-entropy term (0: the published loss)',
  },
  cleanWeightFrom: {
    type: 'integer',
    min: 0,
    default: 0,
    help: 'first purification epoch (0-based) of the clean cross-entropy term',
  },
  stampedWeight: {
    type: 'number',
    min: 0,
    default: 0,
    help: 'weight of an optional cross-entropy term on the stamped clean images with their true labels (0: the published loss)',
  },
  cleanFeatureWeight: {
    type: 'number',
    min: 0,
    help: `weight of a term keeping the clean images' features at the frozen model's (default ${DEFAULT_CLEAN_FEATURE_WEIGHT}; published: 0)`,
  },
  precision: {
    type: 'choice',
    choices: ['auto', 'float32', 'bfloat16'],
    help: "the model's passes in purification: auto (default: bfloat16 autocast where the CPU has AVX-512 BF16 or AMX, else float32), float32 (published) or bfloat16",
  },
  refitHead: {
    type: 'boolean',
    default: false,
    help: 'after purification, re-fit the classification head on the clean images (backbone frozen)',
  },
  stackScanPatterns: {
    type: 'boolean',
    default: true,
    help: "target not given: purify against the detection scan's patterns for the target (its scan's and restarts') beside the inverted trigger, a stack that covers more of a large or spread-out trigger at no extra cost (published: the inverted trigger alone)",
  },
  refitStamped: {
    type: 'boolean',
    default: true,
    help: 'the head re-fit (--refit-head or the accuracy guard) also sees the inverted trigger stamped on the clean images, under their true labels, so that it cannot learn to read what is left of the trigger',
  },
  accuracyGuard: {
    type: 'number',
    min: 0,
    offWord: true,
    help: `re-fit the head if purification costs more than this many points of the clean images' accuracy (default ${DEFAULT_ACCURACY_GUARD}; 'off' and published: never)`,
  },
  recalibrateBn: {
    type: 'boolean',
    default: false,
    help: 'after purification, re-estimate the batch-norm statistics on the clean images',
  },
  dropLast: {
    type: 'boolean',
    default: true,
    help: "leave out each inversion pass's and purification epoch's last partial batch, as the published code does (--no-drop-last keeps it)",
  },
};

/**
 * Typed options from checked values: the specs' defaults fill in what is unset; options without
 * a default stay unset (the preset decides). MCLDEF_OPTIONS and McldefOptions name the same
 * fields (test/defenses/registry.test.ts checks the defaults).
 */
export function mcldefOptions(values: OptionValues): McldefOptions {
  return withDefaults(MCLDEF_OPTIONS, values) as unknown as McldefOptions;
}

/** Purification precision for this CPU: the option, or the preset's ('auto'; published: float32). */
export function purificationPrecision(options: Pick<McldefOptions, 'preset' | 'precision'>): Precision {
  return resolvePrecision(options.precision ?? (options.preset === 'published' ? 'float32' : 'auto'));
}

/** The accuracy guard's tolerance, or undefined where it is off. */
export function accuracyGuard(options: Pick<McldefOptions, 'preset' | 'accuracyGuard'>): number | undefined {
  const value = options.accuracyGuard ?? (options.preset === 'published' ? 'off' : DEFAULT_ACCURACY_GUARD);
  return value === 'off' ? undefined : value;
}

/** The clean-feature term's weight: the option, or the preset's (1; published: 0). */
export function cleanFeatureWeight(options: Pick<McldefOptions, 'preset' | 'cleanFeatureWeight'>): number {
  return options.cleanFeatureWeight ?? (options.preset === 'published' ? 0 : DEFAULT_CLEAN_FEATURE_WEIGHT);
}

/** Whether purification stacks the detection scan's patterns with the inverted trigger. */
export function stackScanPatterns(options: Pick<McldefOptions, 'preset' | 'stackScanPatterns'>): boolean {
  return options.preset !== 'published' && options.stackScanPatterns;
}

/** Whether the head re-fit also sees the stamped clean images (published: no re-fit at all). */
export function refitStamped(options: Pick<McldefOptions, 'preset' | 'refitStamped'>): boolean {
  return options.preset !== 'published' && options.refitStamped;
}

export function purificationEpochs(options: Pick<McldefOptions, 'preset' | 'epochs'>): number {
  return (
    options.epochs ?? (options.preset === 'published' ? PUBLISHED_PURIFICATION.epochs : DEFAULT_PURIFICATION_EPOCHS)
  );
}

export function inversionPatience(options: Pick<McldefOptions, 'preset' | 'inversionPatience'>): number | undefined {
  return options.inversionPatience ?? (options.preset === 'published' ? undefined : DEFAULT_INVERSION_PATIENCE);
}

/** The detection scan's settings (shared by `mcldef detect` and the defense). */
export function scanOptions(options: McldefOptions, seed: number): DetectOptions {
  return {
    // The size scan inverts a small trigger: the published pattern, or the mask method.
    method: options.inversion === 'mask' ? 'mask' : 'pattern',
    scanPasses: options.scanPasses,
    scale: options.anomalyScale,
    maxSizeFraction: options.maxSizeFraction,
    restarts: options.scanRestarts,
    minStability: options.minStability,
    minSeparationRatio: options.minSeparationRatio,
    strongSizeFraction: options.strongSizeFraction,
    warpShift: options.warpShift,
    warpPasses: options.warpPasses,
    signalAmplitude: options.signalAmplitude,
    precision: options.inversionPrecision,
    seed,
    batchSize: options.batchSize,
  };
}

/** The settings in force that differ from the published configuration (for the report). */
export function changesFromPublished(options: McldefOptions): Record<string, number | boolean | string> {
  const changes: Record<string, number | boolean | string> = {};
  const epochs = purificationEpochs(options);
  if (epochs !== PUBLISHED_PURIFICATION.epochs) changes.epochs = epochs;
  if (options.batchSize !== PUBLISHED_PURIFICATION.batchSize) changes.batch_size = options.batchSize;
  if (options.temperature !== PUBLISHED_PURIFICATION.temperature) changes.temperature = options.temperature;
  if (options.cleanWeight > 0) changes.clean_weight = options.cleanWeight;
  if (options.cleanWeight > 0 && options.cleanWeightFrom > 0) changes.clean_weight_from = options.cleanWeightFrom;
  if (options.stampedWeight > 0) changes.stamped_weight = options.stampedWeight;
  const guard = accuracyGuard(options);
  const featureWeight = cleanFeatureWeight(options);
  if (featureWeight > 0) changes.clean_feature_weight = featureWeight;
  if (options.refitHead) changes.refit_head = true;
  if (refitStamped(options) && (guard !== undefined || options.refitHead)) changes.refit_stamped = true;
  if (options.recalibrateBn) changes.recalibrate_bn = true;
  if (stackScanPatterns(options)) changes.stack_scan_patterns = true;
  if (guard !== undefined) changes.accuracy_guard = guard;
  if (!options.dropLast) changes.drop_last = false;
  const precision = purificationPrecision(options);
  if (precision !== 'float32') changes.precision = precision;
  if (options.inversionPrecision !== 'float32') changes.inversion_precision = options.inversionPrecision;
  return changes;
}
