// `npm run bench:inversion-starts -- --weights FILE --attack NAME --target K [--starts KIND:K]
// [--combos "0;0,1"] [--seed N]`: several pattern inversions from different random starts,
// then purification against each combination of them (image n gets pattern n mod K, as
// `stackTriggers` stamps), with the CLI's default purification. Per start it prints the
// trigger's size, passes, seconds and its (row, column) positions, so a start that found the
// attacker's own trigger can be told apart. Start kinds:
//   full   the defaults' inversion (all clean images, patience 10); start 0 is `mcldef defend`'s
//   half   each start on its own 1/K of the clean images (image n to start n mod K)
//   short  the detection scan's budget: 500 images, 30 passes, the 'difference' restart
//   oracle no inversion: the attacker's own trigger (the ceiling of a perfect inversion)
// Start k uses batch-order seed N + 100k; its random initial pattern follows from the run.
// `--blobs smallest|all` splits every start's pattern into blobs, measures each alone on the
// scan's 500 images, and purifies once against the smallest blob that sends ≥ 90 % of them to
// the target, or against every such blob (stacked), instead of the combinations.
import { parseArgs } from 'node:util';

import {
  DEFAULT_ACCURACY_GUARD,
  DEFAULT_INVERSION_PATIENCE,
  DEFAULT_PURIFICATION_EPOCHS,
} from '../src/defenses/mcldef/options.js';
import { subset } from '../src/data/subset.js';
import type { ImageSplit } from '../src/data/dataset.js';
import {
  DEFAULT_SCAN_PASSES,
  type InvertedTrigger,
  classResponses,
  invertTrigger,
  stampAdditive,
  purify,
  stackTriggers,
} from '../src/defenses/mcldef/index.js';
import { evaluate } from '../src/eval/metrics.js';
import { type Tensor, tensor, tidy, zeros } from '../src/index.js';
import { defenseSetup } from './defense-setup.js';

const { values } = parseArgs({
  options: {
    weights: { type: 'string', default: '../shared/models/mcl-reference/WRN-16-1-badnet.pth.tar' },
    arch: { type: 'string', default: 'wrn-16-1' },
    data: { type: 'string', default: 'cifar10:../shared/data/cifar10-jpeg' },
    attack: { type: 'string', default: 'badnets-grid' },
    target: { type: 'string', default: '5' },
    'poison-rate': { type: 'string', default: '0.1' },
    starts: { type: 'string', default: 'full:2' },
    combos: { type: 'string' },
    blobs: { type: 'string' },
    seed: { type: 'string', default: '0' },
    epochs: { type: 'string', default: String(DEFAULT_PURIFICATION_EPOCHS) },
    threads: { type: 'string', default: '2' },
  },
});
const [kind, countText] = values.starts.split(':');
const count = kind === 'oracle' ? 1 : Number(countText);
if (
  (kind !== 'full' && kind !== 'half' && kind !== 'short' && kind !== 'oracle') ||
  !(Number.isInteger(count) && count >= 1)
) {
  throw new Error(`--starts must be full:K, half:K, short:K or oracle, not ${values.starts}`);
}
const seed = Number(values.seed);
const target = Number(values.target);
const flags = {
  threads: Number(values.threads),
  seed,
  quiet: true,
  attack: values.attack,
  target,
  mode: 'all-to-one' as const,
  poisonRate: Number(values['poison-rate']),
};
const { test, clean, attack, load } = defenseSetup(flags, values.data, values.arch, values.weights);
const fmt = (value: number): string => value.toFixed(2);

/** 1 where any channel of the trigger's pattern is non-zero, per (row, column), row-major. */
function activePositions(trigger: InvertedTrigger): Uint8Array {
  const [channels, height, width] = trigger.pattern.shape as [number, number, number];
  const plane = height * width;
  const delta = trigger.pattern.toTypedArray() as Float32Array;
  const active = new Uint8Array(plane);
  for (let c = 0; c < channels; c++) for (let p = 0; p < plane; p++) if (delta[c * plane + p] !== 0) active[p] = 1;
  return active;
}

function positions(trigger: InvertedTrigger): string {
  const width = trigger.pattern.size(2);
  const found: string[] = [];
  activePositions(trigger).forEach((on, p) => {
    if (on === 1) found.push(`${Math.floor(p / width)},${p % width}`);
  });
  return found.join(' ');
}

/** A trigger for purification that no inversion made: `pattern` for the report, `apply` to stamp. */
function plainTrigger(
  pattern: Tensor,
  size: number,
  attackAccuracy: number,
  apply: (images: Tensor) => Tensor,
): InvertedTrigger {
  return {
    method: 'pattern',
    target,
    pattern,
    mask: null,
    size,
    attackAccuracy,
    passes: 0,
    history: [],
    found: true,
    apply,
    dispose: () => pattern.dispose(),
  };
}

const scanSubset = (): ImageSplit => subset(clean, Math.min(1, 500 / clean.count), { seed });

function startSet(start: number): ImageSplit {
  if (kind === 'full') return clean;
  if (kind === 'short') return scanSubset();
  const share = Array.from({ length: clean.count }, (_, n) => n).filter((n) => n % count === start);
  return clean.select(share, `${clean.source}, share ${start} of ${count}`);
}

/** The attacker's trigger in the shape purification takes. */
function oracleTrigger(): InvertedTrigger {
  const shown = tidy(() => attack.apply(zeros([1, clean.channels, clean.height, clean.width])).squeeze(0));
  return plainTrigger(shown, Number.NaN, 1, (images) => attack.apply(images));
}

const triggers: InvertedTrigger[] = kind === 'oracle' ? [oracleTrigger()] : [];
for (let start = 0; start < (kind === 'oracle' ? 0 : count); start++) {
  const model = load();
  const images = startSet(start);
  const began = performance.now();
  const trigger = invertTrigger(model, images, target, {
    seed: seed + 100 * start,
    ...(kind === 'short'
      ? { passes: DEFAULT_SCAN_PASSES, restart: 'difference' as const, dropLast: false }
      : { patience: DEFAULT_INVERSION_PATIENCE }),
  });
  console.log(
    `start ${start}: size ${trigger.size}, attack accuracy ${(100 * trigger.attackAccuracy).toFixed(1)} %, ${trigger.passes} passes, ${((performance.now() - began) / 1000).toFixed(0)} s\n  ${positions(trigger)}`,
  );
  triggers.push(trigger);
  if (images !== clean) images.dispose();
  model.dispose();
}

/** Purifies a fresh copy of the model against `trigger` and prints BA / ASR on the test split. */
function purifyAndReport(label: string, trigger: InvertedTrigger): void {
  const model = load();
  const began = performance.now();
  const result = purify(model, clean, trigger, {
    epochs: Number(values.epochs),
    accuracyGuard: DEFAULT_ACCURACY_GUARD,
    seed,
    lrSchedule: 'cifar',
  });
  const seconds = (performance.now() - began) / 1000;
  const m = evaluate(model, test, { normalization: test.normalization, trigger: attack });
  const guard = result.guard;
  console.log(
    `${label.padEnd(14)} BA ${fmt(m.ba)}  ASR ${fmt(m.asr)}  (without the trigger ${fmt(m.asr_no_trigger)})  ${seconds.toFixed(0)} s` +
      (guard === undefined
        ? ''
        : `  [clean accuracy ${fmt(guard.before)} -> ${fmt(guard.after)}${guard.refitHead ? ', head re-fitted' : ''}]`),
  );
  model.dispose();
}

interface Blob {
  trigger: InvertedTrigger;
  where: string;
}

/**
 * The blobs of an additive pattern (positions grouped when within 2 pixels of each other; at
 * least 3 positions), each as a pattern trigger of its own, measured alone on the 500 scan
 * images: the share they send to the target is its attack accuracy.
 */
function blobsOf(start: number, trigger: InvertedTrigger, judge: (delta: Tensor) => number): Blob[] {
  const [channels, height, width] = trigger.pattern.shape as [number, number, number];
  const plane = height * width;
  const delta = trigger.pattern.toTypedArray() as Float32Array;
  const group = new Int32Array(plane).fill(-1);
  const active = activePositions(trigger);
  const blobs: Blob[] = [];
  for (let seedPosition = 0; seedPosition < plane; seedPosition++) {
    if (active[seedPosition] !== 1 || group[seedPosition]! >= 0) continue;
    const members: number[] = [];
    const queue = [seedPosition];
    group[seedPosition] = seedPosition;
    while (queue.length > 0) {
      const p = queue.pop()!;
      members.push(p);
      const [h, w] = [Math.floor(p / width), p % width];
      for (let dh = -2; dh <= 2; dh++)
        for (let dw = -2; dw <= 2; dw++) {
          const [nh, nw] = [h + dh, w + dw];
          const q = nh * width + nw;
          if (nh >= 0 && nw >= 0 && nh < height && nw < width && group[q]! < 0 && active[q] === 1) {
            group[q] = seedPosition;
            queue.push(q);
          }
        }
    }
    if (members.length < 3) continue;
    const inside = new Set(members);
    const part = tensor(
      Float32Array.from(delta, (v, i) => (inside.has(i % plane) ? v : 0)),
      { shape: [channels, height, width] },
    );
    const rows = members.map((p) => Math.floor(p / width));
    const columns = members.map((p) => p % width);
    blobs.push({
      trigger: plainTrigger(part, members.length, judge(part), (images) => stampAdditive(images, part)),
      where: `start ${start}, rows ${Math.min(...rows)}-${Math.max(...rows)}, columns ${Math.min(...columns)}-${Math.max(...columns)}`,
    });
  }
  return blobs;
}

if (values.blobs !== undefined) {
  if (values.blobs !== 'smallest' && values.blobs !== 'all') throw new Error('--blobs must be smallest or all');
  const judgeModel = load();
  judgeModel.eval();
  const scanSet = scanSubset();
  const judge = (delta: Tensor): number =>
    classResponses(judgeModel, scanSet, (images) => stampAdditive(images, delta), 250, 'float32').reach[target]!;
  const blobs = triggers.flatMap((trigger, start) => blobsOf(start, trigger, judge));
  judgeModel.dispose();
  scanSet.dispose();
  for (const blob of blobs)
    console.log(
      `  blob: ${blob.where}: ${blob.trigger.size} positions, attack accuracy ${(100 * blob.trigger.attackAccuracy).toFixed(1)} %`,
    );
  const reaching = blobs
    .filter((blob) => blob.trigger.attackAccuracy >= 0.9)
    .sort((a, b) => a.trigger.size - b.trigger.size || b.trigger.attackAccuracy - a.trigger.attackAccuracy);
  if (reaching.length === 0) throw new Error('no blob reaches 90 % on its own');
  const chosen = values.blobs === 'smallest' ? reaching.slice(0, 1) : reaching;
  console.log(`purifying against: ${chosen.map((blob) => blob.where).join('; ')}`);
  const stacked = stackTriggers(chosen.map((blob) => blob.trigger));
  purifyAndReport(`blobs ${values.blobs}`, stacked);
  stacked.dispose();
  for (const blob of blobs) blob.trigger.dispose();
} else {
  const combos =
    values.combos ??
    triggers
      .map((_, k) =>
        triggers
          .slice(0, k + 1)
          .map((__, i) => i)
          .join(','),
      )
      .join(';');
  for (const combo of combos.split(';')) {
    const chosen = combo.split(',').map((k) => {
      const trigger = triggers[Number(k)];
      if (trigger === undefined) throw new Error(`--combos names start ${k}; there are ${count}`);
      return trigger;
    });
    // A lone trigger is purified against as it is (the oracle is no additive pattern).
    const stacked = chosen.length === 1 ? chosen[0]! : stackTriggers(chosen);
    purifyAndReport(`starts ${combo}`, stacked);
    if (chosen.length > 1) stacked.dispose();
  }
}
for (const trigger of triggers) trigger.dispose();
test.dispose();
clean.dispose();
