// FT (src/defenses/ft.ts): BackdoorBench's settings as the defaults, every layer trained, and a
// backdoored network trained here whose ASR fine-tuning on its clean data lowers.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { tidy } from '../../src/index.js';
import { defenseEntry, resolveOptions } from '../../src/defenses/index.js';
import { BACKDOORBENCH_FINE_TUNING, fineTuneSettings } from '../../src/defenses/finetune.js';
import { defendBadNetsTinyNet } from '../helpers/backdoored.js';

test('ft: the defaults are BackdoorBench CIFAR-10 fine-tuning, every one an option', () => {
  const entry = defenseEntry('ft');
  const values = resolveOptions(entry.options, {}, "defense 'ft'");
  assert.deepEqual(fineTuneSettings(values, BACKDOORBENCH_FINE_TUNING), {
    epochs: 100,
    batchSize: 256,
    lr: 0.01,
    momentum: 0.9,
    weightDecay: 5e-4,
  });
  const set = resolveOptions(entry.options, { epochs: 3, lr: 0.05 }, "defense 'ft'");
  assert.equal(fineTuneSettings(set, BACKDOORBENCH_FINE_TUNING).epochs, 3);
  assert.equal(fineTuneSettings(set, BACKDOORBENCH_FINE_TUNING).lr, 0.05);
  assert.throws(() => resolveOptions(entry.options, { lr: -1 }, "defense 'ft'"), /lr/);
});

test('ft: fine-tuning changes every layer and lowers the ASR of a BadNets network trained here', async () => {
  await defendBadNetsTinyNet(
    'ft',
    { epochs: 20, lr: 0.05, batchSize: 32 },
    {
      maxBaDrop: 10,
      check: ({ report, model, initial }) => {
        assert.equal(report.epochs.length, 20);
        model
          .parameters()
          .forEach((p, i) =>
            assert.ok(tidy(() => p.sub(initial[i]!).abs().max().item()) > 0, `parameter ${i} changed`),
          );
      },
    },
  );
});
