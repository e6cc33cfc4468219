// `mcldef bench` from the command line: one-line errors for a missing grid, a bad key (with
// its line) and a folder that is no results store; `bench list` names every model and cell.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

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
