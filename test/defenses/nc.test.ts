// Neural Cleanse (src/defenses/nc.ts): its λ schedule and early stop on a scripted run, the
// unlearning set against the trigger applied here, and a backdoored network trained here
// whose ASR it lowers.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { noGrad, tidy } from '../../src/index.js';
import { toUnitRange } from '../../src/data/normalization.js';
import { NeuralCleanseSchedule } from '../../src/defenses/mcldef/mask.js';
import { PatternTrigger } from '../../src/defenses/mcldef/trigger.js';
import { unlearningSet } from '../../src/defenses/nc.js';
import { full, zeros } from '../../src/engine/creation.js';
import { defendBadNetsTinyNet } from '../helpers/backdoored.js';
import { quadrantSplit } from '../helpers/synthetic.js';

const options = { init: 1e-3, multiplier: 2, patience: 5, earlyStopThreshold: 0.99, earlyStopPatience: 25 };

test('nc: λ doubles after 5 passes at the threshold, falls by 2^1.5 after 5 below, and the run stops once stalled', () => {
  const schedule = new NeuralCleanseSchedule(options);
  for (let pass = 0; pass < 4; pass++) assert.equal(schedule.update(true, 100), false);
  assert.equal(schedule.cost, 1e-3, 'four passes: unchanged');
  schedule.update(true, 100);
  assert.equal(schedule.cost, 2e-3);
  for (let pass = 0; pass < 5; pass++) schedule.update(false, 100);
  assert.ok(Math.abs(schedule.cost - 2e-3 / 2 ** 1.5) < 1e-15);
  // Both directions taken; the best mask stays at 100 (not below 0.99 × 100): stalled. The
  // counter started at the first pass with a mask; it is 10 now, so 15 more passes stop it.
  let stopped = -1;
  for (let pass = 0; pass < 40 && stopped < 0; pass++) if (schedule.update(pass % 2 === 0, 100)) stopped = pass;
  assert.equal(stopped, 15);
  // A mask that keeps shrinking by more than 1 % a pass never stops the run.
  const shrinking = new NeuralCleanseSchedule(options);
  for (let pass = 0; pass < 100; pass++) assert.equal(shrinking.update(pass % 10 < 5, 100 * 0.98 ** pass), false);
});

test('nc: the unlearning set stamps a seeded fifth of the images with the trigger, labels unchanged', () => {
  const clean = quadrantSplit(50, 3);
  // A white 2×2 square in the top-left corner, as a mask trigger.
  const mask = zeros([12, 12]);
  noGrad(() => tidy(() => void mask.narrow(0, 0, 2).narrow(1, 0, 2).fill_(1)));
  const trigger = new PatternTrigger('mask', 1, full([3, 12, 12], 1), mask, 4, 1, [], true);
  const { split, stamped } = unlearningSet(clean, [trigger], 0.2, 7);
  try {
    assert.equal(stamped.length, 10);
    assert.deepEqual(Array.from(split.labelArray), Array.from(clean.labelArray));
    const before = clean.images.toTypedArray() as Uint8Array;
    const after = split.images.toTypedArray() as Uint8Array;
    const size = 3 * 12 * 12;
    for (let n = 0; n < clean.count; n++) {
      const original = before.subarray(n * size, (n + 1) * size);
      const now = after.subarray(n * size, (n + 1) * size);
      if (!stamped.includes(n)) {
        assert.deepEqual(now, original, `image ${n} untouched`);
        continue;
      }
      const expected = noGrad(() =>
        tidy(
          () =>
            trigger
              .apply(toUnitRange(clean.images.narrow(0, n, 1)))
              .mul(255)
              .round()
              .to('uint8')
              .toTypedArray() as Uint8Array,
        ),
      );
      assert.deepEqual(now, expected, `image ${n} stamped`);
      assert.equal(now[0], 255, 'the corner is white');
    }
  } finally {
    split.dispose();
    trigger.dispose();
    clean.dispose();
  }
});

test('nc: flags the target of a BadNets network trained here and unlearns it', async () => {
  // Four classes: the MAD index of the smallest of four masks hardly passes 2 (measured:
  // masks 7.1, 6.7, 3.8, 9.1, the target's index 1.73), so the threshold is 1.5 here.
  await defendBadNetsTinyNet(
    'nc',
    { inversionBatchSize: 64, threshold: 1.5, epochs: 10, batchSize: 32 },
    {
      check: ({ report }) => {
        const nc = report.neural_cleanse as { mask_norms: number[]; anomaly_indices: number[]; flagged: number[] };
        console.log(`NC masks ${nc.mask_norms.map((n) => n.toFixed(1)).join(', ')}, flagged ${nc.flagged}`);
        assert.equal(report.detected_target, 2);
        assert.equal(report.evidence!.trigger, 'mask', 'the flagged trigger is measured on the held-out images');
      },
    },
  );
});
