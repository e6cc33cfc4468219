// Fine-Pruning (src/defenses/fp.ts): the pruning order and the amount chosen on held-out
// accuracy, against values computed here; the head found on a model; and a backdoored network
// trained here whose ASR it lowers, its pruned channels still zero after fine-tuning.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { noGrad, tensor, tidy } from '../../src/index.js';
import { choosePruning, headWeight, pruningOrder } from '../../src/defenses/fp.js';
import { defendBadNetsTinyNet } from '../helpers/backdoored.js';
import { TinyNet } from '../helpers/synthetic.js';

test('fp: channels in order of mean activation, most dormant first, ties by index', () => {
  const features = tensor([
    [1, 0, 3, 0.5, 2],
    [3, 0, 1, 0.1, 2],
  ]);
  // Means 2, 0, 2, 0.3, 2.
  assert.deepEqual(pruningOrder(features), [1, 3, 0, 2, 4]);
  features.dispose();
});

test('fp: prunes while held-out accuracy stays within accRatio of the unpruned, stops at the first step below', () => {
  // 10 channels, one a step; accuracy 90 − 2 per channel: 80 < 0.9 × 90 = 81 at five.
  const seen: number[] = [];
  const choice = choosePruning(
    (count) => {
      seen.push(count);
      return 90 - 2 * count;
    },
    10,
    { accRatio: 0.1, step: 0.1 },
  );
  assert.equal(choice.pruned, 4);
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5], 'nothing is measured after the first step below');
  assert.deepEqual(
    choice.steps.map((s) => [s.pruned, s.held_out_accuracy]),
    [
      [0, 90],
      [1, 88],
      [2, 86],
      [3, 84],
      [4, 82],
      [5, 80],
    ],
  );
  // Steps of round(0.25 × 64) = 16 channels; never all of them.
  const wide = choosePruning(() => 50, 64, { accRatio: 0.1, step: 0.25 });
  assert.equal(wide.pruned, 48);
  assert.deepEqual(
    wide.steps.map((s) => s.pruned),
    [0, 16, 32, 48],
  );
  // A step below one channel prunes one at a time.
  assert.equal(choosePruning((count) => (count <= 2 ? 50 : 0), 8, { accRatio: 0.1, step: 0.01 }).pruned, 2);
});

test("fp: the head's weight is the 2-D parameter classify reads on the feature channels", () => {
  const model = new TinyNet();
  const weight = headWeight(model, 32);
  assert.deepEqual(weight.shape, [4, 32]);
  assert.ok(noGrad(() => tidy(() => weight.sub(model.fc.weight).abs().max().item())) === 0);
  assert.throws(() => headWeight(model, 7), /needs a linear head on the 7 feature channels/);
  model.dispose();
});

test('fp: lowers the ASR of a BadNets network trained here; the pruned channels stay zero', async () => {
  await defendBadNetsTinyNet(
    'fp',
    { epochs: 20, lr: 0.05, batchSize: 32, accRatio: 0.1, step: 0.05 },
    {
      check: ({ report, model }) => {
        const pruning = report.pruning as { channels: number; pruned: number; pruned_channels: number[] };
        assert.equal(pruning.channels, 32);
        assert.equal(pruning.pruned_channels.length, pruning.pruned);
        assert.ok(pruning.pruned > 0, 'something was pruned');
        const columns = noGrad(() =>
          tidy(() => pruning.pruned_channels.map((c) => model.fc.weight.select(1, c).abs().max().item())),
        );
        assert.deepEqual(columns, new Array(pruning.pruned).fill(0), 'pruned columns are zero after fine-tuning');
      },
    },
  );
});
