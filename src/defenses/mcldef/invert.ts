// Stage 1 of MCLDef: trigger inversion towards a target class (SPEC §2).
//
// 'pattern' (the published code): two free tensors P+, P- (C×H×W, U[0,1]); the pattern
// Δ = clamp(P+) − clamp(P-) is added to the image; loss = CE(model(norm(clamp(x+Δ))), t)
// + cost·R with R = Σ_hw max_c g(P+) + Σ_hw max_c g(P-), g(v) = tanh(v/10)/(2−1e-7) + 0.5;
// Adam(0.1, betas 0.5/0.9); after each pass, entries of clamp(P+) and clamp(P-) below 1/255
// are pruned and the best pattern (attack accuracy ≥ 0.9, smaller R and smaller size) is
// kept, P+ and P- restarting from their own pruned values; the cost adapts like Neural
// Cleanse's. As in the published code, the pruned patterns are those of the pass's last
// batch (taken before its step) and every batch is full (the DataLoader's drop_last).
// 'mask' (the older code, Neural Cleanse): x' = (1−m)·x + m·p with m ∈ [0,1]^{H×W},
// p ∈ [0,1]^{C×H×W}; loss = CE + λ·|m|₁; Adam(lr 0.005); stops after `patience` passes
// without a smaller mask among those reaching the attack accuracy.
// 'warp' (not in the published code, for warping backdoors such as WaNet): a universal
// smooth warp of under a pixel, fitted towards the target (warp.ts).
// 'signal' (not in the published code, for full-image periodic triggers such as SIG): the
// sinusoidal stripe of a fixed family that reaches the target most easily (signal.ts).
import { type Precision, atPrecision, noGrad } from '../../engine/autograd.js';
import { arange, full, rand, tensor } from '../../engine/creation.js';
import * as F from '../../engine/functional.js';
import { Adam } from '../../engine/optim/adam.js';
import { keep, tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import type { ImageSplit } from '../../data/dataset.js';
import { subset } from '../../data/subset.js';
import { normalize } from '../../data/normalization.js';
import type { Module } from '../../nn/module.js';
import { freezeForInversion, passBatches } from './passes.js';
import { fitWarp, identityGrid, warpImages } from './warp.js';
import { type PeriodicSignal, classResponses, signalPattern, signalResponses } from './signal.js';

export type InversionMethod = 'pattern' | 'mask' | 'warp' | 'signal';

export interface InversionOptions {
  method?: InversionMethod;
  /** Passes over the clean data (pattern, mask: 100, as published; warp: 10). */
  passes?: number;
  batchSize?: number;
  /** Adam learning rate (pattern: 0.1, mask: 0.005). */
  lr?: number;
  /** pattern: initial regularizer cost (1e-3); mask: λ (0.01 at 32×32, 0.001 at 224×224). */
  cost?: number;
  /** Attack accuracy a pattern must reach to count (0.9). */
  attackThreshold?: number;
  /**
   * Stop after this many passes without a new best (pattern: off in the published code,
   * Infinity; mask: 30).
   */
  patience?: number;
  seed?: number;
  /**
   * Leave out each pass's last partial batch, as the published DataLoader does (drop_last)
   * (pattern, mask: true; warp: false). With 2,500 images and batch 64 that batch holds 4
   * images, whose Adam step would otherwise follow a 4-image gradient.
   */
  dropLast?: boolean;
  /**
   * pattern: how a new best restarts the free tensors. 'published' (default): clamp(P+) and
   * clamp(P-) as the pass's last batch used them, each pruned on its own, and P+, P- restart
   * from those (overlap kept). 'difference': Δ = P+ − P- at the pass's end, pruned, and P+,
   * P- restart from Δ's positive and negative parts (the overlap cancelled), which shrinks the
   * pattern faster in a short scan: the detection scan uses it (measured in the README).
   */
  restart?: 'published' | 'difference';
  /**
   * 'bfloat16' runs the model's forward and backward passes under bfloat16 autocast
   * (`atPrecision`), about 2.2× faster a pass on CPUs with AMX; the pattern and its optimizer stay
   * float32. Default 'float32', as the published code.
   */
  precision?: Precision;
  /** warp: the largest shift of a control point, in pixels (0.5). */
  warpShift?: number;
  /** signal: the stripes' amplitude, in 255ths (20). */
  signalAmplitude?: number;
  /** Called after each pass. */
  onPass?: (record: InversionPass) => void;
}

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

/** An inverted trigger that can be stamped on [0, 1] images. */
export interface InvertedTrigger {
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
  /**
   * Stamps [0, 1] images. `indices`, the images' positions in their set, matter only to a
   * trigger that stamps images differently (signal: stripe n mod K for image n; without them,
   * the position in the batch).
   */
  apply(images: Tensor, indices?: Tensor): Tensor;
  dispose(): void;
}

/** g(v) = tanh(v/10)/(2 − 1e-7) + 0.5, the published size surrogate. */
export function sizeSurrogate(values: Tensor): Tensor {
  return tidy(() =>
    values
      .div(10)
      .tanh()
      .div(2 - 1e-7)
      .add(0.5),
  );
}

/** R = Σ_hw max_c g(P+) + Σ_hw max_c g(P-). */
export function patternRegularizer(positive: Tensor, negative: Tensor): Tensor {
  return tidy(() => sizeSurrogate(positive).amax(0).sum().add(sizeSurrogate(negative).amax(0).sum()));
}

/** The pattern with entries below 1/255 in magnitude set to zero. */
export function prunePattern(delta: Tensor): Tensor {
  return tidy(() => delta.maskedFill(delta.abs().lt(1 / 255), 0));
}

/**
 * The published pass-end pruning: clamp(P+) and clamp(P-) pruned each on its own (entries
 * below 1/255 set to zero) and Δ = pruned P+ − pruned P-. Both parts are returned so that
 * a new best restarts P+ and P- from them, overlap included, as the published code does.
 */
export function prunePatternPair(
  positive: Tensor,
  negative: Tensor,
): { positive: Tensor; negative: Tensor; delta: Tensor } {
  return tidy(() => {
    const prunedPositive = prunePattern(positive);
    const prunedNegative = prunePattern(negative);
    return { positive: prunedPositive, negative: prunedNegative, delta: prunedPositive.sub(prunedNegative) };
  });
}

/** Number of (h, w) positions where Σ_c |Δ| is non-zero. */
export function patternSize(delta: Tensor): number {
  return tidy(() => delta.abs().sum(0).gt(0).sum().item());
}

/** x' = clamp(x + Δ, 0, 1). */
export function stampAdditive(images: Tensor, delta: Tensor): Tensor {
  return tidy(() => images.add(delta).clamp(0, 1));
}

/** The adaptive cost of the published code (Neural Cleanse's schedule). */
export class CostSchedule {
  #above = 0;
  #below = 0;

  constructor(
    public cost: number,
    readonly patience = 10,
    readonly multiplier = 1.5,
  ) {}

  /** Updates the cost after a pass with the given attack accuracy. */
  update(attackAccuracy: number, threshold: number): number {
    if (attackAccuracy >= threshold) {
      this.#above++;
      this.#below = 0;
    } else {
      this.#below++;
      this.#above = 0;
    }
    if (this.#above >= this.patience) {
      this.cost *= this.multiplier;
      this.#above = 0;
    } else if (this.#below >= this.patience) {
      this.cost /= this.multiplier ** 1.5;
      this.#below = 0;
    }
    return this.cost;
  }
}

/** Best-pattern bookkeeping: a pass counts only if it is accurate enough, smaller in R and in size. */
export class BestPattern {
  regularizer = Infinity;
  size = Infinity;
  delta: Tensor | null = null;
  attackAccuracy = 0;

  /** Offers a pass's pruned pattern; returns whether it became the best (then owned here). */
  offer(delta: Tensor, attackAccuracy: number, regularizer: number, size: number, threshold: number): boolean {
    if (attackAccuracy >= threshold && regularizer < this.regularizer && size < this.size) {
      this.delta?.dispose();
      this.delta = keep(delta);
      this.regularizer = regularizer;
      this.size = size;
      this.attackAccuracy = attackAccuracy;
      return true;
    }
    return false;
  }
}

class Trigger implements InvertedTrigger {
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

/** Inverts a trigger that sends the clean images to `target`. */
export function invertTrigger(
  model: Module,
  clean: ImageSplit,
  target: number,
  options: InversionOptions = {},
): InvertedTrigger {
  if (!Number.isInteger(target) || target < 0 || target >= clean.numClasses) {
    throw new RangeError(`target class ${target} is out of range for ${clean.numClasses} classes`);
  }
  const method = options.method ?? 'pattern';
  if (method === 'warp') return invertWarp(model, clean, target, options);
  if (method === 'signal') return invertSignal(model, clean, target, options);
  const unfreeze = freezeForInversion(model);
  try {
    return method === 'pattern'
      ? invertPattern(model, clean, target, options)
      : invertMask(model, clean, target, options);
  } finally {
    unfreeze();
  }
}

function invertPattern(model: Module, clean: ImageSplit, target: number, options: InversionOptions): InvertedTrigger {
  const { channels, height, width } = clean;
  const passes = options.passes ?? 100;
  const batchSize = options.batchSize ?? 64;
  const threshold = options.attackThreshold ?? 0.9;
  const patience = options.patience ?? Infinity;
  const seed = options.seed ?? 0;
  const precision = options.precision ?? 'float32';
  const dropLast = options.dropLast ?? true;
  const restart = options.restart ?? 'published';
  const positive = keep(rand([channels, height, width]).requiresGrad_(true));
  const negative = keep(rand([channels, height, width]).requiresGrad_(true));
  const optimizer = new Adam([positive, negative], { lr: options.lr ?? 0.1, betas: [0.5, 0.9] });
  const schedule = new CostSchedule(options.cost ?? 1e-3);
  const best = new BestPattern();
  const history: InversionPass[] = [];
  let sincePrevious = 0;
  let lastDelta: Tensor | null = null;
  let lastAccuracy = 0;
  // clamp(P+) and clamp(P-) as the latest batch used them, before its step.
  let usedPositive: Tensor | null = null;
  let usedNegative: Tensor | null = null;
  try {
    for (let pass = 0; pass < passes; pass++) {
      let seen = 0;
      let hits = 0;
      let lossSum = 0;
      let regularizerSum = 0;
      let batches = 0;
      const cost = schedule.cost;
      for (const images of passBatches(clean, batchSize, seed, pass, dropLast)) {
        const [loss, regularizer, correct] = tidy(() => {
          const clampedPositive = positive.clamp(0, 1);
          const clampedNegative = negative.clamp(0, 1);
          usedPositive?.dispose();
          usedNegative?.dispose();
          usedPositive = keep(clampedPositive.detach());
          usedNegative = keep(clampedNegative.detach());
          const delta = clampedPositive.sub(clampedNegative);
          const logits = atPrecision(precision, normalize(stampAdditive(images, delta), clean.normalization), (input) =>
            model.forward(input),
          );
          const targets = full([images.size(0)], target, { dtype: 'int64' });
          const regularizer = patternRegularizer(positive, negative);
          const loss = F.crossEntropy(logits, targets).add(regularizer.mul(cost));
          optimizer.zeroGrad();
          loss.backward();
          optimizer.step();
          return [loss.item(), regularizer.item(), logits.argmax(1).eq(target).sum().item()] as const;
        });
        if (!Number.isFinite(loss)) throw new Error(`trigger inversion diverged: loss ${loss} in pass ${pass}`);
        seen += images.size(0);
        hits += correct;
        lossSum += loss;
        regularizerSum += regularizer;
        batches++;
        images.dispose();
      }
      const attackAccuracy = hits / seen;
      const meanRegularizer = regularizerSum / batches;
      const parts = noGrad(() =>
        restart === 'published'
          ? prunePatternPair(usedPositive!, usedNegative!)
          : tidy(() => {
              const delta = prunePattern(positive.clamp(0, 1).sub(negative.clamp(0, 1)));
              return { positive: delta.relu(), negative: delta.neg().relu(), delta };
            }),
      );
      const pruned = parts.delta;
      const size = patternSize(pruned);
      lastDelta?.dispose();
      lastDelta = keep(pruned.clone());
      lastAccuracy = attackAccuracy;
      const improved = best.offer(pruned, attackAccuracy, meanRegularizer, size, threshold);
      if (improved) {
        // Restart P+ and P- from the pruned parts (see `restart`).
        noGrad(() => {
          positive.copy_(parts.positive);
          negative.copy_(parts.negative);
        });
        sincePrevious = 0;
      } else {
        pruned.dispose();
        sincePrevious++;
      }
      parts.positive.dispose();
      parts.negative.dispose();
      schedule.update(attackAccuracy, threshold);
      const record: InversionPass = {
        pass,
        loss: lossSum / batches,
        attackAccuracy,
        regularizer: meanRegularizer,
        size,
        cost,
        improved,
      };
      history.push(record);
      options.onPass?.(record);
      if (best.delta !== null && sincePrevious >= patience) break;
    }
  } finally {
    optimizer.dispose();
    positive.dispose();
    negative.dispose();
    (usedPositive as Tensor | null)?.dispose();
    (usedNegative as Tensor | null)?.dispose();
  }
  const found = best.delta !== null;
  const delta = found ? best.delta! : lastDelta!;
  if (found) lastDelta?.dispose();
  return new Trigger(
    'pattern',
    target,
    delta,
    null,
    found ? best.size : patternSize(delta),
    found ? best.attackAccuracy : lastAccuracy,
    history,
    found,
  );
}

function invertMask(model: Module, clean: ImageSplit, target: number, options: InversionOptions): InvertedTrigger {
  const { channels, height, width } = clean;
  const passes = options.passes ?? 100;
  const batchSize = options.batchSize ?? 64;
  const threshold = options.attackThreshold ?? 0.9;
  const patience = options.patience ?? 30;
  const lambda = options.cost ?? (height * width >= 224 * 224 ? 0.001 : 0.01);
  const seed = options.seed ?? 0;
  const precision = options.precision ?? 'float32';
  const dropLast = options.dropLast ?? true;
  // Free variables in tanh space, as Neural Cleanse parameterizes them.
  const maskRaw = keep(rand([1, 1, height, width]).mul(2).sub(1).requiresGrad_(true));
  const patternRaw = keep(rand([1, channels, height, width]).mul(2).sub(1).requiresGrad_(true));
  const optimizer = new Adam([maskRaw, patternRaw], { lr: options.lr ?? 0.005, betas: [0.5, 0.9] });
  const history: InversionPass[] = [];
  let bestNorm = Infinity;
  let bestMask: Tensor | null = null;
  let bestPattern: Tensor | null = null;
  let bestAccuracy = 0;
  let sincePrevious = 0;
  let lastAccuracy = 0;
  const squash = (raw: Tensor): Tensor => raw.tanh().div(2).add(0.5);
  try {
    for (let pass = 0; pass < passes; pass++) {
      let seen = 0;
      let hits = 0;
      let lossSum = 0;
      let batches = 0;
      for (const images of passBatches(clean, batchSize, seed, pass, dropLast)) {
        const [loss, correct] = tidy(() => {
          const mask = squash(maskRaw);
          const stamped = images.mul(mask.rsub(1)).add(squash(patternRaw).mul(mask));
          const logits = atPrecision(precision, normalize(stamped, clean.normalization), (input) =>
            model.forward(input),
          );
          const targets = full([images.size(0)], target, { dtype: 'int64' });
          const loss = F.crossEntropy(logits, targets).add(mask.sum().mul(lambda));
          optimizer.zeroGrad();
          loss.backward();
          optimizer.step();
          return [loss.item(), logits.argmax(1).eq(target).sum().item()] as const;
        });
        if (!Number.isFinite(loss)) throw new Error(`trigger inversion diverged: loss ${loss} in pass ${pass}`);
        seen += images.size(0);
        hits += correct;
        lossSum += loss;
        batches++;
        images.dispose();
      }
      const attackAccuracy = hits / seen;
      lastAccuracy = attackAccuracy;
      const norm = noGrad(() => tidy(() => squash(maskRaw).sum().item()));
      const improved = attackAccuracy >= threshold && norm < bestNorm;
      if (improved) {
        bestMask?.dispose();
        bestPattern?.dispose();
        bestMask = keep(noGrad(() => tidy(() => squash(maskRaw).reshape([height, width]))));
        bestPattern = keep(noGrad(() => tidy(() => squash(patternRaw).reshape([channels, height, width]))));
        bestNorm = norm;
        bestAccuracy = attackAccuracy;
        sincePrevious = 0;
      } else {
        sincePrevious++;
      }
      const record: InversionPass = {
        pass,
        loss: lossSum / batches,
        attackAccuracy,
        regularizer: norm,
        size: norm,
        cost: lambda,
        improved,
      };
      history.push(record);
      options.onPass?.(record);
      if (bestMask !== null && sincePrevious >= patience) break;
    }
    const found = bestMask !== null;
    if (!found) {
      bestMask = keep(noGrad(() => tidy(() => squash(maskRaw).reshape([height, width]))));
      bestPattern = keep(noGrad(() => tidy(() => squash(patternRaw).reshape([channels, height, width]))));
      bestNorm = noGrad(() => tidy(() => bestMask!.sum().item()));
    }
    return new Trigger(
      'mask',
      target,
      bestPattern!,
      bestMask,
      bestNorm,
      found ? bestAccuracy : lastAccuracy,
      history,
      found,
    );
  } finally {
    optimizer.dispose();
    maskRaw.dispose();
    patternRaw.dispose();
  }
}

/** A warp trigger: resamples images through the fitted grid (1×H×W×2); `pattern` holds its shifts. */
class WarpTrigger extends Trigger {
  constructor(
    target: number,
    readonly grid: Tensor,
    shifts: Tensor,
    size: number,
    attackAccuracy: number,
    history: InversionPass[],
    found: boolean,
  ) {
    super('warp', target, shifts, null, size, attackAccuracy, history, found);
  }

  override apply(images: Tensor): Tensor {
    return warpImages(images, this.grid);
  }

  override dispose(): void {
    this.grid.dispose();
    super.dispose();
  }
}

/** The 'warp' inversion: the universal warp fitted towards `target` (warp.ts). */
function invertWarp(model: Module, clean: ImageSplit, target: number, options: InversionOptions): InvertedTrigger {
  const fit = fitWarp(model, clean, target, {
    ...(options.passes === undefined ? {} : { passes: options.passes }),
    ...(options.warpShift === undefined ? {} : { shift: options.warpShift }),
    ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
    ...(options.seed === undefined ? {} : { seed: options.seed }),
    ...(options.precision === undefined ? {} : { precision: options.precision }),
    ...(options.onPass === undefined ? {} : { onPass: options.onPass }),
  });
  const found = fit.attackAccuracy >= (options.attackThreshold ?? 0.9);
  const { height, width } = clean;
  // The displacement in pixels (2×H×W) for the report, and its largest length as the size.
  const [displacement, size] = noGrad(() =>
    tidy(() => {
      const pixels = tensor([(width - 1) / 2, (height - 1) / 2], { shape: [1, 1, 1, 2] });
      const shift = fit.grid.sub(identityGrid(height, width)).mul(pixels).squeeze(0).permute([2, 0, 1]).contiguous();
      return [keep(shift), shift.pow(2).sum(0).sqrt().max().item()] as const;
    }),
  );
  return new WarpTrigger(target, fit.grid, displacement, size, fit.attackAccuracy, fit.history, found);
}

/**
 * Several additive patterns towards one target, stacked in `patterns` (K×C×H×W): image n of
 * the clean set gets pattern n mod K (`apply`'s indices; purification passes them, so that an
 * image's anchor and its frozen negative carry the same pattern). `pattern` is the first one,
 * for the report.
 */
export class StackedTrigger extends Trigger {
  constructor(
    method: InversionMethod,
    target: number,
    readonly patterns: Tensor,
    size: number,
    attackAccuracy: number,
    history: InversionPass[],
    found: boolean,
  ) {
    super(method, target, keep(patterns.select(0, 0).contiguous()), null, size, attackAccuracy, history, found);
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

/** x'ᵢ = clamp(xᵢ + S_{nᵢ mod K}) for patterns S (K×C×H×W), nᵢ the index of image i (default: i). */
function stampStacked(images: Tensor, patterns: Tensor, indices?: Tensor): Tensor {
  return tidy(() => {
    const count = patterns.size(0);
    if (count === 1) return stampAdditive(images, patterns.select(0, 0));
    const positions = indices ?? arange(0, images.size(0), 1, { dtype: 'int64' });
    return images.add(patterns.indexSelect(0, positions.remainder(count))).clamp(0, 1);
  });
}

/**
 * The 'signal' inversion: the stripes of the periodic-signal family (signal.ts) that send at
 * least `attackThreshold` of at most 500 of the clean images (stratified, seeded) to `target`,
 * the best first, or the best one alone where none does. A backdoor that answers to more than
 * one stripe (a neighbouring frequency, another phase) is purified against each of them: on the
 * synthetic SIG model of test/defenses twelve stripes reached the target; purified against the
 * best alone (published loss) its ASR fell from 93 % to 52 %, against all of them to 0 %. The
 * attack accuracy is measured on all the clean images; the size is the amplitude, in 255ths.
 */
function invertSignal(model: Module, clean: ImageSplit, target: number, options: InversionOptions): InvertedTrigger {
  const precision = options.precision ?? 'float32';
  const threshold = options.attackThreshold ?? 0.9;
  const scanSet = clean.count > 500 ? subset(clean, 500 / clean.count, { seed: options.seed ?? 0 }) : clean;
  let chosen: PeriodicSignal[];
  try {
    const ranked = signalResponses(model, scanSet, {
      ...(options.signalAmplitude === undefined ? {} : { amplitude: options.signalAmplitude }),
      precision,
    }).sort((a, b) => a.losses[target]! - b.losses[target]!);
    const reaching = ranked.filter((response) => response.reach[target]! >= threshold);
    chosen = (reaching.length > 0 ? reaching : ranked.slice(0, 1)).map((response) => response.signal);
  } finally {
    if (scanSet !== clean) scanSet.dispose();
  }
  const { channels, height, width } = clean;
  const stripes = keep(
    tidy(() =>
      F.stack(
        chosen.map((signal) => signalPattern(signal, channels, height, width)),
        0,
      ),
    ),
  );
  const unfreeze = freezeForInversion(model);
  try {
    // Attack accuracy and loss over all the clean images, each stamped as purification will.
    const { losses, reach } = classResponses(
      model,
      clean,
      (images) => stampStacked(images, stripes),
      options.batchSize ?? 250,
      precision,
    );
    const attackAccuracy = reach[target]!;
    const record: InversionPass = {
      pass: 0,
      loss: losses[target]!,
      attackAccuracy,
      regularizer: 0,
      size: chosen[0]!.amplitude,
      cost: 0,
      improved: true,
    };
    options.onPass?.(record);
    return new SignalTrigger(target, chosen, stripes, attackAccuracy, [record], attackAccuracy >= threshold);
  } catch (error) {
    stripes.dispose();
    throw error;
  } finally {
    unfreeze();
  }
}
