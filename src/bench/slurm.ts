// A grid on a Slurm cluster: two job arrays written as sbatch scripts, the models first and
// the cells after them (`--dependency=afterok`), each task one `mcldef bench model|cell ID`.
// The results store and the artifacts folder must be on a file system every node sees.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { type CellSelection, type Grid, selectCells } from './grid.js';
import { ResultsStore } from './store.js';

export interface SlurmOptions {
  results: string;
  artifacts?: string;
  /** Folder the scripts go to (default RESULTS/slurm). */
  out?: string;
  /** The command that runs mcldef on the nodes (default `mcldef`). */
  command?: string;
  /** Extra `#SBATCH` lines, e.g. `--partition=gpu`, `--time=04:00:00`. */
  sbatch?: readonly string[];
  cpus?: number;
  /** Arrays for only these cells and the models they need. */
  only?: CellSelection;
}

export interface SlurmScripts {
  folder: string;
  models: string;
  cells: string;
  submit: string;
  modelCount: number;
  cellCount: number;
}

const quote = (text: string): string => `'${text.replaceAll("'", `'\\''`)}'`;

export function writeSlurmScripts(wholeGrid: Grid, options: SlurmOptions): SlurmScripts {
  const grid = selectCells(wholeGrid, options.only);
  if (grid.file === null) throw new Error('bench slurm: the grid must come from a file (the tasks read it)');
  const results = resolve(options.results);
  const artifacts = resolve(options.artifacts ?? join(results, 'artifacts'));
  const folder = resolve(options.out ?? join(results, 'slurm'));
  mkdirSync(folder, { recursive: true });
  new ResultsStore(results).saveGrid(wholeGrid);
  const command = options.command ?? 'mcldef';
  const common = `--grid ${quote(grid.file)} --results ${quote(results)} --artifacts ${quote(artifacts)}`;
  const header = (name: string, count: number): string[] => [
    '#!/bin/bash',
    `#SBATCH --job-name=${name}`,
    `#SBATCH --array=0-${count - 1}`,
    `#SBATCH --cpus-per-task=${options.cpus ?? 8}`,
    `#SBATCH --output=${folder}/${name}-%A_%a.log`,
    ...(options.sbatch ?? []).map((line) => `#SBATCH ${line}`),
    'set -euo pipefail',
  ];
  const ids = (list: readonly string[]): string => `ids=(${list.join(' ')})`;
  const models = join(folder, 'models.sbatch');
  writeFileSync(
    models,
    [
      ...header(`${grid.name}-models`, grid.models.length),
      ids(grid.models.map((model) => model.id)),
      `${command} bench model "\${ids[$SLURM_ARRAY_TASK_ID]}" ${common}`,
      '',
    ].join('\n'),
  );
  const cells = join(folder, 'cells.sbatch');
  writeFileSync(
    cells,
    [
      ...header(`${grid.name}-cells`, grid.cells.length),
      ids(grid.cells.map((cell) => cell.id)),
      `${command} bench cell "\${ids[$SLURM_ARRAY_TASK_ID]}" ${common}`,
      '',
    ].join('\n'),
  );
  const submit = join(folder, 'submit.sh');
  writeFileSync(
    submit,
    [
      '#!/bin/bash',
      '# Submits the models, then the cells once every model is trained.',
      'set -euo pipefail',
      `models=$(sbatch --parsable ${quote(models)})`,
      `sbatch --dependency=afterok:\${models%%;*} ${quote(cells)}`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return { folder, models, cells, submit, modelCount: grid.models.length, cellCount: grid.cells.length };
}
