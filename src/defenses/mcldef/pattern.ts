// The 'pattern' inversion, as the published code does it (SPEC §2): two free tensors P+, P-
// (C×H×W, U[0,1]); the pattern Δ = clamp(P+) − clamp(P-) is added to the image;
// loss = CE(model(norm(clamp(x+Δ))), t) + cost·R with R = Σ_hw max_c g(P+) + Σ_hw max_c g(P-),
// g(v) = tanh(v/10)/(2−1e-7) + 0.5; Adam(0.1, betas 0.5/0.9); after each pass, entries of
// clamp(P+) and clamp(P-) below 1/255 are pruned and the best pattern (attack accuracy ≥ 0.9,
// smaller R and smaller size) is kept, P+ and P- restarting from their own pruned values; the
// cost adapts like Neural Cleanse's. As in the published code, the pruned patterns are those
// of the pass's last batch (taken before its step) and every batch is full (the DataLoader's
// drop_last).
import { type Precision, atPrecision, noGrad } from '../../engine/autograd.js';
import { full, rand } from '../../engine/creation.js';
import * as F from '../../engine/functional.js';
import { Adam } from '../../engine/optim/adam.js';
import { keep, tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import type { ImageSplit } from '../../data/dataset.js';
import { normalize } from '../../data/normalization.js';
import type { Module } from '../../nn/module.js';
import { checkTarget, freezeForInversion, passBatches } from './passes.js';
import { type InversionPass, type InvertedTrigger, PatternTrigger, stampAdditive } from './trigger.js';

export interface PatternInversionOptions {
  /** Passes over the clean data (100, as published). */
  passes?: number;
  /** Images per Adam step (64). */
  batchSize?: number;
  /** Adam learning rate (0.1). */
  lr?: number;
  /** Initial regularizer cost (1e-3); it adapts (CostSchedule). */
  cost?: number;
  /** Attack accuracy a pattern must reach to count (0.9). */
  attackThreshold?: number;
  /** Stop after this many passes without a new best (off in the published code: Infinity). */
  patience?: number;
  seed?: number;
  /**
   * Leave out each pass's last partial batch, as the published DataLoader does (drop_last)
   * (true). With 2,500 images and batch 64 that batch holds 4 images, whose Adam step would
   * otherwise follow a 4-image gradient.
   */
  dropLast?: boolean;
  /**
   * How a new best restarts the free tensors. 'published' (default): clamp(P+) and clamp(P-)
   * as the pass's last batch used them, each pruned on its own, and P+, P- restart from those
   * (overlap kept). 'difference': Δ = P+ − P- at the pass's end, pruned, and P+, P- restart
   * from Δ's positive and negative parts (the overlap cancelled), which shrinks the pattern
   * faster in a short scan: the detection scan uses it (measured in the README).
   */
  restart?: 'published' | 'difference';
  /**
   * 'bfloat16' runs the model's forward and backward passes under bfloat16 autocast
   * (`atPrecision`), about 2.2× faster a pass on CPUs with AMX; the pattern and its optimizer stay
   * float32. Default 'float32', as the published code.
   */
  precision?: Precision;
  /** Called after each pass. */
  onPass?: (record: InversionPass) => void;
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

/** The published pattern inversion towards `target` (see the file's header). */
export function invertPattern(
  model: Module,
  clean: ImageSplit,
  target: number,
  options: PatternInversionOptions = {},
): InvertedTrigger {
  checkTarget(clean, target);
  const { channels, height, width } = clean;
  const passes = options.passes ?? 100;
  const batchSize = options.batchSize ?? 64;
  const threshold = options.attackThreshold ?? 0.9;
  const patience = options.patience ?? Infinity;
  const seed = options.seed ?? 0;
  const precision = options.precision ?? 'float32';
  const dropLast = options.dropLast ?? true;
  const restart = options.restart ?? 'published';
  const unfreeze = freezeForInversion(model);
  const best = new BestPattern();
  // The latest pass's pruned pattern: the result when no pass reaches the threshold.
  let lastDelta: Tensor | null = null;
  try {
    using positive = keep(rand([channels, height, width]).requiresGrad_(true));
    using negative = keep(rand([channels, height, width]).requiresGrad_(true));
    const optimizer = new Adam([positive, negative], { lr: options.lr ?? 0.1, betas: [0.5, 0.9] });
    const schedule = new CostSchedule(options.cost ?? 1e-3);
    const history: InversionPass[] = [];
    let sincePrevious = 0;
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
          try {
            const [loss, regularizer, correct] = tidy(() => {
              const clampedPositive = positive.clamp(0, 1);
              const clampedNegative = negative.clamp(0, 1);
              usedPositive?.dispose();
              usedNegative?.dispose();
              usedPositive = keep(clampedPositive.detach());
              usedNegative = keep(clampedNegative.detach());
              const delta = clampedPositive.sub(clampedNegative);
              const logits = atPrecision(
                precision,
                normalize(stampAdditive(images, delta), clean.normalization),
                (input) => model.forward(input),
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
          } finally {
            images.dispose();
          }
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
        let improved = false;
        let size: number;
        try {
          size = patternSize(pruned);
          lastDelta?.dispose();
          lastDelta = keep(pruned.clone());
          lastAccuracy = attackAccuracy;
          improved = best.offer(pruned, attackAccuracy, meanRegularizer, size, threshold);
          if (improved) {
            // Restart P+ and P- from the pruned parts (see `restart`).
            noGrad(() => {
              positive.copy_(parts.positive);
              negative.copy_(parts.negative);
            });
            sincePrevious = 0;
          } else {
            sincePrevious++;
          }
        } finally {
          // A new best owns `pruned`; everything else of the pass's parts goes.
          if (!improved) pruned.dispose();
          parts.positive.dispose();
          parts.negative.dispose();
        }
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
      (usedPositive as Tensor | null)?.dispose();
      (usedNegative as Tensor | null)?.dispose();
    }
    const found = best.delta !== null;
    const delta = found ? best.delta! : lastDelta!;
    const size = found ? best.size : patternSize(delta);
    if (found) lastDelta?.dispose();
    return new PatternTrigger(
      'pattern',
      target,
      delta,
      null,
      size,
      found ? best.attackAccuracy : lastAccuracy,
      history,
      found,
    );
  } catch (error) {
    // Nothing is returned: the best and the latest pattern go too.
    best.delta?.dispose();
    (lastDelta as Tensor | null)?.dispose();
    throw error;
  } finally {
    unfreeze();
  }
}
