// SAU (src/defenses/sau.ts): the Jensen–Shannon divergence and the shared adversarial risk
// against values computed here, the shared PGD's bound, and a backdoored network trained
// here whose ASR it lowers.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { tensor } from '../../src/index.js';
import { jsDivergence, sharedRisk } from '../../src/defenses/sau.js';
import { defendBadNetsTinyNet } from '../helpers/backdoored.js';

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

test('sau: lowers the ASR of a BadNets network trained here', async () => {
  await defendBadNetsTinyNet(
    'sau',
    // 800 small images: 10 rounds at 1e-3 instead of CIFAR-10's 100 at 1e-4.
    { rounds: 10, batchSize: 32, lr: 0.001 },
    { maxBaDrop: 10, check: ({ report }) => assert.equal(report.epochs.length, 10) },
  );
});
