// CLP (src/defenses/clp.ts): each channel's Lipschitz bound against a singular value computed
// here in closed form, the outlier rule, the convolution–batch-norm pairs of the zoo's
// architectures, and a backdoored network trained here whose ASR it lowers.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { noGrad, tensor } from '../../src/index.js';
import { defend } from '../../src/defenses/index.js';
import { channelLipschitz, lipschitzOutliers } from '../../src/defenses/clp.js';
import { BatchNorm2d, Conv2d } from '../../src/nn/layers.js';
import { createModel } from '../../src/nn/models/index.js';
import { defendBadNetsTinyNet } from '../helpers/backdoored.js';
import { TinyNet } from '../helpers/synthetic.js';

/** σ_max of a 2×m matrix: the square root of its 2×2 Gram matrix's larger eigenvalue. */
function largestSingular(rows: [number[], number[]]): number {
  const dot = (a: number[], b: number[]): number => a.reduce((sum, x, i) => sum + x * b[i]!, 0);
  const a = dot(rows[0], rows[0]);
  const d = dot(rows[1], rows[1]);
  const b = dot(rows[0], rows[1]);
  return Math.sqrt((a + d) / 2 + Math.sqrt(((a - d) / 2) ** 2 + b * b));
}

test("clp: a channel's bound is σ_max of its kernel times |γ / √(var + ε)|", () => {
  const conv = new Conv2d(2, 3, 3, { bias: false });
  const bn = new BatchNorm2d(3);
  const weights = Array.from({ length: 3 * 2 * 9 }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 5)));
  const gamma = [0.5, -2, 1.25];
  const variance = [4, 0.25, 1];
  noGrad(() => {
    const w = tensor(weights, { shape: [3, 2, 3, 3] });
    conv.weight.copy_(w);
    w.dispose();
    for (const [target, values] of [
      [bn.weight!, gamma],
      [bn.runningVar!, variance],
    ] as const) {
      const t = tensor(values);
      target.copy_(t);
      t.dispose();
    }
  });
  const bounds = channelLipschitz({ name: 'conv', conv, bn });
  bounds.forEach((bound, k) => {
    const kernel = weights.slice(k * 18, (k + 1) * 18);
    const expected =
      largestSingular([kernel.slice(0, 9), kernel.slice(9)]) * Math.abs(gamma[k]! / Math.sqrt(variance[k]! + 1e-5));
    assert.ok(Math.abs(bound - expected) < 1e-4 * expected, `channel ${k}: ${bound} vs ${expected}`);
  });
  conv.dispose();
  bn.dispose();
});

test('clp: a channel is pruned where its bound exceeds mean + u · std (unbiased)', () => {
  // 19 ones and a 10: mean 1.45, std √4.05 = 2.01, so 10 > 1.45 + 3 × 2.01 = 7.49.
  assert.deepEqual(lipschitzOutliers([...new Array(19).fill(1), 10], 3), [19]);
  // With 10 channels no single value can pass mean + 3 std: its z-score is at most 9/√10 = 2.85.
  assert.deepEqual(lipschitzOutliers([...new Array(9).fill(1), 1000], 3), []);
  assert.deepEqual(lipschitzOutliers([...new Array(9).fill(1), 1000], 2.5), [9]);
  assert.deepEqual(lipschitzOutliers([2, 2, 2, 2], 3), []);
});

test('clp: the pairs of the zoo: pre-activation blocks give conv1 → bn2 only; post-activation every convolution', () => {
  const wrn = createModel('wrn-16-1', { numClasses: 10, inChannels: 3 });
  assert.deepEqual(
    wrn.convBatchNormPairs!().map((p) => p.name),
    [
      'block1.layer.0.conv1',
      'block1.layer.1.conv1',
      'block2.layer.0.conv1',
      'block2.layer.1.conv1',
      'block3.layer.0.conv1',
      'block3.layer.1.conv1',
    ],
  );
  const resnet = createModel('resnet18', { numClasses: 10, inChannels: 3 });
  // The stem, 2 per block × 8 blocks, 3 projection shortcuts.
  assert.equal(resnet.convBatchNormPairs!().length, 1 + 16 + 3);
  assert.ok(resnet.convBatchNormPairs!().every((p) => p.conv.weight.shape[0] === p.bn.weight!.shape[0]));
  const vgg = createModel('vgg16-bn', { numClasses: 10, inChannels: 3 });
  assert.equal(vgg.convBatchNormPairs!().length, 13);
  for (const model of [wrn, resnet, vgg]) model.dispose();
});

test('clp: refuses a model that does not say which batch norm follows which convolution', async () => {
  const model = new TinyNet();
  Object.defineProperty(model, 'convBatchNormPairs', { value: undefined });
  const { quadrantSplit } = await import('../helpers/synthetic.js');
  const clean = quadrantSplit(40, 1);
  await assert.rejects(
    defend({ model, clean, method: 'clp', monitor: 0, evidence: 0 }),
    /CLP needs to know which batch norm normalizes each convolution/,
  );
  model.dispose();
  clean.dispose();
});

test('clp: lowers the ASR of a BadNets network trained here, from the weights alone', async () => {
  // TinyNet has 16 and 32 channels: at u 3 no channel stands out (measured: one pruned in the
  // second layer, ASR unchanged; up to u 2 the same). At u 1.5 the first layer's outlier goes
  // too, and with it the backdoor, at a third of the clean accuracy: a narrow network spreads
  // both over the same few channels.
  await defendBadNetsTinyNet(
    'clp',
    { u: 1.5 },
    {
      check: ({ report, model }) => {
        const clp = report.clp as { pruned: number; layers: { layer: string; pruned: number[] }[] };
        assert.deepEqual(
          clp.layers.map((l) => l.layer),
          ['body.0', 'body.3'],
        );
        assert.equal(
          clp.pruned,
          clp.layers.reduce((sum, l) => sum + l.pruned.length, 0),
        );
        // The pruned channels' scale and shift are zero (−0 where the value was negative).
        for (const layer of clp.layers) {
          const bn = model.body.at(layer.layer === 'body.0' ? 1 : 4) as BatchNorm2d;
          for (const channel of layer.pruned) {
            assert.ok((bn.weight!.toArray() as number[])[channel] === 0);
            assert.ok((bn.bias!.toArray() as number[])[channel] === 0);
          }
        }
      },
    },
  );
});
