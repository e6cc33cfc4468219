// `npm run bench:memory`: 5,000 training steps of a small conv net in one process;
// prints resident memory and live native tensors over time. Acceptance: after warm-up,
// RSS grows by ≤ 50 MB and the live-tensor count returns to its baseline.
import { parseArgs } from 'node:util';

import { F, liveTensorCount, optim, setNumThreads, tidy } from '../src/index.js';
import { SmallCNN, quadrantData } from '../test/helpers/toy.js';

const { values } = parseArgs({
  options: { steps: { type: 'string', default: '5000' }, warmup: { type: 'string', default: '500' } },
});
const steps = Number(values.steps);
const warmup = Number(values.warmup);
setNumThreads(1);

const baseline = liveTensorCount();
const { images, labels } = quadrantData(64, 2);
const model = new SmallCNN();
const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
let rssAfterWarmup = 0;
let liveAfterWarmup = 0;
const started = performance.now();
for (let step = 1; step <= steps; step++) {
  tidy(() => {
    const loss = F.crossEntropy(model.forward(images), labels);
    optimizer.zeroGrad();
    loss.backward();
    optimizer.step();
  });
  if (step === warmup) {
    rssAfterWarmup = process.memoryUsage.rss();
    liveAfterWarmup = liveTensorCount();
  }
  if (step % 500 === 0) {
    console.log(
      `step ${String(step).padStart(5)}  RSS ${mb(process.memoryUsage.rss())} MB  heap ${mb(process.memoryUsage().heapUsed)} MB  live tensors ${liveTensorCount() - baseline}`,
    );
  }
}
const growth = process.memoryUsage.rss() - rssAfterWarmup;
const liveAtEnd = liveTensorCount();
model.dispose();
optimizer.dispose();
images.dispose();
labels.dispose();
console.log(`${steps} steps in ${((performance.now() - started) / 1000).toFixed(1)} s`);
console.log(`RSS growth after warm-up (step ${warmup} → ${steps}): ${mb(growth)} MB (target ≤ 50 MB)`);
console.log(
  `live tensors: steady ${liveAtEnd === liveAfterWarmup ? 'yes' : 'NO'} (${liveAfterWarmup - baseline} → ${liveAtEnd - baseline}); after disposing the model: ${liveTensorCount() - baseline} (target 0)`,
);
if (growth > 50 * 2 ** 20 || liveTensorCount() !== baseline || liveAtEnd !== liveAfterWarmup) process.exitCode = 1;
