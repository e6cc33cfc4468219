// `mcldef train` and `mcldef eval` end to end on a tiny image folder: one-line errors,
// and resuming after SIGINT or SIGKILL with the same final weights as an uninterrupted run.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { temporaryFolder } from '../helpers/tmp.js';
import { tinyImageFolder } from '../helpers/tiny-data.js';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

function mcldef(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const data = tinyImageFolder({ levels: [70, 180], count: 24, seed: 1 });
const cache = temporaryFolder('mcldef-cli-cache-');
const trainArgs = (out: string): string[] => [
  'train',
  '--arch',
  'wrn-16-1',
  '--data',
  `imagefolder:${data}`,
  '--attack',
  'badnets-square',
  '--target',
  '0',
  '--poison-rate',
  '0.2',
  '--epochs',
  '4',
  '--batch-size',
  '8',
  '--lr',
  '0.05',
  '--threads',
  '1',
  '--seed',
  '3',
  '--quiet',
  '--cache-dir',
  cache,
  '--out',
  out,
];

test('bad input exits non-zero with one clear line, not a stack trace', () => {
  const cases: [string[], RegExp][] = [
    [['eval', '--weights', 'x.pth', '--data', `imagefolder:${data}`, '--attack', 'nope'], /unknown attack 'nope'/],
    [
      ['eval', '--arch', 'lenet', '--weights', 'x.pth', '--data', `imagefolder:${data}`],
      /unknown architecture 'lenet'|unknown arch/i,
    ],
    [['eval', '--weights', 'x.pth', '--data', '/nowhere'], /unknown dataset kind|dataset folder not found/],
    [
      ['eval', '--weights', 'x.pth', '--data', 'cifar10:/nowhere/at/all'],
      /dataset folder not found: \/nowhere\/at\/all/,
    ],
    [['eval', '--weights', '/nowhere/w.pth', '--data', `imagefolder:${data}`], /w\.pth/],
    [
      [
        'train',
        '--data',
        `imagefolder:${data}`,
        '--attack',
        'badnets-grid',
        '--target',
        '7',
        '--out',
        join(cache, 'x.pth'),
      ],
      /target class 7 is out of range for 2 classes/,
    ],
    [
      ['train', '--data', `imagefolder:${data}`, '--epochs', 'many', '--out', join(cache, 'x.pth')],
      /--epochs must be an integer/,
    ],
  ];
  for (const [args, pattern] of cases) {
    const result = mcldef([...args, '--cache-dir', cache]);
    assert.notEqual(result.status, 0, args.join(' '));
    assert.match(result.stderr, pattern, `${args.join(' ')}\n${result.stderr}`);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
  }
});

async function interruptAfterFirstEpoch(out: string, signal: NodeJS.Signals): Promise<void> {
  const child: ChildProcess = spawn(process.execPath, [...CLI, ...trainArgs(out)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (/epoch 2\/4/.test(output)) child.kill(signal);
    });
    child.on('exit', () => resolve());
    child.on('error', reject);
  });
  assert.match(output, /epoch 2\/4/, 'the run got past epoch 2 before the signal');
  assert.doesNotMatch(output, /epoch 4\/4/, 'the signal stopped it before the end');
  assert.equal(existsSync(out), false, 'no weights file before the run completes');
  assert.equal(existsSync(`${out}.ckpt.safetensors`), true, 'a checkpoint is there to resume from');
}

for (const signal of ['SIGINT', 'SIGKILL'] as const) {
  test(`after ${signal}, re-running the same command resumes and ends with the uninterrupted run's weights`, async () => {
    const folder = temporaryFolder('mcldef-resume-');
    const reference = join(folder, 'reference.safetensors');
    const full = mcldef(trainArgs(reference));
    assert.equal(full.status, 0, full.stderr);
    const interrupted = join(folder, 'interrupted.safetensors');
    await interruptAfterFirstEpoch(interrupted, signal);
    const resumed = mcldef(trainArgs(interrupted));
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stdout, /resumed after epoch 2/);
    assert.deepEqual(readFileSync(interrupted), readFileSync(reference), 'bit-identical weights');
    assert.equal(existsSync(`${interrupted}.ckpt.safetensors`), false, 'the checkpoint is removed at the end');
    const evaluated = mcldef([
      'eval',
      '--weights',
      interrupted,
      '--data',
      `imagefolder:${data}`,
      '--attack',
      'badnets-square',
      '--target',
      '0',
      '--json',
      '-',
      '--cache-dir',
      cache,
      '--threads',
      '1',
    ]);
    assert.equal(evaluated.status, 0, evaluated.stderr);
    const metrics = JSON.parse(evaluated.stdout) as { ba: number; asr: number; clean_n: number };
    assert.equal(metrics.clean_n, 48);
    assert.ok(metrics.ba > 50);
  });
}
