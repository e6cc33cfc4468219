// Acceptance 1 of the engine: every differentiable op's autograd gradient matches
// central finite differences in float64 (relative error ≤ 1e-5).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { F, type Tensor, gradcheck, manualSeed, tensor } from '../../src/index.js';

const TOLERANCE = 1e-5;

/** Deterministic, distinct, kink-free float64 values (requires grad unless told otherwise). */
function input(shape: readonly number[], options: { seed?: number; positive?: boolean; grad?: boolean } = {}): Tensor {
  const count = shape.reduce((a, b) => a * b, 1);
  const seed = options.seed ?? 0;
  const values = Float64Array.from({ length: count }, (_, i) => {
    const v = Math.sin(1.37 * i + 0.61 + seed * 2.3) * 1.5 + 0.013 * i;
    return options.positive === true ? Math.abs(v) + 0.5 : v;
  });
  return tensor(values, { shape, dtype: 'float64', requiresGrad: options.grad ?? true });
}

function indices(values: readonly number[], shape: readonly number[] = [values.length]): Tensor {
  return tensor(values, { shape, dtype: 'int64' });
}

function check(name: string, fn: (...inputs: Tensor[]) => Tensor, inputs: () => Tensor[]): void {
  test(`gradcheck ${name}`, () => {
    const result = gradcheck(fn, inputs());
    assert.ok(
      result.maxRelativeError <= TOLERANCE,
      `${name}: relative error ${result.maxRelativeError} (per input ${result.relativeErrors.join(', ')})`,
    );
  });
}

// Arithmetic, broadcasting and in-place forms (on non-leaf copies).
check(
  'add',
  (a, b) => a!.add(b!, 0.7),
  () => [input([3, 4]), input([4], { seed: 1 })],
);
check(
  'add scalar',
  (a) => a!.add(2.5),
  () => [input([5])],
);
check(
  'sub',
  (a, b) => a!.sub(b!),
  () => [input([2, 3]), input([2, 1], { seed: 1 })],
);
check(
  'mul',
  (a, b) => a!.mul(b!),
  () => [input([3, 4]), input([3, 4], { seed: 1 })],
);
check(
  'div',
  (a, b) => a!.div(b!),
  () => [input([3, 4]), input([3, 4], { seed: 1, positive: true })],
);
check(
  'neg, reciprocal, rsub',
  (a) => a!.neg().add(a!.reciprocal()).add(a!.rsub(3)),
  () => [input([6], { positive: true })],
);
check(
  'pow scalar',
  (a) => a!.pow(3),
  () => [input([6])],
);
check(
  'pow tensor',
  (a, b) => a!.pow(b!),
  () => [input([6], { positive: true }), input([6], { seed: 2 })],
);
check(
  'add_ sub_ mul_ div_',
  (a, b) => a!.clone().add_(b!).mul_(b!).sub_(b!, 0.5).div_(2),
  () => [input([4]), input([4], { seed: 1 })],
);
check(
  'addcmul_ addcdiv_',
  (a, b, c) => a!.clone().addcmul_(b!, c!, 0.3).addcdiv_(b!, c!, 0.2),
  () => [input([4]), input([4], { seed: 1 }), input([4], { seed: 2, positive: true })],
);
check(
  'matmul',
  (a, b) => a!.matmul(b!),
  () => [input([3, 4]), input([4, 2], { seed: 1 })],
);
check(
  'batched matmul',
  (a, b) => a!.matmul(b!),
  () => [input([2, 3, 4]), input([4, 2], { seed: 1 })],
);
check(
  'linear',
  (x, w, b) => F.linear(x!, w!, b!),
  () => [input([3, 4]), input([2, 4], { seed: 1 }), input([2], { seed: 2 })],
);
check(
  'maximum minimum',
  (a, b) => a!.maximum(b!).add(a!.minimum(b!).mul(2)),
  () => [input([5]), input([5], { seed: 3 })],
);

// Selection and comparisons.
check(
  'where',
  (a, b) => F.where(a!.gt(0), a!, b!),
  () => [input([6]), input([6], { seed: 1 })],
);
check(
  'where scalar',
  (a) => F.where(a!.gt(0), a!, 0.5),
  () => [input([6])],
);
check(
  'masked_fill',
  (a) => a!.maskedFill(a!.lt(0), 2),
  () => [input([6])],
);
check(
  'clamp',
  (a) => a!.clamp(-0.5, 0.5),
  () => [input([8])],
);
check(
  'clamp tensor bounds',
  (a, lo, hi) => a!.clamp(lo!, hi!),
  () => [input([6]), input([6], { seed: 1 }).sub(1), input([6], { seed: 2 }).add(1)],
);

// Elementwise functions.
check(
  'abs',
  (a) => a!.abs(),
  () => [input([6])],
);
check(
  'sign (zero gradient)',
  (a) => a!.sign().add(a!),
  () => [input([6])],
);
check(
  'sqrt',
  (a) => a!.sqrt(),
  () => [input([6], { positive: true })],
);
check(
  'exp',
  (a) => a!.exp(),
  () => [input([6])],
);
check(
  'log',
  (a) => a!.log(),
  () => [input([6], { positive: true })],
);
check(
  'tanh',
  (a) => a!.tanh(),
  () => [input([6])],
);
check(
  'sigmoid',
  (a) => a!.sigmoid(),
  () => [input([6])],
);
check(
  'relu',
  (a) => a!.relu(),
  () => [input([6])],
);
check(
  'leaky_relu',
  (a) => a!.leakyRelu(0.2),
  () => [input([6])],
);

// Reductions.
check(
  'sum all and over dims',
  (a) => a!.sum().add(a!.sum([0, 2]).sum().mul(2)),
  () => [input([2, 3, 4])],
);
check(
  'mean over dim keepdim',
  (a) => a!.mean(1, true),
  () => [input([2, 3, 4])],
);
check(
  'std',
  (a) => a!.std(1),
  () => [input([3, 5])],
);
check(
  'var biased',
  (a) => a!.var([0, 1], { unbiased: false }),
  () => [input([3, 5])],
);
check(
  'max and min',
  (a) => a!.max().add(a!.min()),
  () => [input([7])],
);
check(
  'max over dim',
  (a) => a!.maxDim(1)[0],
  () => [input([3, 4])],
);
check(
  'amax',
  (a) => a!.amax([0, 1]),
  () => [input([3, 4])],
);
check(
  'topk values',
  (a) => a!.topk(2, 1)[0],
  () => [input([3, 5])],
);
check(
  'sort values',
  (a) => a!.sort(0, true)[0],
  () => [input([6])],
);
check(
  'norm p=1',
  (a) => a!.norm(1),
  () => [input([6])],
);
check(
  'norm p=2 over dim',
  (a) => a!.norm(2, 1),
  () => [input([3, 4])],
);
check(
  'norm p=inf',
  (a) => a!.norm(Infinity, 1),
  () => [input([3, 4])],
);

// Convolutions, normalization, pooling, dropout.
check(
  'conv2d stride/padding/dilation',
  (x, w, b) => F.conv2d(x!, w!, b!, { stride: 2, padding: 1, dilation: 1 }),
  () => [input([1, 2, 5, 5]), input([3, 2, 3, 3], { seed: 1 }), input([3], { seed: 2 })],
);
check(
  'conv2d dilation and groups',
  (x, w) => F.conv2d(x!, w!, null, { padding: 2, dilation: 2, groups: 2 }),
  () => [input([1, 4, 5, 5]), input([2, 2, 3, 3], { seed: 1 })],
);
check(
  'conv_transpose2d',
  (x, w, b) => F.convTranspose2d(x!, w!, b!, { stride: 2, padding: 1, outputPadding: 1 }),
  () => [input([1, 2, 3, 3]), input([2, 3, 3, 3], { seed: 1 }), input([3], { seed: 2 })],
);
check(
  'batch_norm train',
  (x, w, b) => F.batchNorm(x!, null, null, { weight: w!, bias: b!, training: true }),
  () => [input([3, 2, 2, 2]), input([2], { seed: 1 }), input([2], { seed: 2 })],
);
check(
  'batch_norm eval',
  (x, w, b) => {
    const mean = tensor([0.1, -0.2], { dtype: 'float64' });
    const variance = tensor([0.5, 1.5], { dtype: 'float64' });
    return F.batchNorm(x!, mean, variance, { weight: w!, bias: b!, training: false });
  },
  () => [input([3, 2, 2, 2]), input([2], { seed: 1 }), input([2], { seed: 2 })],
);
check(
  'max_pool2d',
  (x) => F.maxPool2d(x!, 2, { stride: 1, padding: 1 }),
  () => [input([1, 2, 4, 4])],
);
check(
  'avg_pool2d',
  (x) => F.avgPool2d(x!, 3, { stride: 2, padding: 1 }),
  () => [input([1, 2, 5, 5])],
);
check(
  'adaptive_avg_pool2d',
  (x) => F.adaptiveAvgPool2d(x!, [2, 3]),
  () => [input([1, 2, 5, 7])],
);
check(
  'dropout (fixed seed)',
  (x) => {
    manualSeed(7);
    return F.dropout(x!, 0.4, true);
  },
  () => [input([20])],
);

// Softmax and losses.
check(
  'softmax',
  (a) => a!.softmax(1),
  () => [input([3, 4])],
);
check(
  'log_softmax',
  (a) => a!.logSoftmax(0),
  () => [input([3, 4])],
);
check(
  'cross_entropy mean',
  (x) => F.crossEntropy(x!, indices([1, 0, 3])),
  () => [input([3, 4])],
);
check(
  'cross_entropy sum, weights, smoothing',
  (x) =>
    F.crossEntropy(x!, indices([1, 0, 3]), {
      reduction: 'sum',
      weight: tensor([1, 2, 0.5, 1.5], { dtype: 'float64' }),
      labelSmoothing: 0.1,
    }),
  () => [input([3, 4])],
);
check(
  'cross_entropy none, ignore_index',
  (x) => F.crossEntropy(x!, indices([1, -100, 3]), { reduction: 'none' }),
  () => [input([3, 4])],
);
check(
  'cross_entropy probability targets',
  (x, p) => F.crossEntropy(x!, p!.softmax(1)),
  () => [input([3, 4]), input([3, 4], { seed: 1 })],
);
check(
  'nll_loss',
  (x) => F.nllLoss(x!.logSoftmax(1), indices([2, 1])),
  () => [input([2, 3])],
);
check(
  'mse_loss',
  (a, b) => F.mseLoss(a!, b!),
  () => [input([5]), input([5], { seed: 1 })],
);
check(
  'l1_loss sum',
  (a, b) => F.l1Loss(a!, b!, 'sum'),
  () => [input([5]), input([5], { seed: 1 })],
);
check(
  'kl_div batchmean',
  (a, b) => F.klDiv(a!.logSoftmax(1), b!.softmax(1), { reduction: 'batchmean' }),
  () => [input([2, 4]), input([2, 4], { seed: 1 })],
);
check(
  'cosine_similarity',
  (a, b) => F.cosineSimilarity(a!, b!, 1),
  () => [input([3, 4]), input([3, 4], { seed: 1 })],
);
check(
  'normalize',
  (a) => F.normalize(a!, 2, 1),
  () => [input([3, 4])],
);

// Shape and indexing.
check(
  'reshape view flatten',
  (a) => a!.reshape([6, 2]).view([3, 4]).flatten().mul(a!.flatten()),
  () => [input([2, 6])],
);
check(
  'permute transpose',
  (a) => a!.permute([2, 0, 1]).transpose(0, 2),
  () => [input([2, 3, 4])],
);
check(
  'squeeze unsqueeze',
  (a) => a!.unsqueeze(0).squeeze(2).squeeze(),
  () => [input([3, 1, 2])],
);
check(
  'expand repeat',
  (a) => a!.expand([3, 4]).mul(a!.repeat([3, 1])),
  () => [input([1, 4])],
);
check(
  'cat stack',
  (a, b) => F.stack([F.cat([a!, b!], 0), F.cat([b!, a!], 0)], 1),
  () => [input([2, 3]), input([2, 3], { seed: 1 })],
);
check(
  'split chunk narrow',
  (a) => {
    const [first, second] = a!.split([1, 3], 1);
    const [c0, c1] = a!.chunk(2, 1);
    return first!
      .sum()
      .add(second!.mul(2).sum())
      .add(c0!.mul(c1!).sum())
      .add(a!.narrow(1, 1, 2).sum());
  },
  () => [input([2, 4])],
);
check(
  'index_select gather',
  (a) => a!.indexSelect(1, indices([2, 0, 2])).add(a!.gather(1, indices([0, 1, 1, 2, 0, 0], [2, 3]))),
  () => [input([2, 3])],
);
check(
  'scatter',
  (a, src) => a!.scatter(1, indices([2, 0], [2, 1]), src!),
  () => [input([2, 3]), input([2, 1], { seed: 1 })],
);
check(
  'masked_select',
  (a) => a!.maskedSelect(a!.gt(0)),
  () => [input([8])],
);
check(
  'advanced index',
  (a) => a!.index([indices([1, 0, 1]), null]),
  () => [input([2, 3])],
);
check(
  'select slice',
  (a) => a!.select(0, 1).add(a!.slice(0, 0, 2, 1).sum(0)),
  () => [input([3, 4])],
);
check(
  'pad constant',
  (a) => F.pad(a!, [1, 2, 0, 1], 'constant', 0.5),
  () => [input([1, 1, 2, 3])],
);
check(
  'pad reflect',
  (a) => F.pad(a!, [1, 1, 1, 1], 'reflect'),
  () => [input([1, 1, 3, 3])],
);
check(
  'pad replicate',
  (a) => F.pad(a!, [2, 0, 1, 0], 'replicate'),
  () => [input([1, 1, 3, 3])],
);
check(
  'flip roll',
  (a) => a!.flip([1]).add(a!.roll(1, 0)),
  () => [input([3, 4])],
);

// Sampling grids and resizing.
check(
  'grid_sample bilinear (input and grid)',
  (x, grid) => F.gridSample(x!, grid!, { alignCorners: false }),
  () => [input([1, 2, 4, 4]), input([1, 3, 3, 2], { seed: 1 }).mul(0.6)],
);
check(
  'grid_sample border padding, align corners',
  (x, grid) => F.gridSample(x!, grid!, { paddingMode: 'border', alignCorners: true }),
  () => [input([1, 1, 3, 3]), input([1, 2, 2, 2], { seed: 2 })],
);
check(
  'affine_grid',
  (theta) => F.affineGrid(theta!, [1, 1, 3, 4], false),
  () => [input([1, 2, 3])],
);
check(
  'interpolate bilinear',
  (x) => F.interpolate(x!, { size: [5, 7], mode: 'bilinear' }),
  () => [input([1, 2, 3, 4])],
);
check(
  'interpolate nearest',
  (x) => F.interpolate(x!, { scaleFactor: 2, mode: 'nearest' }),
  () => [input([1, 1, 2, 3])],
);

// SVD (singular values, and the reconstruction, which are sign-invariant).
check(
  'svd',
  (a) => {
    const [u, s, vh] = F.svd(a!);
    return s!.add(u!.mul(s!.unsqueeze(0)).matmul(vh!).sum(0).narrow(0, 0, 3));
  },
  () => [input([4, 3])],
);

test('gradcheck detects a wrong gradient', () => {
  // x · detach(x) has true derivative 2x but autograd sees only x.
  const result = gradcheck((x) => x!.mul(x!.detach()), [input([5])]);
  assert.ok(result.maxRelativeError > 0.1, `expected a large error, got ${result.maxRelativeError}`);
});
