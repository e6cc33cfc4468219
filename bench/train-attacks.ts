// `npm run bench:attacks`: trains the backdoored models listed in bench/attacks.config.json
// (exact `mcldef train` commands), one after another, into $MCLDEF_MODELS (required). Finished runs are skipped and interrupted ones resume, so it can be
// run again until everything is done. Prints BA/ASR per attack, epochs and wall time.
// Options: --only NAME[,NAME...]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { namedFolder } from './models.js';

interface Config {
  common: string[];
  runs: { name: string; args: string[] }[];
}

const repo = fileURLToPath(new URL('..', import.meta.url));
const config = JSON.parse(readFileSync(join(repo, 'bench/attacks.config.json'), 'utf8')) as Config;
const { values } = parseArgs({ options: { only: { type: 'string' } } });
const only = values.only?.split(',');
const models = namedFolder('MCLDEF_MODELS');
mkdirSync(models, { recursive: true });
const substitute = (arg: string): string =>
  arg.replaceAll('{models}', models).replaceAll('{repo}', repo.replace(/\/$/, ''));

for (const run of config.runs) {
  if (only !== undefined && !only.includes(run.name)) continue;
  const out = join(models, `${run.name}.safetensors`);
  if (existsSync(out)) {
    console.log(`${run.name}: done (${out})`);
    continue;
  }
  const args = [...config.common, ...run.args].map(substitute);
  console.log(`${run.name}: mcldef train ${args.join(' ')} --out ${out}`);
  const result = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      join(repo, 'src/cli/main.ts'),
      'train',
      ...args,
      '--out',
      out,
      '--json',
      join(models, `${run.name}.json`),
    ],
    { stdio: 'inherit', cwd: repo },
  );
  if (result.status !== 0) {
    console.error(`${run.name}: failed (exit ${result.status}); re-run to resume`);
    process.exit(1);
  }
}

console.log('\n| model | BA % | ASR % | RA % | epochs | minutes |');
console.log('|---|---|---|---|---|---|');
for (const run of config.runs) {
  const path = join(models, `${run.name}.json`);
  if (!existsSync(path)) continue;
  const r = JSON.parse(readFileSync(path, 'utf8')) as {
    ba: number;
    asr: number | null;
    ra: number | null;
    epochs: number;
    seconds: number;
  };
  const fmt = (x: number | null): string => (x === null ? '-' : x.toFixed(2));
  console.log(
    `| ${run.name} | ${fmt(r.ba)} | ${fmt(r.asr)} | ${fmt(r.ra)} | ${r.epochs} | ${(r.seconds / 60).toFixed(1)} |`,
  );
}
