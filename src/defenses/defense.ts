// The defense interface: every method (MCLDef and the baselines) is one class behind it,
// registered by name (registry.ts). A defense receives the suspicious model, the defender's
// clean data and a context, and returns the defended model with a typed report.
import type { Trigger } from '../attacks/trigger.js';
import type { Device } from '../engine/tensor.js';
import type { ImageSplit } from '../data/dataset.js';
import type { Classifier } from '../nn/models/classifier.js';
import type { ScanSummary } from './evidence.js';
import type { OptionSpecs, OptionValues } from './options.js';

/** One epoch (or pass) of a defense's training, for the report's chart. */
export interface DefenseEpoch {
  epoch: number;
  lr: number;
  loss: number;
  /** BA / ASR on the monitor images (reporting only), or null. */
  ba: number | null;
  asr: number | null;
}

/** What every defense reports; a method adds its own fields in `details`. */
export interface DefenseReportBase {
  /** The class the defense acted against (told or detected), or null where none applies. */
  target: number | null;
  /** The class detection flagged, or null (not run, or no backdoor found). */
  detected_target: number | null;
  /** False where the defense left the model as it was (e.g. no backdoor found). */
  changed: boolean;
  /** Why the model was left unchanged, when it was. */
  reason?: string;
  epochs: DefenseEpoch[];
  /** Seconds per stage of the defense (names are the method's; `total` is the defense's). */
  seconds: Record<string, number>;
  /** Method-specific, JSON-ready: the trigger, the detection scan, the settings in force... */
  details: Record<string, unknown>;
  /** Where the defense continued from its checkpoint (its seconds are included in `seconds`). */
  resumed?: ResumedFrom;
}

/** Rounds a defense had done, and their seconds, when it continued from its checkpoint. */
export interface ResumedFrom {
  rounds: number;
  seconds: number;
}

export interface DefenseOutcome {
  /** The defended model (it may be the input model, changed in place). */
  model: Classifier;
  report: DefenseReportBase;
  /** A picture for the report, e.g. the inverted trigger (PNG). */
  figure?: { name: string; caption: string; png: Buffer };
  /**
   * The trigger the defense found and acted against (towards `report.target`), for the
   * held-out evidence; the caller owns it and disposes it.
   */
  trigger?: FoundTrigger;
  /** The defense's own detection scan of the model it received, where it ran one. */
  scan?: ScanSummary;
}

/** A trigger a defense inverted: it stamps [0, 1] images and owns tensors. */
export interface FoundTrigger extends Trigger {
  /** Its kind: 'pattern', 'mask', 'warp', 'signal'... */
  readonly method: string;
  dispose(): void;
}

/** A progress event, for progress bars and logs. */
export interface ProgressEvent {
  /** Which stage: 'detection', 'inversion', 'purification', ... */
  stage: string;
  /** Done so far and in all (e.g. classes scanned out of 10). */
  done: number;
  total: number;
  /** A short status, e.g. 'class 3: size 42.0'. */
  message?: string;
}

export interface DefenseContext {
  /** The run's seed (data order, starts); libtorch's generator is seeded by the caller. */
  readonly seed: number;
  /** Where the model and every tensor the defense makes live. */
  readonly device: Device;
  /** The dataset kind ('cifar10', 'gtsrb', ...), for methods whose published settings depend on it. */
  readonly dataKind: string;
  /** The attack's target where the defender is told it; undefined: unknown (detect it or need none). */
  readonly target?: number;
  /**
   * A held-out part of the defender's clean data (never the test split), present where the
   * method's entry asks for one: for choosing thresholds, pruning amounts or stopping points.
   */
  readonly heldOut?: ImageSplit;
  /** Human-readable lines. */
  readonly log: (line: string) => void;
  readonly progress: (event: ProgressEvent) => void;
  /**
   * BA/ASR on images the defender does not hold, after an epoch: for the report's chart only.
   * No defense may choose anything by it.
   */
  readonly monitor?: (model: Classifier) => { ba: number; asr: number | null };
  /**
   * A file where a defense that runs in rounds saves its state after each one and resumes
   * from (checkpoint.ts); absent: no checkpoints. Methods without rounds ignore it.
   */
  readonly checkpoint?: string;
}

export interface Defense {
  readonly name: string;
  run(model: Classifier, clean: ImageSplit, context: DefenseContext): DefenseOutcome | Promise<DefenseOutcome>;
}

/** A registered defense: what `mcldef list` shows and how the CLI builds its flags. */
export interface DefenseEntry {
  readonly name: string;
  /** One line. */
  readonly summary: string;
  readonly options: OptionSpecs;
  /**
   * Fraction of the defender's clean data held out for selection (context.heldOut); 0 or
   * absent: the method selects nothing on accuracy and gets all of it.
   */
  readonly heldOutFraction?: number;
  /**
   * When the defense returns its own scan of every class (`DefenseOutcome.scan`): 'always', or
   * only when not told the target. `--verify` scans the model before the defense itself otherwise.
   */
  readonly scansModel?: 'always' | 'without-target';
  /** Builds the defense from checked option values (unset ones absent: the method's defaults). */
  create(options: OptionValues): Defense;
}

/**
 * The outcome of a defense that acts on no particular class (fine-tuning, pruning,
 * unlearning): `seconds.total` is the sum of the stages unless given.
 */
export function untargetedOutcome(
  model: Classifier,
  fields: {
    seconds: Record<string, number>;
    epochs?: DefenseEpoch[];
    details?: Record<string, unknown>;
    /** False with a reason where the defense left the model as it was. */
    unchanged?: string;
    resumed?: ResumedFrom;
  },
): DefenseOutcome {
  const total = fields.seconds.total ?? Object.values(fields.seconds).reduce((sum, s) => sum + s, 0);
  return {
    model,
    report: {
      target: null,
      detected_target: null,
      changed: fields.unchanged === undefined,
      ...(fields.unchanged === undefined ? {} : { reason: fields.unchanged }),
      epochs: fields.epochs ?? [],
      seconds: { ...fields.seconds, total },
      details: fields.details ?? {},
      ...(fields.resumed === undefined ? {} : { resumed: fields.resumed }),
    },
  };
}

/**
 * Ends a training epoch of a defense: the monitor's BA/ASR (chart only; the model is put back
 * in `mode` after it), the epoch record, and a progress line.
 */
export function endEpoch(
  epochs: DefenseEpoch[],
  model: Classifier,
  context: Pick<DefenseContext, 'monitor' | 'progress'>,
  epoch: {
    stage: string;
    label: string;
    index: number;
    total: number;
    lr: number;
    loss: number;
    mode: 'train' | 'eval';
  },
): void {
  const measured = context.monitor?.(model);
  if (epoch.mode === 'train') model.train();
  else model.eval();
  epochs.push({
    epoch: epoch.index,
    lr: epoch.lr,
    loss: epoch.loss,
    ba: measured?.ba ?? null,
    asr: measured?.asr ?? null,
  });
  const shown =
    measured === undefined
      ? ''
      : `  BA ${measured.ba.toFixed(1)}%${measured.asr === null ? '' : `  ASR ${measured.asr.toFixed(1)}%`} (monitor set)`;
  context.progress({
    stage: epoch.stage,
    done: epoch.index + 1,
    total: epoch.total,
    message: `${epoch.label} ${epoch.index + 1}/${epoch.total}  lr ${epoch.lr.toPrecision(3)}  loss ${epoch.loss.toFixed(4)}${shown}`,
  });
}
