// What every inversion returns: an InvertedTrigger, the project's one Trigger type (it
// stamps images) plus what the inversion found (method, target, size, history). The
// classes here are the pattern and mask triggers and the stacks of patterns (several
// starts, the signal stripes); the warp trigger lives in warp.ts beside the resampling it
// applies, which keeps warp.ts → trigger.ts one-way.
import { arange } from '../../engine/creation.js';
import * as F from '../../engine/functional.js';
import { keep, tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import type { Trigger } from '../../attacks/trigger.js';
import type { PeriodicSignal } from './signal.js';

export type InversionMethod = 'pattern' | 'mask' | 'warp' | 'signal';

export interface InversionPass {
  pass: number;
  loss: number;
  attackAccuracy: number;
  regularizer: number;
  /** pattern: non-zero (h, w) positions of the pruned Δ; mask: |m|₁; warp: the shift bound. */
  size: number;
  cost: number;
  improved: boolean;
}

/**
 * An inverted trigger: stamps [0, 1] images (`apply`, from Trigger; `indices` matter only to
 * a trigger that stamps images differently: a stack gives image n pattern n mod K, and
 * without indices uses the position in the batch).
 */
export interface InvertedTrigger extends Trigger {
  readonly method: InversionMethod;
  readonly target: number;
  /**
   * pattern: the additive Δ (C×H×W, in [−1, 1]); mask: the pattern p (C×H×W); warp: the
   * displacement in pixels (2×H×W, x then y).
   */
  readonly pattern: Tensor;
  /** mask method only: m (H×W). */
  readonly mask: Tensor | null;
  /** pattern: non-zero positions; mask: |m|₁ (the detection statistic); warp: the largest shift, pixels. */
  readonly size: number;
  /** Attack accuracy of the returned trigger on the clean data, in [0, 1]. */
  readonly attackAccuracy: number;
  readonly passes: number;
  readonly history: InversionPass[];
  /** Whether any pass reached the attack threshold. */
  readonly found: boolean;
  dispose(): void;
}

/** x' = clamp(x + Δ, 0, 1). */
export function stampAdditive(images: Tensor, delta: Tensor): Tensor {
  return tidy(() => images.add(delta).clamp(0, 1));
}

/** x'ᵢ = clamp(xᵢ + S_{nᵢ mod K}) for patterns S (K×C×H×W), nᵢ the index of image i (default: i). */
export function stampStacked(images: Tensor, patterns: Tensor, indices?: Tensor): Tensor {
  return tidy(() => {
    const count = patterns.size(0);
    if (count === 1) return stampAdditive(images, patterns.select(0, 0));
    const positions = indices ?? arange(0, images.size(0), 1, { dtype: 'int64' });
    return images.add(patterns.indexSelect(0, positions.remainder(count))).clamp(0, 1);
  });
}

/**
 * A pattern trigger: the additive Δ (no mask: clamp(x + Δ)) or Neural Cleanse's blend
 * (1 − m)·x + m·p. The other inverted triggers extend it. It owns `pattern` and `mask`.
 */
export class PatternTrigger implements InvertedTrigger {
  constructor(
    readonly method: InversionMethod,
    readonly target: number,
    readonly pattern: Tensor,
    readonly mask: Tensor | null,
    readonly size: number,
    readonly attackAccuracy: number,
    readonly history: InversionPass[],
    readonly found: boolean,
  ) {}

  get passes(): number {
    return this.history.length;
  }

  apply(images: Tensor): Tensor {
    if (this.mask === null) return stampAdditive(images, this.pattern);
    const mask = this.mask;
    return tidy(() => images.mul(mask.rsub(1)).add(this.pattern.mul(mask)));
  }

  dispose(): void {
    this.pattern.dispose();
    this.mask?.dispose();
  }
}

/**
 * Several additive patterns towards one target, stacked in `patterns` (K×C×H×W): image n of
 * the clean set gets pattern n mod K (`apply`'s indices; purification passes them, so that an
 * image's anchor and its frozen negative carry the same pattern). `pattern` is the first one,
 * for the report.
 */
export class StackedTrigger extends PatternTrigger {
  constructor(
    method: InversionMethod,
    target: number,
    readonly patterns: Tensor,
    size: number,
    attackAccuracy: number,
    history: InversionPass[],
    found: boolean,
  ) {
    // In a scope: the view `select` makes is freed at once.
    super(
      method,
      target,
      keep(tidy(() => patterns.select(0, 0).contiguous())),
      null,
      size,
      attackAccuracy,
      history,
      found,
    );
  }

  override apply(images: Tensor, indices?: Tensor): Tensor {
    return stampStacked(images, this.patterns, indices);
  }

  override dispose(): void {
    this.patterns.dispose();
    super.dispose();
  }
}

/**
 * Pattern triggers inverted independently towards one target (e.g. from different random
 * starts), purified against together: image n gets trigger n mod K. The triggers are left to
 * the caller; the result holds its own copy of their patterns. Its size is the smallest
 * trigger's, its attack accuracy the lowest, and it is found only if every trigger was.
 */
export function stackTriggers(triggers: readonly InvertedTrigger[]): StackedTrigger {
  const first = triggers[0];
  if (first === undefined) throw new RangeError('stackTriggers needs at least one trigger');
  for (const trigger of triggers) {
    if (trigger.method !== 'pattern' || trigger.mask !== null)
      throw new TypeError(`stackTriggers takes additive pattern triggers, not ${trigger.method}`);
    if (trigger.target !== first.target)
      throw new RangeError(`stackTriggers: triggers towards classes ${first.target} and ${trigger.target}`);
  }
  const patterns = keep(
    tidy(() =>
      F.stack(
        triggers.map((trigger) => trigger.pattern),
        0,
      ),
    ),
  );
  return new StackedTrigger(
    'pattern',
    first.target,
    patterns,
    Math.min(...triggers.map((trigger) => trigger.size)),
    Math.min(...triggers.map((trigger) => trigger.attackAccuracy)),
    triggers.flatMap((trigger) => trigger.history),
    triggers.every((trigger) => trigger.found),
  );
}

/**
 * `trigger` with more additive patterns towards its target (e.g. the detection scan's), as
 * one stack: image n gets pattern n mod K, `trigger`'s own first. Its size, attack accuracy
 * and history are `trigger`'s; `patterns` are copied (the caller keeps its own).
 */
export function withPatterns(trigger: InvertedTrigger, patterns: readonly Tensor[]): StackedTrigger {
  if (trigger.method !== 'pattern' || trigger.mask !== null)
    throw new TypeError(`withPatterns takes an additive pattern trigger, not ${trigger.method}`);
  const stacked = keep(tidy(() => F.stack([trigger.pattern, ...patterns], 0)));
  return new StackedTrigger(
    'pattern',
    trigger.target,
    stacked,
    trigger.size,
    trigger.attackAccuracy,
    trigger.history,
    trigger.found,
  );
}

/**
 * A periodic-signal trigger: every stripe of the family that reached the target (`signals`,
 * the best first), stacked (`patterns`, K×C×H×W) as a StackedTrigger: image n of the clean set
 * gets stripe n mod K. `pattern` is the best stripe alone, for the report.
 */
export class SignalTrigger extends StackedTrigger {
  constructor(
    target: number,
    readonly signals: readonly PeriodicSignal[],
    stripes: Tensor,
    attackAccuracy: number,
    history: InversionPass[],
    found: boolean,
  ) {
    super('signal', target, stripes, signals[0]!.amplitude, attackAccuracy, history, found);
  }
}
