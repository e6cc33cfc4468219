// The 'mask' inversion (MCLDef's older code, Neural Cleanse): x' = (1−m)·x + m·p with
// m ∈ [0,1]^{H×W}, p ∈ [0,1]^{C×H×W}; loss = CE + λ·|m|₁; Adam(lr 0.005); stops after
// `patience` passes without a smaller mask among those reaching the attack accuracy.
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
import { CostSchedule } from './pattern.js';
import { type InversionPass, type InvertedTrigger, PatternTrigger } from './trigger.js';

export interface MaskInversionOptions {
  /** Passes over the clean data (100). */
  passes?: number;
  /** Images per Adam step (64). */
  batchSize?: number;
  /** Adam learning rate (0.005). */
  lr?: number;
  /** λ, the weight of |m|₁ (0.01 at 32×32, 0.001 from 224×224 up). */
  cost?: number;
  /** Attack accuracy a mask must reach to count (0.9). */
  attackThreshold?: number;
  /** Stop after this many passes without a smaller mask (30). */
  patience?: number;
  seed?: number;
  /** Leave out each pass's last partial batch (true), as the pattern inversion does. */
  dropLast?: boolean;
  /** 'bfloat16': the model's passes under bfloat16 autocast; mask and pattern stay float32. */
  precision?: Precision;
  /** Called after each pass. */
  onPass?: (record: InversionPass) => void;
  /** Neural Cleanse's adaptive λ (instead of the fixed `cost`, and the patience above). */
  costSchedule?: CostScheduleOptions;
}

/** Neural Cleanse's adaptive weight of |m|₁ (BackdoorBench config/defense/nc/cifar10.yaml). */
export interface CostScheduleOptions {
  /** The first λ (1e-3). */
  init: number;
  /** λ × multiplier after `patience` passes at the attack threshold; λ ÷ multiplier^1.5 after as many below (2). */
  multiplier: number;
  /** 5. */
  patience: number;
  /** Stop once λ has gone both up and down and the best mask has not shrunk below this fraction of the best so far for `earlyStopPatience` passes (0.99, 25). */
  earlyStopThreshold: number;
  earlyStopPatience: number;
}

/**
 * Neural Cleanse's λ schedule with its early stop: the published up/down schedule
 * (CostSchedule), and a stop once λ has gone both ways and the best mask has stopped shrinking.
 * (Neural Cleanse also restarts a λ of 0; λ starts above 0 here and never reaches it.)
 */
export class NeuralCleanseSchedule {
  readonly #costs: CostSchedule;
  #wentUp = false;
  #wentDown = false;
  #stalled = 0;
  #earlyStopBest = Infinity;

  constructor(readonly options: CostScheduleOptions) {
    this.#costs = new CostSchedule(options.init, options.patience, options.multiplier);
  }

  get cost(): number {
    return this.#costs.cost;
  }

  /** `reached`: the pass reached the attack threshold; `bestNorm`: the smallest mask so far (Infinity: none). Returns true to stop. */
  update(reached: boolean, bestNorm: number): boolean {
    const { earlyStopThreshold, earlyStopPatience } = this.options;
    if (bestNorm < Infinity)
      this.#stalled = bestNorm >= earlyStopThreshold * this.#earlyStopBest ? this.#stalled + 1 : 0;
    this.#earlyStopBest = Math.min(bestNorm, this.#earlyStopBest);
    if (this.#wentUp && this.#wentDown && this.#stalled >= earlyStopPatience) return true;
    const before = this.#costs.cost;
    const after = this.#costs.update(reached ? 1 : 0, 1);
    if (after > before) this.#wentUp = true;
    if (after < before) this.#wentDown = true;
    return false;
  }
}

/** Neural Cleanse's mask inversion towards `target` (see the file's header). */
export function invertMask(
  model: Module,
  clean: ImageSplit,
  target: number,
  options: MaskInversionOptions = {},
): InvertedTrigger {
  checkTarget(clean, target);
  const { channels, height, width } = clean;
  const passes = options.passes ?? 100;
  const batchSize = options.batchSize ?? 64;
  const threshold = options.attackThreshold ?? 0.9;
  const patience = options.patience ?? 30;
  const schedule = options.costSchedule === undefined ? null : new NeuralCleanseSchedule(options.costSchedule);
  const fixedLambda = options.cost ?? (height * width >= 224 * 224 ? 0.001 : 0.01);
  const seed = options.seed ?? 0;
  const precision = options.precision ?? 'float32';
  const dropLast = options.dropLast ?? true;
  const unfreeze = freezeForInversion(model);
  // The smallest mask reaching the threshold and its pattern (owned here until returned).
  let bestMask: Tensor | null = null;
  let bestPattern: Tensor | null = null;
  try {
    // Free variables in tanh space, as Neural Cleanse parameterizes them (in a scope: the
    // draws in [0, 1) before the shift to [−1, 1) are freed at once).
    using maskRaw = keep(tidy(() => rand([1, 1, height, width]).mul(2).sub(1).requiresGrad_(true)));
    using patternRaw = keep(tidy(() => rand([1, channels, height, width]).mul(2).sub(1).requiresGrad_(true)));
    const optimizer = new Adam([maskRaw, patternRaw], { lr: options.lr ?? 0.005, betas: [0.5, 0.9] });
    const history: InversionPass[] = [];
    let bestNorm = Infinity;
    let bestAccuracy = 0;
    let sincePrevious = 0;
    let lastAccuracy = 0;
    const squash = (raw: Tensor): Tensor => raw.tanh().div(2).add(0.5);
    try {
      for (let pass = 0; pass < passes; pass++) {
        const lambda = schedule?.cost ?? fixedLambda;
        let seen = 0;
        let hits = 0;
        let lossSum = 0;
        let batches = 0;
        for (const images of passBatches(clean, batchSize, seed, pass, dropLast)) {
          try {
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
          } finally {
            images.dispose();
          }
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
        if (schedule !== null) {
          if (schedule.update(attackAccuracy >= threshold, bestNorm)) break;
        } else if (bestMask !== null && sincePrevious >= patience) break;
      }
      const found = bestMask !== null;
      if (!found) {
        bestMask = keep(noGrad(() => tidy(() => squash(maskRaw).reshape([height, width]))));
        bestPattern = keep(noGrad(() => tidy(() => squash(patternRaw).reshape([channels, height, width]))));
        bestNorm = noGrad(() => tidy(() => bestMask!.sum().item()));
      }
      return new PatternTrigger(
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
    }
  } catch (error) {
    // Nothing is returned: the best mask and pattern go too.
    (bestMask as Tensor | null)?.dispose();
    (bestPattern as Tensor | null)?.dispose();
    throw error;
  } finally {
    unfreeze();
  }
}
