// The models the defense benches run on: the authors' released model and every model of
// `npm run bench:attacks` (bench/attacks.config.json), each with the attack flags that
// measure its ASR (the clean model under the grid trigger: the floor of a model with no
// backdoor) and its true target.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

export const referenceWeights = join(repo, '..', 'shared', 'models', 'mcl-reference', 'WRN-16-1-badnet.pth.tar');

interface AttacksConfig {
  runs: { name: string; args: string[] }[];
}

/** A training run's attack flags without its training-only ones (--epochs: WaNet trains 12). */
export const attackArgs = (args: readonly string[]): string[] =>
  args.filter((arg, i) => arg !== '--epochs' && args[i - 1] !== '--epochs');

const substitute = (arg: string): string =>
  arg.replaceAll('{models}', namedFolder('MCLDEF_MODELS')).replaceAll('{repo}', repo);

/** The authors' model, then the runs of bench/attacks.config.json (but the second clean model). */
export function benchModels(): BenchModel[] {
  const config = JSON.parse(readFileSync(join(repo, 'bench/attacks.config.json'), 'utf8')) as AttacksConfig;
  const models: BenchModel[] = [
    {
      name: 'reference',
      weights: referenceWeights,
      attackFlags: ['--attack', 'badnets-grid', '--target', '5'],
      trueTarget: 5,
    },
  ];
  for (const run of config.runs) {
    if (run.name === 'clean-seed1') continue;
    const clean = run.name === 'clean';
    const flags = clean ? ['--attack', 'badnets-grid', '--target', '0'] : attackArgs(run.args).map(substitute);
    models.push({
      name: run.name,
      weights: join(namedFolder('MCLDEF_MODELS'), `${run.name}.safetensors`),
      attackFlags: flags,
      trueTarget: clean ? null : Number(flags[flags.indexOf('--target') + 1]),
    });
  }
  return models;
}
