// `npm run bench:data`: CIFAR-10 (../shared/data/cifar10-jpeg, 60,000 JPEGs) decoded
// without a cache, then loaded from the cache (target ≤ 3 s), peak memory, and loader
// throughput with augmentation against WRN-16-1 training throughput, side by side.
// Options: --data SPEC (default cifar10:../shared/data/cifar10-jpeg), --threads N.
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { F, data, optim, setNumThreads, tidy } from '../src/index.js';
import { WideResNet } from '../src/nn/models/wrn.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: 'cifar10:../shared/data/cifar10-jpeg' },
    threads: { type: 'string', default: String(availableParallelism()) },
  },
});
setNumThreads(Number(values.threads));
const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(0);
const cacheDir = mkdtempSync(join(tmpdir(), 'mcldef-bench-cache-'));

function timed<T>(fn: () => T): [T, number] {
  const start = performance.now();
  const result = fn();
  return [result, (performance.now() - start) / 1000];
}

const [[coldTrain, coldTest], cold] = timed(() => [
  data.loadDataset(values.data, 'train', { cacheDir }),
  data.loadDataset(values.data, 'test', { cacheDir }),
]);
console.log(
  `decode without cache: ${coldTrain.count + coldTest.count} images in ${cold.toFixed(2)} s (peak RSS so far ${mb(process.resourceUsage().maxRSS * 1024)} MB)`,
);
coldTrain.dispose();
coldTest.dispose();
const [[train, test], cached] = timed(() => [
  data.loadDataset(values.data, 'train', { cacheDir }),
  data.loadDataset(values.data, 'test', { cacheDir }),
]);
console.log(`load from cache:      ${train.count + test.count} images in ${cached.toFixed(2)} s (target ≤ 3 s)`);
console.log(`peak RSS: ${mb(process.resourceUsage().maxRSS * 1024)} MB`);
test.dispose();
rmSync(cacheDir, { recursive: true, force: true });

// Loader: batch 128, random crop (padding 4) + flip, float conversion and normalization.
const loader = new data.DataLoader(train, {
  batchSize: 128,
  shuffle: true,
  seed: 0,
  augment: { cropPadding: 4, horizontalFlip: true },
  normalize: true,
});
let loaded = 0;
const [, loaderSeconds] = timed(() => {
  for (const batch of loader) {
    loaded += batch.indices.length;
    batch.images.dispose();
    batch.labels.dispose();
    if (loaded >= 20000) break;
  }
});
const loaderRate = loaded / loaderSeconds;

// WRN-16-1 training steps on the same kind of batches (batch 64).
const model = new WideResNet({ depth: 16, widenFactor: 1, numClasses: 10 }).train();
const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
const trainLoader = new data.DataLoader(train, { batchSize: 64, shuffle: true, seed: 1, normalize: true });
const batches = [...trainLoader.epoch(0)].slice(0, 12);
const step = (batch: data.Batch): void =>
  tidy(() => {
    const loss = F.crossEntropy(model.forward(batch.images), batch.labels);
    optimizer.zeroGrad();
    loss.backward();
    optimizer.step();
  });
step(batches[0]!);
step(batches[1]!);
const [, trainSeconds] = timed(() => batches.slice(2).forEach(step));
const trainRate = (10 * 64) / trainSeconds;
console.log(`loader with crop+flip+normalize: ${loaderRate.toFixed(0)} images/s`);
console.log(`WRN-16-1 training (${values.threads} threads): ${trainRate.toFixed(0)} images/s`);
console.log(`ratio loader / training: ${(loaderRate / trainRate).toFixed(1)}× (target ≥ 10×)`);
train.dispose();
model.dispose();
