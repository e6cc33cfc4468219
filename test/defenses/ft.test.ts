// FT (src/defenses/ft.ts): BackdoorBench's settings as the defaults, every layer trained, and a
// backdoored network trained here whose ASR fine-tuning on its clean data lowers.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { liveTensorCount, noGrad, tidy } from '../../src/index.js';
import { defend, defenseEntry, resolveOptions } from '../../src/defenses/index.js';
import { BACKDOORBENCH_FINE_TUNING, fineTuneSettings } from '../../src/defenses/finetune.js';
import { backdooredTinyNet } from '../helpers/backdoored.js';

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
  const { train, testSplit, attack, model, before, clean } = backdooredTinyNet({
    attack: { name: 'badnets-square', target: 2, poisonRate: 0.1, options: {} },
    seeds: [31, 32],
    size: 12,
    epochs: 10,
  });
  const live = liveTensorCount();
  const weights = noGrad(() => model.parameters().map((p) => p.clone()));
  try {
    const { report } = await defend({
      model,
      clean,
      test: testSplit,
      attack,
      method: 'ft',
      options: { epochs: 20, lr: 0.05, batchSize: 32 },
      seed: 1,
      dataKind: 'synthetic',
      monitor: 0,
    });
    console.log(
      `FT on a synthetic BadNets: BA ${before.ba.toFixed(1)} → ${report.after.ba.toFixed(1)}, ASR ${before.asr.toFixed(1)} → ${report.after.asr!.toFixed(1)}`,
    );
    assert.equal(report.method, 'ft');
    assert.equal(report.epochs.length, 20);
    assert.ok(report.after.asr! < before.asr - 20, `ASR ${before.asr} → ${report.after.asr}`);
    assert.ok(report.after.ba > before.ba - 10, `BA ${before.ba} → ${report.after.ba}`);
    model
      .parameters()
      .forEach((p, i) => assert.ok(tidy(() => p.sub(weights[i]!).abs().max().item()) > 0, `parameter ${i} changed`));
    assert.equal(liveTensorCount(), live + weights.length, 'no tensor left behind');
  } finally {
    for (const w of weights) w.dispose();
    for (const item of [model, attack, train, testSplit, clean]) item.dispose();
  }
});
