// The library's `defend()`: measure, run a registered defense, measure again, and build the
// report (SPEC §6). The CLI's `mcldef defend` and `mcldef demo` are thin layers over it.
import { rmSync } from 'node:fs';

import { getDefaultDevice } from '../engine/device.js';
import type { Device } from '../engine/tensor.js';
import type { ImageSplit } from '../data/dataset.js';
import { subset, subsetIndices } from '../data/subset.js';
import { type Metrics, type TestTimeTrigger, defenseEffectivenessRating, evaluate } from '../eval/metrics.js';
import type { Classifier } from '../nn/models/classifier.js';
import type { StateDict } from '../nn/module.js';
import type { DefenseContext, DefenseEpoch, DefenseOutcome, ProgressEvent, ResumedFrom } from './defense.js';
import {
  type HeldOutEvidence,
  type ScanSummary,
  type Verification,
  readAccuracy,
  readTrigger,
  splitEvidence,
  summarizeScan,
  verdictLines,
} from './evidence.js';
import { scanForBackdoor } from './mcldef/defense.js';
import { MCLDEF_OPTIONS, mcldefOptions } from './mcldef/options.js';
import { type OptionValue, type OptionValues, resolveOptions } from './options.js';
import { defenseEntry } from './registry.js';

/** The default fraction of the defender's clean data held out as evidence (`--evidence`). */
export const DEFAULT_EVIDENCE_FRACTION = 0.1;

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
  /** The found trigger on clean images held out from the defense, before and after (null: --evidence 0). */
  evidence: HeldOutEvidence | null;
  /** The detection scan before and again after the defense (null: --verify not asked for). */
  verification: Verification | null;
  /** The run's answer in words (the console's last lines). */
  verdict: string[];
  /** Where the defense continued from its checkpoint (rounds done before, their seconds). */
  resumed?: ResumedFrom;
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
  /**
   * Fraction of the clean data held out from the defense, on which the trigger it finds is
   * measured before and after (default 0.1; 0: none, the defense gets all of it).
   */
  evidence?: number;
  /** Run MCLDef's detection scan again on the defended model (and before, where the defense ran none). */
  verify?: boolean;
  /**
   * A file where a defense that runs in rounds (SAU) saves its progress after each one and
   * resumes from when run again; removed once the defense is done.
   */
  checkpoint?: string;
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

/** Detached copies of a state dict's tensors (the caller disposes them). */
function cloneState(state: StateDict): StateDict {
  const copies: StateDict = new Map();
  for (const [key, tensor] of state) {
    copies.set(key, tensor.clone());
    tensor.dispose();
  }
  return copies;
}

/**
 * The found trigger (or, without one, the plain accuracy) on the evidence images, on the
 * defended model and on the weights before the defense (swapped in and back where the
 * defense changed the model in place).
 */
function measureEvidence(
  outcome: DefenseOutcome,
  before: StateDict,
  evidence: ImageSplit,
  input: Classifier,
): HeldOutEvidence {
  const { trigger, report } = outcome;
  const target = report.target;
  const read = (m: Classifier): HeldOutEvidence['before'] =>
    trigger === undefined || target === null ? readAccuracy(m, evidence) : readTrigger(m, evidence, trigger, target);
  const defended = outcome.model;
  const afterReading = read(defended);
  let beforeReading: HeldOutEvidence['before'];
  if (!report.changed) beforeReading = afterReading;
  else if (defended !== input) beforeReading = read(input);
  else {
    const after = cloneState(defended.stateDict());
    try {
      defended.loadStateDict(before);
      beforeReading = read(defended);
    } finally {
      defended.loadStateDict(after);
      for (const tensor of after.values()) tensor.dispose();
    }
  }
  const stamped =
    target === null ? null : evidence.labelArray.reduce((count, label) => count + (label === target ? 0 : 1), 0);
  return {
    images: evidence.count,
    stamped_images: trigger === undefined ? null : stamped,
    target,
    trigger: trigger?.method ?? null,
    before: beforeReading,
    after: afterReading,
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
  const evidenceFraction = args.evidence ?? DEFAULT_EVIDENCE_FRACTION;
  const evidenceSplit = evidenceFraction > 0 ? splitEvidence(clean, evidenceFraction, seed) : undefined;
  const defenseData = evidenceSplit?.rest ?? clean;
  const held =
    entry.heldOutFraction !== undefined && entry.heldOutFraction > 0
      ? splitHeldOut(defenseData, entry.heldOutFraction, seed)
      : undefined;
  const device = args.device ?? getDefaultDevice();
  const progress =
    args.progress ?? ((event: ProgressEvent) => (event.message === undefined ? undefined : log(`  ${event.message}`)));
  const context: DefenseContext = {
    seed,
    device,
    dataKind: args.dataKind ?? 'cifar10',
    ...(args.target === undefined ? {} : { target: args.target }),
    ...(held === undefined ? {} : { heldOut: held.heldOut }),
    log,
    progress,
    ...(args.checkpoint === undefined ? {} : { checkpoint: args.checkpoint }),
    ...(monitorSet === undefined
      ? {}
      : {
          monitor: (m: Classifier) => {
            const r = evaluate(m, monitorSet, { normalization: monitorSet.normalization, trigger: attack! });
            return { ba: r.ba, asr: r.asr };
          },
        }),
  };
  const trainingData = held?.train ?? defenseData;
  // The verification's scans use MCLDef's settings (the run's own where the method is MCLDef).
  const scanSettings = mcldefOptions(
    methodName === 'mcldef' ? values : (resolveOptions(MCLDEF_OPTIONS, {}, 'the verification scan') as OptionValues),
  );
  const scan = (scanned: Classifier, which: string): ScanSummary => {
    log(`verification: scanning the ${which} model…`);
    const detection = scanForBackdoor(scanned, trainingData, scanSettings, { seed, progress });
    for (const pattern of detection.targetPatterns) pattern.dispose();
    return summarizeScan(detection);
  };
  let outcome: DefenseOutcome | undefined;
  let snapshot: StateDict | undefined;
  let evidence: HeldOutEvidence | null = null;
  let verification: Verification | null = null;
  try {
    // A defense that scans every class itself gives the "before"; otherwise scan it here, first.
    const defenseScans =
      entry.scansModel === 'always' || (entry.scansModel === 'without-target' && args.target === undefined);
    const scanBefore = args.verify === true && !defenseScans ? scan(model, 'suspicious') : undefined;
    // The weights before the defense, to measure the trigger it finds on the model as it was.
    if (evidenceSplit !== undefined) snapshot = cloneState(model.stateDict());
    outcome = await defense.run(model, trainingData, context);
    const { report: methodReport } = outcome;
    if (evidenceSplit !== undefined) {
      evidence = measureEvidence(outcome, snapshot!, evidenceSplit.evidence, model);
      log(`evidence: ${evidence.images} clean images held out from the defense`);
    }
    if (args.verify === true) {
      const before = scanBefore ?? outcome.scan;
      if (before === undefined)
        throw new Error(`verification: defense '${methodName}' reported no scan of the model it received`);
      const after = methodReport.changed ? scan(outcome.model, 'defended') : null;
      verification = {
        before,
        after,
        statistic: before.flagged_by ?? 'size',
        seconds: (scanBefore?.seconds ?? 0) + (after?.seconds ?? 0),
      };
    }
  } catch (error) {
    outcome?.trigger?.dispose();
    throw error;
  } finally {
    if (snapshot !== undefined) for (const tensor of snapshot.values()) tensor.dispose();
    monitorSet?.dispose();
    held?.train.dispose();
    held?.heldOut.dispose();
    evidenceSplit?.evidence.dispose();
    evidenceSplit?.rest.dispose();
  }
  outcome.trigger?.dispose();
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
    ...(verification === null ? {} : { verification: verification.seconds }),
    evaluation: evaluationSeconds,
    total: (performance.now() - started) / 1000 + (methodReport.resumed?.seconds ?? 0),
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
    evidence,
    verification,
    verdict: [],
    ...(methodReport.resumed === undefined ? {} : { resumed: methodReport.resumed }),
    ...methodReport.details,
  };
  report.verdict = verdictLines({
    ...report,
    scan: outcome.scan ?? null,
    ...(methodReport.seconds.detection === undefined || methodReport.seconds.detection <= 0
      ? {}
      : { detection_seconds: methodReport.seconds.detection }),
  });
  // Done: a later run with this file starts afresh.
  if (args.checkpoint !== undefined) rmSync(args.checkpoint, { force: true });
  return { report, model: defended, ...(outcome.figure === undefined ? {} : { figure: outcome.figure }) };
}
