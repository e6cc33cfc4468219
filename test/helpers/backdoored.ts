// A small backdoored network trained in seconds, for the tests of every defense.
import assert from 'node:assert/strict';

import { type Tensor, liveTensorCount, noGrad, setNumThreads } from '../../src/index.js';
import { createAttack } from '../../src/attacks/index.js';
import { subset } from '../../src/data/subset.js';
import { defend } from '../../src/defenses/index.js';
import type { DefendReport } from '../../src/defenses/pipeline.js';
import { type Metrics, evaluate } from '../../src/eval/metrics.js';
import { trainModel } from '../../src/train/trainer.js';
import { TinyNet, quadrantSplit } from './synthetic.js';

/**
 * A TinyNet trained on 800 synthetic quadrant images (4 classes) with `attack` poisoned in;
 * asserts that the backdoor took (ASR > 80 % on 300 test images). `clean` is a quarter of the
 * training images, the defender's.
 */
export function backdooredTinyNet(setup: {
  attack: { name: string; target: number; poisonRate: number; options: Record<string, number> };
  seeds: [number, number];
  size: number;
  epochs: number;
}) {
  setNumThreads(1);
  const { size } = setup;
  const train = quadrantSplit(800, setup.seeds[0], size);
  const testSplit = quadrantSplit(300, setup.seeds[1], size);
  const attack = createAttack({
    ...setup.attack,
    seed: 3,
    numClasses: 4,
    geometry: { channels: 3, height: size, width: size },
  });
  const model = new TinyNet();
  const config = { batchSize: 32, optimizer: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 5e-4 } as const;
  trainModel({ model, train, attack, config: { ...config, epochs: setup.epochs, schedule: 'cosine', seed: 2 } });
  const before = evaluate(model, testSplit, { normalization: testSplit.normalization, trigger: attack });
  assert.ok(before.asr > 80, `the backdoor took: ASR ${before.asr}`);
  const clean = subset(train, 0.25, { seed: 5 });
  return { train, testSplit, attack, model, before, clean };
}

/** What a defense test reads after the run, before the model is disposed. */
export interface DefendedTinyNet {
  report: DefendReport;
  before: Metrics;
  model: TinyNet;
  /** Copies of the model's parameters before the defense, in parameters() order. */
  initial: Tensor[];
}

/**
 * The run every defense's test makes: the BadNets TinyNet (a 3×3 square, target 2, 10 %
 * poisoned), the defense through defend() with its clean quarter (no mirroring: a quadrant's
 * position is its class), BA and ASR printed, ASR down by more than 20 points (and BA by at
 * most `maxBaDrop` where given), no tensor left behind; then the test's own `check`.
 */
export async function defendBadNetsTinyNet(
  method: string,
  options: Record<string, unknown>,
  settings: { maxBaDrop?: number; check?: (run: DefendedTinyNet) => void } = {},
): Promise<DefendedTinyNet['report']> {
  const { train, testSplit, attack, model, before, clean } = backdooredTinyNet({
    attack: { name: 'badnets-square', target: 2, poisonRate: 0.1, options: {} },
    seeds: [31, 32],
    size: 12,
    epochs: 10,
  });
  const initial = noGrad(() => model.parameters().map((p) => p.clone()));
  const live = liveTensorCount();
  try {
    const { report } = await defend({
      model,
      clean,
      test: testSplit,
      attack,
      method,
      options,
      seed: 1,
      dataKind: 'synthetic',
      monitor: 0,
    });
    console.log(
      `${method} on a synthetic BadNets: BA ${before.ba.toFixed(1)} → ${report.after.ba.toFixed(1)}, ASR ${before.asr.toFixed(1)} → ${report.after.asr!.toFixed(1)}`,
    );
    assert.equal(report.method, method);
    assert.ok(report.after.asr! < before.asr - 20, `ASR ${before.asr} → ${report.after.asr}`);
    if (settings.maxBaDrop !== undefined) {
      assert.ok(report.after.ba > before.ba - settings.maxBaDrop, `BA ${before.ba} → ${report.after.ba}`);
    }
    settings.check?.({ report, before, model, initial });
    assert.equal(liveTensorCount(), live, 'no tensor left behind');
    return report;
  } finally {
    for (const t of initial) t.dispose();
    for (const item of [model, attack, train, testSplit, clean]) item.dispose();
  }
}
