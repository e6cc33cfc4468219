// NAD (src/defenses/nad.ts): the attention map and the distillation loss against values
// computed here, the stage weights, and a backdoored network trained here whose ASR it lowers.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { tensor } from '../../src/index.js';
import { attentionLoss, attentionMap, stageBetas } from '../../src/defenses/nad.js';
import { createModel } from '../../src/nn/models/index.js';
import { defendBadNetsTinyNet } from '../helpers/backdoored.js';

/** Σ_c f² at each position, over the L2 norm of those sums (one image). */
function mapByHand(channels: number[][]): number[] {
  const summed = channels[0]!.map((_, i) => channels.reduce((sum, c) => sum + c[i]! ** 2, 0));
  const norm = Math.hypot(...summed);
  return summed.map((value) => value / (norm + 1e-6));
}

test('nad: the attention map and the loss as computed by hand', () => {
  // One image, two channels of 2×2.
  const studentValues = [
    [1, -2, 0.5, 3],
    [0, 1, -1, 2],
  ];
  const teacherValues = [
    [2, 0, 1, 1],
    [-1, 1, 0, 0.5],
  ];
  const student = tensor([studentValues.map((c) => [c.slice(0, 2), c.slice(2)])]);
  const teacher = tensor([teacherValues.map((c) => [c.slice(0, 2), c.slice(2)])]);
  const map = attentionMap(student);
  assert.deepEqual(map.shape, [1, 1, 2, 2]);
  const expected = mapByHand(studentValues);
  (map.flatten().toArray() as number[]).forEach((value, i) => assert.ok(Math.abs(value - expected[i]!) < 1e-6));
  const loss = attentionLoss(student, teacher).item();
  const other = mapByHand(teacherValues);
  const mse = expected.reduce((sum, value, i) => sum + (value - other[i]!) ** 2, 0) / 4;
  assert.ok(Math.abs(loss - mse) < 1e-7, `${loss} vs ${mse}`);
  for (const t of [student, teacher, map]) t.dispose();
});

test('nad: the attention weights in force for three and four stages', () => {
  assert.deepEqual(stageBetas(3, []), [500, 1000, 1000]);
  assert.deepEqual(stageBetas(4, []), [0, 0, 500, 1000]);
  assert.deepEqual(stageBetas(4, [1, 2]), [0, 0, 1, 2]);
  assert.throws(() => stageBetas(2, [1, 2, 3]), /3 attention weights for a model with 2 stages/);
  // WRN-16-1 gives its three block groups, PreAct-ResNet18 its four layers.
  for (const [arch, count] of [
    ['wrn-16-1', 3],
    ['preact-resnet18', 4],
  ] as const) {
    const model = createModel(arch, { numClasses: 10, inChannels: 3 });
    const input = tensor(new Float32Array(2 * 3 * 32 * 32).fill(0.1), { shape: [2, 3, 32, 32] });
    const { logits, stages } = model.forwardStages!(input);
    assert.equal(stages.length, count);
    const direct = model.forward(input);
    assert.ok(logits.sub(direct).abs().max().item() === 0, `${arch}: the same logits as forward()`);
    for (const t of [input, logits, direct, ...stages]) t.dispose();
    model.dispose();
  }
});

test('nad: lowers the ASR of a BadNets network trained here', async () => {
  // BackdoorBench's settings but the batch (800 images here): lr 0.01, betas 500 and 1000.
  await defendBadNetsTinyNet(
    'nad',
    { teacherEpochs: 10, epochs: 10, batchSize: 32 },
    { maxBaDrop: 10, check: ({ report }) => assert.equal(report.epochs.length, 10) },
  );
});
