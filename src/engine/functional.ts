// Functional forms of the layers, losses and tensor-combining ops, named like
// torch.nn.functional (import as F).
import { Reduction, type ReductionName, callOp, callOpMany, Tensor } from './tensor.js';

type Pair = number | readonly [number, number];

function pair(value: Pair): readonly number[] {
  return typeof value === 'number' ? [value, value] : value;
}

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

export function conv2d(input: Tensor, weight: Tensor, bias: Tensor | null = null, options: Conv2dOptions = {}): Tensor {
  return callOp(
    'conv2d',
    input.handle,
    weight.handle,
    bias?.handle ?? null,
    pair(options.stride ?? 1),
    pair(options.padding ?? 0),
    pair(options.dilation ?? 1),
    options.groups ?? 1,
  );
}

export function convTranspose2d(
  input: Tensor,
  weight: Tensor,
  bias: Tensor | null = null,
  options: Conv2dOptions & { outputPadding?: Pair } = {},
): Tensor {
  return callOp(
    'conv_transpose2d.input',
    input.handle,
    weight.handle,
    bias?.handle ?? null,
    pair(options.stride ?? 1),
    pair(options.padding ?? 0),
    pair(options.outputPadding ?? 0),
    options.groups ?? 1,
    pair(options.dilation ?? 1),
  );
}

/** y = x Wᵀ + b */
export function linear(input: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  return callOp('linear', input.handle, weight.handle, bias?.handle ?? null);
}

export interface BatchNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  /** Batch statistics (and running-stat updates) when true; running stats when false. */
  training?: boolean;
  momentum?: number;
  eps?: number;
}

/** Batch norm over dim 1; in training mode updates running mean/var in place. */
export function batchNorm(
  input: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  options: BatchNormOptions = {},
): Tensor {
  return callOp(
    'batch_norm',
    input.handle,
    options.weight?.handle ?? null,
    options.bias?.handle ?? null,
    runningMean?.handle ?? null,
    runningVar?.handle ?? null,
    options.training ?? false,
    options.momentum ?? 0.1,
    options.eps ?? 1e-5,
    false,
  );
}

export interface PoolOptions {
  stride?: Pair;
  padding?: Pair;
  ceilMode?: boolean;
}

export function maxPool2d(input: Tensor, kernelSize: Pair, options: PoolOptions & { dilation?: Pair } = {}): Tensor {
  return callOp(
    'max_pool2d',
    input.handle,
    pair(kernelSize),
    options.stride === undefined ? [] : pair(options.stride),
    pair(options.padding ?? 0),
    pair(options.dilation ?? 1),
    options.ceilMode ?? false,
  );
}

export function avgPool2d(
  input: Tensor,
  kernelSize: Pair,
  options: PoolOptions & { countIncludePad?: boolean; divisorOverride?: number } = {},
): Tensor {
  return callOp(
    'avg_pool2d',
    input.handle,
    pair(kernelSize),
    options.stride === undefined ? [] : pair(options.stride),
    pair(options.padding ?? 0),
    options.ceilMode ?? false,
    options.countIncludePad ?? true,
    options.divisorOverride ?? null,
  );
}

export function adaptiveAvgPool2d(input: Tensor, outputSize: Pair): Tensor {
  return callOp('adaptive_avg_pool2d', input.handle, pair(outputSize));
}

/** Zeroes elements with probability p and scales the rest by 1/(1-p), in training only. */
export function dropout(input: Tensor, p = 0.5, training = true): Tensor {
  return callOp('dropout', input.handle, p, training);
}

export function relu(input: Tensor): Tensor {
  return input.relu();
}

export function leakyRelu(input: Tensor, negativeSlope = 0.01): Tensor {
  return input.leakyRelu(negativeSlope);
}

export function sigmoid(input: Tensor): Tensor {
  return input.sigmoid();
}

export function tanh(input: Tensor): Tensor {
  return input.tanh();
}

export function softmax(input: Tensor, dim: number): Tensor {
  return input.softmax(dim);
}

export function logSoftmax(input: Tensor, dim: number): Tensor {
  return input.logSoftmax(dim);
}

export interface CrossEntropyOptions {
  reduction?: ReductionName;
  /** Per-class weights (length C). */
  weight?: Tensor | null;
  ignoreIndex?: number;
  labelSmoothing?: number;
}

/** Cross-entropy of logits (N×C[×…]) against class indices (int64) or class probabilities. */
export function crossEntropy(logits: Tensor, target: Tensor, options: CrossEntropyOptions = {}): Tensor {
  return callOp(
    'cross_entropy_loss',
    logits.handle,
    target.handle,
    options.weight?.handle ?? null,
    Reduction[options.reduction ?? 'mean'],
    options.ignoreIndex ?? -100,
    options.labelSmoothing ?? 0,
  );
}

/** Negative log-likelihood of log-probabilities against class indices. */
export function nllLoss(
  logProbabilities: Tensor,
  target: Tensor,
  options: Omit<CrossEntropyOptions, 'labelSmoothing'> = {},
): Tensor {
  return callOp(
    'nll_loss_nd',
    logProbabilities.handle,
    target.handle,
    options.weight?.handle ?? null,
    Reduction[options.reduction ?? 'mean'],
    options.ignoreIndex ?? -100,
  );
}

export function mseLoss(input: Tensor, target: Tensor, reduction: ReductionName = 'mean'): Tensor {
  return callOp('mse_loss', input.handle, target.handle, Reduction[reduction]);
}

export function l1Loss(input: Tensor, target: Tensor, reduction: ReductionName = 'mean'): Tensor {
  return callOp('l1_loss', input.handle, target.handle, Reduction[reduction]);
}

/**
 * KL divergence with `input` as log-probabilities (PyTorch's convention). Reduction
 * 'batchmean' divides the sum by the batch size, the mathematically correct mean.
 */
export function klDiv(
  input: Tensor,
  target: Tensor,
  options: { reduction?: ReductionName | 'batchmean'; logTarget?: boolean } = {},
): Tensor {
  const reduction = options.reduction ?? 'mean';
  if (reduction === 'batchmean') {
    const total = callOp('kl_div', input.handle, target.handle, Reduction.sum, options.logTarget ?? false);
    const mean = total.div(input.size(0));
    total.dispose();
    return mean;
  }
  return callOp('kl_div', input.handle, target.handle, Reduction[reduction], options.logTarget ?? false);
}

export function cosineSimilarity(x1: Tensor, x2: Tensor, dim = 1, eps = 1e-8): Tensor {
  return callOp('cosine_similarity', x1.handle, x2.handle, dim, eps);
}

/** x / max(‖x‖_p, eps) along `dim`. */
export function normalize(input: Tensor, p = 2, dim = 1, eps = 1e-12): Tensor {
  const norm = input.norm(p, dim, true);
  const clamped = norm.clampMin(eps);
  const result = input.div(clamped);
  norm.dispose();
  clamped.dispose();
  return result;
}

/** Pads the last dims: `pad` = [left, right, top, bottom, ...] like F.pad. */
export function pad(
  input: Tensor,
  padding: readonly number[],
  mode: 'constant' | 'reflect' | 'replicate' | 'circular' = 'constant',
  value = 0,
): Tensor {
  return callOp('pad', input.handle, padding, mode, mode === 'constant' ? value : null);
}

/** int64 class indices to one-hot int64 rows. */
export function oneHot(indices: Tensor, numClasses = -1): Tensor {
  return callOp('one_hot', indices.handle, numClasses);
}

export interface GridSampleOptions {
  mode?: 'bilinear' | 'nearest' | 'bicubic';
  paddingMode?: 'zeros' | 'border' | 'reflection';
  alignCorners?: boolean;
}

/** Samples `input` (N×C×H×W) at `grid` (N×H'×W'×2, x then y in [-1, 1]). */
export function gridSample(input: Tensor, grid: Tensor, options: GridSampleOptions = {}): Tensor {
  const modes = { bilinear: 0, nearest: 1, bicubic: 2 };
  const paddings = { zeros: 0, border: 1, reflection: 2 };
  return callOp(
    'grid_sampler',
    input.handle,
    grid.handle,
    modes[options.mode ?? 'bilinear'],
    paddings[options.paddingMode ?? 'zeros'],
    options.alignCorners ?? false,
  );
}

/** Sampling grid (N×H×W×2) for affine matrices `theta` (N×2×3) and an output size N×C×H×W. */
export function affineGrid(theta: Tensor, size: readonly number[], alignCorners = false): Tensor {
  return callOp('affine_grid_generator', theta.handle, size, alignCorners);
}

/** Resizes N×C×H×W to `size` (or by `scaleFactor`) with nearest or bilinear sampling. */
export function interpolate(
  input: Tensor,
  options: {
    size?: Pair;
    scaleFactor?: number | readonly [number, number];
    mode?: 'nearest' | 'bilinear';
    alignCorners?: boolean;
    /** Bilinear only: low-pass filter when downsampling, like PIL's resize. */
    antialias?: boolean;
  },
): Tensor {
  const size = options.size === undefined ? null : pair(options.size);
  const scale =
    options.scaleFactor === undefined
      ? null
      : typeof options.scaleFactor === 'number'
        ? [options.scaleFactor, options.scaleFactor]
        : options.scaleFactor;
  if ((size === null) === (scale === null))
    throw new TypeError('interpolate: give exactly one of size and scaleFactor');
  if ((options.mode ?? 'nearest') === 'nearest') {
    return callOp('upsample_nearest2d.vec', input.handle, size, scale);
  }
  const name = options.antialias === true ? '_upsample_bilinear2d_aa.vec' : 'upsample_bilinear2d.vec';
  return callOp(name, input.handle, size, options.alignCorners ?? false, scale);
}

/** Elementwise choice: `a` where `condition` is true, `b` elsewhere (tensors or numbers). */
export function where(condition: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof a === 'number' && typeof b === 'number') return callOp('where.Scalar', condition.handle, a, b);
  if (typeof a === 'number') return callOp('where.ScalarSelf', condition.handle, a, (b as Tensor).handle);
  if (typeof b === 'number') return callOp('where.ScalarOther', condition.handle, a.handle, b);
  return callOp('where.self', condition.handle, a.handle, b.handle);
}

export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  return callOp(
    'cat',
    tensors.map((t) => t.handle),
    dim,
  );
}

export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  return callOp(
    'stack',
    tensors.map((t) => t.handle),
    dim,
  );
}

/** Reduced SVD: [U, S, Vh] with A = U diag(S) Vh. */
export function svd(input: Tensor, fullMatrices = false): [Tensor, Tensor, Tensor] {
  return callOpMany('linalg_svd', input.handle, fullMatrices, null) as [Tensor, Tensor, Tensor];
}

/** 0/1 draws with probability p, shaped like `input`. */
export function bernoulli(input: Tensor, p?: number): Tensor {
  return p === undefined ? input.bernoulli() : callOp('bernoulli.p', input.handle, p, null);
}

export function multinomial(probabilities: Tensor, numSamples: number, replacement = false): Tensor {
  return probabilities.multinomial(numSamples, replacement);
}
