// SAU (src/defenses/sau.ts): the Jensen–Shannon divergence and the shared adversarial risk
// against values computed here, one shared-PGD step (its bound, no weight gradient), and a
// backdoored network trained here whose ASR it lowers.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { manualSeed, tensor, tidy } from '../../src/index.js';
import { toUnitRange } from '../../src/data/normalization.js';
import { jsDivergence, sharedPerturbation, sharedRisk } from '../../src/defenses/sau.js';
import { defendBadNetsTinyNet } from '../helpers/backdoored.js';
import { TinyNet, quadrantSplit } from '../helpers/synthetic.js';

const softmax = (row: number[]): number[] => {
  const top = Math.max(...row);
  const e = row.map((x) => Math.exp(x - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
};

test('sau: the Jensen–Shannon divergence and the shared risk as computed by hand', () => {
  const a = [
    [2, 0, -1],
    [0.5, 0.5, 3],
  ];
  const b = [
    [0, 1, 1],
    [0.5, 0.4, 3.2],
  ];
  const js = jsDivergence(tensor(a), tensor(b)).toArray() as number[];
  a.forEach((row, i) => {
    const p = softmax(row);
    const q = softmax(b[i]!);
    const m = p.map((x, k) => (x + q[k]!) / 2);
    const expected = p.reduce(
      (sum, x, k) => sum + 0.5 * x * Math.log(x / m[k]!) + 0.5 * q[k]! * Math.log(q[k]! / m[k]!),
      0,
    );
    assert.ok(Math.abs(js[i]! - expected) < 1e-6, `row ${i}: ${js[i]} vs ${expected}`);
  });
  // The copy's labels 1 and 2; only the first row counts.
  const risk = sharedRisk(tensor(a), tensor([1, 2], { dtype: 'int64' }), tensor([1, 0])).item();
  const p = softmax(a[0]!)[1]!;
  const expected = (-Math.log(1e-6 + Math.min(1 - p, 0.999)) - Math.log(1 + 1e-6 - Math.max(p, 0.001))) / 2 / 2;
  assert.ok(Math.abs(risk - expected) < 1e-6, `${risk} vs ${expected}`);
});

test('sau: one shared-PGD step from the corner of the ball moves each pixel to 0 or stays at the bound, and leaves no weight gradient', () => {
  const split = quadrantSplit(16, 4);
  manualSeed(11);
  const model = new TinyNet();
  const reference = new TinyNet();
  for (const m of [model, reference]) m.eval();
  const settings = { bound: 0.2, pgdStep: 0.2, pgdSteps: 1, beta1: 0.01, beta2: 1 };
  const values = tidy(() => {
    const pixels = toUnitRange(split.images);
    const perturbation = sharedPerturbation(model, reference, pixels, split.labels, split.normalization, settings);
    assert.deepEqual(perturbation.shape, pixels.shape);
    return Array.from(perturbation.toTypedArray() as Float32Array);
  });
  // 0.2 − 0.2·sign(g), clamped to [−0.2, 0.2]: 0 where the gradient is positive, 0.2 elsewhere.
  assert.ok(
    values.every((v) => Math.abs(v) < 1e-7 || Math.abs(v - 0.2) < 1e-7),
    'every pixel at 0 or at the bound',
  );
  const moved = values.filter((v) => Math.abs(v) < 1e-7).length;
  assert.ok(moved > 0 && moved < values.length, `${moved} of ${values.length} pixels moved`);
  // Only the perturbation's gradient is computed: the weights of both models get none.
  for (const m of [model, reference]) for (const p of m.parameters()) assert.equal(p.grad, null);
  for (const m of [model, reference]) m.dispose();
  split.dispose();
});

test('sau: lowers the ASR of a BadNets network trained here', async () => {
  await defendBadNetsTinyNet(
    'sau',
    // 800 small images: 10 rounds at 1e-3 instead of CIFAR-10's 100 at 1e-4.
    { rounds: 10, batchSize: 32, lr: 0.001 },
    { maxBaDrop: 10, check: ({ report }) => assert.equal(report.epochs.length, 10) },
  );
});
