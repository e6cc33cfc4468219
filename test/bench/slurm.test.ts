// `mcldef bench slurm`: two sbatch arrays (models, then cells after them) whose tasks name
// each model and cell id of the grid in turn.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { loadGrid } from '../../src/bench/grid.js';
import { writeSlurmScripts } from '../../src/bench/slurm.js';
import { tinyGrid } from '../helpers/grid.js';
import { temporaryFolder } from '../helpers/tmp.js';
import { tinyImageFolder } from '../helpers/tiny-data.js';

test('the sbatch arrays run every model, then every cell, each task its own id', () => {
  const folder = temporaryFolder('mcldef-slurm-');
  const file = join(folder, 'grid.yaml');
  writeFileSync(file, tinyGrid('  - name: ft\n  - name: clp', tinyImageFolder({ count: 4 })));
  const grid = loadGrid(file);
  const results = join(folder, 'results');
  // `--command echo` stands in for mcldef: each task then prints the command it would run.
  const scripts = writeSlurmScripts(grid, { results, command: 'echo', sbatch: ['--time=01:00:00'], cpus: 4 });
  const models = readFileSync(scripts.models, 'utf8');
  const cells = readFileSync(scripts.cells, 'utf8');
  assert.match(models, new RegExp(`#SBATCH --array=0-${grid.models.length - 1}\n`));
  assert.match(cells, new RegExp(`#SBATCH --array=0-${grid.cells.length - 1}\n`));
  assert.match(cells, /#SBATCH --time=01:00:00\n/);
  assert.match(cells, /#SBATCH --cpus-per-task=4\n/);
  const task = (script: string, index: number): string =>
    execFileSync('bash', [script], { env: { ...process.env, SLURM_ARRAY_TASK_ID: String(index) }, encoding: 'utf8' });
  grid.models.forEach((model, i) => {
    assert.equal(
      task(scripts.models, i).trim(),
      `bench model ${model.id} --grid ${file} --results ${results} --artifacts ${join(results, 'artifacts')}`,
    );
  });
  grid.cells.forEach((cell, i) => assert.match(task(scripts.cells, i), new RegExp(`^bench cell ${cell.id} --grid `)));
  const submit = readFileSync(scripts.submit, 'utf8');
  assert.match(submit, /models=\$\(sbatch --parsable .*models\.sbatch'\)/);
  assert.match(submit, /sbatch --dependency=afterok:\$\{models%%;\*\} .*cells\.sbatch'/);
  assert.deepEqual(JSON.parse(readFileSync(join(results, 'grid.json'), 'utf8')).cells.length, grid.cells.length);
});
