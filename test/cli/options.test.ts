// The command line's shared behaviour around defend: config files (YAML, a report fed back,
// bad keys and values), devices, a model with no backdoor, --quiet, and the library example
// giving the same report as the CLI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { cudaDeviceCount } from '../../src/engine/device.js';
import { temporaryFolder } from '../helpers/tmp.js';
import { tinyImageFolder } from '../helpers/tiny-data.js';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function node(args: string[]): Run {
  const result = spawnSync(process.execPath, args, { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const mcldef = (args: string[]): Run => node(['--import', 'tsx', 'src/cli/main.ts', ...args]);

/** The report without its timings, which differ between any two runs. */
function withoutSeconds(json: string): Record<string, unknown> {
  const report = JSON.parse(json) as Record<string, unknown>;
  delete report.seconds;
  return report;
}

const data = tinyImageFolder();
const folder = temporaryFolder('mcldef-options-');
const cache = join(folder, 'cache');
const common = ['--data', `imagefolder:${data}`, '--threads', '1', '--quiet', '--cache-dir', cache];
const backdoored = join(folder, 'backdoored.safetensors');
const clean = join(folder, 'clean.safetensors');
const training = ['train', '--arch', 'wrn-16-1', '--epochs', '4', '--batch-size', '16', '--lr', '0.05'];
const trainedBackdoor = mcldef([
  ...training,
  ...['--attack', 'badnets-square', '--target', '1', '--poison-rate', '0.2', '--out', backdoored],
  ...common,
]);
const trainedClean = mcldef([...training, '--out', clean, ...common]);

/** A short defend run on the backdoored model, told target 1. */
const quickDefend = [
  'defend',
  ...['--weights', backdoored, '--attack', 'badnets-square', '--target', '1'],
  ...['--clean-ratio', '0.5', '--passes', '3', '--epochs', '2', '--monitor', '30'],
];

test('the test models trained', () => {
  assert.equal(trainedBackdoor.status, 0, trainedBackdoor.stderr);
  assert.equal(trainedClean.status, 0, trainedClean.stderr);
});

test('--config: a YAML file reproduces a command-line run exactly, and a report fed back repeats it', () => {
  const cli = mcldef([...quickDefend, '--report-dir', join(folder, 'cli'), '--json', '-', ...common]);
  assert.equal(cli.status, 0, cli.stderr);
  const yaml = join(folder, 'run.yaml');
  writeFileSync(
    yaml,
    [
      `weights: ${backdoored}`,
      'attack: badnets-square',
      'target: 1',
      'clean-ratio: 0.5',
      'passes: 3',
      'epochs: 2',
      'monitor: 30',
      `data: imagefolder:${data}`,
      'threads: 1',
      `cache-dir: ${cache}`,
    ].join('\n') + '\n',
  );
  const fromYaml = mcldef(['defend', '--config', yaml, '--quiet', '--report-dir', join(folder, 'yaml'), '--json', '-']);
  assert.equal(fromYaml.status, 0, fromYaml.stderr);
  assert.deepEqual(withoutSeconds(fromYaml.stdout), withoutSeconds(cli.stdout));
  // The report records every resolved option under its flag name; fed back, it repeats the run.
  const report = JSON.parse(cli.stdout) as { options: Record<string, unknown>; after: { ba: number } };
  assert.equal(report.options['clean-ratio'], 0.5);
  assert.equal(
    report.options['scan-passes'],
    30,
    "a default is recorded, so a later default change can't alter the rerun",
  );
  const fedBack = mcldef([
    'defend',
    '--config',
    join(folder, 'cli', 'report.json'),
    '--quiet',
    '--cache-dir',
    cache,
    '--report-dir',
    join(folder, 'again'),
    '--json',
    '-',
  ]);
  assert.equal(fedBack.status, 0, fedBack.stderr);
  assert.deepEqual(withoutSeconds(fedBack.stdout), withoutSeconds(cli.stdout));
  // Flags on the command line win over the file.
  const override = mcldef([
    'defend',
    '--config',
    yaml,
    '--quiet',
    '--epochs',
    '1',
    '--json',
    '-',
    '--report-dir',
    join(folder, 'o'),
  ]);
  assert.equal(override.status, 0, override.stderr);
  assert.equal((JSON.parse(override.stdout) as { epochs: unknown[] }).epochs.length, 1);
});

test('--config: a bad key or value names the key and the file in one line', () => {
  const badKey = join(folder, 'bad-key.yaml');
  writeFileSync(badKey, `weights: ${backdoored}\ndata: imagefolder:${data}\nclean-ration: 0.5\n`);
  const unknown = mcldef(['defend', '--config', badKey]);
  assert.equal(unknown.status, 1);
  assert.equal(unknown.stderr.trim().split('\n').length, 1, unknown.stderr);
  assert.match(unknown.stderr, new RegExp(`config ${badKey.replace(/[.]/g, '\\.')}: unknown key 'clean-ration'`));
  const badValue = join(folder, 'bad-value.json');
  writeFileSync(badValue, JSON.stringify({ weights: backdoored, data: `imagefolder:${data}`, epochs: 0 }));
  const value = mcldef(['defend', '--config', badValue]);
  assert.equal(value.status, 1);
  assert.match(value.stderr, /^mcldef: error: config .*bad-value\.json: key 'epochs': .*integer ≥ 1/);
  const choice = join(folder, 'bad-choice.yaml');
  writeFileSync(choice, 'preset: fastest\n');
  assert.match(
    mcldef(['defend', '--config', choice]).stderr,
    /key 'preset' must be one of default, published, got 'fastest'/,
  );
  assert.match(
    mcldef(['defend', '--config', join(folder, 'absent.yaml')]).stderr,
    /config .*absent\.yaml: no such file/,
  );
  // Without --weights anywhere, the error says where it may come from.
  assert.match(
    mcldef(['defend', '--data', `imagefolder:${data}`]).stderr,
    /'--weights <file>' not given \(on the command line or in --config\)/,
  );
});

test(
  '--device cuda on a CPU-only build is one clear line and a non-zero exit',
  { skip: cudaDeviceCount() > 0 ? 'a CUDA device is present' : false },
  () => {
    for (const command of [
      ['eval', '--weights', backdoored, ...common, '--device', 'cuda'],
      [...quickDefend, ...common, '--device', 'cuda:1'],
    ]) {
      const run = mcldef(command);
      assert.equal(run.status, 1);
      assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
      assert.match(run.stderr, /^mcldef: error: device 'cuda(:1)?': this libtorch has no CUDA/);
    }
    assert.match(
      mcldef(['eval', '--weights', backdoored, ...common, '--device', 'tpu']).stderr,
      /device 'tpu': use cpu, cuda or cuda:N/,
    );
  },
);

test('a model with no backdoor: defend exits 0 and both reports say so', () => {
  const reportDir = join(folder, 'clean-report');
  const run = mcldef([
    'defend',
    ...['--weights', clean, '--attack', 'badnets-square', '--target', '1', '--detect'],
    ...['--clean-ratio', '0.5', '--scan-passes', '2', '--out', join(folder, 'clean-out.safetensors')],
    ...['--report-dir', reportDir, '--json', '-'],
    ...common,
  ]);
  assert.equal(run.status, 0, run.stderr);
  const report = JSON.parse(run.stdout) as {
    changed: boolean;
    reason: string;
    detected_target: number | null;
    before: unknown;
    after: unknown;
    der: number;
    epochs: unknown[];
  };
  assert.equal(report.detected_target, null);
  assert.equal(report.changed, false);
  assert.equal(report.reason, 'no backdoor found');
  assert.deepEqual(report.after, report.before, 'the model is left as it was');
  assert.equal(report.der, 0.5);
  assert.deepEqual(report.epochs, []);
  const written = JSON.parse(readFileSync(join(reportDir, 'report.json'), 'utf8')) as { reason: string };
  assert.equal(written.reason, 'no backdoor found');
  const html = readFileSync(join(reportDir, 'report.html'), 'utf8');
  assert.match(html, /<strong>No backdoor found<\/strong>/);
  // The scan's per-class statistics, which the decision was made on, with none flagged.
  assert.equal(html.match(/<tr><th>\d<\/th><td>/g)?.length, 3, 'a row per class');
  assert.match(html, /No class stands out\./);
  assert.match(html, /<th>agreement of restarts<\/th>/);
  assert.equal(written.reason, 'no backdoor found');
  assert.ok(!existsSync(join(reportDir, 'trigger.png')), 'no trigger was inverted');
});

test('--quiet silences progress; without it the scan reports every class as it goes', () => {
  const args = [
    'detect',
    ...['--weights', backdoored, '--clean-ratio', '0.5', '--scan-passes', '1', '--warp-shift', '0'],
    ...['--signal-amplitude', '0', '--data', `imagefolder:${data}`, '--threads', '1', '--cache-dir', cache],
  ];
  const loud = mcldef(args);
  const quiet = mcldef([...args, '--quiet']);
  assert.equal(loud.status, 0, loud.stderr);
  const progress = (text: string): string[] =>
    text.split('\n').filter((line) => /^ {2}class \d: size [\d.]+ \(/.test(line));
  assert.equal(progress(loud.stdout).length, 3, loud.stdout);
  assert.equal(progress(quiet.stdout).length, 0, quiet.stdout);
  assert.equal(quiet.stdout.split('\n').filter((line) => line.startsWith('  class')).length, 3, 'the results stay');
  // defend: the inversion's passes and purification's epochs are progress too.
  const defendArgs = [...quickDefend, '--report-dir', join(folder, 'quiet'), '--data', `imagefolder:${data}`];
  const loudDefend = mcldef([...defendArgs, '--threads', '1', '--cache-dir', cache]);
  const quietDefend = mcldef([...defendArgs, '--threads', '1', '--cache-dir', cache, '--quiet']);
  assert.equal(loudDefend.status, 0, loudDefend.stderr);
  const progressLines = (text: string): string[] =>
    text.split('\n').filter((line) => /^ {2}(epoch \d+\/2 |inversion pass \d)/.test(line));
  assert.equal(progressLines(loudDefend.stdout).filter((line) => line.includes('epoch')).length, 2, loudDefend.stdout);
  assert.deepEqual(progressLines(quietDefend.stdout), []);
  assert.match(quietDefend.stdout, /^after: {2}BA [\d.]+%/m, 'the results stay');
});

test("the library example gives the CLI's report for the same options", () => {
  const cli = mcldef([...quickDefend, '--report-dir', join(folder, 'cli-example'), '--json', '-', ...common]);
  assert.equal(cli.status, 0, cli.stderr);
  const example = node([
    '--conditions=source',
    '--import',
    'tsx',
    'examples/defend-checkpoint.ts',
    ...['--weights', backdoored, '--data', `imagefolder:${data}`, '--attack', 'badnets-square', '--target', '1'],
    ...['--clean-ratio', '0.5', '--passes', '3', '--epochs', '2', '--cache-dir', cache, '--threads', '1'],
    ...['--out', join(folder, 'example.safetensors'), '--report-dir', join(folder, 'example-report')],
  ]);
  assert.equal(example.status, 0, example.stderr);
  const fromExample = withoutSeconds(example.stdout);
  const fromCli = withoutSeconds(cli.stdout);
  // The CLI passes --monitor 30 (30 test images for the chart), which the example leaves at 500.
  const options = (report: Record<string, unknown>): Record<string, unknown> =>
    report.options as Record<string, unknown>;
  delete options(fromCli).monitor;
  delete options(fromExample).monitor;
  const epochs = (report: Record<string, unknown>): { loss: number }[] => report.epochs as { loss: number }[];
  assert.deepEqual(
    epochs(fromExample).map((e) => e.loss),
    epochs(fromCli).map((e) => e.loss),
  );
  for (const report of [fromExample, fromCli]) report.epochs = epochs(report).map((e) => e.loss);
  assert.deepEqual(fromExample, fromCli);
  assert.ok(existsSync(join(folder, 'example-report', 'report.html')));
});

test('the in-memory library example runs detection and purification and measures what it reports', () => {
  const run = node([
    '--conditions=source',
    '--import',
    'tsx',
    'examples/defend-in-memory.ts',
    ...['--weights', backdoored, '--data', `imagefolder:${data}`, '--clean-ratio', '0.5'],
    ...['--scan-passes', '2', '--epochs', '1', '--cache-dir', cache],
  ]);
  assert.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout) as {
    arch: string;
    after: number;
    measured_again: number;
    changed: boolean;
    verdict: string[];
  };
  assert.equal(result.arch, 'wrn-16-1', 'the architecture recorded by mcldef train');
  assert.match(result.verdict[0]!, /^(backdoor found towards class \d|no backdoor found)/);
  assert.match(result.verdict.join('\n'), /held-out clean accuracy [\d.]+ %/);
  assert.equal(result.measured_again, result.after, "the report's BA is the returned model's");
});
