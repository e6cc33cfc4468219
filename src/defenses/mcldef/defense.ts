// MCLDef as a registered defense: detection when the target is not told, the inversion kind
// the scan chose, model-contrastive purification with the accuracy guard and the
// clean-feature term. The shipped defaults and the two presets live here; docs/mcldef.md
// gives the evidence for each default that differs from the paper.
import { type Precision, type PrecisionChoice, resolvePrecision } from '../../engine/autograd.js';
import type { ImageSplit } from '../../data/dataset.js';
import type { Classifier } from '../../nn/models/classifier.js';
import { triggerPng } from '../../report/trigger-image.js';
import type { Defense, DefenseContext, DefenseEntry, DefenseOutcome } from '../defense.js';
import { type OptionSpecs, type OptionValues, withDefaults } from '../options.js';
import {
  type AnomalyScale,
  DEFAULT_ANOMALY_SCALE,
  DEFAULT_MAX_SIZE_FRACTION,
  DEFAULT_SCAN_PASSES,
  type DetectOptions,
  type DetectionResult,
  detectBackdoor,
} from './detect.js';
import { type InversionMethod, SignalTrigger, invertTrigger } from './index.js';
import { purify } from './purify.js';
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
 * cost more than 4 points of the clean images' accuracy (docs/mcldef.md, "Accuracy guard").
 */
export const DEFAULT_ACCURACY_GUARD = 4;

/**
 * A default that differs from the published configuration, for universal triggers (warp,
 * signal) only: the clean-feature term with weight 1 (docs/mcldef.md, "Clean-feature term").
 */
export const DEFAULT_UNIVERSAL_CLEAN_FEATURE_WEIGHT = 1;

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
  accuracyGuard?: number | 'off';
  recalibrateBn: boolean;
  dropLast: boolean;
}

export const MCLDEF_OPTIONS: OptionSpecs = {
  preset: {
    type: 'choice',
    choices: ['default', 'published'],
    default: 'default',
    help: `published: the authors' configuration exactly; default: the same, except that the inversion stops after ${DEFAULT_INVERSION_PATIENCE} passes without a better pattern, purification runs ${DEFAULT_PURIFICATION_EPOCHS} epochs with the clean-feature term for a warp or signal trigger, in bfloat16 where the CPU has it natively, and the head is re-fitted if purification cost more than ${DEFAULT_ACCURACY_GUARD} points of the clean images' accuracy`,
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
  maxSizeFraction: {
    type: 'number',
    min: 0,
    max: 1,
    default: DEFAULT_MAX_SIZE_FRACTION,
    group: 'scan',
    help: "detection: a flagged trigger must also be at most this fraction of the classes' median trigger size (1: the index alone)",
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
    help: `weight of a term keeping the clean images' features at the frozen model's (default ${DEFAULT_UNIVERSAL_CLEAN_FEATURE_WEIGHT} for a warp or signal trigger, else 0; published: 0)`,
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

/** The clean-feature term's weight for the inversion method in use. */
export function cleanFeatureWeight(
  options: Pick<McldefOptions, 'preset' | 'cleanFeatureWeight'>,
  method: InversionMethod,
): number {
  return (
    options.cleanFeatureWeight ??
    (options.preset !== 'published' && (method === 'warp' || method === 'signal')
      ? DEFAULT_UNIVERSAL_CLEAN_FEATURE_WEIGHT
      : 0)
  );
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
    warpShift: options.warpShift,
    warpPasses: options.warpPasses,
    signalAmplitude: options.signalAmplitude,
    precision: options.inversionPrecision,
    seed,
    batchSize: options.batchSize,
  };
}

/** The settings in force that differ from the published configuration (for the report). */
export function changesFromPublished(
  options: McldefOptions,
  method: InversionMethod,
): Record<string, number | boolean | string> {
  const changes: Record<string, number | boolean | string> = {};
  const epochs = purificationEpochs(options);
  if (epochs !== PUBLISHED_PURIFICATION.epochs) changes.epochs = epochs;
  if (options.batchSize !== PUBLISHED_PURIFICATION.batchSize) changes.batch_size = options.batchSize;
  if (options.temperature !== PUBLISHED_PURIFICATION.temperature) changes.temperature = options.temperature;
  if (options.cleanWeight > 0) changes.clean_weight = options.cleanWeight;
  if (options.cleanWeight > 0 && options.cleanWeightFrom > 0) changes.clean_weight_from = options.cleanWeightFrom;
  if (options.stampedWeight > 0) changes.stamped_weight = options.stampedWeight;
  const featureWeight = cleanFeatureWeight(options, method);
  if (featureWeight > 0) changes.clean_feature_weight = featureWeight;
  if (options.refitHead) changes.refit_head = true;
  if (options.recalibrateBn) changes.recalibrate_bn = true;
  const guard = accuracyGuard(options);
  if (guard !== undefined) changes.accuracy_guard = guard;
  if (!options.dropLast) changes.drop_last = false;
  const precision = purificationPrecision(options);
  if (precision !== 'float32') changes.precision = precision;
  if (options.inversionPrecision !== 'float32') changes.inversion_precision = options.inversionPrecision;
  return changes;
}

/** One line per class of a detection scan, and the decision. */
export function detectionLines(detection: DetectionResult): string[] {
  const lines = detection.classes.map((c) => {
    const warp =
      c.warp === null
        ? ''
        : `  warp loss ${c.warp.loss.toFixed(2)} (index ${c.warpIndex!.toFixed(2)}, ${(100 * c.warp.attackAccuracy).toFixed(0)}% reached)`;
    const signal =
      c.signal === null
        ? ''
        : `  signal loss ${c.signal.loss.toFixed(2)} (index ${c.signalIndex!.toFixed(2)}, ${(100 * c.signal.attackAccuracy).toFixed(0)}% reached, ${c.signal.signal.axis} f ${c.signal.signal.frequency})`;
    return `  class ${c.label}: trigger size ${c.size.toFixed(1)} (${c.sizeFraction.toFixed(2)} of the median)  anomaly index ${c.anomalyIndex.toFixed(2)}  attack accuracy ${(100 * c.attackAccuracy).toFixed(1)}%${warp}${signal}`;
  });
  if (detection.target === null) return [...lines, 'no backdoor found'];
  const flagged = detection.classes[detection.target]!;
  const index =
    detection.flaggedBy === 'warp'
      ? `warp-scan anomaly index ${flagged.warpIndex!.toFixed(2)}`
      : detection.flaggedBy === 'signal'
        ? `signal-scan anomaly index ${flagged.signalIndex!.toFixed(2)}`
        : `anomaly index ${flagged.anomalyIndex.toFixed(2)}`;
  return [...lines, `backdoored: target class ${detection.target} (${index})`];
}

/** The detection scan as the defense and `mcldef detect` run it, with progress. */
export function scanForBackdoor(
  model: Classifier,
  clean: ImageSplit,
  options: McldefOptions,
  context: Pick<DefenseContext, 'seed' | 'progress'>,
): DetectionResult {
  return detectBackdoor(model, clean, {
    ...scanOptions(options, context.seed),
    onClass: (c) =>
      context.progress({
        stage: 'detection',
        done: c.label + 1,
        total: clean.numClasses,
        message: `class ${c.label}: size ${c.size.toFixed(1)} (${c.seconds.toFixed(1)} s)`,
      }),
  });
}

export class Mcldef implements Defense {
  readonly name = 'mcldef';

  constructor(readonly options: McldefOptions) {}

  run(model: Classifier, clean: ImageSplit, context: DefenseContext): DefenseOutcome {
    const options = this.options;
    const log = context.log;
    const started = performance.now();
    let target = context.target;
    let detected: number | null = null;
    let detectionSeconds = 0;
    let scan: Pick<DetectionResult, 'classes' | 'median' | 'mad' | 'flaggedBy'> | undefined;
    if (target === undefined) {
      log(`scanning ${clean.numClasses} classes with ${Math.min(500, clean.count)} clean images…`);
      const detection = scanForBackdoor(model, clean, options, context);
      for (const line of detectionLines(detection)) log(line);
      detected = detection.target;
      detectionSeconds = detection.seconds;
      scan = {
        classes: detection.classes,
        median: detection.median,
        mad: detection.mad,
        flaggedBy: detection.flaggedBy,
      };
      if (detected === null) {
        log('nothing to remove: the model is left unchanged');
        const seconds = (performance.now() - started) / 1000;
        return {
          model,
          report: {
            target: null,
            detected_target: null,
            changed: false,
            reason: 'no backdoor found',
            epochs: [],
            seconds: { inversion: seconds, detection: detectionSeconds, purification: 0, total: seconds },
            details: { detection: scan },
          },
        };
      }
      target = detected;
    }
    const patience = inversionPatience(options);
    // A target flagged by a universal scan is inverted as that scan's kind of trigger: the
    // published pattern inversion looks for a small patch, which a warping or full-image
    // periodic backdoor does not have.
    const flaggedBy = scan?.flaggedBy ?? null;
    const method: InversionMethod =
      options.inversion ?? (flaggedBy === 'warp' || flaggedBy === 'signal' ? flaggedBy : 'pattern');
    const trigger = invertTrigger(model, clean, target, {
      method,
      ...(options.passes === undefined ? {} : { passes: options.passes }),
      ...(options.warpShift > 0 ? { warpShift: options.warpShift } : {}),
      ...(options.signalAmplitude > 0 ? { signalAmplitude: options.signalAmplitude } : {}),
      batchSize: options.batchSize,
      seed: context.seed,
      dropLast: options.dropLast,
      precision: options.inversionPrecision,
      ...(patience === undefined ? {} : { patience }),
      onPass: (p) => {
        if (p.pass % 10 === 9 || p.improved)
          context.progress({
            stage: 'inversion',
            done: p.pass + 1,
            total: options.passes ?? 100,
            message: `inversion pass ${p.pass + 1}: attack acc ${(100 * p.attackAccuracy).toFixed(1)}%  size ${p.size.toFixed(0)}  cost ${p.cost.toExponential(2)}${p.improved ? '  (best)' : ''}`,
          });
      },
    });
    try {
      const inversionSeconds = (performance.now() - started) / 1000;
      log(
        `trigger for class ${target}: size ${trigger.size.toFixed(1)}, attack accuracy ${(100 * trigger.attackAccuracy).toFixed(1)}% (${trigger.passes} passes, ${inversionSeconds.toFixed(0)} s)` +
          (trigger instanceof SignalTrigger
            ? `; ${trigger.signals.length} stripe(s), the best along the ${trigger.signals[0]!.axis} at frequency ${trigger.signals[0]!.frequency}`
            : ''),
      );
      const precision = purificationPrecision(options);
      const guardTolerance = accuracyGuard(options);
      const epochs = purificationEpochs(options);
      log(`purifying for ${epochs} epochs (${precision === 'float32' ? 'float32' : 'bfloat16 autocast'})…`);
      const monitor = context.monitor;
      const result = purify(model, clean, trigger, {
        epochs,
        batchSize: options.batchSize,
        temperature: options.temperature,
        cleanWeight: options.cleanWeight,
        cleanWeightFrom: options.cleanWeightFrom,
        stampedWeight: options.stampedWeight,
        cleanFeatureWeight: cleanFeatureWeight(options, method),
        recalibrateBatchNorm: options.recalibrateBn,
        refitHead: options.refitHead,
        ...(guardTolerance === undefined ? {} : { accuracyGuard: guardTolerance }),
        dropLast: options.dropLast,
        lrSchedule: context.dataKind === 'gtsrb' ? 'gtsrb' : 'cifar',
        seed: context.seed,
        precision,
        ...(monitor === undefined
          ? {}
          : {
              monitor: (m) => {
                const r = monitor(m);
                m.train();
                return r.asr === null ? { ba: r.ba } : { ba: r.ba, asr: r.asr };
              },
            }),
        onEpoch: (e) =>
          context.progress({
            stage: 'purification',
            done: e.epoch + 1,
            total: epochs,
            message: `epoch ${e.epoch + 1}/${epochs}  lr ${e.lr}  loss ${e.loss.toFixed(4)}${e.ba === undefined ? '' : `  BA ${e.ba.toFixed(1)}%  ASR ${e.asr?.toFixed(1)}% (monitor set)`}  ${e.seconds.toFixed(1)} s`,
          }),
      });
      const guard = result.guard;
      if (guard !== undefined) {
        log(
          `accuracy guard (${guard.tolerance} points): clean-image accuracy ${guard.before.toFixed(2)}% before, ${guard.after.toFixed(2)}% after purification: ${guard.refitHead ? 'head re-fitted' : options.refitHead ? 'within the tolerance (the head is re-fitted anyway: --refit-head)' : 'no action'}`,
        );
      }
      return {
        model,
        report: {
          target,
          detected_target: detected,
          changed: true,
          epochs: result.epochs.map((e) => ({
            epoch: e.epoch,
            lr: e.lr,
            loss: e.loss,
            ba: e.ba ?? null,
            asr: e.asr ?? null,
          })),
          seconds: {
            // inversion includes the detection scan (SPEC §6's key).
            inversion: inversionSeconds,
            detection: detectionSeconds,
            purification: result.seconds,
            purification_features: result.featureSeconds,
            purification_monitor: result.monitorSeconds,
            total: (performance.now() - started) / 1000,
          },
          details: {
            changes_from_published: changesFromPublished(options, method),
            ...(guard === undefined
              ? {}
              : {
                  accuracy_guard: {
                    tolerance: guard.tolerance,
                    before: guard.before,
                    after: guard.after,
                    refit_head: guard.refitHead,
                  },
                }),
            trigger: {
              method: trigger.method,
              size: trigger.size,
              attack_accuracy: trigger.attackAccuracy,
              passes: trigger.passes,
              ...(trigger instanceof SignalTrigger ? { signals: trigger.signals } : {}),
              // Every pass, so the effect of the inversion's patience can be read from any run.
              history: trigger.history.map((pass) => ({
                pass: pass.pass,
                attack_accuracy: pass.attackAccuracy,
                size: pass.size,
                cost: pass.cost,
                improved: pass.improved,
              })),
            },
            ...(scan === undefined ? {} : { detection: scan }),
          },
        },
        figure: {
          name: 'trigger.png',
          caption:
            'The inverted trigger: an additive pattern around mid-grey (0.5 + Δ/2); for the mask method, the mask and the masked pattern; for a warp, its horizontal and vertical shifts around mid-grey (scaled to the largest).',
          png: triggerPng(trigger),
        },
      };
    } finally {
      trigger.dispose();
    }
  }
}

export const mcldefEntry: DefenseEntry = {
  name: 'mcldef',
  summary:
    'MCLDef (ACM MM 2023): detect the target, invert its trigger, pull the stamped images back to the clean features',
  options: MCLDEF_OPTIONS,
  create: (values) => new Mcldef(mcldefOptions(values)),
};
