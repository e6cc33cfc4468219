// MCLDef as a registered defense: detection when the target is not told, the inversion kind
// the scan chose, model-contrastive purification with the accuracy guard and the
// clean-feature term. Its options, defaults and presets are in options.ts.
import type { ImageSplit } from '../../data/dataset.js';
import type { Tensor } from '../../engine/tensor.js';
import type { Classifier } from '../../nn/models/classifier.js';
import { triggerPng } from '../../report/trigger-image.js';
import type { Defense, DefenseContext, DefenseEntry, DefenseOutcome } from '../defense.js';
import { type ScanSummary, summarizeScan } from '../evidence.js';
import { type DetectionResult, detectBackdoor } from './detect.js';
import { type InversionOptions, invertTrigger } from './invert.js';
import {
  MCLDEF_OPTIONS,
  type McldefOptions,
  accuracyGuard,
  changesFromPublished,
  cleanFeatureWeight,
  inversionPatience,
  mcldefOptions,
  purificationEpochs,
  purificationPrecision,
  refitStamped,
  scanOptions,
  stackScanPatterns,
} from './options.js';
import { type PurifyOptions, purify } from './purify.js';
import { type InversionMethod, SignalTrigger, type StackedTrigger, withPatterns } from './trigger.js';

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
    return `  class ${c.label}: trigger size ${c.size.toFixed(1)} (${c.sizeFraction.toFixed(2)} of the median)  anomaly index ${c.anomalyIndex.toFixed(2)}${c.stability === null ? '' : `  agreement of restarts ${c.stability.toFixed(2)}`}${c.features === null ? '' : `  feature separation ${c.features.separation.toFixed(2)} (${c.separationRatio!.toFixed(2)} of the median)`}  attack accuracy ${(100 * c.attackAccuracy).toFixed(1)}%${warp}${signal}`;
  });
  const verdict = detection.target === null ? 'no backdoor found' : `backdoored: target class ${detection.target}`;
  return [...lines, `${verdict}. ${detection.decidedBy}`];
}

/** The detection scan as the defense and `mcldef detect` run it, with progress. */
export function scanForBackdoor(
  model: Classifier,
  clean: ImageSplit,
  options: McldefOptions,
  context: Pick<DefenseContext, 'seed' | 'progress'>,
  keepTargetPatterns = false,
): DetectionResult {
  return detectBackdoor(model, clean, {
    ...scanOptions(options, context.seed),
    keepTargetPatterns,
    onClass: (c) =>
      context.progress({
        stage: 'detection',
        done: c.label + 1,
        total: clean.numClasses,
        message: `class ${c.label}: size ${c.size.toFixed(1)} (${c.seconds.toFixed(1)} s)`,
      }),
    onRestart: (c) =>
      context.progress({
        stage: 'detection',
        done: clean.numClasses,
        total: clean.numClasses,
        message: `class ${c.label} flagged by its size: restarts found sizes ${c.restartSizes.join(', ')}, agreement ${c.stability!.toFixed(2)}`,
      }),
  });
}

/** Stage 1's settings for `method` under these options (shared with the benches). */
export function inversionOptionsFor(options: McldefOptions, method: InversionMethod, seed: number): InversionOptions {
  const patience = inversionPatience(options);
  return {
    method,
    ...(options.passes === undefined ? {} : { passes: options.passes }),
    ...(options.warpShift > 0 ? { warpShift: options.warpShift } : {}),
    ...(options.signalAmplitude > 0 ? { signalAmplitude: options.signalAmplitude } : {}),
    batchSize: options.batchSize,
    seed,
    dropLast: options.dropLast,
    precision: options.inversionPrecision,
    ...(patience === undefined ? {} : { patience }),
  };
}

/** Stage 2's settings for a trigger inverted by `method` (shared with the benches). */
export function purifyOptionsFor(
  options: McldefOptions,
  method: InversionMethod,
  context: Pick<DefenseContext, 'seed' | 'dataKind'>,
): PurifyOptions {
  const guardTolerance = accuracyGuard(options);
  return {
    epochs: purificationEpochs(options),
    batchSize: options.batchSize,
    temperature: options.temperature,
    cleanWeight: options.cleanWeight,
    cleanWeightFrom: options.cleanWeightFrom,
    stampedWeight: options.stampedWeight,
    cleanFeatureWeight: cleanFeatureWeight(options),
    recalibrateBatchNorm: options.recalibrateBn,
    refitHead: options.refitHead,
    refitStamped: refitStamped(options),
    ...(guardTolerance === undefined ? {} : { accuracyGuard: guardTolerance }),
    dropLast: options.dropLast,
    lrSchedule: context.dataKind === 'gtsrb' ? 'gtsrb' : 'cifar',
    seed: context.seed,
    precision: purificationPrecision(options),
  };
}

/** How trigger.png shows each kind of inverted trigger. */
const TRIGGER_CAPTIONS: Record<InversionMethod, string> = {
  pattern: 'The inverted trigger: the additive pattern Δ around mid-grey (0.5 + Δ/2), magnified 8×.',
  mask: 'The inverted trigger (Neural Cleanse): the mask beside the masked pattern, magnified 8×.',
  warp: 'The inverted warp: its horizontal and vertical shifts around mid-grey, scaled to the largest, magnified 8×.',
  signal:
    'The inverted trigger: the stripe that reaches the target best, around mid-grey, scaled to its largest value, magnified 8×.',
};

export class Mcldef implements Defense {
  readonly name = 'mcldef';

  constructor(readonly options: McldefOptions) {}

  run(model: Classifier, clean: ImageSplit, context: DefenseContext): DefenseOutcome {
    // The detection scan's patterns for the target, held until purification is done.
    const scanPatterns: Tensor[] = [];
    try {
      return this.runHolding(model, clean, context, scanPatterns);
    } finally {
      for (const pattern of scanPatterns) pattern.dispose();
    }
  }

  private runHolding(
    model: Classifier,
    clean: ImageSplit,
    context: DefenseContext,
    scanPatterns: Tensor[],
  ): DefenseOutcome {
    const options = this.options;
    const log = context.log;
    const started = performance.now();
    let target = context.target;
    let detected: number | null = null;
    let detectionSeconds = 0;
    let scan:
      Pick<DetectionResult, 'classes' | 'median' | 'mad' | 'flaggedBy' | 'margin' | 'vetoed' | 'decidedBy'> | undefined;
    let scanSummary: ScanSummary | undefined;
    if (target === undefined) {
      log(`scanning ${clean.numClasses} classes with ${Math.min(500, clean.count)} clean images…`);
      const detection = scanForBackdoor(model, clean, options, context, stackScanPatterns(options));
      scanPatterns.push(...detection.targetPatterns);
      for (const line of detectionLines(detection)) log(line);
      detected = detection.target;
      detectionSeconds = detection.seconds;
      scan = {
        classes: detection.classes,
        median: detection.median,
        mad: detection.mad,
        flaggedBy: detection.flaggedBy,
        margin: detection.margin,
        vetoed: detection.vetoed,
        decidedBy: detection.decidedBy,
      };
      scanSummary = summarizeScan(detection);
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
          scan: scanSummary,
        };
      }
      target = detected;
    }
    // A target flagged by a universal scan is inverted as that scan's kind of trigger: the
    // published pattern inversion looks for a small patch, which a warping or full-image
    // periodic backdoor does not have.
    const flaggedBy = scan?.flaggedBy ?? null;
    const method: InversionMethod =
      options.inversion ?? (flaggedBy === 'warp' || flaggedBy === 'signal' ? flaggedBy : 'pattern');
    const trigger = invertTrigger(model, clean, target, {
      ...inversionOptionsFor(options, method, context.seed),
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
    let stacked: StackedTrigger | null = null;
    let handedOver = false;
    try {
      const inversionSeconds = (performance.now() - started) / 1000;
      log(
        `trigger for class ${target}: size ${trigger.size.toFixed(1)}, attack accuracy ${(100 * trigger.attackAccuracy).toFixed(1)}% (${trigger.passes} passes, ${inversionSeconds.toFixed(0)} s)` +
          (trigger instanceof SignalTrigger
            ? `; ${trigger.signals.length} stripe(s), the best along the ${trigger.signals[0]!.axis} at frequency ${trigger.signals[0]!.frequency}`
            : ''),
      );
      const precision = purificationPrecision(options);
      const epochs = purificationEpochs(options);
      log(`purifying for ${epochs} epochs (${precision === 'float32' ? 'float32' : 'bfloat16 autocast'})…`);
      const monitor = context.monitor;
      // A pattern trigger is purified against together with the scan's patterns for the target.
      stacked = method === 'pattern' && scanPatterns.length > 0 ? withPatterns(trigger, scanPatterns) : null;
      if (stacked !== null)
        log(`purifying against the inverted trigger and ${scanPatterns.length} scan pattern(s) for class ${target}`);
      const result = purify(model, clean, stacked ?? trigger, {
        ...purifyOptionsFor(options, method, context),
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
      handedOver = true;
      return {
        model,
        // The caller measures it on held-out images and disposes it.
        trigger,
        ...(scanSummary === undefined ? {} : { scan: scanSummary }),
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
            changes_from_published: changesFromPublished(options),
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
              // How many of the detection scan's patterns were purified against beside it.
              scan_patterns: stacked === null ? 0 : scanPatterns.length,
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
          caption: TRIGGER_CAPTIONS[trigger.method],
          png: triggerPng(trigger),
        },
      };
    } finally {
      if (!handedOver) trigger.dispose();
      stacked?.dispose();
    }
  }
}

export const mcldefEntry: DefenseEntry = {
  name: 'mcldef',
  summary:
    'MCLDef (ACM MM 2023): detect the target, invert its trigger, pull the stamped images back to the clean features',
  options: MCLDEF_OPTIONS,
  scansModel: 'without-target',
  create: (values) => new Mcldef(mcldefOptions(values)),
};
