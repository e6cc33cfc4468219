// `npm run bench:pytorch-defend`: the published MCLDef job on the authors' model (target 5,
// 5 % clean data) in plain PyTorch (bench/pytorch-mcldef.py, /usr/bin/python3 with
// python3-torch) and in mcldef (`mcldef defend`), one after the other on the same clean
// subset, test split and thread count; prints both results and the ratio of each stage's
// seconds. The PyTorch side is the reference for speed and for what the method gives on
// this JPEG data.
// Options: --seed N (0), --preset default|published (default), --threads N (2),
//          --skip-ours (PyTorch only), --monitor N (500, test images per epoch, both sides)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { data } from '../src/index.js';
import { DEFAULT_INVERSION_PATIENCE, DEFAULT_PURIFICATION_EPOCHS } from '../src/defenses/mcldef/options.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '0' },
    preset: { type: 'string', default: 'default' },
    threads: { type: 'string', default: '2' },
    monitor: { type: 'string', default: '500' },
    'skip-ours': { type: 'boolean', default: false },
  },
});
const repo = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const shared = join(repo, '..', 'shared');
const dataSpec = `cifar10:${join(shared, 'data/cifar10-jpeg')}`;
const weights = join(shared, 'models/mcl-reference/WRN-16-1-badnet.pth.tar');
for (const [path, what] of [
  [join(shared, 'data/cifar10-jpeg'), 'the CIFAR-10 JPEG copy'],
  [weights, "the authors' model"],
  ['/usr/bin/python3', '/usr/bin/python3'],
] as const) {
  if (!existsSync(path)) {
    console.log(`bench:pytorch-defend: skipped, ${what} is absent (${path})`);
    process.exit(0);
  }
}
const seed = Number(values.seed);
const published = values.preset === 'published';

interface Side {
  before: { ba: number; asr: number };
  after: { ba: number; asr: number };
  trigger: { size: number; passes: number };
  seconds: Record<string, number>;
}

const folder = mkdtempSync(join(tmpdir(), 'mcldef-pytorch-'));
try {
  // The same clean subset and test split as `mcldef defend --seed N` uses.
  const train = data.loadDataset(dataSpec, 'train');
  const clean = data.subset(train, 0.05, { seed });
  const test = data.loadDataset(dataSpec, 'test');
  const shape = (split: data.ImageSplit): number[] => [split.count, split.channels, split.height, split.width];
  for (const [name, split] of [
    ['clean', clean],
    ['test', test],
  ] as const) {
    writeFileSync(join(folder, `${name}.u8`), split.images.toTypedArray() as Uint8Array);
    writeFileSync(join(folder, `${name}-labels.i64`), new BigInt64Array([...split.labelArray].map(BigInt)));
  }
  writeFileSync(join(folder, 'meta.json'), JSON.stringify({ clean: shape(clean), test: shape(test), weights }));
  for (const split of [train, clean, test]) split.dispose();

  const pythonArgs = [
    join(repo, 'bench/pytorch-mcldef.py'),
    folder,
    '--threads',
    values.threads,
    '--seed',
    `${seed}`,
    '--monitor',
    values.monitor,
    ...(published ? [] : ['--patience', `${DEFAULT_INVERSION_PATIENCE}`, '--epochs', `${DEFAULT_PURIFICATION_EPOCHS}`]),
  ];
  console.log(`PyTorch: /usr/bin/python3 ${pythonArgs.join(' ')}`);
  const python = spawnSync('/usr/bin/python3', pythonArgs, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (python.status !== 0) throw new Error(`the PyTorch job failed: ${python.stderr.trim().split('\n').at(-1)}`);
  const reference = JSON.parse(python.stdout.trim().split('\n').at(-1)!) as Side;
  const show = (label: string, side: Side): void =>
    console.log(
      `${label}: BA ${side.before.ba.toFixed(2)} → ${side.after.ba.toFixed(2)}, ASR ${side.before.asr.toFixed(2)} → ${side.after.asr.toFixed(2)}, trigger size ${side.trigger.size} (${side.trigger.passes} passes); seconds ${Object.entries(
        side.seconds,
      )
        .map(([k, v]) => `${k} ${v.toFixed(0)}`)
        .join(', ')}`,
    );
  show('PyTorch', reference);
  if (values['skip-ours']) process.exit(0);

  const json = join(folder, 'ours.json');
  const oursArgs = [
    '--import',
    'tsx',
    join(repo, 'src/cli/main.ts'),
    'defend',
    '--arch',
    'wrn-16-1',
    '--data',
    dataSpec,
    '--weights',
    weights,
    '--attack',
    'badnets-grid',
    '--target',
    '5',
    '--seed',
    `${seed}`,
    '--preset',
    published ? 'published' : 'default',
    // The PyTorch job trains on the whole clean subset: hold nothing out as evidence.
    '--evidence',
    '0',
    '--threads',
    values.threads,
    '--monitor',
    values.monitor,
    '--json',
    json,
    '--report-dir',
    join(folder, 'report'),
    '--quiet',
  ];
  const ours = spawnSync(process.execPath, oursArgs, { encoding: 'utf8', stdio: ['ignore', 'inherit', 'inherit'] });
  if (ours.status !== 0) throw new Error('mcldef defend failed');
  const mine = JSON.parse(readFileSync(json, 'utf8')) as Side;
  show('mcldef ', mine);
  for (const stage of ['inversion', 'purification', 'evaluation', 'total']) {
    const a = mine.seconds[stage]!;
    const b = reference.seconds[stage]!;
    console.log(`${stage.padEnd(12)} mcldef ${a.toFixed(1)} s, PyTorch ${b.toFixed(1)} s, ratio ${(a / b).toFixed(3)}`);
  }
  const perPass = (side: Side): number => side.seconds.inversion! / side.trigger.passes;
  console.log(
    `inversion per pass: mcldef ${perPass(mine).toFixed(2)} s, PyTorch ${perPass(reference).toFixed(2)} s, ratio ${(perPass(mine) / perPass(reference)).toFixed(3)}`,
  );
} finally {
  rmSync(folder, { recursive: true, force: true });
}
