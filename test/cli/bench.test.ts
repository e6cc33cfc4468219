// `mcldef bench` from the command line: one-line errors for a missing grid, a bad key (with
// its line) and a folder that is no results store; `bench list` names every model and cell;
// `bench train` trains a grid's models (or a part's) once.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { modelWeights } from '../../src/bench/cell.js';
import { loadGrid } from '../../src/bench/grid.js';
import { tinyGrid } from '../helpers/grid.js';
import { temporaryFolder } from '../helpers/tmp.js';
import { tinyImageFolder } from '../helpers/tiny-data.js';

const mcldef = (args: string[]): { status: number | null; stdout: string; stderr: string } =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });

test('mcldef bench: clear one-line errors, and list', () => {
  const folder = temporaryFolder('mcldef-cli-bench-');
  const missing = mcldef(['bench', 'run', join(folder, 'nope.yaml'), '--results', folder]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^mcldef: error: grid .*nope\.yaml: no such file\n$/);

  const file = join(folder, 'grid.yaml');
  writeFileSync(file, tinyGrid('  - name: ft\n    epochs: 2\n    colour: red', tinyImageFolder({ count: 4 })));
  const bad = mcldef(['bench', 'run', file, '--results', folder]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /grid\.yaml:19: defenses\[0\]\.colour: defense 'ft' has no option 'colour'/);

  writeFileSync(file, tinyGrid('  - name: ft\n  - name: clp', tinyImageFolder({ count: 4 })));
  const listed = mcldef(['bench', 'list', file]);
  assert.equal(listed.status, 0, listed.stderr);
  const grid = loadGrid(file);
  for (const cell of grid.cells)
    assert.ok(listed.stdout.includes(`cell  ${cell.id}  ${cell.model.label} × ${cell.defense.label}`));
  for (const model of grid.models) assert.ok(listed.stdout.includes(`model ${model.id}  ${model.label}`));

  const report = mcldef(['bench', 'report', '--results', join(folder, 'empty'), '--out', join(folder, 'board')]);
  assert.equal(report.status, 1);
  assert.match(report.stderr, /not a results store \(no cells\/ folder\)/);
});

test('mcldef bench train: the models a part of the grid needs, then the rest; trained ones are skipped', () => {
  const folder = temporaryFolder('mcldef-cli-bench-train-');
  const file = join(folder, 'grid.yaml');
  writeFileSync(file, tinyGrid('  - name: clp', tinyImageFolder({ count: 4 })));
  const grid = loadGrid(file);
  const [backdoored, clean] = grid.models;
  const artifacts = join(folder, 'models');
  const part = mcldef([
    'bench',
    'train',
    file,
    '--artifacts',
    artifacts,
    '--models',
    'clean',
    '--threads',
    '1',
    '--quiet',
  ]);
  assert.equal(part.status, 0, part.stderr);
  assert.ok(existsSync(modelWeights(artifacts, clean!.id)));
  assert.ok(!existsSync(modelWeights(artifacts, backdoored!.id)), 'only the selected part is trained');
  assert.match(part.stdout, new RegExp(`\\| clean \\| ${clean!.id} \\| \\d+\\.\\d\\d% \\| - \\| 4 \\|`));

  const all = mcldef(['bench', 'train', file, '--artifacts', artifacts, '--threads', '1']);
  assert.equal(all.status, 0, all.stderr);
  assert.match(
    all.stdout,
    new RegExp(`\\| badnets-square \\| ${backdoored!.id} \\| \\d+\\.\\d\\d% \\| \\d+\\.\\d\\d% \\| 4 \\|`),
  );
  assert.match(all.stdout, /model badnets-square .*: training 4 epochs/);
  assert.doesNotMatch(all.stdout, /model clean .*: training/, 'a trained model is not trained again');
  assert.match(all.stdout, /2 models in /);
});
