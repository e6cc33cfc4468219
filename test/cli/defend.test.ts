// `mcldef defend` and `mcldef detect` end to end on a tiny image folder: the JSON of SPEC §6,
// the purified weights, the trigger PNG and a self-contained report.html.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { PNG } from 'pngjs';
import { hasNativeBfloat16 } from '../../src/engine/autograd.js';
import { temporaryFolder } from '../helpers/tmp.js';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

function mcldef(args: string[]): { status: number | null; stdout: string; stderr: string; args: string[] } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, args };
}

function tinyImageFolder(): string {
  const root = temporaryFolder('mcldef-defend-');
  let state = 7;
  const noise = (): number => ((state = (state * 1103515245 + 12345) % 2 ** 31) % 40) - 20;
  for (const split of ['train', 'test']) {
    for (const [label, level] of [
      ['a', 60],
      ['b', 120],
      ['c', 190],
    ] as const) {
      mkdirSync(join(root, split, label), { recursive: true });
      for (let i = 0; i < 40; i++) {
        const body = Buffer.alloc(8 * 8 * 3, 0).map(() => level + noise());
        writeFileSync(join(root, split, label, `${i}.ppm`), Buffer.concat([Buffer.from('P6 8 8 255\n'), body]));
      }
    }
  }
  return root;
}

test('defend writes the SPEC §6 JSON, the weights, trigger.png and report.html; detect scans every class', () => {
  const data = tinyImageFolder();
  const folder = temporaryFolder('mcldef-defend-out-');
  const common = ['--data', `imagefolder:${data}`, '--threads', '1', '--quiet', '--cache-dir', join(folder, 'cache')];
  const weights = join(folder, 'backdoored.safetensors');
  const trained = mcldef([
    'train',
    '--arch',
    'wrn-16-1',
    '--attack',
    'badnets-square',
    '--target',
    '1',
    '--poison-rate',
    '0.2',
    '--epochs',
    '4',
    '--batch-size',
    '16',
    '--lr',
    '0.05',
    '--out',
    weights,
    ...common,
  ]);
  assert.equal(trained.status, 0, trained.stderr);
  const out = join(folder, 'purified.safetensors');
  const defended = mcldef([
    'defend',
    '--arch',
    'wrn-16-1',
    '--weights',
    weights,
    '--attack',
    'badnets-square',
    '--target',
    '1',
    '--clean-ratio',
    '0.5',
    '--passes',
    '3',
    '--epochs',
    '2',
    '--monitor',
    '30',
    '--out',
    out,
    '--json',
    '-',
    ...common,
  ]);
  assert.equal(defended.status, 0, defended.stderr);
  type Report = Record<string, unknown> & {
    before: { ba: number };
    after: { ba: number; asr: number };
    epochs: { ba: number | null; loss: number }[];
    seconds: Record<string, number>;
    trigger: { passes: number; history: { pass: number; size: number; improved: boolean }[] };
  };
  const report = JSON.parse(defended.stdout) as Report;
  for (const key of ['method', 'target', 'detected_target', 'before', 'after', 'der', 'seconds', 'epochs'])
    assert.ok(key in report, `JSON has ${key}`);
  assert.equal(report.target, 1);
  assert.equal(report.detected_target, null);
  assert.equal(report.epochs.length, 2);
  // The inversion's passes, one record each, in order.
  assert.equal(report.trigger.passes, 3);
  assert.deepEqual(
    report.trigger.history.map((pass) => pass.pass),
    [0, 1, 2],
  );
  for (const key of ['inversion', 'purification', 'evaluation', 'load', 'total'])
    assert.ok(report.seconds[key]! >= 0, `seconds.${key}`);
  // --seed seeds everything (the inversion's start, purification): the same command repeats.
  const again = mcldef(defended.args);
  assert.equal(again.status, 0, again.stderr);
  const repeated = JSON.parse(again.stdout) as Report;
  assert.deepEqual(repeated.after, report.after);
  assert.deepEqual(
    repeated.epochs.map((e) => e.loss),
    report.epochs.map((e) => e.loss),
  );
  assert.equal(typeof report.epochs[0]!.ba, 'number');
  assert.ok(existsSync(out));
  const reportDir = join(folder, 'purified-report');
  const png = PNG.sync.read(readFileSync(join(reportDir, 'trigger.png')));
  assert.deepEqual([png.width, png.height], [64, 64], '8×8 trigger magnified 8×');
  const html = readFileSync(join(reportDir, 'report.html'), 'utf8');
  assert.match(html, /<svg/);
  assert.match(html, /data:image\/png;base64,/);
  assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/, 'self-contained');
  // The default precision is 'auto': bfloat16 purification where the CPU has it natively.
  const autoPrecision = hasNativeBfloat16() ? { precision: 'bfloat16' } : {};
  assert.deepEqual(
    report.options,
    { epochs: 2, accuracy_guard: 4, ...autoPrecision },
    'only the settings that differ from the published ones',
  );
  assert.match(html, /differ from the published configuration: <code>epochs = 2<\/code>/);
  // The accuracy guard (a default) reports what it measured on the clean images and did.
  const guard = report.accuracy_guard as { before: number; after: number; refit_head: boolean };
  for (const value of [guard.before, guard.after]) assert.ok(value >= 0 && value <= 100, `${value}`);
  assert.equal(
    guard.refit_head,
    guard.before - guard.after > 4,
    'a re-fit exactly where the accuracy fell by more than 4',
  );
  assert.match(html, /Accuracy guard \(4 points\)/);
  // --refit-head and the bfloat16 settings are recorded in the JSON and named in the HTML.
  const refitOut = join(folder, 'refit.safetensors');
  const refit = mcldef([
    ...defended.args.map((arg) => (arg === out ? refitOut : arg)),
    '--refit-head',
    '--precision',
    'bfloat16',
    '--inversion-precision',
    'bfloat16',
    '--accuracy-guard',
    'off',
  ]);
  assert.equal(refit.status, 0, refit.stderr);
  const refitReport = JSON.parse(refit.stdout) as Report;
  assert.equal(refitReport.accuracy_guard, undefined, '--accuracy-guard off');
  assert.deepEqual(refitReport.options, {
    epochs: 2,
    refit_head: true,
    precision: 'bfloat16',
    inversion_precision: 'bfloat16',
  });
  assert.match(readFileSync(join(folder, 'refit-report', 'report.html'), 'utf8'), /refit_head = true/);
  const detected = mcldef([
    'detect',
    '--arch',
    'wrn-16-1',
    '--weights',
    weights,
    '--clean-ratio',
    '0.5',
    '--scan-passes',
    '2',
    '--json',
    '-',
    ...common,
  ]);
  assert.equal(detected.status, 0, detected.stderr);
  const scan = JSON.parse(detected.stdout) as {
    classes: { label: number; anomalyIndex: number }[];
    detected_target: number | null;
  };
  assert.equal(scan.classes.length, 3);
  // --detect: --target names the attack (for ASR) but the defense must find it itself.
  const blind = mcldef([
    ...defended.args.map((a) => (a === out ? join(folder, 'blind.safetensors') : a)),
    '--detect',
    '--scan-passes',
    '2',
  ]);
  assert.equal(blind.status, 0, blind.stderr);
  const blindReport = JSON.parse(blind.stdout) as {
    detected_target: number | null;
    before: { asr: number };
    detection: { classes: { label: number; size: number; l1: number; anomalyIndex: number }[]; median: number };
  };
  assert.equal(typeof blindReport.before.asr, 'number');
  assert.ok('detected_target' in blindReport);
  // The scan's statistics travel with the defend report, whether or not a class was flagged.
  assert.deepEqual(
    blindReport.detection.classes.map((c) => c.label),
    [0, 1, 2],
  );
  for (const c of blindReport.detection.classes) {
    // Δ ∈ [−1, 1] with pruned entries under 1/255: its L1 lies between size/255 and 3·size.
    assert.ok(c.l1 >= c.size / 255 && c.l1 <= 3 * c.size, `class ${c.label}: L1 ${c.l1}, size ${c.size}`);
  }
});

test("defend's presets: 'auto' precision, inversion patience, 12 epochs, the accuracy guard and (warp triggers) the clean-feature term by default; float32, no patience, 20 epochs, no guard, no term when published", async () => {
  const { inversionPatience, purificationPrecision, DEFAULT_INVERSION_PATIENCE } =
    await import('../../src/cli/commands/defend.js');
  const auto = hasNativeBfloat16() ? 'bfloat16' : 'float32';
  assert.equal(purificationPrecision({ preset: 'default' }), auto);
  assert.equal(purificationPrecision({ preset: 'published' }), 'float32');
  assert.equal(purificationPrecision({ preset: 'published', precision: 'bfloat16' }), 'bfloat16', 'a flag wins');
  assert.equal(purificationPrecision({ preset: 'default', precision: 'float32' }), 'float32');
  assert.equal(inversionPatience({ preset: 'default' }), DEFAULT_INVERSION_PATIENCE);
  assert.equal(inversionPatience({ preset: 'published' }), undefined);
  assert.equal(inversionPatience({ preset: 'published', inversionPatience: 5 }), 5);
  const { purificationEpochs, DEFAULT_PURIFICATION_EPOCHS } = await import('../../src/cli/commands/defend.js');
  assert.equal(DEFAULT_PURIFICATION_EPOCHS, 12);
  assert.equal(purificationEpochs({ preset: 'default' }), 12);
  assert.equal(purificationEpochs({ preset: 'published' }), 20, 'the published 20 epochs');
  assert.equal(purificationEpochs({ preset: 'published', epochs: 5 }), 5, 'a flag wins');
  assert.equal(purificationEpochs({ preset: 'default', epochs: 20 }), 20);
  const { cleanFeatureWeight, DEFAULT_UNIVERSAL_CLEAN_FEATURE_WEIGHT } =
    await import('../../src/cli/commands/defend.js');
  assert.equal(cleanFeatureWeight({ preset: 'default' }, 'warp'), DEFAULT_UNIVERSAL_CLEAN_FEATURE_WEIGHT);
  assert.equal(DEFAULT_UNIVERSAL_CLEAN_FEATURE_WEIGHT, 1);
  assert.equal(cleanFeatureWeight({ preset: 'default' }, 'signal'), 1, 'a signal trigger too');
  assert.equal(cleanFeatureWeight({ preset: 'published' }, 'signal'), 0);
  assert.equal(cleanFeatureWeight({ preset: 'default' }, 'pattern'), 0, 'pattern triggers keep the published loss');
  assert.equal(cleanFeatureWeight({ preset: 'published' }, 'warp'), 0);
  assert.equal(cleanFeatureWeight({ preset: 'default', cleanFeatureWeight: 0 }, 'warp'), 0, 'a flag wins');
  assert.equal(cleanFeatureWeight({ preset: 'published', cleanFeatureWeight: 2 }, 'pattern'), 2);
  const { accuracyGuard, DEFAULT_ACCURACY_GUARD } = await import('../../src/cli/commands/defend.js');
  assert.equal(accuracyGuard({ preset: 'default' }), DEFAULT_ACCURACY_GUARD);
  assert.equal(accuracyGuard({ preset: 'published' }), undefined);
  assert.equal(accuracyGuard({ preset: 'default', accuracyGuard: 'off' }), undefined);
  assert.equal(accuracyGuard({ preset: 'published', accuracyGuard: 2 }), 2, 'a flag wins');
});
