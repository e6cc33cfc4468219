// Acceptance 2 of the engine: forward values of conv2d, batch_norm (both modes), pooling,
// grid_sample and cross_entropy against hand-derived cases and values recorded from
// PyTorch 1.13 (test/fixtures/engine-pytorch.json, made by make-engine-fixtures.py).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { F, type DType, type Tensor, tensor, tidy } from '../../src/index.js';

interface StoredTensor {
  shape: number[];
  dtype: string;
  data: number[];
}

interface OpCase {
  name: string;
  op: string;
  inputs: Record<string, StoredTensor>;
  kwargs: Record<string, number | boolean | string | number[]>;
  output: StoredTensor;
  extra?: Record<string, StoredTensor>;
}

const fixture = JSON.parse(readFileSync(new URL('../fixtures/engine-pytorch.json', import.meta.url), 'utf8')) as {
  cases: OpCase[];
};

function load(stored: StoredTensor): Tensor {
  return tensor(stored.data, { shape: stored.shape, dtype: stored.dtype as DType });
}

export function assertClose(actual: Tensor, expected: StoredTensor | number[], tolerance = 1e-5, label = ''): void {
  const expectedData = Array.isArray(expected) ? expected : expected.data;
  if (!Array.isArray(expected)) assert.deepEqual([...actual.shape], expected.shape, `${label} shape`);
  const values = actual.toFloat64Array();
  assert.equal(values.length, expectedData.length, `${label} element count`);
  let worst = 0;
  for (let i = 0; i < values.length; i++) {
    const reference = expectedData[i] ?? NaN;
    const error = Math.abs((values[i] ?? NaN) - reference) / Math.max(1, Math.abs(reference));
    if (Number.isNaN(error)) worst = Infinity;
    else if (error > worst) worst = error;
  }
  assert.ok(worst <= tolerance, `${label}: worst error ${worst} > ${tolerance}`);
}

function run(c: OpCase): Tensor {
  const input = (name: string): Tensor => {
    const stored = c.inputs[name];
    if (stored === undefined) throw new Error(`${c.name}: fixture lacks input ${name}`);
    return load(stored);
  };
  const k = c.kwargs;
  switch (c.op) {
    case 'conv2d':
      return F.conv2d(input('x'), input('w'), c.inputs.b ? input('b') : null, {
        stride: k.stride as number,
        padding: k.padding as number,
        dilation: k.dilation as number,
        groups: k.groups as number,
      });
    case 'conv_transpose2d':
      return F.convTranspose2d(input('x'), input('w'), null, {
        stride: k.stride as number,
        padding: k.padding as number,
        outputPadding: k.output_padding as number,
      });
    case 'max_pool2d':
      return F.maxPool2d(input('x'), k.kernel as number, {
        stride: k.stride as number,
        padding: k.padding as number,
        ceilMode: k.ceil_mode as boolean,
      });
    case 'avg_pool2d':
      return F.avgPool2d(input('x'), k.kernel as number, {
        stride: k.stride as number,
        padding: k.padding as number,
        countIncludePad: k.count_include_pad as boolean,
      });
    case 'adaptive_avg_pool2d':
      return F.adaptiveAvgPool2d(input('x'), k.output as [number, number]);
    case 'grid_sample':
      return F.gridSample(input('x'), input('grid'), {
        mode: k.mode as 'bilinear' | 'nearest',
        paddingMode: k.padding_mode as 'zeros' | 'border' | 'reflection',
        alignCorners: k.align_corners as boolean,
      });
    case 'affine_grid':
      return F.affineGrid(input('theta'), k.size as number[], k.align_corners as boolean);
    case 'cross_entropy':
      return F.crossEntropy(input('logits'), input('target'), {
        reduction: k.reduction as 'mean' | 'sum' | 'none',
        weight: c.inputs.weight ? input('weight') : null,
        labelSmoothing: (k.label_smoothing as number | undefined) ?? 0,
      });
    default:
      throw new Error(`no runner for ${c.op}`);
  }
}

for (const c of fixture.cases.filter((entry) => entry.op !== 'batch_norm')) {
  test(`PyTorch forward: ${c.name}`, () => {
    tidy(() => assertClose(run(c), c.output, 1e-5, c.name));
  });
}

for (const c of fixture.cases.filter((entry) => entry.op === 'batch_norm')) {
  test(`PyTorch forward: ${c.name} (output and running statistics)`, () => {
    tidy(() => {
      const runningMean = load(c.inputs.running_mean!);
      const runningVar = load(c.inputs.running_var!);
      const output = F.batchNorm(load(c.inputs.x!), runningMean, runningVar, {
        weight: load(c.inputs.weight!),
        bias: load(c.inputs.bias!),
        training: c.kwargs.training as boolean,
        momentum: c.kwargs.momentum as number,
        eps: c.kwargs.eps as number,
      });
      assertClose(output, c.output, 1e-5, c.name);
      if (c.extra !== undefined) {
        assertClose(runningMean, c.extra.running_mean!, 1e-6, 'running_mean');
        assertClose(runningVar, c.extra.running_var!, 1e-6, 'running_var');
      } else {
        assertClose(runningMean, c.inputs.running_mean!, 0, 'running_mean unchanged in eval');
      }
    });
  });
}

// Hand-derived cases: small enough to compute on paper.

test('conv2d of ones with a 3×3 ones kernel counts the in-bounds neighbours', () => {
  tidy(() => {
    const x = tensor(new Float32Array(16).fill(1), { shape: [1, 1, 4, 4] });
    const w = tensor(new Float32Array(9).fill(1), { shape: [1, 1, 3, 3] });
    const y = F.conv2d(x, w, tensor([0.5]), { padding: 1 });
    assertClose(
      y,
      [4, 6, 6, 4, 6, 9, 9, 6, 6, 9, 9, 6, 4, 6, 6, 4].map((v) => v + 0.5),
    );
  });
});

test('conv2d stride 2 picks every other window', () => {
  tidy(() => {
    const x = tensor([...Array(16).keys()], { shape: [1, 1, 4, 4] });
    const w = tensor([1, 0, 0, 0], { shape: [1, 1, 2, 2] });
    assertClose(F.conv2d(x, w, null, { stride: 2 }), [0, 2, 8, 10]);
  });
});

test('batch_norm train uses the biased batch variance and updates running stats with the unbiased one', () => {
  tidy(() => {
    // One channel, values 1,2,3,4: mean 2.5, biased var 1.25, unbiased var 5/3.
    const x = tensor([1, 2, 3, 4], { shape: [4, 1, 1, 1] });
    const runningMean = tensor([0]);
    const runningVar = tensor([1]);
    const y = F.batchNorm(x, runningMean, runningVar, { training: true, momentum: 0.1, eps: 0 });
    const s = Math.sqrt(1.25);
    assertClose(y, [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]);
    assertClose(runningMean, [0.25]);
    assertClose(runningVar, [0.9 + 0.1 * (5 / 3)]);
  });
});

test('batch_norm eval applies (x − mean)/√(var + eps)·γ + β', () => {
  tidy(() => {
    const x = tensor([1, 2, 3, 4], { shape: [4, 1, 1, 1] });
    const y = F.batchNorm(x, tensor([2]), tensor([4]), {
      training: false,
      eps: 0,
      weight: tensor([3]),
      bias: tensor([1]),
    });
    assertClose(y, [-0.5, 1, 2.5, 4]);
  });
});

test('max and average pooling on a 4×4 ramp', () => {
  tidy(() => {
    const x = tensor([...Array(16).keys()], { shape: [1, 1, 4, 4] });
    assertClose(F.maxPool2d(x, 2), [5, 7, 13, 15]);
    assertClose(F.avgPool2d(x, 2), [2.5, 4.5, 10.5, 12.5]);
    assertClose(F.adaptiveAvgPool2d(x, 1), [7.5]);
  });
});

test('grid_sample: the identity grid (align corners) reproduces the input; a shifted grid interpolates', () => {
  tidy(() => {
    const x = tensor([1, 2, 3, 4], { shape: [1, 1, 2, 2] });
    // Corners at ±1 with align_corners=true are the pixel centres.
    const identity = tensor([-1, -1, 1, -1, -1, 1, 1, 1], { shape: [1, 2, 2, 2] });
    assertClose(F.gridSample(x, identity, { alignCorners: true }), [1, 2, 3, 4]);
    // The centre (0, 0) is the mean of the four pixels.
    const centre = tensor([0, 0], { shape: [1, 1, 1, 2] });
    assertClose(F.gridSample(x, centre, { alignCorners: true }), [2.5]);
  });
});

test('cross_entropy of uniform logits is log(C); a confident correct logit gives ~0', () => {
  tidy(() => {
    const uniform = tensor(new Float32Array(12), { shape: [3, 4] });
    assertClose(F.crossEntropy(uniform, tensor([0, 1, 3], { dtype: 'int64' })), [Math.log(4)]);
    const confident = tensor([[50, 0, 0]]);
    assertClose(F.crossEntropy(confident, tensor([0], { dtype: 'int64' })), [0], 1e-6);
    // Two samples, one class: log-softmax of [0, ln 3] at index 1 is ln(3/4).
    assertClose(F.crossEntropy(tensor([[0, Math.log(3)]]), tensor([1], { dtype: 'int64' })), [-Math.log(0.75)]);
  });
});
