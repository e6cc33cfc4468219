// `npm run bench:detection`: the detection scan (target not given) on backdoored and clean
// models, over scan seeds. Models: the authors' (target 5); every model of
// `npm run bench:attacks` found in $MCLDEF_MODELS (bench/grids/cifar10.yaml: its target, none
// for the clean one); cnn-small on Fashion-MNIST trained with the demo's recipe, clean on
// seeds 0-4 and with the demo's BadNets square (trained here once, kept in $MCLDEF_MODELS).
// Each scan's JSON goes to $MCLDEF_RESULTS/detection/NAME-sSEED.json and is skipped when
// there; the table then recomputes every decision from the stored statistics.
// Options: --only NAME[,NAME...]  --seeds 0,1,2,3,4  --decide-only
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { benchModels, namedFolder } from './models.js';

import { setNumThreads } from '../src/engine/autograd.js';
import type { ImageSplit } from '../src/data/dataset.js';
import { DEBIAN_FASHION_MNIST } from '../src/data/load.js';
import { subset } from '../src/data/subset.js';
import { scanForBackdoor } from '../src/defenses/mcldef/defense.js';
import { type DetectionResult, decideTarget } from '../src/defenses/mcldef/detect.js';
import { mcldefOptions } from '../src/defenses/mcldef/options.js';
import { saveWeights } from '../src/io/index.js';
import { trainDemoModel } from '../src/pipeline/demo-model.js';
import { buildModel, loadSplit } from '../src/pipeline/setup.js';

interface Case {
  name: string;
  data: string;
  weights: string;
  /** The backdoor's target, null for a clean model. */
  expected: number | null;
  /** Trains the weights when missing (the Fashion-MNIST models). */
  train?: () => void;
}

const repo = fileURLToPath(new URL('..', import.meta.url));
const shared = join(repo, '..', 'shared');
const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    seeds: { type: 'string', default: '0' },
    'decide-only': { type: 'boolean', default: false },
  },
});
const only = values.only?.split(',');
const seeds = values.seeds.split(',').map(Number);
const models = namedFolder('MCLDEF_MODELS');
const results = join(namedFolder('MCLDEF_RESULTS'), 'detection');
mkdirSync(results, { recursive: true });
mkdirSync(models, { recursive: true });

const cifar = `cifar10:${join(shared, 'data/cifar10-jpeg')}`;
const fashion = `fashion-mnist:${DEBIAN_FASHION_MNIST}`;
// The grid's CIFAR-10 models (the authors' first), then the Fashion-MNIST ones.
const cases: Case[] = benchModels().map((model) => ({
  name: model.name,
  data: cifar,
  weights: model.weights,
  expected: model.trueTarget,
}));
const fashionModel = (name: string, seed: number, target: number | null): Case => {
  const weights = join(models, `${name}.safetensors`);
  return {
    name,
    data: fashion,
    weights,
    expected: target,
    train: () => {
      const train = loadSplit(fashion, 'train');
      try {
        const attack = target === null ? null : { name: 'badnets-square', target };
        const trained = trainDemoModel({ train, seed, attack });
        saveWeights(weights, trained.model, { arch: 'cnn-small' });
        trained.model.dispose();
        trained.attack?.dispose();
      } finally {
        train.dispose();
      }
    },
  };
};
for (let seed = 0; seed < 5; seed++) cases.push(fashionModel(`fashion-clean-s${seed}`, seed, null));
cases.push(fashionModel('fashion-badnets', 0, 0));

setNumThreads(2);
const splits = new Map<string, ImageSplit>();
const cleanSplit = (data: string, seed: number): ImageSplit => {
  const key = `${data}@${seed}`;
  let split = splits.get(key);
  if (split === undefined) {
    const train = loadSplit(data, 'train');
    split = subset(train, 0.05, { seed });
    train.dispose();
    splits.set(key, split);
  }
  return split;
};

const rows: string[] = [];
for (const entry of cases) {
  if (only !== undefined && !only.includes(entry.name)) continue;
  for (const seed of seeds) {
    const path = join(results, `${entry.name}-s${seed}.json`);
    if (!existsSync(path)) {
      if (values['decide-only']) continue;
      if (!existsSync(entry.weights)) {
        if (entry.train === undefined) {
          console.log(
            `${entry.name}: no weights at ${entry.weights}; skipped (npm run bench:attacks -- --models ${entry.name})`,
          );
          continue;
        }
        console.log(`${entry.name}: training (the demo's recipe)`);
        entry.train();
      }
      const clean = cleanSplit(entry.data, seed);
      const { model } = buildModel(undefined, clean, entry.weights);
      try {
        const detection = scanForBackdoor(model, clean, mcldefOptions({}), {
          seed,
          progress: (event) => process.stdout.write(`\r${entry.name} s${seed}: ${event.message ?? ''}        `),
        });
        process.stdout.write('\n');
        writeFileSync(`${path}.tmp`, JSON.stringify({ expected: entry.expected, ...detection }, null, 1));
        renameSync(`${path}.tmp`, path);
      } finally {
        model.dispose();
      }
    }
    const stored = JSON.parse(readFileSync(path, 'utf8')) as DetectionResult & { expected: number | null };
    const decision = decideTarget(stored.classes);
    const ok = decision.target === stored.expected ? 'ok' : 'WRONG';
    const agreement = (label: number | null | undefined): string =>
      label === null || label === undefined ? '–' : (stored.classes[label]!.stability?.toFixed(2) ?? '–');
    const separation = (label: number | null | undefined): string =>
      label === null || label === undefined || decision.separationRatios === null
        ? '–'
        : decision.separationRatios[label]!.toFixed(2);
    const vetoed = decision.vetoed
      .map(
        (label) =>
          `${label} (index ${decision.bySize.indices[label]!.toFixed(2)}, agreement ${agreement(label)}, separation ${separation(label)})`,
      )
      .join(', ');
    rows.push(
      `| ${entry.name} | ${seed} | ${stored.expected ?? 'none'} | ${decision.target ?? 'none'} (${decision.flaggedBy ?? '-'}) | ${decision.margin.toFixed(2)} | ${agreement(decision.target ?? stored.expected)} | ${separation(decision.target ?? stored.expected)} | ${vetoed || '–'} | ${stored.seconds.toFixed(0)} | ${ok} |`,
    );
    console.log(rows.at(-1));
  }
}
console.log(
  '\n| model | scan seed | true target | detected (by) | margin | agreement of restarts (detected, else true target) | feature separation over the median (the same class) | flagged by the index, not confirmed | seconds | |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const row of rows) console.log(row);
for (const split of splits.values()) split.dispose();
