// `npm run bench:signal-scan -- [--data SPEC] [--arch A] [--amplitude N] WEIGHTS...`: the
// signal scan of `mcldef detect` (signal.ts) alone, on each model: per class the best stripe's
// loss, reach and MAD index (log(1 + loss)), and the class it would flag (index > 2, reach
// ≥ 90 %). The scan images are detect's: 500 of the 5 % clean subset, both seeded by --seed.
import * as setup from '../src/pipeline/setup.js';
import { parseArgs } from 'node:util';

import { applyCommon, loadSplit } from '../src/cli/common.js';
import { subset } from '../src/data/subset.js';
import { chooseTarget, scanSignals, signalFlag } from '../src/defenses/mcldef/index.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    data: { type: 'string', default: 'cifar10:../shared/data/cifar10-jpeg' },
    arch: { type: 'string', default: 'wrn-16-1' },
    amplitude: { type: 'string', default: '20' },
    seed: { type: 'string', default: '0' },
    threads: { type: 'string', default: '2' },
  },
});
if (positionals.length === 0) throw new Error('name one or more weight files');
const seed = Number(values.seed);
const common = { threads: Number(values.threads), seed };
applyCommon(common);
const train = loadSplit(values.data, 'train', common);
const clean = subset(train, 0.05, { seed });
train.dispose();
const scanSet = subset(clean, Math.min(1, 500 / clean.count), { seed });
const fmt = (list: readonly number[], digits: number): string => list.map((v) => v.toFixed(digits)).join(' ');
for (const weights of positionals) {
  const model = setup.buildModel(values.arch, scanSet, weights).model;
  const started = performance.now();
  const scans = scanSignals(model, scanSet, { amplitude: Number(values.amplitude) });
  const seconds = (performance.now() - started) / 1000;
  const losses = scans.map((scan) => scan.loss);
  const reach = scans.map((scan) => scan.attackAccuracy);
  const flag = signalFlag(scans);
  const { target } = chooseTarget({ target: null, indices: [] }, [flag], 0.9);
  console.log(`${weights}: ${seconds.toFixed(1)} s, flags ${target === null ? 'nothing' : `class ${target}`}`);
  console.log(`  loss   ${fmt(losses, 2)}`);
  console.log(
    `  reach  ${fmt(
      reach.map((r) => 100 * r),
      0,
    )}`,
  );
  console.log(`  index  ${fmt(flag.indices, 2)}`);
  console.log(`  stripe ${scans.map((s) => `${s.signal.axis[0]}${s.signal.frequency}p${s.signal.phase}`).join(' ')}`);
  model.dispose();
}
scanSet.dispose();
clean.dispose();
