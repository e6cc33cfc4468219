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
  const lambda = options.cost ?? (height * width >= 224 * 224 ? 0.001 : 0.01);
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
        if (bestMask !== null && sincePrevious >= patience) break;
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
