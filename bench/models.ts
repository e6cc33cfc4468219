// The models the defense benches run on: those of the project's grid (bench/grids/cifar10.yaml:
// the authors' released model and every model `npm run bench:attacks` trains), each with the
// attack flags that measure its ASR (the clean model under the grid trigger: the floor of a
// model with no backdoor) and its true target.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { attackFlags, weightsOf } from '../src/bench/cell.js';
import { loadGrid } from '../src/bench/grid.js';

export interface BenchModel {
  name: string;
  weights: string;
  /** `--attack … --target …` and the attack's own flags, training-only ones left out. */
  attackFlags: string[];
  /** null: no backdoor. */
  trueTarget: number | null;
}

export const repo = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
export const data = `cifar10:${join(repo, '..', 'shared', 'data', 'cifar10-jpeg')}`;
/** A folder the user names in an environment variable: long runs never write under the home folder unasked. */
export function namedFolder(variable: 'MCLDEF_MODELS' | 'MCLDEF_RESULTS'): string {
  const folder = process.env[variable];
  if (folder === undefined || folder === '') {
    console.error(
      `set ${variable} to the folder for ${variable === 'MCLDEF_MODELS' ? 'the trained models' : 'the results'} (e.g. ${variable}=/data/mcldef-${variable === 'MCLDEF_MODELS' ? 'models' : 'results'})`,
    );
    process.exit(2);
  }
  return folder;
}

/** The grid whose models the benches share: `npm run bench:attacks` trains them into $MCLDEF_MODELS. */
export const benchGridFile = join(repo, 'bench', 'grids', 'cifar10.yaml');

/** The models of bench/grids/cifar10.yaml (the authors' model first), found in $MCLDEF_MODELS. */
export function benchModels(): BenchModel[] {
  const grid = loadGrid(benchGridFile);
  const artifacts = namedFolder('MCLDEF_MODELS');
  return grid.models.map((model) => {
    const measure = grid.cells.find((cell) => cell.model.id === model.id)?.measure?.attack;
    return {
      name: model.label,
      weights: weightsOf(model, artifacts),
      attackFlags: measure === undefined ? [] : attackFlags(measure, artifacts),
      trueTarget: model.attack?.target ?? null,
    };
  });
}
