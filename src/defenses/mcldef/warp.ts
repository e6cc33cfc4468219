// A universal warp towards a class, for warping backdoors such as WaNet (not in the published
// code): x' = gridSample(x, identity + flow), the flow a k×k control grid of shifts of at most
// `shift` pixels (tanh-bounded), upsampled bicubically to H×W, as WaNet builds its own warp.
// The control grid is fitted from zero with Adam (lr 0.1) to minimize CE(model(norm(x')), t).
// A clean class cannot be reached by bending every image by under a pixel; a warping
// backdoor's target can (measured on the WaNet model of `bench:attacks`: loss 0.00 and
// 100 % reached for the target, 5–9 for the other classes). Detection compares the classes'
// losses; the fitted warp is also the inverted trigger of such a backdoor (method 'warp',
// `invertWarp`).
import { type Precision, atPrecision, noGrad } from '../../engine/autograd.js';
import { full, linspace, tensor, zeros } from '../../engine/creation.js';
import * as F from '../../engine/functional.js';
import { Adam } from '../../engine/optim/adam.js';
import { keep, tidy } from '../../engine/scope.js';
import { type Tensor, callOp } from '../../engine/tensor.js';
import type { ImageSplit } from '../../data/dataset.js';
import { normalize } from '../../data/normalization.js';
import type { Module } from '../../nn/module.js';
import { checkTarget, freezeForInversion, passBatches } from './passes.js';
import { type InversionPass, type InvertedTrigger, PatternTrigger } from './trigger.js';

export interface WarpOptions {
  /** Largest shift of a control point, in pixels (0.5: WaNet's strength 0.5 moves pixels by about as much). */
  shift?: number;
  /** Control grid size (4, as WaNet's). */
  gridSize?: number;
  /** Passes over the images (10). */
  passes?: number;
  batchSize?: number;
  seed?: number;
  precision?: Precision;
  onPass?: (record: InversionPass) => void;
}

export const DEFAULT_WARP_SHIFT = 0.5;
export const DEFAULT_WARP_PASSES = 10;

export interface WarpFit {
  /** Mean cross-entropy to the class over the last pass. */
  loss: number;
  /** Attack accuracy of the last pass, in [0, 1]. */
  attackAccuracy: number;
  history: InversionPass[];
  /** The sampling grid, 1×H×W×2 (owned by the caller). */
  grid: Tensor;
}

/** The identity sampling grid (1×H×W×2, x then y, in [−1, 1], corners aligned). */
export function identityGrid(height: number, width: number): Tensor {
  return tidy(() => {
    const xs = linspace(-1, 1, width).reshape([1, 1, width]).expand([1, height, width]);
    const ys = linspace(-1, 1, height).reshape([1, height, 1]).expand([1, height, width]);
    return F.stack([xs, ys], 3);
  });
}

/** The flow (1×H×W×2, normalized coordinates) of control values w (1×2×k×k). */
function warpFlow(raw: Tensor, shift: number, height: number, width: number): Tensor {
  return tidy(() => {
    // A shift of s pixels is 2s/(W−1) in normalized x and 2s/(H−1) in normalized y.
    const scale = tensor([(2 * shift) / (width - 1), (2 * shift) / (height - 1)], { shape: [1, 2, 1, 1] });
    const control = raw.tanh().mul(scale);
    return callOp('upsample_bicubic2d.vec', control.handle, [height, width], true, null).permute([0, 2, 3, 1]);
  });
}

/** Images resampled through a sampling grid (1×H×W×2), as WaNet applies its warp. */
export function warpImages(images: Tensor, grid: Tensor): Tensor {
  return tidy(() => F.gridSample(images, grid.expand([images.size(0), -1, -1, -1]), { alignCorners: true }));
}

/** Fits a universal warp towards `label` (see the file's header). */
export function fitWarp(model: Module, images: ImageSplit, label: number, options: WarpOptions = {}): WarpFit {
  const { height, width } = images;
  const shift = options.shift ?? DEFAULT_WARP_SHIFT;
  const k = options.gridSize ?? 4;
  const passes = options.passes ?? DEFAULT_WARP_PASSES;
  const precision = options.precision ?? 'float32';
  const unfreeze = freezeForInversion(model);
  const raw = keep(zeros([1, 2, k, k]).requiresGrad_(true));
  const identity = keep(identityGrid(height, width));
  const optimizer = new Adam([raw], { lr: 0.1 });
  const history: InversionPass[] = [];
  try {
    for (let pass = 0; pass < passes; pass++) {
      let lossSum = 0;
      let hits = 0;
      let seen = 0;
      for (const batch of passBatches(images, options.batchSize ?? 64, options.seed ?? 0, pass)) {
        try {
          const [loss, correct] = tidy(() => {
            const warped = warpImages(batch, identity.add(warpFlow(raw, shift, height, width)));
            const logits = atPrecision(precision, normalize(warped, images.normalization), (x) => model.forward(x));
            const loss = F.crossEntropy(logits, full([batch.size(0)], label, { dtype: 'int64' }));
            optimizer.zeroGrad();
            loss.backward();
            optimizer.step();
            return [loss.item(), logits.argmax(1).eq(label).sum().item()] as const;
          });
          if (!Number.isFinite(loss)) throw new Error(`warp inversion diverged: loss ${loss} for class ${label}`);
          lossSum += loss * batch.size(0);
          hits += correct;
          seen += batch.size(0);
        } finally {
          batch.dispose();
        }
      }
      const record: InversionPass = {
        pass,
        loss: lossSum / seen,
        attackAccuracy: hits / seen,
        regularizer: 0,
        size: shift,
        cost: 0,
        improved: false,
      };
      history.push(record);
      options.onPass?.(record);
    }
    const grid = keep(noGrad(() => tidy(() => identity.add(warpFlow(raw, shift, height, width)))));
    const last = history.at(-1);
    return { loss: last?.loss ?? Infinity, attackAccuracy: last?.attackAccuracy ?? 0, history, grid };
  } finally {
    optimizer.dispose();
    raw.dispose();
    identity.dispose();
    unfreeze();
  }
}

/** The warp inversion's settings (InversionOptions with method 'warp'). */
export interface WarpInversionOptions {
  /** Passes over the clean data (10). */
  passes?: number;
  /** Images per Adam step (64). */
  batchSize?: number;
  seed?: number;
  precision?: Precision;
  /** Attack accuracy the warp must reach to count as found (0.9). */
  attackThreshold?: number;
  /** The largest shift of a control point, in pixels (0.5). */
  warpShift?: number;
  /** Called after each pass. */
  onPass?: (record: InversionPass) => void;
}

/** A warp trigger: resamples images through the fitted grid (1×H×W×2); `pattern` holds its shifts. */
export class WarpTrigger extends PatternTrigger {
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

/** The 'warp' inversion: the universal warp fitted towards `target` (fitWarp). */
export function invertWarp(
  model: Module,
  clean: ImageSplit,
  target: number,
  options: WarpInversionOptions = {},
): InvertedTrigger {
  checkTarget(clean, target);
  const fit = fitWarp(model, clean, target, {
    ...(options.passes === undefined ? {} : { passes: options.passes }),
    ...(options.warpShift === undefined ? {} : { shift: options.warpShift }),
    ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
    ...(options.seed === undefined ? {} : { seed: options.seed }),
    ...(options.precision === undefined ? {} : { precision: options.precision }),
    ...(options.onPass === undefined ? {} : { onPass: options.onPass }),
  });
  try {
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
  } catch (error) {
    fit.grid.dispose();
    throw error;
  }
}
