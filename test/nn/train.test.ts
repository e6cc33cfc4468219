// Acceptance 3 of the engine: a small CNN fits a toy separable image problem to ≥ 99 %
// training accuracy within seconds.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { F, manualSeed, optim, randperm, setNumThreads, tidy } from '../../src/index.js';
import { SmallCNN, accuracy, quadrantData } from '../helpers/toy.js';

test('a small CNN reaches ≥ 99 % training accuracy on the quadrant problem within seconds', () => {
  setNumThreads(1);
  manualSeed(0);
  const { images, labels } = quadrantData(512, 1);
  const model = new SmallCNN();
  const optimizer = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
  const started = performance.now();
  let epochs = 0;
  let trainAccuracy = 0;
  for (; epochs < 30 && trainAccuracy < 0.995; epochs++) {
    model.train();
    const order = randperm(512);
    for (let start = 0; start < 512; start += 32) {
      tidy(() => {
        const index = order.narrow(0, start, 32);
        const loss = F.crossEntropy(model.forward(images.indexSelect(0, index)), labels.indexSelect(0, index));
        optimizer.zeroGrad();
        loss.backward();
        optimizer.step();
      });
    }
    order.dispose();
    model.eval();
    trainAccuracy = tidy(() => accuracy(model.forward(images), labels));
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(`toy CNN: ${(trainAccuracy * 100).toFixed(2)} % after ${epochs} epochs in ${seconds.toFixed(2)} s`);
  assert.ok(trainAccuracy >= 0.99, `training accuracy ${trainAccuracy}`);
  assert.ok(seconds < 20, `took ${seconds} s`);
  // The untrained baseline is at chance: the test can fail.
  const fresh = new SmallCNN().eval();
  assert.ok(tidy(() => accuracy(fresh.forward(images), labels)) < 0.6);
  fresh.dispose();
  model.dispose();
  optimizer.dispose();
  images.dispose();
  labels.dispose();
});

test('manualSeed with one thread makes a training run repeat exactly', () => {
  setNumThreads(1);
  const run = (): number[] => {
    manualSeed(11);
    const { images, labels } = quadrantData(64, 5);
    const model = new SmallCNN();
    const optimizer = new optim.Adam(model.parameters(), { lr: 0.01 });
    const losses: number[] = [];
    for (let step = 0; step < 20; step++) {
      losses.push(
        tidy(() => {
          const loss = F.crossEntropy(model.forward(F.dropout(images, 0.1)), labels);
          optimizer.zeroGrad();
          loss.backward();
          optimizer.step();
          return loss.item();
        }),
      );
    }
    model.dispose();
    optimizer.dispose();
    images.dispose();
    labels.dispose();
    return losses;
  };
  const first = run();
  assert.deepEqual(run(), first);
  assert.ok(first[19]! < first[0]!, 'the loss went down');
});
