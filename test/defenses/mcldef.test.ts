// MCLDef: the size regularizer and the contrastive loss against hand-computed values, the
// pruning/best-pattern/cost rules on scripted sequences, and a tiny synthetic backdoor
// found by detect and removed by purify.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { F, type Tensor, manualSeed, noGrad, setNumThreads, tensor, tidy } from '../../src/index.js';
import { normalize, toUnitRange } from '../../src/data/normalization.js';
import { createAttack } from '../../src/attacks/index.js';
import {
  BestPattern,
  CostSchedule,
  chooseTarget,
  batchEnd,
  passBatches,
  contrastiveLoss,
  detectBackdoor,
  DEFAULT_ANOMALY_SCALE,
  DEFAULT_MAX_SIZE_FRACTION,
  DEFAULT_MIN_STABILITY,
  flagTarget,
  invertTrigger,
  patternRegularizer,
  patternSize,
  prunePattern,
  prunePatternPair,
  type PurifyOptions,
  purify,
  refitHead,
  sizeSurrogate,
  stampAdditive,
  fitWarp,
  identityGrid,
  warpImages,
  scanSignals,
  signalFamily,
  signalFlag,
  signalPattern,
  SignalTrigger,
  stackTriggers,
  PatternTrigger,
  withPatterns,
  type InvertedTrigger,
} from '../../src/defenses/mcldef/index.js';
import { evaluate } from '../../src/eval/metrics.js';
import { subset } from '../../src/data/subset.js';
import { trainModel } from '../../src/train/trainer.js';
import { TinyNet, quadrantSplit } from '../helpers/synthetic.js';
import { backdooredTinyNet } from '../helpers/backdoored.js';

const close = (a: number, b: number, tolerance = 1e-6): void => assert.ok(Math.abs(a - b) <= tolerance, `${a} vs ${b}`);

test('size surrogate g(v) = tanh(v/10)/(2 − 1e-7) + 0.5 and R = Σ_hw max_c g(P+) + Σ_hw max_c g(P-)', () => {
  tidy(() => {
    const g = (v: number): number => Math.tanh(v / 10) / (2 - 1e-7) + 0.5;
    close(sizeSurrogate(tensor([0])).item(), g(0));
    close(sizeSurrogate(tensor([3])).item(), g(3));
    // 2 channels × 1×2: max over channels per position.
    const positive = tensor([0.2, 0.9, 0.5, 0.1], { shape: [2, 1, 2] });
    const negative = tensor([0, 0, 1, 0.3], { shape: [2, 1, 2] });
    close(patternRegularizer(positive, negative).item(), g(0.5) + g(0.9) + g(1) + g(0.3), 1e-6);
  });
});

test('contrastive loss = −log(e^{cos(a,p)/τ} / (e^{cos(a,p)/τ} + e^{cos(a,n)/τ}))', () => {
  tidy(() => {
    const a = tensor([[1, 0]]);
    const p = tensor([[1, 1]]); // cos = 1/√2
    const n = tensor([[0, 1]]); // cos = 0
    const cp = 1 / Math.SQRT2 / 0.5;
    const expected = -Math.log(Math.exp(cp) / (Math.exp(cp) + Math.exp(0)));
    close(contrastiveLoss(a, p, n, 0.5).item(), expected, 1e-6);
    // Batch mean; identical positive and anchor with opposite negative is the minimum here.
    const batch = contrastiveLoss(
      tensor([
        [1, 0],
        [0, 2],
      ]),
      tensor([
        [2, 0],
        [0, 1],
      ]),
      tensor([
        [-1, 0],
        [0, -3],
      ]),
      0.5,
    );
    close(batch.item(), -Math.log(Math.exp(2) / (Math.exp(2) + Math.exp(-2))), 1e-6);
  });
});

test('pruning zeroes entries below 1/255; size counts positions with any non-zero channel', () => {
  tidy(() => {
    const delta = tensor([0.001, 0.5, -0.003, 0, 0.0039, -0.2, 0.001, 0], { shape: [2, 2, 2] });
    const pruned = prunePattern(delta);
    assert.deepEqual(
      pruned.toArray(),
      [
        [
          [0, 0.5],
          [0, 0],
        ],
        [
          [0, -0.2],
          [0, 0],
        ],
      ].map((c) => c.map((r) => r.map((v) => Math.fround(v)))),
    );
    assert.equal(patternSize(pruned), 1);
    assert.equal(patternSize(delta), 3);
  });
});

test('published pass-end pruning: P+ and P- pruned each on its own, overlap kept for the restart', () => {
  tidy(() => {
    // One channel, four positions: overlap (0.6 / 0.55), P+ below 1/255 (0.003 / 0.5),
    // both above 1/255 with a difference below it (0.5 / 0.499), both below (0.002 / 0.001).
    const positive = tensor([0.6, 0.003, 0.5, 0.002], { shape: [1, 1, 4] });
    const negative = tensor([0.55, 0.5, 0.499, 0.001], { shape: [1, 1, 4] });
    const { positive: p, negative: n, delta } = prunePatternPair(positive, negative);
    const f = (values: number[]): number[] => values.map((v) => Math.fround(v));
    assert.deepEqual(p.toArray(), [[f([0.6, 0, 0.5, 0])]]);
    assert.deepEqual(n.toArray(), [[f([0.55, 0.5, 0.499, 0])]]);
    const d = (delta.toArray() as number[][][])[0]![0]!;
    close(d[0]!, 0.05, 1e-6);
    close(d[1]!, -0.5, 1e-6);
    close(d[2]!, 0.001, 1e-6);
    assert.equal(d[3], 0);
    // The tiny difference at position 2 still counts, as in the published size.
    assert.equal(patternSize(delta), 3);
  });
});

test('drop_last: only full batches when one exists; the whole set otherwise', () => {
  assert.equal(batchEnd(2500, 64, true), 2496);
  assert.equal(batchEnd(2500, 64, false), 2500);
  assert.equal(batchEnd(2496, 64, true), 2496);
  assert.equal(batchEnd(50, 64, true), 50, 'fewer images than a batch: one batch of all');
  const split = quadrantSplit(70, 3);
  const sizes = (dropLast: boolean): number[] => {
    const out: number[] = [];
    for (const batch of passBatches(split, 32, 0, 0, dropLast)) {
      out.push(batch.size(0));
      batch.dispose();
    }
    return out;
  };
  assert.deepEqual(sizes(true), [32, 32]);
  assert.deepEqual(sizes(false), [32, 32, 6]);
  split.dispose();
});

test('best-pattern rule: accurate enough, and smaller in R and in size, on a scripted sequence', () => {
  const best = new BestPattern();
  const offer = (accuracy: number, r: number, size: number): boolean =>
    best.offer(
      tidy(() => tensor([size])),
      accuracy,
      r,
      size,
      0.9,
    );
  assert.equal(offer(0.8, 10, 10), false, 'not accurate enough');
  assert.equal(offer(0.95, 10, 10), true);
  assert.equal(offer(0.99, 9, 12), false, 'smaller R but larger size');
  assert.equal(offer(0.99, 11, 8), false, 'smaller size but larger R');
  assert.equal(offer(0.9, 9, 9), true);
  assert.equal(best.size, 9);
  assert.equal(best.regularizer, 9);
  best.delta?.dispose();
});

test('cost schedule: ×1.5 after 10 passes at or above the threshold, ÷1.5^1.5 after 10 below', () => {
  const schedule = new CostSchedule(1e-3);
  for (let i = 0; i < 9; i++) schedule.update(0.95, 0.9);
  close(schedule.cost, 1e-3);
  schedule.update(0.9, 0.9);
  close(schedule.cost, 1.5e-3, 1e-12);
  for (let i = 0; i < 9; i++) schedule.update(0.5, 0.9);
  close(schedule.cost, 1.5e-3, 1e-12);
  schedule.update(0.5, 0.9);
  close(schedule.cost, 1.5e-3 / 1.5 ** 1.5, 1e-12);
  schedule.update(0.95, 0.9);
  for (let i = 0; i < 8; i++) schedule.update(0.5, 0.9);
  close(schedule.cost, 1.5e-3 / 1.5 ** 1.5, 1e-12);
});

test('MAD anomaly index flags the anomalously small class, and nothing when none stands out', () => {
  const flagged = flagTarget([9, 60, 70, 80, 65, 75, 62, 71, 68, 77]);
  assert.equal(flagged.target, 0);
  assert.ok(flagged.indices[0]! > 2);
  assert.equal(flagTarget([60, 70, 80, 65, 75, 62, 71, 68, 77, 66]).target, null);
  assert.equal(flagTarget([200, 60, 70, 80, 65, 75, 62, 71, 68, 77]).target, null, 'large outliers are not backdoors');
});

test('log-scale anomaly index on measured scans: finds the patch backdoor the linear index misses', () => {
  // Trigger sizes of 30-pass scans measured with `mcldef detect`/`defend` (seed 0, CIFAR-10 JPEG).
  const authors = [107, 96, 115, 138, 76, 29, 92, 94, 112, 115]; // released model, target 5
  const clean = [264, 154, 251, 270, 178, 159, 152, 175, 186, 119]; // clean WRN-16-1
  const patch = [15, 133, 244, 619, 192, 556, 291, 136, 146, 572]; // patch attack, target 0
  assert.equal(flagTarget(authors).target, 5);
  assert.equal(flagTarget(clean).target, null);
  const linear = flagTarget(patch);
  assert.equal(linear.target, null, 'three very large triggers inflate the linear MAD');
  close(linear.indices[0]!, 203 / (1.4826 * 83.5), 1e-9);
  const log = flagTarget(patch, 2, 'log');
  assert.equal(log.target, 0);
  assert.ok(log.indices[0]! > 3.5, `log index ${log.indices[0]}`);
  assert.equal(flagTarget(authors, 2, 'log').target, 5);
  assert.equal(flagTarget(clean, 2, 'log').target, null);
  close(log.median, (Math.log1p(192) + Math.log1p(244)) / 2, 1e-12);
});

test('the default anomaly scale (log) flags what the linear index flags on every scan measured on the AMD EPYC', () => {
  assert.equal(DEFAULT_ANOMALY_SCALE, 'log');
  // Trigger sizes of the 30-pass scans of `mcldef defend --detect` / `mcldef detect` (README).
  const scans: [string, number[], number | null][] = [
    ['authors', [137, 95, 89, 119, 95, 39, 83, 107, 141, 132], 5],
    ['authors, the scan restart of the defaults', [176, 90, 149, 81, 81, 26, 93, 110, 101, 84], 5],
    ['clean WRN-16-1', [212, 164, 180, 297, 193, 245, 170, 168, 191, 153], null],
    ['badnets-grid', [11, 164, 222, 271, 151, 136, 164, 158, 162, 169], 0],
    ['badnets-square', [14, 155, 284, 306, 180, 150, 184, 152, 173, 123], 0],
    ['blended', [76, 436, 584, 509, 470, 516, 442, 504, 548, 581], 0],
    ['trojan', [12, 199, 297, 331, 197, 184, 215, 182, 190, 553], 0],
    ['demo (Fashion-MNIST)', [16, 161, 199, 179, 208, 76, 161, 206, 57, 204], 0],
  ];
  for (const [model, sizes, target] of scans) {
    assert.equal(flagTarget(sizes).target, target, `${model}: linear`);
    const log = flagTarget(sizes, 2, DEFAULT_ANOMALY_SCALE);
    assert.equal(log.target, target, `${model}: log`);
    // Where a backdoor is flagged, the log index separates it at least as clearly.
    if (target !== null) assert.ok(log.indices[target]! >= flagTarget(sizes).indices[target]!, model);
    const withRule = flagTarget(sizes, 2, DEFAULT_ANOMALY_SCALE, DEFAULT_MAX_SIZE_FRACTION);
    assert.equal(withRule.target, target, `${model}: log, half-median rule`);
  }
});

test('the half-median rule: a slightly small trigger among tightly clustered sizes is no backdoor', () => {
  assert.equal(DEFAULT_MAX_SIZE_FRACTION, 0.5);
  // The SIG model of bench:attacks on the AMD EPYC (target 0; its backdoor has no small trigger).
  const sig = [183, 149, 167, 252, 197, 182, 157, 166, 178, 130];
  const index = flagTarget(sig, 2, 'log');
  assert.equal(index.target, 9, 'the index alone flags class 9');
  close(index.indices[9]!, 2.48, 0.005);
  assert.equal(flagTarget(sig).target, 9, 'so does the linear index');
  assert.equal(flagTarget(sig, 2, 'log', DEFAULT_MAX_SIZE_FRACTION).target, null, '130 is 0.75 of the median 172');
  assert.equal(flagTarget(sig, 2, 'log', 0.76).target, 9);
  // The patch model (target 0, size 8 of a median 198): flagged under the rule too.
  const patch = [8, 121, 606, 523, 486, 146, 238, 150, 158, 683];
  assert.equal(flagTarget(patch, 2, 'log', DEFAULT_MAX_SIZE_FRACTION).target, 0);
  assert.equal(flagTarget(patch).target, null, 'the linear index misses it (0.96)');
});

test('a tiny synthetic backdoor is found by detect (target unknown) and removed by purify', () => {
  setNumThreads(1);
  const train = quadrantSplit(800, 11);
  const testSplit = quadrantSplit(300, 12);
  const geometry = { channels: 3, height: 12, width: 12 };
  const attack = createAttack({ name: 'badnets-square', target: 2, poisonRate: 0.1, seed: 1, numClasses: 4, geometry });
  const model = new TinyNet();
  trainModel({
    model,
    train,
    attack,
    config: {
      epochs: 10,
      batchSize: 32,
      optimizer: 'sgd',
      lr: 0.05,
      momentum: 0.9,
      weightDecay: 5e-4,
      schedule: 'cosine',
      seed: 2,
    },
  });
  const before = evaluate(model, testSplit, { normalization: testSplit.normalization, trigger: attack });
  assert.ok(before.asr > 90, `the backdoor took: ASR ${before.asr}`);
  const clean = subset(train, 0.25, { seed: 5 });
  // On this toy (4 classes, a 15-pass scan) the backdoor's trigger is 0.21 of the median, its
  // images separate less than the median class's (0.66) and its restarts agree at 0.49: just
  // below the default 0.5, which a clean Fashion-MNIST class reached 0.47 against. The default
  // decision vetoes it (checked below). The scan's random starts come from the generator, so
  // a second scan differs; with 0.45 it finds the target.
  const vetoed = detectBackdoor(model, clean, { scanPasses: 15, scanImages: 200, seed: 1, keepTargetPatterns: true });
  assert.equal(vetoed.target, null);
  assert.deepEqual(vetoed.targetPatterns, [], 'no target, no patterns handed over');
  assert.deepEqual(vetoed.vetoed, [2]);
  assert.ok(vetoed.classes[2]!.stability! > 0.45 && vetoed.classes[2]!.stability! < DEFAULT_MIN_STABILITY);
  const detection = detectBackdoor(model, clean, {
    scanPasses: 15,
    scanImages: 200,
    seed: 1,
    minStability: 0.45,
    keepTargetPatterns: true,
  });
  // The flagged target's patterns are handed over: its scan's (first) and its restarts'. The
  // first is the pattern whose size the scan recorded: its non-zero positions.
  assert.equal(detection.targetPatterns.length, 1 + detection.classes[2]!.restartSizes.length);
  for (const pattern of detection.targetPatterns) assert.deepEqual(pattern.shape, [3, 12, 12]);
  assert.equal(patternSize(detection.targetPatterns[0]!), detection.classes[2]!.size);
  for (const pattern of detection.targetPatterns) pattern.dispose();
  console.log(
    `detect: sizes ${detection.classes.map((c) => c.size).join(', ')}; indices ${detection.classes.map((c) => c.anomalyIndex.toFixed(2)).join(', ')}; agreement ${detection.classes.map((c) => c.stability?.toFixed(2)).join(', ')}`,
  );
  assert.equal(detection.target, 2);
  // Four classes: the median size is the mean of the middle two.
  const sorted = detection.classes.map((c) => c.size).sort((a, b) => a - b);
  const medianSize = (sorted[1]! + sorted[2]!) / 2;
  for (const c of detection.classes) close(c.sizeFraction, c.size / medianSize, 1e-12);
  // With the other confirmations taken away, the flagged class, and it alone, is restarted.
  const restarted = detectBackdoor(model, clean, {
    scanPasses: 15,
    scanImages: 200,
    seed: 1,
    strongSizeFraction: 0,
    minSeparationRatio: 0,
  });
  assert.equal(restarted.classes[2]!.restartSizes.length, 2);
  const agreement = restarted.classes[2]!.stability!;
  assert.ok(agreement >= -1 && agreement <= 1);
  assert.equal(restarted.target, agreement >= DEFAULT_MIN_STABILITY ? 2 : null);
  for (const label of [0, 1, 3])
    assert.equal(restarted.classes[label]!.stability, null, 'only flagged classes restart');
  assert.equal(detection.flaggedBy, 'size');
  assert.match(detection.decidedBy, /^Class 2: its inverted trigger is anomalously small/);
  // The inversion's random start, whatever the scan drew before it. On this toy the
  // contrastive loss alone keeps BA only from some starts (BA after 36-61 % over starts 0, 1,
  // 4 with the scan's inversion settings; ASR after 0-1 %): start 1 is one that does.
  manualSeed(1);
  const trigger = invertTrigger(model, clean, 2, { passes: 30, seed: 1, restart: 'difference', dropLast: false });
  assert.ok(trigger.found);
  console.log(`synthetic inversion: trigger size ${trigger.size}`);
  // Under bfloat16 autocast the inversion finds a trigger of about the same size.
  const fast = invertTrigger(model, clean, 2, { passes: 30, seed: 1, precision: 'bfloat16' });
  assert.ok(fast.found && fast.size <= 2 * trigger.size, `bfloat16 size ${fast.size}, float32 ${trigger.size}`);
  fast.dispose();
  const copy = new TinyNet();
  copy.loadStateDict(model.stateDict());
  const published = purify(model, clean, trigger, {
    epochs: 10,
    lrSchedule: (epoch) => (epoch < 1 ? 0.05 : 0.01),
  });
  const afterPublished = evaluate(model, testSplit, { normalization: testSplit.normalization, trigger: attack });
  console.log(
    `synthetic MCLDef (contrastive loss alone): BA ${before.ba.toFixed(1)} → ${afterPublished.ba.toFixed(1)}, ASR ${before.asr.toFixed(1)} → ${afterPublished.asr.toFixed(1)} (${published.seconds.toFixed(1)} s)`,
  );
  assert.ok(afterPublished.asr < 20, `ASR after ${afterPublished.asr}`);
  assert.ok(afterPublished.ba >= 50, `BA after ${afterPublished.ba} (chance is 25)`);
  // Purification under bfloat16 autocast, same trigger, same start: close to float32's result.
  purify(copy, clean, trigger, {
    epochs: 10,
    lrSchedule: (epoch) => (epoch < 1 ? 0.05 : 0.01),
    precision: 'bfloat16',
  });
  const afterFast = evaluate(copy, testSplit, { normalization: testSplit.normalization, trigger: attack });
  console.log(`synthetic MCLDef in bfloat16: BA ${afterFast.ba.toFixed(1)}, ASR ${afterFast.asr.toFixed(1)}`);
  assert.ok(afterFast.asr < 20, `bfloat16: ASR ${afterFast.asr}`);
  assert.ok(
    Math.abs(afterFast.ba - afterPublished.ba) <= 10,
    `bfloat16: BA ${afterFast.ba}, float32 ${afterPublished.ba}`,
  );
  copy.dispose();
  for (const item of [trigger, model, attack, train, testSplit, clean]) item.dispose();
});

test('the warp scan flags a warping (WaNet) backdoor that has no small trigger; the inverted warp removes it', () => {
  // A stronger warp than WaNet's CIFAR default, so that a 12×12 TinyNet learns it in seconds.
  const { train, testSplit, attack, model, before, clean } = backdooredTinyNet({
    attack: { name: 'wanet', target: 1, poisonRate: 0.2, options: { strength: 1.5, crossRatio: 0 } },
    seeds: [21, 22],
    size: 12,
    epochs: 15,
  });
  const fits = [0, 1, 2, 3].map((label) => fitWarp(model, clean, label, { shift: 1, seed: 1 }));
  console.log(`warp scan: losses ${fits.map((fit) => fit.loss.toFixed(3)).join(', ')}; ASR before ${before.asr}`);
  // Every other class stays out of reach of so small a warp; the target does not.
  for (const label of [0, 2, 3]) assert.ok(fits[label]!.loss > 3 * fits[1]!.loss, `class ${label} vs target`);
  for (const fit of fits) fit.grid.dispose();
  // detectBackdoor runs the warp scan beside the size scan (with 4 classes the MAD index
  // cannot single one out; the rule is tested on measured 10-class scans below).
  const detection = detectBackdoor(model, clean, { scanPasses: 2, scanImages: 200, seed: 1, warpShift: 1 });
  const scanned = detection.classes.map((c) => c.warp!.loss);
  assert.ok(
    scanned.every((loss, label) => label === 1 || loss > 3 * scanned[1]!),
    `warp losses ${scanned}`,
  );
  // The warp inversion: shifts within the bound (bicubic upsampling may overshoot a little).
  const trigger = invertTrigger(model, clean, 1, { method: 'warp', warpShift: 1, seed: 1 });
  assert.equal(trigger.method, 'warp');
  assert.equal(trigger.passes, 10);
  assert.ok(trigger.found, `attack accuracy ${trigger.attackAccuracy}`);
  assert.ok(trigger.size > 0.25 && trigger.size <= 1.25, `largest shift ${trigger.size} px`);
  assert.deepEqual(trigger.pattern.shape, [2, 12, 12]);
  purify(model, clean, trigger, { epochs: 10, lrSchedule: (epoch) => (epoch < 1 ? 0.05 : 0.01) });
  const after = evaluate(model, testSplit, { normalization: testSplit.normalization, trigger: attack });
  console.log(
    `synthetic WaNet: BA ${before.ba.toFixed(1)} → ${after.ba.toFixed(1)}, ASR ${before.asr.toFixed(1)} → ${after.asr.toFixed(1)}`,
  );
  assert.ok(after.asr < 20, `ASR after ${after.asr}`);
  // Turned off, the warp scan reports nothing and the decision rests on the trigger sizes alone.
  const sizesOnly = detectBackdoor(model, clean, { scanPasses: 2, scanImages: 100, seed: 1, warpShift: 0 });
  assert.ok(sizesOnly.classes.every((c) => c.warp === null && c.warpIndex === null));
  assert.notEqual(sizesOnly.flaggedBy, 'warp');
  for (const item of [trigger, model, attack, train, testSplit, clean]) item.dispose();
});

test('warp-scan index on measured scans: flags the WaNet target, and nothing on the other models', () => {
  // Warp-scan losses (shift 0.5 px, 10 passes, 500 images) measured on the CIFAR-10 WRN-16-1s.
  const wanet = [0.0, 8.5, 5.8, 5.28, 6.46, 6.01, 7.45, 6.99, 8.01, 7.79]; // target 0
  const clean = [6.37, 6.86, 4.99, 4.49, 5.54, 5.0, 6.73, 5.97, 6.73, 6.47];
  const authors = [10.08, 12.21, 8.61, 5.52, 6.1, 6.54, 9.94, 8.1, 10.78, 10.81];
  const sig = [6.76, 7.06, 4.51, 4.17, 4.9, 4.61, 6.34, 5.55, 6.29, 6.5];
  const flagged = flagTarget(wanet);
  assert.equal(flagged.target, 0);
  assert.ok(flagged.indices[0]! > 4, `index ${flagged.indices[0]}`);
  for (const losses of [clean, authors, sig]) assert.equal(flagTarget(losses).target, null);
});

test('scan decision: a warp flag counts only where the warp reaches the attack threshold', () => {
  // The demo's BadNets Fashion-MNIST scan on the AMD EPYC: the size scan flags class 0
  // (size 16, index 2.97) and the warp scan class 0 too (loss 5.54, index 3.73) with 12 % reached.
  const sizes = [16, 161, 199, 179, 208, 76, 161, 206, 57, 204];
  const warpLosses = [5.54, 7.96, 7.25, 7.31, 7.42, 8.39, 6.22, 8.05, 7.96, 8.09];
  const reach = [0.12, 0.1, 0.12, 0.09, 0.13, 0.09, 0.08, 0.11, 0.1, 0.1];
  const bySize = flagTarget(sizes);
  const byWarp = flagTarget(warpLosses);
  assert.equal(bySize.target, 0);
  assert.equal(byWarp.target, 0);
  assert.ok(byWarp.indices[0]! > bySize.indices[0]!, 'the warp index is the larger');
  assert.deepEqual(chooseTarget(bySize, [{ by: 'warp', ...byWarp, reach }], 0.9), { target: 0, flaggedBy: 'size' });
  // The same scan had the warp reached 95 %: the larger index wins.
  assert.deepEqual(chooseTarget(bySize, [{ by: 'warp', ...byWarp, reach: [0.95, ...reach.slice(1)] }], 0.9), {
    target: 0,
    flaggedBy: 'warp',
  });
  // WaNet (measured): no size flag, a warp reaching every image flags it; no scan flags nothing.
  const wanet = flagTarget([0.0, 8.5, 5.8, 5.28, 6.46, 6.01, 7.45, 6.99, 8.01, 7.79]);
  const none = flagTarget([60, 70, 80, 65, 75, 62, 71, 68, 77, 66]);
  assert.deepEqual(chooseTarget(none, [{ by: 'warp', ...wanet, reach: [1, ...reach.slice(1)] }], 0.9), {
    target: 0,
    flaggedBy: 'warp',
  });
  assert.deepEqual(chooseTarget(none, [{ by: 'warp', ...wanet, reach }], 0.9), { target: null, flaggedBy: null });
  assert.deepEqual(chooseTarget(none, [], 0.9), { target: null, flaggedBy: null });
});

test('signal family: sinusoidal stripes A·sin(2π·f·i/n + k·π/2) along columns or rows, the same in every channel', () => {
  const family = signalFamily(12, 16, { amplitude: 30 });
  // Columns: f = 1 … 16/4 = 4; rows: f = 1 … 12/4 = 3; 4 phases each.
  assert.equal(family.length, (4 + 3) * 4);
  assert.deepEqual(family[0], { axis: 'columns', frequency: 1, phase: 0, amplitude: 30 });
  assert.deepEqual(family.at(-1), { axis: 'rows', frequency: 3, phase: 3, amplitude: 30 });
  tidy(() => {
    const columns = signalPattern({ axis: 'columns', frequency: 2, phase: 1, amplitude: 30 }, 3, 12, 16);
    assert.deepEqual(columns.shape, [3, 12, 16]);
    const values = columns.toTypedArray() as Float32Array;
    for (const [c, i, j] of [
      [0, 0, 0],
      [2, 7, 3],
      [1, 11, 13],
    ] as const) {
      close(values[(c * 12 + i) * 16 + j]!, (30 / 255) * Math.cos((2 * Math.PI * 2 * j) / 16), 1e-6);
    }
    const rows = signalPattern({ axis: 'rows', frequency: 1, phase: 2, amplitude: 10 }, 1, 12, 16);
    const rowValues = rows.toTypedArray() as Float32Array;
    close(rowValues[3 * 16 + 5]!, -(10 / 255) * Math.sin((2 * Math.PI * 3) / 12), 1e-6);
    close(rowValues[3 * 16 + 0]!, rowValues[3 * 16 + 15]!, 0);
  });
});

test('signal trigger: image n gets stripe n mod K, so that an anchor and its frozen negative match', () => {
  tidy(() => {
    const signals = [
      { axis: 'columns', frequency: 1, phase: 0, amplitude: 40 },
      { axis: 'rows', frequency: 1, phase: 1, amplitude: 40 },
    ] as const;
    const stripes = F.stack(
      signals.map((signal) => signalPattern(signal, 1, 4, 4)),
      0,
    );
    const trigger = new SignalTrigger(0, signals, stripes.clone(), 1, [], true);
    const images = tensor(new Float32Array(4 * 16).fill(0.5), { shape: [4, 1, 4, 4] });
    const expected = (stripe: number) => stripes.select(0, stripe).add(0.5).clamp(0, 1);
    const same = (a: Tensor, b: Tensor) => a.sub(b).abs().max().item() < 1e-7;
    const byIndex = trigger.apply(images, tensor([3, 0, 1, 2], { dtype: 'int64' }));
    [1, 0, 1, 0].forEach((stripe, i) => assert.ok(same(byIndex.select(0, i), expected(stripe)), `image ${i}`));
    const byPosition = trigger.apply(images);
    [0, 1, 0, 1].forEach((stripe, i) => assert.ok(same(byPosition.select(0, i), expected(stripe)), `image ${i}`));
    assert.ok(same(trigger.pattern, stripes.select(0, 0)), 'pattern: the best stripe');
    trigger.dispose();
  });
});

test('stackTriggers: image n gets pattern n mod K; size, accuracy and found from the parts; bad parts refused', () => {
  tidy(() => {
    const part = (values: number[], size: number, attackAccuracy: number, target = 1): InvertedTrigger => {
      const pattern = tensor(Float32Array.from(values), { shape: [1, 2, 2] });
      return {
        method: 'pattern',
        target,
        pattern,
        mask: null,
        size,
        attackAccuracy,
        passes: 1,
        history: [],
        found: attackAccuracy >= 0.9,
        apply: (images: Tensor) => stampAdditive(images, pattern),
        dispose: () => pattern.dispose(),
      };
    };
    const first = part([0.25, 0, 0, -0.25], 2, 0.95);
    const second = part([0, 0.5, 0, 0], 1, 0.92);
    const stacked = stackTriggers([first, second]);
    first.dispose();
    second.dispose(); // the stacked trigger holds its own copy
    assert.equal(stacked.size, 1);
    close(stacked.attackAccuracy, 0.92, 0);
    assert.ok(stacked.found);
    assert.equal(stacked.target, 1);
    const images = tensor(new Float32Array(4 * 4).fill(0.5), { shape: [4, 1, 2, 2] });
    const rows = (t: Tensor) => Array.from(t.toTypedArray() as Float32Array);
    assert.deepEqual(rows(stacked.apply(images, tensor([3, 0, 1, 2], { dtype: 'int64' }))), [
      ...[0.5, 1, 0.5, 0.5],
      ...[0.75, 0.5, 0.5, 0.25],
      ...[0.5, 1, 0.5, 0.5],
      ...[0.75, 0.5, 0.5, 0.25],
    ]);
    assert.deepEqual(rows(stacked.pattern), [0.25, 0, 0, -0.25]);
    stacked.dispose();
    assert.throws(() => stackTriggers([]), /at least one/);
    assert.throws(() => stackTriggers([part([0, 0, 0, 0], 1, 1), part([0, 0, 0, 0], 1, 1, 2)]), /classes 1 and 2/);
    const signal = new SignalTrigger(
      1,
      [{ axis: 'rows', frequency: 1, phase: 0, amplitude: 20 }],
      F.stack([tensor(new Float32Array(4), { shape: [1, 2, 2] })], 0),
      1,
      [],
      true,
    );
    assert.throws(() => stackTriggers([signal]), /additive pattern triggers, not signal/);
    signal.dispose();
  });
});

test('the signal scan finds a SIG backdoor (a full-image sinusoid) that has no small trigger; purifying with its stripes removes it', () => {
  // Clean-label SIG towards class 2 (every class-2 training image carries it), stronger than
  // CIFAR's 20/255 so that a 16×16 TinyNet learns it in seconds.
  const { train, testSplit, attack, model, before, clean } = backdooredTinyNet({
    attack: { name: 'sig', target: 2, poisonRate: 0.25, options: { delta: 60, frequency: 2 } },
    seeds: [31, 32],
    size: 16,
    epochs: 20,
  });
  const scanned = scanSignals(model, clean, { amplitude: 60 });
  console.log(
    `signal scan: losses ${scanned.map((c) => c.loss.toFixed(3)).join(', ')}; best for the target ${JSON.stringify(scanned[2]!.signal)}`,
  );
  // The target is reached by a stripe (on this net not necessarily SIG's own; the purification
  // below shows that it stands for it), the other classes are not.
  assert.ok(scanned[2]!.attackAccuracy > 0.9, `reach ${scanned[2]!.attackAccuracy}`);
  for (const label of [0, 1, 3]) assert.ok(scanned[label]!.loss > 3 * scanned[2]!.loss, `class ${label} vs target`);
  const detection = detectBackdoor(model, clean, { scanPasses: 2, scanImages: 200, seed: 1, signalAmplitude: 60 });
  assert.ok(detection.classes.every((c) => c.signal !== null && c.signalIndex !== null));
  const trigger = invertTrigger(model, clean, 2, { method: 'signal', signalAmplitude: 60, seed: 1 });
  assert.equal(trigger.method, 'signal');
  assert.equal(trigger.size, 60);
  assert.ok(trigger.found, `attack accuracy ${trigger.attackAccuracy}`);
  assert.ok(trigger instanceof SignalTrigger);
  // Every stripe that reaches the target is purified against, the best (the scan's) first.
  assert.deepEqual(trigger.signals[0], scanned[2]!.signal);
  console.log(`signal trigger: ${trigger.signals.length} stripes`);
  // With the clean-feature term, as defend does for a signal trigger.
  purify(model, clean, trigger, {
    epochs: 10,
    lrSchedule: (epoch) => (epoch < 1 ? 0.05 : 0.01),
    cleanFeatureWeight: 1,
  });
  const after = evaluate(model, testSplit, { normalization: testSplit.normalization, trigger: attack });
  console.log(
    `synthetic SIG: BA ${before.ba.toFixed(1)} → ${after.ba.toFixed(1)}, ASR ${before.asr.toFixed(1)} → ${after.asr.toFixed(1)}`,
  );
  assert.ok(after.asr < 20, `ASR after ${after.asr}`);
  // BA 100 → 90.3 here (the synthetic WaNet test's net loses 21 points); 20 leaves room for
  // another CPU's rounding.
  assert.ok(after.ba > before.ba - 20, `BA after ${after.ba}`);
  // Turned off, the signal scan reports nothing.
  const without = detectBackdoor(model, clean, { scanPasses: 1, scanImages: 100, seed: 1, signalAmplitude: 0 });
  assert.ok(without.classes.every((c) => c.signal === null && c.signalIndex === null));
  for (const item of [trigger, model, attack, train, testSplit, clean]) item.dispose();
});

test('signal-scan decision on measured scans: flags the SIG target, and nothing on the other models', () => {
  // Signal-scan losses and reach (20/255, 500 scan images) measured on the CIFAR-10 WRN-16-1s of
  // bench:attacks on the AMD EPYC and the authors' model.
  const sig = {
    loss: [0.32, 4.65, 4.97, 3.89, 2.75, 4.04, 6.42, 4.88, 3.91, 4.12],
    reach: [0.91, 0.13, 0.18, 0.16, 0.32, 0.22, 0.1, 0.07, 0.21, 0.16],
  };
  const others = {
    clean: {
      loss: [4.63, 5.38, 5.44, 4.13, 3.02, 4.54, 6.88, 5.13, 4.57, 4.03],
      reach: [0.13, 0.12, 0.14, 0.15, 0.37, 0.21, 0.11, 0.1, 0.17, 0.22],
    },
    wanet: {
      loss: [3.13, 5.73, 5.74, 4.82, 3.0, 5.41, 7.57, 4.83, 5.47, 4.89],
      reach: [0.33, 0.11, 0.14, 0.15, 0.38, 0.12, 0.08, 0.13, 0.11, 0.22],
    },
    authors: {
      loss: [8.65, 9.89, 8.99, 5.9, 4.86, 6.28, 10.9, 8.29, 7.37, 6.89],
      reach: [0.11, 0.08, 0.09, 0.14, 0.33, 0.19, 0.11, 0.09, 0.17, 0.18],
    },
  };
  const none = flagTarget([60, 70, 80, 65, 75, 62, 71, 68, 77, 66]);
  const asScans = (scan: { loss: number[]; reach: number[] }) =>
    scan.loss.map((loss, label) => ({ loss, attackAccuracy: scan.reach[label]! }));
  const decide = (scan: { loss: number[]; reach: number[] }) => chooseTarget(none, [signalFlag(asScans(scan))], 0.9);
  assert.deepEqual(decide(sig), { target: 0, flaggedBy: 'signal' });
  for (const [name, scan] of Object.entries(others))
    assert.deepEqual(decide(scan), { target: null, flaggedBy: null }, name);
  // The WaNet model's class 4 passes the index (its stripe is the easiest) but reaches 38 %.
  assert.equal(signalFlag(asScans(others.wanet)).target, 4);
});

test('warp: a zero flow leaves images unchanged; the identity grid spans [−1, 1]', () => {
  tidy(() => {
    const identity = identityGrid(4, 6);
    assert.deepEqual(identity.shape, [1, 4, 6, 2]);
    close(identity.select(3, 0).min().item(), -1);
    close(identity.select(3, 1).max().item(), 1);
    const images = tensor(
      Array.from({ length: 2 * 3 * 4 * 6 }, (_, i) => (i % 7) / 7),
      { shape: [2, 3, 4, 6] },
    );
    close(warpImages(images, identity).sub(images).abs().max().item(), 0, 1e-6);
  });
});

test('optional terms: the epoch loss is contrastive + λc·CE(clean) + λs·CE(stamped, true labels) + λf·(1 − cos(f(clean), f₀(clean)))', () => {
  setNumThreads(1);
  const clean = quadrantSplit(48, 21);
  const model = new TinyNet();
  const delta = tidy(() => tensor([0.4]).expand([3, 12, 12]).clone());
  const trigger = { apply: (images: import('../../src/index.js').Tensor) => stampAdditive(images, delta) };
  const [cleanWeight, stampedWeight, cleanFeatureWeight] = [0.25, 0.5, 2];
  // By hand, on a copy (train-mode passes move the batch-norm running statistics): the frozen
  // features in eval mode, then the anchor and both cross-entropies in train mode.
  const copy = new TinyNet();
  copy.loadStateDict(model.stateDict());
  // Every purify call moves the batch-norm running statistics, so each starts from a copy.
  const pristine = new TinyNet();
  pristine.loadStateDict(model.stateDict());
  const fresh = (): TinyNet => {
    const net = new TinyNet();
    net.loadStateDict(pristine.stateDict());
    return net;
  };
  const [expected, cleanCrossEntropy] = noGrad(() =>
    tidy(() => {
      const images = toUnitRange(clean.images);
      const clean01 = normalize(images, clean.normalization);
      const stamped = normalize(trigger.apply(images), clean.normalization);
      copy.eval();
      const positive = copy.features(clean01);
      const negative = copy.features(stamped);
      copy.train();
      const anchor = copy.features(stamped);
      const crossEntropy = F.crossEntropy(copy.forward(clean01), clean.labels).item();
      const total = contrastiveLoss(anchor, positive, negative, 0.5)
        .add(crossEntropy * cleanWeight)
        .add(F.crossEntropy(copy.classify(anchor), clean.labels).mul(stampedWeight))
        .add(F.cosineSimilarity(copy.features(clean01), positive, 1).mean().neg().add(1).mul(cleanFeatureWeight))
        .item();
      return [total, crossEntropy] as const;
    }),
  );
  // lr 0 and no weight decay: full batches at the starting weights.
  const frozenRun = (net: TinyNet, options: PurifyOptions) =>
    purify(net, clean, trigger, { epochs: 1, batchSize: clean.count, lrSchedule: () => 0, weightDecay: 0, ...options });
  const terms = { cleanWeight, stampedWeight, cleanFeatureWeight };
  close(frozenRun(model, terms).epochs[0]!.loss, expected, 1e-5);
  // --clean-weight-from 1: epoch 0 runs without the clean term, epoch 1 with it.
  const delayedModel = fresh();
  const delayed = frozenRun(delayedModel, { ...terms, epochs: 2, cleanWeightFrom: 1 });
  close(delayed.epochs[0]!.loss, expected - cleanWeight * cleanCrossEntropy, 1e-5);
  close(delayed.epochs[1]!.loss, expected, 1e-5);
  const alone = frozenRun(model, {});
  assert.ok(expected - alone.epochs[0]!.loss > 0.1, 'the optional terms add to the published loss');
  for (const item of [delta, model, copy, pristine, delayedModel, clean]) item.dispose();
});

/** A TinyNet trained for 5 epochs on `train`, checked to have learned it. */
function trainedTinyNet(train: ReturnType<typeof quadrantSplit>, seed: number): TinyNet {
  const model = new TinyNet();
  trainModel({
    model,
    train,
    config: {
      epochs: 5,
      batchSize: 32,
      optimizer: 'sgd',
      lr: 0.05,
      momentum: 0.9,
      weightDecay: 0,
      schedule: 'cosine',
      seed,
    },
  });
  const accuracy = evaluate(model, train, { normalization: train.normalization }).ba;
  assert.ok(accuracy > 90, `the model learned the task: ${accuracy}`);
  return model;
}

test('refitHead: a scrambled head is re-fit on the clean features; the backbone is untouched', () => {
  setNumThreads(1);
  const train = quadrantSplit(400, 31);
  const model = trainedTinyNet(train, 3);
  const normalization = train.normalization;
  noGrad(() => tidy(() => model.fc.weight.copy_(model.fc.weight.flip([0]))));
  const scrambled = evaluate(model, train, { normalization }).ba;
  assert.ok(scrambled < 50, `reversing the head's rows breaks it: ${scrambled}`);
  const backbone = [...model.body.namedParameters()].map(([, p]) => p.toArray());
  const mode = model.training;
  refitHead(model, train);
  const refit = evaluate(model, train, { normalization }).ba;
  assert.ok(refit > 90, `re-fit head: ${refit}`);
  assert.deepEqual(
    [...model.body.namedParameters()].map(([, p]) => p.toArray()),
    backbone,
    'backbone parameters unchanged',
  );
  assert.equal(model.training, mode, 'train/eval mode restored');
  model.dispose();
  train.dispose();
});

test('refitHead with a trigger: the stamped clean images join the fit under their true labels', () => {
  setNumThreads(1);
  const train = quadrantSplit(240, 33);
  const trained = trainedTinyNet(train, 3);
  const normalization = train.normalization;
  const copyOf = (): TinyNet => {
    const net = new TinyNet();
    net.loadStateDict(trained.stateDict());
    noGrad(() => tidy(() => net.fc.weight.copy_(net.fc.weight.flip([0]))));
    return net;
  };
  const head = (net: TinyNet): number[] => [...net.fc.weight.toFloat64Array(), ...net.fc.bias!.toFloat64Array()];
  // A trigger that stamps nothing doubles every image: the mean cross-entropy, its gradient
  // and so the fitted head are those of the clean images alone.
  const alone = copyOf();
  refitHead(alone, train);
  const doubled = copyOf();
  refitHead(doubled, train, { trigger: { apply: (images: Tensor) => images.clone() } });
  const [a, b] = [head(alone), head(doubled)];
  a.forEach((value, i) => close(b[i]!, value, 1e-4));
  // A trigger that moves the features: the head fits the stamped images too, so it reads
  // them better than the head fitted on clean images alone.
  const delta = tidy(() => tensor([0.6]).expand([3, 12, 12]).clone());
  const trigger = { apply: (images: Tensor) => stampAdditive(images, delta) };
  const stamped = copyOf();
  refitHead(stamped, train, { trigger });
  const stampedAccuracy = (net: TinyNet): number =>
    noGrad(() =>
      tidy(() => {
        net.eval();
        const logits = net.forward(normalize(trigger.apply(toUnitRange(train.images)), normalization));
        return (100 * logits.argmax(1).eq(train.labels).sum().item()) / train.count;
      }),
    );
  const [without, withStamped] = [stampedAccuracy(alone), stampedAccuracy(stamped)];
  assert.ok(withStamped > without, `stamped images read right: ${without} → ${withStamped}`);
  assert.ok(evaluate(stamped, train, { normalization }).ba > 90, 'and the clean images still are');
  for (const item of [trained, alone, doubled, stamped, delta, train]) item.dispose();
});

test("withPatterns: image n gets pattern n mod K, the trigger's own first", () => {
  const own = tensor([0.1, 0, 0, 0]).reshape([1, 2, 2]);
  const scan = [tensor([0, 0.2, 0, 0]).reshape([1, 2, 2]), tensor([0, 0, 0.3, 0]).reshape([1, 2, 2])];
  const trigger = new PatternTrigger('pattern', 3, own, null, 1, 0.95, [], true);
  const stacked = withPatterns(trigger, scan);
  assert.equal(stacked.target, 3);
  assert.equal(stacked.size, 1);
  const images = tidy(() => tensor(new Array(16).fill(0.5)).reshape([4, 1, 2, 2]));
  const out = tidy(() => stacked.apply(images, tensor([0, 1, 2, 3], { dtype: 'int64' })));
  assert.deepEqual(
    [...out.toFloat64Array()].map((v) => Math.round(v * 10) / 10),
    [0.6, 0.5, 0.5, 0.5, 0.5, 0.7, 0.5, 0.5, 0.5, 0.5, 0.8, 0.5, 0.6, 0.5, 0.5, 0.5],
  );
  // The stack holds copies: the caller's patterns stay its own.
  for (const item of [trigger, ...scan, images, out]) item.dispose();
  assert.deepEqual(stacked.patterns.shape, [3, 1, 2, 2]);
  stacked.dispose();
  const warp = new PatternTrigger('warp', 3, tensor([0]), null, 1, 1, [], true);
  assert.throws(() => withPatterns(warp, []), /additive pattern trigger/);
  warp.dispose();
});

test('accuracy guard: measures the clean accuracy before and after purification, and re-fits the head on a fall', () => {
  setNumThreads(1);
  const clean = quadrantSplit(240, 41);
  const trained = trainedTinyNet(clean, 4);
  const normalization = clean.normalization;
  const start = evaluate(trained, clean, { normalization }).ba;
  const delta = tidy(() => tensor([0.5]).expand([3, 12, 12]).clone());
  const trigger = { apply: (images: import('../../src/index.js').Tensor) => stampAdditive(images, delta) };
  const copyOf = (): TinyNet => {
    const net = new TinyNet();
    net.loadStateDict(trained.stateDict());
    return net;
  };
  const options = (lr: number): PurifyOptions => ({ epochs: 2, batchSize: 48, lrSchedule: () => lr, weightDecay: 0 });

  // lr 0 and a trigger that stamps nothing: only the batch-norm statistics move, towards the
  // clean images' own, and the guard does nothing.
  const nothing = { apply: (images: import('../../src/index.js').Tensor) => images.clone() };
  const still = copyOf();
  const quiet = purify(still, clean, nothing, { ...options(0), accuracyGuard: 1 }).guard!;
  close(quiet.before, start, 1e-9);
  close(quiet.after, evaluate(still, clean, { normalization }).ba, 1e-9);
  assert.ok(Math.abs(quiet.after - quiet.before) <= 1, `${quiet.before} -> ${quiet.after}`);
  assert.equal(quiet.refitHead, false);

  // A destructive learning rate: the guard measures what the unguarded run ends with, and
  // re-fits the head, which the unguarded run does not.
  const unguarded = copyOf();
  purify(unguarded, clean, trigger, options(20));
  const fallen = evaluate(unguarded, clean, { normalization }).ba;
  const wrecked = copyOf();
  const guard = purify(wrecked, clean, trigger, { ...options(20), accuracyGuard: 1 }).guard!;
  close(guard.after, fallen, 1e-9);
  assert.ok(guard.before - guard.after > 1, `purification hurt: ${guard.before} -> ${guard.after}`);
  assert.equal(guard.refitHead, true);
  const refitted = evaluate(wrecked, clean, { normalization }).ba;
  assert.ok(refitted > fallen + 5, `the re-fit head gives accuracy back: ${fallen} -> ${refitted}`);

  // A tolerance above the fall: no re-fit.
  const tolerant = copyOf();
  const lenient = purify(tolerant, clean, trigger, { ...options(20), accuracyGuard: 100 }).guard!;
  assert.equal(lenient.refitHead, false);
  close(evaluate(tolerant, clean, { normalization }).ba, fallen, 1e-9);

  // Off by default: no guard record.
  const plain = copyOf();
  assert.equal(purify(plain, clean, trigger, options(0)).guard, undefined);
  for (const item of [trained, still, unguarded, wrecked, tolerant, plain, delta, clean]) item.dispose();
});
