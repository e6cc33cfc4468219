// `mcldef defend` and `mcldef detect` end to end on a tiny image folder: the JSON of SPEC §6,
// the purified weights, the trigger PNG and a self-contained report.html.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { PNG } from 'pngjs';
import { hasNativeBfloat16 } from '../../src/engine/autograd.js';
import { temporaryFolder } from '../helpers/tmp.js';
import { tinyImageFolder } from '../helpers/tiny-data.js';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

function mcldef(args: string[]): { status: number | null; stdout: string; stderr: string; args: string[] } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, args };
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
    before: { ba: number; asr: number };
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
  // The stages add up: the total covers loading, evaluation and the defense, which covers
  // the inversion and purification.
  const s = report.seconds;
  assert.ok(s.total! >= s.load! + s.evaluation! + s.defense! - 1e-6, JSON.stringify(s));
  assert.ok(s.defense! >= s.inversion! + s.purification! - 1e-6, JSON.stringify(s));
  // --seed seeds everything (the inversion's start, purification): the same command repeats.
  const again = mcldef(defended.args);
  assert.equal(again.status, 0, again.stderr);
  const repeated = JSON.parse(again.stdout) as Report;
  assert.deepEqual(repeated.after, report.after);
  assert.deepEqual(
    repeated.epochs.map((e) => e.loss),
    report.epochs.map((e) => e.loss),
  );
  // The chart's BA is measured on the 30 monitor images: a multiple of 1/30.
  for (const e of report.epochs) {
    const correct = (e.ba! * 30) / 100;
    assert.ok(Math.abs(correct - Math.round(correct)) < 1e-6, `monitor BA ${e.ba} is not k/30`);
  }
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
    report.changes_from_published,
    {
      epochs: 2,
      clean_feature_weight: 1,
      refit_stamped: true,
      stack_scan_patterns: true,
      accuracy_guard: 2,
      ...autoPrecision,
    },
    'only the settings that differ from the published ones',
  );
  assert.match(html, /differ from the published configuration: <code>epochs = 2<\/code>/);
  // The accuracy guard (a default) reports what it measured on the clean images and did.
  const guard = report.accuracy_guard as { before: number; after: number; refit_head: boolean };
  for (const value of [guard.before, guard.after]) assert.ok(value >= 0 && value <= 100, `${value}`);
  assert.equal(
    guard.refit_head,
    guard.before - guard.after > 2,
    'a re-fit exactly where the accuracy fell by more than 2',
  );
  assert.match(html, /Accuracy guard \(2 points\)/);
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
  assert.deepEqual(refitReport.changes_from_published, {
    epochs: 2,
    clean_feature_weight: 1,
    refit_head: true,
    refit_stamped: true,
    stack_scan_patterns: true,
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
    classes: { label: number; size: number; anomalyIndex: number }[];
    detected_target: number | null;
  };
  assert.deepEqual(
    scan.classes.map((c) => c.label),
    [0, 1, 2],
  );
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
  assert.equal(blindReport.before.asr, report.before.asr, 'the same model under the same attack');
  // defend's scan is detect's: the same options give the same sizes and the same decision.
  assert.equal(blindReport.detected_target, scan.detected_target);
  assert.deepEqual(
    blindReport.detection.classes.map((c) => c.size),
    scan.classes.map((c) => c.size),
  );
  // The scan's statistics travel with the defend report, whether or not a class was flagged.
  assert.deepEqual(
    blindReport.detection.classes.map((c) => c.label),
    [0, 1, 2],
  );
  for (const c of blindReport.detection.classes) {
    // Δ ∈ [−1, 1] with pruned entries under 1/255: its L1 lies between size/255 and 3·size.
    assert.ok(c.l1 >= c.size / 255 && c.l1 <= 3 * c.size, `class ${c.label}: L1 ${c.l1}, size ${c.size}`);
  }
  // --checkpoint: SAU saves its rounds there (a folder made for it) and removes the file when
  // done; the path is where, not what, so the report's options do not record it.
  const checkpoint = join(folder, 'ckpt', 'sau.safetensors');
  const sau = mcldef([
    'defend',
    '--method',
    'sau',
    '--rounds',
    '2',
    '--batch-size',
    '16',
    '--weights',
    weights,
    '--arch',
    'wrn-16-1',
    '--clean-ratio',
    '0.5',
    '--checkpoint',
    checkpoint,
    '--json',
    '-',
    ...common,
  ]);
  assert.equal(sau.status, 0, sau.stderr);
  const sauReport = JSON.parse(sau.stdout) as { epochs: unknown[]; options: Record<string, unknown> };
  assert.equal(sauReport.epochs.length, 2);
  assert.equal(existsSync(checkpoint), false, 'removed once done');
  assert.ok(existsSync(join(folder, 'ckpt')), 'its folder was made');
  assert.equal('checkpoint' in sauReport.options, false);
});
