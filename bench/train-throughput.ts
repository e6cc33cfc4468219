// `npm run bench:train`: images/s of the training loop (`trainModel`, as `mcldef train`
// runs it: poisoned batches, augmentation, normalization, metrics, progress callback)
// against bare SGD steps on a fixed batch, WRN-16-1, batch 128, in alternating rounds.
// Target: the loop adds ≤ 10 % on top of the bare steps.
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

import { F, data, optim, randint, randn, setNumThreads, tidy } from '../src/index.js';
import { createAttack } from '../src/attacks/index.js';
import { WideResNet } from '../src/nn/models/wrn.js';
import { trainModel } from '../src/train/trainer.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: 'cifar10:../shared/data/cifar10-jpeg' },
    threads: { type: 'string', default: String(availableParallelism()) },
    rounds: { type: 'string', default: '3' },
  },
});
setNumThreads(Number(values.threads));
const full = data.loadDataset(values.data, 'train');
const subset = full.select(data.subsetIndices(full, 0.05, { seed: 0 }), 'CIFAR-10 5 % (2,500 images)');
full.dispose();
const geometry = { channels: 3, height: 32, width: 32 };
const attack = createAttack({ name: 'badnets-grid', target: 0, numClasses: 10, geometry });
const model = new WideResNet({ depth: 16, widenFactor: 1, numClasses: 10 });
const batch = 128;

function loopRate(): number {
  let seen = 0;
  const result = trainModel({
    model,
    train: subset,
    attack,
    config: {
      epochs: 1,
      batchSize: batch,
      optimizer: 'sgd',
      lr: 0.01,
      momentum: 0.9,
      weightDecay: 5e-4,
      schedule: 'cosine',
      seed: 0,
      augment: { cropPadding: 4, horizontalFlip: true },
    },
    onBatch: (p) => (seen = p.batch),
  });
  void seen;
  return result.epochs[0]!.images_per_second;
}

function bareRate(): number {
  const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  const x = randn([batch, 3, 32, 32]);
  const y = randint(0, 10, [batch]);
  const steps = Math.ceil(subset.count / batch);
  const start = performance.now();
  for (let i = 0; i < steps; i++) {
    tidy(() => {
      const loss = F.crossEntropy(model.forward(x), y);
      optimizer.zeroGrad();
      loss.backward();
      optimizer.step();
    });
  }
  const rate = (steps * batch) / ((performance.now() - start) / 1000);
  optimizer.dispose();
  x.dispose();
  y.dispose();
  return rate;
}

model.train();
bareRate();
const loops: number[] = [];
const bares: number[] = [];
for (let round = 0; round < Number(values.rounds); round++) {
  loops.push(loopRate());
  bares.push(bareRate());
  console.log(
    `round ${round + 1}: loop ${loops.at(-1)!.toFixed(0)} img/s, bare steps ${bares.at(-1)!.toFixed(0)} img/s`,
  );
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const overhead = median(bares) / median(loops) - 1;
console.log(
  `WRN-16-1, batch ${batch}, ${values.threads} threads: loop ${median(loops).toFixed(0)} img/s vs bare ${median(bares).toFixed(0)} img/s: overhead ${(100 * overhead).toFixed(1)} % (target ≤ 10 %)`,
);
attack.dispose();
model.dispose();
subset.dispose();
