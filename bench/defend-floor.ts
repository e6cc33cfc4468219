// `npm run bench:defend-floor -- REPORT.json [...]`: where the time of a `mcldef defend`
// run on WRN-16-1/CIFAR-10 goes, against its floor: the multiply-adds of the passes the run
// had to make, divided by the rate this engine reaches on a WRN-16-1 SGD step (batch 64,
// the engine benchmark's step), measured here in the same process.
// It also times the same bare passes at batch 64 (forward; forward + input gradient; SGD
// step), so "measured / bare" is what the defense adds on top of the passes themselves.
// Work per image: forward 1×; inversion and detection (input gradient only) 2×; purification
// training (input and weight gradients) 3× the forward's multiply-adds.
// Options: --threads N (default 2), --clean N (2500), --test N (10000), --non-target N (9000),
//          --monitor N (1000), --steps S (12)
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { F, manualSeed, optim, randint, randn, setNumThreads, tidy, noGrad } from '../src/index.js';
import { Conv2d, Linear } from '../src/nn/layers.js';
import { WideResNet } from '../src/nn/models/wrn.js';
import type { Tensor } from '../src/engine/tensor.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: 'string', default: '2' },
    clean: { type: 'string', default: '2500' },
    test: { type: 'string', default: '10000' },
    'non-target': { type: 'string', default: '9000' },
    monitor: { type: 'string', default: '1000' },
    steps: { type: 'string', default: '12' },
  },
});
setNumThreads(Number(values.threads));
manualSeed(0);
const cleanCount = Number(values.clean);
const testCount = Number(values.test);
const nonTarget = Number(values['non-target']);
const monitorCount = Number(values.monitor);

/** Multiply-adds of one forward pass per image, counted from the conv and linear layers' shapes. */
function forwardMacs(model: WideResNet): number {
  let macs = 0;
  const conv = Conv2d.prototype.forward;
  const linear = Linear.prototype.forward;
  Conv2d.prototype.forward = function (this: Conv2d, input: Tensor): Tensor {
    const out = conv.call(this, input);
    const [, , kh, kw] = this.weight.shape as [number, number, number, number];
    macs += out.shape[1]! * out.shape[2]! * out.shape[3]! * (this.inChannels / this.options.groups) * kh * kw;
    return out;
  };
  Linear.prototype.forward = function (this: Linear, input: Tensor): Tensor {
    const out = linear.call(this, input);
    macs += this.weight.shape[0]! * this.weight.shape[1]!;
    return out;
  };
  try {
    model.eval();
    noGrad(() => tidy(() => model.forward(randn([1, 3, 32, 32]))));
  } finally {
    Conv2d.prototype.forward = conv;
    Linear.prototype.forward = linear;
  }
  return macs;
}

/** Median seconds of one SGD step of WRN-16-1 on a batch of 64 (cross-entropy, momentum 0.9). */
function stepSeconds(model: WideResNet, steps: number): number {
  model.train();
  const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
  const images = randn([64, 3, 32, 32]);
  const labels = randint(0, 10, [64]);
  const times: number[] = [];
  for (let step = 0; step < steps + 2; step++) {
    const start = performance.now();
    tidy(() => {
      const loss = F.crossEntropy(model.forward(images), labels);
      optimizer.zeroGrad();
      loss.backward();
      optimizer.step();
    });
    if (step >= 2) times.push((performance.now() - start) / 1000);
  }
  optimizer.dispose();
  images.dispose();
  labels.dispose();
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** Median seconds per image of a frozen eval-mode pass at batch 64: forward only, or with the input's gradient. */
function frozenSecondsPerImage(model: WideResNet, withInputGradient: boolean, steps: number): number {
  model.eval();
  model.requiresGrad_(false);
  const images = randn([64, 3, 32, 32]);
  const times: number[] = [];
  for (let step = 0; step < steps + 2; step++) {
    const start = performance.now();
    if (withInputGradient) {
      tidy(() => {
        const input = images.clone().requiresGrad_(true);
        model.forward(input).sum().backward();
        return input.grad!.sum().item();
      });
    } else {
      noGrad(() => tidy(() => model.forward(images).sum().item()));
    }
    if (step >= 2) times.push((performance.now() - start) / 1000 / 64);
  }
  model.requiresGrad_(true);
  images.dispose();
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

interface Report {
  target: number | null;
  detected_target: number | null;
  epochs: unknown[];
  trigger: { passes: number };
  seconds: Record<string, number>;
}

const model = new WideResNet({ depth: 16, widenFactor: 1, numClasses: 10 });
const macs = forwardMacs(model);
const step = stepSeconds(model, Number(values.steps));
const rate = (64 * 3 * macs) / step; // multiply-adds per second on the benchmark step
console.log(
  `WRN-16-1: ${(macs / 1e6).toFixed(2)} M multiply-adds per image forward; SGD step (batch 64) ${(step * 1000).toFixed(1)} ms = ${((2 * rate) / 1e9).toFixed(1)} GFLOP/s`,
);

const forwardImage = frozenSecondsPerImage(model, false, Number(values.steps));
const inputGradientImage = frozenSecondsPerImage(model, true, Number(values.steps));
console.log(
  `bare passes at batch 64, per image: forward ${(forwardImage * 1e3).toFixed(3)} ms (${((2 * macs) / forwardImage / 1e9).toFixed(1)} GFLOP/s), forward + input gradient ${(inputGradientImage * 1e3).toFixed(3)} ms, SGD step ${((step / 64) * 1e3).toFixed(3)} ms`,
);
console.log(
  "floor: multiply-adds ÷ the SGD step rate (the issue's definition); bare: images × the measured time of the same bare pass",
);

/** Seconds of `images` passes of a kind (1 forward, 2 forward + input gradient, 3 training) at the floor and bare. */
const floorOf = (images: number, factor: number): number => (images * factor * macs) / rate;
const bareOf = (images: number, factor: number): number =>
  images * (factor === 1 ? forwardImage : factor === 2 ? inputGradientImage : step / 64);
for (const path of positionals) {
  const report = JSON.parse(readFileSync(path, 'utf8')) as Report;
  const s = report.seconds;
  const detected = report.detected_target !== null && s.detection !== undefined && s.detection > 0;
  const monitored = report.epochs.length > 0 && (s.purification_monitor ?? 0) > 0;
  const rows: [string, number, number, number][] = [
    ['evaluation (before + after)', s.evaluation ?? NaN, 2 * (testCount + nonTarget), 1],
    ['detection scan (10 classes × 30 passes × 500)', s.detection ?? 0, detected ? 30 * 10 * 500 : 0, 2],
    [
      `inversion (${report.trigger.passes} passes × ${cleanCount})`,
      (s.inversion ?? NaN) - (s.detection ?? 0),
      report.trigger.passes * cleanCount,
      2,
    ],
    ['frozen features (clean + stamped)', s.purification_features ?? NaN, 2 * cleanCount, 1],
    [
      `purification training (${report.epochs.length} epochs × ${cleanCount})`,
      (s.purification ?? NaN) - (s.purification_features ?? 0) - (s.purification_monitor ?? 0),
      report.epochs.length * cleanCount,
      3,
    ],
    ['per-epoch monitor', s.purification_monitor ?? 0, monitored ? report.epochs.length * 1.9 * monitorCount : 0, 1],
    ['load (data and model)', s.load ?? NaN, 0, 1],
  ];
  const measured = rows.reduce((sum, [, seconds]) => sum + seconds, 0);
  const floor = rows.reduce((sum, [, , images, factor]) => sum + floorOf(images, factor), 0);
  const bare = rows.reduce((sum, [, , images, factor]) => sum + bareOf(images, factor), 0);
  console.log(`\n${path}`);
  console.log('| stage | measured s | floor s | bare passes s | measured / bare |');
  console.log('|---|---|---|---|---|');
  for (const [stage, seconds, images, factor] of rows) {
    const b = bareOf(images, factor);
    console.log(
      `| ${stage} | ${seconds.toFixed(1)} | ${floorOf(images, factor).toFixed(1)} | ${b.toFixed(1)} | ${b > 0 ? (seconds / b).toFixed(2) : '-'} |`,
    );
  }
  console.log(
    `| total (report: ${s.total!.toFixed(1)}) | ${measured.toFixed(1)} | ${floor.toFixed(1)} | ${bare.toFixed(1)} | ${(s.total! / bare).toFixed(2)} |`,
  );
}
