// A small backdoored network trained in seconds, for the tests of every defense.
import assert from 'node:assert/strict';

import { setNumThreads } from '../../src/index.js';
import { createAttack } from '../../src/attacks/index.js';
import { subset } from '../../src/data/subset.js';
import { evaluate } from '../../src/eval/metrics.js';
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
