// ANP (src/defenses/anp.ts): the perturbed batch norm against its formula computed here, the
// pruning rule, and a backdoored network trained here whose ASR it lowers.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { noGrad, tensor } from '../../src/index.js';
import { PerturbedBatchNorm, channelsToPrune } from '../../src/defenses/anp.js';
import { BatchNorm2d } from '../../src/nn/layers.js';
import { defendBadNetsTinyNet } from '../helpers/backdoored.js';

function set(target: import('../../src/index.js').Tensor, values: number[]): void {
  noGrad(() => {
    const t = tensor(values);
    target.copy_(t);
    t.dispose();
  });
}

test('anp: the perturbed batch norm is γ·(m + δ)·(x − μ)/√(σ² + ε) + β·(1 + ξ), and only the mask without noise', () => {
  const bn = new BatchNorm2d(2);
  bn.eval();
  set(bn.weight!, [1.5, -0.5]);
  set(bn.bias!, [0.25, 2]);
  set(bn.runningMean!, [1, -1]);
  set(bn.runningVar!, [4, 0.25]);
  const perturbed = new PerturbedBatchNorm(bn);
  set(perturbed.mask, [0.8, 0.3]);
  set(perturbed.weightNoise, [0.1, -0.2]);
  set(perturbed.biasNoise, [-0.3, 0.4]);
  const input = tensor([[[[2, -3]], [[0.5, 1]]]]); // 1×2×1×2
  const expected = (perturb: boolean): number[] =>
    [
      [2, -3],
      [0.5, 1],
    ].flatMap((row, c) => {
      const gamma = [1.5, -0.5][c]! * ([0.8, 0.3][c]! + (perturb ? [0.1, -0.2][c]! : 0));
      const beta = [0.25, 2][c]! * (1 + (perturb ? [-0.3, 0.4][c]! : 0));
      return row.map((x) => (gamma * (x - [1, -1][c]!)) / Math.sqrt([4, 0.25][c]! + 1e-5) + beta);
    });
  for (const perturb of [false, true]) {
    perturbed.perturbed = perturb;
    // Through the module's own forward: the batch norm is replaced while perturbed exists.
    const out = noGrad(() => bn.forward(input));
    const values = out.flatten().toArray() as number[];
    expected(perturb).forEach((value, i) => assert.ok(Math.abs(values[i]! - value) < 1e-5, `${values[i]} vs ${value}`));
    out.dispose();
  }
  perturbed.dispose();
  // Disposed: the batch norm's own forward again (γ, β as they are).
  const plain = noGrad(() => bn.forward(input));
  assert.ok(Math.abs((plain.flatten().toArray() as number[])[0]! - (1.5 * 1) / Math.sqrt(4 + 1e-5) - 0.25) < 1e-5);
  plain.dispose();
  input.dispose();
  bn.dispose();
});

test('anp: a channel is pruned where its mask ends at or below the threshold', () => {
  assert.deepEqual(
    channelsToPrune(
      [
        [1, 0.19, 0.2, 0],
        [0.5, 0.7],
      ],
      0.2,
    ),
    [[1, 2, 3], []],
  );
});

test('anp: lowers the ASR of a BadNets network trained here', async () => {
  // BA falls too (measured: 100 → 46): on a 48-channel toy the clean loss itself drives the
  // masks of redundant channels down (with no noise at all, 15 end at or below 0.2), and
  // pruning them moves the next batch norm's inputs away from its running statistics.
  await defendBadNetsTinyNet(
    'anp',
    { iterations: 300, batchSize: 32 },
    {
      check: ({ report }) => {
        const anp = report.anp as { channels: number; layers: { layer: string; pruned: number[] }[] };
        console.log(`ANP pruned ${JSON.stringify(anp.layers.map((l) => [l.layer, l.pruned.length]))}`);
        assert.equal(anp.channels, 48);
      },
    },
  );
});
