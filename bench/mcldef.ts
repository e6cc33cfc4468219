// `npm run bench:mcldef -- --suite NAME`: the MCLDef measurements of issue #5, each an
// exact `mcldef defend` or `mcldef detect` command whose JSON lands in $MCLDEF_RESULTS
// (required). Finished runs are skipped, so the suite can be re-run; the
// tables are printed from the JSON files at the end.
//   reference: the authors' model, target 5 given, defaults and --preset published, seeds 0–2
//   detect:    detection on the authors' model and on the clean model of bench:attacks
//   attacks:   every backdoored model of bench:attacks (bench/attacks.config.json), target not given
//   attacks-refit: the same with --refit-head (the head re-fit on clean data after purification)
//   attacks-refit-log: the same with --refit-head --anomaly-scale log
//   evidence:  the authors' model, every model of bench:attacks and the clean one, target not
//              given, --verify: the held-out evidence and the re-scan beside the true ASR
// Options: --suite NAME[,NAME...] (default all three), --only RUN[,RUN...]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { benchModels, namedFolder } from './models.js';

interface AttacksConfig {
  common: string[];
  runs: { name: string; args: string[] }[];
}

interface Run {
  suite: string;
  name: string;
  command: 'defend' | 'detect';
  args: string[];
}

interface Metrics {
  ba: number;
  asr: number | null;
  asr_no_trigger?: number | null;
}

interface Reading {
  trigger_success?: number;
  target_without_trigger?: number;
  clean_accuracy: number;
}

interface ScanSummary {
  target: number | null;
  flagged_by: string | null;
  indices: Record<string, number[] | null>;
}

interface DefendReport {
  evidence?: { images: number; target: number | null; before: Reading; after: Reading } | null;
  verification?: { before: ScanSummary; after: ScanSummary | null; statistic: string; seconds: number } | null;
  target: number | null;
  detected_target: number | null;
  before: Metrics;
  after: Metrics;
  der: number | null;
  seconds: Record<string, number>;
  trigger?: { size: number; passes: number };
  detection?: { flaggedBy: string | null };
}

interface DetectReport {
  detected_target: number | null;
  flagged_by?: string | null;
  classes: {
    label: number;
    size: number;
    anomalyIndex: number;
    warp?: { loss: number } | null;
    warpIndex?: number | null;
  }[];
  seconds: number;
}

const repo = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const { values } = parseArgs({
  options: { suite: { type: 'string', default: 'reference,detect,attacks' }, only: { type: 'string' } },
});
const suites = values.suite.split(',');
const only = values.only?.split(',');
const models = namedFolder('MCLDEF_MODELS');
const results = namedFolder('MCLDEF_RESULTS');
mkdirSync(results, { recursive: true });

const shared = join(repo, '..', 'shared');
const data = `cifar10:${join(shared, 'data/cifar10-jpeg')}`;
const reference = join(shared, 'models/mcl-reference/WRN-16-1-badnet.pth.tar');
const attacks = JSON.parse(readFileSync(join(repo, 'bench/attacks.config.json'), 'utf8')) as AttacksConfig;
const substitute = (arg: string): string => arg.replaceAll('{models}', models).replaceAll('{repo}', repo);

const runs: Run[] = [];
for (const preset of ['default', 'published']) {
  for (const seed of [0, 1, 2]) {
    runs.push({
      suite: 'reference',
      name: `reference-${preset}-s${seed}`,
      command: 'defend',
      args: [
        '--weights',
        reference,
        '--attack',
        'badnets-grid',
        '--target',
        '5',
        '--preset',
        preset,
        // The published configuration trains on the whole clean subset.
        ...(preset === 'published' ? ['--evidence', '0'] : []),
        '--seed',
        `${seed}`,
      ],
    });
  }
}
runs.push({ suite: 'detect', name: 'detect-reference', command: 'detect', args: ['--weights', reference] });
runs.push({
  suite: 'detect',
  name: 'detect-clean',
  command: 'detect',
  args: ['--weights', join(models, 'clean.safetensors')],
});
/** A training run's attack flags without its training-only ones (--epochs: WaNet trains 12). */
const attackArgs = (args: string[]): string[] =>
  args.filter((arg, i) => arg !== '--epochs' && args[i - 1] !== '--epochs');

for (const [suite, extra] of [
  ['attacks', []],
  ['attacks-refit', ['--refit-head']],
  ['attacks-refit-log', ['--refit-head', '--anomaly-scale', 'log']],
] as const) {
  for (const attack of attacks.runs) {
    if (attack.name === 'clean') continue;
    runs.push({
      suite,
      name: `${suite === 'attacks' ? 'attack' : suite}-${attack.name}`,
      command: 'defend',
      args: [
        '--weights',
        join(models, `${attack.name}.safetensors`),
        ...attackArgs(attack.args).map(substitute),
        '--detect',
        ...extra,
      ],
    });
  }
}

// The evidence suite: every bench model, target not given, with the re-scan.
const trueTargets = new Map<string, number | null>();
for (const model of benchModels()) {
  const name = `evidence-${model.name}`;
  trueTargets.set(name, model.trueTarget);
  runs.push({
    suite: 'evidence',
    name,
    command: 'defend',
    args: ['--weights', model.weights, ...model.attackFlags, '--detect', '--verify'],
  });
}

for (const run of runs) {
  if (!suites.includes(run.suite) || (only !== undefined && !only.includes(run.name))) continue;
  const json = join(results, `${run.name}.json`);
  if (existsSync(json)) {
    console.log(`${run.name}: done (${json})`);
    continue;
  }
  const args = [
    run.command,
    '--arch',
    'wrn-16-1',
    '--data',
    data,
    ...run.args,
    '--json',
    json,
    ...(run.command === 'defend' ? ['--report-dir', join(results, `${run.name}-report`)] : []),
  ];
  const weights = run.args[run.args.indexOf('--weights') + 1]!;
  if (!existsSync(weights)) {
    console.log(`${run.name}: skipped, no ${weights} (npm run bench:attacks)`);
    continue;
  }
  console.log(`${run.name}: mcldef ${args.join(' ')}`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(repo, 'src/cli/main.ts'), ...args], {
    stdio: 'inherit',
    cwd: repo,
  });
  if (result.status !== 0) console.error(`${run.name}: failed (exit ${result.status})`);
}

const read = <T>(name: string): T | undefined => {
  const path = join(results, `${name}.json`);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as T) : undefined;
};
const fmt = (x: number | null | undefined, digits = 2): string =>
  x === null || x === undefined ? '-' : x.toFixed(digits);

const defendTable = (suite: string): void => {
  console.log(
    `\n| run | target (detected) | BA before | BA after | ASR before | ASR after | DER | trigger size (passes) | s load | s eval | s detect | s inversion | s purify (monitor) | s total |`,
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const run of runs.filter((r) => r.suite === suite)) {
    const r = read<DefendReport>(run.name);
    if (r === undefined) continue;
    const s = r.seconds;
    console.log(
      `| ${run.name} | ${r.target} (${r.detected_target ?? '-'}${r.detection?.flaggedBy === 'warp' || r.detection?.flaggedBy === 'signal' ? `, ${r.detection.flaggedBy} scan` : ''}) | ${fmt(r.before.ba)} | ${fmt(r.after.ba)} | ${fmt(r.before.asr)} | ${fmt(r.after.asr)} | ${fmt(r.der, 4)} | ${r.trigger === undefined ? '-' : `${Number.isInteger(r.trigger.size) ? r.trigger.size : `${r.trigger.size.toFixed(2)} px`} (${r.trigger.passes})`} | ${fmt(s.load, 0)} | ${fmt(s.evaluation, 0)} | ${fmt(s.detection, 0)} | ${fmt(s.inversion, 0)} | ${fmt(s.purification, 0)} (${fmt(s.purification_monitor, 0)}) | ${fmt(s.total, 0)} |`,
    );
  }
};

if (suites.includes('reference')) defendTable('reference');
if (suites.includes('detect')) {
  for (const run of runs.filter((r) => r.suite === 'detect')) {
    const r = read<DetectReport>(run.name);
    if (r === undefined) continue;
    console.log(
      `\n${run.name}: ${r.detected_target === null ? 'no backdoor found' : `target ${r.detected_target}`} (${r.seconds.toFixed(0)} s)`,
    );
    console.log(`| class | ${r.classes.map((c) => c.label).join(' | ')} |`);
    console.log(`|---|${r.classes.map(() => '---').join('|')}|`);
    console.log(`| trigger size | ${r.classes.map((c) => c.size.toFixed(0)).join(' | ')} |`);
    console.log(`| anomaly index | ${r.classes.map((c) => c.anomalyIndex.toFixed(2)).join(' | ')} |`);
    if (r.classes.every((c) => c.warp != null)) {
      console.log(`| warp-scan loss | ${r.classes.map((c) => c.warp!.loss.toFixed(2)).join(' | ')} |`);
      console.log(`| warp-scan index | ${r.classes.map((c) => c.warpIndex!.toFixed(2)).join(' | ')} |`);
    }
  }
}
if (suites.includes('attacks')) defendTable('attacks');
if (suites.includes('attacks-refit')) defendTable('attacks-refit');
if (suites.includes('attacks-refit-log')) defendTable('attacks-refit-log');

/** The held-out evidence and the re-scan beside the true figures, one row per model. */
const evidenceTable = (): void => {
  console.log(
    `\n| model | true target | found | found trigger's success % before → after (without it) | held-out accuracy % before → after | re-scan | true ASR % before → after (without it) | BA % before → after | s defense | s verify |`,
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const run of runs.filter((r) => r.suite === 'evidence')) {
    const r = read<DefendReport>(run.name);
    if (r === undefined) continue;
    const e = r.evidence;
    const v = r.verification;
    const success =
      e?.before.trigger_success === undefined
        ? '-'
        : `${fmt(e.before.trigger_success, 1)} → ${fmt(e.after.trigger_success, 1)} (${fmt(e.after.target_without_trigger, 1)})`;
    const accuracy =
      e === null || e === undefined ? '-' : `${fmt(e.before.clean_accuracy, 1)} → ${fmt(e.after.clean_accuracy, 1)}`;
    const suspect = v?.before.target ?? null;
    const index = (scan: ScanSummary | null | undefined): string =>
      suspect === null || scan === null || scan === undefined ? '-' : fmt(scan.indices[v!.statistic]?.[suspect], 2);
    const rescan =
      v === null || v === undefined
        ? '-'
        : v.after === null
          ? 'unchanged'
          : `${v.after.target === null ? 'none stands out' : `class ${v.after.target}${v.after.target === suspect ? ' still' : ''}`}${suspect === null ? '' : ` (index ${index(v.before)} → ${index(v.after)})`}`;
    const truth =
      r.before.asr === null
        ? '-'
        : `${fmt(r.before.asr, 1)} → ${fmt(r.after.asr, 1)} (${fmt(r.after.asr_no_trigger, 1)})`;
    console.log(
      `| ${run.name.replace(/^evidence-/, '')} | ${trueTargets.get(run.name) ?? 'none'} | ${r.detected_target ?? 'none'} | ${success} | ${accuracy} | ${rescan} | ${truth} | ${fmt(r.before.ba, 1)} → ${fmt(r.after.ba, 1)} | ${fmt((r.seconds.total ?? 0) - (v?.seconds ?? 0), 0)} | ${fmt(v?.seconds, 0)} |`,
    );
  }
};
if (suites.includes('evidence')) evidenceTable();
