// `npm run bench:compare`: every registered defense with its defaults on the authors' model and
// every model of `npm run bench:attacks` (the clean one too: what a defense costs a model with
// no backdoor), target not given, the same clean subset (seed 0) for all. Each cell is an exact
// `mcldef defend` command whose JSON lands in $MCLDEF_RESULTS/compare/; finished cells are skipped, so it can be re-run after an interruption.
// Prints BA / ASR after, DER and seconds per cell, the best DER per model and MCLDef's rank.
// Options: --defenses NAME[,NAME...] (default all registered), --only MODEL[,MODEL...],
// --dry-run (print the commands).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { defenseNames } from '../src/defenses/index.js';
import { benchModels, data, namedFolder, repo } from './models.js';

interface Cell {
  before: { ba: number; asr: number | null };
  after: { ba: number; asr: number | null; asr_no_trigger: number | null };
  der: number | null;
  changed: boolean;
  seconds: Record<string, number>;
}

const { values } = parseArgs({
  options: { defenses: { type: 'string' }, only: { type: 'string' }, 'dry-run': { type: 'boolean', default: false } },
});
const defenses = values.defenses?.split(',') ?? defenseNames();
const unknown = defenses.filter((name) => !defenseNames().includes(name));
if (unknown.length > 0) throw new Error(`unknown defense ${unknown.join(', ')}; known: ${defenseNames().join(', ')}`);
const only = values.only?.split(',');
const models = benchModels().filter((m) => only === undefined || only.includes(m.name));
const folder = join(namedFolder('MCLDEF_RESULTS'), 'compare');
mkdirSync(folder, { recursive: true });
const started = performance.now();

for (const model of models) {
  if (!existsSync(model.weights)) {
    console.log(`${model.name}: skipped, no ${model.weights} (npm run bench:attacks)`);
    continue;
  }
  for (const defense of defenses) {
    const name = `${defense}-${model.name}`;
    const json = join(folder, `${name}.json`);
    if (existsSync(json)) continue;
    const args = [
      'defend',
      ...['--arch', 'wrn-16-1', '--data', data, '--weights', model.weights, ...model.attackFlags],
      ...['--detect', '--method', defense, '--seed', '0', '--quiet'],
      ...['--json', json, '--report-dir', join(folder, `${name}-report`)],
    ];
    console.log(`${name}: mcldef ${args.join(' ')}`);
    if (values['dry-run']) continue;
    const run = spawnSync(process.execPath, ['--import', 'tsx', join(repo, 'src/cli/main.ts'), ...args], {
      stdio: 'inherit',
      cwd: repo,
    });
    if (run.status !== 0) console.error(`${name}: failed (exit ${run.status})`);
  }
}

const read = (name: string): Cell | undefined => {
  const path = join(folder, `${name}.json`);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Cell) : undefined;
};
const fmt = (x: number | null | undefined, digits = 2): string =>
  x === null || x === undefined ? '-' : x.toFixed(digits);
console.log(
  `\n| model | before BA / ASR | ${defenses.map((d) => `${d}: BA / ASR, DER, defense s`).join(' | ')} | best DER | MCLDef's rank |`,
);
console.log(`|---|---|${defenses.map(() => '---').join('|')}|---|---|`);
for (const model of models) {
  const cells = defenses.map((d) => read(`${d}-${model.name}`));
  const first = cells.find((c) => c !== undefined);
  if (first === undefined) continue;
  const ranked = defenses
    .map((d, i) => ({ d, der: cells[i]?.der ?? null }))
    .filter((r): r is { d: string; der: number } => r.der !== null)
    .sort((a, b) => b.der - a.der);
  const rank = ranked.findIndex((r) => r.d === 'mcldef');
  console.log(
    `| ${model.name} | ${fmt(first.before.ba)} / ${fmt(first.before.asr)} | ${cells
      .map((c) =>
        c === undefined
          ? '-'
          : `${fmt(c.after.ba)} / ${fmt(c.after.asr)}${c.changed ? '' : ' (unchanged)'}, ${fmt(c.der, 3)}, ${fmt(c.seconds.defense ?? c.seconds.total, 0)}`,
      )
      .join(
        ' | ',
      )} | ${ranked[0] === undefined ? '-' : `${ranked[0].d} ${fmt(ranked[0].der, 3)}`} | ${rank < 0 ? '-' : `${rank + 1} of ${ranked.length}`} |`,
  );
}
console.log(`\nwall time of this invocation: ${((performance.now() - started) / 1000).toFixed(0)} s`);
