// Acceptance 4 of the engine (short form; `npm run bench:memory` runs 5,000 steps):
// training steps leak neither native tensors nor resident memory.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { F, liveTensorCount, optim, tidy } from '../../src/index.js';
import { SmallCNN, quadrantData } from '../helpers/toy.js';

test('1,000 training steps: live tensors return to baseline, RSS grows ≤ 50 MB after warm-up', () => {
  const baseline = liveTensorCount();
  const { images, labels } = quadrantData(64, 2);
  const model = new SmallCNN();
  const optimizer = new optim.Adam(model.parameters(), { lr: 1e-3 });
  const step = (): void =>
    tidy(() => {
      const loss = F.crossEntropy(model.forward(images), labels);
      optimizer.zeroGrad();
      loss.backward();
      optimizer.step();
    });
  for (let i = 0; i < 200; i++) step();
  const afterWarmup = liveTensorCount();
  const rssWarm = process.memoryUsage.rss();
  for (let i = 0; i < 1000; i++) step();
  const growthMB = (process.memoryUsage.rss() - rssWarm) / 2 ** 20;
  console.log(
    `RSS growth over 1,000 steps after warm-up: ${growthMB.toFixed(1)} MB; live tensors ${liveTensorCount() - baseline}`,
  );
  assert.equal(liveTensorCount(), afterWarmup, 'steady state: no tensor handle accumulates');
  assert.ok(growthMB <= 50, `RSS grew ${growthMB} MB`);
  model.dispose();
  optimizer.dispose();
  images.dispose();
  labels.dispose();
  assert.equal(liveTensorCount(), baseline, 'everything freed');
});
