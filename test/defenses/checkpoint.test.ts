// Resumable defenses (src/defenses/checkpoint.ts) through SAU: a run stopped after two of four
// rounds and started again from its checkpoint, on a fresh copy of the input model as a new
// process would load it, ends with the very weights and losses of an uninterrupted run; a file
// of another run is not resumed; a corrupt one is named; defend() removes the file when done.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { liveTensorCount, manualSeed, noGrad, setNumThreads } from '../../src/index.js';
import type { DefenseContext, DefenseOutcome, ProgressEvent } from '../../src/defenses/defense.js';
import { defend } from '../../src/defenses/index.js';
import { SAU_DEFAULTS, SharedAdversarialUnlearning } from '../../src/defenses/sau.js';
import { getDefaultDevice } from '../../src/engine/device.js';
import { TinyNet, quadrantSplit } from '../helpers/synthetic.js';
import { temporaryFolder } from '../helpers/tmp.js';

const settings = { ...SAU_DEFAULTS, rounds: 4, batchSize: 32, lr: 0.001 };

/** A TinyNet with the weights seed 7 gives: the same input model for every run. */
function inputModel(): TinyNet {
  manualSeed(7);
  const model = new TinyNet();
  model.eval();
  return model;
}

function run(model: TinyNet, options: { checkpoint?: string; seed?: number; stopAfter?: number }): DefenseOutcome {
  const clean = quadrantSplit(96, 21);
  const context: DefenseContext = {
    seed: options.seed ?? 0,
    device: getDefaultDevice(),
    dataKind: 'synthetic',
    log: () => {},
    progress: (event: ProgressEvent) => {
      // An interruption mid-run: the round after `stopAfter` finishes but is never saved.
      if (options.stopAfter !== undefined && event.done === options.stopAfter + 1) throw new Error('interrupted');
    },
    ...(options.checkpoint === undefined ? {} : { checkpoint: options.checkpoint }),
  };
  try {
    return new SharedAdversarialUnlearning(settings).run(model, clean, context) as DefenseOutcome;
  } finally {
    clean.dispose();
  }
}

const weightsOf = (model: TinyNet): number[] =>
  noGrad(() => model.parameters().flatMap((p) => Array.from(p.toTypedArray() as Float32Array)));

test('defense checkpoints: SAU stopped after round 2 and resumed equals the uninterrupted run', () => {
  setNumThreads(1);
  const folder = temporaryFolder('mcldef-defense-checkpoint-');
  const path = join(folder, 'sau.safetensors');
  const live = liveTensorCount();

  const whole = inputModel();
  const uninterrupted = run(whole, {});
  const expected = weightsOf(whole);
  assert.equal(uninterrupted.report.resumed, undefined);

  const first = inputModel();
  assert.throws(() => run(first, { checkpoint: path, stopAfter: 2 }), /interrupted/);
  first.dispose();
  assert.ok(existsSync(path), 'the checkpoint was written');

  const second = inputModel();
  const resumed = run(second, { checkpoint: path });
  assert.equal(resumed.report.resumed?.rounds, 2);
  assert.ok(resumed.report.resumed.seconds > 0);
  // Its seconds include the earlier process's.
  assert.ok(resumed.report.seconds.total! >= resumed.report.resumed.seconds);
  assert.deepEqual(
    resumed.report.epochs.map((e) => [e.epoch, e.loss]),
    uninterrupted.report.epochs.map((e) => [e.epoch, e.loss]),
  );
  const got = weightsOf(second);
  assert.equal(got.length, expected.length);
  const largest = Math.max(...got.map((v, i) => Math.abs(v - expected[i]!)));
  assert.equal(largest, 0, `the resumed weights differ by up to ${largest}`);
  // Different from the input model: the rounds did change it.
  const start = inputModel();
  assert.ok(weightsOf(start).some((v, i) => v !== expected[i]));

  // The checkpoint now holds round 4 of the seed-0 run: a seed-1 run must not resume it.
  const other = inputModel();
  const fresh = run(other, { checkpoint: path, seed: 1 });
  assert.equal(fresh.report.resumed, undefined);
  assert.equal(fresh.report.epochs.length, 4);

  for (const model of [whole, second, start, other]) model.dispose();
  assert.equal(liveTensorCount(), live, 'no tensor left behind');
});

test('defense checkpoints: a corrupt file is named; defend() removes the file once the defense is done', async () => {
  setNumThreads(1);
  const folder = temporaryFolder('mcldef-defense-checkpoint-');
  const path = join(folder, 'broken.safetensors');
  writeFileSync(path, 'not a safetensors file');
  const model = inputModel();
  assert.throws(
    () => run(model, { checkpoint: path }),
    (error: Error) => error.message.startsWith(`defense checkpoint ${path}: `) && !error.message.includes('\n'),
  );

  const done = join(folder, 'done.safetensors');
  const clean = quadrantSplit(64, 22);
  try {
    const { report } = await defend({
      model,
      clean,
      method: 'sau',
      options: { rounds: 2, batchSize: 32 },
      checkpoint: done,
      evidence: 0,
      dataKind: 'synthetic',
    });
    assert.equal(report.epochs.length, 2);
    assert.equal(existsSync(done), false, 'the checkpoint is removed once the defense is done');
  } finally {
    clean.dispose();
    model.dispose();
  }
});
