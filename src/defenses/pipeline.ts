// The library's `defend()`: measure, run a registered defense, measure again, and build the
// report (SPEC §6). The CLI's `mcldef defend` and `mcldef demo` are thin layers over it.
import { getDefaultDevice } from '../engine/device.js';
import type { Device } from '../engine/tensor.js';
import type { ImageSplit } from '../data/dataset.js';
import { subset, subsetIndices } from '../data/subset.js';
import { type Metrics, type TestTimeTrigger, defenseEffectivenessRating, evaluate } from '../eval/metrics.js';
import type { Classifier } from '../nn/models/classifier.js';
import type { DefenseContext, DefenseEpoch, ProgressEvent } from './defense.js';
import { type OptionValue, resolveOptions } from './options.js';
import { defenseEntry } from './registry.js';

/** Percentages; null where no attack was given. */
export interface ReportMetrics {
  ba: number;
  asr: number | null;
  ra: number | null;
  /** The ASR images without the trigger that already reach the target: ASR's floor. */
  asr_no_trigger: number | null;
}

/** The report of a defense run (SPEC §6 plus what the method adds). */
export interface DefendReport {
  method: string;
  model: string | null;
  data: string | null;
  attack: string | null;
  target: number | null;
  detected_target: number | null;
  /** False where the defense left the model unchanged (e.g. no backdoor found); `reason` says why. */
  changed: boolean;
  reason?: string;
  before: ReportMetrics;
  after: ReportMetrics;
  der: number | null;
  seconds: Record<string, number>;
  epochs: DefenseEpoch[];
  /** The run's fully resolved options (long flag names), enough to repeat it as --config. */
  options: Record<string, OptionValue>;
  /** The method's own fields (trigger, detection, settings in force...). */
  [detail: string]: unknown;
}

export interface DefendArgs {
  /** The suspicious model (changed in place by most defenses). */
  model: Classifier;
  /** The defender's clean data. */
  clean: ImageSplit;
  /** The test split, for BA/ASR before and after (never shown to the defense). */
  test?: ImageSplit;
  /** The attack whose ASR is measured (never shown to the defense). */
  attack?: TestTimeTrigger & { readonly name: string };
  /** A registered defense (default 'mcldef'). */
  method?: string;
  /** The method's options by camelCase name; unset ones take the method's defaults. */
  options?: Readonly<Record<string, unknown>>;
  /** The target, where the defender is told it; otherwise a method that needs one detects it. */
  target?: number;
  seed?: number;
  device?: Device;
  /** The dataset kind ('cifar10', 'gtsrb', ...): some published schedules depend on it. */
  dataKind?: string;
  /** Test images for the per-epoch BA/ASR chart (reporting only; 0: none). Default 500. */
  monitor?: number;
  /** Names for the report. */
  modelName?: string;
  dataName?: string;
  /** Options to record in the report besides the method's (the CLI passes every flag). */
  recordOptions?: Readonly<Record<string, OptionValue>>;
  log?: (line: string) => void;
  progress?: (event: ProgressEvent) => void;
}

export interface DefendResult {
  report: DefendReport;
  model: Classifier;
  /** A picture for the report (the inverted trigger), if the method made one. */
  figure?: { name: string; caption: string; png: Buffer };
}

/** Keeps `ratio` of the clean data for selection, seeded; the rest is what the defense trains on. */
function splitHeldOut(clean: ImageSplit, ratio: number, seed: number): { train: ImageSplit; heldOut: ImageSplit } {
  const heldIndices = subsetIndices(clean, ratio, { seed: seed + 1 });
  const held = new Set(heldIndices);
  const rest = Int32Array.from({ length: clean.count }, (_, i) => i).filter((i) => !held.has(i));
  return {
    heldOut: clean.select(heldIndices, `${clean.source}, held out ${ratio}`),
    train: clean.select(rest, `${clean.source}, without the held-out ${ratio}`),
  };
}

function pick(metrics: Metrics, attack: boolean): ReportMetrics {
  return {
    ba: metrics.ba,
    asr: attack ? metrics.asr : null,
    ra: attack ? metrics.ra : null,
    asr_no_trigger: attack ? metrics.asr_no_trigger : null,
  };
}

/** Runs a registered defense on a model and reports BA/ASR/RA before and after. */
export async function defend(args: DefendArgs): Promise<DefendResult> {
  const started = performance.now();
  const methodName = args.method ?? 'mcldef';
  const entry = defenseEntry(methodName);
  const values = resolveOptions(entry.options, args.options ?? {}, `defense '${methodName}'`);
  const defense = entry.create(values);
  const seed = args.seed ?? 0;
  const log = args.log ?? (() => {});
  const { model, clean, test, attack } = args;
  if (
    args.target !== undefined &&
    !(Number.isInteger(args.target) && args.target >= 0 && args.target < clean.numClasses)
  ) {
    throw new RangeError(`target class ${args.target} is out of range for ${clean.numClasses} classes`);
  }
  let evaluationSeconds = 0;
  const measure = (): Metrics | undefined => {
    if (test === undefined) return undefined;
    const evaluationStart = performance.now();
    const metrics = evaluate(model, test, {
      normalization: test.normalization,
      ...(attack === undefined ? {} : { trigger: attack }),
    });
    evaluationSeconds += (performance.now() - evaluationStart) / 1000;
    return metrics;
  };
  const before = measure();
  if (before !== undefined) {
    log(
      `before: BA ${before.ba.toFixed(2)}%${attack ? `  ASR ${before.asr.toFixed(2)}%  RA ${before.ra.toFixed(2)}%  (without the trigger ${before.asr_no_trigger.toFixed(2)}% reach the target)` : ''}`,
    );
  }
  const monitorCount = args.monitor ?? 500;
  const monitorSet =
    test !== undefined && attack !== undefined && monitorCount > 0
      ? subset(test, Math.min(1, monitorCount / test.count), { seed: 1 })
      : undefined;
  const held =
    entry.heldOutFraction !== undefined && entry.heldOutFraction > 0
      ? splitHeldOut(clean, entry.heldOutFraction, seed)
      : undefined;
  const context: DefenseContext = {
    seed,
    device: args.device ?? getDefaultDevice(),
    dataKind: args.dataKind ?? 'cifar10',
    ...(args.target === undefined ? {} : { target: args.target }),
    ...(held === undefined ? {} : { heldOut: held.heldOut }),
    log,
    progress: args.progress ?? ((event) => (event.message === undefined ? undefined : log(`  ${event.message}`))),
    ...(monitorSet === undefined
      ? {}
      : {
          monitor: (m: Classifier) => {
            const r = evaluate(m, monitorSet, { normalization: monitorSet.normalization, trigger: attack! });
            return { ba: r.ba, asr: r.asr };
          },
        }),
  };
  let outcome;
  try {
    outcome = await defense.run(model, held?.train ?? clean, context);
  } finally {
    monitorSet?.dispose();
    held?.train.dispose();
    held?.heldOut.dispose();
  }
  const defended = outcome.model;
  const after = outcome.report.changed || before === undefined ? measure() : before;
  if (after !== undefined && before !== undefined) {
    log(
      `after:  BA ${after.ba.toFixed(2)}%${attack ? `  ASR ${after.asr.toFixed(2)}%  RA ${after.ra.toFixed(2)}%  (without the trigger ${after.asr_no_trigger.toFixed(2)}%)  DER ${defenseEffectivenessRating(before, after).toFixed(4)}` : ''}`,
    );
  }
  const hasAttack = attack !== undefined;
  const empty: ReportMetrics = { ba: NaN, asr: null, ra: null, asr_no_trigger: null };
  const { report: methodReport } = outcome;
  const { total: defenseSeconds, ...stages } = methodReport.seconds;
  const seconds = {
    ...stages,
    defense: defenseSeconds ?? 0,
    evaluation: evaluationSeconds,
    total: (performance.now() - started) / 1000,
  };
  const options: Record<string, OptionValue> = { ...(args.recordOptions ?? {}) };
  if (args.recordOptions === undefined) {
    for (const [name, value] of Object.entries(values)) if (value !== undefined) options[name] = value;
  }
  const report: DefendReport = {
    method: methodName,
    model: args.modelName ?? null,
    data: args.dataName ?? null,
    attack: attack?.name ?? null,
    target: methodReport.target,
    detected_target: methodReport.detected_target,
    changed: methodReport.changed,
    ...(methodReport.reason === undefined ? {} : { reason: methodReport.reason }),
    before: before === undefined ? empty : pick(before, hasAttack),
    after: after === undefined ? empty : pick(after, hasAttack),
    der: before !== undefined && after !== undefined && hasAttack ? defenseEffectivenessRating(before, after) : null,
    seconds,
    epochs: methodReport.epochs,
    options,
    ...methodReport.details,
  };
  return { report, model: defended, ...(outcome.figure === undefined ? {} : { figure: outcome.figure }) };
}
