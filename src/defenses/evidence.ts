// Evidence that a defense worked, for a defender who does not know the attack: the trigger
// the defense found, measured on clean images held out from the whole defense (never
// inverted, scanned or trained on), before and after; the detection scan run again on the
// defended model; and the verdict in words.
import type { Trigger } from '../attacks/trigger.js';
import type { ImageSplit } from '../data/dataset.js';
import { subsetIndices } from '../data/subset.js';
import { evaluate } from '../eval/metrics.js';
import type { Module } from '../nn/module.js';
import { type DetectionResult, type DetectionStatistic, medianOf } from './mcldef/detect.js';

/** The defender's clean data split into the held-out evidence images and the rest. */
export interface EvidenceSplit {
  /** Held out from the defense: the evidence is measured on these alone. */
  evidence: ImageSplit;
  /** What the defense receives. */
  rest: ImageSplit;
  /** The evidence images' positions in the defender's clean data (sorted). */
  evidenceIndices: Int32Array;
  /** The rest's positions in the defender's clean data (sorted). */
  restIndices: Int32Array;
}

/**
 * Holds out a seeded, class-stratified `fraction` of the clean data (the caller disposes both
 * parts). The seed is offset from the run's so that the evidence images are not the same draw
 * as a method's own held-out part.
 */
export function splitEvidence(clean: ImageSplit, fraction: number, seed: number): EvidenceSplit {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError(`evidence fraction must be in (0, 1), got ${fraction}`);
  const evidenceIndices = subsetIndices(clean, fraction, { seed: seed + 2 });
  if (evidenceIndices.length === 0 || evidenceIndices.length === clean.count) {
    throw new RangeError(
      `evidence fraction ${fraction} of ${clean.count} clean images leaves ${evidenceIndices.length === 0 ? 'no evidence images' : 'nothing for the defense'}`,
    );
  }
  const held = new Set(evidenceIndices);
  const restIndices = Int32Array.from({ length: clean.count }, (_, i) => i).filter((i) => !held.has(i));
  return {
    evidence: clean.select(evidenceIndices, `${clean.source}, ${fraction} held out as evidence`),
    rest: clean.select(restIndices, `${clean.source}, without the evidence images`),
    evidenceIndices,
    restIndices,
  };
}

/** The found trigger on the evidence images at one moment (percentages). */
export interface TriggerReading {
  /** Evidence images not of the target class that the stamped image sends to the target. */
  trigger_success: number;
  /** The same images without the trigger that already go to the target: the floor. */
  target_without_trigger: number;
  /** Accuracy on all the evidence images, without the trigger. */
  clean_accuracy: number;
}

/** What the evidence images say, before and after the defense. */
export interface HeldOutEvidence {
  /** Evidence images (held out from the defense) and how many of them are not of the target. */
  images: number;
  stamped_images: number | null;
  target: number | null;
  /** The trigger's kind ('pattern', 'mask', 'warp', 'signal'), or null where no trigger was found. */
  trigger: string | null;
  before: TriggerReading | { clean_accuracy: number };
  after: TriggerReading | { clean_accuracy: number };
}

/** The found trigger's success towards `target` on the evidence images, and their accuracy. */
export function readTrigger(model: Module, evidence: ImageSplit, trigger: Trigger, target: number): TriggerReading {
  const metrics = evaluate(model, evidence, {
    normalization: evidence.normalization,
    trigger: { apply: (images, indices) => trigger.apply(images, indices), targetOf: () => target, mode: 'all-to-one' },
  });
  return {
    trigger_success: metrics.asr,
    target_without_trigger: metrics.asr_no_trigger,
    clean_accuracy: metrics.ba,
  };
}

/** Accuracy on the evidence images (no trigger found, or none to stamp). */
export function readAccuracy(model: Module, evidence: ImageSplit): { clean_accuracy: number } {
  return { clean_accuracy: evaluate(model, evidence, { normalization: evidence.normalization }).ba };
}

/** One detection scan, reduced to what the verdict and the chart need. */
export interface ScanSummary {
  /** The class that stands out, or null. */
  target: number | null;
  flagged_by: DetectionStatistic | null;
  /**
   * Each class's anomaly index towards being a target, per statistic: how far its value lies
   * below the classes' median in robust units (0 where it lies above: a class that is hard
   * to reach is no target). null: that scan was off.
   */
  indices: Record<DetectionStatistic, number[] | null>;
  /** Why the scan decided as it did, one sentence. */
  decided_by: string;
  seconds: number;
}

/** What a summary reads of each class of a scan (MCLDef's, or Neural Cleanse's sizes alone). */
export interface ScannedClass {
  size: number;
  anomalyIndex: number;
  warp: { loss: number } | null;
  signal: { loss: number } | null;
  warpIndex: number | null;
  signalIndex: number | null;
}

/** Indices of the classes whose value lies below the median; 0 for the others. */
function lowSide(values: readonly number[], indices: readonly number[]): number[] {
  const median = medianOf(values);
  return values.map((value, label) => (value < median ? indices[label]! : 0));
}

/** The summary of a detection scan (the scale of a statistic does not change which classes lie below its median). */
export function summarizeScan(
  detection: Pick<DetectionResult, 'target' | 'flaggedBy' | 'decidedBy' | 'seconds'> & {
    classes: readonly ScannedClass[];
  },
): ScanSummary {
  const { classes } = detection;
  const warp = classes.every((c) => c.warp !== null && c.warpIndex !== null);
  const signal = classes.every((c) => c.signal !== null && c.signalIndex !== null);
  return {
    target: detection.target,
    flagged_by: detection.flaggedBy,
    indices: {
      size: lowSide(
        classes.map((c) => c.size),
        classes.map((c) => c.anomalyIndex),
      ),
      warp: warp
        ? lowSide(
            classes.map((c) => c.warp!.loss),
            classes.map((c) => c.warpIndex!),
          )
        : null,
      signal: signal
        ? lowSide(
            classes.map((c) => c.signal!.loss),
            classes.map((c) => c.signalIndex!),
          )
        : null,
    },
    decided_by: detection.decidedBy,
    seconds: detection.seconds,
  };
}

/** The detection scan before the defense and again on the defended model (`--verify`). */
export interface Verification {
  before: ScanSummary;
  /** null where the model was left unchanged: the scan would find what it found before. */
  after: ScanSummary | null;
  /** The statistic the chart and the verdict compare: the one that flagged the model before, else the size. */
  statistic: DetectionStatistic;
  /** Seconds of the scans this verification ran (the re-scan, and the scan before where the defense ran none). */
  seconds: number;
}

/** What the verdict lines read from a defense run's report. */
export interface VerdictInput {
  target: number | null;
  detected_target: number | null;
  changed: boolean;
  reason?: string;
  attack: string | null;
  before: { ba: number; asr: number | null; asr_no_trigger: number | null };
  after: { ba: number; asr: number | null; asr_no_trigger: number | null };
  evidence?: HeldOutEvidence | null;
  verification?: Verification | null;
  /** Seconds the detection scan took in this run (for the cost of --verify), where it ran. */
  detection_seconds?: number;
  /** The defense's own detection scan, where it ran one. */
  scan?: ScanSummary | null;
}

/** The class with the largest index over the scan's statistics. */
function highest(scan: ScanSummary): { label: number; statistic: DetectionStatistic; index: number } | null {
  let best: { label: number; statistic: DetectionStatistic; index: number } | null = null;
  for (const statistic of ['size', 'warp', 'signal'] as const) {
    scan.indices[statistic]?.forEach((index, label) => {
      if (best === null || index > best.index) best = { label, statistic, index };
    });
  }
  return best;
}

/** The first line: what the defense found, with the scan's index where it ran one. */
function foundLine(input: VerdictInput): string {
  const scan = input.scan ?? null;
  if (!input.changed) {
    if (input.detected_target !== null || input.target !== null) {
      return `the model is left unchanged (${input.reason ?? 'the defense changed nothing'})`;
    }
    const top = scan === null ? null : highest(scan);
    const why =
      top === null
        ? (input.reason ?? 'no class stands out')
        : `no class stands out: the highest, class ${top.label}'s ${top.statistic} index ${top.index.toFixed(2)}, is ${top.index > 2 ? "over 2 but the scan's other tests did not confirm it" : 'under the threshold 2'}`;
    return `no backdoor found (${why}); the model is left unchanged`;
  }
  if (input.target === null) return 'the defense changed the model without a target class';
  if (input.detected_target === null) return `target class ${input.target} (given, not detected)`;
  const statistic = scan?.flagged_by ?? null;
  const index = statistic === null ? undefined : scan?.indices[statistic]?.[input.target];
  return `backdoor found towards class ${input.target}${index === undefined ? '' : ` (its ${statistic} index ${index.toFixed(2)}, threshold 2)`}`;
}

const pct = (value: number): string => `${value.toFixed(1)} %`;

function hasTrigger(reading: TriggerReading | { clean_accuracy: number }): reading is TriggerReading {
  return 'trigger_success' in reading;
}

/** The verdict of the re-scan, or what --verify would cost. */
function rescanLine(input: VerdictInput): string {
  const v = input.verification;
  if (v === undefined || v === null) {
    const cost = input.detection_seconds;
    return `re-scan: not run (--verify scans the defended model again${cost === undefined || cost <= 0 ? '' : `, about ${cost.toFixed(0)} s more`})`;
  }
  if (v.after === null) return `re-scan: not needed, the model is unchanged (${v.seconds.toFixed(0)} s)`;
  const index = (scan: ScanSummary, label: number): number => scan.indices[v.statistic]?.[label] ?? 0;
  const suspect = v.before.target ?? input.target;
  const was =
    suspect === null
      ? ''
      : `; class ${suspect}'s ${v.statistic} index ${index(v.before, suspect).toFixed(2)} → ${index(v.after, suspect).toFixed(2)} (threshold 2)`;
  const found = v.after.target;
  const verdict =
    found === null
      ? 'no class stands out'
      : found === suspect
        ? `class ${found} still stands out (by the ${v.after.flagged_by} scan)`
        : `class ${found} now stands out (by the ${v.after.flagged_by} scan)`;
  return `re-scan: ${verdict}${was} (${v.seconds.toFixed(0)} s)`;
}

/**
 * The run's answer in words, for the console's last lines: what was found, what the found
 * trigger does to held-out clean images before and after, their accuracy, the re-scan, and
 * (where the attack was given for measurement) the true figures beside them.
 */
export function verdictLines(input: VerdictInput): string[] {
  const lines: string[] = [];
  const evidence = input.evidence ?? null;
  lines.push(foundLine(input));
  if (!input.changed) {
    if (evidence !== null)
      lines.push(`held-out clean accuracy ${pct(evidence.before.clean_accuracy)} (${evidence.images} images)`);
  } else {
    if (evidence !== null) {
      const { before, after } = evidence;
      if (hasTrigger(before) && hasTrigger(after)) {
        lines.push(
          `after the defense the found trigger sends ${pct(after.trigger_success)} of held-out images to class ${evidence.target} (was ${pct(before.trigger_success)}; without it ${pct(after.target_without_trigger)})`,
        );
      } else {
        lines.push('no trigger to measure: the defense found none');
      }
      lines.push(
        `held-out clean accuracy ${pct(before.clean_accuracy)} → ${pct(after.clean_accuracy)} (${evidence.images} images, none of them used by the defense)`,
      );
    } else {
      lines.push('no held-out evidence (--evidence 0)');
    }
  }
  lines.push(rescanLine(input));
  const { before, after } = input;
  if (input.attack !== null && before.asr !== null && after.asr !== null) {
    lines.push(
      `with the attack (${input.attack}, test split, never shown to the defense): ASR ${pct(before.asr)} → ${pct(after.asr)} (without the trigger ${pct(after.asr_no_trigger ?? NaN)}), BA ${pct(before.ba)} → ${pct(after.ba)}`,
    );
  }
  return lines;
}
